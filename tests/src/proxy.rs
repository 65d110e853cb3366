//! A small fault-injecting HTTP proxy in front of nginx or moto, on 127.0.0.1:0, and a
//! recording proxy for AWS Query APIs ([`RecordingProxy`]).
//!
//! Only GETs meet faults, in this order: the first `slow_downs` GETs are answered
//! `503 SlowDown` (an S3 XML error body); the next `cut_gets` GETs pass the upstream's
//! status and headers (Content-Length included) but the connection is closed after
//! `cut_after` body bytes; every answer waits `latency` first. Everything else passes
//! through. The proxy stops when dropped.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Which faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer the first this-many GETs with 503 SlowDown.
    pub slow_downs: u64,
    /// Cut the body of the next this-many GETs...
    pub cut_gets: u64,
    /// ...after this many bytes.
    pub cut_after: u64,
    /// Delay before every answer.
    pub latency: Duration,
}

/// What the proxy has seen.
#[derive(Debug, Default)]
pub struct Counters {
    /// GETs received.
    pub gets: AtomicU64,
    /// GETs answered 503 SlowDown.
    pub slowed: AtomicU64,
    /// GETs whose body was cut.
    pub cut: AtomicU64,
    /// Requests of any other method.
    pub others: AtomicU64,
}

struct State {
    upstream: String,
    faults: Faults,
    counters: Arc<Counters>,
    client: reqwest::Client,
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// Counts, live.
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

/// The body every proxy answer has.
pub type Body = BoxBody<Bytes, std::io::Error>;

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>rangefleet-proxy</RequestId></Error>";

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, no trailing slash) in the
    /// current tokio runtime.
    pub async fn start(upstream: &str, faults: Faults) -> FaultProxy {
        let counters = Arc::new(Counters::default());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            counters: Arc::clone(&counters),
            client: client(),
        });
        let (url, task) = serve(move |req| handle(req, Arc::clone(&state))).await;
        FaultProxy {
            url,
            counters,
            task,
        }
    }

    /// GETs seen so far.
    pub fn gets(&self) -> u64 {
        self.counters.gets.load(Ordering::SeqCst)
    }

    /// GETs whose body was cut so far.
    pub fn cut(&self) -> u64 {
        self.counters.cut.load(Ordering::SeqCst)
    }

    /// GETs answered 503 so far.
    pub fn slowed(&self) -> u64 {
        self.counters.slowed.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` over HTTP/1 on a free port of 127.0.0.1, in the current tokio
/// runtime; returns `http://127.0.0.1:PORT` and the accept loop (abort it to stop).
pub async fn serve<H, Fut>(handler: H) -> (String, tokio::task::JoinHandle<()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handler))
                    .await;
            });
        }
    });
    (url, task)
}

/// The HTTP client a proxy forwards with: redirects are the client's business.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// Sends a received request on to `upstream` (`http://host:port`), end-to-end headers
/// only; `Err` is a 502 to answer with.
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<reqwest::Response, Response<Body>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut up = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            up = up.header(k, v);
        }
    }
    up.body(body).send().await.map_err(|e| {
        Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(full(format!("proxy: upstream failed: {e}")))
            .expect("response")
    })
}

/// A received request's head and its whole body (empty when it cannot be read).
pub async fn read_request(req: Request<Incoming>) -> (hyper::http::request::Parts, Bytes) {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts, body)
}

/// The upstream's answer as ours: its status and end-to-end headers (a HEAD keeps its
/// Content-Length), and its body, with a Content-Length for it (empty for a HEAD).
pub async fn answer(
    resp: reqwest::Response,
    is_head: bool,
) -> (hyper::http::response::Builder, Bytes) {
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) || (is_head && k == CONTENT_LENGTH) {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    if is_head {
        return (out, Bytes::new());
    }
    (out.header(CONTENT_LENGTH, bytes.len()), bytes)
}

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Headers that belong to one connection, not to the request or answer.
pub fn hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == HOST
        || name == CONTENT_LENGTH
        || name.as_str() == "keep-alive"
}

async fn handle(req: Request<Incoming>, st: Arc<State>) -> Result<Response<Body>, Infallible> {
    let c = &st.counters;
    let f = &st.faults;
    let get_no = if req.method() == Method::GET {
        Some(c.gets.fetch_add(1, Ordering::SeqCst))
    } else {
        c.others.fetch_add(1, Ordering::SeqCst);
        None
    };
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    if get_no.is_some_and(|n| n < f.slow_downs) {
        c.slowed.fetch_add(1, Ordering::SeqCst);
        let resp = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/xml")
            .body(full(SLOW_DOWN))
            .expect("response");
        return Ok(resp);
    }
    let cut = get_no.is_some_and(|n| n >= f.slow_downs && n < f.slow_downs + f.cut_gets);

    let is_head = req.method() == Method::HEAD;
    let (parts, body) = read_request(req).await;
    let resp = match forward(&st.client, &st.upstream, &parts, body).await {
        Ok(r) => r,
        Err(bad_gateway) => return Ok(bad_gateway),
    };
    let (out, bytes) = answer(resp, is_head).await;
    if is_head {
        return Ok(out.body(full(bytes)).expect("response"));
    }
    let body = if cut && (f.cut_after as usize) < bytes.len() {
        c.cut.fetch_add(1, Ordering::SeqCst);
        let head = bytes.slice(..f.cut_after as usize);
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(head)),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "proxy: connection cut on purpose",
            )),
        ];
        BodyExt::boxed(StreamBody::new(futures::stream::iter(frames)))
    } else {
        full(bytes)
    };
    Ok(out.body(body).expect("response"))
}

/// One Query API call (`Action=…&Version=…&…`) a [`RecordingProxy`] saw, form-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `SetInstanceHealth`, `CompleteLifecycleAction`, …
    pub action: String,
    /// Every parameter but `Action` and `Version`.
    pub params: std::collections::BTreeMap<String, String>,
}

/// An AWS Query API endpoint (Auto Scaling, EC2) in front of moto that records every
/// call, answers the actions in `answers` itself (moto does not implement
/// CompleteLifecycleAction, say) and passes everything else through. Stopped on drop.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    calls: Arc<std::sync::Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Recording {
    upstream: String,
    answers: Vec<(String, String)>,
    calls: Arc<std::sync::Mutex<Vec<Call>>>,
    client: reqwest::Client,
}

impl RecordingProxy {
    /// Starts one in the current tokio runtime; `answers` are (action, XML body)
    /// answered 200 without asking `upstream`.
    pub async fn start(upstream: &str, answers: &[(&str, &str)]) -> RecordingProxy {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let st = Arc::new(Recording {
            upstream: upstream.trim_end_matches('/').to_string(),
            answers: answers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            calls: Arc::clone(&calls),
            client: client(),
        });
        let (url, task) = serve(move |req| record_handle(req, Arc::clone(&st))).await;
        RecordingProxy { url, calls, task }
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of `action` so far.
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Auto Scaling's answer to a CompleteLifecycleAction that worked.
pub const COMPLETE_LIFECYCLE_ACTION_OK: &str = "<CompleteLifecycleActionResponse \
xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><CompleteLifecycleActionResult/>\
<ResponseMetadata><RequestId>rangefleet-recording-proxy</RequestId></ResponseMetadata>\
</CompleteLifecycleActionResponse>";

async fn record_handle(
    req: Request<Incoming>,
    st: Arc<Recording>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = read_request(req).await;
    let mut action = String::new();
    let mut params = std::collections::BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "Action" => action = v.into_owned(),
            "Version" => {}
            _ => {
                params.insert(k.into_owned(), v.into_owned());
            }
        }
    }
    st.calls.lock().unwrap().push(Call {
        action: action.clone(),
        params,
    });
    if let Some((_, answer)) = st.answers.iter().find(|(a, _)| *a == action) {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/xml")
            .body(full(answer.clone()))
            .expect("response"));
    }
    let resp = match forward(&st.client, &st.upstream, &parts, body).await {
        Ok(r) => r,
        Err(bad_gateway) => return Ok(bad_gateway),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    Ok(out.body(full(bytes)).expect("response"))
}
