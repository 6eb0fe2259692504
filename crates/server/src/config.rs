//! The config file: one TOML document, checked strictly. Every problem names its key and line,
//! and [`load`] reports all of them at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crossdock_ledger::{Buffer, ChannelPolicy, OwnershipRule, Policy, SourcePolicy};
use crossdock_model::{ChannelId, EventData, ItemId, LocationId, SourceId};
use serde::Deserialize;

pub mod reconciliation;
pub mod server;
pub mod telemetry;
pub mod workflows;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub body_max_bytes: Option<usize>,
    pub batch_lines_max: Option<usize>,
    /// See [`server`]: the HTTP edge's limits.
    pub body_budget_mb: Option<u64>,
    pub header_read_timeout_s: Option<u64>,
    pub body_read_timeout_s: Option<u64>,
    pub connections_max: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EngineSection {
    pub partitions: Option<u32>,
    pub queue_max: Option<usize>,
    pub batch_max: Option<usize>,
    /// How far ahead of the hub's clock an event's time may be (default 300).
    pub future_skew_s: Option<u64>,
    /// How many days back an event's time may be (default 3650).
    pub event_horizon_days: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct StoreSection {
    /// `sqlite` (default) or `postgres`.
    pub kind: Option<String>,
    /// SQLite file, relative to the data directory.
    pub path: Option<PathBuf>,
    /// PostgreSQL connection string, or the env var holding it.
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub schema: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct MasterSection {
    /// CSV with a header row and an `item` column; relative to the config file.
    pub items_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
pub struct LocationEntry {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Ship-to regions this location serves first when sourcing orders.
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BufferValue {
    Units(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
pub struct ChannelEntry {
    pub id: String,
    pub locations: Vec<String>,
    #[serde(default)]
    pub buffer: Option<BufferValue>,
    #[serde(default)]
    pub share_pct: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    #[serde(default)]
    pub min_publish: Option<i64>,
    #[serde(default)]
    pub counts_soft_reservations: Option<bool>,
    #[serde(default)]
    pub incoming_horizon_s: Option<u64>,
    #[serde(default)]
    pub low_stock: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct OwnsEntry {
    pub types: Vec<String>,
    #[serde(default)]
    pub locations: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct SourceEntry {
    pub id: String,
    #[serde(default)]
    pub sequenced: bool,
    #[serde(default)]
    pub owns: Vec<OwnsEntry>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ResequencerSection {
    pub gap_wait_s: Option<u64>,
    pub held_max: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    pub scopes: Vec<String>,
}

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawConfig {
    pub server: ServerSection,
    pub engine: EngineSection,
    pub store: StoreSection,
    pub master: MasterSection,
    pub locations: Vec<LocationEntry>,
    pub channels: Vec<ChannelEntry>,
    pub sources: Vec<SourceEntry>,
    pub resequencer: ResequencerSection,
    pub tokens: Vec<TokenEntry>,
    pub endpoints: Vec<crate::endpoints::EndpointEntry>,
    pub partners: Vec<crossdock_edi::PartnerEntry>,
    pub workflows: workflows::WorkflowSection,
    pub exceptions: crate::exception_policy::ExceptionsEntry,
    pub reconciliation: reconciliation::ReconciliationSection,
    pub slo: Vec<SloEntry>,
    pub telemetry: telemetry::TelemetrySection,
}

/// `[[slo]]`: an objective for one flow's latency.
#[derive(Debug, Deserialize)]
pub struct SloEntry {
    pub name: String,
    /// `occurred_to_committed`, `committed_to_delivered` or `channel_visible` (canaries).
    pub flow: String,
    pub threshold_ms: u64,
    /// The share of observations that must be within the threshold, e.g. 0.99.
    pub objective: f64,
}

/// A checked `[[slo]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub flow: SloFlow,
    pub threshold_s: f64,
    pub objective: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloFlow {
    OccurredToCommitted,
    /// Measured on the channel endpoints.
    CommittedToDelivered,
    /// Measured by the canaries: a committed change seen on the channel (a canary round that
    /// times out is a bad observation).
    ChannelVisible,
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Sqlite(PathBuf),
    Postgres { url: String, schema: Option<String> },
}

/// The partition count of a new store when `[engine] partitions` is not set: one per two cores
/// of this machine, at most 8. Partitions apply in parallel but share the cores with the HTTP
/// edge and the committers: on this project's 2-core machines one partition ingested fastest on
/// SQLite and reserved hot items fastest on PostgreSQL (BENCHMARKS.md), while larger machines
/// have cores to spare for more writers. A store keeps the count it was written with.
pub fn default_partitions() -> u32 {
    (cores() / 2).clamp(1, 8)
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

#[derive(Debug, Clone)]
pub enum Scope {
    Ingest(SourceId),
    Query,
    Reserve,
    Admin,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub secret: String,
    pub scopes: Vec<Scope>,
}

/// The checked config, ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub body_max_bytes: usize,
    pub batch_lines_max: usize,
    /// `[server]`: the body budget, read timeouts and the connection cap.
    pub http: server::HttpLimits,
    /// `[engine] partitions`, or the default for this machine and store
    /// ([`default_partitions`]) when not configured.
    pub partitions: u32,
    /// `partitions` was configured (a store written with another count is refused); otherwise
    /// a store keeps the count it was written with.
    pub partitions_fixed: bool,
    pub queue_max: usize,
    pub batch_max: usize,
    pub store: StoreChoice,
    pub policy: Policy,
    pub tokens: Vec<Token>,
    pub endpoints: Vec<crate::endpoints::EndpointSpec>,
    /// Trading partners (X12 and CSV files).
    pub partners: Vec<crossdock_edi::PartnerSpec>,
    /// `[master] items_file`, resolved: the item master when `<data_dir>/master/items.csv`
    /// has not been imported.
    pub items_file: Option<PathBuf>,
    /// `[[locations]]`, for master data.
    pub locations: Vec<crossdock_master::Location>,
    /// `[workflows]`: the credit check and where postings go.
    pub workflows: workflows::WorkflowSettings,
    /// `[exceptions]`: the work queue's policy per kind and its notifications.
    pub exceptions: crate::exception_policy::ExceptionsConfig,
    /// `[reconciliation]`: sources, schedules, tolerances and actions.
    pub reconciliation: reconciliation::ReconSettings,
    /// `[[slo]]`: latency objectives per flow, exported with their attainment.
    pub slos: Vec<Slo>,
    /// `[telemetry]`: OTLP export and channel canaries.
    pub telemetry: telemetry::TelemetrySettings,
}

impl Config {
    /// Moves the data directory, and with it the partner folders that live under it.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        for p in &mut self.partners {
            for folder in [&mut p.inbound, &mut p.outbound] {
                if let Ok(rest) = folder.strip_prefix(&self.data_dir) {
                    *folder = dir.join(rest);
                }
            }
        }
        self.data_dir = dir;
    }
}

pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";
pub const BODY_MAX_DEFAULT: usize = 16 * 1024 * 1024;
pub const BATCH_LINES_MAX_DEFAULT: usize = 10_000;

/// Reads and checks a config file; relative paths in it are relative to its folder.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigProblem {
            key: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base)
}

/// Checks config text; `base` resolves relative paths.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let ReadDocument {
        doc,
        lines,
        raw,
        problems,
    } = read_document::<RawConfig>(text)?;
    let mut check = Checker {
        doc: &doc,
        lines: &lines,
        problems,
    };
    let config = check.build(raw, base);
    if check.problems.is_empty() {
        Ok(config.expect("no problems means a config"))
    } else {
        Err(check.problems)
    }
}

/// The `[[channels]]` of a policy file (`crossdock what-if --policy`), the only table it holds.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ChannelsFile {
    channels: Vec<ChannelEntry>,
}

/// Reads a policy file: `[[channels]]` entries in the config's format, checked as the config
/// checks them. Each entry replaces the channel of the same id in `policy`; the channels it does
/// not name keep theirs, and everything else in `policy` stays as it is. An id that `policy` does
/// not have, an unknown location or key, and any invalid value is a problem naming its key and
/// line; all of them are reported at once.
pub fn parse_channel_overrides(text: &str, policy: &Policy) -> Result<Policy, Vec<ConfigProblem>> {
    let ReadDocument {
        doc,
        lines,
        raw,
        problems,
    } = read_document::<ChannelsFile>(text)?;
    let mut check = Checker {
        doc: &doc,
        lines: &lines,
        problems,
    };
    if raw.channels.is_empty() {
        check.problem(
            "channels",
            "the policy file names no [[channels]]; give each channel to change in the config's format",
        );
    }
    for (i, c) in raw.channels.iter().enumerate() {
        if let Ok(id) = ChannelId::new(&c.id)
            && policy.channel(&id).is_none()
        {
            check.problem(
                format!("channels.{i}.id"),
                format!(
                    "channel {:?} is not configured in [[channels]] of the config; a policy file changes configured channels only",
                    c.id
                ),
            );
        }
    }
    let loc_index = location_index(&policy.locations);
    let channels = check.channels(&raw.channels, &loc_index);
    if !check.problems.is_empty() {
        return Err(check.problems);
    }
    let mut changed = policy.clone();
    for c in channels {
        let idx = policy.channel(&c.id).expect("checked above");
        // Same id at the same index: the policy's channel index stays true.
        changed.channels[idx.0 as usize] = c;
    }
    Ok(changed)
}

/// A TOML text read into `T`, with what is needed to name a key's line.
struct ReadDocument<T> {
    doc: toml_edit::Document<String>,
    lines: LineIndex,
    raw: T,
    /// A problem for every key `T` does not know.
    problems: Vec<ConfigProblem>,
}

/// Parses TOML text into `T`, with a problem for every key `T` does not know. Syntax and type
/// errors end the reading with the one problem.
fn read_document<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<ReadDocument<T>, Vec<ConfigProblem>> {
    let lines = LineIndex::new(text);
    let doc = toml_edit::Document::parse(text.to_string()).map_err(|e| {
        vec![ConfigProblem {
            key: "(syntax)".into(),
            line: e.span().map(|s| lines.line(s.start)),
            message: e.message().to_string(),
        }]
    })?;
    let mut unknown = Vec::new();
    let de = toml_edit::de::Deserializer::from(doc.clone());
    let raw: T = match serde_ignored::deserialize(de, |p| unknown.push(p.to_string())) {
        Ok(raw) => raw,
        Err(e) => {
            return Err(vec![ConfigProblem {
                key: "(value)".into(),
                line: e.span().map(|s| lines.line(s.start)),
                message: e.message().to_string(),
            }]);
        }
    };
    let problems = unknown
        .into_iter()
        .map(|key| ConfigProblem {
            line: key_line(&doc, &key, &lines),
            message: "unknown key (check the spelling; see examples/quickstart/crossdock.toml)"
                .into(),
            key,
        })
        .collect();
    Ok(ReadDocument {
        doc,
        lines,
        raw,
        problems,
    })
}

fn location_index(locations: &[LocationId]) -> HashMap<&str, usize> {
    locations
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect()
}

impl Checker<'_> {
    fn slos(&mut self, raw: &[SloEntry]) -> Vec<Slo> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let key = format!("slo.{i}");
            let before = self.problems.len();
            if s.name.trim().is_empty() || raw[..i].iter().any(|o| o.name == s.name) {
                self.problem(format!("{key}.name"), "must be a name no other [[slo]] has");
            }
            let flow = match s.flow.as_str() {
                "occurred_to_committed" => SloFlow::OccurredToCommitted,
                "committed_to_delivered" => SloFlow::CommittedToDelivered,
                "channel_visible" => SloFlow::ChannelVisible,
                other => {
                    self.problem(
                        format!("{key}.flow"),
                        format!(
                            "must be occurred_to_committed, committed_to_delivered or channel_visible, got {other:?}"
                        ),
                    );
                    continue;
                }
            };
            let threshold_s = s.threshold_ms as f64 / 1000.0;
            if s.threshold_ms == 0 {
                self.problem(format!("{key}.threshold_ms"), "must be at least 1");
            }
            if flow == SloFlow::CommittedToDelivered
                && !crossdock_delivery::LATENCY_BUCKETS_S.contains(&threshold_s)
            {
                self.problem(
                    format!("{key}.threshold_ms"),
                    format!(
                        "delivery latency is counted in buckets; use one of {:?} ms",
                        crossdock_delivery::LATENCY_BUCKETS_S
                            .iter()
                            .map(|b| (b * 1000.0) as u64)
                            .collect::<Vec<_>>()
                    ),
                );
            }
            if !(s.objective > 0.0 && s.objective < 1.0) {
                self.problem(
                    format!("{key}.objective"),
                    format!(
                        "must be between 0 and 1 (0.99 for 99%), got {}",
                        s.objective
                    ),
                );
            }
            if self.problems.len() == before {
                out.push(Slo {
                    name: s.name.clone(),
                    flow,
                    threshold_s,
                    objective: s.objective,
                });
            }
        }
        out
    }
}

struct Checker<'a> {
    doc: &'a toml_edit::Document<String>,
    lines: &'a LineIndex,
    problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let line = key_line(self.doc, &key, self.lines);
        self.problems.push(ConfigProblem {
            key,
            line,
            message: message.into(),
        });
    }

    /// Location names resolved against `[[locations]]`; each unknown one is a problem.
    fn loc_list(
        &mut self,
        loc_index: &HashMap<&str, usize>,
        key: String,
        names: &[String],
    ) -> Vec<crossdock_ledger::LocIdx> {
        let mut out = Vec::new();
        for (j, n) in names.iter().enumerate() {
            match loc_index.get(n.as_str()) {
                Some(&i) => out.push(crossdock_ledger::LocIdx(i as u16)),
                None => self.problem(
                    format!("{key}.{j}"),
                    format!("unknown location {n:?}; add it to [[locations]]"),
                ),
            }
        }
        out
    }

    /// `[[channels]]` checked into channel policies (the config's and a what-if policy file's).
    fn channels(
        &mut self,
        entries: &[ChannelEntry],
        loc_index: &HashMap<&str, usize>,
    ) -> Vec<ChannelPolicy> {
        let mut channels = Vec::new();
        let mut channel_ids = HashSet::new();
        for (i, c) in entries.iter().enumerate() {
            let key = format!("channels.{i}");
            let id = match ChannelId::new(&c.id) {
                Ok(id) => id,
                Err(e) => {
                    self.problem(format!("{key}.id"), e.to_string());
                    continue;
                }
            };
            if !channel_ids.insert(id.clone()) {
                self.problem(format!("{key}.id"), format!("channel {id} is listed twice"));
            }
            let locs = self.loc_list(loc_index, format!("{key}.locations"), &c.locations);
            if c.locations.is_empty() {
                self.problem(
                    format!("{key}.locations"),
                    "a channel needs at least one eligible location",
                );
            }
            let buffer = match &c.buffer {
                None => Buffer::Units(0),
                Some(BufferValue::Units(u)) if *u >= 0 => Buffer::Units(*u),
                Some(BufferValue::Units(u)) => {
                    self.problem(
                        format!("{key}.buffer"),
                        format!("must not be negative, got {u}"),
                    );
                    Buffer::Units(0)
                }
                Some(BufferValue::Text(t)) => match t
                    .strip_suffix('%')
                    .map(|n| n.trim().parse::<u8>())
                {
                    Some(Ok(p)) if p <= 100 => Buffer::Percent(p),
                    _ => {
                        self.problem(
                            format!("{key}.buffer"),
                            format!("must be units (10) or a whole percent (\"10%\"), got {t:?}"),
                        );
                        Buffer::Units(0)
                    }
                },
            };
            let share_pct = match c.share_pct {
                None => 100,
                Some(p @ 0..=100) => p as u8,
                Some(p) => {
                    self.problem(
                        format!("{key}.share_pct"),
                        format!("must be 0..=100, got {p}"),
                    );
                    100
                }
            };
            for (field, v) in [
                ("max", c.max),
                ("min_publish", c.min_publish),
                ("low_stock", c.low_stock),
            ] {
                if let Some(v) = v
                    && v < 0
                {
                    self.problem(
                        format!("{key}.{field}"),
                        format!("must not be negative, got {v}"),
                    );
                }
            }
            channels.push(ChannelPolicy {
                id,
                locations: locs,
                buffer,
                share_pct,
                max: c.max,
                min_publish: c.min_publish.unwrap_or(0),
                counts_soft_reservations: c.counts_soft_reservations.unwrap_or(true),
                incoming_horizon_s: c.incoming_horizon_s,
                low_stock: c.low_stock.unwrap_or(0),
            });
        }
        channels
    }

    fn build(&mut self, raw: RawConfig, base: &Path) -> Option<Config> {
        let mut locations = Vec::new();
        let mut seen = HashSet::new();
        for (i, l) in raw.locations.iter().enumerate() {
            match LocationId::new(&l.id) {
                Ok(id) if seen.insert(id.clone()) => locations.push(id),
                Ok(id) => self.problem(
                    format!("locations.{i}.id"),
                    format!("location {id} is listed twice"),
                ),
                Err(e) => self.problem(format!("locations.{i}.id"), e.to_string()),
            }
        }
        if locations.is_empty() {
            self.problem("locations", "at least one [[locations]] entry is needed");
        }
        let loc_index = location_index(&locations);
        let channels = self.channels(&raw.channels, &loc_index);

        let mut sources = HashMap::new();
        for (i, s) in raw.sources.iter().enumerate() {
            let key = format!("sources.{i}");
            let id = match SourceId::new(&s.id) {
                Ok(id) if id.as_str().starts_with("crossdock") => {
                    self.problem(
                        format!("{key}.id"),
                        "source names starting with \"crossdock\" are the hub's own",
                    );
                    continue;
                }
                Ok(id) => id,
                Err(e) => {
                    self.problem(format!("{key}.id"), e.to_string());
                    continue;
                }
            };
            let mut rules = Vec::new();
            for (j, o) in s.owns.iter().enumerate() {
                for (k, t) in o.types.iter().enumerate() {
                    let known = match t.strip_suffix('*') {
                        Some(prefix) => EventData::TYPES
                            .iter()
                            .any(|(n, public)| *public && n.starts_with(prefix)),
                        None => EventData::TYPES.iter().any(|(n, public)| *public && n == t),
                    };
                    if !known {
                        self.problem(
                            format!("{key}.owns.{j}.types.{k}"),
                            format!("{t:?} matches no event type"),
                        );
                    }
                }
                let locations = o
                    .locations
                    .as_ref()
                    .map(|ls| self.loc_list(&loc_index, format!("{key}.owns.{j}.locations"), ls));
                rules.push(OwnershipRule {
                    types: o.types.clone(),
                    locations,
                });
            }
            if sources
                .insert(
                    id.clone(),
                    SourcePolicy {
                        rules,
                        sequenced: s.sequenced,
                    },
                )
                .is_some()
            {
                self.problem(format!("{key}.id"), format!("source {id} is listed twice"));
            }
        }

        let time_bounds = crossdock_model::event::TimeBounds {
            future_skew_s: raw
                .engine
                .future_skew_s
                .unwrap_or(crossdock_model::event::TimeBounds::FUTURE_SKEW_S_DEFAULT),
            horizon_days: raw
                .engine
                .event_horizon_days
                .unwrap_or(crossdock_model::event::TimeBounds::HORIZON_DAYS_DEFAULT),
        };
        if time_bounds.future_skew_s > 7 * 86_400 {
            self.problem(
                "engine.future_skew_s",
                "must be at most 604800 (a week); a clock further off is a broken clock",
            );
        }
        if time_bounds.horizon_days == 0 {
            self.problem("engine.event_horizon_days", "must be at least 1");
        }
        let partitions = raw.engine.partitions.unwrap_or(1);
        let partitions_fixed = raw.engine.partitions.is_some();
        if !(1..=256).contains(&partitions) {
            self.problem("engine.partitions", "must be between 1 and 256");
        }

        let items = raw.master.items_file.as_ref().and_then(|f| {
            let path = base.join(f);
            match read_items(&path) {
                Ok(items) => Some(items),
                Err(e) => {
                    self.problem("master.items_file", format!("{}: {e}", path.display()));
                    None
                }
            }
        });

        let data_dir = raw
            .server
            .data_dir
            .clone()
            .map(|d| base.join(d))
            .unwrap_or_else(|| base.join("data"));
        let store = match raw.store.kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => StoreChoice::Sqlite(
                raw.store
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("crossdock.db")),
            ),
            "postgres" => {
                let url = match (&raw.store.url, &raw.store.url_env) {
                    (Some(u), None) => Some(u.clone()),
                    (None, Some(var)) => match std::env::var(var) {
                        Ok(u) => Some(u),
                        Err(_) => {
                            self.problem(
                                "store.url_env",
                                format!("environment variable {var} is not set"),
                            );
                            None
                        }
                    },
                    _ => {
                        self.problem("store", "postgres needs exactly one of url or url_env");
                        None
                    }
                };
                StoreChoice::Postgres {
                    url: url.unwrap_or_default(),
                    schema: raw.store.schema.clone(),
                }
            }
            other => {
                self.problem(
                    "store.kind",
                    format!("must be \"sqlite\" or \"postgres\", got {other:?}"),
                );
                StoreChoice::Sqlite(PathBuf::new())
            }
        };

        let mut tokens = Vec::new();
        for (i, t) in raw.tokens.iter().enumerate() {
            let key = format!("tokens.{i}");
            let secret = match (&t.secret_env, &t.secret_file) {
                (Some(var), None) => match std::env::var(var) {
                    Ok(s) if s.len() >= 16 => Some(s),
                    Ok(_) => {
                        self.problem(
                            format!("{key}.secret_env"),
                            format!("{var} must hold at least 16 characters"),
                        );
                        None
                    }
                    Err(_) => {
                        self.problem(
                            format!("{key}.secret_env"),
                            format!("environment variable {var} is not set"),
                        );
                        None
                    }
                },
                (None, Some(file)) => match std::fs::read_to_string(base.join(file)) {
                    Ok(s) if s.trim().len() >= 16 => Some(s.trim().to_string()),
                    Ok(_) => {
                        self.problem(
                            format!("{key}.secret_file"),
                            "the file must hold at least 16 characters",
                        );
                        None
                    }
                    Err(e) => {
                        self.problem(format!("{key}.secret_file"), format!("cannot read: {e}"));
                        None
                    }
                },
                _ => {
                    self.problem(key.clone(), "needs exactly one of secret_env or secret_file (secrets never sit in the config)");
                    None
                }
            };
            let mut scopes = Vec::new();
            for (j, s) in t.scopes.iter().enumerate() {
                let scope = match s.as_str() {
                    "query" => Some(Scope::Query),
                    "reserve" => Some(Scope::Reserve),
                    "admin" => Some(Scope::Admin),
                    other => other
                        .strip_prefix("ingest:")
                        .and_then(|src| SourceId::new(src).ok())
                        .map(Scope::Ingest),
                };
                match scope {
                    Some(Scope::Ingest(src)) if !sources.contains_key(&src) => self.problem(
                        format!("{key}.scopes.{j}"),
                        format!("source {src} is not configured in [[sources]]"),
                    ),
                    Some(scope) => scopes.push(scope),
                    None => self.problem(
                        format!("{key}.scopes.{j}"),
                        format!(
                            "unknown scope {s:?}; use ingest:<source>, query, reserve or admin"
                        ),
                    ),
                }
            }
            if let Some(secret) = secret {
                tokens.push(Token {
                    name: t.name.clone(),
                    secret,
                    scopes,
                });
            }
        }

        let mut endpoints: Vec<crate::endpoints::EndpointSpec> = Vec::new();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let key = format!("endpoints.{i}");
            if let Some(channel) = &e.channel
                && !raw.channels.iter().any(|c| &c.id == channel)
            {
                self.problem(
                    format!("{key}.channel"),
                    format!("channel {channel:?} is not configured in [[channels]]"),
                );
                continue;
            }
            let id = e.channel.as_ref().or(e.name.as_ref());
            if let Some(id) = id
                && endpoints.iter().any(|x| x.id() == id)
            {
                self.problem(
                    format!("{key}.channel"),
                    format!("{id:?} already has an endpoint (channels and feed names share one namespace)"),
                );
                continue;
            }
            match crate::endpoints::build(e, base) {
                Ok(spec) => endpoints.push(spec),
                Err(problems) => {
                    for (k, message) in problems {
                        self.problem(format!("{key}.{k}"), message);
                    }
                }
            }
        }

        let mut partners: Vec<crossdock_edi::PartnerSpec> = Vec::new();
        let known = crossdock_edi::partner::Known {
            sources: &|s| raw.sources.iter().any(|x| x.id == s),
            locations: &|l| raw.locations.iter().any(|x| x.id == l),
            channels: &|c| raw.channels.iter().any(|x| x.id == c),
        };
        let mut partner_ids = HashSet::new();
        for (i, p) in raw.partners.iter().enumerate() {
            let key = format!("partners.{i}");
            if !partner_ids.insert(p.id.as_str()) {
                self.problem(
                    format!("{key}.id"),
                    format!("partner {:?} is listed twice", p.id),
                );
                continue;
            }
            if let Some(c) = &p.channel
                && endpoints.iter().any(|e| e.id() == c)
            {
                self.problem(
                    format!("{key}.channel"),
                    format!("channel {c:?} already has an endpoint; an EDI partner publishes its own channel"),
                );
            }
            if let Some(c) = &p.channel
                && raw.partners[..i]
                    .iter()
                    .any(|x| x.channel.as_ref() == Some(c))
            {
                self.problem(
                    format!("{key}.channel"),
                    format!("channel {c:?} already belongs to another partner"),
                );
            }
            match p.check(base, &data_dir, &known) {
                Ok(spec) => partners.push(spec),
                Err(problems) => {
                    for (k, message) in problems {
                        self.problem(format!("{key}.{k}"), message);
                    }
                }
            }
        }

        let exceptions =
            crate::exception_policy::check(&raw.exceptions).unwrap_or_else(|problems| {
                for (k, message) in problems {
                    self.problem(format!("exceptions.{k}"), message);
                }
                Default::default()
            });

        let reader_channels: Vec<String> = endpoints
            .iter()
            .filter(|e| e.reader.is_some())
            .map(|e| e.id().to_string())
            .collect();
        let x12_partners: Vec<String> = partners
            .iter()
            .filter(|p| p.isa.is_some())
            .map(|p| p.id.clone())
            .collect();
        let slos = self.slos(&raw.slo);
        let channel_locations: Vec<(ChannelId, Vec<LocationId>)> = channels
            .iter()
            .map(|c| {
                let locs = c
                    .locations
                    .iter()
                    .map(|l| locations[l.0 as usize].clone())
                    .collect();
                (c.id.clone(), locs)
            })
            .collect();
        let telemetry = self.telemetry(
            &raw.telemetry,
            &telemetry::Known {
                readable: &reader_channels,
                locations: &locations,
                channel_locations: &channel_locations,
            },
        );
        if let Some(items) = &items {
            for (i, c) in telemetry.canaries.iter().enumerate() {
                if !items.contains(&c.item) {
                    self.problem(
                        format!("telemetry.canaries.{i}.item"),
                        format!("item {} is not in the item master", c.item),
                    );
                }
            }
        }
        let reconciliation = self.reconciliation(
            &raw.reconciliation,
            base,
            &reconciliation::Known {
                locations: &loc_index,
                channels: &reader_channels,
                partners: &x12_partners,
            },
        );
        let body_max_bytes = raw.server.body_max_bytes.unwrap_or(BODY_MAX_DEFAULT);
        let mut limits = vec![("server.body_max_bytes", body_max_bytes)];
        if let Some(n) = raw.reconciliation.snapshot_max_bytes {
            limits.push(("reconciliation.snapshot_max_bytes", n));
        }
        let lines_max = raw
            .server
            .batch_lines_max
            .unwrap_or(BATCH_LINES_MAX_DEFAULT);
        let http = self.http_limits(&raw.server, &limits, (body_max_bytes, lines_max));
        // A snapshot left at its default takes at most the whole budget.
        let mut reconciliation = reconciliation;
        if raw.reconciliation.snapshot_max_bytes.is_none() {
            reconciliation.snapshot_max_bytes = reconciliation
                .snapshot_max_bytes
                .min(http.body_budget_bytes);
        }

        if !self.problems.is_empty() {
            return None;
        }
        let master_locations = raw
            .locations
            .iter()
            .filter_map(|l| {
                Some(crossdock_master::Location {
                    id: crossdock_model::LocationId::new(&l.id).ok()?,
                    name: l.name.clone(),
                })
            })
            .collect();
        let channel_ids: Vec<ChannelId> = channels.iter().map(|c| c.id.clone()).collect();
        let regions = workflows::regions_of(
            &locations
                .iter()
                .zip(&raw.locations)
                .map(|(l, e)| (l.clone(), e.regions.clone()))
                .collect::<Vec<_>>(),
        );
        let endpoint_names: Vec<String> = endpoints.iter().map(|e| e.id().to_string()).collect();
        let partner_ids: Vec<String> = partners
            .iter()
            .filter(|p| p.isa.is_some())
            .map(|p| p.id.clone())
            .collect();
        let (workflow_policy, workflow_settings) = self.workflows(
            &raw.workflows,
            &workflows::Known {
                locations: &loc_index,
                channels: &channel_ids,
                endpoints: &endpoint_names,
                partners: &partner_ids,
            },
            regions,
        );
        let mut policy = Policy::new(items, locations, channels, sources);
        policy.workflow = workflow_policy;
        policy.time_bounds = time_bounds;
        if let Some(w) = raw.resequencer.gap_wait_s {
            policy.gap_wait_s = w;
        }
        if let Some(h) = raw.resequencer.held_max {
            policy.held_max = h.max(1);
        }
        policy.resolves_oversell_records = exceptions.ledger_resolves_oversell();
        Some(Config {
            listen: raw.server.listen.unwrap_or_else(|| LISTEN_DEFAULT.into()),
            data_dir,
            body_max_bytes,
            batch_lines_max: raw
                .server
                .batch_lines_max
                .unwrap_or(BATCH_LINES_MAX_DEFAULT),
            http,
            partitions: if partitions_fixed {
                partitions
            } else {
                default_partitions()
            },
            partitions_fixed,
            queue_max: raw.engine.queue_max.unwrap_or(100_000).max(1),
            batch_max: raw.engine.batch_max.unwrap_or(10_000).max(1),
            store,
            policy,
            tokens,
            endpoints,
            partners,
            items_file: raw.master.items_file.as_ref().map(|f| base.join(f)),
            locations: master_locations,
            workflows: workflow_settings,
            exceptions,
            reconciliation,
            slos,
            telemetry,
        })
    }
}

/// The item ids of an items CSV (see `crossdock_master::load`).
pub fn read_items(path: &Path) -> Result<HashSet<ItemId>, String> {
    crossdock_master::load::items_from_path(path)
        .map(|items| items.into_iter().map(|i| i.id).collect())
        .map_err(|e| e.to_string())
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Line of a dotted key path (`channels.1.buffer`), or of its nearest existing parent.
fn key_line(doc: &toml_edit::Document<String>, path: &str, lines: &LineIndex) -> Option<usize> {
    enum Node<'a> {
        Table(&'a dyn toml_edit::TableLike),
        Tables(&'a toml_edit::ArrayOfTables),
        Array(&'a toml_edit::Array),
        Leaf,
    }
    fn node_of(item: &toml_edit::Item) -> Node<'_> {
        match item {
            toml_edit::Item::Table(t) => Node::Table(t),
            toml_edit::Item::ArrayOfTables(a) => Node::Tables(a),
            toml_edit::Item::Value(v) => value_node(v),
            toml_edit::Item::None => Node::Leaf,
        }
    }
    fn value_node(v: &toml_edit::Value) -> Node<'_> {
        match v {
            toml_edit::Value::InlineTable(t) => Node::Table(t),
            toml_edit::Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
    let mut node = Node::Table(doc.as_table());
    let mut span = None;
    for seg in path.split('.') {
        let index = seg.parse::<usize>().ok();
        node = match node {
            Node::Table(t) => {
                if let Some(k) = t.key(seg) {
                    span = k.span().or(span);
                }
                match t.get(seg) {
                    Some(item) => node_of(item),
                    None => break,
                }
            }
            Node::Tables(a) => match index.and_then(|i| a.get(i)) {
                Some(t) => {
                    span = t.span().or(span);
                    Node::Table(t)
                }
                None => break,
            },
            Node::Array(a) => match index.and_then(|i| a.get(i)) {
                Some(v) => {
                    span = v.span().or(span);
                    value_node(v)
                }
                None => break,
            },
            Node::Leaf => break,
        };
    }
    span.map(|s| lines.line(s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[locations]]
id = "DC-EAST"

[[locations]]
id = "DC-WEST"

[[channels]]
id = "shopify"
locations = ["DC-EAST", "DC-WEST"]

[[channels]]
id = "b2b"
locations = ["DC-EAST"]
buffer = "10%"

[[sources]]
id = "wms-east"
[[sources.owns]]
types = ["inventory.*"]
locations = ["DC-EAST"]
"#;

    #[test]
    fn a_good_config_builds_a_policy() {
        let c = parse(OK, Path::new(".")).unwrap();
        assert_eq!(c.policy.locations.len(), 2);
        assert_eq!(c.policy.channels[1].buffer, Buffer::Percent(10));
        assert_eq!(c.partitions, default_partitions());
        assert!(!c.partitions_fixed, "a default, not a demand");
        let c = parse(&format!("{OK}\n[engine]\npartitions = 3\n"), Path::new(".")).unwrap();
        assert_eq!((c.partitions, c.partitions_fixed), (3, true));
    }

    #[test]
    fn endpoint_problems_are_named_by_key() {
        let bad = format!(
            "{OK}{}",
            r#"
[[endpoints]]
channel = "nowhere"
kind = "webhook"

[[endpoints]]
channel = "shopify"
kind = "carrier-pigeon"

[[endpoints]]
channel = "b2b"
kind = "shopify"
secrets_env = { access_token = "CROSSDOCK_TEST_UNSET_VAR", pin = "X" }
rate = { kind = "token", rate = 0 }

[[endpoints]]
name = "feed"
kind = "shopify"
events = ["inventory.*", "nonsense.*"]
"#
        );
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has =
            |key: &str, words: &str| text.iter().any(|t| t.contains(key) && t.contains(words));
        assert!(has("endpoints.0.channel", "not configured"), "{text:#?}");
        assert!(has("endpoints.1.kind", "carrier-pigeon"), "{text:#?}");
        assert!(
            has("endpoints.2.secrets_env.pin", "takes no secret"),
            "{text:#?}"
        );
        assert!(
            has(
                "endpoints.2.secrets_env.access_token",
                "CROSSDOCK_TEST_UNSET_VAR is not set"
            ),
            "{text:#?}"
        );
        assert!(has("endpoints.2.rate", "positive"), "{text:#?}");
        assert!(
            has("endpoints.3.events.1", "matches no event type"),
            "{text:#?}"
        );
        assert!(has("endpoints.3.kind", "webhook"), "{text:#?}");
        assert!(problems.iter().all(|p| p.line.is_some()), "{text:#?}");
    }

    #[test]
    fn reconciliation_problems_are_named_by_key() {
        let bad = format!(
            "{OK}{}",
            r#"
[[reconciliation.sources]]
name = "erp"
kind = "csv"
locations = ["MOON"]
interval_s = 0
tolerance_percent = 150
[reconciliation.sources.actions]
status_variance = "auto_correct"
quantity_variance = "fix_it"
surprise = "report"

[[reconciliation.sources]]
name = "erp"
kind = "channel"
channel = "nowhere"

[[reconciliation.sources]]
name = "edi"
kind = "x12_846"

[[reconciliation.sources]]
name = "odd"
kind = "carrier-pigeon"
"#
        );
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has =
            |key: &str, words: &str| text.iter().any(|t| t.contains(key) && t.contains(words));
        let s = "reconciliation.sources";
        assert!(has(&format!("{s}.0.locations.0"), "MOON"), "{text:#?}");
        assert!(has(&format!("{s}.0.interval_s"), "at least"), "{text:#?}");
        assert!(
            has(&format!("{s}.0.tolerance_percent"), "0..=100"),
            "{text:#?}"
        );
        assert!(
            has(
                &format!("{s}.0.actions.status_variance"),
                "cannot auto-correct"
            ),
            "{text:#?}"
        );
        assert!(
            has(&format!("{s}.0.actions.quantity_variance"), "fix_it"),
            "{text:#?}"
        );
        assert!(
            has(&format!("{s}.0.actions.surprise"), "not a variance class"),
            "{text:#?}"
        );
        assert!(has(&format!("{s}.1.name"), "twice"), "{text:#?}");
        assert!(has(&format!("{s}.1.channel"), "nowhere"), "{text:#?}");
        assert!(
            has(&format!("{s}.2.partner"), "names its partner"),
            "{text:#?}"
        );
        assert!(has(&format!("{s}.3.kind"), "carrier-pigeon"), "{text:#?}");
        assert!(problems.iter().all(|p| p.line.is_some()), "{text:#?}");
    }

    #[test]
    fn slo_problems_are_named_by_key() {
        let bad = format!(
            "{OK}{}",
            r#"
[[slo]]
name = "fast"
flow = "committed_to_delivered"
threshold_ms = 4000
objective = 1.5

[[slo]]
name = "fast"
flow = "teleport"
threshold_ms = 10
objective = 0.9
"#
        );
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has =
            |key: &str, words: &str| text.iter().any(|t| t.contains(key) && t.contains(words));
        assert!(has("slo.0.threshold_ms", "5000"), "{text:#?}");
        assert!(has("slo.0.objective", "between 0 and 1"), "{text:#?}");
        assert!(has("slo.1.name", "no other"), "{text:#?}");
        assert!(has("slo.1.flow", "teleport"), "{text:#?}");
        let good = format!(
            "{OK}{}",
            "[[slo]]\nname = \"visible\"\nflow = \"committed_to_delivered\"\nthreshold_ms = 5000\nobjective = 0.99\n"
        );
        let c = parse(&good, Path::new(".")).unwrap();
        assert_eq!(c.slos[0].threshold_s, 5.0);
    }

    #[test]
    fn partner_problems_are_named_by_key() {
        let bad = format!(
            "{OK}{}",
            r#"
[[partners]]
id = "acme"
source = "nobody"
isa_id = "WAY-TOO-LONG-FOR-AN-ISA-ID"
location = "MOON"
channel = "shopify"
version = "003050"
qty_846 = { "17" = "counted", "33" = "guessed" }
status_947 = { "07" = "broken" }

[[partners]]
id = "acme"
source = "wms-east"
"#
        );
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has =
            |key: &str, words: &str| text.iter().any(|t| t.contains(key) && t.contains(words));
        assert!(
            has("partners.0.source", "not a [[sources]] id"),
            "{text:#?}"
        );
        assert!(has("partners.0.isa_id", "1 to 15"), "{text:#?}");
        assert!(has("partners.0.location", "MOON"), "{text:#?}");
        assert!(has("partners.0.version", "004010 or 005010"), "{text:#?}");
        assert!(has("partners.0.qty_846.33", "guessed"), "{text:#?}");
        assert!(has("partners.0.status_947.07", "broken"), "{text:#?}");
        assert!(has("partners.1.id", "listed twice"), "{text:#?}");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let bad = OK
            .replace("buffer = \"10%\"", "bufer = 3\nbuffer = \"ten\"")
            .replace(
                "locations = [\"DC-EAST\", \"DC-WEST\"]",
                "locations = [\"DC-EAST\", \"DC-NORTH\"]",
            );
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.contains("channels.1.bufer") && t.contains("unknown key")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("channels.1.buffer") && t.contains("whole percent")),
            "{text:#?}"
        );
        assert!(text.iter().any(|t| t.contains("DC-NORTH")), "{text:#?}");
        let north = problems
            .iter()
            .find(|p| p.message.contains("DC-NORTH"))
            .unwrap();
        assert_eq!(north.line, Some(10), "{north}");
        let bufer = problems.iter().find(|p| p.key.ends_with("bufer")).unwrap();
        assert_eq!(bufer.line, Some(15), "{bufer}");
    }

    #[test]
    fn a_policy_file_replaces_the_channels_it_names() {
        let base = parse(OK, Path::new(".")).unwrap().policy;
        let file = "[[channels]]\nid = \"b2b\"\nlocations = [\"DC-EAST\", \"DC-WEST\"]\nbuffer = 4\ncounts_soft_reservations = false\nincoming_horizon_s = 86400\n";
        let changed = parse_channel_overrides(file, &base).unwrap();
        assert_eq!(
            changed.channels[0], base.channels[0],
            "shopify is not named"
        );
        let b2b = &changed.channels[1];
        assert_eq!(b2b.buffer, Buffer::Units(4));
        assert_eq!(b2b.locations.len(), 2);
        assert!(!b2b.counts_soft_reservations);
        assert_eq!(b2b.incoming_horizon_s, Some(86_400));
        assert_eq!(b2b.share_pct, 100, "defaults as in the config");
        assert_eq!(
            changed.channel(&ChannelId::new("b2b").unwrap()),
            base.channel(&ChannelId::new("b2b").unwrap())
        );
        assert_eq!(changed.locations, base.locations);
        assert_eq!(changed.sources, base.sources);
    }

    #[test]
    fn a_policy_file_with_problems_names_each_key_and_line() {
        let base = parse(OK, Path::new(".")).unwrap().policy;
        let file = r#"
[[channels]]
id = "amazon"
locations = ["DC-EAST"]

[[channels]]
id = "shopify"
locations = ["DC-MOON"]
share_pct = 150
bufer = 2

[server]
listen = "0.0.0.0:1"
"#;
        let problems = parse_channel_overrides(file, &base).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for expected in [
            "line 3: channels.0.id: channel \"amazon\" is not configured",
            "line 8: channels.1.locations.0: unknown location \"DC-MOON\"",
            "line 9: channels.1.share_pct: must be 0..=100",
            "line 10: channels.1.bufer: unknown key",
            "line 12: server: unknown key",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "{expected:?} in {text:#?}"
            );
        }
        assert_eq!(problems.len(), 5, "{text:#?}");
        let p = parse_channel_overrides("", &base).unwrap_err();
        assert!(p[0].message.contains("names no [[channels]]"), "{p:?}");
        let p = parse_channel_overrides("[[channels]]\nid = \"b2b\"\n", &base).unwrap_err();
        assert!(p[0].message.contains("locations"), "{p:?}");
    }

    #[test]
    fn syntax_and_type_errors_name_the_line() {
        let p = parse("[[locations]\nid = 1", Path::new(".")).unwrap_err();
        assert_eq!(p[0].line, Some(1), "{:?}", p);
        let p = parse("[engine]\npartitions = \"two\"", Path::new(".")).unwrap_err();
        assert_eq!(p[0].line, Some(2), "{:?}", p);
    }
}
