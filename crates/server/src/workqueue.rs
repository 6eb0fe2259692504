//! The exceptions work queue: one background task that looks at open records every
//! `scan_interval_ms` and applies their kind's policy (`[exceptions]`, see
//! [`crate::exception_policy`]). Everything it does is recorded on the record (actor
//! `crossdock`) and, where it changes the lifecycle or the note, in the audit log.
//!
//! * `retry`: an open record whose input can run again ([`crate::replay::Input`]) is replayed
//!   once `retry_interval_s` has passed since it was raised or last replayed, at most
//!   `retry_max` times (attempts are counted in the store before each run, so a crash never
//!   grants extra ones). When they are used up, or the record keeps nothing to replay, it is
//!   handed to a person with a note saying so.
//! * `hold`: the record is handed to a person at once. Where the hub corrects the cause by
//!   itself (an oversell hold lifted, a channel rewritten by compare-and-set) the record is not
//!   closed: the correction is noted once and a person closes it.
//! * `auto_correct`: the record is closed (`resolved`) once the hub's own correction is seen: an
//!   item's oversell hold lifted (the ledger closes these itself in the same commit; the queue
//!   catches up on older ones), or the channel endpoint named in an `inventory_mismatch` having
//!   recorded a delivered value after the record was raised. A record of such a kind that the
//!   hub does not correct (a channel order it could not cover, a count refused as too old) is
//!   handed to a person.
//!
//! Handed to a person means `held_at` is set; with `notify_url` configured, each such record
//! still open is announced once: a signed JSON POST (`X-Crossdock-Signature`, as the generic
//! webhook adapter signs, `Idempotency-Key: <record id>`). The record is marked notified only
//! after a 2xx, so a failed POST is sent again on the next scan and a receiver that answered
//! 2xx is not called again for that record (a crash between the answer and the mark can repeat
//! it once, with the same key).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossdock_model::{ChannelId, ExceptionKind, ExceptionStatus, ItemId, Timestamp};
use crossdock_store::{Cursor, ExceptionQuery, QueueMark, QueueRecord, Transition};

use crate::api::AppState;
use crate::exception_policy::{KindPolicy, abilities};
use crate::replay::{Input, Notes, Replay, replay_many};

/// Who the queue's changes are recorded as.
pub const ACTOR: &str = "crossdock";
/// Most records each step of a scan looks at.
const BATCH_MAX: u32 = 200;

/// Starts the queue; it stops when `stop` fires.
pub fn start(st: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let interval = st.config.exceptions.scan_interval;
        let mut queue = Scanner::new(st);
        loop {
            queue.scan().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => break,
            }
        }
    });
}

/// What the hub's own correction of a record's cause looks like now.
enum Correction {
    Done(String),
    NotYet,
    /// The hub does not correct this record's cause.
    Never(String),
}

struct Scanner {
    st: Arc<AppState>,
    client: Option<reqwest::Client>,
    /// Where each kind's correction check goes on at the next scan (a bounded page per scan).
    watch_after: HashMap<ExceptionKind, Cursor>,
}

impl Scanner {
    fn new(st: Arc<AppState>) -> Scanner {
        let client = st
            .config
            .exceptions
            .notify
            .as_ref()
            .map(|n| crossdock_delivery::http::client(n.timeout));
        Scanner {
            st,
            client,
            watch_after: HashMap::new(),
        }
    }

    async fn scan(&mut self) {
        for (step, result) in [
            ("retry", self.retry().await),
            ("hold", self.hold().await),
            ("corrections", self.corrections().await),
            ("notify", self.notify().await),
        ] {
            if let Err(e) = result {
                tracing::warn!(step, error = %e, "the exceptions work queue could not finish a step; it tries again next scan");
            }
        }
    }

    async fn query(&self, query: ExceptionQuery) -> Result<Vec<QueueRecord>, String> {
        self.st
            .exceptions
            .call(move |s| s.query_exceptions(&query))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn mark(&self, id: &str, mark: QueueMark, note: Option<String>) -> Result<bool, String> {
        let id = id.to_string();
        let at = Timestamp::now().as_micros();
        self.st
            .exceptions
            .call(move |s| s.mark_exception(&id, mark, note.as_deref().map(|n| (ACTOR, n)), at))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn hand_over(&self, id: &str, note: String) -> Result<(), String> {
        if self.mark(id, QueueMark::Held, Some(note.clone())).await? {
            tracing::info!(exception = id, note, "handed an exception to a person");
        }
        Ok(())
    }

    /// Policy `retry`.
    async fn retry(&mut self) -> Result<(), String> {
        let cfg = &self.st.config.exceptions;
        let kinds = cfg.kinds(KindPolicy::Retry);
        if kinds.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().as_micros();
        let due = now - i64::try_from(cfg.retry_interval.as_micros()).unwrap_or(i64::MAX);
        let records = self
            .query(ExceptionQuery {
                kinds,
                statuses: vec![ExceptionStatus::Open],
                held: Some(false),
                attempted_before_us: Some(due),
                until_us: Some(due.saturating_add(1)),
                oldest_first: true,
                limit: BATCH_MAX,
                ..ExceptionQuery::default()
            })
            .await?;
        let max = cfg.retry_max;
        let mut run = Vec::new();
        for r in records {
            match Input::of(&r.record) {
                Err(why) => {
                    self.hand_over(
                        &r.record.id,
                        format!("policy retry: {why}; waiting for a person"),
                    )
                    .await?
                }
                Ok(_) if r.attempts >= max => {
                    self.hand_over(
                        &r.record.id,
                        format!(
                            "policy retry: gave up after {} automatic replays; waiting for a person",
                            r.attempts
                        ),
                    )
                    .await?
                }
                Ok(_) => run.push(r),
            }
        }
        if run.is_empty() {
            return Ok(());
        }
        // Counted before the run: an attempt a crash interrupts still counts.
        let mut attempts = HashMap::new();
        for r in &run {
            let id = r.record.id.clone();
            let n = self
                .st
                .exceptions
                .call(move |s| s.count_attempt(&id, now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            attempts.insert(r.record.id.clone(), n);
        }
        let note = format!("automatic replay (policy retry, at most {max})");
        let results = replay_many(
            &self.st,
            &run,
            &Notes {
                actor: ACTOR,
                note: &note,
                failed: &|why| format!("automatic replay failed: {why}"),
            },
        )
        .await?;
        for (r, result) in run.iter().zip(results) {
            let id = &r.record.id;
            let n = attempts.get(id).copied().unwrap_or(0);
            match result {
                Replay::Done { input, .. } => {
                    tracing::info!(exception = %id, input, attempt = n, "replayed an exception automatically");
                }
                Replay::Failed { reason, .. } if n >= max => {
                    self.hand_over(
                        id,
                        format!(
                            "policy retry: gave up after {n} automatic replays ({reason}); waiting for a person"
                        ),
                    )
                    .await?
                }
                Replay::Failed { reason, .. } => {
                    tracing::info!(exception = %id, attempt = n, reason, "an automatic replay failed; it is tried again later");
                }
                Replay::NotReplayable(why) => {
                    self.hand_over(id, format!("policy retry: {why}; waiting for a person"))
                        .await?
                }
                // Someone acted on it meanwhile.
                Replay::Refused(_) | Replay::Missing => {}
            }
        }
        Ok(())
    }

    /// Policy `hold`: handed to a person at once.
    async fn hold(&mut self) -> Result<(), String> {
        let kinds = self.st.config.exceptions.kinds(KindPolicy::Hold);
        if kinds.is_empty() {
            return Ok(());
        }
        let records = self
            .query(ExceptionQuery {
                kinds,
                statuses: vec![ExceptionStatus::Open],
                held: Some(false),
                oldest_first: true,
                limit: BATCH_MAX,
                ..ExceptionQuery::default()
            })
            .await?;
        for r in records {
            self.mark(&r.record.id, QueueMark::Held, None).await?;
        }
        Ok(())
    }

    /// Kinds the hub corrects by itself: closed (`auto_correct`) or noted (`hold`) once the
    /// correction is seen.
    async fn corrections(&mut self) -> Result<(), String> {
        for &kind in ExceptionKind::ALL {
            if abilities(kind).corrects.is_none() {
                continue;
            }
            let policy = self.st.config.exceptions.policy(kind);
            let mut query = ExceptionQuery {
                kinds: vec![kind],
                statuses: vec![ExceptionStatus::Open, ExceptionStatus::Acknowledged],
                after: self.watch_after.get(&kind).cloned(),
                oldest_first: true,
                limit: BATCH_MAX,
                ..ExceptionQuery::default()
            };
            match policy {
                KindPolicy::AutoCorrect => query.held = Some(false),
                KindPolicy::Hold => query.corrected = Some(false),
                KindPolicy::Retry => continue,
            }
            let records = self.query(query).await?;
            match records.last() {
                Some(last) if records.len() == BATCH_MAX as usize => {
                    self.watch_after.insert(
                        kind,
                        Cursor {
                            created_at_us: last.record.created_at.as_micros(),
                            id: last.record.id.clone(),
                        },
                    );
                }
                _ => {
                    self.watch_after.remove(&kind);
                }
            }
            for r in records {
                let id = r.record.id.as_str();
                match (policy, self.correction(&r).await?) {
                    (_, Correction::NotYet) => {}
                    (KindPolicy::AutoCorrect, Correction::Done(how)) => {
                        let moved = crate::replay::transition(
                            &self.st,
                            vec![id.to_string()],
                            ExceptionStatus::Resolved,
                            vec![ExceptionStatus::Open, ExceptionStatus::Acknowledged],
                            ACTOR,
                            &format!("corrected by the hub (policy auto_correct): {how}"),
                        )
                        .await?;
                        if matches!(moved.first(), Some(Transition::Changed(_))) {
                            tracing::info!(
                                exception = id,
                                how,
                                "closed an exception the hub corrected"
                            );
                        }
                    }
                    (KindPolicy::AutoCorrect, Correction::Never(why)) => {
                        self.hand_over(
                            id,
                            format!("policy auto_correct: {why}; waiting for a person"),
                        )
                        .await?
                    }
                    // Under hold, a record the hub does not correct simply waits for a person.
                    (_, Correction::Never(_)) => {}
                    (_, Correction::Done(how)) => {
                        self.mark(
                            id,
                            QueueMark::Corrected,
                            Some(format!(
                                "the hub corrected it: {how}; kept open for a person (policy hold)"
                            )),
                        )
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn correction(&self, r: &QueueRecord) -> Result<Correction, String> {
        let rec = &r.record;
        let Some(key) = rec.entity.strip_prefix("item:") else {
            return Ok(Correction::Never(format!(
                "{} is not about an item the hub corrects (a channel sold more than the hub could cover, \
                 or a refund to review)",
                rec.entity
            )));
        };
        match rec.kind {
            ExceptionKind::OversellRisk => {
                let Ok(item) = ItemId::new(key) else {
                    return Ok(Correction::Never(format!("{key:?} is not an item id")));
                };
                // The record is durable before the read view that holds the item is published:
                // only a view that includes the event which raised it can say the hold is gone.
                let Some(raised_at) = self.logged_seq(rec.raw.as_deref()).await? else {
                    return Ok(Correction::NotYet);
                };
                let Some((state, view_seq)) = self.st.engine.item(&item) else {
                    return Ok(Correction::NotYet);
                };
                Ok(
                    if view_seq < raised_at || state.oversell_hold() == Some(rec.id.as_str()) {
                        Correction::NotYet
                    } else {
                        Correction::Done(
                        "available is back at or above zero; the ledger lifted the hold on the item's channel availability"
                            .into(),
                    )
                    },
                )
            }
            ExceptionKind::InventoryMismatch => {
                // The delivery lane and the inventory-level webhook start their reasons with the
                // endpoint ("<endpoint> showed …", "<endpoint> reports …").
                let policy = self.st.engine.policy();
                let endpoint = self.st.delivery.endpoints().into_iter().find(|e| {
                    ChannelId::new(e).is_ok_and(|c| policy.channel(&c).is_some())
                        && (rec.reason.starts_with(&format!("{e} showed "))
                            || rec.reason.starts_with(&format!("{e} reports ")))
                });
                let Some(endpoint) = endpoint else {
                    return Ok(Correction::Never(
                        "not a drift on a channel the hub writes (a count refused as too old: the source \
                         must send a current count)"
                            .into(),
                    ));
                };
                let (e, k) = (endpoint.clone(), key.to_string());
                let sent = self
                    .st
                    .exceptions
                    .call(move |s| s.sent_at(&e, &k))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(match sent {
                    Some(at) if at >= rec.created_at.as_micros() => Correction::Done(format!(
                        "{endpoint} took Crossdock's value for {key} again by compare-and-set at {}",
                        Timestamp::from_micros(at).to_rfc3339()
                    )),
                    _ => Correction::NotYet,
                })
            }
            other => Ok(Correction::Never(format!(
                "the hub does not correct {}",
                other.as_str()
            ))),
        }
    }

    /// The ledger sequence of the logged event a record keeps as its raw envelope.
    async fn logged_seq(&self, raw: Option<&str>) -> Result<Option<u64>, String> {
        let Some(env) = raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()) else {
            return Ok(None);
        };
        let (Some(source), Some(id)) = (env["source"].as_str(), env["id"].as_str()) else {
            return Ok(None);
        };
        let (source, id) = (source.to_string(), id.to_string());
        Ok(self
            .st
            .exceptions
            .call(move |s| s.find_event(&source, &id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .map(|row| row.seq))
    }

    /// Announces records handed to a person, once each.
    async fn notify(&mut self) -> Result<(), String> {
        let (Some(notify), Some(client)) = (&self.st.config.exceptions.notify, &self.client) else {
            return Ok(());
        };
        let records = self
            .query(ExceptionQuery {
                statuses: vec![ExceptionStatus::Open],
                held: Some(true),
                notified: Some(false),
                oldest_first: true,
                limit: BATCH_MAX,
                ..ExceptionQuery::default()
            })
            .await?;
        for r in records {
            let rec = &r.record;
            let body = serde_json::json!({
                "type": "exception",
                "id": rec.id,
                "kind": rec.kind.as_str(),
                "status": rec.status.as_str(),
                "policy": self.st.config.exceptions.policy(rec.kind).as_str(),
                "entity": rec.entity,
                "reason": rec.reason,
                "correlation_id": rec.correlation_id,
                "note": r.note,
                "attempts": r.attempts,
                "created_at": rec.created_at,
            })
            .to_string();
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let mut request = client
                .post(&notify.url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", rec.id.as_str())
                .header(
                    crossdock_adapters::webhook::SIGNATURE_HEADER,
                    crossdock_adapters::webhook::sign(&notify.secret, t, body.as_bytes()),
                );
            if let Some(c) = &rec.correlation_id {
                request = request.header("X-Correlation-Id", c.as_str());
            }
            match request.body(body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.mark(&rec.id, QueueMark::Notified, None).await?;
                }
                Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                    // This one was refused; the others may still go. Tried again next scan.
                    tracing::warn!(exception = %rec.id, status = resp.status().as_u16(), "the exceptions webhook refused a notification");
                }
                Ok(resp) => {
                    return Err(format!(
                        "the exceptions webhook answered {}; notifications wait for the next scan",
                        resp.status()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "the exceptions webhook is unreachable ({e}); notifications wait for the next scan"
                    ));
                }
            }
        }
        Ok(())
    }
}
