//! Reconciliation runs: read a source's snapshot (a CSV, an 846, or a channel's published
//! quantities), compare it with the ledger as of the snapshot's time, act on each variance by
//! the source's policy, and keep the run with its counts and variance rows.
//!
//! The ledger side is the committed state with the journal of every input whose event time is
//! after the snapshot's time backed out, so work in flight is never reported as drift. Only the
//! journal committed since `as_of - clock_skew_s` is read: an input is never committed more
//! than the skew before the time it says it happened.
//!
//! Corrections are `inventory.counted` events from [`RECONCILER_SOURCE`], timed at the
//! snapshot's `as_of` (the event-time rule re-adds what happened since), with ids derived from
//! the snapshot's digest: reconciling the same snapshot twice corrects once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossdock_adapters::StockReader;
use crossdock_delivery::Delivery;
use crossdock_engine::{Engine, EngineError, EventReply, partition_of};
use crossdock_ledger::policy::RECONCILER_SOURCE;
use crossdock_model::event::{Counted, EventData};
use crossdock_model::{
    ChannelId, Event, ExceptionKind, ExceptionRecord, ItemId, LocationId, Lot, SourceId, Timestamp,
};
use crossdock_recon::channel::{self, Verdict};
use crossdock_recon::snapshot::{self, SnapshotError};
use crossdock_recon::{Class, Comparison, Report, SnapshotRow, Variance};
use crossdock_store::{OutboxKind, OutboxRow, RunRow, VarianceRow};
use serde_json::{Value, json};

use crate::config::reconciliation::{Action, ReconSettings, ReconSource, SourceKind};
use crate::edi::Partners;

/// Variance rows returned in a run's answer; the rest are paged from the store.
pub const ANSWER_VARIANCES_MAX: usize = 100;

/// What a run compares.
#[derive(Debug, Clone)]
pub enum Input {
    /// A snapshot given with the request (CSV, or X12 846 for an `x12_846` source), taken at
    /// `as_of` (the file's own `as_of` column or 846 date, else now).
    Given {
        bytes: axum::body::Bytes,
        as_of: Option<Timestamp>,
        name: String,
    },
    /// What the source has now: its configured file, the partner's latest 846 snapshot, or a
    /// pull from the channel.
    Latest,
}

#[derive(Debug)]
pub enum RunError {
    UnknownSource(String),
    /// A run of the source is already going.
    Busy(String),
    /// The snapshot cannot be read; nothing was compared. The input is kept with the exception.
    BadInput {
        errors: Vec<SnapshotError>,
        exception_id: String,
    },
    /// Nothing to compare: the request sent no snapshot and the source has none (a CSV source
    /// without a file, a partner that has sent no 846 yet).
    NoSnapshot(String),
    /// The source or the hub cannot answer now (a channel read failed, the store).
    Unavailable(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::UnknownSource(s) => write!(f, "no reconciliation source is named {s:?}"),
            RunError::Busy(s) => write!(f, "a reconciliation of {s} is already running"),
            RunError::BadInput { errors, .. } => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "the snapshot cannot be read: {}", list.join("; "))
            }
            RunError::NoSnapshot(why) | RunError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl From<EngineError> for RunError {
    fn from(e: EngineError) -> Self {
        RunError::Unavailable(e.to_string())
    }
}

/// A finished run: what is stored, and the first variance rows.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: RunRow,
    pub variances: Vec<VarianceRow>,
    pub total_variances: usize,
}

impl RunOutcome {
    pub fn to_json(&self) -> Value {
        let mut v = run_json(&self.run);
        v["variance_rows"] = json!(self.total_variances);
        v["variances"] = Value::Array(self.variances.iter().map(variance_json).collect());
        v
    }
}

pub fn run_json(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "kind": r.kind,
        "started_by": r.started_by,
        "as_of": Timestamp::from_micros(r.as_of_us).to_rfc3339(),
        "started_at": Timestamp::from_micros(r.started_at_us).to_rfc3339(),
        "finished_at": Timestamp::from_micros(r.finished_at_us).to_rfc3339(),
        "status": r.status,
        "rows": r.rows,
        "counts": serde_json::from_str::<Value>(&r.counts).unwrap_or(Value::Null),
        "digest": r.digest,
        "error": (!r.error.is_empty()).then_some(&r.error),
    })
}

pub fn variance_json(v: &VarianceRow) -> Value {
    json!({
        "n": v.n,
        "item": v.item,
        "location": v.location,
        "lot": (!v.lot.is_empty()).then_some(&v.lot),
        "class": v.class,
        "source_qty": v.source_qty,
        "ledger_qty": v.ledger_qty,
        "delta": v.delta,
        "detail": v.detail,
        "action": v.action,
        "reference": (!v.reference.is_empty()).then_some(&v.reference),
    })
}

pub struct Reconciler {
    engine: Arc<Engine>,
    delivery: Arc<Delivery>,
    partners: Arc<Partners>,
    readers: HashMap<String, Arc<dyn StockReader>>,
    settings: ReconSettings,
    data_dir: PathBuf,
    running: Mutex<HashSet<String>>,
}

/// Releases a source's "running" mark however the run ends.
struct Running<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("running lock").remove(&self.1);
    }
}

/// A snapshot read into a comparison, ready for the ledger side.
struct Taken {
    cmp: Comparison,
    as_of: Timestamp,
    digest: u64,
}

impl Reconciler {
    pub fn new(
        engine: Arc<Engine>,
        delivery: Arc<Delivery>,
        partners: Arc<Partners>,
        readers: HashMap<String, Arc<dyn StockReader>>,
        settings: ReconSettings,
        data_dir: PathBuf,
    ) -> Reconciler {
        Reconciler {
            engine,
            delivery,
            partners,
            readers,
            settings,
            data_dir,
            running: Mutex::new(HashSet::new()),
        }
    }

    pub fn settings(&self) -> &ReconSettings {
        &self.settings
    }

    /// Runs one reconciliation of `source`.
    pub async fn run(
        &self,
        source: &str,
        input: Input,
        started_by: &str,
    ) -> Result<RunOutcome, RunError> {
        let spec = self
            .settings
            .source(source)
            .ok_or_else(|| RunError::UnknownSource(source.to_string()))?
            .clone();
        if !self
            .running
            .lock()
            .expect("running lock")
            .insert(spec.name.clone())
        {
            return Err(RunError::Busy(spec.name.clone()));
        }
        let _running = Running(&self.running, spec.name.clone());
        let started = Timestamp::now();
        match &spec.kind {
            SourceKind::Channel { endpoint } => {
                self.run_channel(&spec, endpoint, started, started_by).await
            }
            _ => {
                let clock = std::time::Instant::now();
                let taken = self.take(&spec, input, started).await?;
                tracing::debug!(source = %spec.name, rows = taken.cmp.rows(), ms = clock.elapsed().as_millis() as u64, "snapshot read");
                self.run_stock(&spec, taken, started, started_by).await
            }
        }
    }

    /// Reads the snapshot of a stock source.
    async fn take(
        &self,
        spec: &ReconSource,
        input: Input,
        now: Timestamp,
    ) -> Result<Taken, RunError> {
        let (bytes, given_as_of, name) = match input {
            Input::Given { bytes, as_of, name } => (bytes, as_of, name),
            Input::Latest => {
                let (path, modified) = self.latest_file(spec)?;
                let bytes = std::fs::read(&path).map_err(|e| {
                    RunError::Unavailable(format!("cannot read {}: {e}", path.display()))
                })?;
                let bytes = axum::body::Bytes::from(bytes);
                (bytes, Some(modified), path.display().to_string())
            }
        };
        let digest = xxhash_rust::xxh3::xxh3_64(&bytes);
        let is_x12 = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'I');
        // One row per line (an 846 has fewer).
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        let mut cmp = Comparison::with_capacity(lines + 1);
        for l in &spec.locations {
            cmp.cover(l.clone());
        }
        let parsed = match (&spec.kind, is_x12) {
            (SourceKind::X12_846 { partner }, true) => self
                .read_846(spec, partner, &bytes, &name)
                .await
                .map(|(rows, as_of)| {
                    rows.into_iter().for_each(|r| cmp.add_source(r));
                    as_of
                }),
            _ => snapshot::parse_csv_into(&bytes, |r| cmp.add_source(r)),
        };
        // A snapshot from the future would back nothing out and correct with counts the ledger
        // refuses; one from before the horizon is no picture of the stock. Refused whole.
        let bounds = self.engine.policy().time_bounds;
        let parsed = parsed.and_then(|file_as_of| {
            let as_of = file_as_of.or(given_as_of).unwrap_or(now);
            bounds.check("as_of", as_of, now).map_err(|e| {
                vec![SnapshotError {
                    line: None,
                    column: Some("as_of".into()),
                    message: e.to_string(),
                }]
            })?;
            Ok(as_of)
        });
        match parsed {
            Ok(as_of) => Ok(Taken { cmp, as_of, digest }),
            Err(errors) => {
                let exception_id = self.refuse(spec, &bytes, &name, &errors, now).await?;
                Err(RunError::BadInput {
                    errors,
                    exception_id,
                })
            }
        }
    }

    async fn read_846(
        &self,
        spec: &ReconSource,
        partner: &str,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Vec<SnapshotRow>, Option<Timestamp>), Vec<SnapshotError>> {
        let whole = |message: String| {
            vec![SnapshotError {
                line: None,
                column: None,
                message,
            }]
        };
        let (rows, exceptions) = self
            .partners
            .snapshot_846(
                partner,
                bytes,
                &format!("reconciliation/{}/{name}", spec.name),
            )
            .map_err(whole)?;
        if !exceptions.is_empty() {
            // Lines that do not map cannot be compared; the snapshot is refused whole (a partial
            // snapshot would report false drift), each line's problem kept as its own record.
            let reasons: Vec<String> = exceptions.iter().map(|e| e.reason.clone()).collect();
            for record in exceptions {
                if let Err(e) = self.engine.record_exception(record).await {
                    tracing::error!(error = %e, "cannot record an 846 line's exception");
                }
            }
            return Err(reasons
                .into_iter()
                .map(|message| SnapshotError {
                    line: None,
                    column: None,
                    message,
                })
                .collect());
        }
        let as_of = rows.iter().map(|r| r.as_of).max();
        Ok((
            rows.into_iter()
                .map(|r| SnapshotRow {
                    item: r.item,
                    location: r.location,
                    qty: r.qty,
                    status: None,
                    lot: None,
                })
                .collect(),
            as_of,
        ))
    }

    /// The newest snapshot file of a source: the configured CSV, or the partner's latest kept
    /// 846 snapshot.
    fn latest_file(&self, spec: &ReconSource) -> Result<(PathBuf, Timestamp), RunError> {
        let modified = |p: &Path| -> Result<Timestamp, RunError> {
            let m = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .map_err(|e| RunError::Unavailable(format!("cannot read {}: {e}", p.display())))?;
            Ok(Timestamp::from_micros(
                m.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            ))
        };
        match &spec.kind {
            SourceKind::Csv { file: Some(file) } => Ok((file.clone(), modified(file)?)),
            SourceKind::Csv { file: None } => Err(RunError::NoSnapshot(format!(
                "source {} has no file; send the snapshot with the request",
                spec.name
            ))),
            SourceKind::X12_846 { partner } => {
                let dir = self.data_dir.join("snapshots").join(partner);
                let newest = std::fs::read_dir(&dir)
                    .map_err(|e| {
                        RunError::NoSnapshot(format!(
                            "no 846 snapshot from {partner} yet ({}: {e})",
                            dir.display()
                        ))
                    })?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                    .filter_map(|p| Some((modified(&p).ok()?, p)))
                    .max();
                let (at, path) = newest.ok_or_else(|| {
                    RunError::NoSnapshot(format!("no 846 snapshot from {partner} yet"))
                })?;
                Ok((path, at))
            }
            SourceKind::Channel { .. } => unreachable!("channels are pulled"),
        }
    }

    /// Keeps a snapshot that cannot be read and opens a `schema_violation` record about it.
    async fn refuse(
        &self,
        spec: &ReconSource,
        bytes: &[u8],
        name: &str,
        errors: &[SnapshotError],
        now: Timestamp,
    ) -> Result<String, RunError> {
        let dir = self
            .data_dir
            .join("reconciliation")
            .join("rejected")
            .join(&spec.name);
        let file = format!(
            "{}-{:016x}.snapshot",
            now.as_micros(),
            xxhash_rust::xxh3::xxh3_64(bytes)
        );
        crossdock_edi::files::write_atomic(&dir, &file, bytes)
            .map_err(|e| RunError::Unavailable(format!("cannot keep the refused snapshot: {e}")))?;
        let list: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
        let record = ExceptionRecord::open(
            ExceptionKind::SchemaViolation,
            &format!("recon-input\0{}\0{file}", spec.name),
            format!("reconciliation:{}/{file}", spec.name),
            None,
            format!(
                "snapshot {name:?} for reconciliation source {} cannot be read ({} problem(s)): {}; \
                 kept as {}",
                spec.name,
                errors.len(),
                list.join("; "),
                dir.join(&file).display()
            ),
            (bytes.len() <= 256 * 1024).then(|| String::from_utf8_lossy(bytes).into_owned()),
            now,
        );
        let id = record.id.clone();
        self.engine.record_exception(record).await?;
        Ok(id)
    }

    async fn run_stock(
        &self,
        spec: &ReconSource,
        taken: Taken,
        started: Timestamp,
        started_by: &str,
    ) -> Result<RunOutcome, RunError> {
        let Taken {
            mut cmp,
            as_of,
            digest,
        } = taken;
        let rows = cmp.rows();
        let clock = std::time::Instant::now();
        self.add_ledger_as_of(&mut cmp, as_of).await?;
        tracing::debug!(ms = clock.elapsed().as_millis() as u64, "ledger side added");
        let clock = std::time::Instant::now();
        let report = cmp.finish(spec.tolerance, as_of, started, spec.stale_after_s);
        tracing::debug!(ms = clock.elapsed().as_millis() as u64, "compared");
        let run_id = run_id(&spec.name, started, digest);
        let digest = format!("{digest:016x}");
        let variances = self
            .act_on_stock(spec, &run_id, &digest, as_of, &report)
            .await;
        let run = RunRow {
            id: run_id,
            source: spec.name.clone(),
            kind: spec.kind.name().to_string(),
            started_by: started_by.to_string(),
            as_of_us: as_of.as_micros(),
            started_at_us: started.as_micros(),
            finished_at_us: Timestamp::now().as_micros(),
            status: "done".into(),
            rows: rows as u64,
            counts: counts_json(&report.counts),
            digest,
            error: String::new(),
        };
        self.save(run, variances).await
    }

    async fn save(&self, run: RunRow, variances: Vec<VarianceRow>) -> Result<RunOutcome, RunError> {
        let total = variances.len();
        let first: Vec<VarianceRow> = variances
            .iter()
            .take(ANSWER_VARIANCES_MAX)
            .cloned()
            .collect();
        let stored = run.clone();
        self.engine
            .read(move |s| s.save_run(&stored, &variances))
            .await?;
        tracing::info!(run = %run.id, source = %run.source, counts = %run.counts, "reconciliation finished");
        Ok(RunOutcome {
            run,
            variances: first,
            total_variances: total,
        })
    }

    /// Adds the ledger's positions as of `as_of` to `cmp`: the committed positions with the
    /// journal of inputs that happened after `as_of` backed out.
    async fn add_ledger_as_of(
        &self,
        cmp: &mut Comparison,
        as_of: Timestamp,
    ) -> Result<(), RunError> {
        let policy = self.engine.policy().clone();
        let since = as_of.as_micros() - (self.settings.clock_skew_s as i64) * 1_000_000;
        let parts = self.engine.committed_items();
        cmp.reserve_ledger(
            parts
                .iter()
                .flat_map(|p| &p.items)
                .map(|(_, s)| s.positions.len())
                .sum(),
        );
        for part in parts {
            let (p, seq) = (part.partition, part.seq);
            let changes = self
                .engine
                .read(move |s| s.changes_since(p, since, as_of.as_micros(), seq))
                .await?;
            // (item, location, lot) -> [on_hand, quarantined, damaged] to take away.
            let mut back: HashMap<(String, String, String), [i64; 3]> = HashMap::new();
            for c in &changes {
                let b = back
                    .entry((c.item.clone(), c.location.clone(), c.lot.clone()))
                    .or_default();
                b[0] += c.delta[0];
                b[1] += c.delta[1];
                b[2] += c.delta[2];
            }
            for (item, state) in &part.items {
                for pos in &state.positions {
                    let location = &policy.locations[pos.location.0 as usize];
                    let held = pos.b();
                    let mut b = [held.on_hand, held.quarantined, held.damaged];
                    if !back.is_empty()
                        && let Some(d) = back.remove(&(
                            item.to_string(),
                            location.to_string(),
                            pos.lot.as_ref().map_or_else(String::new, |l| l.to_string()),
                        ))
                    {
                        b = [b[0] - d[0], b[1] - d[1], b[2] - d[2]];
                    }
                    cmp.add_ledger(item, location, pos.lot.as_ref(), b[0], b[1], b[2]);
                }
            }
            // Positions the ledger no longer holds but had at `as_of`.
            for ((item, location, lot), d) in back {
                let (Ok(item), Ok(location)) = (ItemId::new(&item), LocationId::new(&location))
                else {
                    continue;
                };
                let lot = (!lot.is_empty()).then(|| Lot::new(&lot).ok()).flatten();
                cmp.add_ledger(&item, &location, lot.as_ref(), -d[0], -d[1], -d[2]);
            }
        }
        Ok(())
    }

    async fn act_on_stock(
        &self,
        spec: &ReconSource,
        run_id: &str,
        digest: &str,
        as_of: Timestamp,
        report: &Report,
    ) -> Vec<VarianceRow> {
        let stale = report.counts.contains_key(&Class::Stale);
        let mut out = Vec::new();
        if stale {
            // Nothing in a stale snapshot is trusted: one record for the run, no rows.
            if spec.action(Class::Stale) == Action::Exception {
                let record = ExceptionRecord::open(
                    ExceptionKind::InventoryMismatch,
                    &format!("recon-stale\0{}\0{digest}", spec.name),
                    format!("reconciliation:{}", spec.name),
                    Some(run_id.to_string()),
                    format!(
                        "the snapshot of {} as of {} is older than {} s; not compared",
                        spec.name,
                        as_of.to_rfc3339(),
                        spec.stale_after_s
                    ),
                    None,
                    Timestamp::now(),
                );
                if let Err(e) = self.engine.record_exception(record).await {
                    tracing::error!(error = %e, "cannot record a stale snapshot");
                }
            }
            return out;
        }
        let mut corrections: Vec<(usize, Event)> = Vec::new();
        for (n, v) in report.variances.iter().enumerate() {
            let mut row = variance_row(run_id, n as u32, v);
            match spec.action(v.class) {
                Action::Report => row.action = "reported".into(),
                Action::Exception => {
                    self.open_exception(spec, run_id, digest, as_of, v, &mut row, None)
                        .await
                }
                Action::AutoCorrect if v.has_lots => {
                    let why = "split by lot; a count per lot needs a person";
                    self.open_exception(spec, run_id, digest, as_of, v, &mut row, Some(why))
                        .await;
                }
                Action::AutoCorrect => {
                    let event = correction(spec, run_id, digest, as_of, v);
                    row.action = "corrected".into();
                    row.reference = event.id.clone();
                    corrections.push((out.len(), event));
                }
            }
            out.push(row);
        }
        if !corrections.is_empty() {
            let (at, events): (Vec<usize>, Vec<Event>) = corrections.into_iter().unzip();
            let replies = self.engine.submit_many(events).await;
            for (i, reply) in at.into_iter().zip(replies) {
                let row = &mut out[i];
                match reply {
                    Ok(EventReply::Recorded {
                        exception: None, ..
                    }) => {}
                    Ok(EventReply::Duplicate { .. }) => {
                        row.detail = "corrected by an earlier run of the same snapshot".into()
                    }
                    Ok(EventReply::Recorded {
                        exception: Some((kind, reason)),
                        ..
                    }) => {
                        row.action = "exception".into();
                        row.detail =
                            format!("the correction was refused ({}): {reason}", kind.as_str());
                    }
                    Ok(EventReply::Conflict { exception_id, .. }) => {
                        row.action = "exception".into();
                        row.reference = exception_id;
                    }
                    Ok(EventReply::Rejected(why)) | Err(EngineError::Store(why)) => {
                        row.action = "failed".into();
                        row.detail = format!("the correction was not recorded: {why}");
                    }
                    Err(e) => {
                        row.action = "failed".into();
                        row.detail = format!("the correction was not recorded: {e}");
                    }
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_exception(
        &self,
        spec: &ReconSource,
        run_id: &str,
        digest: &str,
        as_of: Timestamp,
        v: &Variance,
        row: &mut VarianceRow,
        why: Option<&str>,
    ) {
        let record = ExceptionRecord::open(
            ExceptionKind::InventoryMismatch,
            &format!("recon\0{}\0{digest}\0{}\0{}", spec.name, v.item, v.location),
            format!("item:{}@{}", v.item, v.location),
            Some(run_id.to_string()),
            format!(
                "reconciliation {} as of {}: {} for {} at {}: {} has {}, Crossdock has {}{}",
                spec.name,
                as_of.to_rfc3339(),
                v.class.as_str(),
                v.item,
                v.location,
                spec.name,
                qty_text(v.source_qty),
                qty_text(v.ledger_qty),
                why.map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            None,
            Timestamp::now(),
        );
        row.action = "exception".into();
        row.reference = record.id.clone();
        if let Err(e) = self.engine.record_exception(record).await {
            row.action = "failed".into();
            row.detail = format!("cannot open the exception: {e}");
        }
    }

    async fn run_channel(
        &self,
        spec: &ReconSource,
        endpoint: &str,
        started: Timestamp,
        started_by: &str,
    ) -> Result<RunOutcome, RunError> {
        let reader = self
            .readers
            .get(endpoint)
            .ok_or_else(|| RunError::Unavailable(format!("{endpoint} cannot be read")))?;
        let lane = self
            .delivery
            .lane(endpoint)
            .ok_or_else(|| RunError::Unavailable(format!("no delivery lane {endpoint}")))?
            .clone();
        let chan = ChannelId::new(endpoint)
            .ok()
            .and_then(|c| self.engine.policy().channel(&c))
            .ok_or_else(|| RunError::Unavailable(format!("{endpoint} is not a channel")))?;
        // What was delivered before the read, and everything sent while it runs: a page read
        // while a write lands may show the value before or after it.
        let sent_before: HashMap<String, Option<i64>> = lane
            .all_sent()
            .into_iter()
            .map(|(item, _, value)| (item, value))
            .collect();
        lane.watch();
        let pulled = read_with_retries(reader.as_ref()).await;
        let mut recent = lane.unwatch();
        for (item, value) in sent_before {
            if let Some(v) = value {
                recent.entry(item).or_default().push(v);
            }
        }
        let pull = match pulled {
            Ok(pull) => pull,
            Err(e) => {
                let run = RunRow {
                    id: run_id(&spec.name, started, 0),
                    source: spec.name.clone(),
                    kind: spec.kind.name().into(),
                    started_by: started_by.into(),
                    as_of_us: started.as_micros(),
                    started_at_us: started.as_micros(),
                    finished_at_us: Timestamp::now().as_micros(),
                    status: "failed".into(),
                    rows: 0,
                    counts: "{}".into(),
                    digest: String::new(),
                    error: e.to_string(),
                };
                self.save(run, Vec::new()).await?;
                return Err(RunError::Unavailable(format!(
                    "reading {endpoint} failed ({}): {e}",
                    if e.retryable {
                        "retryable"
                    } else {
                        "permanent"
                    }
                )));
            }
        };
        let shown: Vec<(String, i64)> = pull
            .levels
            .iter()
            .map(|l| (l.item.clone(), l.quantity))
            .collect();
        let digest = {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for (i, q) in &shown {
                h.update(i.as_bytes());
                h.update(&q.to_le_bytes());
            }
            h.digest()
        };
        let sent = lane.all_sent();
        let known = sent.iter().map(|(item, _, value)| {
            let intended = ItemId::new(item)
                .map(|id| self.engine.availability(&id, chan).0)
                .unwrap_or(0);
            (item.clone(), *value, intended)
        });
        let mut joined = channel::join(&shown, known.collect::<Vec<_>>());
        for c in &mut joined {
            if let Some(values) = recent.remove(&c.item) {
                c.recent = values;
            }
        }
        // Items the channel lists that Crossdock never sent: compare with the ATS now.
        for c in joined.iter_mut().filter(|c| c.sent.is_none()) {
            if let Ok(id) = ItemId::new(&c.item) {
                c.intended = self.engine.availability(&id, chan).0;
            }
        }
        let run_id = run_id(&spec.name, started, digest);
        let mut counts: BTreeMap<Class, u64> = BTreeMap::new();
        let mut variances = Vec::new();
        for c in &joined {
            let (class, detail) = match channel::judge(c) {
                Verdict::InSync => (Class::Match, ""),
                Verdict::Pending => (Class::Match, "a newer value is on its way"),
                Verdict::Drift => (
                    Class::QuantityVariance,
                    "the channel shows a value Crossdock neither sent nor intends (edited in the \
                     channel, or an update was lost)",
                ),
                Verdict::MissingInChannel => (
                    Class::MissingInSource,
                    "Crossdock delivered a value; the channel does not list the item",
                ),
            };
            *counts.entry(class).or_default() += 1;
            if class == Class::Match {
                continue;
            }
            let mut row = VarianceRow {
                run_id: run_id.clone(),
                n: variances.len() as u32,
                item: c.item.clone(),
                location: endpoint.to_string(),
                lot: String::new(),
                class: class.as_str().into(),
                source_qty: c.shown,
                ledger_qty: Some(c.intended),
                delta: c.shown.unwrap_or(0) - c.intended,
                detail: format!(
                    "{detail}; last sent {}",
                    c.sent.map_or("nothing".into(), |v| v.to_string())
                ),
                action: "reported".into(),
                reference: String::new(),
            };
            let v = Variance {
                item: ItemId::new(&c.item).map_err(|e| RunError::Unavailable(e.to_string()))?,
                location: LocationId::new(endpoint)
                    .map_err(|e| RunError::Unavailable(e.to_string()))?,
                class,
                source_qty: c.shown,
                ledger_qty: Some(c.intended),
                delta: row.delta,
                has_lots: false,
            };
            match spec.action(class) {
                Action::Report => {}
                Action::Exception => {
                    self.open_exception(
                        spec,
                        &run_id,
                        &format!("{digest:016x}"),
                        started,
                        &v,
                        &mut row,
                        None,
                    )
                    .await
                }
                Action::AutoCorrect => {
                    let shown_now = c.shown.unwrap_or(0);
                    let (ats, seq) = self.engine.availability(&v.item, chan);
                    let reason = format!(
                        "reconciliation {}: {endpoint} shows {shown_now} for {} where Crossdock \
                         last sent {} (ATS now {ats}); repairing with a compare-and-set write",
                        spec.name,
                        c.item,
                        c.sent.map_or("nothing".into(), |v| v.to_string()),
                    );
                    lane.resync(
                        availability_row(endpoint, &c.item, ats, seq, &run_id),
                        shown_now,
                        reason,
                        None,
                    );
                    row.action = "repaired".into();
                    row.reference = format!("set {shown_now} -> {ats}");
                }
            }
            variances.push(row);
        }
        for item in &pull.unmapped {
            *counts.entry(Class::MissingInCrossdock).or_default() += 1;
            variances.push(VarianceRow {
                run_id: run_id.clone(),
                n: variances.len() as u32,
                item: item.clone(),
                location: endpoint.to_string(),
                lot: String::new(),
                class: Class::MissingInCrossdock.as_str().into(),
                source_qty: None,
                ledger_qty: None,
                delta: 0,
                detail: "the channel lists an id the crosswalk does not map".into(),
                action: "reported".into(),
                reference: String::new(),
            });
        }
        let run = RunRow {
            id: run_id,
            source: spec.name.clone(),
            kind: spec.kind.name().into(),
            started_by: started_by.into(),
            as_of_us: started.as_micros(),
            started_at_us: started.as_micros(),
            finished_at_us: Timestamp::now().as_micros(),
            status: "done".into(),
            rows: joined.len() as u64,
            counts: counts_json(&counts),
            digest: format!("{digest:016x}"),
            error: String::new(),
        };
        self.save(run, variances).await
    }

    /// Runs every source with an interval on its schedule until `stop` turns true.
    pub fn start_schedules(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        for s in &self.settings.sources {
            let Some(interval) = s.interval_s else {
                continue;
            };
            let (me, name, mut stop) = (self.clone(), s.name.clone(), stop.clone());
            tokio::spawn(async move {
                let period = std::time::Duration::from_secs(interval);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = stop.changed() => return,
                    }
                    match me.run(&name, Input::Latest, "schedule").await {
                        Ok(o) => tracing::debug!(run = %o.run.id, "scheduled reconciliation done"),
                        Err(e) => {
                            tracing::warn!(source = %name, error = %e, "scheduled reconciliation did not run")
                        }
                    }
                }
            });
        }
    }
}

/// A channel read, tried again with backoff while the channel says "later" (its rate limit is
/// shared with publishing, so a read right after a burst of writes is often throttled).
async fn read_with_retries(
    reader: &dyn StockReader,
) -> Result<crossdock_adapters::StockPull, crossdock_adapters::PullError> {
    let mut wait = PULL_RETRY_FIRST;
    let started = std::time::Instant::now();
    loop {
        match reader.read_stock().await {
            Err(e) if e.retryable && started.elapsed() + wait <= PULL_RETRY_FOR => {
                tracing::debug!(error = %e, "channel read throttled; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// First wait after a retryable channel read failure, and how long a run keeps trying.
pub const PULL_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
pub const PULL_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The message that repairs a channel: the ATS now, written compare-and-set from what the
/// channel shows.
pub fn availability_row(endpoint: &str, item: &str, ats: i64, seq: u64, corr: &str) -> OutboxRow {
    OutboxRow {
        partition: 0,
        endpoint: endpoint.to_string(),
        key: item.to_string(),
        ledger_seq: seq,
        priority: 0,
        kind: OutboxKind::Latest,
        payload: json!({"item": item, "channel": endpoint, "available": ats, "previous": null, "ledger_seq": seq})
            .to_string(),
        correlation_id: Some(corr.to_string()),
        created_at_us: Timestamp::now().as_micros(),
    }
}

fn run_id(source: &str, started: Timestamp, digest: u64) -> String {
    let tag = xxhash_rust::xxh3::xxh3_64(format!("{source}\0{digest}").as_bytes());
    format!("rec-{:x}-{:08x}", started.as_micros(), tag as u32)
}

fn counts_json(counts: &BTreeMap<Class, u64>) -> String {
    let map: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(c, n)| (c.as_str().to_string(), json!(n)))
        .collect();
    Value::Object(map).to_string()
}

fn qty_text(q: Option<i64>) -> String {
    q.map_or("no row".into(), |q| q.to_string())
}

fn variance_row(run_id: &str, n: u32, v: &Variance) -> VarianceRow {
    VarianceRow {
        run_id: run_id.to_string(),
        n,
        item: v.item.to_string(),
        location: v.location.to_string(),
        lot: String::new(),
        class: v.class.as_str().into(),
        source_qty: v.source_qty,
        ledger_qty: v.ledger_qty,
        delta: v.delta,
        detail: String::new(),
        action: String::new(),
        reference: String::new(),
    }
}

/// The reconciler's count that makes the ledger agree with the source as of `as_of`.
fn correction(
    spec: &ReconSource,
    run_id: &str,
    digest: &str,
    as_of: Timestamp,
    v: &Variance,
) -> Event {
    let key = format!("{}\0{digest}\0{}\0{}", spec.name, v.item, v.location);
    Event {
        id: format!(
            "recon:{}:{:016x}",
            spec.name,
            xxhash_rust::xxh3::xxh3_64(key.as_bytes())
        ),
        source: SourceId::new(RECONCILER_SOURCE).expect("a valid source id"),
        time: as_of,
        sequence: None,
        correlation_id: run_id.to_string(),
        causation_id: None,
        data: EventData::Counted(Counted {
            item: v.item.clone(),
            location: v.location.clone(),
            qty: v.source_qty.unwrap_or(0),
            lot: None,
        }),
        received_at: Timestamp::now(),
    }
}

/// `GET /v1/items/{item}/history?at=T`: positions, every channel's ATS and what was delivered
/// to each channel, as the hub knew them at `at`.
pub async fn history(
    engine: &Engine,
    item: &ItemId,
    at: Timestamp,
) -> Result<History, EngineError> {
    let policy = engine.policy().clone();
    let partition = partition_of(item, engine.partitions());
    let (state, seq) = match engine.item(item) {
        Some((s, seq)) => (Some(s), seq),
        None => (None, engine.ledger_seqs()[partition as usize]),
    };
    let (key, at_us) = (item.to_string(), at.as_micros());
    let ((changes, ats), sent) = engine
        .read(move |s| {
            Ok((
                s.item_journal_after(partition, &key, at_us)?,
                s.sent_as_of(&key, at_us)?,
            ))
        })
        .await?;
    // (location, lot) -> buckets now, then with later changes taken away.
    let mut positions: BTreeMap<(String, String), [i64; 10]> = BTreeMap::new();
    if let Some(state) = &state {
        for p in &state.positions {
            let b = p.b();
            positions.insert(
                (
                    policy.locations[p.location.0 as usize].to_string(),
                    p.lot.as_ref().map_or_else(String::new, |l| l.to_string()),
                ),
                [
                    b.on_hand,
                    b.quarantined,
                    b.damaged,
                    b.returns_pending,
                    b.picked,
                    b.allocated,
                    b.reserved,
                    b.in_transit,
                    b.incoming,
                    b.safety_stock,
                ],
            );
        }
    }
    for c in changes.iter().filter(|c| c.seq <= seq) {
        let b = positions
            .entry((c.location.clone(), c.lot.clone()))
            .or_default();
        for (x, d) in b.iter_mut().zip(c.delta) {
            *x -= d;
        }
    }
    let positions = positions
        .into_iter()
        .filter(|(_, b)| b.iter().any(|x| *x != 0))
        .map(|((location, lot), b)| {
            let buckets = crossdock_ledger::Buckets {
                on_hand: b[0],
                quarantined: b[1],
                damaged: b[2],
                returns_pending: b[3],
                picked: b[4],
                allocated: b[5],
                reserved: b[6],
                in_transit: b[7],
                incoming: b[8],
                safety_stock: b[9],
            };
            PastPosition {
                location,
                lot: (!lot.is_empty()).then_some(lot),
                buckets: b,
                available: buckets.available(),
            }
        })
        .collect();
    let sent_by: HashMap<&str, &crossdock_store::SentRow> =
        sent.iter().map(|s| (s.endpoint.as_str(), s)).collect();
    let channels = policy
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // The value at T is the one the first change after T replaced; with no change
            // since, the value now.
            let value = match ats
                .iter()
                .find(|a| a.channel == c.id.as_str() && a.seq <= seq)
            {
                Some(first_after) => first_after.previous,
                None => state
                    .as_ref()
                    .and_then(|s| s.published.get(i).copied().flatten())
                    .map(|p| p.ats),
            };
            PastChannel {
                channel: c.id.to_string(),
                ats: value,
                sent: sent_by.get(c.id.as_str()).map(|s| PastDelivery {
                    value: s.value,
                    ledger_seq: s.ledger_seq,
                    sent_at: Timestamp::from_micros(s.sent_at_us),
                }),
            }
        })
        .collect();
    Ok(History {
        item: item.clone(),
        at,
        positions,
        channels,
    })
}

/// An item as the hub knew it at a time: `GET /v1/items/{item}/history?at=T`.
#[derive(Debug)]
pub struct History {
    pub item: ItemId,
    pub at: Timestamp,
    /// Positions with any bucket not zero at `at`.
    pub positions: Vec<PastPosition>,
    /// Every channel of the policy.
    pub channels: Vec<PastChannel>,
}

#[derive(Debug)]
pub struct PastPosition {
    pub location: String,
    pub lot: Option<String>,
    /// In [`crossdock_store::BUCKETS`] order.
    pub buckets: [i64; 10],
    pub available: i64,
}

#[derive(Debug)]
pub struct PastChannel {
    pub channel: String,
    /// The channel's ATS at `at`; `None` when it had none yet.
    pub ats: Option<i64>,
    /// The value last delivered to the channel at or before `at`.
    pub sent: Option<PastDelivery>,
}

#[derive(Debug)]
pub struct PastDelivery {
    pub value: Option<i64>,
    pub ledger_seq: u64,
    pub sent_at: Timestamp,
}

impl History {
    /// The wire form: each position's buckets by name, `lot` only where there is one.
    pub fn to_json(&self) -> Value {
        let positions: Vec<Value> = self
            .positions
            .iter()
            .map(|p| {
                let mut v = json!({"location": p.location, "available": p.available});
                for (name, x) in crossdock_store::BUCKETS.iter().zip(p.buckets) {
                    v[*name] = json!(x);
                }
                if let Some(lot) = &p.lot {
                    v["lot"] = json!(lot);
                }
                v
            })
            .collect();
        let channels: Vec<Value> = self
            .channels
            .iter()
            .map(|c| {
                json!({
                    "channel": c.channel,
                    "ats": c.ats,
                    "sent": c.sent.as_ref().map(|s| json!({
                        "value": s.value,
                        "ledger_seq": s.ledger_seq,
                        "sent_at": s.sent_at.to_rfc3339(),
                    })),
                })
            })
            .collect();
        json!({
            "item": self.item,
            "at": self.at.to_rfc3339(),
            "positions": positions,
            "channels": channels,
        })
    }
}
