//! systemd glue: sd_notify states. Every call is a no-op outside systemd
//! (no `NOTIFY_SOCKET`), so the agent runs the same on a laptop.

use sd_notify::NotifyState;

/// `READY=1`: boot is done and the agent is about to lease.
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// `STATUS=…`: one line for `systemctl status`.
pub fn status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

/// `WATCHDOG=1`: the loop is alive. Sent from the loop's own turns.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// `STOPPING=1`: drained, about to exit.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
