//! A fault-injecting `ObjectStore` around another one, for tests of the read logic.
//!
//! It sits above `object_store`'s HTTP retry layer, so what it injects reaches the
//! caller as is: a cut body here is a body whose resumes were all used up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

const STORE: &str = "FaultyObjectStore";

/// What the next `get` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetFault {
    /// Fails as a 503 SlowDown that outlived its retries would.
    Retryable,
    /// Fails as a missing object.
    Permanent,
    /// Fails as access denied.
    Forbidden,
    /// Succeeds, but the body stops with an error after this many bytes.
    CutAfter(u64),
    /// Succeeds, slowly: the body comes in `chunk`-byte pieces, each after `every`
    /// (tokio time, so paused-time tests run it instantly). A long job, for drain tests.
    Paced {
        /// Bytes per piece.
        chunk: usize,
        /// Wait before each piece.
        every: std::time::Duration,
    },
}

/// What the next `put` does: fails as the file system (`LocalFileSystem`) reports an
/// I/O error of this kind (`StorageFull` for ENOSPC, `ReadOnlyFilesystem`,
/// `PermissionDenied`, …), or as S3 answers an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFault {
    /// An I/O error of this kind, wrapped as `object_store`'s `LocalFileSystem` wraps it.
    Io(std::io::ErrorKind),
    /// An HTTP answer with this status code, as `object_store`'s S3 client words it.
    Http(u16),
}

/// Wraps a store; the next gets fail as queued with [`FaultyObjectStore::push`], the
/// next puts as queued with [`FaultyObjectStore::push_put`].
#[derive(Debug)]
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    faults: Mutex<VecDeque<GetFault>>,
    put_faults: Mutex<VecDeque<PutFault>>,
    gets: AtomicU64,
    puts: AtomicU64,
}

impl FaultyObjectStore {
    /// Wraps `inner`, injecting nothing yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultyObjectStore {
        FaultyObjectStore {
            inner,
            faults: Mutex::new(VecDeque::new()),
            put_faults: Mutex::new(VecDeque::new()),
            gets: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    /// The next `n` puts (after those already queued) meet `fault`.
    pub fn push_put(&self, n: usize, fault: PutFault) {
        let mut f = self.put_faults.lock().expect("faults lock");
        f.extend(std::iter::repeat_n(fault, n));
    }

    /// How many puts were asked for.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// The next `n` gets (after those already queued) meet `fault`.
    pub fn push(&self, n: usize, fault: GetFault) {
        let mut f = self.faults.lock().expect("faults lock");
        f.extend(std::iter::repeat_n(fault, n));
    }

    /// How many gets (and heads) were asked for.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyObjectStore({})", self.inner)
    }
}

fn injected(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("injected: {what}").into()
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let fault = self.put_faults.lock().expect("faults lock").pop_front();
        match fault {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(PutFault::Io(kind)) => Err(object_store::Error::Generic {
                store: STORE,
                source: Box::new(std::io::Error::new(
                    kind,
                    format!("injected: writing {location}"),
                )),
            }),
            Some(PutFault::Http(status)) => Err(object_store::Error::Generic {
                store: STORE,
                source: injected(&format!(
                    "Error performing PUT {location}: Server returned non-2xx status code: {status}"
                )),
            }),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let fault = self.faults.lock().expect("faults lock").pop_front();
        let path = location.to_string();
        match fault {
            None => self.inner.get_opts(location, options).await,
            Some(GetFault::Retryable) => Err(object_store::Error::Generic {
                store: STORE,
                source: injected("503 Service Unavailable: SlowDown, retries exhausted"),
            }),
            Some(GetFault::Permanent) => Err(object_store::Error::NotFound {
                path,
                source: injected("404 NoSuchKey"),
            }),
            Some(GetFault::Forbidden) => Err(object_store::Error::PermissionDenied {
                path,
                source: injected("403 AccessDenied"),
            }),
            Some(GetFault::CutAfter(n)) => {
                let res = self.inner.get_opts(location, options).await?;
                let (meta, range, attributes) =
                    (res.meta.clone(), res.range.clone(), res.attributes.clone());
                Ok(GetResult {
                    payload: GetResultPayload::Stream(cut(res.into_stream(), n)),
                    meta,
                    range,
                    attributes,
                    extensions: Default::default(),
                })
            }
            Some(GetFault::Paced { chunk, every }) => {
                let res = self.inner.get_opts(location, options).await?;
                let (meta, range, attributes) =
                    (res.meta.clone(), res.range.clone(), res.attributes.clone());
                let body = res.bytes().await?;
                let pieces: Vec<bytes::Bytes> = (0..body.len())
                    .step_by(chunk.max(1))
                    .map(|at| body.slice(at..(at + chunk.max(1)).min(body.len())))
                    .collect();
                let stream = futures::stream::iter(pieces).then(move |piece| async move {
                    tokio::time::sleep(every).await;
                    Ok(piece)
                });
                Ok(GetResult {
                    payload: GetResultPayload::Stream(stream.boxed()),
                    meta,
                    range,
                    attributes,
                    extensions: Default::default(),
                })
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Passes the first `n` bytes of `body`, then fails as a dropped connection.
fn cut(
    body: BoxStream<'static, Result<bytes::Bytes>>,
    n: u64,
) -> BoxStream<'static, Result<bytes::Bytes>> {
    futures::stream::unfold((body, n, false), |(mut body, left, done)| async move {
        if done {
            return None;
        }
        if left == 0 {
            let e = object_store::Error::Generic {
                store: STORE,
                source: injected("connection closed before the body ended"),
            };
            return Some((Err(e), (body, 0, true)));
        }
        match body.next().await {
            Some(Ok(b)) => {
                let take = (b.len() as u64).min(left);
                Some((Ok(b.slice(..take as usize)), (body, left - take, false)))
            }
            other => other.map(|r| (r, (body, left, true))),
        }
    })
    .boxed()
}
