//! `stress --metrics ADDR`: the run's live counters over HTTP, at `/metrics`,
//! in the OpenMetrics text format, for Prometheus to scrape while it goes on.
//!
//! Nothing here touches the load's per-message path: the load threads add
//! to [`Progress`]'s atomics once per loop turn, and a scrape only reads
//! them and encodes the text (prometheus-client, the Prometheus project's
//! Rust client, through a [`Collector`] that reads the counters at scrape
//! time). One thread of its own serves the requests (tiny_http), so a slow
//! scraper never holds a load thread.
//!
//! The socket is bound before the run starts, so a port in use is a usage
//! error with nothing started. After the run, the totals are final, and the
//! server stays up until one scrape has read them or the grace has passed,
//! whichever comes first: a scraper then always has a chance to see the
//! run's last figures, and a run nobody scrapes is held up at most by the
//! grace.

use crate::UsageError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use ringport_load::profile::Profile;
use ringport_load::{ErrorKind, Phase, Progress, Rate};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The one path served.
pub const PATH: &str = "/metrics";
/// Every series name starts with this.
const PREFIX: &str = "ringport_stress";
/// What an OpenMetrics answer says it is.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What the older Prometheus text format says it is, for a scraper that
/// does not ask for OpenMetrics.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` endpoint of one run.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

struct Shared {
    registry: Registry,
    progress: Arc<Progress>,
    /// Set once a scrape has been answered with the run's final totals.
    final_read: Mutex<bool>,
    final_changed: Condvar,
    stopping: AtomicBool,
}

impl Exporter {
    /// Bind `addr` and serve `progress` from now on. A port in use (or an
    /// address this machine does not have) is a usage error: the run has
    /// not started, and the message says what to change.
    /// `pace`: an open loop's rate and its warm-up, for the gauge of the
    /// rate asked now (a ramp's or a step's changes as the run goes).
    pub fn start(
        addr: SocketAddr,
        progress: Arc<Progress>,
        pace: Option<(&Rate, Duration)>,
    ) -> Result<Exporter, UsageError> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            UsageError(format!(
                "cannot serve --metrics on {addr}: {e}; choose another port, or port 0 for any free one"
            ))
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .expect("a TCP listener has an IP address");
        let mut registry = Registry::with_prefix(PREFIX);
        let pace = pace.and_then(|(rate, warmup)| Some((rate.profile(warmup)?, warmup)));
        registry.register_collector(Box::new(Counters(progress.clone(), pace)));
        let shared = Arc::new(Shared {
            registry,
            progress,
            final_read: Mutex::new(false),
            final_changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let server = Arc::new(server);
        let thread = {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&server, &shared))
                .map_err(|e| UsageError(format!("cannot start the --metrics thread: {e}")))?
        };
        Ok(Exporter {
            server,
            shared,
            thread: Some(thread),
            addr,
        })
    }

    /// Where it listens (the port chosen, when port 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The run is over: wait until a scrape has read its final totals, at
    /// most `grace`, then stop serving.
    pub fn finish(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut read = self.shared.final_read.lock().expect("metrics lock");
        while !*read {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            read = self
                .shared
                .final_changed
                .wait_timeout(read, left)
                .expect("metrics lock")
                .0;
        }
        drop(read);
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answer requests until [`Exporter::stop`].
fn serve(server: &tiny_http::Server, shared: &Shared) {
    for request in server.incoming_requests() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let _ = respond(request, shared);
    }
}

fn respond(request: tiny_http::Request, shared: &Shared) -> std::io::Result<()> {
    let path = request.url().split('?').next().unwrap_or_default();
    let readable = matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    if path != PATH || !readable {
        let answer =
            tiny_http::Response::from_string(format!("ringport stress serves GET {PATH} only\n"))
                .with_status_code(if path == PATH { 405 } else { 404 });
        return request.respond(answer);
    }
    let openmetrics = request.headers().iter().any(|h| {
        h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
    });
    // Read before encoding: when the run was already done, what is encoded
    // is the final totals.
    let done = shared.progress.phase() == Phase::Done;
    let mut body = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut body, &shared.registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, &shared.registry)
    };
    if encoded.is_err() {
        return request.respond(
            tiny_http::Response::from_string("cannot encode the metrics\n").with_status_code(500),
        );
    }
    let content_type = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    let header =
        tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let sent = request.respond(tiny_http::Response::from_string(body).with_header(header));
    if done && sent.is_ok() {
        *shared.final_read.lock().expect("metrics lock") = true;
        shared.final_changed.notify_all();
    }
    sent
}

/// The series, read from the live counters at each scrape; with an open
/// loop's profile and warm-up, the rate it asks now.
#[derive(Debug)]
struct Counters(Arc<Progress>, Option<(Profile, Duration)>);

impl Counters {
    /// The open loop's rate now: the profile's, from the start of the
    /// warm-up (its first rate before the run starts).
    fn rate_asked(&self) -> Option<f64> {
        let (profile, warmup) = self.1.as_ref()?;
        // Measuring starts `warmup` after the schedule's start.
        let since_t0 = self.0.measure_start().map_or(Duration::ZERO, |m| {
            (Instant::now() + *warmup).saturating_duration_since(m)
        });
        Some(profile.rate_at(since_t0))
    }
}

impl Collector for Counters {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let p = &self.0;
        if let Some(rate) = self.rate_asked() {
            ConstGauge::new(rate).encode(e.encode_descriptor(
                "rate_asked",
                "Open loop: messages per second the schedule asks now (it changes with --ramp and --step).",
                None,
                MetricType::Gauge,
            )?)?;
        }
        counter(
            &mut e,
            "messages_sent",
            "Measured messages written in full (the report's messages_sent).",
            p.messages_sent(),
        )?;
        counter(
            &mut e,
            "messages_verified",
            "Measured messages echoed back byte for byte (the report's messages_verified).",
            p.messages(),
        )?;
        counter(
            &mut e,
            "warmup_messages_verified",
            "Warm-up messages echoed back byte for byte (in no other count).",
            p.warmup_messages(),
        )?;
        counter(
            &mut e,
            "connections_opened",
            "Connections opened, with churn every replacement too.",
            p.connections_opened(),
        )?;
        let mut failed = e.encode_descriptor(
            "connections_failed",
            "Connections that failed, each once, by kind (the report's errors_by_kind).",
            None,
            MetricType::Counter,
        )?;
        for kind in ErrorKind::ALL {
            let labels = [("kind", kind.name())];
            ConstCounter::new(p.errors_of(kind)).encode(failed.encode_family(&labels)?)?;
        }
        ConstGauge::new(p.open_connections() as i64).encode(e.encode_descriptor(
            "connections_open",
            "Connections open now.",
            None,
            MetricType::Gauge,
        )?)?;
        let l = p.latency();
        let mut buckets: Vec<(f64, u64)> = l
            .buckets
            .iter()
            .map(|&(us, n)| (us as f64 / 1e6, n))
            .collect();
        buckets.push((f64::INFINITY, l.above));
        e.encode_descriptor(
            "latency",
            "Latency of measured messages, from handing a message to the socket to its last byte verified.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(l.sum_us as f64 / 1e6, l.count(), &buckets, None)
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}
