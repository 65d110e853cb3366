//! The opt-in Prometheus endpoint (`metrics_listen`, docs/operations.md#metrics).
//!
//! Off by default. When the config names an address, the agent serves `GET /metrics`
//! there in the Prometheus text format, encoded by `prometheus-client` (no
//! hand-formatting) and served by the hyper server the project already has for
//! `imds-mock`. The counters are the worker's own [`Counters`], read at each scrape, so
//! what the endpoint says at the end is exactly what the instance summary holds
//! ([`summary`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::contract::summary::{AgentBuild, Latency, MetricsSummary};
use crate::instance::worker::Counters;

/// A latency histogram that also keeps its count and sum for the summary
/// (`prometheus-client` reads them back only in its own tests). One lock orders the
/// observations, so the sum here is the very number the histogram serves.
#[derive(Debug)]
pub struct Timing {
    histogram: Histogram,
    totals: Mutex<(u64, f64)>,
}

impl Timing {
    /// A histogram with `buckets` (upper bounds, seconds).
    pub fn new(buckets: impl IntoIterator<Item = f64>) -> Timing {
        Timing {
            histogram: Histogram::new(buckets),
            totals: Mutex::new((0, 0.0)),
        }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += 1;
        t.1 += secs;
        self.histogram.observe(secs);
    }

    /// The count and sum so far.
    pub fn latency(&self) -> Latency {
        let t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        Latency {
            count: t.0,
            sum_seconds: t.1,
        }
    }
}

/// The path served; any other answers 404.
pub const PATH: &str = "/metrics";

/// Reads [`Counters`] at each scrape.
#[derive(Debug)]
struct Live {
    counters: Arc<Counters>,
    throughput_gbps: f64,
    gets_max: u64,
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    // Help ends with a period, as the registry writes it for registered metrics.
    c.encode(enc.encode_descriptor(name, &format!("{help}."), None, c.metric_type())?)
}

fn gauge<V>(enc: &mut DescriptorEncoder, name: &str, help: &str, v: V) -> std::fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, &format!("{help}."), None, g.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "jobs_done",
            "Jobs whose result this agent wrote and acked",
            load(&c.done),
        )?;
        counter(
            &mut enc,
            "jobs_redone",
            "Jobs whose result was already written (acked, not counted again)",
            load(&c.redone),
        )?;
        counter(
            &mut enc,
            "jobs_dead_lettered",
            "Jobs moved to the dead-letter queue (the summary's failed)",
            load(&c.failed),
        )?;
        counter(
            &mut enc,
            "jobs_released",
            "Jobs handed back to the queue (drain, retryable errors, faults)",
            load(&c.released),
        )?;
        counter(
            &mut enc,
            "job_errors",
            "Job attempts that ended in an error (retried, released for a fault, or dead-lettered)",
            load(&c.errors),
        )?;
        counter(
            &mut enc,
            "read_bytes",
            "Bytes read by jobs that ended with a result",
            load(&c.bytes_read),
        )?;
        {
            let notices = c.notices.lock().unwrap_or_else(|p| p.into_inner());
            let mut family = enc.encode_descriptor(
                "notices",
                "Notices acted on, by kind.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for kind in ["spot-interruption", "rebalance", "asg-termination"] {
                let labels = [("kind", kind)];
                let v = notices.get(kind).copied().unwrap_or(0);
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        let (in_flight, window) = c
            .window
            .get()
            .map_or((0, 0), |w| (w.in_flight() as u64, w.stats().gets as u64));
        gauge(
            &mut enc,
            "gets_in_flight",
            "Part GETs in flight now",
            in_flight as i64,
        )?;
        gauge(
            &mut enc,
            "get_window",
            "GETs the window allows now (narrowed when the store throttles)",
            window as i64,
        )?;
        gauge(
            &mut enc,
            "get_window_max",
            "The window's ceiling: GETs in flight at most",
            self.gets_max as i64,
        )?;
        gauge(
            &mut enc,
            "throughput_target_gbps",
            "The throughput the agent sized its reads for, Gbit/s",
            self.throughput_gbps,
        )?;
        Ok(())
    }
}

/// The registry the endpoint encodes: the live counters, the two latency histograms
/// and the build info, every name prefixed `rangefleet_`.
pub fn registry(counters: Arc<Counters>, throughput_gbps: f64, gets_max: usize) -> Registry {
    let mut r = Registry::with_prefix("rangefleet");
    r.register_collector(Box::new(Live {
        counters: counters.clone(),
        throughput_gbps,
        gets_max: gets_max as u64,
    }));
    r.register_with_unit(
        "lease_latency",
        "Lease calls that returned jobs: how long each took",
        Unit::Seconds,
        counters.lease_latency.histogram.clone(),
    );
    r.register_with_unit(
        "job_duration",
        "Jobs that ended with a result: lease to result",
        Unit::Seconds,
        counters.job_duration.histogram.clone(),
    );
    let build = AgentBuild::current();
    r.register(
        "build",
        "The agent's version and commit",
        prometheus_client::metrics::info::Info::new(vec![
            ("version", build.version),
            ("commit", build.commit),
        ]),
    );
    r
}

/// The registry in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_text::encode(&mut out, registry).expect("writing to a String does not fail");
    out
}

/// The counters the endpoint serves that the summary's own fields do not hold.
pub fn summary(counters: &Counters) -> MetricsSummary {
    MetricsSummary {
        job_errors: counters.errors.load(Ordering::Relaxed),
        notices: counters
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        lease_latency: counters.lease_latency.latency(),
        job_duration: counters.job_duration.latency(),
    }
}

/// Binds `addr` (before the agent says it is ready, so a wrong address shows at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `registry` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(event = "metrics_accept_failed", error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&registry, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn answer<B>(registry: &Registry, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.uri().path() != PATH {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("not found: the metrics are at {PATH}\n"),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    reply(
        StatusCode::OK,
        prometheus_text::CONTENT_TYPE,
        encode(registry),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_counter_and_reads_the_live_values() {
        let c = Arc::new(Counters::default());
        let r = registry(c.clone(), 12.5, 48);
        c.done.fetch_add(3, Ordering::Relaxed);
        c.bytes_read.fetch_add(4096, Ordering::Relaxed);
        c.notice("rebalance");
        c.job_duration.observe(Duration::from_millis(250));
        let text = encode(&r);
        for line in [
            "rangefleet_jobs_done_total 3",
            "rangefleet_jobs_dead_lettered_total 0",
            "rangefleet_jobs_released_total 0",
            "rangefleet_read_bytes_total 4096",
            "rangefleet_notices_total{kind=\"rebalance\"} 1",
            "rangefleet_notices_total{kind=\"spot-interruption\"} 0",
            "rangefleet_throughput_target_gbps 12.5",
            "rangefleet_get_window_max 48",
            "rangefleet_job_duration_seconds_count 1",
            "rangefleet_job_duration_seconds_sum 0.25",
            "rangefleet_lease_latency_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert!(text.contains("rangefleet_build_info{version="), "{text}");
        c.done.fetch_add(1, Ordering::Relaxed);
        assert!(encode(&r)
            .lines()
            .any(|l| l == "rangefleet_jobs_done_total 4"));
        let s = summary(&c);
        assert_eq!(s.job_duration.count, 1);
        assert_eq!(s.notices.get("rebalance"), Some(&1));
    }
}
