//! systemd glue: sd_notify states. Every call is a no-op outside systemd
//! (no `NOTIFY_SOCKET`), so the agent runs the same on a laptop.
//!
//! The worker talks to the service manager through [`Notifier`], so a test can run the
//! loop with a [`Recorder`] and see whether the pings stop when the loop does.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// `READY=1`: boot is done and the agent is about to lease.
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// `STATUS=…`: one line for `systemctl status`. A line equal to the last one sent is
/// not sent again, so the loop may call this on every turn.
pub fn status(line: &str) {
    static LAST: Mutex<String> = Mutex::new(String::new());
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if *last == line {
            return;
        }
        line.clone_into(&mut last);
    }
    notify(&[NotifyState::Status(line)]);
}

/// `WATCHDOG=1`: the loop is alive. Call it from the loop's own turns (each lease poll,
/// each heartbeat), never from a timer of its own: a stuck loop must stop the pings.
///
/// Sent only when systemd asked for a watchdog for this process (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` unset or ours), and at most every quarter of its interval, so calling
/// it often is cheap.
pub fn watchdog() {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < interval / 4) {
            return;
        }
        *last = Some(now);
    }
    notify(&[NotifyState::Watchdog]);
}

/// `STOPPING=1`: drained, about to exit.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd set for this process (`WatchdogSec=`), if any.
/// Read once: the environment does not change under a running service.
pub fn watchdog_interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(|| sd_notify::watchdog_enabled().filter(|d| !d.is_zero()))
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// What the worker loop tells the service manager, as a seam: [`Systemd`] in the
/// agent, [`Recorder`] in tests, `()` when nobody listens.
pub trait Notifier: Send + Sync {
    /// The loop took a turn (a lease poll returned, a heartbeat went out).
    fn watchdog(&self) {}
    /// A one-line summary of what the agent is doing.
    fn status(&self, _line: &str) {}
}

/// Says nothing.
impl Notifier for () {}

/// The real service manager, through `NOTIFY_SOCKET`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Systemd;

impl Notifier for Systemd {
    fn watchdog(&self) {
        watchdog();
    }
    fn status(&self, line: &str) {
        status(line);
    }
}

/// One thing a [`Recorder`] was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STATUS=…`.
    Status(String),
}

/// A fake [`Notifier`] that keeps every note with the (tokio, so pausable) time it came.
#[derive(Debug, Default)]
pub struct Recorder {
    notes: Mutex<Vec<(tokio::time::Instant, Note)>>,
}

impl Recorder {
    /// Everything recorded so far, oldest first.
    pub fn notes(&self) -> Vec<(tokio::time::Instant, Note)> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// When the last `WATCHDOG=1` came, if one did.
    pub fn last_watchdog(&self) -> Option<tokio::time::Instant> {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(_, n)| *n == Note::Watchdog)
            .map(|(t, _)| *t)
    }

    fn push(&self, note: Note) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tokio::time::Instant::now(), note));
    }
}

impl Notifier for Recorder {
    fn watchdog(&self) {
        self.push(Note::Watchdog);
    }
    fn status(&self, line: &str) {
        self.push(Note::Status(line.to_string()));
    }
}
