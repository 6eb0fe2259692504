//! The telemetry contract (`docs/telemetry.md`): Prometheus metrics at `GET /metrics`.
//!
//! Counters and histograms of what happens (events, commits, exceptions) are updated by the
//! engine's commit observer; gauges of how things stand (delivery lanes, open exceptions, the
//! latest reconciliation of each source) are read at each scrape. Label values are bounded:
//! sources the config names (anything else is `other`), event types, exception kinds,
//! endpoints, priorities, classes. No per-item label.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdock_delivery::{EndpointStatus, LATENCY_BUCKETS_S};
use crossdock_ledger::policy::CANARY_SOURCE;
use crossdock_model::{ExceptionKind, Timestamp};
use crossdock_store::{CommitBatch, EventStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::{Slo, SloFlow};

type Labels = Vec<(String, String)>;

/// What a scrape reads from the hub before encoding.
#[derive(Debug, Default)]
pub struct Scrape {
    pub lanes: Vec<EndpointStatus>,
    /// Endpoints that publish a channel's availability (their oldest pending message is the
    /// channel's publication lag).
    pub channels: Vec<String>,
    pub open_exceptions: Vec<(ExceptionKind, u64)>,
    /// `(source, class, count)` of each source's latest run.
    pub variances: Vec<(String, String, u64)>,
    /// The HTTP edge: connections and request bodies.
    pub http: HttpEdge,
    /// Every partition: its last committed ledger sequence and the items it holds.
    pub partitions: Vec<crossdock_engine::PartitionStatus>,
}

/// The HTTP edge as a scrape finds it.
#[derive(Debug, Default)]
pub struct HttpEdge {
    pub connections: usize,
    pub connections_max: usize,
    pub body_bytes: usize,
    pub body_budget_bytes: usize,
    /// Bodies refused since start, by reason (`body_budget`, `body_too_large`, `body_timeout`).
    pub refused: Vec<(&'static str, u64)>,
}

/// An objective with what was counted for it (the ingest flow is counted exactly as events
/// commit; the delivery flow is read from the lanes' buckets at scrape).
#[derive(Debug)]
struct SloState {
    slo: Slo,
    good: AtomicU64,
    bad: AtomicU64,
}

#[derive(Debug, Default)]
struct ScrapeCollector {
    scrape: Mutex<Scrape>,
    slos: Vec<Arc<SloState>>,
}

pub struct Telemetry {
    registry: Registry,
    sources: HashSet<String>,
    ingested: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    exceptions_raised: Family<Labels, Counter>,
    oversell: Counter,
    commit_seconds: Histogram,
    batch_events: Histogram,
    occurred_to_committed: Histogram,
    canary_seconds: Family<Labels, Histogram>,
    canary_checks: Family<Labels, Counter>,
    scrape: Arc<ScrapeCollector>,
    slos: Vec<Arc<SloState>>,
    totals: RunningTotals,
    /// One scrape at a time (the snapshot is shared).
    pub scraping: tokio::sync::Mutex<()>,
}

/// Totals since start the dashboard samples for its rates (the Prometheus families are
/// written, not read back).
#[derive(Debug, Default)]
struct RunningTotals {
    events: AtomicU64,
    commits: AtomicU64,
    commit_us: AtomicU64,
}

/// [`Telemetry::totals`]: what the commit observer has counted since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Inputs logged (applied, held and quarantined).
    pub events: u64,
    /// Group commits.
    pub commits: u64,
    /// Time spent in those commits' transactions.
    pub commit_us: u64,
}

/// An objective as it stands: what was counted for it since start.
#[derive(Debug, Clone, PartialEq)]
pub struct SloStatus {
    pub name: String,
    pub flow: SloFlow,
    pub threshold_s: f64,
    pub objective: f64,
    pub good: u64,
    pub bad: u64,
}

impl SloStatus {
    /// The share within the threshold (1 with no observations yet).
    pub fn attainment(&self) -> f64 {
        attainment(self.good, self.bad)
    }

    /// `(1 - attainment) / (1 - objective)`: above 1 the objective is being missed.
    pub fn burn_rate(&self) -> f64 {
        (1.0 - self.attainment()) / (1.0 - self.objective)
    }
}

/// The objectives' counts: the ingest flow as counted at commit, the delivery flow from the
/// channel endpoints' latency buckets (a bucket counts as good when its upper bound is within
/// the threshold, which `check-config` makes one of the bounds).
fn slo_counts(
    slos: &[Arc<SloState>],
    lanes: &[EndpointStatus],
    channels: &[String],
) -> Vec<SloStatus> {
    slos.iter()
        .map(|st| {
            let (good, bad) = match st.slo.flow {
                SloFlow::OccurredToCommitted | SloFlow::ChannelVisible => (
                    st.good.load(Ordering::Relaxed),
                    st.bad.load(Ordering::Relaxed),
                ),
                SloFlow::CommittedToDelivered => {
                    let (mut good, mut bad) = (0, 0);
                    for l in lanes.iter().filter(|l| channels.contains(&l.lane.endpoint)) {
                        let counts = &l.lane.stats.latency_counts;
                        for (i, n) in counts.iter().enumerate() {
                            let upper = LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY);
                            if upper <= st.slo.threshold_s {
                                good += n;
                            } else {
                                bad += n;
                            }
                        }
                    }
                    (good, bad)
                }
            };
            SloStatus {
                name: st.slo.name.clone(),
                flow: st.slo.flow,
                threshold_s: st.slo.threshold_s,
                objective: st.slo.objective,
                good,
                bad,
            }
        })
        .collect()
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// `sources`: the source ids the config names (label values); `slos`: `[[slo]]`.
    pub fn new(sources: impl IntoIterator<Item = String>, slos: &[Slo]) -> Arc<Telemetry> {
        let mut registry = Registry::with_prefix("crossdock");
        let ingested = Family::<Labels, Counter>::default();
        registry.register(
            "events_ingested",
            "Events recorded (applied, or held for a missing sequence number), by source and type",
            ingested.clone(),
        );
        let rejected = Family::<Labels, Counter>::default();
        registry.register(
            "events_rejected",
            "Events recorded but not applied (quarantined with an exception), by source and type",
            rejected.clone(),
        );
        let exceptions_raised = Family::<Labels, Counter>::default();
        registry.register(
            "exceptions_raised",
            "Exception records opened, by kind (inputs refused at the edge included)",
            exceptions_raised.clone(),
        );
        let oversell = Counter::default();
        registry.register(
            "oversell",
            "Positions driven below zero (oversell_risk raised); must stay 0",
            oversell.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "commit_duration_seconds",
            "Time of one group commit's transaction (fsync included)",
            commit_seconds.clone(),
        );
        let batch_events = Histogram::new(exponential_buckets(1.0, 4.0, 8));
        registry.register(
            "commit_batch_events",
            "Inputs logged per group commit",
            batch_events.clone(),
        );
        let occurred_to_committed = Histogram::new(exponential_buckets(0.01, 4.0, 10));
        registry.register(
            "occurred_to_committed_seconds",
            "From an applied event's own time to its commit",
            occurred_to_committed.clone(),
        );
        let canary_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register(
            "canary_visible_seconds",
            "From a canary's committed test update to the value read back from the channel",
            canary_seconds.clone(),
        );
        let canary_checks = Family::<Labels, Counter>::default();
        registry.register(
            "canary_checks",
            "Canary rounds by channel and result: visible, timeout (not seen in time), error (the update or the read failed)",
            canary_checks.clone(),
        );
        let slos: Vec<Arc<SloState>> = slos
            .iter()
            .map(|slo| {
                Arc::new(SloState {
                    slo: slo.clone(),
                    good: AtomicU64::new(0),
                    bad: AtomicU64::new(0),
                })
            })
            .collect();
        let scrape = Arc::new(ScrapeCollector {
            scrape: Mutex::default(),
            slos: slos.clone(),
        });
        registry.register_collector(Box::new(scrape.clone()));
        let mut sources: HashSet<String> = sources.into_iter().collect();
        for s in [
            "crossdock",
            "crossdock.import",
            "crossdock.reconciler",
            CANARY_SOURCE,
        ] {
            sources.insert(s.to_string());
        }
        Arc::new(Telemetry {
            registry,
            sources,
            ingested,
            rejected,
            exceptions_raised,
            oversell,
            commit_seconds,
            batch_events,
            occurred_to_committed,
            canary_seconds,
            canary_checks,
            scrape,
            slos,
            totals: RunningTotals::default(),
            scraping: tokio::sync::Mutex::new(()),
        })
    }

    fn source_label(&self, source: &str) -> String {
        if self.sources.contains(source) {
            source.to_string()
        } else {
            "other".to_string()
        }
    }

    /// The engine's commit observer.
    pub fn committed(&self, batch: &CommitBatch, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.totals
            .events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        self.totals.commits.fetch_add(1, Ordering::Relaxed);
        self.totals.commit_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.batch_events.observe(batch.events.len() as f64);
        let now = Timestamp::now().as_micros();
        // Counted per (source, type, recorded or not) once per batch, not once per event.
        let mut groups: Vec<(&str, &str, bool, u64)> = Vec::new();
        for e in &batch.events {
            let ingested = e.status != EventStatus::Quarantined;
            match groups
                .iter_mut()
                .find(|g| g.0 == e.source && g.1 == e.ty && g.2 == ingested)
            {
                Some(g) => g.3 += 1,
                None => groups.push((&e.source, &e.ty, ingested, 1)),
            }
        }
        for (source, ty, ingested, n) in groups {
            let labels = vec![
                ("source".to_string(), self.source_label(source)),
                ("event_type".to_string(), ty.to_string()),
            ];
            let family = if ingested {
                &self.ingested
            } else {
                &self.rejected
            };
            family.get_or_create(&labels).inc_by(n);
        }
        for e in &batch.events {
            match e.status {
                // Synthetic canary updates say nothing about how fast real inputs commit.
                EventStatus::Applied if e.source == CANARY_SOURCE => {}
                EventStatus::Applied => {
                    let took = ((now - e.time_us).max(0) as f64) / 1e6;
                    self.occurred_to_committed.observe(took);
                    for s in &self.slos {
                        if s.slo.flow == SloFlow::OccurredToCommitted {
                            let counter = if took <= s.slo.threshold_s {
                                &s.good
                            } else {
                                &s.bad
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                EventStatus::Held | EventStatus::Quarantined | EventStatus::Forwarding => {}
            }
        }
        for x in &batch.exceptions {
            self.exceptions_raised
                .get_or_create(&vec![("kind".to_string(), x.kind.as_str().to_string())])
                .inc();
            if x.kind == ExceptionKind::OversellRisk {
                self.oversell.inc();
            }
        }
    }

    /// A canary round on `channel`: `Ok(lag)` when the value was seen after `lag`, else why not
    /// (`timeout` or `error`).
    pub fn canary(&self, channel: &str, outcome: Result<Duration, &'static str>) {
        let result = match outcome {
            Ok(lag) => {
                self.canary_seconds
                    .get_or_create(&labels(&[("channel", channel)]))
                    .observe(lag.as_secs_f64());
                "visible"
            }
            Err(why) => why,
        };
        self.canary_checks
            .get_or_create(&labels(&[("channel", channel), ("result", result)]))
            .inc();
        for s in self
            .slos
            .iter()
            .filter(|s| s.slo.flow == SloFlow::ChannelVisible)
        {
            let good = outcome.is_ok_and(|lag| lag.as_secs_f64() <= s.slo.threshold_s);
            let counter = if good { &s.good } else { &s.bad };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the commit observer has counted since start.
    pub fn totals(&self) -> Totals {
        Totals {
            events: self.totals.events.load(Ordering::Relaxed),
            commits: self.totals.commits.load(Ordering::Relaxed),
            commit_us: self.totals.commit_us.load(Ordering::Relaxed),
        }
    }

    /// Every `[[slo]]` with its counts; `lanes` and `channels` as for a scrape.
    pub fn slo_status(&self, lanes: &[EndpointStatus], channels: &[String]) -> Vec<SloStatus> {
        slo_counts(&self.slos, lanes, channels)
    }

    /// The text exposition for a scrape of `scrape` (OpenMetrics 1.0).
    pub fn encode(&self, scrape: Scrape) -> Result<String, std::fmt::Error> {
        *self.scrape.scrape.lock().expect("scrape lock") = scrape;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The exposition formats `GET /metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`), the default.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`), for scrapers that ask for it.
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// What an `Accept` header asks for: the Prometheus text format when `text/plain` is
    /// preferred (by quality, then by order) to OpenMetrics; OpenMetrics otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Prometheus,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::OpenMetrics, |(_, f)| f)
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter's family is named with its
/// `_total` suffix, as its samples are; `# UNIT` and `# EOF` are left out; HELP text unescapes
/// quotes (0.0.4 escapes only backslashes and line feeds).
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_string());
        }
    }
    let family = |name: &str| {
        if counters.contains(name) {
            format!("{name}_total")
        } else {
            name.to_string()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!(
                "# HELP {} {}\n",
                family(name),
                help.replace("\\\"", "\"")
            ));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let ty = match ty {
                "counter" | "gauge" | "histogram" | "summary" => ty,
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {ty}\n", family(name)));
        } else if line
            .split(['{', ' '])
            .next()
            .is_some_and(|s| s.ends_with("_created"))
        {
            // OpenMetrics' creation times have no place in 0.0.4.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in rows {
        ConstGauge::new(v).encode(metric.encode_family(&l)?)?;
    }
    Ok(())
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.scrape.lock().expect("scrape lock");
        let now = Timestamp::now().as_micros();
        let age_s = |created: Option<i64>| created.map_or(0, |c| ((now - c).max(0)) / 1_000_000);
        let priorities = ["0", "1", "2"];
        gauge_family(
            &mut encoder,
            "outbox_depth",
            "Messages waiting for an endpoint (the call in flight not counted), by priority (0 crosses zero, 1 low stock, 2 other)",
            s.lanes.iter().flat_map(|l| {
                priorities.iter().enumerate().map(move |(i, p)| {
                    (
                        labels(&[("endpoint", &l.lane.endpoint), ("priority", p)]),
                        l.lane.depth.by_priority[i] as i64,
                    )
                })
            }),
        )?;
        gauge_family(
            &mut encoder,
            "outbox_oldest_age_seconds",
            "Age of the oldest message waiting for an endpoint, by priority (0 when none waits)",
            s.lanes.iter().flat_map(|l| {
                priorities.iter().enumerate().map(move |(i, p)| {
                    (
                        labels(&[("endpoint", &l.lane.endpoint), ("priority", p)]),
                        age_s(l.lane.depth.oldest_by_priority[i]),
                    )
                })
            }),
        )?;
        gauge_family(
            &mut encoder,
            "channel_publication_lag_seconds",
            "Age of the oldest availability change a channel has not been sent yet (0 when caught up)",
            s.lanes
                .iter()
                .filter(|l| s.channels.contains(&l.lane.endpoint))
                .map(|l| {
                    (
                        labels(&[("channel", &l.lane.endpoint)]),
                        age_s(l.lane.depth.oldest_created_at_us),
                    )
                }),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "deliveries",
                "Outcomes at an endpoint: delivered, failed_call, parked, mismatch, coalesced, stale",
                None,
                MetricType::Counter,
            )?;
            for l in &s.lanes {
                let st = &l.lane.stats;
                for (result, v) in [
                    ("delivered", st.delivered),
                    ("failed_call", st.failed_calls),
                    ("parked", st.parked),
                    ("mismatch", st.mismatches),
                    ("coalesced", st.coalesced),
                    ("stale", st.stale),
                ] {
                    let l = labels(&[("endpoint", &l.lane.endpoint), ("result", result)]);
                    ConstCounter::new(v).encode(metric.encode_family(&l)?)?;
                }
            }
        }
        gauge_family(
            &mut encoder,
            "breaker_state",
            "An endpoint's circuit breaker: 0 closed, 1 half-open, 2 open",
            s.lanes.iter().map(|l| {
                let v = match l.lane.breaker {
                    crossdock_delivery::BreakerState::Closed => 0,
                    crossdock_delivery::BreakerState::HalfOpen => 1,
                    crossdock_delivery::BreakerState::Open => 2,
                };
                (labels(&[("endpoint", &l.lane.endpoint)]), v)
            }),
        )?;
        gauge_family(
            &mut encoder,
            "dlq_size",
            "Messages parked in the dead-letter queue of an endpoint",
            s.lanes.iter().map(|l| {
                (
                    labels(&[("endpoint", &l.lane.endpoint)]),
                    l.dead_letters as i64,
                )
            }),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "committed_to_delivered_seconds",
                "From a change's commit to the endpoint accepting it",
                None,
                MetricType::Histogram,
            )?;
            for l in &s.lanes {
                let st = &l.lane.stats;
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_S
                    .iter()
                    .copied()
                    .chain(std::iter::once(f64::INFINITY))
                    .zip(st.latency_counts.iter().copied())
                    .collect();
                let count = st.latency_counts.iter().sum();
                let lb = labels(&[("endpoint", &l.lane.endpoint)]);
                metric.encode_family(&lb)?.encode_histogram::<Labels>(
                    st.latency_sum_s,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }
        let h = &s.http;
        for (name, help, v) in [
            (
                "http_connections",
                "HTTP connections open now",
                h.connections,
            ),
            (
                "http_connections_max",
                "The HTTP connection cap (kept below the open-file limit); at the cap new connections wait",
                h.connections_max,
            ),
            (
                "http_body_bytes",
                "Bytes of request bodies charged to the body budget now (declared up front, chunked as read)",
                h.body_bytes,
            ),
            (
                "http_body_budget_bytes",
                "The budget for request bodies in flight together; beyond it the hub answers 503",
                h.body_budget_bytes,
            ),
        ] {
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(metric)?;
        }
        {
            let mut metric = encoder.encode_descriptor(
                "http_refused",
                "Request bodies refused: body_budget (503, the budget was spent), body_too_large (413), body_timeout (408)",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in &h.refused {
                ConstCounter::new(*n)
                    .encode(metric.encode_family(&labels(&[("reason", reason)]))?)?;
            }
        }
        gauge_family(
            &mut encoder,
            "exceptions_open",
            "Exception records open or acknowledged, by kind",
            s.open_exceptions
                .iter()
                .map(|(k, n)| (labels(&[("kind", k.as_str())]), *n as i64)),
        )?;
        gauge_family(
            &mut encoder,
            "reconciliation_variances",
            "Rows of each source's latest reconciliation that are not a match, by class",
            s.variances.iter().map(|(source, class, n)| {
                (labels(&[("source", source), ("class", class)]), *n as i64)
            }),
        )?;
        let partition = |p: &crossdock_engine::PartitionStatus| {
            labels(&[("partition", &p.partition.to_string())])
        };
        gauge_family(
            &mut encoder,
            "partition_ledger_seq",
            "The ledger sequence a partition last committed",
            s.partitions.iter().map(|p| {
                (
                    partition(p),
                    i64::try_from(p.ledger_seq).unwrap_or(i64::MAX),
                )
            }),
        )?;
        gauge_family(
            &mut encoder,
            "partition_items",
            "Items a partition holds in memory",
            s.partitions
                .iter()
                .map(|p| (partition(p), i64::try_from(p.items).unwrap_or(i64::MAX))),
        )?;
        // Objectives: good and bad observations, attainment and burn rate.
        let counts = slo_counts(&self.slos, &s.lanes, &s.channels);
        {
            let mut metric = encoder.encode_descriptor(
                "slo_observations",
                "Observations of an objective's flow, good (within the threshold) or bad",
                None,
                MetricType::Counter,
            )?;
            for st in &counts {
                for (outcome, v) in [("good", st.good), ("bad", st.bad)] {
                    let l = labels(&[("slo", &st.name), ("outcome", outcome)]);
                    ConstCounter::new(v).encode(metric.encode_family(&l)?)?;
                }
            }
        }
        let float_family = |encoder: &mut DescriptorEncoder,
                            name: &str,
                            help: &str,
                            value: &dyn Fn(&SloStatus) -> f64|
         -> Result<(), std::fmt::Error> {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for st in &counts {
                let l = labels(&[("slo", &st.name)]);
                ConstGauge::new(value(st)).encode(metric.encode_family(&l)?)?;
            }
            Ok(())
        };
        float_family(
            &mut encoder,
            "slo_objective",
            "The share of observations an objective wants within its threshold",
            &|st| st.objective,
        )?;
        float_family(
            &mut encoder,
            "slo_attainment",
            "The share of observations within the threshold since start (1 with none)",
            &SloStatus::attainment,
        )?;
        float_family(
            &mut encoder,
            "slo_burn_rate",
            "How fast the error budget is spent: (1 - attainment) / (1 - objective); above 1 misses the objective",
            &SloStatus::burn_rate,
        )?;
        Ok(())
    }
}

fn attainment(good: u64, bad: u64) -> f64 {
    if good + bad == 0 {
        1.0
    } else {
        good as f64 / (good + bad) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_format() {
        use Format::*;
        for (accept, want) in [
            (None, OpenMetrics),
            (Some("*/*"), OpenMetrics),
            (Some("text/plain"), Prometheus),
            (Some("text/plain; version=0.0.4"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            // What Prometheus itself sends: OpenMetrics first.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
                Prometheus,
            ),
            (
                Some("text/plain;q=0, application/openmetrics-text;q=0.1"),
                OpenMetrics,
            ),
            (Some("text/plain;q=0"), OpenMetrics),
            (Some("application/json"), OpenMetrics),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn every_family_has_help_in_both_formats() {
        let t = Telemetry::new(["wms-east".to_string()], &[]);
        let om = t
            .encode(Scrape {
                http: HttpEdge {
                    refused: vec![("body_budget", 2)],
                    ..HttpEdge::default()
                },
                ..Scrape::default()
            })
            .unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = to_prometheus_text(&om);
        for (format, body) in [("openmetrics", &om), ("prometheus", &text)] {
            let types: Vec<&str> = body
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .map(|r| r.split(' ').next().unwrap())
                .collect();
            assert!(types.len() > 10, "{format}: {body}");
            for name in types {
                let help = body
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
                    .unwrap_or_else(|| panic!("{format}: no HELP for {name}"));
                assert!(!help.trim().is_empty(), "{format}: empty HELP for {name}");
            }
        }
        // 0.0.4 names a counter's family with its samples' suffix and has no EOF.
        assert!(
            text.contains("# TYPE crossdock_http_refused_total counter\n"),
            "{text}"
        );
        assert!(text.contains("crossdock_http_refused_total{reason=\"body_budget\"} 2\n"));
        assert!(text.contains("# TYPE crossdock_http_body_budget_bytes gauge\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(om.contains("# TYPE crossdock_http_refused counter\n"));
    }
}
