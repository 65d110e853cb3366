//! Issue 12: `userdata check` and the agent run one validation
//! (`boot::config_from_userdata`), which refuses what the agent would misread, accepts
//! the cloud-init forms it used to refuse, and refuses depth and size bombs before any
//! parser runs, quickly (docs/security.md).

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use proptest::prelude::*;
use rangefleet::boot::{config_from_userdata, userdata};

const CONFIG: &str = "queue: sqlite:///var/lib/rangefleet/queue.db
inputs: [\"s3://trips-data/trips/\"]
results: s3://trips-data/results/run-42/
tags:
  Name: worker-{instance_id}
";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

fn cloud_config(entry: &str) -> String {
    format!("#cloud-config\nwrite_files:\n{entry}")
}

fn plain_entry(config: &str) -> String {
    format!(
        "  - path: /etc/rangefleet/agent.yaml\n    content: |\n{}",
        indent(config, 6)
    )
}

fn refused(raw: &[u8], needle: &str) {
    match config_from_userdata(raw) {
        Ok(c) => panic!("accepted, expected an error naming {needle:?}: {c:?}"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error {:?} does not name {needle:?}",
            e.to_string()
        ),
    }
}

#[test]
fn a_nul_byte_is_refused() {
    refused(
        CONFIG.replace("trips/\"]", "trips/\u{0}x\"]").as_bytes(),
        "NUL",
    );
    refused(
        cloud_config(&plain_entry(&CONFIG.replace("run-42", "run\u{0}42"))).as_bytes(),
        "NUL",
    );
}

#[test]
fn a_control_character_in_a_dot_segment_of_an_input_is_refused() {
    for bad in [
        "file:///srv/in/.\t./x/",
        "http://127.0.0.1:8080/d/.\t./",
        "s3://bucket/.\t./",
    ] {
        let doc = CONFIG.replace("s3://trips-data/trips/", bad);
        refused(doc.as_bytes(), "control character");
    }
    refused(
        CONFIG
            .replace("s3://trips-data/trips/", "s3://TRIPS/x/")
            .as_bytes(),
        "bucket",
    );
}

#[test]
fn a_tag_key_given_twice_is_refused() {
    let json = r#"{"queue": "sqlite:///q.db", "inputs": ["s3://trips-data/trips/"],
        "results": "s3://trips-data/results/", "tags": {"team": "a", "team": "b"}}"#;
    refused(json.as_bytes(), "given twice");
    let yaml = CONFIG.replace("  Name:", "  team: a\n  team: b\n  Name:");
    assert!(config_from_userdata(yaml.as_bytes()).is_err());
}

#[test]
fn near_miss_placeholders_are_refused_naming_the_valid_ones() {
    for v in [
        "w-{instance-id}",
        "w-{instance_id",
        "w-{Instance_Id}",
        "{}",
        "a{b",
    ] {
        let doc = CONFIG.replace("worker-{instance_id}", &format!("\"{v}\""));
        refused(doc.as_bytes(), "(known: {instance_id} {launch_index}");
    }
    // The known ones still pass.
    let ok = CONFIG.replace(
        "worker-{instance_id}",
        "w-{instance_id}-{launch_index}-{region}",
    );
    config_from_userdata(ok.as_bytes()).unwrap();
}

#[test]
fn null_is_refused_not_read_as_a_tilde() {
    refused(
        CONFIG.replace("worker-{instance_id}", "~").as_bytes(),
        "null (~)",
    );
    refused(
        CONFIG.replace("worker-{instance_id}", "null").as_bytes(),
        "null (~)",
    );
    let argv = format!(
        "{CONFIG}processors:\n  exec:\n    argv: [\"/bin/x\", ~]\n    timeout_seconds: 5\n"
    );
    refused(argv.as_bytes(), "null (~)");
    // A quoted "~" is a string.
    let quoted = CONFIG.replace("worker-{instance_id}", "\"~\"");
    let c = config_from_userdata(quoted.as_bytes()).unwrap();
    assert_eq!(c.tags["Name"], "~");
}

#[test]
fn two_config_entries_are_refused() {
    let two = cloud_config(&format!(
        "{}{}",
        plain_entry(CONFIG),
        plain_entry(&CONFIG.replace("run-42", "run-43"))
    ));
    refused(two.as_bytes(), "2 write_files entries");
    let spelt = cloud_config(&format!(
        "{}{}",
        plain_entry(CONFIG),
        plain_entry(CONFIG).replace(
            "/etc/rangefleet/agent.yaml",
            "/etc//rangefleet/./agent.yaml"
        )
    ));
    refused(spelt.as_bytes(), "2 write_files entries");
}

fn mime(boundary: &str, parts: &[(&str, &str, String)]) -> String {
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    for (ctype, cte, body) in parts {
        out.push_str(&format!("--{boundary}\nContent-Type: {ctype}\n"));
        if !cte.is_empty() {
            out.push_str(&format!("Content-Transfer-Encoding: {cte}\n"));
        }
        out.push_str(&format!("\n{body}\n"));
    }
    out.push_str(&format!("--{boundary}--\n"));
    out
}

#[test]
fn valid_cloud_init_forms_are_accepted() {
    let cc = cloud_config(&plain_entry(CONFIG));
    // Nested multipart, with a case-sensitive inner boundary.
    let inner = mime("InnerB", &[("text/cloud-config", "", cc.clone())]);
    let (inner_head, inner_body) = inner.split_once("\n\n").unwrap();
    let inner_ctype = inner_head
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("Content-Type: ");
    let nested = mime(
        "OUTER",
        &[
            ("text/x-shellscript", "", "#!/bin/sh\necho hi".into()),
            (inner_ctype, "", inner_body.to_string()),
        ],
    );
    // Quoted-printable (a soft line break and an escaped `=`).
    let qp = cc
        .replace("queue: sqlite", "queue: sql=\nite")
        .replace("Name: ", "Name:=20");
    let qp = mime("QP", &[("text/cloud-config", "quoted-printable", qp)]);
    // `encoding: gzip` with `!!binary` content, and gz+b64.
    let binary = cloud_config(&format!(
        "  - path: /etc/rangefleet/agent.yaml\n    encoding: gzip\n    content: !!binary |\n      {}\n",
        b64(&gzip(CONFIG.as_bytes()))
    ));
    let gzb64 = cloud_config(&format!(
        "  - path: /etc/rangefleet/agent.yaml\n    encoding: gz+b64\n    content: {}\n",
        b64(&gzip(CONFIG.as_bytes()))
    ));
    for (name, raw) in [
        ("nested multipart", nested),
        ("quoted-printable", qp),
        ("gzip !!binary", binary),
        ("gz+b64", gzb64),
    ] {
        let c =
            config_from_userdata(raw.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}\n{raw}"));
        assert_eq!(c.results, "s3://trips-data/results/run-42/", "{name}");
        assert_eq!(c.tags["Name"], "worker-{instance_id}", "{name}");
    }
}

/// `tags: [[[[…` half a million deep ran for minutes; 100k deep for 101 s.
#[test]
fn nesting_bombs_are_refused_at_once() {
    let flow = |n: usize| format!("tags: {}{}\n", "[".repeat(n), "]".repeat(n));
    let block = |n: usize| {
        (0..n)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>()
    };
    let dashes = |n: usize| format!("tags:\n{}x\n", "- ".repeat(n));
    let fake_closers = |n: usize| format!("tags: {}\n", "[\"]]]]\",".repeat(n));
    let bombs: Vec<(String, Vec<u8>)> = vec![
        ("flow 500k gzipped".into(), gzip(flow(500_000).as_bytes())),
        ("flow 100k".into(), flow(100_000).into_bytes()),
        ("flow 33".into(), flow(33).into_bytes()),
        ("block 1400".into(), block(1400).into_bytes()),
        ("dashes 400k".into(), dashes(400_000).into_bytes()),
        (
            "closers in quotes".into(),
            fake_closers(100_000).into_bytes(),
        ),
        (
            "closers in comments".into(),
            format!("tags: {}", "[ # ]\n".repeat(100_000)).into_bytes(),
        ),
        (
            "closers in single quotes".into(),
            format!("tags: {}", "['it''s]',".repeat(50_000)).into_bytes(),
        ),
        (
            "in a cloud-config".into(),
            cloud_config(&format!(
                "  - path: /etc/rangefleet/agent.yaml\n    content: {}\n",
                "[".repeat(200_000)
            ))
            .into_bytes(),
        ),
        (
            "cloud-config inside gz+b64".into(),
            cloud_config(&format!(
                "  - path: /etc/rangefleet/agent.yaml\n    encoding: gz+b64\n    content: {}\n",
                b64(&gzip(flow(400_000).as_bytes()))
            ))
            .into_bytes(),
        ),
        (
            "JSON 100k".into(),
            format!("{{\"a\":{}", "[".repeat(100_000)).into_bytes(),
        ),
        (
            "TOML 100k".into(),
            format!("a = {}", "[".repeat(100_000)).into_bytes(),
        ),
    ];
    for (name, raw) in bombs {
        let t = Instant::now();
        let r = config_from_userdata(&raw);
        let took = t.elapsed();
        let e = r.expect_err(&name).to_string();
        assert!(e.contains("nested too deeply"), "{name}: {e}");
        // Generous: the refusal is a linear pre-scan (about a millisecond per MiB).
        assert!(took < Duration::from_secs(1), "{name} took {took:?}");
    }
    // 32 deep is the documented limit, and a real config is far from it.
    assert!(userdata::check_structure(&flow(20), "x").is_ok());
}

fn seed() -> u64 {
    std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_b0b0)
}

/// A bomb: a nesting of some style and depth, padded, maybe wrapped in gzip, base64 and
/// a cloud-config; up to 1 MiB.
fn bomb() -> impl Strategy<Value = Vec<u8>> {
    let style = prop::sample::select(vec!["[", "{\"a\":", "- ", "[\"]]\",", "{a: ", "? "]);
    (
        style,
        1usize..200_000,
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(open, depth, wrap, cloud, pad)| {
            let mut body = format!("tags: {}", open.repeat(depth));
            if pad {
                body.push_str(&"a, ".repeat(1000));
            }
            body.truncate(1 << 20);
            let mut raw = if cloud {
                cloud_config(&format!(
                    "  - path: /etc/rangefleet/agent.yaml\n    encoding: gz+b64\n    content: {}\n",
                    b64(&gzip(body.as_bytes()))
                ))
                .into_bytes()
            } else {
                body.into_bytes()
            };
            for _ in 0..wrap {
                raw = gzip(&raw);
            }
            raw
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed()),
        ..ProptestConfig::default()
    })]

    /// Fuzz-style, deterministic in CI: no bomb of up to 1 MiB takes a second to refuse.
    #[test]
    fn every_bomb_is_refused_within_a_second(raw in bomb()) {
        let t = Instant::now();
        let r = config_from_userdata(&raw);
        let took = t.elapsed();
        prop_assert!(took < Duration::from_secs(1), "took {:?}", took);
        prop_assert!(r.is_err());
    }
}
