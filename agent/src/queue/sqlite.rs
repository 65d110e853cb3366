//! The one-machine queue: a SQLite file (`sqlite:///var/lib/rangefleet/queue.db`).
//!
//! Several processes may share one file. A lease is one `BEGIN IMMEDIATE` transaction
//! (it takes the write lock before reading), so two leasers never pick the same row;
//! each lease writes a fresh random token, and every later call on that lease checks
//! it, so a worker whose lease expired and was taken by another gets `LeaseLost`.
//! Times are wall-clock milliseconds, since the processes share no other clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{Lease, Queue, QueueError, QueueStats};

/// How often a waiting `lease` looks again. SQLite has no way to wake a reader in
/// another process, and one indexed query every 200 ms costs next to nothing.
const POLL: Duration = Duration::from_millis(200);

/// How long a connection waits on another process's write lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema's version, in `PRAGMA user_version`. 0: the first schema, whose row ids
/// were reused once a table emptied and whose dead letters were keyed by the job's id
/// (a later job with the same id replaced an earlier dead letter). 1: ids are
/// AUTOINCREMENT (never reused), and each dead letter has its own id.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the message id; never reused
    body          TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,          -- unix ms; leased while in the future
    receive_count INTEGER NOT NULL DEFAULT 0,
    lease_token   TEXT                       -- the current lease's handle, if any
);
CREATE INDEX IF NOT EXISTS jobs_visible ON jobs (visible_at, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the dead letter's own; never reused
    job_id        INTEGER NOT NULL,          -- the job's id in jobs (its message id)
    body          TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    receive_count INTEGER NOT NULL,
    at            INTEGER NOT NULL           -- unix ms
);
";

/// Version 0 to 1: both tables rebuilt with AUTOINCREMENT ids, every row kept; the
/// jobs' sequence starts past every id a dead letter names, so no job id is reused.
const MIGRATE_0_TO_1: &str = "
CREATE TABLE jobs_v1 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    lease_token   TEXT
);
INSERT INTO jobs_v1 (id, body, visible_at, receive_count, lease_token)
    SELECT id, body, visible_at, receive_count, lease_token FROM jobs ORDER BY id;
DROP TABLE jobs;
ALTER TABLE jobs_v1 RENAME TO jobs;
CREATE INDEX IF NOT EXISTS jobs_visible ON jobs (visible_at, id);
CREATE TABLE dead_letters_v1 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    receive_count INTEGER NOT NULL,
    at            INTEGER NOT NULL
);
INSERT INTO dead_letters_v1 (job_id, body, reason, receive_count, at)
    SELECT id, body, reason, receive_count, at FROM dead_letters ORDER BY at, id;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_v1 RENAME TO dead_letters;
DELETE FROM sqlite_sequence WHERE name = 'jobs';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs', MAX(
    COALESCE((SELECT MAX(id) FROM jobs), 0),
    COALESCE((SELECT MAX(job_id) FROM dead_letters), 0));
";

/// Creates the schema, or brings an older one up to [`SCHEMA_VERSION`], in one
/// write transaction (two processes opening at once migrate once).
fn ensure_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < SCHEMA_VERSION {
        let has_jobs: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs')",
            [],
            |r| r.get(0),
        )?;
        if has_jobs {
            tx.execute_batch(MIGRATE_0_TO_1)?;
        } else {
            tx.execute_batch(SCHEMA)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()
}

/// A queue in one SQLite file, safe to share between processes.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue database at `path`; the parent directory
    /// must exist. For `plan`, which makes the queue.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteQueue, QueueError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|e| classify(&path, "open", e))?;
        Self::set_up(conn, path)
    }

    /// Opens the queue database at `path`, which must exist (the agent: a mistyped
    /// path is refused, not run as an empty queue). Creates nothing but SQLite's own
    /// `-wal`/`-shm` files beside it, and checks that the database can be written.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteQueue, QueueError> {
        let path = path.as_ref().to_path_buf();
        must_exist(&path)?;
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| classify(&path, "open", e))?;
        let q = Self::set_up(conn, path)?;
        {
            // Take the write lock and let it go: a read-only file, file system or
            // database says so now, not at the first lease.
            // Busy is another process writing: then it is writable.
            let conn = q.conn.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
                let _ = conn.execute_batch("ROLLBACK;");
                match classify(&q.path, "write", e) {
                    QueueError::Retryable(_) => {}
                    other => return Err(other),
                }
            }
        }
        Ok(q)
    }

    /// Opens the queue database at `path`, which must exist, to read it (`status`):
    /// changes nothing in it and creates no file.
    pub fn open_to_read(path: impl AsRef<Path>) -> Result<SqliteQueue, QueueError> {
        let path = path.as_ref().to_path_buf();
        must_exist(&path)?;
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| classify(&path, "open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(&path, "set busy_timeout", e))?;
        Ok(SqliteQueue {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn set_up(conn: Connection, path: PathBuf) -> Result<SqliteQueue, QueueError> {
        let err = |what: &str, e: rusqlite::Error| classify(&path, what, e);
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err("set busy_timeout", e))?;
        // journal_mode answers with a row, so it is a query, not an update.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| err("switch to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Fault(format!(
                "failed to switch SQLite queue {} to WAL (journal_mode is {mode}){}",
                path.display(),
                io_cause(&path).map_or(String::new(), |c| format!(": {c}"))
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err("set synchronous", e))?;
        let mut conn = conn;
        ensure_schema(&mut conn).map_err(|e| err("create the schema", e))?;
        Ok(SqliteQueue {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dead letters: (body, reason, receive count), in the order they died.
    pub fn dead_letters(&self) -> Result<Vec<(String, String, u32)>, QueueError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let read = || -> rusqlite::Result<Vec<(String, String, u32)>> {
            let mut st =
                conn.prepare("SELECT body, reason, receive_count FROM dead_letters ORDER BY id")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        };
        read().map_err(|e| classify(&self.path, "read the dead letters", e))
    }

    /// Runs `f` on the connection off the async threads; `what` names it in errors.
    async fn with_conn<T, F>(&self, what: &'static str, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Failure::Sql(e))) => Err(classify(&path, what, e)),
            Ok(Err(Failure::Lost(why))) => Err(QueueError::LeaseLost(format!(
                "failed to {what} on SQLite queue {}: {why}",
                path.display()
            ))),
            Err(e) => Err(QueueError::Fault(format!(
                "failed to {what} on SQLite queue {}: the database task failed: {e}",
                path.display()
            ))),
        }
    }

    fn lease_now(
        conn: &mut Connection,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Lease>, Failure> {
        let now = now_ms();
        let until = now.saturating_add(ms(visibility));
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let picked: Vec<(i64, String, u32)> = {
            let mut st = tx.prepare_cached(
                "SELECT id, body, receive_count FROM jobs WHERE visible_at <= ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, max as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(picked.len());
        {
            let mut st = tx.prepare_cached(
                "UPDATE jobs SET visible_at = ?1, receive_count = receive_count + 1, lease_token = ?2 WHERE id = ?3",
            )?;
            for (id, body, count) in picked {
                let token = new_token();
                st.execute(params![until, token, id])?;
                out.push(Lease {
                    message_id: id.to_string(),
                    handle: token,
                    body,
                    receive_count: count.saturating_add(1),
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

/// Why a database closure failed: SQLite said no, or the lease is not ours.
enum Failure {
    Sql(rusqlite::Error),
    Lost(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

/// A queue file that must be there: a missing one is a wrong path (`BadUrl`: the
/// command line or config names a queue that does not exist), anything else about it
/// a fault.
fn must_exist(path: &Path) -> Result<(), QueueError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(QueueError::BadUrl(format!(
            "SQLite queue {} is not a file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(QueueError::BadUrl(format!(
            "no SQLite queue at {}: the file does not exist (`rangefleet plan` creates it; \
             check the path)",
            path.display()
        ))),
        Err(e) => Err(QueueError::Fault(format!(
            "failed to open SQLite queue {}: {}",
            path.display(),
            io_words(&e)
        ))),
    }
}

/// SQLITE_BUSY/LOCKED is another process holding the lock past our busy timeout:
/// retry. Anything else (no such directory, read-only file, corrupt database) needs a
/// person, and the message says which in plain words before SQLite's own.
fn classify(path: &Path, what: &str, e: rusqlite::Error) -> QueueError {
    use rusqlite::ffi::ErrorCode;
    let code = e.sqlite_error_code();
    let cause = match code {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Some(
            "the database is corrupt (damaged, or not a SQLite queue): restore it, or plan \
             again into a new file"
                .to_string(),
        ),
        Some(ErrorCode::DiskFull) => Some("disk full".to_string()),
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure,
        ) => io_cause(path).or_else(|| {
            (code == Some(ErrorCode::ReadOnly)).then(|| "the database is read-only".to_string())
        }),
        _ => None,
    };
    let msg = match cause {
        Some(c) => format!(
            "failed to {what} on SQLite queue {}: {c} ({e})",
            path.display()
        ),
        None => format!("failed to {what} on SQLite queue {}: {e}", path.display()),
    };
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => QueueError::Retryable(msg),
        _ => QueueError::Fault(msg),
    }
}

/// Why the file at `path` cannot be written, in plain words, when the file system
/// says: read-only file system, disk full, permission denied, no such folder.
fn io_cause(path: &Path) -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            if dir.is_dir() {
                // SQLite would create it: what stops it is the folder.
                std::fs::metadata(dir)
                    .err()
                    .map(|e| io_words(&e))
                    .or_else(|| fs_state(dir))
            } else {
                Some(format!("the folder {} does not exist", dir.display()))
            }
        }
        Err(e) => Some(io_words(&e)),
        Ok(_) => fs_state(path),
    }
}

/// "read-only file system" or "disk full" when the file system holding `path` is.
fn fs_state(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct it is given from a NUL-terminated path.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st)
    }?;
    if st.f_flag & libc::ST_RDONLY != 0 {
        Some("read-only file system".into())
    } else if st.f_bavail == 0 {
        Some("disk full".into())
    } else {
        None
    }
}

/// An I/O error in the words the operator needs.
fn io_words(e: &std::io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let words = match code {
        libc::EROFS => "read-only file system",
        libc::ENOSPC | libc::EDQUOT => "disk full",
        libc::EACCES => "permission denied",
        libc::EPERM => "not permitted (an immutable file?)",
        _ => return e.to_string(),
    };
    format!("{words} (os error {code})")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn job_id(lease: &Lease) -> Result<i64, Failure> {
    lease
        .message_id
        .parse()
        .map_err(|_| Failure::Lost(format!("{:?} is not a SQLite message id", lease.message_id)))
}

/// The lease no longer matches the row: acked, released, or leased again by another.
fn lost(lease: &Lease) -> Failure {
    Failure::Lost(format!(
        "message {} is no longer held by this lease",
        lease.message_id
    ))
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn lease(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self
                .with_conn("lease", move |c| Self::lease_now(c, max, visibility))
                .await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || max == 0 || now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep_until(deadline.min(now + POLL)).await;
        }
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<(), QueueError> {
        let lease = lease.clone();
        self.with_conn("extend a lease", move |c| {
            let until = now_ms().saturating_add(ms(visibility));
            let n = c.execute(
                "UPDATE jobs SET visible_at = ?1 WHERE id = ?2 AND lease_token = ?3",
                params![until, job_id(&lease)?, lease.handle],
            )?;
            if n == 0 {
                return Err(lost(&lease));
            }
            Ok(())
        })
        .await
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let lease = lease.clone();
        self.with_conn("ack", move |c| {
            let n = c.execute(
                "DELETE FROM jobs WHERE id = ?1 AND lease_token = ?2",
                params![job_id(&lease)?, lease.handle],
            )?;
            if n == 0 {
                return Err(lost(&lease));
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        let lease = lease.clone();
        self.with_conn("release", move |c| {
            let n = c.execute(
                "UPDATE jobs SET visible_at = ?1, lease_token = NULL WHERE id = ?2 AND lease_token = ?3",
                params![now_ms(), job_id(&lease)?, lease.handle],
            )?;
            if n == 0 {
                return Err(lost(&lease));
            }
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        let lease = lease.clone();
        let reason = reason.to_string();
        self.with_conn("dead-letter", move |c| {
            let id = job_id(&lease)?;
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, u32)> = tx
                .query_row(
                    "SELECT body, receive_count FROM jobs WHERE id = ?1 AND lease_token = ?2",
                    params![id, lease.handle],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((body, count)) = row else {
                return Err(lost(&lease));
            };
            tx.execute(
                "INSERT INTO dead_letters (job_id, body, reason, receive_count, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, body, reason, count, now_ms()],
            )?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        let bodies = bodies.to_vec();
        self.with_conn("enqueue", move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO jobs (body, visible_at, receive_count) VALUES (?1, 0, 0)",
                )?;
                for b in &bodies {
                    st.execute(params![b])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.with_conn("read stats", move |c| {
            let now = now_ms();
            let (visible, in_flight): (i64, i64) = c.query_row(
                "SELECT COALESCE(SUM(visible_at <= ?1), 0), COALESCE(SUM(visible_at > ?1), 0) FROM jobs",
                params![now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let dead: i64 = c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
            Ok(QueueStats {
                visible: visible.max(0) as u64,
                in_flight: in_flight.max(0) as u64,
                dead: dead.max(0) as u64,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rangefleet-sqlite-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("queue.db")
    }

    #[tokio::test]
    async fn a_stale_token_is_lease_lost() {
        let path = temp_db("stale");
        let q = SqliteQueue::open(&path).unwrap();
        q.enqueue(&["a".to_string()]).await.unwrap();
        let l = q
            .lease(1, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        q.release(&l).await.unwrap();
        let again = q
            .lease(1, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(again.receive_count, 2);
        for r in [
            q.extend(&l, Duration::from_secs(1)).await,
            q.ack(&l).await,
            q.release(&l).await,
            q.dead_letter(&l, "x").await,
        ] {
            assert!(matches!(r, Err(QueueError::LeaseLost(_))), "{r:?}");
        }
        q.ack(&again).await.unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn dead_letter_keeps_body_reason_and_count() {
        let path = temp_db("dead");
        let q = SqliteQueue::open(&path).unwrap();
        q.enqueue(&["{\"v\":1}".to_string()]).await.unwrap();
        let l = q
            .lease(1, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        q.dead_letter(&l, "unknown processor").await.unwrap();
        assert_eq!(
            q.dead_letters().unwrap(),
            vec![("{\"v\":1}".into(), "unknown processor".into(), 1)]
        );
        // Reopening finds the same state: the schema is created only if absent.
        let q2 = SqliteQueue::open(&path).unwrap();
        assert_eq!(q2.stats().await.unwrap().dead, 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    async fn lease_one(q: &SqliteQueue) -> Lease {
        q.lease(1, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
            .remove(0)
    }

    #[tokio::test]
    async fn dead_letters_of_two_plans_are_both_kept() {
        let path = temp_db("two-plans");
        let q = SqliteQueue::open(&path).unwrap();
        // Plan 1: one job, dead-lettered; the jobs table is empty again.
        q.enqueue(&["plan-1".to_string()]).await.unwrap();
        let first = lease_one(&q).await;
        q.dead_letter(&first, "first reason").await.unwrap();
        // Plan 2 into the same queue: its job must not take the first one's id.
        q.enqueue(&["plan-2".to_string()]).await.unwrap();
        let second = lease_one(&q).await;
        assert_ne!(
            first.message_id, second.message_id,
            "a message id was reused"
        );
        q.dead_letter(&second, "second reason").await.unwrap();
        assert_eq!(
            q.dead_letters().unwrap(),
            vec![
                ("plan-1".into(), "first reason".into(), 1),
                ("plan-2".into(), "second reason".into(), 1)
            ]
        );
        assert_eq!(q.stats().await.unwrap().dead, 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_version_0_database_is_migrated_with_every_row_and_no_id_reused() {
        let path = temp_db("migrate");
        {
            // The first schema, exactly as earlier agents created it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE jobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL,
                    visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0,
                    lease_token TEXT);
                 CREATE INDEX jobs_visible ON jobs (visible_at, id);
                 CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, body TEXT NOT NULL,
                    reason TEXT NOT NULL, receive_count INTEGER NOT NULL, at INTEGER NOT NULL);
                 INSERT INTO dead_letters VALUES (7, 'old dead', 'old reason', 5, 1000);
                 INSERT INTO jobs VALUES (3, 'waiting', 0, 0, NULL);",
            )
            .unwrap();
        }
        let q = SqliteQueue::open(&path).unwrap();
        assert_eq!(
            q.dead_letters().unwrap(),
            vec![("old dead".into(), "old reason".into(), 5)]
        );
        let waiting = lease_one(&q).await;
        assert_eq!(
            (waiting.message_id.as_str(), waiting.body.as_str()),
            ("3", "waiting")
        );
        q.ack(&waiting).await.unwrap();
        // New jobs start past every id a dead letter names.
        q.enqueue(&["new".to_string()]).await.unwrap();
        let new = lease_one(&q).await;
        assert!(new.message_id.parse::<i64>().unwrap() > 7, "{new:?}");
        q.dead_letter(&new, "new reason").await.unwrap();
        assert_eq!(q.dead_letters().unwrap().len(), 2);
        // Opening again leaves a migrated database as it is.
        drop(q);
        let again = SqliteQueue::open(&path).unwrap();
        assert_eq!(again.dead_letters().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn opening_in_a_missing_directory_is_a_fault_naming_the_path() {
        let err = SqliteQueue::open("/nonexistent-rangefleet-dir/q.db").unwrap_err();
        assert!(matches!(err, QueueError::Fault(_)), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent-rangefleet-dir/q.db"),
            "{err}"
        );
    }

    #[test]
    fn a_queue_that_must_exist_is_not_created_and_says_why_it_cannot_be_used() {
        let path = temp_db("exist");
        for open in [SqliteQueue::open_existing, SqliteQueue::open_to_read] {
            let err = open(&path).unwrap_err();
            assert!(matches!(err, QueueError::BadUrl(_)), "{err:?}");
            assert!(err.to_string().contains("does not exist"), "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            assert!(!path.exists(), "{} was created", path.display());
        }
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        for open in [SqliteQueue::open_existing, SqliteQueue::open] {
            let err = open(&path).unwrap_err();
            assert!(matches!(err, QueueError::Fault(_)), "{err:?}");
            assert!(err.to_string().contains("database is corrupt"), "{err}");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
