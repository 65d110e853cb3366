//! From a queue URL in the config (docs/config.md) to a queue.

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};

use super::sqlite::SqliteQueue;
use super::sqs::SqsQueue;
use super::{Queue, QueueError};

const ACCEPTED: &str = "a queue URL is sqlite:///absolute/path.db (one machine) or the \
                        http(s):// URL of an SQS queue";

/// The domains of AWS's own endpoints.
const AWS_SUFFIXES: [&str; 3] = [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"];

/// `sqs.eu-west-1.amazonaws.com` → `eu-west-1`.
fn region_of_host(host: &str) -> Option<String> {
    let rest = host.strip_prefix("sqs.")?;
    let region = AWS_SUFFIXES.iter().find_map(|s| rest.strip_suffix(s))?;
    crate::contract::allow::is_region_name(region).then(|| region.to_string())
}

/// The endpoint to set on the SQS client: the queue URL's origin when nothing is
/// configured and the host is not AWS's.
fn own_endpoint(queue_url: &url::Url, configured: Option<&str>) -> Option<String> {
    let host = queue_url.host_str()?;
    (configured.is_none() && !is_aws_host(host)).then(|| queue_url.origin().ascii_serialization())
}

fn is_aws_host(host: &str) -> bool {
    AWS_SUFFIXES.iter().any(|s| host.ends_with(s))
}

/// What a queue URL names, once checked.
enum Target {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// An SQS queue URL with a host and a queue path.
    Sqs(url::Url),
}

/// Checks a queue URL without opening anything: `Ok` exactly when [`open`] would get
/// past the URL (the config check calls this, so `userdata check` and the agent agree).
pub fn check_url(url: &str) -> Result<(), QueueError> {
    target(url).map(|_| ())
}

/// The one parser of queue URLs: `sqlite:///abs/path.db` or an http(s) SQS queue URL.
fn target(url: &str) -> Result<Target, QueueError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        QueueError::BadUrl(format!(
            "queue URL {url:?} does not parse ({e}); {ACCEPTED}"
        ))
    })?;
    match parsed.scheme() {
        "sqlite" => Ok(Target::Sqlite(sqlite_path(url, &parsed)?)),
        "http" | "https" => {
            if parsed.host_str().is_none_or(str::is_empty)
                || parsed.path().trim_matches('/').is_empty()
            {
                return Err(QueueError::BadUrl(format!(
                    "queue URL {url:?} has no host or no queue path; {ACCEPTED}"
                )));
            }
            Ok(Target::Sqs(parsed))
        }
        other => Err(QueueError::BadUrl(format!(
            "queue URL {url:?} has scheme {other:?}; {ACCEPTED}"
        ))),
    }
}

/// What a command does with a queue, which decides whether a SQLite file may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `plan`: creates the SQLite file (and its folder) if needed.
    Create,
    /// The agent: the SQLite file must exist and be writable.
    Write,
    /// `status`: the SQLite file must exist; nothing is created or changed.
    Read,
}

/// Opens the queue `url` names; `region` overrides the AWS region for SQS.
///
/// `sqlite:///abs/path.db` opens (and creates, with its folder) a SQLite queue. Any
/// `http://` or `https://` URL is an SQS queue URL; the client comes from aws-config's
/// default chain, so `AWS_REGION`, `AWS_ENDPOINT_URL` and the usual credentials apply.
pub async fn open(url: &str, region: Option<&str>) -> Result<Arc<dyn Queue>, QueueError> {
    open_for(url, region, Access::Create).await
}

/// Opens the queue `url` names for `access`: like [`open`], but with [`Access::Write`]
/// or [`Access::Read`] a SQLite file that does not exist is refused
/// ([`QueueError::BadUrl`], naming the path) and nothing is created.
pub async fn open_for(
    url: &str,
    region: Option<&str>,
    access: Access,
) -> Result<Arc<dyn Queue>, QueueError> {
    match target(url)? {
        Target::Sqlite(path) => {
            let q = tokio::task::spawn_blocking(move || match access {
                Access::Write => SqliteQueue::open_existing(&path),
                Access::Read => SqliteQueue::open_to_read(&path),
                Access::Create => {
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
                }
            })
            .await
            .map_err(|e| QueueError::Fault(format!("failed to open SQLite queue {url}: {e}")))??;
            Ok(Arc::new(q))
        }
        Target::Sqs(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            // An explicit region wins; else an AWS queue URL says where the queue is
            // (a request sent to another region's endpoint is refused).
            if let Some(r) = region.map(str::to_string).or_else(|| region_of_host(host)) {
                loader = loader.region(Region::new(r));
            }
            let config = loader.load().await;
            let mut sqs = aws_sdk_sqs::config::Builder::from(&config);
            // A queue that is not on AWS (moto, LocalStack, ElasticMQ) is reached at the
            // URL's own origin unless AWS_ENDPOINT_URL says otherwise.
            if let Some(endpoint) = own_endpoint(&parsed, config.endpoint_url()) {
                sqs = sqs.endpoint_url(endpoint);
            }
            let client = aws_sdk_sqs::Client::from_conf(sqs.build());
            Ok(Arc::new(SqsQueue::new(client, url)))
        }
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
pub(crate) mod tests {
    use super::*;

    /// URLs `open` refuses; `boot::config` tests that a config with any of them is refused too.
    pub(crate) const REFUSED: [&str; 8] = [
        "s3://bucket/q",
        "queue.db",
        "sqlite://relative/q.db",
        "sqlite:///tmp/",
        "sqlite:///",
        "sqlite:///tmp/q.db?mode=ro",
        "https://",
        "https://sqs.eu-west-1.amazonaws.com/",
    ];

    #[tokio::test]
    async fn other_schemes_are_bad_urls_listing_the_accepted_forms() {
        for url in REFUSED {
            assert!(
                matches!(check_url(url), Err(QueueError::BadUrl(_))),
                "{url}"
            );
            match open(url, None).await {
                Err(QueueError::BadUrl(m)) => assert!(m.contains("sqlite:///"), "{m}"),
                Err(e) => panic!("{url}: expected BadUrl, got {e:?}"),
                Ok(_) => panic!("{url}: expected BadUrl, got a queue"),
            }
        }
    }

    #[test]
    fn aws_queue_urls_name_their_region() {
        assert_eq!(
            region_of_host("sqs.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_host("sqs.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_of_host("127.0.0.1"), None);
        assert_eq!(region_of_host("queue.amazonaws.com"), None);
        let local = url::Url::parse("http://127.0.0.1:5000/123456789012/jobs").unwrap();
        let aws = url::Url::parse("https://sqs.us-east-1.amazonaws.com/123456789012/jobs").unwrap();
        assert_eq!(
            own_endpoint(&local, None).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(own_endpoint(&local, Some("http://127.0.0.1:9")), None);
        assert_eq!(own_endpoint(&aws, None), None);
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
