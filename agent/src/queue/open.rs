//! From a queue URL in the config (DESIGN 5.4) to a queue.

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};

use super::sqlite::SqliteQueue;
use super::sqs::SqsQueue;
use super::{Queue, QueueError};

const ACCEPTED: &str = "a queue URL is sqlite:///absolute/path.db (one machine) or the \
                        http(s):// URL of an SQS queue";

/// Opens the queue `url` names; `region` overrides the AWS region for SQS.
///
/// `sqlite:///abs/path.db` opens (and creates, with its folder) a SQLite queue. Any
/// `http://` or `https://` URL is an SQS queue URL; the client comes from aws-config's
/// default chain, so `AWS_REGION`, `AWS_ENDPOINT_URL` and the usual credentials apply.
pub async fn open(url: &str, region: Option<&str>) -> Result<Arc<dyn Queue>, QueueError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        QueueError::BadUrl(format!(
            "queue URL {url:?} does not parse ({e}); {ACCEPTED}"
        ))
    })?;
    match parsed.scheme() {
        "sqlite" => {
            let path = sqlite_path(url, &parsed)?;
            let q = tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        QueueError::Fault(format!(
                            "failed to create the folder {} for SQLite queue {}: {e}",
                            dir.display(),
                            path.display()
                        ))
                    })?;
                }
                SqliteQueue::open(&path)
            })
            .await
            .map_err(|e| QueueError::Fault(format!("failed to open SQLite queue {url}: {e}")))??;
            Ok(Arc::new(q))
        }
        "http" | "https" => {
            if parsed.host_str().is_none_or(str::is_empty)
                || parsed.path().trim_matches('/').is_empty()
            {
                return Err(QueueError::BadUrl(format!(
                    "queue URL {url:?} has no host or no queue path; {ACCEPTED}"
                )));
            }
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(r) = region {
                loader = loader.region(Region::new(r.to_string()));
            }
            let config = loader.load().await;
            Ok(Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(&config),
                url,
            )))
        }
        other => Err(QueueError::BadUrl(format!(
            "queue URL {url:?} has scheme {other:?}; {ACCEPTED}"
        ))),
    }
}

/// `sqlite:///abs/path.db` → `/abs/path.db`, percent-decoded; a host or a relative path is refused.
fn sqlite_path(url: &str, parsed: &url::Url) -> Result<PathBuf, QueueError> {
    let bad = |why: &str| QueueError::BadUrl(format!("queue URL {url:?} {why}; {ACCEPTED}"));
    if parsed.host_str().is_some_and(|h| !h.is_empty()) {
        return Err(bad("has a host (use three slashes: sqlite:///path)"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("has a query or fragment"));
    }
    let path = parsed
        .to_file_path()
        .map_err(|()| bad("is not an absolute file path"))?;
    if path.file_name().is_none() || parsed.path().ends_with('/') {
        return Err(bad("names a folder, not a database file"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn other_schemes_are_bad_urls_listing_the_accepted_forms() {
        for url in [
            "s3://bucket/q",
            "queue.db",
            "sqlite://relative/q.db",
            "sqlite:///tmp/",
            "https://",
        ] {
            match open(url, None).await {
                Err(QueueError::BadUrl(m)) => assert!(m.contains("sqlite:///"), "{m}"),
                Err(e) => panic!("{url}: expected BadUrl, got {e:?}"),
                Ok(_) => panic!("{url}: expected BadUrl, got a queue"),
            }
        }
    }

    #[tokio::test]
    async fn sqlite_urls_create_the_folder() {
        let dir = std::env::temp_dir().join(format!(
            "rangefleet-open-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let url = format!("sqlite://{}/sub%20dir/q.db", dir.display());
        let q = open(&url, None).await.unwrap();
        q.enqueue(&["x".to_string()]).await.unwrap();
        assert_eq!(q.stats().await.unwrap().visible, 1);
        assert!(dir.join("sub dir/q.db").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
