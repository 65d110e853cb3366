//! systemd glue: sd_notify states. Every call is a no-op outside systemd
//! (no `NOTIFY_SOCKET`), so the agent runs the same on a laptop.
//!
//! The worker loop calls [`watchdog`] and [`status`] from its own turns, so a stuck
//! loop stops the pings; `tests/tests/systemd_notify.rs` checks that against a real
//! notify socket.

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
        tracing::warn!(event = "sd_notify_failed", error = %e, "sd_notify failed");
    }
}
