//! Logs: human lines on a terminal, JSON for collectors, native journald entries
//! under systemd. Never the token, credentials or whole user-data.
//!
//! Two defences keep secrets and forged lines out, at every level `RUST_LOG` allows:
//! the HTTP and SDK crates that would print request headers at trace (the IMDS session
//! token, SigV4 signatures) are capped at `debug` ([`SECRET_BEARING`]), and every text or
//! JSON line passes through [`sanitise`], which blanks the values of secret-bearing
//! headers and escapes control characters, so a newline inside a job id cannot start a
//! line of its own. Colours only on a terminal.
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

/// `SYSLOG_IDENTIFIER` of every journal entry: the unit's own `SyslogIdentifier=`, so
/// `journalctl -t rangefleet-agent` shows the native entries and stray stderr lines alike.
pub const SYSLOG_IDENTIFIER: &str = "rangefleet-agent";

/// Crates whose trace output would carry request headers (tokens, signatures): capped at
/// `debug` whatever `RUST_LOG` says.
pub const SECRET_BEARING: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_config",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
];

/// Header and field names whose values never reach a log line.
const SECRET_NAMES: &[&str] = &[
    "x-aws-ec2-metadata-token",
    "x-amz-security-token",
    "authorization",
    "aws_secret_access_key",
    "secretaccesskey",
    "sessiontoken",
    "x-amz-signature",
];

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

/// `--log-level`: how much to log when `RUST_LOG` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default: what an operator wants in the journal.
    Info,
    /// Every job's lines too.
    Debug,
    /// Everything (secret-bearing crates stay capped at debug).
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` filters when set, else `level`.
///
/// Never fails: when journald is asked for but its socket cannot be reached, logs go
/// to stderr as text, after one warning saying why.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = || {
        let spec = std::env::var("RUST_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| level.directive().to_string());
        let mut f = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
        // A cap, not a setting: the secret-bearing crates log at the global level, never
        // above debug, whatever a directive of their own asked.
        let cap = secret_cap(&spec);
        for krate in SECRET_BEARING {
            if let Ok(d) = format!("{krate}={cap}").parse() {
                f = f.add_directive(d);
            }
        }
        f
    };
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
                        .with_writer(|| Sanitised(io::stderr())),
                )
                .try_init();
            return;
        }
        LogFormat::Text | LogFormat::Auto => None,
    };
    let terminal = io::IsTerminal::is_terminal(&io::stderr());
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(terminal)
                .with_writer(|| Sanitised(io::stderr())),
        )
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

/// The level the secret-bearing crates get under the filter `spec`: its global level
/// (the last directive without a target; `error` when there is none, as in `EnvFilter`),
/// and never more than `debug`.
fn secret_cap(spec: &str) -> &'static str {
    const ORDER: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let global = spec
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .rfind(|d| !d.contains('=') && !d.contains('[') && ORDER.contains(&d.as_str()))
        .unwrap_or_else(|| "error".to_string());
    let rank = ORDER.iter().position(|l| *l == global).unwrap_or(1);
    ORDER[rank.min(4)]
}

/// A writer that passes each formatted line through [`sanitise`].
struct Sanitised<W>(W);

impl<W: io::Write> io::Write for Sanitised<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .write_all(sanitise(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// One formatted log line (or several), made safe to print: the value after any of
/// [`SECRET_NAMES`] is replaced by `<redacted>`, and control characters other than the
/// line's own ending newline and the terminal's colour escapes are written as `\n`,
/// `\r`, `\t` or `\u{..}`.
pub fn sanitise(text: &str) -> std::borrow::Cow<'_, str> {
    let body = text.strip_suffix('\n');
    let (body, ending) = match body {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    // Every log line passes here: a clean one is returned as it came, with no copy.
    if !body.chars().any(|c| c.is_control() && c != '\x1b') {
        return match redact(body) {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
            std::borrow::Cow::Owned(mut s) => {
                s.push_str(ending);
                std::borrow::Cow::Owned(s)
            }
        };
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    let mut out = redact(&out).into_owned();
    out.push_str(ending);
    std::borrow::Cow::Owned(out)
}

/// Blanks the value that follows each secret name (`name: v`, `name=v`, `"name": "v"`).
fn redact(line: &str) -> std::borrow::Cow<'_, str> {
    let lower = line.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for name in SECRET_NAMES {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(name) {
            let mut i = from + pos + name.len();
            from = i;
            let bytes = lower.as_bytes();
            // Skip the separator: quotes, spaces, `:` or `=`.
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ' | b':' | b'=') {
                i += 1;
            }
            let start = i;
            while i < bytes.len()
                && !matches!(bytes[i], b'"' | b'\'' | b',' | b' ' | b'}' | b']' | b';')
            {
                i += 1;
            }
            // "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…": the whole value.
            if name == &"authorization" {
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\'' | b'}' | b']') {
                    i += 1;
                }
            }
            if i > start {
                cuts.push((start, i));
            }
        }
    }
    if cuts.is_empty() {
        return std::borrow::Cow::Borrowed(line);
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (s, e) in cuts {
        if s < at {
            continue;
        }
        out.push_str(&line[at..s]);
        out.push_str("<redacted>");
        at = e;
    }
    out.push_str(&line[at..]);
    std::borrow::Cow::Owned(out)
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

    #[test]
    fn secret_bearing_crates_follow_the_global_level_up_to_debug() {
        assert_eq!(secret_cap("info"), "info");
        assert_eq!(secret_cap("warn,rangefleet=trace"), "warn");
        assert_eq!(secret_cap("trace"), "debug");
        assert_eq!(secret_cap("info,hyper=trace"), "info");
        assert_eq!(secret_cap("rangefleet=debug"), "error");
        assert_eq!(secret_cap("debug"), "debug");
        assert_eq!(secret_cap("TRACE"), "debug");
    }

    #[test]
    fn a_newline_in_a_field_cannot_start_a_line() {
        let line = "INFO job started job_id=a.rec#0+10\nERROR forged: all good\n";
        let out = sanitise(line);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(out.contains("a.rec#0+10\\nERROR forged"), "{out}");
        assert_eq!(sanitise("a\rb\u{7}c\x1b[1md"), "a\\rb\\u{7}c\x1b[1md");
    }

    #[test]
    fn secret_headers_are_redacted_in_every_spelling() {
        for (line, secret) in [
            ("headers: {\"x-aws-ec2-metadata-token\": \"AQAEAtok-en==\"}", "AQAEAtok-en=="),
            ("X-aws-ec2-metadata-token: AQAEAtoken", "AQAEAtoken"),
            ("x-amz-security-token=FwoGZXIvYXdzEJr", "FwoGZXIvYXdzEJr"),
            (
                "\"authorization\": \"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeef\"",
                "deadbeef",
            ),
            ("SessionToken: abc123", "abc123"),
        ] {
            let out = sanitise(line);
            assert!(!out.contains(secret), "{line} -> {out}");
            assert!(out.contains("<redacted>"), "{out}");
        }
        assert_eq!(
            sanitise("job_id=a.rec#0+10 bytes=800\n"),
            "job_id=a.rec#0+10 bytes=800\n"
        );
    }
}
