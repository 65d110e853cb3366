//! The `exec` processor: runs the command from the config (never from a job) with the
//! job's records on stdin and takes its stdout, one JSON value, as the output.
//!
//! No shell; a minimal environment; its own process group, so a timeout kills the
//! command and anything it started; stdout capped; the last 2 KiB of stderr kept for
//! the error, since that is what a person needs to see why a step failed.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

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

/// Runs `spec`'s command with `records` on stdin and `env` (e.g. `RANGEFLEET_JOB_ID`,
/// `RANGEFLEET_PARTITION`) on top of a minimal environment (`PATH`, `HOME=/tmp`,
/// `LANG=C.UTF-8`); returns its stdout parsed as one JSON value.
pub async fn run_exec(
    spec: &ExecSpec,
    records: &[u8],
    env: &[(String, String)],
) -> Result<Value, ExecError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let fail = |failure: ExecFailure, tail: &Mutex<Vec<u8>>| ExecError {
        program: program.clone(),
        failure,
        stderr_tail: String::from_utf8_lossy(&tail.lock().expect("tail lock")).into_owned(),
    };
    let tail = Arc::new(Mutex::new(Vec::new()));
    if program.is_empty() {
        return Err(fail(ExecFailure::Spawn("argv is empty".into()), &tail));
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
        .map_err(|e| fail(ExecFailure::Spawn(e.to_string()), &tail))?;
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
    // Feed stdin while reading stdout: either pipe filling up would otherwise block
    // the other side for ever.
    let io = async {
        let (out, ()) = tokio::join!(
            async {
                let r = read_limited(&mut stdout, max).await;
                if r.is_err() {
                    kill_group(pid);
                }
                r
            },
            feed(stdin, records)
        );
        out
    };
    let outcome = match tokio::time::timeout_at(deadline, io).await {
        Err(_) => Err(ExecFailure::Timeout(spec.timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(out)) => match tokio::time::timeout_at(deadline, child.wait()).await {
            Err(_) => Err(ExecFailure::Timeout(spec.timeout)),
            Ok(Err(e)) => Err(ExecFailure::Io(e.to_string())),
            Ok(Ok(status)) => match (status.code(), status.signal()) {
                (Some(0), _) => Ok(out),
                (Some(c), _) => Err(ExecFailure::Exit(c)),
                (None, Some(s)) => Err(ExecFailure::Signal(s)),
                (None, None) => Err(ExecFailure::Io(format!("unknown exit status {status}"))),
            },
        },
    };
    if outcome.is_err() {
        kill_group(pid);
        let _ = child.wait().await;
    }
    // Whatever the command left running in its group holds stderr open; don't wait long.
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
    let out = outcome.map_err(|f| fail(f, &tail))?;
    serde_json::from_slice::<Value>(&out)
        .map_err(|e| fail(ExecFailure::BadJson(e.to_string()), &tail))
}

/// Writes the records and closes stdin; a command that stops reading early is its own
/// business (its exit status and output decide), so a broken pipe is not an error.
async fn feed(mut stdin: ChildStdin, records: &[u8]) {
    let _ = stdin.write_all(records).await;
    let _ = stdin.shutdown().await;
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
}
