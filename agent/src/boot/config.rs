//! The agent config, version 1 (docs/config.md): parsing, validation, defaults.
//!
//! Only `queue`, `inputs` and `results` are required. Unknown keys are errors that name
//! them. Every error names the field path and, where the document has one, the line.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::boot::tags;
use crate::boot::userdata::{ConfigDocument, Format};

/// What to do on a rebalance recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRebalance {
    /// Keep working as if nothing happened.
    Ignore,
    /// Take no new jobs; finish the ones in flight.
    StopLeasing,
    /// Drain as for an interruption notice.
    Drain,
}

/// `spot:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpotConfig {
    /// Poll interval for the notices, seconds.
    pub poll_seconds: u64,
    /// What a rebalance recommendation does.
    pub on_rebalance: OnRebalance,
    /// Jobs expected to end later than this before the deadline are released.
    pub drain_margin_seconds: u64,
}

/// `processors.exec:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecConfig {
    /// The command; jobs never carry commands.
    pub argv: Vec<String>,
    /// Longest a run may take.
    pub timeout_seconds: u64,
    /// Largest stdout accepted.
    pub max_output_bytes: u64,
}

/// `processors:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Processors {
    /// The `exec` processor, when jobs may name it.
    pub exec: Option<ExecConfig>,
}

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `sqlite:///…` or an SQS queue URL.
    pub queue: String,
    /// Allowed source prefixes.
    pub inputs: Vec<String>,
    /// Where results go.
    pub results: String,
    /// Jobs and GETs in flight; `None` = sized from the network (`instance/sizing.rs`).
    pub concurrency: Option<u32>,
    /// The throughput target, Gbit/s; `None` = the instance type's network performance.
    pub max_throughput_gbps: Option<f64>,
    /// Lease per job, seconds.
    pub lease_seconds: u64,
    /// Tags as written (templates unexpanded).
    pub tags: BTreeMap<String, String>,
    /// Spot behaviour.
    pub spot: SpotConfig,
    /// Processor settings.
    pub processors: Processors,
    /// Opt-in CreateTags for per-instance tags.
    pub publish_tags: bool,
    /// The group's termination lifecycle hook the agent completes once drained
    /// (`rangefleet-drain`, the Terraform module's `lifecycle_hook_name`).
    pub lifecycle_hook: String,
    /// Where to serve the Prometheus metrics (`GET /metrics`); `None` = no endpoint.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The default job lease (docs/architecture.md#defaults).
pub const DEFAULT_LEASE_SECONDS: u64 = 300;

/// The smallest `max_throughput_gbps` accepted.
pub const MIN_GBPS: f64 = 0.1;
/// The largest `max_throughput_gbps` accepted (the fastest EC2 networks, 3,200 Gbit/s).
pub const MAX_GBPS: f64 = 3200.0;

impl Config {
    /// The config as JSON, every key present (docs/config.md). `sized` fills in the
    /// jobs in flight when the config leaves `concurrency` out (the agent sizes itself
    /// from the instance: `instance/sizing.rs`); without it the default reads `"auto"`.
    pub fn to_json(&self, sized: Option<usize>) -> Value {
        let concurrency = match (self.concurrency, sized) {
            (Some(c), _) => json!(c),
            (None, Some(n)) => json!(n),
            (None, None) => json!("auto"),
        };
        json!({
            "queue": self.queue,
            "inputs": self.inputs,
            "results": self.results,
            "concurrency": concurrency,
            "max_throughput_gbps": self.max_throughput_gbps.map_or(json!("auto"), |g| json!(g)),
            "lease_seconds": self.lease_seconds,
            "tags": self.tags,
            "spot": self.spot,
            "processors": self.processors,
            "publish_tags": self.publish_tags,
            "lifecycle_hook": self.lifecycle_hook,
            "metrics_listen": self.metrics_listen.map(|a| a.to_string()),
        })
    }
}

/// A config that does not hold, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the document came from.
    pub origin: String,
    /// 1-based line in the document, when known.
    pub line: Option<usize>,
    /// Dotted field path (`spot.poll_seconds`), empty for the document as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config in {}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    queue: String,
    inputs: Vec<String>,
    results: String,
    concurrency: Option<i64>,
    max_throughput_gbps: Option<f64>,
    lease_seconds: Option<i64>,
    #[serde(default, deserialize_with = "strict_map")]
    tags: BTreeMap<String, String>,
    spot: Option<RawSpot>,
    processors: Option<RawProcessors>,
    publish_tags: Option<bool>,
    lifecycle_hook: Option<String>,
    metrics_listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpot {
    poll_seconds: Option<i64>,
    on_rebalance: Option<OnRebalance>,
    drain_margin_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessors {
    exec: Option<RawExec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    #[serde(deserialize_with = "strict_list")]
    argv: Vec<String>,
    timeout_seconds: Option<i64>,
    max_output_bytes: Option<i64>,
}

/// A string that is really a string: YAML's `~` or `null` is refused, not read as
/// the text "~" (which serde_yaml_ng does for a `String`).
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => Ok(Text(s)),
            None => Err(serde::de::Error::custom(
                "null (~) is not a value here: write \"\" for an empty string, or leave the key out",
            )),
        }
    }
}

/// A string map that refuses a key given twice (JSON and YAML parsers keep the last
/// silently) and null values.
fn strict_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, Text(v))) = m.next_entry::<String, Text>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "key {k:?} is given twice"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// A list of strings, none of them null.
fn strict_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<Text>::deserialize(d)?
        .into_iter()
        .map(|t| t.0)
        .collect())
}

/// Parses and validates a config document.
pub fn parse(doc: &ConfigDocument) -> Result<Config, ConfigError> {
    let fail_parse = |line: Option<usize>, message: String| ConfigError {
        origin: doc.origin.clone(),
        line: line.map(|l| l + doc.line_offset),
        path: String::new(),
        message,
    };
    // Before any parser: NUL bytes and nesting bombs (boot/userdata.rs).
    crate::boot::userdata::check_structure(&doc.text, &doc.origin)
        .map_err(|e| fail_parse(None, e.to_string()))?;
    let raw: RawConfig = match doc.format {
        Format::Yaml => {
            // Expand the document once untyped first: that pass refuses alias bombs
            // (billions of repetitions) before field errors could hide them.
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc.text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                fail_parse(line, strip_location(&e.to_string()))
            })?;
            serde_yaml_ng::from_str(&doc.text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                fail_parse(line, strip_location(&e.to_string()))
            })?
        }
        Format::Json => serde_json::from_str(&doc.text)
            .map_err(|e| fail_parse(Some(e.line()), strip_location(&e.to_string())))?,
        Format::Toml => toml::from_str(&doc.text).map_err(|e| {
            let line = e.span().map(|s| {
                doc.text[..s.start.min(doc.text.len())]
                    .lines()
                    .count()
                    .max(1)
            });
            fail_parse(line, e.message().to_string())
        })?,
    };
    let v = Validator { doc };
    v.build(raw)
}

/// Reads a config file (`--config FILE`): the same document as in user-data.
pub fn parse_text(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc = crate::boot::userdata::decode(text.as_bytes()).map_err(|e| ConfigError {
        origin: origin.to_string(),
        line: None,
        path: String::new(),
        message: e.to_string(),
    })?;
    parse(&ConfigDocument {
        origin: origin.to_string(),
        ..doc
    })
}

struct Validator<'a> {
    doc: &'a ConfigDocument,
}

impl Validator<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.doc.origin.clone(),
            line: locate(&self.doc.text, path).map(|l| l + self.doc.line_offset),
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn range(
        &self,
        path: &str,
        v: Option<i64>,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default as u64),
            Some(n) if (lo..=hi).contains(&n) => Ok(n as u64),
            Some(n) => Err(self.err(path, format!("expected {lo}..={hi}, got {n}"))),
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        check_queue(&raw.queue).map_err(|m| self.err("queue", m))?;
        if raw.inputs.is_empty() {
            return Err(self.err("inputs", "expected at least one allowed source prefix"));
        }
        for (i, input) in raw.inputs.iter().enumerate() {
            check_location(input, &["s3", "file", "http", "https"])
                .map_err(|m| self.err(&format!("inputs[{i}]"), m))?;
        }
        check_location(&raw.results, &["s3", "file"]).map_err(|m| self.err("results", m))?;
        let concurrency = match raw.concurrency {
            None => None,
            Some(_) => Some(self.range("concurrency", raw.concurrency, 1, 1024, 0)? as u32),
        };
        let max_throughput_gbps = match raw.max_throughput_gbps {
            None => None,
            Some(g) if (MIN_GBPS..=MAX_GBPS).contains(&g) => Some(g),
            Some(g) => {
                return Err(self.err(
                    "max_throughput_gbps",
                    format!("expected {MIN_GBPS}..={MAX_GBPS} (Gbit/s), got {g}"),
                ))
            }
        };
        let lease_seconds = self.range(
            "lease_seconds",
            raw.lease_seconds,
            2,
            43_200,
            DEFAULT_LEASE_SECONDS as i64,
        )?;
        for (k, v) in &raw.tags {
            tags::check(k, v).map_err(|m| self.err(&format!("tags.{k}"), m.0))?;
        }
        if raw.tags.len() > tags::MAX_TAGS {
            return Err(self.err(
                "tags",
                format!(
                    "{} tags, more than the {} AWS allows",
                    raw.tags.len(),
                    tags::MAX_TAGS
                ),
            ));
        }
        let spot = raw.spot.unwrap_or(RawSpot {
            poll_seconds: None,
            on_rebalance: None,
            drain_margin_seconds: None,
        });
        let spot = SpotConfig {
            poll_seconds: self.range("spot.poll_seconds", spot.poll_seconds, 1, 60, 5)?,
            on_rebalance: spot.on_rebalance.unwrap_or(OnRebalance::StopLeasing),
            drain_margin_seconds: self.range(
                "spot.drain_margin_seconds",
                spot.drain_margin_seconds,
                0,
                110,
                20,
            )?,
        };
        let exec = match raw.processors.and_then(|p| p.exec) {
            None => None,
            Some(e) => {
                let Some(program) = e.argv.first() else {
                    return Err(self.err(
                        "processors.exec.argv",
                        "expected a command, got an empty list",
                    ));
                };
                if !program.starts_with('/') {
                    return Err(self.err(
                        "processors.exec.argv",
                        format!("the command must be an absolute path, got {program:?}"),
                    ));
                }
                Some(ExecConfig {
                    argv: e.argv,
                    timeout_seconds: self.range(
                        "processors.exec.timeout_seconds",
                        e.timeout_seconds,
                        1,
                        43_200,
                        600,
                    )?,
                    max_output_bytes: self.range(
                        "processors.exec.max_output_bytes",
                        e.max_output_bytes,
                        1,
                        64 << 20,
                        1 << 20,
                    )?,
                })
            }
        };
        Ok(Config {
            queue: raw.queue,
            inputs: raw.inputs,
            results: raw.results,
            concurrency,
            max_throughput_gbps,
            lease_seconds,
            tags: raw.tags,
            spot,
            processors: Processors { exec },
            publish_tags: raw.publish_tags.unwrap_or(false),
            lifecycle_hook: match raw.lifecycle_hook {
                None => crate::aws::autoscaling::DEFAULT_HOOK.to_string(),
                Some(h) => {
                    check_hook_name(&h).map_err(|m| self.err("lifecycle_hook", m))?;
                    h
                }
            },
            metrics_listen: match raw.metrics_listen {
                None => None,
                Some(a) => Some(check_listen(&a).map_err(|m| self.err("metrics_listen", m))?),
            },
        })
    }
}

/// `metrics_listen`: an IP address and a port other than 0 (no host names: the agent
/// binds it before it resolves anything).
fn check_listen(a: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = a.trim().parse().map_err(|_| {
        format!("expected an IP address and a port, such as 127.0.0.1:9464, got {a:?}")
    })?;
    if addr.port() == 0 {
        return Err(format!("expected a port other than 0, got {a:?}"));
    }
    Ok(addr)
}

/// Auto Scaling's rule for lifecycle hook names: 1 to 255 of `A-Za-z0-9-_/`.
fn check_hook_name(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a lifecycle hook name (1 to 255 of A-Z a-z 0-9 - _ /), got {h:?}"
        ))
    }
}

/// The agent's own check (`queue::open` parses the URL the same way), so a config that
/// passes here is never refused at start for its queue URL.
fn check_queue(q: &str) -> Result<(), String> {
    crate::queue::open::check_url(q).map_err(|e| e.to_string())
}

fn check_location(loc: &str, schemes: &[&str]) -> Result<(), String> {
    let scheme = loc
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if !scheme.is_empty() && !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme {scheme:?} is not allowed here; use one of {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // The allow-list's own parser: an entry that passes here is one it can hold.
    crate::contract::allow::Location::parse(loc)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Drops serde's " at line N column M": the line is reported on its own, offset to
/// where the operator sees it.
fn strip_location(msg: &str) -> String {
    let mut out = msg.to_string();
    while let Some(i) = out.find(" at line ") {
        let rest = &out[i + " at line ".len()..];
        let end = rest
            .find(" column ")
            .map(|c| {
                let after = &rest[c + " column ".len()..];
                c + " column ".len()
                    + after
                        .find(|ch: char| !ch.is_ascii_digit())
                        .unwrap_or(after.len())
            })
            .unwrap_or_else(|| {
                rest.find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(rest.len())
            });
        out.replace_range(i..i + " at line ".len() + end, "");
    }
    out
}

/// The line of a dotted field path in YAML, JSON or TOML text, by looking for each
/// segment's key after the previous one's line. Good enough to point a person at it.
fn locate(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in path.split('.') {
        let key = seg.split('[').next().unwrap_or(seg);
        let idx = (from..lines.len()).find(|&i| {
            let l = lines[i]
                .trim_start()
                .trim_start_matches(['{', ',', '-', ' ']);
            let l = l.trim_start_matches('"').trim_start_matches('\'');
            l.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start_matches(['"', '\'']).trim_start();
                rest.starts_with(':') || rest.starts_with('=')
            }) || lines[i].trim() == format!("[{key}]")
        })?;
        found = Some(idx + 1);
        from = idx + 1;
    }
    found
}

impl From<&ExecConfig> for crate::process::exec::ExecSpec {
    fn from(c: &ExecConfig) -> crate::process::exec::ExecSpec {
        crate::process::exec::ExecSpec {
            argv: c.argv.clone(),
            timeout: std::time::Duration::from_secs(c.timeout_seconds),
            max_output_bytes: c.max_output_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str, format: Format) -> ConfigDocument {
        ConfigDocument {
            text: text.into(),
            format,
            origin: "test".into(),
            line_offset: 0,
        }
    }

    const MIN: &str = "queue: sqlite:///var/lib/rangefleet/queue.db\ninputs: [\"file:///srv/in/\"]\nresults: file:///srv/out/\n";

    #[test]
    fn defaults_fill_in() {
        let c = parse(&doc(MIN, Format::Yaml)).unwrap();
        assert_eq!(c.lease_seconds, 300);
        assert_eq!(c.spot.poll_seconds, 5);
        assert_eq!(c.spot.on_rebalance, OnRebalance::StopLeasing);
        assert_eq!(c.spot.drain_margin_seconds, 20);
        assert_eq!(c.concurrency, None);
        assert_eq!(c.max_throughput_gbps, None);
        assert_eq!(c.to_json(None)["concurrency"], "auto");
        assert_eq!(c.to_json(Some(60))["concurrency"], 60);
        assert!(!c.publish_tags);
    }

    #[test]
    fn out_of_range_names_path_and_line() {
        let e = parse(&doc(&format!("{MIN}concurrency: 0\n"), Format::Yaml)).unwrap_err();
        assert_eq!(e.path, "concurrency");
        assert_eq!(e.line, Some(4));
        assert!(
            e.to_string()
                .ends_with("line 4: concurrency: expected 1..=1024, got 0"),
            "{e}"
        );
    }

    #[test]
    fn max_throughput_is_checked_and_located() {
        let c = parse(&doc(
            &format!("{MIN}max_throughput_gbps: 25\n"),
            Format::Yaml,
        ))
        .unwrap();
        assert_eq!(c.max_throughput_gbps, Some(25.0));
        assert_eq!(c.to_json(None)["max_throughput_gbps"], 25.0);
        let c = parse(&doc(MIN, Format::Yaml)).unwrap();
        assert_eq!(c.to_json(None)["max_throughput_gbps"], "auto");
        for bad in ["0", "-3", "5000", ".nan"] {
            let text = format!("{MIN}max_throughput_gbps: {bad}\n");
            let e = parse(&doc(&text, Format::Yaml)).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.line),
                ("max_throughput_gbps", Some(4)),
                "{bad}"
            );
            assert!(e.message.starts_with("expected 0.1..=3200 (Gbit/s)"), "{e}");
        }
        let toml = "queue = \"sqlite:///q.db\"\ninputs = [\"file:///in/\"]\nresults = \"file:///out/\"\nmax_throughput_gbps = 12.5\n";
        assert_eq!(
            parse(&doc(toml, Format::Toml)).unwrap().max_throughput_gbps,
            Some(12.5)
        );
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked() {
        let c = parse(&doc(MIN, Format::Yaml)).unwrap();
        assert_eq!(c.metrics_listen, None);
        assert!(c.to_json(None)["metrics_listen"].is_null());
        let c = parse(&doc(
            &format!("{MIN}metrics_listen: 127.0.0.1:9464\n"),
            Format::Yaml,
        ))
        .unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.to_json(None)["metrics_listen"], "127.0.0.1:9464");
        for (bad, says) in [
            ("localhost:9464", "expected an IP address and a port"),
            ("127.0.0.1", "expected an IP address and a port"),
            ("\"[::1]:0\"", "expected a port other than 0"),
            ("9464", "expected an IP address and a port"),
        ] {
            let e =
                parse(&doc(&format!("{MIN}metrics_listen: {bad}\n"), Format::Yaml)).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.line),
                ("metrics_listen", Some(4)),
                "{bad}"
            );
            assert!(e.message.starts_with(says), "{bad}: {e}");
        }
    }

    #[test]
    fn nested_paths_are_located() {
        let text = format!("{MIN}spot:\n  on_rebalance: drain\n  poll_seconds: 0\n");
        let e = parse(&doc(&text, Format::Yaml)).unwrap_err();
        assert_eq!((e.path.as_str(), e.line), ("spot.poll_seconds", Some(6)));
    }

    #[test]
    fn queue_urls_the_agent_refuses_are_refused() {
        for q in crate::queue::open::tests::REFUSED {
            let text = MIN.replace("sqlite:///var/lib/rangefleet/queue.db", q);
            let e = parse(&doc(&text, Format::Yaml)).unwrap_err();
            assert_eq!(e.path, "queue", "{q}: {e}");
        }
    }

    #[test]
    fn line_of_a_toml_key() {
        assert_eq!(
            locate("a = 1\n[spot]\npoll_seconds = 0\n", "spot.poll_seconds"),
            Some(3)
        );
    }
}
