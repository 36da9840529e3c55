//! A gateway simulator and load generator: many callers pushing readings into
//! ingest-svc over unary calls or streams, measuring acknowledged readings and
//! per-call (per-batch, for streams) latency. `edge simulate` prints one
//! report; `edge bench` runs it over a matrix of shapes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_runtime::client::{AuthedChannel, ClientArgs, Credentials};
use hdrhistogram::Histogram;
use prost_types::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use crate::cli::{IdKind, LoadArgs, Mode, SimulateArgs};

/// What one load run measured.
pub struct Report {
    /// Readings acknowledged (stored or duplicate).
    pub readings: u64,
    /// Readings refused (rejected as invalid, or conflicting with a stored
    /// reading). The call carrying them still succeeds, so they are counted
    /// here rather than as failed calls.
    pub refused: u64,
    /// Calls (unary) or batches (stream) acknowledged.
    pub calls: u64,
    /// Calls or batches that failed.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency per acknowledged call or batch, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Report {
    fn empty() -> Self {
        Report {
            readings: 0,
            refused: 0,
            calls: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            // Constant, valid parameters: 3 significant digits, auto-resizing.
            latency_us: Histogram::new(3).expect("3 significant figures is a valid precision"),
        }
    }

    fn merge(&mut self, other: &Report) {
        self.readings += other.readings;
        self.refused += other.refused;
        self.calls += other.calls;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Acknowledged readings per second.
    pub fn readings_per_sec(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Acknowledged calls per second.
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Makes the readings simulated gateways send.
struct Gateway {
    ids: IdKind,
    sensors: usize,
    next: u64,
}

impl Gateway {
    fn batch(&mut self, size: usize) -> Vec<pb::Reading> {
        let now = Timestamp::from(SystemTime::now());
        (0..size)
            .map(|_| {
                self.next += 1;
                let n = self.next;
                pb::Reading {
                    id: match self.ids {
                        IdKind::V7 => Uuid::now_v7(),
                        IdKind::V4 => Uuid::new_v4(),
                    }
                    .hyphenated()
                    .to_string(),
                    sensor_id: format!("sensor-{}", n % self.sensors.max(1) as u64),
                    temperature_celsius: Some(15.0 + (n % 200) as f64 / 10.0),
                    humidity_percent: Some(30.0 + (n % 400) as f64 / 10.0),
                    measured_at: Some(now),
                    priority: if n.is_multiple_of(100) {
                        pb::Priority::Critical
                    } else {
                        pb::Priority::Normal
                    } as i32,
                }
            })
            .collect()
    }
}

fn pacer(spec: &LoadArgs) -> Option<tokio::time::Interval> {
    (spec.rate > 0.0).then(|| {
        let per_caller = spec.rate / spec.concurrency.max(1) as f64;
        let period = Duration::from_secs_f64(spec.batch as f64 / per_caller);
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    })
}

async fn unary_caller(
    channel: AuthedChannel,
    spec: LoadArgs,
    seed: u64,
    deadline: Instant,
) -> Report {
    let mut client = IngestServiceClient::new(channel);
    let mut gateway = Gateway {
        ids: spec.ids,
        sensors: spec.sensors,
        next: seed,
    };
    let mut pace = pacer(&spec);
    let mut report = Report::empty();
    while Instant::now() < deadline {
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        let readings = gateway.batch(spec.batch);
        let start = Instant::now();
        match client.ingest(pb::IngestRequest { readings }).await {
            Ok(reply) => {
                let s = reply.into_inner().summary.unwrap_or_default();
                report.readings += u64::from(s.stored + s.duplicates);
                report.refused += u64::from(s.rejected + s.conflicts);
                report.calls += 1;
                let _ = report.latency_us.record(start.elapsed().as_micros() as u64);
            }
            Err(status) => {
                report.errors += 1;
                tracing::debug!(%status, "ingest call failed");
            }
        }
    }
    report
}

async fn stream_caller(
    channel: AuthedChannel,
    spec: LoadArgs,
    seed: u64,
    deadline: Instant,
) -> Report {
    let mut client = IngestServiceClient::new(channel);
    let mut report = Report::empty();
    let in_flight = spec.in_flight.max(1);
    let (batches, outgoing) = mpsc::channel::<pb::IngestStreamRequest>(in_flight);
    let sent_at = Arc::new(Mutex::new(VecDeque::<Instant>::new()));
    let window = Arc::new(Semaphore::new(in_flight));

    let sender = {
        let sent_at = sent_at.clone();
        let window = window.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let mut gateway = Gateway {
                ids: spec.ids,
                sensors: spec.sensors,
                next: seed,
            };
            let mut pace = pacer(&spec);
            let mut batch_id = 0;
            while Instant::now() < deadline {
                if let Some(pace) = &mut pace {
                    pace.tick().await;
                }
                let Ok(permit) = window.acquire().await else {
                    break;
                };
                permit.forget();
                batch_id += 1;
                let request = pb::IngestStreamRequest {
                    batch_id,
                    readings: gateway.batch(spec.batch),
                };
                if let Ok(mut queue) = sent_at.lock() {
                    queue.push_back(Instant::now());
                }
                if batches.send(request).await.is_err() {
                    break;
                }
            }
        })
    };

    match client.ingest_stream(ReceiverStream::new(outgoing)).await {
        Ok(response) => {
            let mut acks = response.into_inner();
            loop {
                match acks.message().await {
                    Ok(Some(ack)) => {
                        let started = sent_at.lock().ok().and_then(|mut q| q.pop_front());
                        window.add_permits(1);
                        let s = ack.summary.unwrap_or_default();
                        report.readings += u64::from(s.stored + s.duplicates);
                        report.refused += u64::from(s.rejected + s.conflicts);
                        if ack.batch_error.is_some() {
                            report.refused += spec.batch as u64;
                        }
                        report.calls += 1;
                        if let Some(started) = started {
                            let _ = report
                                .latency_us
                                .record(started.elapsed().as_micros() as u64);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        report.errors += 1;
                        tracing::debug!(%status, "ingest stream failed");
                        break;
                    }
                }
            }
        }
        Err(status) => {
            report.errors += 1;
            tracing::debug!(%status, "cannot open ingest stream");
        }
    }
    window.close();
    let _ = sender.await;
    report
}

/// Pushes readings into ingest-svc at `ingest_url`, presenting
/// `credentials`, as `spec` says.
pub async fn run(
    ingest_url: &str,
    credentials: &Credentials,
    spec: &LoadArgs,
) -> anyhow::Result<Report> {
    let mut channels = Vec::new();
    let client = ClientArgs {
        connect_timeout: Duration::from_secs(5),
        // The load's own deadline ends it; a call may take its time.
        request_timeout: Duration::from_secs(60),
    };
    for _ in 0..spec.connections.max(1) {
        let channel = edge_runtime::client::endpoint(ingest_url, &client, credentials)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to ingest-svc at {ingest_url}"))?;
        channels.push(edge_runtime::client::authed(channel, credentials)?);
    }
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..spec.concurrency.max(1) {
        let channel = channels[i % channels.len()].clone();
        let seed = (i as u64) << 40;
        let spec = spec.clone();
        match spec.mode {
            Mode::Unary => callers.spawn(unary_caller(channel, spec, seed, deadline)),
            Mode::Stream => callers.spawn(stream_caller(channel, spec, seed, deadline)),
        };
    }
    let mut total = Report::empty();
    while let Some(report) = callers.join_next().await {
        total.merge(&report.context("a load caller panicked")?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// `edge simulate`.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let r = run(
        &args.target.ingest_url,
        &args.access.credentials()?,
        &args.load,
    )
    .await?;
    println!(
        "{} readings acknowledged and {} refused in {:.1}s: {:.0} readings/s, {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, {} failed calls",
        r.readings,
        r.refused,
        r.elapsed.as_secs_f64(),
        r.readings_per_sec(),
        r.calls_per_sec(),
        r.latency_ms(0.5),
        r.latency_ms(0.99),
        r.errors
    );
    if r.errors > 0 && r.calls == 0 {
        anyhow::bail!("no call succeeded");
    }
    if r.readings == 0 && r.refused > 0 {
        // Every call answered OK, yet the site kept nothing.
        anyhow::bail!("the site refused every reading");
    }
    Ok(())
}
