//! The `exec` processor: runs the command from the config (never from a job) with the
//! job's records on stdin and takes its stdout, one JSON value, as the output.
//!
//! No shell; a minimal environment; its own process group, so a timeout, a drain or a
//! lost lease kills the command and anything it started; stdout capped; the last 2 KiB
//! of stderr kept for the error, since that is what a person needs to see why a step
//! failed. The records stream to stdin through a bounded buffer ([`Feed`],
//! [`STDIN_BUFFER`]) as the job reads them: a 512 MiB job never sits in memory.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// How much of the end of stderr an error carries.
pub const STDERR_TAIL: usize = 2048;

/// `PATH` for the command when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments; run directly, no shell.
    pub argv: Vec<String>,
    /// Longest a run may take, writing the records included.
    pub timeout: Duration,
    /// Largest stdout accepted.
    pub max_output_bytes: u64,
}

/// How a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecFailure {
    /// The command could not be started.
    Spawn(String),
    /// It exited with a non-zero status.
    Exit(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past the timeout and was killed.
    Timeout(Duration),
    /// It wrote more than the limit to stdout and was killed.
    OutputTooLarge(u64),
    /// Its stdout was not exactly one JSON value.
    BadJson(String),
    /// Reading or writing its pipes failed.
    Io(String),
}

impl std::fmt::Display for ExecFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecFailure::Spawn(e) => write!(f, "failed to start: {e}"),
            ExecFailure::Exit(c) => write!(f, "exited with status {c}"),
            ExecFailure::Signal(s) => write!(f, "killed by signal {s}"),
            ExecFailure::Timeout(t) => {
                write!(f, "timed out after {}s and was killed", t.as_secs_f64())
            }
            ExecFailure::OutputTooLarge(n) => write!(f, "output larger than {n} bytes"),
            ExecFailure::BadJson(e) => write!(f, "stdout is not exactly one JSON value: {e}"),
            ExecFailure::Io(e) => write!(f, "pipe error: {e}"),
        }
    }
}

/// A failed run: what happened, and the end of the command's stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exec {program}: {failure}{}", tail_suffix(.stderr_tail))]
pub struct ExecError {
    /// `argv[0]`.
    pub program: String,
    /// What went wrong.
    pub failure: ExecFailure,
    /// The last [`STDERR_TAIL`] bytes of stderr (lossy UTF-8).
    pub stderr_tail: String,
}

fn tail_suffix(t: &str) -> String {
    if t.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr tail:\n{}", t.trim_end())
    }
}

/// Bytes of records a job holds between reading them and the command's stdin.
pub const STDIN_BUFFER: usize = 4 << 20;

/// Why a streamed run failed: the command, or the records' source.
#[derive(Debug)]
pub enum Failed<E> {
    /// The command failed (its records may have been read in full or not).
    Exec(ExecError),
    /// Reading the records failed; the command was killed and its output ignored.
    Input(E),
}

/// What ended a run early, before the stderr tail is attached.
enum Stop<E> {
    Exec(ExecFailure),
    Input(E),
}

/// The writing end of a bounded buffer of records for a command's stdin: `push`
/// collects records without waiting, `flush` moves them into the buffer once it has
/// room. At most [`STDIN_BUFFER`] bytes (or one larger push) wait in it; the rest of
/// the job is not read yet.
#[derive(Debug)]
pub struct Feed {
    pending: Vec<u8>,
    room: Arc<Semaphore>,
    capacity: usize,
    tx: mpsc::UnboundedSender<(Vec<u8>, OwnedSemaphorePermit)>,
}

/// The reading end of a [`Feed`], for [`run_exec_streaming`].
#[derive(Debug)]
pub struct FeedReader {
    rx: mpsc::UnboundedReceiver<(Vec<u8>, OwnedSemaphorePermit)>,
}

/// A buffer of `capacity` bytes from a job's reads to a command's stdin.
pub fn feed(capacity: usize) -> (Feed, FeedReader) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, rx) = mpsc::unbounded_channel();
    let feed = Feed {
        pending: Vec::new(),
        room: Arc::new(Semaphore::new(capacity)),
        capacity,
        tx,
    };
    (feed, FeedReader { rx })
}

impl Feed {
    /// Collects records; they reach the buffer at the next [`Feed::flush`].
    pub fn push(&mut self, records: &[u8]) {
        self.pending.extend_from_slice(records);
    }

    /// True when records wait for a [`Feed::flush`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits for room in the buffer, then moves the collected records into it.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A push larger than the whole buffer waits until the buffer is empty.
        let want = self.pending.len().min(self.capacity) as u32;
        let Ok(permit) = Arc::clone(&self.room).acquire_many_owned(want).await else {
            return; // never closed
        };
        // The reader is gone only when the run has ended: nothing to feed.
        let _ = self.tx.send((std::mem::take(&mut self.pending), permit));
    }

    /// Flushes the last records and closes the command's stdin after them.
    pub async fn finish(mut self) {
        self.flush().await;
    }
}

/// Runs `spec`'s command with `records` on stdin and `env` (e.g. `RANGEFLEET_JOB_ID`,
/// `RANGEFLEET_PARTITION`) on top of a minimal environment (`PATH`, `HOME=/tmp`,
/// `LANG=C.UTF-8`); returns its stdout parsed as one JSON value.
pub async fn run_exec(
    spec: &ExecSpec,
    records: &[u8],
    env: &[(String, String)],
) -> Result<Value, ExecError> {
    let (mut feed, reader) = feed(STDIN_BUFFER);
    let input = async move {
        for chunk in records.chunks(STDIN_BUFFER) {
            feed.push(chunk);
            feed.flush().await;
        }
        Ok::<(), std::convert::Infallible>(())
    };
    match run_exec_streaming(spec, env, reader, input).await {
        Ok((v, ())) => Ok(v),
        Err(Failed::Exec(e)) => Err(e),
        Err(Failed::Input(never)) => match never {},
    }
}

/// Runs `spec`'s command like [`run_exec`], its stdin fed from `records` while `input`
/// (the job's reads, writing into the [`Feed`] of `records` and finishing it) runs:
/// memory is bounded by the feed's buffer, not by the job. `spec.timeout` covers the
/// whole run, the reads included.
///
/// A command that stops reading early is its own business (its exit status and output
/// decide), but the rest of its records are still read, so that the job's checks
/// (size, ETag) and its byte count hold as if it had read them all. If `input` fails,
/// the command's group is killed at once and the failure is [`Failed::Input`]; if the
/// command fails first, `input` is dropped (its reads cancelled).
pub async fn run_exec_streaming<T, E>(
    spec: &ExecSpec,
    env: &[(String, String)],
    records: FeedReader,
    input: impl std::future::Future<Output = Result<T, E>>,
) -> Result<(Value, T), Failed<E>> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let fail = |failure: ExecFailure, tail: &Mutex<Vec<u8>>| ExecError {
        program: program.clone(),
        failure,
        stderr_tail: String::from_utf8_lossy(&tail.lock().expect("tail lock")).into_owned(),
    };
    let tail = Arc::new(Mutex::new(Vec::new()));
    if program.is_empty() {
        return Err(Failed::Exec(fail(
            ExecFailure::Spawn("argv is empty".into()),
            &tail,
        )));
    }
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
        )
        .env("HOME", "/tmp")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/tmp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failed::Exec(fail(ExecFailure::Spawn(e.to_string()), &tail)))?;
    let pid = child.id();
    // Whatever ends the job (success, failure, a drain or a lost lease dropping this
    // future), nothing the command started outlives it.
    let _group = KillGroupOnDrop(pid);
    let stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(keep_tail(stderr, Arc::clone(&tail)));

    let deadline = tokio::time::Instant::now() + spec.timeout;
    let max = spec.max_output_bytes;
    let outcome: Result<(Vec<u8>, T), Stop<E>> = {
        // Three things at once: the reads fill the buffer, the writer empties it into
        // stdin, and stdout is read while both go on (either pipe filling up would
        // otherwise block the other side for ever).
        let reads = async {
            let r = input.await;
            if r.is_err() {
                kill_group(pid);
            }
            r
        };
        let writer = write_stdin(stdin, records);
        let ran = async {
            let out = read_limited(&mut stdout, max).await;
            if out.is_err() {
                kill_group(pid);
            }
            let out = out?;
            let status = child
                .wait()
                .await
                .map_err(|e| ExecFailure::Io(e.to_string()))?;
            match (status.code(), status.signal()) {
                (Some(0), _) => Ok(out),
                (Some(c), _) => Err(ExecFailure::Exit(c)),
                (None, Some(s)) => Err(ExecFailure::Signal(s)),
                (None, None) => Err(ExecFailure::Io(format!("unknown exit status {status}"))),
            }
        };
        let all = async {
            tokio::pin!(reads, writer, ran);
            let mut read: Option<T> = None;
            let mut written = false;
            let out = loop {
                tokio::select! {
                    r = &mut reads, if read.is_none() => match r {
                        Ok(v) => read = Some(v),
                        Err(e) => return Err(Stop::Input(e)),
                    },
                    () = &mut writer, if !written => written = true,
                    r = &mut ran => break r.map_err(Stop::Exec)?,
                }
            };
            // The command succeeded: the rest of its records are still read (the
            // writer discards what it no longer takes), for the job's checks.
            let read = match read {
                Some(v) => v,
                None => {
                    let (r, ()) = tokio::join!(&mut reads, async {
                        if !written {
                            (&mut writer).await;
                        }
                    });
                    r.map_err(Stop::Input)?
                }
            };
            Ok((out, read))
        };
        match tokio::time::timeout_at(deadline, all).await {
            Err(_) => Err(Stop::Exec(ExecFailure::Timeout(spec.timeout))),
            Ok(r) => r,
        }
    };
    if outcome.is_err() {
        kill_group(pid);
        let _ = child.wait().await;
    }
    // Whatever the command left running in its group holds stderr open; don't wait long.
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
    let (out, read) = outcome.map_err(|f| match f {
        Stop::Exec(f) => Failed::Exec(fail(f, &tail)),
        Stop::Input(e) => Failed::Input(e),
    })?;
    let v = serde_json::from_slice::<Value>(&out)
        .map_err(|e| Failed::Exec(fail(ExecFailure::BadJson(e.to_string()), &tail)))?;
    Ok((v, read))
}

/// Writes the records to stdin as they come and closes it after the last; a command
/// that stops reading early is its own business (its exit status and output decide),
/// so a broken pipe is not an error: what follows is taken from the buffer and dropped.
async fn write_stdin(stdin: ChildStdin, mut records: FeedReader) {
    let mut stdin = Some(stdin);
    while let Some((chunk, room)) = records.rx.recv().await {
        if let Some(s) = stdin.as_mut() {
            if s.write_all(&chunk).await.is_err() {
                stdin = None;
            }
        }
        drop(room);
    }
    if let Some(mut s) = stdin {
        let _ = s.shutdown().await;
    }
}

async fn read_limited(r: &mut (impl AsyncRead + Unpin), max: u64) -> Result<Vec<u8>, ExecFailure> {
    let mut out = Vec::new();
    r.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .await
        .map_err(|e| ExecFailure::Io(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(ExecFailure::OutputTooLarge(max));
    }
    Ok(out)
}

/// Reads stderr to the end, keeping only its last [`STDERR_TAIL`] bytes.
async fn keep_tail(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut t = tail.lock().expect("tail lock");
        t.extend_from_slice(&buf[..n]);
        if t.len() > STDERR_TAIL {
            let cut = t.len() - STDERR_TAIL;
            t.drain(..cut);
        }
    }
}

/// Kills the command's whole process group when dropped.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// SIGKILL to the command's process group (it leads its own, `process_group(0)`).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(10),
            max_output_bytes: 1024,
        }
    }

    #[tokio::test]
    async fn cat_of_json_is_the_output() {
        let v = run_exec(&spec(&["cat"]), br#"{"a": [1, 2]}"#, &[])
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2]}));
    }

    #[tokio::test]
    async fn the_environment_is_minimal() {
        let env = [("RANGEFLEET_JOB_ID".to_string(), "j#0+1".to_string())];
        let v = run_exec(
            &spec(&["sh", "-c", r#"printf '["%s","%s","%s"]' "$RANGEFLEET_JOB_ID" "$HOME" "${AWS_SECRET_ACCESS_KEY-unset}""#]),
            b"",
            &env,
        )
        .await
        .unwrap();
        assert_eq!(v, serde_json::json!(["j#0+1", "/tmp", "unset"]));
    }

    #[tokio::test]
    async fn failures_are_errors_with_the_stderr_tail() {
        let e = run_exec(&spec(&["sh", "-c", "echo boom >&2; exit 3"]), b"", &[])
            .await
            .unwrap_err();
        assert_eq!(e.failure, ExecFailure::Exit(3));
        assert!(e.to_string().contains("boom"), "{e}");
        let e = run_exec(&spec(&["/nonexistent/step"]), b"", &[])
            .await
            .unwrap_err();
        assert!(matches!(e.failure, ExecFailure::Spawn(_)), "{e}");
        let e = run_exec(&spec(&["echo", "1 2"]), b"", &[])
            .await
            .unwrap_err();
        assert!(matches!(e.failure, ExecFailure::BadJson(_)), "{e}");
        let e = run_exec(&spec(&["sh", "-c", "yes"]), b"", &[])
            .await
            .unwrap_err();
        assert_eq!(e.failure, ExecFailure::OutputTooLarge(1024));
        assert!(
            e.to_string().contains("output larger than 1024 bytes"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_command_that_ignores_stdin_does_not_deadlock() {
        // 8 MB of records to a command that never reads them.
        let records = vec![b'x'; 8 << 20];
        let v = run_exec(&spec(&["echo", "7"]), &records, &[])
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!(7));
    }

    /// Feeds `total` bytes in pushes of `chunk`, counting what went into the feed.
    async fn count_in(
        mut feed: Feed,
        total: usize,
        chunk: usize,
        fed: &std::sync::atomic::AtomicUsize,
    ) -> Result<usize, String> {
        let block = vec![b'r'; chunk];
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            feed.push(&block[..n]);
            feed.flush().await;
            sent += n;
            fed.store(sent, std::sync::atomic::Ordering::SeqCst);
        }
        feed.finish().await;
        Ok(sent)
    }

    #[tokio::test]
    async fn records_stream_through_a_bounded_buffer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // 64 MiB to a command that waits a second before reading: meanwhile the reads
        // get no further than the buffer, the pipe and one push ahead of it.
        let total = 64 << 20;
        let chunk = 256 << 10;
        let fed = AtomicUsize::new(0);
        let (feed, records) = feed(STDIN_BUFFER);
        let slow = spec(&["sh", "-c", "sleep 1; wc -c"]);
        let run = run_exec_streaming(&slow, &[], records, count_in(feed, total, chunk, &fed));
        let watch = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            fed.load(Ordering::SeqCst)
        };
        let (result, early) = tokio::join!(run, watch);
        let (v, sent) = result.unwrap();
        assert_eq!((v, sent), (serde_json::json!(total), total));
        assert!(
            early <= STDIN_BUFFER + (1 << 20) + chunk,
            "{early} bytes were read ahead of a command that was not reading"
        );
    }

    #[tokio::test]
    async fn a_failed_read_kills_the_command_and_wins() {
        let (mut feed, records) = feed(STDIN_BUFFER);
        let input = async move {
            feed.push(b"[1]");
            feed.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<(), _>("the store failed")
        };
        // cat would print a valid output from what it got before the failure.
        match run_exec_streaming(&spec(&["cat"]), &[], records, input).await {
            Err(Failed::Input(e)) => assert_eq!(e, "the store failed"),
            other => panic!("expected the input's failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_command_that_stops_reading_still_has_its_range_read() {
        use std::sync::atomic::AtomicUsize;
        let fed = AtomicUsize::new(0);
        let (feed, records) = feed(1 << 20);
        let (v, sent) = run_exec_streaming(
            &spec(&["echo", "7"]),
            &[],
            records,
            count_in(feed, 32 << 20, 64 << 10, &fed),
        )
        .await
        .unwrap();
        assert_eq!((v, sent), (serde_json::json!(7), 32 << 20));
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|s| s != "Z" && s != "X")
        })
    }

    #[tokio::test]
    async fn dropping_a_run_kills_the_grandchildren_too() {
        // What a lost lease or an abandoned job does: the run's future is dropped.
        let dir = std::env::temp_dir().join(format!(
            "rangefleet-exec-drop-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("grandchild");
        let script = format!(
            "sleep 300 & echo $! > {0}.tmp; mv {0}.tmp {0}; sleep 300",
            pidfile.display()
        );
        let spec = spec(&["sh", "-c", &script]);
        let run = run_exec(&spec, b"", &[]);
        let pid = tokio::select! {
            _ = run => panic!("the command ended"),
            pid = async {
                loop {
                    if let Ok(t) = std::fs::read_to_string(&pidfile) {
                        break t.trim().parse::<i32>().unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            } => pid,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let survived = alive(pid);
        if survived {
            // SAFETY: kill(2) on the pid the test's own command wrote.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!survived, "the grandchild {pid} outlived its dropped run");
    }
}
