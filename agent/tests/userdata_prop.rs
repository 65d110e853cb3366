//! Property test: user-data decoding never panics, whatever is wrapped around whatever.
//!
//! Inputs are built the way real user-data is (gzip, base64, MIME, cloud-config entries)
//! around random and mutated documents, then decoded and parsed. 100,000 cases by
//! default; `PROPTEST_CASES` overrides.

mod runner;

use std::io::Write;

use base64::Engine;
use proptest::prelude::*;
use rangefleet::boot::{config, userdata};

const SEEDS: [&str; 4] = [
    "queue: sqlite:///q.db\ninputs: [\"file:///in/\"]\nresults: file:///out/\nconcurrency: 4\ntags: {Name: \"w-{instance_id}\"}\n",
    "{\"queue\": \"https://sqs.x/1/q\", \"inputs\": [\"s3://b/p/\"], \"results\": \"s3://b/r/\"}",
    "queue = \"sqlite:///q.db\"\ninputs = [\"file:///in/\"]\nresults = \"file:///out/\"\n[spot]\npoll_seconds = 3\n",
    "a: &a [x, x]\nb: [*a, *a]\n",
];

#[derive(Debug, Clone)]
enum Wrap {
    Gzip,
    Base64,
    Mime,
    CloudConfig(u8),
}

fn wrap(doc: Vec<u8>, w: &Wrap) -> Vec<u8> {
    match w {
        Wrap::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&doc).unwrap();
            e.finish().unwrap()
        }
        Wrap::Base64 => base64::engine::general_purpose::STANDARD
            .encode(&doc)
            .into_bytes(),
        Wrap::Mime => {
            let mut m = b"Content-Type: multipart/mixed; boundary=XYZ\n\n--XYZ\nContent-Type: text/cloud-config\n\n".to_vec();
            m.extend_from_slice(&doc);
            m.extend_from_slice(b"\n--XYZ--\n");
            m
        }
        Wrap::CloudConfig(enc) => {
            let (encoding, content) = match enc % 3 {
                0 => (
                    "text/plain",
                    String::from_utf8_lossy(&doc).replace('\n', "\n      "),
                ),
                1 => (
                    "b64",
                    base64::engine::general_purpose::STANDARD.encode(&doc),
                ),
                _ => (
                    "gz+b64",
                    base64::engine::general_purpose::STANDARD.encode(wrap(doc, &Wrap::Gzip)),
                ),
            };
            format!("#cloud-config\nwrite_files:\n  - path: /etc/rangefleet/agent.yaml\n    encoding: {encoding}\n    content: |\n      {content}\n").into_bytes()
        }
    }
}

fn wraps() -> impl Strategy<Value = Vec<Wrap>> {
    prop::collection::vec(
        prop_oneof![
            Just(Wrap::Gzip),
            Just(Wrap::Base64),
            Just(Wrap::Mime),
            any::<u8>().prop_map(Wrap::CloudConfig),
        ],
        0..4,
    )
}

/// A seed document with a few bytes changed, inserted or removed.
fn document() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SEEDS.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(|(i, edits)| {
            let mut d = SEEDS[i].as_bytes().to_vec();
            for (at, byte, op) in edits {
                if d.is_empty() {
                    d.push(byte);
                    continue;
                }
                let at = at.index(d.len());
                match op {
                    0 => d[at] = byte,
                    1 => d.insert(at, byte),
                    _ => {
                        d.remove(at);
                    }
                }
            }
            d
        })
}

proptest! {
    #![proptest_config(runner::config(0x5eed_0001))]

    #[test]
    fn decoding_never_panics(doc in prop_oneof![document(), prop::collection::vec(any::<u8>(), 0..200)], layers in wraps(), cut in any::<Option<prop::sample::Index>>()) {
        let mut raw = doc;
        for w in &layers {
            raw = wrap(raw, w);
        }
        if let Some(cut) = cut {
            if !raw.is_empty() { raw.truncate(cut.index(raw.len())); }
        }
        if let Ok(doc) = userdata::decode(&raw) {
            let _ = config::parse(&doc);
        }
    }
}

#[test]
fn unmutated_seeds_survive_every_wrapping() {
    for layers in [
        vec![Wrap::Gzip, Wrap::Base64],
        vec![Wrap::CloudConfig(2), Wrap::Mime, Wrap::Gzip],
        vec![Wrap::Base64, Wrap::Gzip, Wrap::Base64],
    ] {
        for seed in &SEEDS[..3] {
            let mut raw = seed.as_bytes().to_vec();
            for w in &layers {
                raw = wrap(raw, w);
            }
            let doc = userdata::decode(&raw).unwrap_or_else(|e| panic!("{layers:?}: {e}"));
            config::parse(&doc).unwrap_or_else(|e| panic!("{layers:?}: {e}"));
        }
    }
}
