//! The two EC2 calls rangefleet makes, CreateTags (tag publishing) and
//! DescribeInstances (`status`), over EC2's Query API: a form-encoded POST, signed with
//! SigV4 by `aws-sigv4` (the SDK's own signer), answered in XML.
//!
//! Why not aws-sdk-ec2: for these two calls it added minutes to every cold build and
//! 0.6 MB to the shipped binary (docs/architecture.md). Credentials, region and
//! endpoint still come from aws-config's default chain, so this client sees exactly
//! what the SQS client sees.
//!
//! Endpoint: `AWS_ENDPOINT_URL_EC2`, else the configured `AWS_ENDPOINT_URL` (or profile
//! `endpoint_url`), else `https://ec2.{region}.amazonaws.com` (`.amazonaws.com.cn` in
//! China). Nothing here logs a credential or a signature.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde::{Deserialize, Serialize};

use crate::aws::credentials::CachedCredentials;

/// The Query API version every request names.
pub const API_VERSION: &str = "2016-11-15";
/// DescribeInstances page size (EC2 allows 5 to 1000).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Overrides [`DEFAULT_PAGE_SIZE`] (tests of the paging).
pub const PAGE_SIZE_ENV: &str = "RANGEFLEET_EC2_PAGE_SIZE";
/// One request, connection included, may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unparseable error body goes into the message.
const BODY_EXCERPT: usize = 300;

/// EC2 error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
];

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ec2Error {
    /// EC2 answered with an error document.
    #[error("{code}: {message} (HTTP {status}{})", request_id.as_deref().map(|r| format!(", request {r}")).unwrap_or_default())]
    Service {
        /// HTTP status.
        status: u16,
        /// `RequestLimitExceeded`, `UnauthorizedOperation`, `AuthFailure`, …
        code: String,
        /// EC2's explanation.
        message: String,
        /// For AWS support.
        request_id: Option<String>,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("no answer from {endpoint}: {reason}")]
    Transport {
        /// Where the request went.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// An answer that is not the document the action returns.
    #[error("unexpected answer from {endpoint}: {reason}")]
    BadResponse {
        /// Where the request went.
        endpoint: String,
        /// What could not be read.
        reason: String,
    },
    /// No credentials, or the request could not be signed.
    #[error("cannot sign the request: {0}")]
    Credentials(String),
    /// No region, or an endpoint that is not a URL.
    #[error("{0}")]
    Config(String),
}

impl Ec2Error {
    /// EC2's error code, or a short name for the other kinds (for logs).
    pub fn code(&self) -> &str {
        match self {
            Ec2Error::Service { code, .. } => code,
            Ec2Error::Transport { .. } => "no answer",
            Ec2Error::BadResponse { .. } => "bad answer",
            Ec2Error::Credentials(_) => "no credentials",
            Ec2Error::Config(_) => "configuration",
        }
    }

    /// Whether another attempt may succeed: throttling, a 5xx, or no answer at all.
    pub fn retryable(&self) -> bool {
        match self {
            Ec2Error::Service { status, code, .. } => {
                THROTTLING_CODES.contains(&code.as_str()) || *status >= 500
            }
            Ec2Error::Transport { .. } => true,
            Ec2Error::BadResponse { .. } | Ec2Error::Credentials(_) | Ec2Error::Config(_) => false,
        }
    }
}

/// One instance, as DescribeInstances reports it (the fields `status` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// `i-…`.
    pub instance_id: String,
    /// `pending`, `running`, `shutting-down`, …
    pub state: String,
    /// `m5.large`.
    pub instance_type: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// `spot`, `capacity-block`, or `on-demand` (EC2 leaves it out for on-demand).
    pub lifecycle: String,
    /// As EC2 gives it: `2026-11-26T07:55:49.000Z`.
    pub launch_time: String,
}

/// An EC2 client for one region.
#[derive(Clone)]
pub struct Ec2 {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Arc<CachedCredentials>,
    page_size: u32,
}

impl fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish()
    }
}

impl Ec2 {
    /// A client from aws-config's default chain (environment, profile, container and
    /// instance credentials), in `region` when given, else the chain's region.
    pub async fn from_env(region: Option<String>) -> Result<Ec2, Ec2Error> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| Ec2Error::Config("no AWS region: set AWS_REGION".into()))?;
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            Ec2Error::Credentials("aws-config found no credentials provider".into())
        })?;
        let endpoint = match std::env::var("AWS_ENDPOINT_URL_EC2") {
            Ok(url) if !url.trim().is_empty() && !ignore_configured_endpoints() => url,
            _ => match sdk.endpoint_url() {
                Some(url) => url.to_string(),
                None => default_endpoint(&region)?,
            },
        };
        let page_size = std::env::var(PAGE_SIZE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(Ec2::new(&endpoint, &region, credentials)?.with_page_size(page_size))
    }

    /// A client for `endpoint` (`https://ec2.us-east-1.amazonaws.com`, say), signing for
    /// `region` with `credentials`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<Ec2, Ec2Error> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| Ec2Error::Config(format!("EC2 endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Ec2Error::Config(format!(
                "EC2 endpoint {endpoint:?}: expected http(s)://host[:port]"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("rangefleet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Ec2Error::Config(format!("HTTP client: {e}")))?;
        Ok(Ec2 {
            http,
            endpoint: url.to_string(),
            region: region.to_string(),
            credentials: Arc::new(CachedCredentials::new(credentials)),
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// DescribeInstances asks for pages of `n` instances (clamped to EC2's 5 to 1000).
    pub fn with_page_size(mut self, n: u32) -> Ec2 {
        self.page_size = n.clamp(5, 1000);
        self
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Tags `instance_id` with `tags` (key, value): one CreateTags call, no retry.
    pub async fn create_tags(
        &self,
        instance_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), Ec2Error> {
        let mut params = vec![("ResourceId.1".to_string(), instance_id.to_string())];
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((format!("Tag.{}.Key", i + 1), k.clone()));
            params.push((format!("Tag.{}.Value", i + 1), v.clone()));
        }
        self.call("CreateTags", &params).await.map(drop)
    }

    /// The instances carrying every tag of `tags` (key, value), every page, sorted by id.
    /// Each page is tried up to 3 times when the error is [`Ec2Error::retryable`].
    pub async fn describe_instances(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<Instance>, Ec2Error> {
        let mut filters = Vec::new();
        for (i, (k, v)) in tags.iter().enumerate() {
            filters.push((format!("Filter.{}.Name", i + 1), format!("tag:{k}")));
            filters.push((format!("Filter.{}.Value.1", i + 1), v.clone()));
        }
        filters.push(("MaxResults".to_string(), self.page_size.to_string()));
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = filters.clone();
            if let Some(t) = &token {
                params.push(("NextToken".to_string(), t.clone()));
            }
            let body = self.call_with_retries("DescribeInstances", &params).await?;
            let page = parse_describe_instances(&body).map_err(|reason| Ec2Error::BadResponse {
                endpoint: self.endpoint.clone(),
                reason,
            })?;
            rows.extend(page.instances);
            match page.next_token {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(t) => {
                    return Err(Ec2Error::BadResponse {
                        endpoint: self.endpoint.clone(),
                        reason: format!("NextToken {t:?} repeated: paging would never end"),
                    })
                }
                None => break,
            }
        }
        rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(rows)
    }

    async fn call_with_retries(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, Ec2Error> {
        let mut backoff =
            crate::backoff::FullJitter::new(Duration::from_millis(200), Duration::from_secs(5));
        let (result, _) = backoff
            .retry(
                || self.call(action, params),
                |e: &Ec2Error, attempt, pause| {
                    let again = e.retryable() && attempt < 3;
                    if again {
                        tracing::debug!(event = "ec2_retry", action, attempt, pause_ms = pause.as_millis() as u64, error = %e, "EC2: retrying");
                    }
                    again
                },
            )
            .await;
        result
    }

    /// One signed POST of `Action=action&Version=…&params`; the body of a 2xx answer.
    async fn call(&self, action: &str, params: &[(String, String)]) -> Result<String, Ec2Error> {
        let body = form_body(action, params);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";

        let credentials = self
            .credentials
            .get()
            .await
            .map_err(|e| Ec2Error::Credentials(crate::error::full_message(&e)))?;
        let identity = credentials.into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Ec2Error::Credentials(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            std::iter::once(("content-type", content_type)),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Ec2Error::Credentials(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &signing)
            .map_err(|e| Ec2Error::Credentials(e.to_string()))?
            .into_parts();

        let mut request = self
            .http
            .post(&self.endpoint)
            .header("content-type", content_type);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let transport = |e: reqwest::Error| Ec2Error::Transport {
            endpoint: self.endpoint.clone(),
            reason: crate::error::full_message(&e),
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(parse_error(status.as_u16(), &text))
        }
    }
}

/// `Action=action&Version=…&k=v…`, form-encoded.
fn form_body(action: &str, params: &[(String, String)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", action)
        .append_pair("Version", API_VERSION);
    for (k, v) in params {
        form.append_pair(k, v);
    }
    form.finish()
}

/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`: use the default endpoint whatever else is set.
fn ignore_configured_endpoints() -> bool {
    std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// EC2's public endpoint for `region`. The region is checked against an allow-list of
/// characters first, since it becomes part of a host name.
pub fn default_endpoint(region: &str) -> Result<String, Ec2Error> {
    if !(crate::contract::allow::is_region_name(region) && region.len() <= 32) {
        return Err(Ec2Error::Config(format!(
            "region {region:?} is not an AWS region name (like us-east-1)"
        )));
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Ok(format!("https://ec2.{region}.{suffix}"))
}

/// One page of a DescribeInstances answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Its instances, in the answer's order.
    pub instances: Vec<Instance>,
    /// The next page's token, when there is one.
    pub next_token: Option<String>,
}

/// `<x><item>…</item><item>…</item></x>`, EC2's list shape.
#[derive(Deserialize)]
struct Items<T> {
    #[serde(rename = "item", default = "Vec::new")]
    item: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { item: Vec::new() }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInstancesResponse {
    #[serde(default)]
    reservation_set: Items<Reservation>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    #[serde(default)]
    instances_set: Items<XmlInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct XmlInstance {
    instance_id: String,
    #[serde(default)]
    instance_state: Option<XmlState>,
    #[serde(default)]
    instance_type: Option<String>,
    #[serde(default)]
    placement: Option<XmlPlacement>,
    #[serde(default)]
    instance_lifecycle: Option<String>,
    #[serde(default)]
    launch_time: Option<String>,
}

#[derive(Deserialize)]
struct XmlState {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct XmlPlacement {
    #[serde(default)]
    availability_zone: Option<String>,
}

/// Reads one DescribeInstances page.
pub(crate) fn parse_describe_instances(xml: &str) -> Result<Page, String> {
    let doc: DescribeInstancesResponse = quick_xml::de::from_str(xml)
        .map_err(|e| format!("not a DescribeInstancesResponse: {e}"))?;
    let instances = doc
        .reservation_set
        .item
        .into_iter()
        .flat_map(|r| r.instances_set.item)
        .map(|i| Instance {
            instance_id: i.instance_id,
            state: i
                .instance_state
                .and_then(|s| s.name)
                .unwrap_or_else(|| "unknown".into()),
            instance_type: i.instance_type.unwrap_or_default(),
            availability_zone: i
                .placement
                .and_then(|p| p.availability_zone)
                .unwrap_or_default(),
            lifecycle: i
                .instance_lifecycle
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "on-demand".into()),
            launch_time: i.launch_time.unwrap_or_default(),
        })
        .collect();
    Ok(Page {
        instances,
        next_token: doc.next_token.filter(|t| !t.trim().is_empty()),
    })
}

#[derive(Deserialize)]
struct XmlErrorResponse {
    #[serde(rename = "Errors", default)]
    errors: XmlErrors,
    #[serde(rename = "RequestID", alias = "RequestId", default)]
    request_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct XmlErrors {
    #[serde(rename = "Error", default)]
    error: Vec<XmlError>,
}

#[derive(Deserialize)]
struct XmlError {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

/// EC2's error document (`<Response><Errors><Error><Code>…`), or, when the body is
/// something else (a proxy's page, say), the status and the start of the body.
pub fn parse_error(status: u16, body: &str) -> Ec2Error {
    if let Ok(doc) = quick_xml::de::from_str::<XmlErrorResponse>(body) {
        if let Some(first) = doc.errors.error.into_iter().next() {
            return Ec2Error::Service {
                status,
                code: first.code,
                message: first.message,
                request_id: doc.request_id,
            };
        }
    }
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    Ec2Error::Service {
        status,
        code: format!("HTTP{status}"),
        message: if excerpt.trim().is_empty() {
            "(empty body)".into()
        } else {
            excerpt
        },
        request_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <ownerId>123456789012</ownerId>
      <groupSet/>
      <instancesSet>
        <item>
          <instanceId>i-0b</instanceId>
          <imageId>ami-0abcdef1234567890</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <instanceType>m5.large</instanceType>
          <launchTime>2026-11-26T07:55:49.000Z</launchTime>
          <placement><availabilityZone>us-east-1a</availabilityZone><tenancy>default</tenancy></placement>
          <instanceLifecycle>spot</instanceLifecycle>
          <tagSet><item><key>fleet</key><value>trips</value></item></tagSet>
          <blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item></blockDeviceMapping>
        </item>
        <item>
          <instanceId>i-0a</instanceId>
          <instanceState><code>0</code><name>pending</name></instanceState>
          <instanceType>c5.xlarge</instanceType>
          <placement><availabilityZone>us-east-1b</availabilityZone></placement>
        </item>
      </instancesSet>
    </item>
    <item>
      <reservationId>r-2</reservationId>
      <instancesSet>
        <item><instanceId>i-0c</instanceId></item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>r-2</nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn a_page_reads_every_instance_of_every_reservation() {
        let page = parse_describe_instances(PAGE).unwrap();
        assert_eq!(page.next_token.as_deref(), Some("r-2"));
        assert_eq!(
            page.instances,
            vec![
                Instance {
                    instance_id: "i-0b".into(),
                    state: "running".into(),
                    instance_type: "m5.large".into(),
                    availability_zone: "us-east-1a".into(),
                    lifecycle: "spot".into(),
                    launch_time: "2026-11-26T07:55:49.000Z".into(),
                },
                Instance {
                    instance_id: "i-0a".into(),
                    state: "pending".into(),
                    instance_type: "c5.xlarge".into(),
                    availability_zone: "us-east-1b".into(),
                    lifecycle: "on-demand".into(),
                    launch_time: String::new(),
                },
                Instance {
                    instance_id: "i-0c".into(),
                    state: "unknown".into(),
                    instance_type: String::new(),
                    availability_zone: String::new(),
                    lifecycle: "on-demand".into(),
                    launch_time: String::new(),
                },
            ]
        );
    }

    #[test]
    fn an_empty_answer_is_no_instances_and_no_next_page() {
        for xml in [
            "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>",
            "<DescribeInstancesResponse><reservationSet/><nextToken/></DescribeInstancesResponse>",
            "<DescribeInstancesResponse><requestId>x</requestId></DescribeInstancesResponse>",
        ] {
            let page = parse_describe_instances(xml).unwrap();
            assert_eq!(
                page,
                Page {
                    instances: vec![],
                    next_token: None
                },
                "{xml}"
            );
        }
        assert!(parse_describe_instances("<html>proxy error</html").is_err());
    }

    #[test]
    fn error_documents_give_code_message_and_request_id() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
            <Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>\
            </Error></Errors><RequestID>req-1</RequestID></Response>";
        let e = parse_error(503, body);
        assert_eq!(
            e,
            Ec2Error::Service {
                status: 503,
                code: "RequestLimitExceeded".into(),
                message: "Request limit exceeded.".into(),
                request_id: Some("req-1".into()),
            }
        );
        assert!(e.retryable());
        assert_eq!(
            e.to_string(),
            "RequestLimitExceeded: Request limit exceeded. (HTTP 503, request req-1)"
        );

        let denied = parse_error(
            403,
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code>\
             <Message>You are not authorized</Message></Error></Errors></Response>",
        );
        assert_eq!(denied.code(), "UnauthorizedOperation");
        assert!(!denied.retryable());

        let page = parse_error(502, "<html>Bad Gateway</html>");
        assert_eq!(page.code(), "HTTP502");
        assert!(page.retryable(), "a 5xx is worth another try");
        assert_eq!(
            parse_error(400, "").to_string(),
            "HTTP400: (empty body) (HTTP 400)"
        );
    }

    #[test]
    fn throttling_and_no_answer_are_retried_other_client_errors_are_not() {
        let service = |status, code: &str| Ec2Error::Service {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        };
        assert!(service(400, "Throttling").retryable());
        assert!(service(500, "InternalError").retryable());
        assert!(!service(400, "InvalidInstanceID.NotFound").retryable());
        assert!(!service(401, "AuthFailure").retryable());
        assert!(Ec2Error::Transport {
            endpoint: "x".into(),
            reason: "reset".into()
        }
        .retryable());
        assert!(!Ec2Error::Credentials("none".into()).retryable());
    }

    #[test]
    fn default_endpoints_by_partition_and_bad_regions_refused() {
        assert_eq!(
            default_endpoint("us-east-1").unwrap(),
            "https://ec2.us-east-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("cn-north-1").unwrap(),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
        for bad in ["", "us-east-1.evil.example/", "US-EAST-1", "a b"] {
            assert!(default_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_no_credentials() {
        let creds = Credentials::new("AKIDSECRETLESS", "s3cr3t-value", None, None, "test");
        let c = Ec2::new(
            "http://127.0.0.1:1",
            "us-east-1",
            SharedCredentialsProvider::new(creds),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("AKID"),
            "{shown}"
        );
        assert!(Ec2::new(
            "ftp://x",
            "us-east-1",
            SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "test"))
        )
        .is_err());
    }
}
