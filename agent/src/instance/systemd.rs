//! systemd glue: sd_notify states behind the [`Notifier`] seam.
//!
//! [`SdNotify`] sends them to systemd, and is a no-op outside systemd (no
//! `NOTIFY_SOCKET`), so the agent runs the same on a laptop. [`Recorder`] keeps them for
//! in-process tests. The worker loop calls [`Notifier::watchdog`] and
//! [`Notifier::status`] from its own turns, so a stuck loop stops the pings;
//! `tests/tests/systemd_notify.rs` checks that against a real notify socket.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// What the agent tells its service manager.
pub trait Notifier: Send + Sync {
    /// `READY=1`: boot is done and the agent is about to lease.
    fn ready(&self);
    /// `STATUS=…`: one line for `systemctl status`.
    fn status(&self, line: &str);
    /// `WATCHDOG=1`: the loop is alive. Call it from the loop's own turns, never from a
    /// timer of its own: a stuck loop must stop the pings.
    fn watchdog(&self);
    /// `STOPPING=1`: drained, about to exit.
    fn stopping(&self);
    /// The watchdog interval the service manager asked for, if any.
    fn watchdog_interval(&self) -> Option<Duration>;
}

/// The real notifier: sd_notify to `NOTIFY_SOCKET`.
#[derive(Debug, Default)]
pub struct SdNotify {
    last_status: Mutex<String>,
    last_watchdog: Mutex<Option<Instant>>,
}

impl Notifier for SdNotify {
    fn ready(&self) {
        notify(&[NotifyState::Ready]);
    }

    /// A line equal to the last one sent is not sent again, so the loop may call this
    /// on every turn.
    fn status(&self, line: &str) {
        {
            let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
            if *last == line {
                return;
            }
            line.clone_into(&mut last);
        }
        notify(&[NotifyState::Status(line)]);
    }

    /// Sent only when systemd asked for a watchdog for this process (`WATCHDOG_USEC`, and
    /// `WATCHDOG_PID` unset or ours), and at most every quarter of its interval, so
    /// calling it often is cheap.
    fn watchdog(&self) {
        let Some(interval) = self.watchdog_interval() else {
            return;
        };
        {
            let mut last = self.last_watchdog.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < interval / 4) {
                return;
            }
            *last = Some(now);
        }
        notify(&[NotifyState::Watchdog]);
    }

    fn stopping(&self) {
        notify(&[NotifyState::Stopping]);
    }

    /// Read once: the environment does not change under a running service.
    fn watchdog_interval(&self) -> Option<Duration> {
        static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
        *INTERVAL.get_or_init(|| sd_notify::watchdog_enabled().filter(|d| !d.is_zero()))
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(event = "sd_notify_failed", error = %e, "sd_notify failed");
    }
}

#[cfg(any(test, feature = "test-util"))]
/// A notifier that records what it was told, for in-process tests.
#[derive(Debug, Default)]
pub struct Recorder {
    states: Mutex<Vec<String>>,
    /// The watchdog interval it reports.
    pub interval: Option<Duration>,
}

#[cfg(any(test, feature = "test-util"))]
impl Recorder {
    /// Every state so far, as sd_notify would write it (`READY=1`, `STATUS=…`), in order.
    pub fn states(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn push(&self, s: String) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Notifier for Recorder {
    fn ready(&self) {
        self.push("READY=1".into());
    }
    fn status(&self, line: &str) {
        let line = format!("STATUS={line}");
        let states = self.states();
        if states.iter().rev().find(|s| s.starts_with("STATUS=")) != Some(&line) {
            self.push(line);
        }
    }
    fn watchdog(&self) {
        self.push("WATCHDOG=1".into());
    }
    fn stopping(&self) {
        self.push("STOPPING=1".into());
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        self.interval
    }
}
