//! IMDSv2: who this instance is, its user-data and its notices.
//!
//! One client, one cached session token. The rules (docs/architecture.md):
//! - the token lives 21,600 s and is renewed 120 s before it expires, or at once after a 401;
//! - 404 means "absent" (`Ok(None)`), the normal answer for `spot/instance-action`;
//! - connection failures, timeouts and 5xx are retried with full-jitter backoff until the
//!   caller's deadline; everything else fails at once;
//! - bodies are bytes (gzipped user-data is not UTF-8);
//! - IMDSv1 (no token) only when the operator allowed it.
//!
//! The token is a credential for the metadata service: it is never logged or printed.

pub mod mock;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backoff::FullJitter;

/// The IPv4 endpoint every EC2 instance has.
pub const DEFAULT_ENDPOINT_V4: &str = "http://169.254.169.254";
/// The IPv6 endpoint (Nitro instances, when enabled in the launch template).
pub const DEFAULT_ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
/// Lifetime asked for each session token: the maximum IMDS grants.
pub const TOKEN_TTL: Duration = Duration::from_secs(21_600);
/// A token is renewed this long before it expires.
pub const TOKEN_REFRESH_EARLY: Duration = Duration::from_secs(120);
/// Largest body read from IMDS (user-data is at most 16 KiB; this leaves room).
pub const MAX_BODY: usize = 1 << 20;

const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// What went wrong asking IMDS. Every variant names the endpoint and the path.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// No answer before the deadline: IMDS unreachable, refusing or failing.
    #[error(
        "failed to reach IMDS at {endpoint} for {path}: {attempts} attempts in {elapsed:.1?}, \
         last error: {last}"
    )]
    Deadline {
        /// Base URL asked.
        endpoint: String,
        /// Path asked.
        path: String,
        /// Requests made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure seen.
        last: String,
    },
    /// IMDS answered with a status that retrying will not change.
    #[error("IMDS at {endpoint} answered {path} with HTTP {status}: {body}")]
    Status {
        /// Base URL asked.
        endpoint: String,
        /// Path asked.
        path: String,
        /// HTTP status.
        status: u16,
        /// The start of the body, for the operator.
        body: String,
    },
    /// IMDSv2 is not available and IMDSv1 was not allowed.
    #[error(
        "IMDS at {endpoint} refused a session token (HTTP {status}); IMDSv1 is off by default: \
         require IMDSv2 in the launch template, or pass --imds-allow-v1 if you must"
    )]
    TokenRefused {
        /// Base URL asked.
        endpoint: String,
        /// HTTP status of the token PUT.
        status: u16,
    },
    /// The endpoint setting is not a usable URL.
    #[error("bad IMDS endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// What was given.
        endpoint: String,
        /// Why it does not work.
        reason: String,
    },
    /// A body larger than [`MAX_BODY`].
    #[error("IMDS at {endpoint} sent more than {MAX_BODY} bytes for {path}")]
    TooLarge {
        /// Base URL asked.
        endpoint: String,
        /// Path asked.
        path: String,
    },
}

impl ImdsError {
    /// True when the deadline passed without an answer (exit code 75: try again later).
    pub fn is_deadline(&self) -> bool {
        matches!(self, ImdsError::Deadline { .. })
    }
}

/// How to reach IMDS.
#[derive(Debug, Clone)]
pub struct ImdsOptions {
    /// Base URL, e.g. `http://169.254.169.254` (no path).
    pub endpoint: String,
    /// Fall back to IMDSv1 when no token can be had.
    pub allow_v1: bool,
    /// Longest a single request may take.
    pub request_timeout: Duration,
}

impl ImdsOptions {
    /// The endpoint from `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else from
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` (`IPv4` or `IPv6`), as the AWS SDKs read them.
    pub fn from_env(allow_v1: bool) -> Result<Self, ImdsError> {
        let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok();
        let mode = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").ok();
        Ok(ImdsOptions {
            endpoint: resolve_endpoint(endpoint.as_deref(), mode.as_deref())?,
            allow_v1,
            request_timeout: Duration::from_secs(5),
        })
    }
}

/// Picks the base URL from the two AWS settings (pure, so it is tested directly).
pub fn resolve_endpoint(endpoint: Option<&str>, mode: Option<&str>) -> Result<String, ImdsError> {
    if let Some(e) = endpoint.filter(|e| !e.trim().is_empty()) {
        let e = e.trim();
        let url = url::Url::parse(e).map_err(|err| ImdsError::BadEndpoint {
            endpoint: e.to_string(),
            reason: err.to_string(),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ImdsError::BadEndpoint {
                endpoint: e.to_string(),
                reason: "the scheme must be http or https".into(),
            });
        }
        return Ok(e.trim_end_matches('/').to_string());
    }
    match mode.map(str::trim) {
        None | Some("") => Ok(DEFAULT_ENDPOINT_V4.to_string()),
        Some(m) if m.eq_ignore_ascii_case("ipv4") => Ok(DEFAULT_ENDPOINT_V4.to_string()),
        Some(m) if m.eq_ignore_ascii_case("ipv6") => Ok(DEFAULT_ENDPOINT_V6.to_string()),
        Some(m) => Err(ImdsError::BadEndpoint {
            endpoint: m.to_string(),
            reason: "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 or IPv6".into(),
        }),
    }
}

/// A session token and when to stop using it.
struct Token {
    value: String,
    renew_at: Instant,
}

enum Session {
    /// No token yet, or it was dropped after a 401.
    None,
    /// IMDSv2 token in use.
    V2(Token),
    /// The token PUT was refused and v1 is allowed.
    V1,
}

/// IMDS not answering: since when, how often asked, and the last failure. A caller
/// waiting on the client reads it ([`ImdsClient::unanswered`]) to say so while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    /// The first failure since the last answer.
    pub since: Instant,
    /// Failed attempts since the last answer.
    pub attempts: u32,
    /// The last failure ("could not connect: … Connection refused").
    pub last: String,
}

/// The IMDSv2 client. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct ImdsClient {
    http: reqwest::Client,
    opts: ImdsOptions,
    session: Arc<Mutex<Session>>,
    unanswered: Arc<std::sync::Mutex<Option<Unanswered>>>,
}

impl std::fmt::Debug for ImdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately without the session: it holds the token.
        f.debug_struct("ImdsClient")
            .field("endpoint", &self.opts.endpoint)
            .finish()
    }
}

/// Why one attempt failed: worth another try or not.
enum Attempt {
    Retry(String),
    Fail(ImdsError),
}

impl ImdsClient {
    /// A client for `opts`. No request is made until the first `get`.
    pub fn new(opts: ImdsOptions) -> Result<Self, ImdsError> {
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(Duration::from_secs(1))
            // IMDS is link-local: a proxy from the environment would break it.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ImdsError::BadEndpoint {
                endpoint: opts.endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(ImdsClient {
            http,
            opts,
            session: Arc::new(Mutex::new(Session::None)),
            unanswered: Arc::default(),
        })
    }

    /// `Some` while IMDS is not answering: every attempt since the last answer failed
    /// with an error worth retrying (no connection, a timeout, 5xx).
    pub fn unanswered(&self) -> Option<Unanswered> {
        self.unanswered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note(&self, failure: Option<&str>) {
        let mut u = self.unanswered.lock().unwrap_or_else(|p| p.into_inner());
        match (failure, u.as_mut()) {
            (None, _) => *u = None,
            (Some(why), Some(seen)) => {
                seen.attempts += 1;
                why.clone_into(&mut seen.last);
            }
            (Some(why), None) => {
                *u = Some(Unanswered {
                    since: Instant::now(),
                    attempts: 1,
                    last: why.to_string(),
                })
            }
        }
    }

    /// The base URL in use.
    pub fn endpoint(&self) -> &str {
        &self.opts.endpoint
    }

    /// GET `path` (e.g. `/latest/meta-data/instance-id`), retrying until `deadline`.
    /// `Ok(None)` when IMDS says 404.
    pub async fn get(&self, path: &str, deadline: Instant) -> Result<Option<Bytes>, ImdsError> {
        let started = Instant::now();
        let mut backoff = FullJitter::imds();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match self.attempt(path, deadline).await {
                Ok(body) => {
                    self.note(None);
                    return Ok(body);
                }
                Err(Attempt::Fail(e)) => {
                    // An answer, if not the one wanted: IMDS is there.
                    self.note(None);
                    return Err(e);
                }
                Err(Attempt::Retry(why)) => {
                    self.note(Some(&why));
                    why
                }
            };
            // The last try is made at the deadline itself, then we give up.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ImdsError::Deadline {
                    endpoint: self.opts.endpoint.clone(),
                    path: path.to_string(),
                    attempts,
                    elapsed: started.elapsed(),
                    last,
                });
            }
            let pause = backoff.next_delay().min(left);
            tracing::debug!(event = "imds_retry", path, attempts, pause_ms = pause.as_millis() as u64, error = %last, "IMDS request failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// GET `path` as UTF-8 text (metadata values), `Ok(None)` on 404.
    pub async fn get_text(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ImdsError> {
        Ok(self
            .get(path, deadline)
            .await?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    async fn attempt(&self, path: &str, deadline: Instant) -> Result<Option<Bytes>, Attempt> {
        let token = self.token(deadline).await?;
        let url = format!("{}{}", self.opts.endpoint, path);
        let mut req = self.http.get(&url).timeout(self.request_timeout(deadline));
        if let Some(t) = &token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = req.send().await.map_err(|e| Attempt::Retry(describe(&e)))?;
        let status = resp.status().as_u16();
        match status {
            200 => read_body(resp, &self.opts.endpoint, path).await.map(Some),
            404 => Ok(None),
            401 => {
                // The token expired or was revoked: drop it so the next try fetches one.
                *self.session.lock().await = Session::None;
                Err(Attempt::Retry(
                    "HTTP 401 (token rejected); fetching a new token".into(),
                ))
            }
            429 | 500..=599 => Err(Attempt::Retry(format!("HTTP {status}"))),
            _ => {
                let body = resp.bytes().await.unwrap_or_default();
                Err(Attempt::Fail(ImdsError::Status {
                    endpoint: self.opts.endpoint.clone(),
                    path: path.to_string(),
                    status,
                    body: excerpt(&body),
                }))
            }
        }
    }

    /// The token to send, fetching one when there is none or it is about to expire.
    /// `None` means IMDSv1 (allowed and needed).
    async fn token(&self, deadline: Instant) -> Result<Option<String>, Attempt> {
        let mut session = self.session.lock().await;
        match &*session {
            Session::V2(t) if Instant::now() < t.renew_at => return Ok(Some(t.value.clone())),
            Session::V1 => return Ok(None),
            _ => {}
        }
        let url = format!("{}{}", self.opts.endpoint, TOKEN_PATH);
        let resp = self
            .http
            .put(&url)
            .header(TTL_HEADER, TOKEN_TTL.as_secs().to_string())
            .timeout(self.request_timeout(deadline))
            .send()
            .await
            .map_err(|e| Attempt::Retry(format!("token request: {}", describe(&e))))?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let ttl = resp
                    .headers()
                    .get(TTL_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(TOKEN_TTL);
                let value = read_body(resp, &self.opts.endpoint, TOKEN_PATH).await?;
                let value = String::from_utf8_lossy(&value).trim().to_string();
                // Renew 120 s early; a short TTL (tests, or a capped service) renews at half.
                let early = TOKEN_REFRESH_EARLY.min(ttl / 2);
                *session = Session::V2(Token {
                    value: value.clone(),
                    renew_at: Instant::now() + ttl - early,
                });
                tracing::debug!(
                    event = "imds_token",
                    ttl_seconds = ttl.as_secs(),
                    "IMDS session token obtained"
                );
                Ok(Some(value))
            }
            429 | 500..=599 => Err(Attempt::Retry(format!("token request: HTTP {status}"))),
            _ if self.opts.allow_v1 => {
                tracing::warn!(
                    event = "imds_v1_fallback",
                    status,
                    "IMDSv2 token refused; falling back to IMDSv1 as allowed"
                );
                *session = Session::V1;
                Ok(None)
            }
            _ => Err(Attempt::Fail(ImdsError::TokenRefused {
                endpoint: self.opts.endpoint.clone(),
                status,
            })),
        }
    }

    fn request_timeout(&self, deadline: Instant) -> Duration {
        let left = deadline.saturating_duration_since(Instant::now());
        self.opts
            .request_timeout
            .min(left.max(Duration::from_millis(50)))
    }
}

async fn read_body(resp: reqwest::Response, endpoint: &str, path: &str) -> Result<Bytes, Attempt> {
    if resp.content_length().unwrap_or(0) > MAX_BODY as u64 {
        return Err(Attempt::Fail(ImdsError::TooLarge {
            endpoint: endpoint.to_string(),
            path: path.to_string(),
        }));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| Attempt::Retry(format!("reading the body: {}", describe(&e))))?;
    if body.len() > MAX_BODY {
        return Err(Attempt::Fail(ImdsError::TooLarge {
            endpoint: endpoint.to_string(),
            path: path.to_string(),
        }));
    }
    Ok(body)
}

/// A reqwest error with its causes, which hold the useful part ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The first 200 bytes of a body, printable, for error messages.
fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
    if body.len() > 200 {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_defaults_to_ipv4() {
        assert_eq!(resolve_endpoint(None, None).unwrap(), DEFAULT_ENDPOINT_V4);
        assert_eq!(
            resolve_endpoint(Some(""), Some("IPv4")).unwrap(),
            DEFAULT_ENDPOINT_V4
        );
    }

    #[test]
    fn ipv6_mode_picks_the_ipv6_endpoint() {
        assert_eq!(
            resolve_endpoint(None, Some("IPv6")).unwrap(),
            "http://[fd00:ec2::254]"
        );
        assert_eq!(
            resolve_endpoint(None, Some("ipv6")).unwrap(),
            "http://[fd00:ec2::254]"
        );
    }

    #[test]
    fn explicit_endpoint_wins_and_loses_its_trailing_slash() {
        let e = resolve_endpoint(Some("http://127.0.0.1:8080/"), Some("IPv6")).unwrap();
        assert_eq!(e, "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = resolve_endpoint(None, Some("IPv5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv4 or IPv6"), "{e}");
        let e = resolve_endpoint(Some("ftp://x"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("http or https"), "{e}");
    }
}
