//! A model of an EC2 instance's path to S3, as an HTTP proxy on 127.0.0.1:0 in front
//! of nginx (the `http://` store) or moto (S3): every GET waits a first-byte latency,
//! then its body is paced by a per-connection rate cap and by one instance-wide cap
//! shared by all GETs, and optionally every `slow_down_every`-th GET is answered
//! `503 SlowDown`. Other methods pass through unpaced.
//!
//! Real S3 on a 2-vCPU instance rated 25 Gbit/s: ~90 MB/s per connection, 20–50 ms to
//! the first byte, 3,125 MB/s for the instance, so the instance cap is worth about 35
//! connections and an 8 MiB part spends about a quarter of its life waiting for its
//! first byte. Two shared cores cannot move gigabytes a second through a proxy, so
//! [`Model::scaled`] divides the rates by a factor and multiplies the latency by it,
//! which keeps both ratios.
//!
//! The model records a byte timeline (bytes sent per bucket, the most GETs in flight
//! per bucket) and serves it, with its counts, at `GET /_netmodel/stats`
//! ([`Stats::to_json`]); [`Stats::tail_rate`] is the rate of the last fraction of the
//! bytes. `tests/src/bin/netmodel.rs` runs it from the bench scripts.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::proxy::{answer, client, forward, full, hop_by_hop, read_request, serve, Body};

/// Largest piece of a body paced at once.
const SLICE: usize = 64 << 10;

/// What the model imposes.
#[derive(Debug, Clone)]
pub struct Model {
    /// Wait before a GET's answer starts.
    pub first_byte: Duration,
    /// Most bytes per second one GET's body gets.
    pub per_connection: f64,
    /// Most bytes per second all GETs' bodies together get.
    pub instance: f64,
    /// Answer every this-many-th GET `503 SlowDown` (0: never). 5 is 20 %.
    pub slow_down_every: u64,
    /// Resolution of the byte timeline.
    pub bucket: Duration,
}

impl Model {
    /// S3 from an instance whose cap is worth `connections` connections of 90 MB/s
    /// with 30 ms to the first byte, scaled down by `factor` (rates ÷ factor,
    /// latency × factor), so the ratios hold on a small machine.
    pub fn scaled(connections: f64, factor: f64) -> Model {
        let per_connection = 90e6 / factor;
        Model {
            first_byte: Duration::from_secs_f64(0.030 * factor),
            per_connection,
            instance: per_connection * connections,
            slow_down_every: 0,
            bucket: Duration::from_millis(100),
        }
    }
}

/// What the model saw.
#[derive(Debug)]
pub struct Stats {
    model: Model,
    start: Instant,
    /// GETs received (the stats endpoint not counted).
    pub gets: AtomicU64,
    /// GETs answered 503 SlowDown.
    pub slowed: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    inner: Mutex<Timeline>,
    /// The instance cap's next free moment (reservations are made in turn).
    instance_free: Mutex<Instant>,
}

#[derive(Debug, Default)]
struct Timeline {
    /// Per bucket: bytes sent, most GETs in flight.
    buckets: Vec<(u64, u64)>,
    first_get: Option<Duration>,
    last_byte: Option<Duration>,
    bytes: u64,
    /// The bucket of the last start or end of a GET, and the GETs in flight after it.
    last_in_flight: (usize, u64),
}

impl Stats {
    fn new(model: Model) -> Stats {
        let now = Instant::now();
        Stats {
            model,
            start: now,
            gets: AtomicU64::new(0),
            slowed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            inner: Mutex::new(Timeline::default()),
            instance_free: Mutex::new(now),
        }
    }

    fn bucket_of(&self, at: Instant) -> usize {
        (at.duration_since(self.start).as_secs_f64() / self.model.bucket.as_secs_f64()) as usize
    }

    fn with_bucket(&self, at: Instant, f: impl FnOnce(&mut Timeline, usize)) {
        let i = self.bucket_of(at);
        let mut t = self.inner.lock().expect("timeline lock");
        if t.buckets.len() <= i {
            // Buckets with no event held what was in flight at the last one.
            let (_, carried) = t.last_in_flight;
            t.buckets.resize(i + 1, (0, carried));
        }
        f(&mut t, i);
    }

    fn get_started(&self) {
        let now = Instant::now();
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let since = now.duration_since(self.start);
        self.with_bucket(now, |t, i| {
            t.buckets[i].1 = t.buckets[i].1.max(n);
            t.first_get.get_or_insert(since);
            t.last_in_flight = (i, n);
        });
    }

    fn get_ended(&self) {
        let n = self.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        self.with_bucket(Instant::now(), |t, i| t.last_in_flight = (i, n));
    }

    fn sent(&self, n: usize) {
        let now = Instant::now();
        let since = now.duration_since(self.start);
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        self.with_bucket(now, |t, i| {
            t.buckets[i].0 += n as u64;
            t.buckets[i].1 = t.buckets[i].1.max(in_flight);
            t.bytes += n as u64;
            t.last_byte = Some(since);
        });
    }

    /// Most GETs in flight at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }

    /// Body bytes sent.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().expect("timeline lock").bytes
    }

    /// Seconds from the first GET to the last body byte (the GET window).
    pub fn window_seconds(&self) -> f64 {
        let t = self.inner.lock().expect("timeline lock");
        match (t.first_get, t.last_byte) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Bytes per second over the last `fraction` of the bytes: from the moment
    /// `1 - fraction` of them had been sent (interpolated inside its bucket) to the last
    /// byte.
    pub fn tail_rate(&self, fraction: f64) -> f64 {
        let t = self.inner.lock().expect("timeline lock");
        let (Some(last), total) = (t.last_byte, t.bytes) else {
            return 0.0;
        };
        let mark = total as f64 * (1.0 - fraction);
        let width = self.model.bucket.as_secs_f64();
        let mut cum = 0.0;
        for (i, (b, _)) in t.buckets.iter().enumerate() {
            let b = *b as f64;
            if b > 0.0 && cum + b >= mark {
                let at = (i as f64 + (mark - cum) / b) * width;
                let span = last.as_secs_f64() - at;
                return if span > 0.0 {
                    total as f64 * fraction / span
                } else {
                    0.0
                };
            }
            cum += b;
        }
        0.0
    }

    /// Everything, for the bench scripts: the model, the counts, the GET window, the
    /// mean and tail rates and the timeline (`[bytes, most GETs in flight]` per bucket).
    pub fn to_json(&self) -> Value {
        let window = self.window_seconds();
        let bytes = self.bytes();
        let tail = self.tail_rate(0.1);
        let t = self.inner.lock().expect("timeline lock");
        json!({
            "model": {
                "first_byte_ms": self.model.first_byte.as_secs_f64() * 1e3,
                "per_connection_bytes_per_s": self.model.per_connection,
                "instance_bytes_per_s": self.model.instance,
                "connections_worth": self.model.instance / self.model.per_connection,
                "slow_down_every": self.model.slow_down_every,
            },
            "gets": self.gets.load(Ordering::SeqCst),
            "slowed": self.slowed.load(Ordering::SeqCst),
            "peak_in_flight": self.peak_in_flight(),
            "bytes": bytes,
            "first_get_s": t.first_get.map(|d| d.as_secs_f64()),
            "last_byte_s": t.last_byte.map(|d| d.as_secs_f64()),
            "window_s": window,
            "bytes_per_s": if window > 0.0 { bytes as f64 / window } else { 0.0 },
            "tail_10pct_bytes_per_s": tail,
            "bucket_s": self.model.bucket.as_secs_f64(),
            "timeline": t.buckets.iter().map(|(b, n)| json!([b, n])).collect::<Vec<_>>(),
        })
    }
}

/// A running model; stopped on drop.
pub struct NetModel {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// What it saw, live.
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl NetModel {
    /// Starts the model in front of `upstream` (`http://host:port`) in the current
    /// tokio runtime.
    pub async fn start(upstream: &str, model: Model) -> NetModel {
        let stats = Arc::new(Stats::new(model));
        let state = Arc::new((
            upstream.trim_end_matches('/').to_string(),
            client(),
            Arc::clone(&stats),
        ));
        let (url, task) = serve(move |req| {
            let state = Arc::clone(&state);
            async move { handle(req, &state.0, &state.1, &state.2).await }
        })
        .await;
        NetModel { url, stats, task }
    }
}

impl Drop for NetModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>rangefleet-netmodel</RequestId></Error>";

/// Decrements the GETs in flight when a body ends or is dropped.
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.get_ended();
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: &str,
    client: &reqwest::Client,
    stats: &Arc<Stats>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/_netmodel/stats" {
        let body = serde_json::to_vec(&stats.to_json()).expect("stats serialise");
        return Ok(Response::new(full(body)));
    }
    let is_get = req.method() == Method::GET;
    let is_head = req.method() == Method::HEAD;
    let (parts, body) = read_request(req).await;
    if !is_get {
        let resp = match forward(client, upstream, &parts, body).await {
            Ok(r) => r,
            Err(bad_gateway) => return Ok(bad_gateway),
        };
        let (out, bytes) = answer(resp, is_head).await;
        return Ok(out.body(full(bytes)).expect("response"));
    }
    let n = stats.gets.fetch_add(1, Ordering::SeqCst);
    stats.get_started();
    let guard = InFlight(Arc::clone(stats));
    tokio::time::sleep(stats.model.first_byte).await;
    let every = stats.model.slow_down_every;
    if every > 0 && n % every == every - 1 {
        stats.slowed.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        let resp = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/xml")
            .body(full(SLOW_DOWN))
            .expect("response");
        return Ok(resp);
    }
    let resp = match forward(client, upstream, &parts, body).await {
        Ok(r) => r,
        Err(bad_gateway) => return Ok(bad_gateway),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    if let Some(len) = resp.content_length() {
        out = out.header(CONTENT_LENGTH, len);
    }
    let pacer = Pacer {
        stats: Arc::clone(stats),
        resp,
        pending: Bytes::new(),
        _guard: guard,
    };
    let stream = futures::stream::unfold(pacer, |mut p| async move {
        let frame = p.next().await?;
        Some((frame, p))
    });
    Ok(out
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response"))
}

/// Sends one upstream body at the model's rates.
struct Pacer {
    stats: Arc<Stats>,
    resp: reqwest::Response,
    pending: Bytes,
    _guard: InFlight,
}

impl Pacer {
    async fn next(&mut self) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        if self.pending.is_empty() {
            match self.resp.chunk().await {
                Ok(Some(c)) => self.pending = c,
                Ok(None) => return None,
                Err(e) => return Some(Err(std::io::Error::other(e))),
            }
        }
        let n = self.pending.len().min(SLICE);
        let piece = self.pending.split_to(n);
        let now = Instant::now();
        let m = &self.stats.model;
        // The instance cap is reserved in turn; the connection's own cap runs from now.
        let instance_done = {
            let mut free = self.stats.instance_free.lock().expect("cap lock");
            let start = (*free).max(now);
            *free = start + Duration::from_secs_f64(n as f64 / m.instance);
            *free
        };
        let connection_done = now + Duration::from_secs_f64(n as f64 / m.per_connection);
        tokio::time::sleep_until(instance_done.max(connection_done)).await;
        self.stats.sent(n);
        Some(Ok(Frame::data(piece)))
    }
}
