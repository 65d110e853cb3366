//! Logs: human lines on a terminal, JSON for collectors, native journald entries
//! under systemd. Never the token, credentials or whole user-data.
//!
//! Journald entries carry every field of the event and of the spans it happened in,
//! upper-cased and without a prefix: the worker's span per job gives each entry
//! `JOB_ID`, `SOURCE` and `PARTITION`; operators' events carry a stable `MESSAGE_ID`
//! (see `instance::events`). A tracing field is therefore a journal field: never
//! name one `message_id` unless it holds one of those 128-bit ids.

use std::io;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `SYSLOG_IDENTIFIER` of every journal entry (`journalctl -t rangefleet`).
pub const SYSLOG_IDENTIFIER: &str = "rangefleet";

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when stderr is the journal (JOURNAL_STREAM names it), text otherwise.
    Auto,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object a line on stderr.
    Json,
    /// Native journald entries with fields (JOB_ID, PARTITION, MESSAGE_ID …).
    Journald,
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
///
/// Never fails: when journald is asked for but its socket cannot be reached, logs go
/// to stderr as text, after one warning saying why.
pub fn init(format: LogFormat) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    };
    let registry = tracing_subscriber::registry().with(filter());
    let unavailable = match format {
        LogFormat::Journald => match journald_layer() {
            Ok(layer) => {
                let _ = registry.with(layer).try_init();
                return;
            }
            Err(e) => Some(e),
        },
        LogFormat::Json => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(io::stderr),
                )
                .try_init();
            return;
        }
        LogFormat::Text | LogFormat::Auto => None,
    };
    let _ = registry
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .try_init();
    if let Some(e) = unavailable {
        tracing::warn!(event = "journald_unavailable", error = %e, socket = JOURNAL_SOCKET, "journald unavailable; logging to stderr");
    }
}

/// Where journald's native protocol listens (tracing-journald's fixed path).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The journald layer: no field prefix, our identifier, and syslog's own priorities
/// (tracing-journald would make every INFO a NOTICE, so `journalctl -p notice` would
/// show the routine lines too).
fn journald_layer() -> io::Result<tracing_journald::Layer> {
    // layer() probes the socket with an empty datagram, so a missing or dead journald
    // is an error here, not lost lines later.
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            ..PriorityMappings::new()
        }))
}

/// Whether our stderr is the stream systemd connected to the journal. `JOURNAL_STREAM`
/// alone is not enough: children inherit it after their stderr was redirected
/// (systemd.exec(5) says to compare it with stderr's device and inode).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// `JOURNAL_STREAM`'s `DEVICE:INODE`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("0:0"), Some((0, 0)));
        for bad in ["", ":", "8", "8:", ":1", "a:1", "1:b", "1:2:3", "-1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }
}
