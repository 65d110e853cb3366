//! `rangefleet imds-mock`: a local instance metadata service (docs/cli.md).
//!
//! Faithful where clients notice: tokens with a TTL header that expire, v1 refused unless
//! allowed, trailing slashes, directory listings, the identity document, role
//! credentials, and notices that appear on a schedule. Faults are injected per path.
//! It serves tests, the demo, and users checking their user-data on a laptop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::time::rfc3339;

/// Which interruption a spot notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InterruptAction {
    /// The instance will be terminated.
    Terminate,
    /// The instance will be stopped.
    Stop,
    /// The instance will be hibernated.
    Hibernate,
}

impl InterruptAction {
    fn as_str(self) -> &'static str {
        match self {
            InterruptAction::Terminate => "terminate",
            InterruptAction::Stop => "stop",
            InterruptAction::Hibernate => "hibernate",
        }
    }
}

/// `--fail PATH=STATUS*N`: the first N requests for PATH answer STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRule {
    /// Path, e.g. `/latest/meta-data/instance-id` or `/latest/api/token`.
    pub path: String,
    /// Status to answer.
    pub status: u16,
    /// How many requests.
    pub times: u32,
}

/// A `--fail` or `--drop` rule that does not parse; the message shows the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl std::str::FromStr for FailRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let (path, rest) = s
            .split_once('=')
            .ok_or_else(|| RuleError(format!("expected PATH=STATUS*N, got {s:?}")))?;
        let (status, times) = rest.split_once('*').unwrap_or((rest, "1"));
        let status: u16 = status
            .parse()
            .ok()
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| RuleError(format!("bad status {status:?} in {s:?}")))?;
        let times = times
            .parse()
            .map_err(|_| RuleError(format!("bad count {times:?} in {s:?}")))?;
        Ok(FailRule {
            path: normalise(path),
            status,
            times,
        })
    }
}

/// `--drop PATH*N`: the first N requests for PATH get the connection closed, no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    /// Path.
    pub path: String,
    /// How many requests.
    pub times: u32,
}

impl std::str::FromStr for DropRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let (path, times) = s.split_once('*').unwrap_or((s, "1"));
        let times = times
            .parse()
            .map_err(|_| RuleError(format!("bad count {times:?} in {s:?}")))?;
        Ok(DropRule {
            path: normalise(path),
            times,
        })
    }
}

/// Everything the mock serves, as set on its command line.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// User-data bytes; `None` answers 404 as IMDS does when there is none.
    pub userdata: Option<Bytes>,
    /// Instance id.
    pub instance_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: String,
    /// `spot` or `on-demand`.
    pub life_cycle: String,
    /// ami-launch-index.
    pub launch_index: u32,
    /// Instance tags (served when any, as with instance metadata tags on).
    pub tags: BTreeMap<String, String>,
    /// IAM role whose test credentials are served.
    pub role: Option<String>,
    /// When the spot notice appears, from start.
    pub interrupt_after: Option<Duration>,
    /// Which action it announces.
    pub interrupt_action: InterruptAction,
    /// When the rebalance recommendation appears.
    pub rebalance_after: Option<Duration>,
    /// When the ASG target lifecycle state becomes `Terminated`.
    pub asg_terminate_after: Option<Duration>,
    /// Answer requests without a token.
    pub allow_v1: bool,
    /// Longest token TTL granted.
    pub token_ttl_max: u64,
    /// Injected failures.
    pub fail: Vec<FailRule>,
    /// Injected dropped connections.
    pub drop: Vec<DropRule>,
    /// Delay before every answer.
    pub latency: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            userdata: None,
            instance_id: "i-0123456789abcdef0".into(),
            instance_type: "m5.large".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            life_cycle: "spot".into(),
            launch_index: 0,
            tags: BTreeMap::new(),
            role: None,
            interrupt_after: None,
            interrupt_action: InterruptAction::Terminate,
            rebalance_after: None,
            asg_terminate_after: None,
            allow_v1: false,
            token_ttl_max: 21_600,
            fail: Vec::new(),
            drop: Vec::new(),
            latency: Duration::ZERO,
        }
    }
}

/// A scheduled notice: due at a monotonic instant, stamped with wall-clock time.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    wall: SystemTime,
}

struct State {
    opts: MockOptions,
    started: Instant,
    started_wall: SystemTime,
    tokens: BTreeMap<String, Instant>,
    fail_left: Vec<FailRule>,
    drop_left: Vec<DropRule>,
    stats: BTreeMap<String, BTreeMap<String, u64>>,
    spot: Option<Due>,
    rebalance: Option<Due>,
    asg_terminate: Option<Due>,
}

impl State {
    fn new(opts: MockOptions) -> Self {
        let started = Instant::now();
        let started_wall = SystemTime::now();
        let due = |d: Option<Duration>| {
            d.map(|d| Due {
                at: started + d,
                wall: started_wall + d,
            })
        };
        State {
            spot: due(opts.interrupt_after),
            rebalance: due(opts.rebalance_after),
            asg_terminate: due(opts.asg_terminate_after),
            fail_left: opts.fail.clone(),
            drop_left: opts.drop.clone(),
            opts,
            started,
            started_wall,
            tokens: BTreeMap::new(),
            stats: BTreeMap::new(),
        }
    }

    fn schedule(&self, after: Duration) -> Due {
        let now = Instant::now();
        Due {
            at: now + after,
            wall: self.started_wall + (now - self.started) + after,
        }
    }
}

/// How long a connection may take to send a request head (and, kept alive, the next
/// one) before the mock closes it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a failed accept (out of file descriptors): no busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A running mock. Dropping the handle does not stop it; cancel `shutdown` for that.
pub struct MockServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`, no trailing slash.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MockServer {
    /// Binds `listen` and serves until `shutdown` is cancelled.
    pub async fn start(
        listen: SocketAddr,
        opts: MockOptions,
        shutdown: CancellationToken,
    ) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(opts)));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        // Out of file descriptors (connections held open) or a client
                        // gone before accept: wait a little rather than spin on it.
                        Err(_) => {
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    // A dropped connection is an injected fault or a client going away;
                    // one that sends no complete request head in time is closed, so
                    // held-open connections cannot starve the others.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let url = match addr {
            SocketAddr::V4(a) => format!("http://{a}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
        };
        Ok(MockServer { url, addr, state })
    }

    /// Schedule a spot interruption notice `after` from now (the demo uses this).
    pub fn interrupt_in(&self, after: Duration) {
        let mut s = self.state.lock().unwrap();
        s.spot = Some(s.schedule(after));
    }

    /// Schedule a rebalance recommendation `after` from now.
    pub fn rebalance_in(&self, after: Duration) {
        let mut s = self.state.lock().unwrap();
        s.rebalance = Some(s.schedule(after));
    }

    /// Schedule the ASG target lifecycle state `Terminated` `after` from now.
    pub fn asg_terminate_in(&self, after: Duration) {
        let mut s = self.state.lock().unwrap();
        s.asg_terminate = Some(s.schedule(after));
    }
}

/// An injected connection drop: hyper closes the connection when the service fails.
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by --drop")
    }
}
impl std::error::Error for Dropped {}

type Reply = Result<Response<Full<Bytes>>, Dropped>;

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Reply {
    let latency = state.lock().unwrap().opts.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let r = answer(&state, &req);
    // Leave the body unread: IMDS requests have none, and hyper discards it.
    drop(req);
    r
}

fn answer(state: &Mutex<State>, req: &Request<Incoming>) -> Reply {
    let mut s = state.lock().unwrap();
    let raw_path = req.uri().path().to_string();
    let path = normalise(&raw_path);
    if path == "/_mock/stats" {
        let body = serde_json::to_vec(&s.stats).unwrap_or_default();
        return Ok(reply(StatusCode::OK, body, "application/json"));
    }
    *s.stats
        .entry(req.method().to_string())
        .or_default()
        .entry(raw_path.clone())
        .or_default() += 1;

    if let Some(rule) = s
        .drop_left
        .iter_mut()
        .find(|r| r.path == path && r.times > 0)
    {
        rule.times -= 1;
        return Err(Dropped);
    }
    if let Some(rule) = s
        .fail_left
        .iter_mut()
        .find(|r| r.path == path && r.times > 0)
    {
        rule.times -= 1;
        let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(reply(status, "injected failure\n", "text/plain"));
    }

    if path == "/latest/api/token" {
        return Ok(token(&mut s, req));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "", "text/plain"));
    }
    if !authorised(&mut s, req) {
        return Ok(reply(StatusCode::UNAUTHORIZED, "", "text/plain"));
    }
    let tree = tree(&s);
    if let Some(body) = tree.get(&path) {
        let kind = if body.first() == Some(&b'{') {
            "application/json"
        } else {
            "text/plain"
        };
        return Ok(reply(StatusCode::OK, body.clone(), kind));
    }
    // A directory: the children of `path/`, one a line, sub-directories with a slash.
    let prefix = format!("{path}/");
    let children: BTreeSet<String> = tree
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|rest| match rest.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => rest.to_string(),
        })
        .collect();
    if children.is_empty() {
        return Ok(reply(StatusCode::NOT_FOUND, not_found(), "text/html"));
    }
    let listing = children.into_iter().collect::<Vec<_>>().join("\n");
    Ok(reply(StatusCode::OK, listing, "text/plain"))
}

fn token(s: &mut State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::PUT {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "", "text/plain");
    }
    // Like IMDS: a token request that went through a proxy is refused.
    if req.headers().contains_key("x-forwarded-for") {
        return reply(StatusCode::FORBIDDEN, "", "text/plain");
    }
    let ttl = req
        .headers()
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
        return reply(StatusCode::BAD_REQUEST, "", "text/plain");
    };
    let ttl = ttl.min(s.opts.token_ttl_max.max(1));
    let value = format!("mock-token-{:032x}", rand::random::<u128>());
    let now = Instant::now();
    s.tokens.retain(|_, exp| *exp > now);
    s.tokens
        .insert(value.clone(), now + Duration::from_secs(ttl));
    let mut r = reply(StatusCode::OK, value, "text/plain");
    r.headers_mut().insert(
        "x-aws-ec2-metadata-token-ttl-seconds",
        ttl.to_string()
            .parse()
            .expect("digits are a valid header value"),
    );
    r
}

fn authorised(s: &mut State, req: &Request<Incoming>) -> bool {
    match req.headers().get("x-aws-ec2-metadata-token") {
        Some(t) => {
            let now = Instant::now();
            t.to_str()
                .ok()
                .and_then(|t| s.tokens.get(t))
                .is_some_and(|exp| *exp > now)
        }
        None => s.opts.allow_v1,
    }
}

/// Every leaf the mock serves right now, by path.
fn tree(s: &State) -> BTreeMap<String, Bytes> {
    let o = &s.opts;
    let now = Instant::now();
    let md = |p: &str| format!("/latest/meta-data/{p}");
    let mut t: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut put = |k: String, v: String| {
        t.insert(k, Bytes::from(v));
    };
    let ip = format!(
        "10.0.{}.{}",
        (o.launch_index / 250) % 250,
        10 + o.launch_index % 240
    );
    put(md("instance-id"), o.instance_id.clone());
    put(md("instance-type"), o.instance_type.clone());
    put(md("ami-id"), "ami-0abcdef1234567890".into());
    put(md("ami-launch-index"), o.launch_index.to_string());
    put(md("instance-life-cycle"), o.life_cycle.clone());
    put(md("local-ipv4"), ip.clone());
    put(
        md("local-hostname"),
        format!("ip-{}.ec2.internal", ip.replace('.', "-")),
    );
    put(
        md("placement/availability-zone"),
        o.availability_zone.clone(),
    );
    put(md("placement/region"), o.region.clone());
    put(md("services/domain"), "amazonaws.com".into());
    for (k, v) in &o.tags {
        put(md(&format!("tags/instance/{k}")), v.clone());
    }
    let doc = serde_json::json!({
        "accountId": "123456789012",
        "architecture": "x86_64",
        "availabilityZone": o.availability_zone,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": "ami-0abcdef1234567890",
        "instanceId": o.instance_id,
        "instanceType": o.instance_type,
        "kernelId": null,
        "pendingTime": rfc3339(s.started_wall),
        "privateIp": ip,
        "ramdiskId": null,
        "region": o.region,
        "version": "2017-09-30",
    });
    put(
        "/latest/dynamic/instance-identity/document".into(),
        doc.to_string(),
    );
    if let Some(role) = &o.role {
        put(
            md("iam/info"),
            serde_json::json!({
                "Code": "Success",
                "LastUpdated": rfc3339(s.started_wall),
                "InstanceProfileArn": format!("arn:aws:iam::123456789012:instance-profile/{role}"),
                "InstanceProfileId": "AIPAMOCKMOCKMOCKMOCK0",
            })
            .to_string(),
        );
        let creds = serde_json::json!({
            "Code": "Success",
            "LastUpdated": rfc3339(s.started_wall),
            "Type": "AWS-HMAC",
            // Test credentials, as the local S3/SQS servers accept.
            "AccessKeyId": "ASIAMOCKIMDSROLEKEY0",
            "SecretAccessKey": "imds-mock-test-secret-access-key",
            "Token": "imds-mock-test-session-token",
            "Expiration": rfc3339(SystemTime::now() + Duration::from_secs(6 * 3600)),
        });
        put(
            md(&format!("iam/security-credentials/{role}")),
            creds.to_string(),
        );
        let mut extended = creds;
        extended["AccountId"] = "123456789012".into();
        put(
            md(&format!("iam/security-credentials-extended/{role}")),
            extended.to_string(),
        );
    }
    if let Some(d) = s.spot.filter(|d| now >= d.at) {
        let body = serde_json::json!({
            "action": o.interrupt_action.as_str(),
            "time": rfc3339(d.wall + Duration::from_secs(120)),
        });
        put(md("spot/instance-action"), body.to_string());
        put(
            md("spot/termination-time"),
            rfc3339(d.wall + Duration::from_secs(120)),
        );
    }
    if let Some(d) = s.rebalance.filter(|d| now >= d.at) {
        let body = serde_json::json!({ "noticeTime": rfc3339(d.wall) });
        put(md("events/recommendations/rebalance"), body.to_string());
    }
    let terminated = s.asg_terminate.is_some_and(|d| now >= d.at);
    put(
        md("autoscaling/target-lifecycle-state"),
        if terminated {
            "Terminated"
        } else {
            "InService"
        }
        .into(),
    );
    if let Some(u) = &o.userdata {
        t.insert("/latest/user-data".into(), u.clone());
    }
    t
}

fn reply(status: StatusCode, body: impl Into<Bytes>, kind: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", kind.parse().expect("static content type"));
    r.headers_mut()
        .insert("server", "EC2ws".parse().expect("static header"));
    r
}

fn not_found() -> &'static str {
    "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<title>404 - Not Found</title>\n"
}

/// `/latest/meta-data/x/` and `/latest/meta-data/x` are the same path.
fn normalise(path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        "/".into()
    } else if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rules_parse() {
        let r: FailRule = "/latest/meta-data/instance-id/=500*3".parse().unwrap();
        assert_eq!(
            r,
            FailRule {
                path: "/latest/meta-data/instance-id".into(),
                status: 500,
                times: 3
            }
        );
        assert!("/x=700*1".parse::<FailRule>().is_err());
        assert!("/x".parse::<FailRule>().is_err());
        let d: DropRule = "/latest/api/token*2".parse().unwrap();
        assert_eq!(d.times, 2);
    }
}
