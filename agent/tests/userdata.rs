//! User-data → config, table-driven: every format and wrapping, and the malformed
//! inputs an operator will one day paste, each with the error it must name.

use std::io::Write;

use base64::Engine;
use rangefleet::boot::config;
use rangefleet::boot::userdata;

const YAML: &str = "queue: sqlite:///var/lib/rangefleet/queue.db
inputs: [\"s3://trips-data/trips/\"]
results: s3://trips-data/results/run-42/
concurrency: 8
tags:
  team: data
  Name: worker-{instance_id}
";

const JSON: &str = r#"{"queue": "https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs",
 "inputs": ["s3://trips-data/trips/"], "results": "s3://trips-data/results/run-42/",
 "concurrency": 8, "tags": {"team": "data", "Name": "worker-{instance_id}"}}"#;

const TOML: &str = r#"queue = "sqlite:///var/lib/rangefleet/queue.db"
inputs = ["s3://trips-data/trips/"]
results = "s3://trips-data/results/run-42/"
concurrency = 8
[tags]
team = "data"
Name = "worker-{instance_id}"
"#;

const FULL: &str = "queue: https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs
inputs: [\"s3://trips-data/trips/\", \"file:///srv/in/\"]
results: file:///srv/results/
concurrency: 8
lease_seconds: 600
tags:
  team: data
  Name: worker-{instance_id}
spot:
  poll_seconds: 2
  on_rebalance: drain
  drain_margin_seconds: 30
processors:
  exec:
    argv: [\"/usr/local/bin/my-step\", \"--json\"]
    timeout_seconds: 60
    max_output_bytes: 4096
publish_tags: true
";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn b64(b: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(b)
        .into_bytes()
}

fn b64_wrapped(b: &[u8]) -> Vec<u8> {
    let s = base64::engine::general_purpose::STANDARD.encode(b);
    s.as_bytes()
        .chunks(76)
        .collect::<Vec<_>>()
        .join(&b'\n')
        .to_vec()
}

/// A `#cloud-config` holding `doc` as the agent's write_files entry.
fn cloud_config(doc: &str, encoding: Option<&str>) -> Vec<u8> {
    let (enc_line, content) = match encoding {
        None => (String::new(), doc.to_string()),
        Some("b64") => (
            "    encoding: b64\n".into(),
            String::from_utf8(b64(doc.as_bytes())).unwrap(),
        ),
        Some("gz+b64") => (
            "    encoding: gz+b64\n".into(),
            String::from_utf8(b64(&gzip(doc.as_bytes()))).unwrap(),
        ),
        Some(other) => panic!("{other}"),
    };
    let indented: String = content.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "#cloud-config\npackages: [curl]\nwrite_files:\n  - path: /etc/motd\n    content: hello\n  - path: /etc/rangefleet/agent.yaml\n    permissions: '0644'\n{enc_line}    content: |\n{indented}runcmd:\n  - [/usr/local/sbin/rangefleet-install]\n"
    )
    .into_bytes()
}

fn mime(parts: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    let mut out =
        b"Content-Type: multipart/mixed; boundary=\"==BOUNDARY==\"\nMIME-Version: 1.0\n\n".to_vec();
    for (ctype, cte, body) in parts {
        out.extend_from_slice(b"--==BOUNDARY==\n");
        out.extend_from_slice(
            format!("Content-Type: {ctype}; charset=\"us-ascii\"\nMIME-Version: 1.0\n").as_bytes(),
        );
        if !cte.is_empty() {
            out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\n").as_bytes());
        }
        out.extend_from_slice(b"\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"--==BOUNDARY==--\n");
    out
}

fn check(raw: &[u8]) -> Result<config::Config, String> {
    let doc = userdata::decode(raw).map_err(|e| e.to_string())?;
    config::parse(&doc).map_err(|e| e.to_string())
}

#[test]
fn every_format_and_wrapping_gives_the_same_config() {
    let want = check(YAML.as_bytes()).unwrap();
    assert_eq!(want.concurrency, Some(8));
    assert_eq!(want.tags["Name"], "worker-{instance_id}");
    let shell = b"#!/bin/sh\necho hi\n".to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bare YAML", YAML.into()),
        ("bare TOML", TOML.into()),
        ("cloud-config, plain content", cloud_config(YAML, None)),
        ("cloud-config, b64 content", cloud_config(YAML, Some("b64"))),
        (
            "cloud-config, gz+b64 content",
            cloud_config(YAML, Some("gz+b64")),
        ),
        ("gzip of bare YAML", gzip(YAML.as_bytes())),
        ("base64 of bare YAML", b64(YAML.as_bytes())),
        (
            "base64 of gzip of cloud-config",
            b64(&gzip(&cloud_config(YAML, None))),
        ),
        ("gzip of cloud-config", gzip(&cloud_config(YAML, None))),
        (
            "wrapped base64 of gzip",
            b64_wrapped(&gzip(YAML.as_bytes())),
        ),
        (
            "gzip of base64 of cloud-config",
            gzip(&b64(&cloud_config(YAML, Some("gz+b64")))),
        ),
        (
            "CRLF cloud-config",
            String::from_utf8(cloud_config(YAML, None))
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes(),
        ),
        (
            "MIME: shell + cloud-config",
            mime(&[
                ("text/x-shellscript", "", shell.clone()),
                ("text/cloud-config", "", cloud_config(YAML, None)),
            ]),
        ),
        (
            "MIME: base64 cloud-config part",
            mime(&[(
                "text/cloud-config",
                "base64",
                b64_wrapped(&cloud_config(YAML, None)),
            )]),
        ),
        (
            "MIME: cloud-config part without header line",
            mime(&[(
                "text/cloud-config",
                "",
                cloud_config(YAML, None)[14..].to_vec(),
            )]),
        ),
        (
            "MIME: bare config part",
            mime(&[
                ("text/x-shellscript", "", shell),
                ("text/plain", "", YAML.into()),
            ]),
        ),
        (
            "gzip of MIME",
            gzip(&mime(&[(
                "text/cloud-config",
                "",
                cloud_config(YAML, None),
            )])),
        ),
        (
            "base64 of MIME",
            b64(&mime(&[(
                "text/cloud-config",
                "",
                cloud_config(YAML, Some("b64")),
            )])),
        ),
        (
            "UTF-8 BOM",
            [b"\xef\xbb\xbf".as_slice(), YAML.as_bytes()].concat(),
        ),
    ];
    for (name, raw) in cases {
        let got = check(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
    // JSON names an SQS queue; everything else is the same.
    let json = check(JSON.as_bytes()).unwrap();
    assert_eq!(
        (json.inputs, json.concurrency, json.tags),
        (want.inputs, want.concurrency, want.tags)
    );
}

#[test]
fn every_key_is_read() {
    let c = check(&cloud_config(FULL, Some("gz+b64"))).unwrap();
    assert_eq!(c.lease_seconds, 600);
    assert_eq!(c.spot.poll_seconds, 2);
    assert_eq!(c.spot.on_rebalance, config::OnRebalance::Drain);
    assert_eq!(c.spot.drain_margin_seconds, 30);
    let exec = c.processors.exec.unwrap();
    assert_eq!(exec.argv, ["/usr/local/bin/my-step", "--json"]);
    assert_eq!((exec.timeout_seconds, exec.max_output_bytes), (60, 4096));
    assert!(c.publish_tags);
}

#[test]
fn malformed_input_names_the_problem() {
    let alias_bomb = "a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n\
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    let mut truncated = gzip(&cloud_config(YAML, None));
    truncated.truncate(truncated.len() / 2);
    let big = format!("{YAML}# {}\n", "x".repeat(1 << 20));
    let zeros = gzip(&vec![b' '; 8 << 20]);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty", b"  \n".to_vec(), &["empty"]),
        ("bad YAML", b"queue: [unclosed\ninputs: x\n".to_vec(), &["line"]),
        ("bad JSON", b"{\"queue\": \"sqlite:///q.db\",, }".to_vec(), &["line 1"]),
        ("bad TOML", b"queue = \"sqlite:///q.db\"\ninputs = [\n".to_vec(), &["line"]),
        ("wrong type", format!("{YAML}lease_seconds: soon\n").into_bytes(), &["lease_seconds", "invalid type"]),
        ("tag value not a string", b"queue: sqlite:///q.db\ninputs: [\"file:///in/\"]\nresults: file:///out/\ntags:\n  n: [1]\n".to_vec(), &["tags", "line 5"]),
        ("unknown key", YAML.replace("concurrency", "concurency").into_bytes(), &["unknown field `concurency`", "line 4"]),
        ("unknown nested key", format!("{YAML}spot:\n  pol_seconds: 3\n").into_bytes(), &["pol_seconds", "line 9"]),
        ("missing key", b"queue: sqlite:///q.db\ninputs: [\"file:///in/\"]\n".to_vec(), &["missing field `results`"]),
        ("out of range", YAML.replace("concurrency: 8", "concurrency: 0").into_bytes(), &["line 4: concurrency: expected 1..=1024, got 0"]),
        ("nested out of range", format!("{YAML}spot:\n  poll_seconds: 0\n").into_bytes(), &["line 9: spot.poll_seconds: expected 1..=60, got 0"]),
        ("bad enum", format!("{YAML}spot:\n  on_rebalance: panic\n").into_bytes(), &["on_rebalance", "unknown variant `panic`"]),
        ("bad queue", YAML.replace("sqlite:///var", "ftp://var").into_bytes(), &["line 1: queue:"]),
        ("relative sqlite path", YAML.replace("sqlite:///var", "sqlite://var").into_bytes(), &["three slashes"]),
        // What the agent's queue::open refuses, userdata check refuses (one validator).
        ("sqlite folder", YAML.replace("sqlite:///var/lib/rangefleet/queue.db", "sqlite:///tmp/").into_bytes(), &["line 1: queue:", "names a folder"]),
        ("sqlite query", YAML.replace("queue.db", "queue.db?mode=ro").into_bytes(), &["line 1: queue:", "query"]),
        ("SQS URL without a queue", YAML.replace("sqlite:///var/lib/rangefleet/queue.db", "https://sqs.eu-west-1.amazonaws.com/").into_bytes(), &["line 1: queue:", "no queue path"]),
        ("bad input scheme", YAML.replace("s3://trips-data/trips/", "ftp://x/").into_bytes(), &["inputs[0]", "not allowed"]),
        ("dot segment in input", YAML.replace("s3://trips-data/trips/", "file:///srv/../etc/").into_bytes(), &["inputs[0]", ".."]),
        ("reserved tag", YAML.replace("team: data", "aws:team: data").into_bytes(), &["tags.aws:team", "reserved"]),
        ("unknown placeholder", YAML.replace("{instance_id}", "{hostname}").into_bytes(), &["tags.Name", "unknown placeholder {hostname}"]),
        ("relative exec", format!("{YAML}processors:\n  exec:\n    argv: [my-step]\n").into_bytes(), &["processors.exec.argv", "absolute"]),
        ("no config entry", b"#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hi\n".to_vec(), &["no write_files entry", "/etc/rangefleet/agent.yaml"]),
        ("cloud-config without write_files", b"#cloud-config\npackages: [curl]\n".to_vec(), &["no write_files entry"]),
        ("broken cloud-config YAML", b"#cloud-config\nwrite_files: [\n".to_vec(), &["#cloud-config is not valid YAML"]),
        ("oversize", big.into_bytes(), &["larger than 1048576"]),
        ("gzip bomb", zeros, &["larger than 1048576"]),
        ("alias bomb", alias_bomb.as_bytes().to_vec(), &["repetition limit"]),
        ("truncated gzip", truncated, &["gzip"]),
        ("invalid base64 entry", b"#cloud-config\nwrite_files:\n  - path: /etc/rangefleet/agent.yaml\n    encoding: b64\n    content: '!!!not base64!!!'\n".to_vec(), &["invalid base64"]),
        ("unknown entry encoding", b"#cloud-config\nwrite_files:\n  - path: /etc/rangefleet/agent.yaml\n    encoding: rot13\n    content: x\n".to_vec(), &["unknown encoding \"rot13\""]),
        ("MIME without cloud-config", mime(&[("text/x-shellscript", "", b"#!/bin/sh\n".to_vec())]), &["no text/cloud-config part", "text/x-shellscript"]),
        ("MIME without boundary", b"Content-Type: multipart/mixed\nMIME-Version: 1.0\n\nx\n".to_vec(), &["no boundary"]),
        ("shell script", b"#!/bin/bash\nyum install -y x\n".to_vec(), &["shell script"]),
        ("binary junk", vec![0xff, 0xfe, 0x00, 0x41, 0x80], &["not UTF-8"]),
        ("YAML that is not a mapping", b"- just\n- a list\n".to_vec(), &["invalid type: sequence"]),
    ];
    assert!(cases.len() >= 25);
    for (name, raw, needles) in cases {
        let err = match check(&raw) {
            Ok(c) => panic!("{name}: accepted as {c:?}"),
            Err(e) => e,
        };
        for n in needles {
            assert!(err.contains(n), "{name}: {err:?} should mention {n:?}");
        }
    }
}
