//! Trading partners at runtime: one task per partner watches its inbound folder, maps each file
//! (X12 or CSV) through master data, applies the result through the engine, writes 997s and
//! 855s to the outbound folder with control numbers from the store, and files the input under
//! `processed/` or `rejected/` with a report. A partner with a channel also gets a delivery
//! lane that publishes the channel's availability as 846 files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossdock_delivery::{
    Body, BoxFuture, Failure, Message, MsgResult, Outcome, RateFeedback, Target,
};
use crossdock_edi::files::{self, Claimed};
use crossdock_edi::inbound::{self, Mapped, OrderIn};
use crossdock_edi::outbound::{self, LineAnswer};
use crossdock_edi::{PartnerSpec, csvdrop};
use crossdock_engine::{Engine, EventReply, WorkflowReply};
use crossdock_ledger::Doc;
use crossdock_ledger::state::hub_command;
use crossdock_model::EventData;
use crossdock_model::{ExceptionKind, ExceptionRecord, ItemId, Timestamp};
use crossdock_store::thread::StoreThread;
use crossdock_x12::envelope::Usage;
use crossdock_x12::sets::TypedSet;
use crossdock_x12::{OutboundEnvelope, render};
use serde_json::{Value, json};

use crate::master_data::MasterHandle;

/// The largest interchange control number (ISA13 has nine digits).
const CONTROL_MAX: u64 = 999_999_999;

/// What the partner tasks share.
pub struct Partners {
    pub engine: Arc<Engine>,
    pub store: StoreThread,
    pub master: Arc<MasterHandle>,
    pub specs: Vec<PartnerSpec>,
    pub data_dir: PathBuf,
}

impl Partners {
    pub fn spec(&self, id: &str) -> Option<&PartnerSpec> {
        self.specs.iter().find(|p| p.id == id)
    }

    /// Reads an 846 from `partner` as a stock snapshot for reconciliation: every on-hand
    /// quantity (whether the partner's 846s are configured as counts or as snapshots) becomes a
    /// row; nothing is applied. Lines that do not map (unknown items, locations, units) come
    /// back as exception records.
    pub fn snapshot_846(
        &self,
        partner: &str,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Vec<inbound::SnapshotRow>, Vec<ExceptionRecord>), String> {
        let spec = self
            .spec(partner)
            .ok_or_else(|| format!("no partner {partner:?}"))?;
        let doc = crossdock_x12::parse(bytes).map_err(|e| e.to_string())?;
        if let Some(d) = doc.diagnostics.iter().find(|d| d.is_error()) {
            return Err(d.to_string());
        }
        if doc.interchanges.is_empty() {
            return Err("no interchange in the document".into());
        }
        let master = self.master.current();
        let mapped = inbound::map_document(
            &doc,
            spec,
            &master,
            &|_: &ItemId, _: &crossdock_model::LocationId, _: &str| None,
            name,
            Timestamp::now(),
        );
        let mut rows = mapped.snapshots;
        for e in mapped.events {
            if let crossdock_model::event::EventData::Counted(c) = e.data {
                rows.push(inbound::SnapshotRow {
                    item: c.item,
                    location: c.location,
                    qty: c.qty,
                    as_of: e.time,
                });
            }
        }
        if rows.is_empty() && mapped.exceptions.is_empty() {
            return Err("the document has no 846 quantities to compare".into());
        }
        Ok((rows, mapped.exceptions))
    }

    /// Starts one folder watcher per partner; they stop when `stop` fires.
    pub fn start(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        for spec in &self.specs {
            let this = self.clone();
            let spec = spec.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = files::prepare(&spec.inbound) {
                    tracing::error!(partner = %spec.id, error = %e, "cannot prepare the inbound folder");
                    return;
                }
                loop {
                    this.poll(&spec).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(spec.poll_ms)) => {}
                        _ = stop.changed() => break,
                    }
                }
            });
        }
    }

    /// Handles every file ready in the partner's inbound folder.
    pub async fn poll(&self, spec: &PartnerSpec) {
        let inbound = spec.inbound.clone();
        let settle = files::settle(spec.settle_ms);
        let claimed = tokio::task::spawn_blocking(move || files::claim_ready(&inbound, settle))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partner = %spec.id, error = %e, "cannot read the inbound folder");
                return;
            }
        };
        for file in claimed {
            let (accepted, report) = match self.handle(spec, &file, true).await {
                Ok(handled) => handled,
                Err(e) => {
                    // Nothing is lost: the file goes back and is handled again (what applied is
                    // then a repeat).
                    tracing::warn!(partner = %spec.id, file = %file.name, error = %e, "the hub could not take a partner file now; it will be retried");
                    if let Err(e) = files::release(&spec.inbound, &file) {
                        tracing::error!(partner = %spec.id, file = %file.name, error = %e, "cannot put a partner file back");
                    }
                    continue;
                }
            };
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            match files::finish(&spec.inbound, &file, accepted, &text) {
                Ok(path) => {
                    tracing::info!(partner = %spec.id, file = %path.display(), accepted, "handled a partner file")
                }
                Err(e) => {
                    tracing::error!(partner = %spec.id, file = %file.name, error = %e, "cannot file away a handled file")
                }
            }
        }
    }

    /// Re-runs a file kept under `processed/` or `rejected/` (after master data was fixed):
    /// lines applied before are repeats, lines that failed are tried again. The partner was
    /// answered (997, 855) when the file first came in; a replay does not answer again, so an
    /// automatic retry never floods its outbound folder.
    pub async fn replay(&self, spec: &PartnerSpec, stored: &str) -> Result<Value, String> {
        let path = [files::PROCESSED, files::REJECTED]
            .iter()
            .map(|d| spec.inbound.join(d).join(stored))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("partner {} has no stored file {stored:?}", spec.id))?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Filing a file keeps its modification time, so a replayed CSV has its first time.
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let file = Claimed {
            name: stored.to_string(),
            stored: stored.to_string(),
            path,
            bytes,
            modified,
        };
        Ok(self.handle(spec, &file, false).await?.1)
    }

    /// Maps and applies one file (answering the partner when `answer`); returns whether it was
    /// readable and its report, or why the hub cannot take it now (stopping, overloaded, the
    /// store failing).
    async fn handle(
        &self,
        spec: &PartnerSpec,
        file: &Claimed,
        answer: bool,
    ) -> Result<(bool, Value), String> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "edi.file",
            partner = %spec.id,
            file = %file.stored,
            correlation_id = tracing::field::Empty,
        );
        self.handle_in(spec, file, answer).instrument(span).await
    }

    async fn handle_in(
        &self,
        spec: &PartnerSpec,
        file: &Claimed,
        answer: bool,
    ) -> Result<(bool, Value), String> {
        let received_at = Timestamp::now();
        if file.name.to_ascii_lowercase().ends_with(".csv") {
            return self.handle_csv(spec, file, received_at).await;
        }
        let doc = match crossdock_x12::parse(&file.bytes) {
            Ok(doc) if !doc.interchanges.is_empty() => doc,
            Ok(doc) => {
                let reason = doc.diagnostics.iter().find(|d| d.is_error()).map_or_else(
                    || "no interchange in the file".to_string(),
                    ToString::to_string,
                );
                return self
                    .refuse(spec, file, reason, json!(doc.diagnostics))
                    .await;
            }
            Err(e) => {
                return self
                    .refuse(spec, file, e.to_string(), json!(e.diagnostics))
                    .await;
            }
        };
        if let Some(other) = doc
            .interchanges
            .iter()
            .find(|i| !spec.sent(&i.header.sender_qualifier, &i.header.sender_id))
        {
            let reason = format!(
                "the interchange is from {}/{}, not partner {} ({:?})",
                other.header.sender_qualifier.trim(),
                other.header.sender_id.trim(),
                spec.id,
                spec.isa
            );
            return self.refuse(spec, file, reason, json!([])).await;
        }
        let master = self.master.current();
        let engine = self.engine.clone();
        let open_supply =
            move |item: &ItemId, location: &crossdock_model::LocationId, reference: &str| {
                let l = engine.policy().location(location)?;
                let (state, _) = engine.item(item)?;
                Some(
                    state
                        .supply()
                        .iter()
                        .filter(|s| s.location == l && s.reference == reference)
                        .map(|s| s.open)
                        .sum(),
                )
            };
        // Open purchase orders run by a procurement workflow: their ASNs go to the workflow.
        let workflow_pos: std::collections::HashSet<String> = self
            .engine
            .workflows(crossdock_store::WorkflowFilter {
                kind: "purchase_order".into(),
                state: None,
                limit: 100_000,
            })
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|w| !w.is_final)
            .map(|w| w.id)
            .collect();
        let mapped = inbound::map_document_with(
            &doc,
            spec,
            &master,
            &open_supply,
            &|po| workflow_pos.contains(po),
            &file.stored,
            received_at,
        );
        let span = tracing::Span::current();
        if !span.is_disabled() {
            // The documents the file carries (one correlation id per transaction set).
            let mut ids: Vec<&str> = Vec::new();
            for id in mapped
                .events
                .iter()
                .map(|e| e.correlation_id.as_str())
                .chain(mapped.orders.iter().map(|o| o.correlation_id.as_str()))
            {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            span.record("correlation_id", ids.join(","));
        }
        // What the 997s reject applied nothing; a file of which nothing was accepted is filed
        // under rejected/, one with at least one accepted set under processed/ (its report
        // lists what was rejected).
        let refused = mapped.refused();
        let partly = !mapped.rejected.is_empty();
        let rejected = json!(mapped.rejected);
        let mut report = self.apply(spec, mapped, &file.stored, answer).await?;
        report["file"] = json!(file.stored);
        report["diagnostics"] = json!(doc.diagnostics);
        report["rejected"] = rejected;
        if refused {
            report["status"] = json!("rejected");
        } else if partly {
            report["status"] = json!("partly_rejected");
        }
        Ok((!refused, report))
    }

    async fn handle_csv(
        &self,
        spec: &PartnerSpec,
        file: &Claimed,
        received_at: Timestamp,
    ) -> Result<(bool, Value), String> {
        let as_of = Timestamp::from_micros(
            file.modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        );
        let master = self.master.current();
        match csvdrop::map_csv(&file.bytes, &file.stored, spec, &master, as_of, received_at) {
            Ok(m) => {
                // A file with a bad row applies nothing and is filed under rejected/, its
                // report naming every bad row.
                let refused = m.refused();
                let rows = m.rows;
                let bad_rows = json!(m.bad_rows);
                let mapped = Mapped {
                    events: m.events,
                    exceptions: m.exceptions,
                    ..Mapped::default()
                };
                let mut report = self.apply(spec, mapped, &file.stored, true).await?;
                report["file"] = json!(file.stored);
                report["rows"] = json!(rows);
                report["bad_rows"] = bad_rows;
                if refused {
                    report["status"] = json!("rejected");
                }
                Ok((!refused, report))
            }
            Err(e) => self.refuse(spec, file, e.to_string(), json!([])).await,
        }
    }

    /// A file that cannot be read at all: an exception keeping its start, and `rejected/`.
    async fn refuse(
        &self,
        spec: &PartnerSpec,
        file: &Claimed,
        reason: String,
        detail: Value,
    ) -> Result<(bool, Value), String> {
        let head: String = String::from_utf8_lossy(&file.bytes)
            .chars()
            .take(4096)
            .collect();
        let digest = xxhash_rust::xxh3::xxh3_64(&file.bytes);
        let record = ExceptionRecord::open(
            ExceptionKind::SchemaViolation,
            &format!("file\0{}\0{digest:016x}", spec.id),
            format!("file:{}/{}", spec.id, file.stored),
            None,
            format!("{}: {reason}", file.name),
            Some(head),
            Timestamp::now(),
        );
        let id = record.id.clone();
        self.record(vec![record]).await?;
        Ok((
            false,
            json!({"file": file.name, "status": "rejected", "error": reason, "exception_id": id, "diagnostics": detail}),
        ))
    }

    async fn record(&self, records: Vec<ExceptionRecord>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        self.store
            .call(move |s| s.add_exceptions(&records))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot record exceptions: {e}"))
    }

    /// Applies what a file mapped to and, when `answer`, writes the answers; returns the report,
    /// or why the hub cannot take the file now (then nothing is answered and the file is handled
    /// again).
    async fn apply(
        &self,
        spec: &PartnerSpec,
        mapped: Mapped,
        file: &str,
        answer: bool,
    ) -> Result<Value, String> {
        let Mapped {
            events,
            orders,
            returns,
            snapshots,
            documents,
            exceptions,
            acks,
            notes,
            rejected: _,
            sets_accepted: _,
        } = mapped;
        let exception_notes: Vec<Value> = exceptions
            .iter()
            .map(|e| json!({"id": e.id, "kind": e.kind.as_str(), "reason": e.reason}))
            .collect();
        self.record(exceptions).await?;
        let (mut applied, mut repeats, mut refused) = (0, 0, Vec::new());
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        for (id, reply) in ids.iter().zip(self.engine.submit_many(events).await) {
            match reply {
                Ok(EventReply::Recorded {
                    exception: None, ..
                }) => applied += 1,
                Ok(EventReply::Duplicate { .. }) => repeats += 1,
                Ok(EventReply::Recorded {
                    exception: Some((kind, exception_id)),
                    ..
                }) => refused.push(
                    json!({"event": id, "kind": kind.as_str(), "exception_id": exception_id}),
                ),
                Ok(other) => refused.push(json!({"event": id, "reply": format!("{other:?}")})),
                Err(e) => return Err(format!("event {id}: {e}")),
            }
        }
        let mut return_notes = Vec::new();
        for r in returns {
            let rma = r.rma.clone();
            let event = hub_command(
                format!("return:{rma}:authorize"),
                Timestamp::now(),
                format!("x12:{}:{rma}", spec.id),
                EventData::ReturnAuthorized(r),
            );
            return_notes.push(match self.engine.workflow_command(event).await {
                Ok(WorkflowReply::Done { workflow, repeat }) => {
                    json!({"rma": rma, "status": workflow.state, "repeat": repeat})
                }
                Ok(other) => {
                    json!({"rma": rma, "status": "refused", "reason": format!("{other:?}")})
                }
                Err(e) => return Err(format!("return {rma}: {e}")),
            });
        }
        let mut outbound_files = Vec::new();
        let mut order_notes = Vec::new();
        let mut acks_855 = Vec::new();
        for order in &orders {
            let (answers, note) = self.place_order(spec, order).await;
            order_notes.push(note);
            acks_855.push(TypedSet::from(outbound::po_ack_855(
                order,
                &answers,
                Timestamp::now(),
            )));
        }
        for sets in [
            acks.into_iter().map(TypedSet::from).collect::<Vec<_>>(),
            acks_855,
        ] {
            if sets.is_empty() || !answer {
                continue;
            }
            match self.send(spec, &sets).await {
                Ok(name) => outbound_files.push(name),
                Err(e) => {
                    tracing::error!(partner = %spec.id, error = %e, "cannot write an outbound document")
                }
            }
        }
        // A snapshot that cannot be kept fails the file: it is handled again later.
        let snapshot_file = if snapshots.is_empty() {
            None
        } else {
            Some(
                self.keep_snapshot(spec, file, &snapshots)
                    .map_err(|e| format!("cannot keep the availability snapshot: {e}"))?,
            )
        };
        Ok(json!({
            "status": "processed",
            "partner": spec.id,
            "events": {"applied": applied, "repeats": repeats, "refused": refused},
            "orders": order_notes,
            "returns": return_notes,
            "snapshot_rows": snapshots.len(),
            "snapshot_file": snapshot_file,
            "documents": documents,
            "exceptions": exception_notes,
            "outbound": outbound_files,
            "answered": answer,
            "notes": notes,
        }))
    }

    /// Captures a partner's order as an order workflow on the partner's channel (sourced,
    /// allocated, released like any order; what cannot be allocated is backordered) and answers
    /// each line: accepted when fully allocated, backordered otherwise, rejected when it could
    /// not be read. The order id is `<partner>:<po>`, so a resent 850 is the same order.
    async fn place_order(&self, spec: &PartnerSpec, order: &OrderIn) -> (Vec<LineAnswer>, Value) {
        let mut answers = vec![LineAnswer::Rejected; order.po.lines.len()];
        let Some(channel) = spec.channel.clone() else {
            return (
                answers,
                json!({"po": order.po_number, "status": "refused", "reason": format!("partner {} has no channel for orders", spec.id)}),
            );
        };
        if order.lines.is_empty() {
            return (
                answers,
                json!({"po": order.po_number, "status": "refused", "reason": "no line could be read"}),
            );
        }
        let id = format!("{}:{}", spec.id, order.po_number);
        let data = order.captured(spec, channel);
        if let Err(e) = data.validate() {
            return (
                answers,
                json!({"po": order.po_number, "status": "refused", "reason": e.to_string()}),
            );
        }
        let event = hub_command(
            format!("order:{id}:capture"),
            Timestamp::now(),
            order.correlation_id.clone(),
            data,
        );
        match self.engine.workflow_command(event).await {
            Ok(WorkflowReply::Done { workflow, repeat }) => {
                if let Doc::Order(d) = &workflow.doc {
                    for l in &order.lines {
                        let short = d
                            .lines
                            .iter()
                            .find(|x| x.item == l.item)
                            .is_none_or(|x| x.backordered > 0);
                        answers[l.index] = if short {
                            LineAnswer::Backordered
                        } else {
                            LineAnswer::Accepted
                        };
                    }
                }
                (
                    answers,
                    json!({"po": order.po_number, "order": id, "status": workflow.state, "repeat": repeat}),
                )
            }
            Ok(WorkflowReply::Insufficient(short)) => (
                answers,
                json!({"po": order.po_number, "status": "refused", "reason": format!("insufficient stock: {short:?}")}),
            ),
            Ok(WorkflowReply::Rejected(r)) => (
                answers,
                json!({"po": order.po_number, "status": "refused", "reason": format!("{r:?}")}),
            ),
            Err(e) => (
                answers,
                json!({"po": order.po_number, "status": "failed", "reason": e.to_string()}),
            ),
        }
    }

    /// Renders `sets` as one interchange to the partner and writes it to the outbound folder.
    pub async fn send(&self, spec: &PartnerSpec, sets: &[TypedSet]) -> Result<String, String> {
        send_document(&self.store, spec, sets).await
    }

    /// Keeps an 846's availability snapshot as CSV for reconciliation.
    fn keep_snapshot(
        &self,
        spec: &PartnerSpec,
        file: &str,
        rows: &[inbound::SnapshotRow],
    ) -> std::io::Result<String> {
        let mut text = String::from("item,location,qty,as_of\n");
        for r in rows {
            text.push_str(&format!(
                "{},{},{},{}\n",
                r.item,
                r.location,
                r.qty,
                r.as_of.to_rfc3339()
            ));
        }
        let dir = self.data_dir.join("snapshots").join(&spec.id);
        let name = format!("{file}.csv");
        files::write_atomic(&dir, &name, text.as_bytes())?;
        Ok(dir.join(name).display().to_string())
    }
}

/// Takes control numbers, renders, writes atomically; returns the file name.
pub(crate) async fn send_document(
    store: &StoreThread,
    spec: &PartnerSpec,
    sets: &[TypedSet],
) -> Result<String, String> {
    let Some(receiver) = spec.isa.clone() else {
        return Err(format!(
            "partner {} has no isa_id to address X12 to",
            spec.id
        ));
    };
    let scope = spec.id.clone();
    let numbers = store
        .call(move |s| -> Result<(u64, u64), String> {
            let isa = s
                .next_control_numbers(&format!("{scope}/isa"), 1, CONTROL_MAX)
                .map_err(|e| e.to_string())?;
            let gs = s
                .next_control_numbers(&format!("{scope}/gs"), 1, CONTROL_MAX)
                .map_err(|e| e.to_string())?;
            Ok((isa, gs))
        })
        .await
        .map_err(|e| e.to_string())??;
    let (date, time) = outbound::date_time(Timestamp::now());
    let mut envelope = OutboundEnvelope::new(
        (&spec.us.0, &spec.us.1),
        (&receiver.0, &receiver.1),
        u32::try_from(numbers.0).unwrap_or(1),
        u32::try_from(numbers.1).unwrap_or(1),
        date,
        time,
    );
    envelope.release = spec.release;
    envelope.version_suffix = spec.version_suffix.clone();
    envelope.usage = Usage::Production;
    let text = render(&envelope, sets).map_err(|e| e.to_string())?;
    let kind = sets.first().map_or("x12", |s| s.id());
    let name = format!("{}-{kind}-{:09}.x12", spec.id, numbers.0);
    let dir = spec.outbound.clone();
    let file = name.clone();
    tokio::task::spawn_blocking(move || files::write_atomic(&dir, &file, text.as_bytes()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(name)
}

/// Publishes a channel's availability to an EDI partner as 846 files: each lane batch is one
/// interchange.
pub struct Edi846Target {
    pub spec: PartnerSpec,
    pub master: Arc<MasterHandle>,
    pub store: StoreThread,
}

impl Target for Edi846Target {
    fn max_batch(&self) -> usize {
        10_000
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let master = self.master.current();
            let mut lines = Vec::with_capacity(batch.len());
            let mut results = Vec::with_capacity(batch.len());
            for m in batch {
                match (&m.body, ItemId::new(&m.key)) {
                    (Body::Availability { available, .. }, Ok(item)) => {
                        lines.push((item, *available));
                        results.push(MsgResult::Delivered);
                    }
                    _ => results.push(MsgResult::Failed(Failure::permanent(
                        None,
                        format!("an 846 carries availability, not {:?}", m.body),
                    ))),
                }
            }
            if lines.is_empty() {
                return Outcome {
                    results,
                    feedback: RateFeedback::default(),
                };
            }
            let reference = batch
                .last()
                .map_or_else(String::new, |m| m.ledger_seq.to_string());
            let set =
                outbound::inventory_846(&self.spec, &master, &reference, Timestamp::now(), &lines);
            match send_document(&self.store, &self.spec, &[TypedSet::from(set)]).await {
                Ok(_) => Outcome {
                    results,
                    feedback: RateFeedback::default(),
                },
                Err(e) => Outcome::all(
                    batch.len(),
                    MsgResult::Failed(Failure::retryable(None, e)),
                    RateFeedback::default(),
                ),
            }
        })
    }
}

/// A lane for an EDI partner's 846s: one file a second at most, each carrying up to 10,000
/// items (a partner's mailbox is not an API; fewer, bigger files are kinder).
pub fn lane_config(channel: &str) -> crossdock_delivery::LaneConfig {
    crossdock_delivery::LaneConfig {
        endpoint: channel.to_string(),
        target: "x12".into(),
        rate: crossdock_delivery::rate::RateConfig {
            kind: crossdock_delivery::rate::LimitKind::Token,
            rate: 1.0,
            burst: 1.0,
        },
        retry: Default::default(),
        breaker: Default::default(),
        call_timeout: Duration::from_secs(30),
        fifo: false,
    }
}
