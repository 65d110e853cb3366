//! Stores: one seam over `object_store` for `s3://`, `file://` and `http(s)://`
//! (docs/architecture.md). Ranged reads are streamed and record-aligned; results are written
//! create-only.
//!
//! A [`Store`] is a client plus a base (a folder): keys are `/`-separated and relative
//! to it. The fake is `object_store`'s `InMemory` ([`Store::memory`]); the
//! fault-injecting wrapper is [`FaultyObjectStore`].
//!
//! Bodies cut short are resumed by `object_store` itself (0.14, `client/get.rs`,
//! `retry_stream`): on a body error it asks again for the bytes from the next unread
//! one, and only if the ETag is unchanged; each resume counts against the same
//! [`RetryConfig`] budget as the first request.

mod aws;
mod carry;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
mod nofollow;
pub mod parts;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
#[cfg(any(test, feature = "test-util"))]
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResultPayload, ObjectStore,
    ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use url::Url;

pub use aws::S3Settings;
#[cfg(any(test, feature = "test-util"))]
pub use faulty::{FaultyObjectStore, GetFault, PutFault};

use crate::contract::range::RecordRange;
use crate::error::ErrorClass;
use carry::{push_rechunked, RecordCarry};

/// Size of the positioned reads made for `file://` objects. `object_store`'s own file
/// stream reads 8 KiB at a time, a thousand system calls per 8 MB job; 1 MiB is eight
/// system calls, and one reused buffer per job keeps memory flat (larger buffers made
/// glibc's malloc keep freed ones around: 140 MiB peak RSS over 1 GiB with 8 MiB).
const FILE_READ_CHUNK: usize = 1 << 20;

/// Why a store operation failed, in the worker's three classes (docs/architecture.md#defaults), plus
/// "not found" for whole-object reads (`get`), where it is an answer, not a failure.
///
/// The message is for people and says only what happened; the class is the variant
/// (and [`StoreError::class`]), never a word in front of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Worth trying again later: 5xx, SlowDown, timeouts, a body cut short after retries.
    #[error("{0}")]
    Retryable(String),
    /// This job can never succeed: missing object, range past the end, an object that
    /// is not whole records, an object changed since the plan, a bad URL or key.
    #[error("{0}")]
    Permanent(String),
    /// The agent or its environment is wrong: access denied, no credentials, wrong region.
    #[error("{0}")]
    Fault(String),
    /// `get` of an object that does not exist (a job's read reports `Permanent`).
    #[error("{0}")]
    NotFound(String),
}

impl StoreError {
    /// True for [`StoreError::Retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_))
    }

    /// The worker's class: `Retryable` is [`ErrorClass::Retryable`], `Fault`
    /// [`ErrorClass::Environment`], `Permanent` and `NotFound` [`ErrorClass::Job`].
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Retryable(_) => ErrorClass::Retryable,
            StoreError::Fault(_) => ErrorClass::Environment,
            StoreError::Permanent(_) | StoreError::NotFound(_) => ErrorClass::Job,
        }
    }
}

/// One object under a store's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the base, `/`-separated.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (quoted, as the store gives it), when the store has one.
    pub etag: Option<String>,
}

/// What the plan recorded about an object; a read checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Size at plan time.
    pub size: Option<u64>,
    /// ETag at plan time; the read is conditional on it (`If-Match`).
    pub etag: Option<String>,
}

/// What a create-only write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object was already there; it was left as it was.
    AlreadyExists,
}

/// A client and a base folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Base path inside the client; keys are relative to it.
    base: Path,
    /// The base as a URL, ending in `/`.
    url: String,
    /// When opened on one object: its file name (the base is its parent).
    single: Option<String>,
    /// Tests only: re-chunk what reaches the sink into pieces of this size.
    chunk_size: Option<usize>,
    /// The client for part GETs (`parts.rs`): `inner` with retries off for HTTP stores.
    parts: Arc<dyn ObjectStore>,
    /// Whether `parts` leaves retries to the caller.
    part_retries_ours: bool,
}

impl Store {
    /// Opens `file:///abs/dir/`, `s3://bucket/prefix/` or `http(s)://host/path/`,
    /// taking S3 settings from the environment ([`S3Settings::from_env`]).
    ///
    /// A URL naming one object (a file, or an S3 key that is an object rather than a
    /// prefix) opens its parent folder, and [`Store::list`] returns just that object.
    /// A URL ending in `/`, or naming nothing, is a folder.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &S3Settings::from_env()).await
    }

    /// Like [`Store::open`], with explicit S3 settings (tests point them at moto).
    pub async fn open_with(url: &str, s3: &S3Settings) -> Result<Store, StoreError> {
        let parsed = Url::parse(url)
            .map_err(|e| StoreError::Permanent(format!("bad store URL {url:?}: {e}")))?;
        match parsed.scheme() {
            "file" => open_file(url, &parsed),
            "s3" => aws::open_s3(url, &parsed, s3).await,
            "http" | "https" => open_http(url, &parsed).await,
            other => Err(StoreError::Permanent(format!(
                "bad store URL {url:?}: unsupported scheme {other:?} (file, s3, http, https)"
            ))),
        }
    }

    /// An empty in-memory store (`memory:///`), for tests.
    #[cfg(any(test, feature = "test-util"))]
    pub fn memory() -> Store {
        Store::from_object_store(Arc::new(InMemory::new()), "memory:///")
    }

    /// A store over any `object_store` client with an empty base, named `url`.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str) -> Store {
        let mut url = url.to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        Store::at(inner, Path::default(), url, None)
    }

    /// A store at `base` (named `url`), on one object when `single` names it.
    fn at(inner: Arc<dyn ObjectStore>, base: Path, url: String, single: Option<String>) -> Store {
        Store {
            parts: Arc::clone(&inner),
            part_retries_ours: false,
            inner,
            base,
            url,
            single,
            chunk_size: None,
        }
    }

    /// Tests: re-chunk everything that reaches a read's sink into pieces of `n` bytes
    /// before record alignment, so every chunk boundary can be exercised.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_chunk_size(mut self, n: usize) -> Store {
        self.chunk_size = Some(n.max(1));
        self
    }

    /// The base URL, ending in `/`: `url() + key` names an object.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `object_store` client underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn describe(&self, key: &str) -> String {
        format!("{}{key}", self.url)
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        let full = if self.base.as_ref().is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.base)
        };
        Path::parse(&full)
            .map_err(|e| StoreError::Permanent(format!("bad key {:?}: {e}", self.describe(key))))
    }

    /// Every object under the base (recursively), sorted by key, skipping any whose
    /// relative key has a segment starting with `_` or `.` (`_plan.json`,
    /// `_instances/`, `_expected.json`, dot-files). Opened on one object, just that one.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        if let Some(name) = &self.single {
            return Ok(vec![self.head(name).await?]);
        }
        self.list_prefix(&self.base).await
    }

    /// Every object under `base/prefix` (keys still relative to the base), hidden names
    /// below the prefix skipped but the prefix itself may be hidden (`_instances/`).
    pub async fn list_under(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = prefix.trim_end_matches('/');
        let path = self.path(prefix)?;
        let mut out = self.list_prefix(&path).await?;
        for o in &mut out {
            o.key = format!("{prefix}/{}", o.key);
        }
        Ok(out)
    }

    async fn list_prefix(&self, prefix: &Path) -> Result<Vec<ObjectInfo>, StoreError> {
        let what = format!(
            "{}{}",
            self.url,
            relative_key(prefix, &self.base).unwrap_or_default()
        );
        let prefix_arg = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut stream = self.inner.list(prefix_arg);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| classify(&e, &format!("listing {what}")))?;
            let Some(rel) = relative_key(&meta.location, prefix) else {
                continue;
            };
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|s| s.starts_with('_') || s.starts_with('.'))
            {
                continue;
            }
            out.push(ObjectInfo {
                key: rel,
                size: meta.size,
                etag: meta.e_tag,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Reads records `range` of `key` with one ranged GET (conditional on the planned
    /// ETag when given) and streams them to `sink`, whole records only. Returns the
    /// bytes read.
    pub async fn read_records(
        &self,
        key: &str,
        range: &RecordRange,
        expect: Option<&Expect>,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u64, StoreError> {
        let what = self.describe(key);
        let bytes = range
            .byte_range()
            .map_err(|e| StoreError::Permanent(format!("{what}: {e}")))?;
        let record_length = usize::try_from(range.record_length)
            .map_err(|_| StoreError::Permanent(format!("{what}: record length too large")))?;
        if let Some(size) = expect.and_then(|e| e.size) {
            check_size(&what, range, &bytes, size)?;
        }
        let path = self.path(key)?;
        let opts = GetOptions {
            range: Some(GetRange::Bounded(bytes.clone())),
            if_match: expect.and_then(|e| e.etag.clone()),
            ..Default::default()
        };
        let res = match self.inner.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_error(e, &what, range, &bytes, &path).await),
        };
        check_size(&what, range, &bytes, res.meta.size)?;
        if let Some(e) = expect {
            check_planned_size(&what, e, res.meta.size)?;
        }
        if res.range != bytes {
            return Err(StoreError::Retryable(format!(
                "{what}: {range}: the store answered bytes {}..{}",
                res.range.start, res.range.end
            )));
        }
        let want = bytes.end - bytes.start;
        let mut carry = RecordCarry::new(record_length);
        let mut got = 0u64;
        match res.payload {
            GetResultPayload::File(file, _) => {
                let file = Arc::new(file);
                let mut offset = bytes.start;
                // Whole records per read, so no record is carried across two reads.
                let chunk = (FILE_READ_CHUNK / record_length).max(1) * record_length;
                let mut buf = Vec::with_capacity(chunk);
                while offset < bytes.end {
                    let n = (bytes.end - offset).min(chunk as u64) as usize;
                    let f = Arc::clone(&file);
                    let (back, read) = tokio::task::spawn_blocking(move || {
                        let r = pread(&f, offset, n, &mut buf);
                        (buf, r)
                    })
                    .await
                    .map_err(|e| StoreError::Retryable(format!("{what}: read task: {e}")))?;
                    buf = back;
                    read.map_err(|e| {
                        file_read_error(&format!("{what}: {range}: read at {offset}"), &e)
                    })?;
                    if buf.is_empty() {
                        break; // the file shrank under us; reported below
                    }
                    offset += buf.len() as u64;
                    got += buf.len() as u64;
                    push_rechunked(&mut carry, &buf, self.chunk_size, sink);
                }
            }
            GetResultPayload::Stream(mut stream) => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| match classify(&e, &what) {
                        StoreError::Retryable(m) => StoreError::Retryable(format!(
                            "{m} ({range}: body cut short after {got} of {want} bytes, after retries)"
                        )),
                        other => other,
                    })?;
                    let take = chunk.len().min((want - got) as usize);
                    got += take as u64;
                    push_rechunked(&mut carry, &chunk[..take], self.chunk_size, sink);
                    if got == want {
                        break;
                    }
                }
            }
        }
        if got != want || carry.pending() != 0 {
            return Err(StoreError::Retryable(format!(
                "{what}: {range}: body cut short: {got} of {want} bytes"
            )));
        }
        Ok(got)
    }

    /// Turns a failed ranged GET into an error that says what is wrong with the object.
    async fn read_error(
        &self,
        e: object_store::Error,
        what: &str,
        range: &RecordRange,
        bytes: &Range<u64>,
        path: &Path,
    ) -> StoreError {
        match classify(&e, what) {
            StoreError::NotFound(_) => StoreError::Permanent(format!("{what}: no such object")),
            StoreError::Permanent(m) if is_range_error(&e) => {
                // Say how big the object is: a head is cheap next to a dead-lettered job.
                match self.inner.head(path).await {
                    Ok(meta) => check_size(what, range, bytes, meta.size)
                        .err()
                        .unwrap_or(StoreError::Permanent(m)),
                    Err(_) => StoreError::Permanent(m),
                }
            }
            other => other,
        }
    }

    /// The whole of a small object (`NotFound` when there is none).
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let what = self.describe(key);
        let res = self
            .inner
            .get(&path)
            .await
            .map_err(|e| classify(&e, &what))?;
        res.bytes().await.map_err(|e| classify(&e, &what))
    }

    /// Writes `key` only if nothing is there (`If-None-Match: *` on S3).
    pub async fn put_create(&self, key: &str, body: Bytes) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
        let what = self.describe(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(classify(&e, &what)),
        }
    }

    /// Writes `key`, replacing what is there.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let what = self.describe(key);
        self.inner
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| classify(&e, &what))
    }

    /// Size and ETag of `key` (`NotFound` when there is none).
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.path(key)?;
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|e| classify(&e, &self.describe(key)))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.size,
            etag: meta.e_tag,
        })
    }
}

/// Checks that `range` lies inside an object of `size` bytes made of whole records.
fn check_size(
    what: &str,
    range: &RecordRange,
    bytes: &Range<u64>,
    size: u64,
) -> Result<(), StoreError> {
    if size % range.record_length != 0 {
        return Err(StoreError::Permanent(format!(
            "{what}: {range}: the object is {size} bytes, not a whole number of {}-byte records ({} records and {} bytes over)",
            range.record_length,
            size / range.record_length,
            size % range.record_length
        )));
    }
    if bytes.end > size {
        return Err(StoreError::Permanent(format!(
            "{what}: {range}: past the end of the object, which is {size} bytes ({} records)",
            size / range.record_length
        )));
    }
    Ok(())
}

/// Checks the size the store reports for the object (a HEAD's, or a ranged GET's
/// `Content-Range` total) against the size the plan recorded: with no ETag planned,
/// this is what tells a rewritten object from the planned one.
pub(crate) fn check_planned_size(what: &str, expect: &Expect, size: u64) -> Result<(), StoreError> {
    match expect.size {
        Some(planned) if planned != size => Err(StoreError::Permanent(format!(
            "{what}: object changed since the plan: {planned} bytes planned, {size} now"
        ))),
        _ => Ok(()),
    }
}

/// `key` of `location` relative to `base`, `/`-separated (None when not under it).
fn relative_key(location: &Path, base: &Path) -> Option<String> {
    let parts = location.prefix_match(base)?;
    Some(
        parts
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Reads up to `n` bytes at `offset`, fewer only at the end of the file.
/// Reads up to `n` bytes at `offset` into `buf` (resized; fewer at the end of the file).
fn pread(file: &std::fs::File, offset: u64, n: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.resize(n, 0);
    let mut filled = 0;
    while filled < n {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Text that marks a refused range. `object_store` keeps the status (`RetryError`) and
/// its own range error (`InvalidGetRange`) private, so only the message says it.
const RANGE_TEXT: [&str; 5] = [
    "status code: 416",
    "invalidrange",
    "invalid range",
    "wanted range starting",
    "requested range",
];

fn is_range_error(e: &object_store::Error) -> bool {
    let m = crate::error::full_message(e).to_ascii_lowercase();
    RANGE_TEXT.iter().any(|t| m.contains(t))
}

/// Text in an otherwise untyped (`Generic`) error that means the agent's environment is
/// wrong: a malformed or refused signature, the wrong region, missing permissions,
/// expired or invalid credentials, a bucket that does not exist.
const FAULT_TEXT: [&str; 12] = [
    "authorizationheadermalformed",
    "permanentredirect",
    "incorrectly configured region",
    "status code: 301",
    "status code: 401",
    "status code: 403",
    "accessdenied",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "expiredtoken",
    "invalidtoken",
    "nosuchbucket",
];

/// Sorts an `object_store` error into the worker's classes (docs/architecture.md#defaults): by its variant
/// where the variant says enough, and only for `Generic` errors by their text (the
/// HTTP status is inside the message: `RetryError` is private to `object_store`).
fn classify(e: &object_store::Error, what: &str) -> StoreError {
    use object_store::Error as E;
    let msg = format!("{what}: {}", crate::error::full_message(e));
    // The file system's own answer (ENOSPC, EROFS, EACCES, ENAMETOOLONG) says more than
    // the variant that wraps it (`Generic` from `LocalFileSystem`).
    if let Some(err) = io_error(what, &crate::error::full_message(e), e) {
        return err;
    }
    match e {
        E::NotFound { .. } => StoreError::NotFound(msg),
        E::Precondition { .. } | E::NotModified { .. } => StoreError::Permanent(format!(
            "{what}: object changed since the plan (its ETag no longer matches): {}",
            crate::error::full_message(e)
        )),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::Fault(msg),
        E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => {
            StoreError::Permanent(msg)
        }
        E::Generic { store, .. } if *store == aws::CREDENTIALS => StoreError::Fault(msg),
        // Only `put_create` writes conditionally, and it answers a conflict itself.
        E::AlreadyExists { .. } => StoreError::Permanent(msg),
        E::UnknownConfigurationKey { .. } => StoreError::Fault(msg),
        // `Generic` (an HTTP status, a transport error), a failed blocking task, and
        // variants added later: only their text says more.
        _ => classify_text(msg, e),
    }
}

/// The error for an I/O failure whose kind [`crate::error::io_class`] knows, its cause
/// first in the message (`<what>: disk full: …`); `None` for any other.
fn io_error(what: &str, detail: &str, e: &(dyn std::error::Error + 'static)) -> Option<StoreError> {
    let (class, cause) = crate::error::io_class_of(e)?;
    let msg = format!("{what}: {cause}: {detail}");
    Some(match class {
        ErrorClass::Environment => StoreError::Fault(msg),
        ErrorClass::Retryable => StoreError::Retryable(msg),
        ErrorClass::Job | ErrorClass::Usage => StoreError::Permanent(msg),
    })
}

/// A failed read of a local file: by its kind when [`crate::error::io_class`] knows it,
/// retryable otherwise.
pub(crate) fn file_read_error(what: &str, e: &std::io::Error) -> StoreError {
    io_error(what, &e.to_string(), e).unwrap_or(StoreError::Retryable(format!("{what}: {e}")))
}

/// The text rules, for errors whose variant says nothing more.
fn classify_text(msg: String, e: &object_store::Error) -> StoreError {
    let lower = msg.to_ascii_lowercase();
    if msg.contains(nofollow::REDIRECT_REFUSED) {
        StoreError::Permanent(msg)
    } else if FAULT_TEXT.iter().any(|f| lower.contains(f)) {
        StoreError::Fault(msg)
    } else if is_range_error(e) || lower.contains("status code: 4") {
        StoreError::Permanent(msg)
    } else {
        StoreError::Retryable(msg)
    }
}

/// Retries for HTTP stores: up to 4 more tries per request (body resumes included),
/// backoff drawn at random between 100 ms and twice the last (capped at 5 s), giving
/// up after 60 s. 5xx (503 SlowDown too), 429, timeouts and cut connections retry.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    }
}

/// No retries: for part GETs, which the agent retries itself (`parts.rs`).
pub(crate) fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..retry_config()
    }
}

/// Client options shared by S3 and HTTP: a short connect timeout, a generous whole-
/// request one (8 MB at a slow 100 kB/s still fits), HTTP allowed when asked.
pub(crate) fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
        .with_allow_http(allow_http)
}

fn open_file(url: &str, parsed: &Url) -> Result<Store, StoreError> {
    let fs_path = parsed.to_file_path().map_err(|_| {
        StoreError::Permanent(format!("bad file URL {url:?}: not an absolute local path"))
    })?;
    let inner: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let dir_url = |p: &std::path::Path| -> Result<(Path, String), StoreError> {
        let base = Path::from_absolute_path(p)
            .map_err(|e| StoreError::Permanent(format!("bad file URL {url:?}: {e}")))?;
        let mut u = Url::from_directory_path(p)
            .map_err(|_| StoreError::Permanent(format!("bad file URL {url:?}")))?
            .to_string();
        if !u.ends_with('/') {
            u.push('/');
        }
        Ok((base, u))
    };
    if !url.ends_with('/') && fs_path.is_file() {
        let name = fs_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StoreError::Permanent(format!("bad file URL {url:?}: no file name")))?
            .to_string();
        let parent = fs_path.parent().unwrap_or(std::path::Path::new("/"));
        let (base, url) = dir_url(parent)?;
        return Ok(Store::at(inner, base, url, Some(name)));
    }
    let (base, url) = dir_url(&fs_path)?;
    Ok(Store::at(inner, base, url, None))
}

async fn open_http(url: &str, parsed: &Url) -> Result<Store, StoreError> {
    let mut root = parsed.clone();
    root.set_path("/");
    root.set_query(None);
    root.set_fragment(None);
    let builder = object_store::http::HttpBuilder::new()
        .with_url(root.as_str())
        .with_client_options(client_options(parsed.scheme() == "http"))
        .with_http_connector(nofollow::NoRedirectConnector {
            allow_http: parsed.scheme() == "http",
        });
    let build = |retry: RetryConfig| -> Result<Arc<dyn ObjectStore>, StoreError> {
        let store = builder
            .clone()
            .with_retry(retry)
            .build()
            .map_err(|e| StoreError::Permanent(format!("bad store URL {url:?}: {e}")))?;
        Ok(Arc::new(store))
    };
    let (inner, part_client) = (build(retry_config())?, build(no_retries())?);
    let path = crate::contract::allow::percent_decode(parsed.path());
    let root_url = root.to_string();
    split_single(
        inner,
        &root_url,
        path.trim_start_matches('/'),
        url.ends_with('/'),
    )
    .await
    .map(|s| s.with_part_client(part_client))
}

/// A folder store at `prefix` under `root_url`, or, when `prefix` names an object
/// (and was not written as a folder), a store at its parent with just that object.
pub(crate) async fn split_single(
    inner: Arc<dyn ObjectStore>,
    root_url: &str,
    prefix: &str,
    is_dir: bool,
) -> Result<Store, StoreError> {
    let prefix = prefix.trim_end_matches('/');
    let make = |dir: &str, single: Option<String>| -> Result<Store, StoreError> {
        let base = Path::parse(dir)
            .map_err(|e| StoreError::Permanent(format!("bad store URL {root_url}{dir}: {e}")))?;
        let url = if dir.is_empty() {
            root_url.to_string()
        } else {
            format!("{root_url}{dir}/")
        };
        Ok(Store::at(Arc::clone(&inner), base, url, single))
    };
    if !is_dir && !prefix.is_empty() {
        if let Ok(p) = Path::parse(prefix) {
            match inner.head(&p).await {
                Ok(_) => {
                    let (dir, name) = prefix.rsplit_once('/').unwrap_or(("", prefix));
                    return make(dir, Some(name.to_string()));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                // A directory on an HTTP server may answer oddly; only a clear
                // credentials or permission problem stops the open.
                Err(e) => {
                    if let err @ StoreError::Fault(_) = classify(&e, &format!("{root_url}{prefix}"))
                    {
                        return Err(err);
                    }
                }
            }
        }
    }
    make(prefix, None)
}

/// One [`Store`] per scheme and bucket (or host), so the agent builds a client once,
/// not per job. Cheap to clone; clones share the stores.
#[derive(Clone)]
pub struct StoreCache {
    stores: Arc<tokio::sync::Mutex<HashMap<String, Store>>>,
    opener: Opener,
}

/// Opens the store at a base URL: [`Store::open`] in production, anything in tests.
pub type Opener = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Store, StoreError>> + Send + Sync,
>;

impl Default for StoreCache {
    fn default() -> Self {
        StoreCache::with_opener(Arc::new(|url: String| {
            Box::pin(async move { Store::open(&url).await })
        }))
    }
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCache").finish_non_exhaustive()
    }
}

impl StoreCache {
    /// A cache that opens stores with `opener` on first use.
    pub fn with_opener(opener: Opener) -> StoreCache {
        StoreCache {
            stores: Arc::default(),
            opener,
        }
    }

    /// The store for `base_url` (a [`crate::contract::allow::Location::base`]), opened on
    /// first use.
    pub async fn get(&self, base_url: &str) -> Result<Store, StoreError> {
        let mut stores = self.stores.lock().await;
        if let Some(s) = stores.get(base_url) {
            return Ok(s.clone());
        }
        let s = (self.opener)(base_url.to_string()).await?;
        stores.insert(base_url.to_string(), s.clone());
        Ok(s)
    }

    /// Puts a ready store in the cache (tests hand in fakes this way).
    #[cfg(any(test, feature = "test-util"))]
    pub async fn insert(&self, base_url: &str, store: Store) {
        self.stores.lock().await.insert(base_url.to_string(), store);
    }
}

#[cfg(test)]
mod tests;
