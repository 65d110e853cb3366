use std::sync::Arc;

use object_store::memory::InMemory;

use super::*;
use crate::operator::gen::generate_in_memory;
use crate::process::taxi::record::RECORD_LENGTH;
use crate::process::taxi::TaxiStats;

const L: u64 = RECORD_LENGTH as u64;

fn data(records: u64) -> Vec<u8> {
    generate_in_memory(7, "yellow", "2016-01-01", records, Some(13))
        .expect("gen")
        .0
}

fn whole(records: u64) -> RecordRange {
    RecordRange {
        first_record: 0,
        record_count: records,
        record_length: L,
    }
}

async fn stats(
    store: &Store,
    key: &str,
    range: &RecordRange,
) -> Result<(TaxiStats, u64), StoreError> {
    let mut t = TaxiStats::default();
    let mut ok = true;
    let n = store
        .read_records(key, range, None, &mut |b: &[u8]| {
            ok &= b.len() % RECORD_LENGTH == 0 && !b.is_empty();
            t.add_records(b);
        })
        .await?;
    assert!(ok, "the sink saw a partial record");
    Ok((t, n))
}

fn faulty_store() -> (Store, Arc<FaultyObjectStore>) {
    let f = Arc::new(FaultyObjectStore::new(Arc::new(InMemory::new())));
    (Store::from_object_store(f.clone(), "faulty:///"), f)
}

#[tokio::test]
async fn every_chunk_size_gives_the_same_stats() {
    let buf = data(1000);
    let mut expect = TaxiStats::default();
    expect.add_records(&buf);
    let store = Store::memory();
    store.put("d/part.rec", buf.clone().into()).await.unwrap();
    for n in [1, 79, 80, 81, 65_537] {
        let s = store.clone().with_chunk_size(n);
        let (t, bytes) = stats(&s, "d/part.rec", &whole(1000)).await.unwrap();
        assert_eq!(t, expect, "chunk size {n}");
        assert_eq!(bytes, buf.len() as u64);
    }
    // A middle range equals the same records added directly.
    let r = RecordRange {
        first_record: 123,
        record_count: 456,
        record_length: L,
    };
    let mut mid = TaxiStats::default();
    mid.add_records(&buf[123 * RECORD_LENGTH..579 * RECORD_LENGTH]);
    assert_eq!(
        stats(&store.clone().with_chunk_size(81), "d/part.rec", &r)
            .await
            .unwrap()
            .0,
        mid
    );
}

#[tokio::test]
async fn range_past_the_end_and_partial_objects_are_permanent() {
    let store = Store::memory();
    store.put("a.rec", data(10).into()).await.unwrap();
    let past = RecordRange {
        first_record: 5,
        record_count: 10,
        record_length: L,
    };
    let e = stats(&store, "a.rec", &past).await.unwrap_err();
    let StoreError::Permanent(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("memory:///a.rec") && m.contains("records 5+10") && m.contains("800 bytes"),
        "{m}"
    );

    let beyond = RecordRange {
        first_record: 50,
        record_count: 1,
        record_length: L,
    };
    let e = stats(&store, "a.rec", &beyond).await.unwrap_err();
    let StoreError::Permanent(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("a.rec") && m.contains("records 50+1") && m.contains("800 bytes"),
        "{m}"
    );

    let mut odd = data(10);
    odd.extend_from_slice(&[b'x'; 17]);
    store.put("odd.rec", odd.into()).await.unwrap();
    let e = stats(&store, "odd.rec", &whole(10)).await.unwrap_err();
    let StoreError::Permanent(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("odd.rec") && m.contains("817 bytes") && m.contains("not a whole number"),
        "{m}"
    );

    // The planned size is checked before any request.
    let e = store
        .read_records(
            "a.rec",
            &past,
            Some(&Expect {
                size: Some(800),
                etag: None,
            }),
            &mut |_: &[u8]| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Permanent(_)), "{e:?}");

    let e = stats(&store, "missing.rec", &whole(1)).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Permanent(m) if m.contains("missing.rec")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_changed_size_without_a_planned_etag_is_permanent() {
    let store = Store::memory();
    store.put("a.rec", data(10).into()).await.unwrap();
    // The plan saw 11 records and no ETag; the object has 10. Records 0..5 lie inside
    // both, so only the size tells.
    let e = store
        .read_records(
            "a.rec",
            &whole(5),
            Some(&Expect {
                size: Some(11 * L),
                etag: None,
            }),
            &mut |_: &[u8]| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Permanent(m) if m.contains("changed since the plan: 880 bytes planned, 800 now")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_changed_object_is_permanent() {
    let store = Store::memory();
    store.put("a.rec", data(10).into()).await.unwrap();
    let before = store.head("a.rec").await.unwrap();
    store.put("a.rec", data(10).into()).await.unwrap();
    let e = store
        .read_records(
            "a.rec",
            &whole(10),
            Some(&Expect {
                size: Some(800),
                etag: before.etag.clone(),
            }),
            &mut |_: &[u8]| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Permanent(m) if m.contains("changed since the plan")),
        "{e:?}"
    );
    let now = store.head("a.rec").await.unwrap();
    let n = store
        .read_records(
            "a.rec",
            &whole(10),
            Some(&Expect {
                size: Some(800),
                etag: now.etag,
            }),
            &mut |_: &[u8]| {},
        )
        .await
        .unwrap();
    assert_eq!(n, 800);
}

#[tokio::test]
async fn injected_faults_are_classified() {
    let (store, f) = faulty_store();
    store.put("a.rec", data(100).into()).await.unwrap();
    f.push(1, GetFault::Retryable);
    f.push(1, GetFault::Permanent);
    f.push(1, GetFault::Forbidden);
    f.push(1, GetFault::CutAfter(1000));
    let r = whole(100);
    let e = stats(&store, "a.rec", &r).await.unwrap_err();
    assert!(matches!(e, StoreError::Retryable(_)), "{e:?}");
    let e = stats(&store, "a.rec", &r).await.unwrap_err();
    assert!(matches!(e, StoreError::Permanent(_)), "{e:?}");
    let e = stats(&store, "a.rec", &r).await.unwrap_err();
    assert!(matches!(e, StoreError::Fault(_)), "{e:?}");
    let e = stats(&store, "a.rec", &r).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Retryable(m) if m.contains("cut short")),
        "{e:?}"
    );
    // Faults used up: the next read is whole.
    assert_eq!(stats(&store, "a.rec", &r).await.unwrap().1, 8000);
    assert_eq!(f.gets(), 5);
}

#[tokio::test]
async fn put_create_is_create_only() {
    let store = Store::memory();
    assert_eq!(
        store.put_create("r/x.json", "one".into()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_create("r/x.json", "two".into()).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get("r/x.json").await.unwrap(), "one");
    store.put("r/x.json", "three".into()).await.unwrap();
    assert_eq!(store.get("r/x.json").await.unwrap(), "three");
    assert!(matches!(
        store.get("r/nope.json").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn listing_skips_hidden_names_and_sorts() {
    let store = Store::memory();
    for k in [
        "color=b/date=1/part-0000.rec",
        "color=a/date=1/part-0000.rec",
        "_expected.json",
        "_instances/i-1.json",
        "color=a/.tmp/x.rec",
        "color=a/_SUCCESS",
    ] {
        store.put(k, "x".into()).await.unwrap();
    }
    let keys: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "color=a/date=1/part-0000.rec",
            "color=b/date=1/part-0000.rec"
        ]
    );
    let under: Vec<String> = store
        .list_under("_instances/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(under, ["_instances/i-1.json"]);
}

#[tokio::test]
async fn file_store_reads_lists_and_opens_single_objects() {
    let dir = std::env::temp_dir().join(format!("rangefleet-store-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("color=a")).unwrap();
    let buf = data(3000);
    std::fs::write(dir.join("color=a/part.rec"), &buf).unwrap();
    std::fs::write(dir.join("_expected.json"), "{}").unwrap();
    let mut expect = TaxiStats::default();
    expect.add_records(&buf);

    let url = format!("file://{}/", dir.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.url(), url);
    let list = store.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].key, "color=a/part.rec");
    assert_eq!(list[0].size, buf.len() as u64);
    for n in [1, 81, 65_537] {
        let (t, _) = stats(
            &store.clone().with_chunk_size(n),
            "color=a/part.rec",
            &whole(3000),
        )
        .await
        .unwrap();
        assert_eq!(t, expect, "chunk {n}");
    }
    // The file's ETag makes a conditional read pass.
    let n = store
        .read_records(
            "color=a/part.rec",
            &whole(3000),
            Some(&Expect {
                size: Some(list[0].size),
                etag: list[0].etag.clone(),
            }),
            &mut |_: &[u8]| {},
        )
        .await
        .unwrap();
    assert_eq!(n, 240_000);

    let single = Store::open(&format!("file://{}/color=a/part.rec", dir.display()))
        .await
        .unwrap();
    assert_eq!(single.url(), format!("file://{}/color=a/", dir.display()));
    let list = single.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].key, "part.rec");

    assert_eq!(
        store.put_create("out/r.json", "1".into()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_create("out/r.json", "2".into()).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get("out/r.json").await.unwrap(), "1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_are_classified_from_their_messages() {
    let generic = |m: &str| object_store::Error::Generic {
        store: "S3",
        source: m.to_string().into(),
    };
    let c = |m: &str| classify(&generic(m), "s3://b/k");
    assert!(matches!(c("Server returned non-2xx status code: 400 Bad Request: <Code>AuthorizationHeaderMalformed</Code>"), StoreError::Fault(_)));
    assert!(matches!(
        c("Server returned non-2xx status code: 301 Moved Permanently"),
        StoreError::Fault(_)
    ));
    assert!(matches!(
        c("Server returned non-2xx status code: 416 Range Not Satisfiable"),
        StoreError::Permanent(_)
    ));
    assert!(matches!(
        c("Server returned non-2xx status code: 503 Service Unavailable: SlowDown"),
        StoreError::Retryable(_)
    ));
    assert!(matches!(
        c("error sending request: operation timed out"),
        StoreError::Retryable(_)
    ));
    let creds = object_store::Error::Generic {
        store: aws::CREDENTIALS,
        source: "no providers in chain".into(),
    };
    assert!(matches!(classify(&creds, "s3://b/k"), StoreError::Fault(_)));
}

/// One case per text rule left in `classify` (`FAULT_TEXT`, `RANGE_TEXT`, any other
/// 4xx), each inside a `Generic` error, whose variant says nothing.
#[test]
fn every_text_rule_has_a_case() {
    let c = |m: &str| {
        classify(
            &object_store::Error::Generic {
                store: "S3",
                source: m.to_string().into(),
            },
            "s3://b/k",
        )
    };
    let faults = [
        "Server returned non-2xx status code: 400 Bad Request: <Code>AuthorizationHeaderMalformed</Code>",
        "Server returned non-2xx status code: 301 Moved Permanently: <Code>PermanentRedirect</Code>",
        "Received redirect without LOCATION, this normally indicates an incorrectly configured region",
        "Server returned non-2xx status code: 301 Moved Permanently",
        "Server returned non-2xx status code: 401 Unauthorized",
        "Server returned non-2xx status code: 403 Forbidden",
        "Server returned error response: <Code>AccessDenied</Code>",
        "Server returned error response: <Code>InvalidAccessKeyId</Code>",
        "Server returned error response: <Code>SignatureDoesNotMatch</Code>",
        "Server returned error response: <Code>ExpiredToken</Code>",
        "Server returned error response: <Code>InvalidToken</Code>",
        "Server returned error response: <Code>NoSuchBucket</Code>",
    ];
    assert_eq!(faults.len(), FAULT_TEXT.len());
    for (m, rule) in faults.iter().zip(FAULT_TEXT) {
        assert!(
            m.to_ascii_lowercase().contains(rule),
            "{m} is {rule}'s case"
        );
        let e = c(m);
        assert!(matches!(e, StoreError::Fault(_)), "{m}: {e:?}");
        assert_eq!(e.class(), crate::error::ErrorClass::Environment);
    }
    let ranges = [
        "Server returned non-2xx status code: 416 Range Not Satisfiable",
        "Server returned error response: <Code>InvalidRange</Code>",
        "invalid range bytes=100-200",
        "Wanted range starting at 400, but object was only 160 bytes long",
        "Requested range was invalid",
    ];
    assert_eq!(ranges.len(), RANGE_TEXT.len());
    for (m, rule) in ranges.iter().zip(RANGE_TEXT) {
        assert!(
            m.to_ascii_lowercase().contains(rule),
            "{m} is {rule}'s case"
        );
        let e = c(m);
        assert!(matches!(e, StoreError::Permanent(_)), "{m}: {e:?}");
        assert_eq!(e.class(), crate::error::ErrorClass::Job);
    }
    let other_4xx =
        c("Server returned non-2xx status code: 400 Bad Request: <Code>InvalidArgument</Code>");
    assert!(
        matches!(other_4xx, StoreError::Permanent(_)),
        "{other_4xx:?}"
    );
    let fallback = c("Server returned non-2xx status code: 500 Internal Server Error");
    assert!(matches!(fallback, StoreError::Retryable(_)), "{fallback:?}");
    assert_eq!(fallback.class(), crate::error::ErrorClass::Retryable);
}

#[test]
fn typed_errors_are_classified_by_their_variant() {
    use object_store::Error as E;
    let src = || -> Box<dyn std::error::Error + Send + Sync> {
        // Text that would sort otherwise: the variant must win.
        "status code: 403 AccessDenied".into()
    };
    let path = || "k".to_string();
    let c = |e: E| classify(&e, "s3://b/k");
    assert!(matches!(
        c(E::NotFound {
            path: path(),
            source: src()
        }),
        StoreError::NotFound(_)
    ));
    for e in [
        E::Precondition {
            path: path(),
            source: src(),
        },
        E::NotModified {
            path: path(),
            source: src(),
        },
        E::AlreadyExists {
            path: path(),
            source: src(),
        },
        E::NotSupported { source: src() },
        E::NotImplemented {
            operation: "copy".into(),
            implementer: "test".into(),
        },
    ] {
        assert!(matches!(c(e), StoreError::Permanent(_)));
    }
    for e in [
        E::PermissionDenied {
            path: path(),
            source: "no".into(),
        },
        E::Unauthenticated {
            path: path(),
            source: "no".into(),
        },
        E::UnknownConfigurationKey {
            store: "S3",
            key: "nope".into(),
        },
    ] {
        assert!(matches!(c(e), StoreError::Fault(_)));
    }
}

#[tokio::test]
async fn the_cache_keeps_one_store_per_base() {
    let cache = StoreCache::default();
    let m = Store::memory();
    m.put("k.rec", data(2).into()).await.unwrap();
    cache.insert("memory:///", m).await;
    let a = cache.get("memory:///").await.unwrap();
    assert_eq!(a.get("k.rec").await.unwrap().len(), 160);
    let f1 = cache.get("file:///").await.unwrap();
    let f2 = cache.get("file:///").await.unwrap();
    assert!(Arc::ptr_eq(f1.object_store(), f2.object_store()));
}

#[test]
fn messages_say_what_happened_without_the_class_word() {
    // The class is the variant (and a log field), never a prefix people read.
    for e in [
        StoreError::Retryable("GET k: HTTP 503".into()),
        StoreError::Permanent("bad store URL \"x\": relative URL without a base".into()),
        StoreError::Fault("GET k: access denied".into()),
        StoreError::NotFound("GET k: no such object".into()),
    ] {
        let text = e.to_string();
        for word in ["retryable", "permanent", "fault", "not found:"] {
            assert!(!text.starts_with(word), "{e:?} reads {text:?}");
        }
        let (StoreError::Retryable(m)
        | StoreError::Permanent(m)
        | StoreError::Fault(m)
        | StoreError::NotFound(m)) = &e;
        assert_eq!(&text, m);
    }
}

/// A local HTTP server whose `/data/…` answers `302` to `/secret/…`; counts what the
/// secret side served. One request per connection.
async fn redirecting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = Arc::clone(&secret_hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let hits = Arc::clone(&hits);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = if path.starts_with("/secret/") {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = "S".repeat(4 * 144);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    let to = path.replacen("/data/", "/secret/", 1);
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}{to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/"), secret_hits)
}

/// Issue 12: a 302 from an allowed HTTP source to a place not allowed was followed and
/// the job completed from it. Now every read refuses it, permanently, naming it.
#[tokio::test]
async fn http_redirects_are_refused_never_followed() {
    let (base, secret_hits) = redirecting_server().await;
    let store = Store::open(&base).await.unwrap();
    let permanent_redirect = |r: Result<String, StoreError>| match r {
        Err(StoreError::Permanent(m)) => assert!(
            m.contains("302") && m.contains("never follows redirects"),
            "{m}"
        ),
        other => panic!("expected a permanent redirect error, got {other:?}"),
    };
    permanent_redirect(store.get("data/x.rec").await.map(|b| format!("{b:?}")));
    permanent_redirect(store.head("data/x.rec").await.map(|i| format!("{i:?}")));
    let range = RecordRange {
        first_record: 0,
        record_count: 2,
        record_length: 144,
    };
    permanent_redirect(
        store
            .read_records("data/x.rec", &range, None, &mut |_: &[u8]| {})
            .await
            .map(|n| n.to_string()),
    );
    assert_eq!(
        secret_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect target was fetched"
    );
}
