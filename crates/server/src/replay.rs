//! Running an exception's kept input again, for an operator (`POST /v1/exceptions/{id}/replay`,
//! bulk) and for the work queue's `retry` policy.
//!
//! What can run again is decided by the record alone ([`Input::of`]):
//! * `file:<partner>/<stored>#…`: the partner file, kept under `processed/` or `rejected/`, runs
//!   again whole; lines applied before are repeats, a line that still fails raises the same
//!   record again (it opens again). Records of one file are replayed with one run.
//! * `token:<name>` with the raw body (`schema_violation`, `auth_rejected`): a request refused at
//!   the HTTP edge and never logged is submitted again, as that token would send it now (its
//!   scopes as configured now).
//! * `delivery_failed`: the parked message behind the record goes back into its lane.
//!
//! Everything else keeps no input the hub can run (an event the ledger quarantined is already in
//! the log under its id; a channel webhook belongs to the platform): a replay is refused with the
//! reason, and the record is left as it was.
//!
//! The input runs first; the record then moves to `replayed` (a conditional move: a record
//! closed meanwhile is not moved). If the input fails again, or cannot run, the record keeps its
//! status (open or acknowledged) with a note saying why. A closed record's input is not run.

use std::collections::BTreeMap;

use crossdock_engine::EventReply;
use crossdock_model::{
    Envelope, Event, ExceptionKind, ExceptionRecord, ExceptionStatus, Timestamp,
};
use crossdock_store::{
    DeadLetterAction, DeadLetterFilter, ExceptionQuery, QueueRecord, Transition,
};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::auth::Caller;

/// The input a record keeps that the hub can run again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    File { partner: String, file: String },
    Request { token: String, body: String },
    Parked,
}

impl Input {
    /// What of `r` can run again, or why nothing can.
    pub fn of(r: &ExceptionRecord) -> Result<Input, String> {
        if let Some(rest) = r.entity.strip_prefix("file:")
            && let Some((partner, stored)) = rest.split_once('/')
        {
            let file = stored.split('#').next().unwrap_or(stored);
            return Ok(Input::File {
                partner: partner.to_string(),
                file: file.to_string(),
            });
        }
        if let Some(token) = r.entity.strip_prefix("token:")
            && matches!(
                r.kind,
                ExceptionKind::SchemaViolation | ExceptionKind::AuthRejected
            )
        {
            return match r.raw.as_deref() {
                Some(body) if !body.trim().is_empty() => Ok(Input::Request {
                    token: token.to_string(),
                    body: body.to_string(),
                }),
                _ => Err(format!(
                    "the request refused for token {token} kept no body (it was too large or empty)"
                )),
            };
        }
        if r.kind == ExceptionKind::DeliveryFailed {
            return Ok(Input::Parked);
        }
        Err(match r.entity.split_once(':').map(|(k, _)| k) {
            Some("webhook") => format!(
                "{} about {} came from a channel webhook; the platform redelivers it, the hub does not replay it",
                r.kind.as_str(),
                r.entity
            ),
            _ if r
                .raw
                .as_deref()
                .is_some_and(|raw| raw.contains("\"specversion\"")) =>
            {
                format!(
                    "{} about {}: the event is already in the log under its id (quarantined); \
                 send it again with a new id once the cause is fixed",
                    r.kind.as_str(),
                    r.entity
                )
            }
            _ => format!(
                "{} about {} keeps no input the hub can run again",
                r.kind.as_str(),
                r.entity
            ),
        })
    }

    pub fn label(&self) -> &'static str {
        match self {
            Input::File { .. } => "file",
            Input::Request { .. } => "request",
            Input::Parked => "dead_letter",
        }
    }
}

/// What a replay did to one record.
#[derive(Debug)]
pub enum Replay {
    /// The input ran and went through; the record stays `replayed`.
    Done {
        record: QueueRecord,
        input: &'static str,
        report: Value,
    },
    /// The input ran and failed again, or could not run; the record keeps its status, with a
    /// note saying why.
    Failed {
        record: QueueRecord,
        input: &'static str,
        reason: String,
        report: Value,
    },
    /// Nothing ran: the record keeps no input the hub can run.
    NotReplayable(String),
    /// Nothing ran: the record is in a status a replay does not start from.
    Refused(QueueRecord),
    Missing,
}

/// Notes for a replay: why it ran, and the note of a failure.
pub struct Notes<'a> {
    pub actor: &'a str,
    pub note: &'a str,
    pub failed: &'a (dyn Fn(&str) -> String + Sync),
}

/// Replays `records` (already read) as `notes.actor`; one result per record, in order.
///
/// The input runs first and the record moves to `replayed` only once it went through (a
/// conditional move: a record closed meanwhile is reported refused), so a crash between the two
/// leaves the record open to be replayed again (running an input twice is harmless: events are
/// repeats, a parked message is retried once). A record whose input fails again keeps its status
/// and gets a note saying why.
pub async fn replay_many(
    st: &AppState,
    records: &[QueueRecord],
    notes: &Notes<'_>,
) -> Result<Vec<Replay>, String> {
    let mut results: Vec<Option<Replay>> = Vec::with_capacity(records.len());
    // Files run once for all their records.
    let mut files: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut singles: Vec<(usize, Input)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        results.push(None);
        if !REPLAY_FROM.contains(&r.record.status) {
            results[i] = Some(Replay::Refused(r.clone()));
            continue;
        }
        match Input::of(&r.record) {
            Ok(Input::File { partner, file }) => files.entry((partner, file)).or_default().push(i),
            Ok(other) => singles.push((i, other)),
            Err(why) => results[i] = Some(Replay::NotReplayable(why)),
        }
    }
    for ((partner, file), members) in files {
        let ran = match st.partners.spec(&partner) {
            None => Err(format!("partner {partner:?} is no longer configured")),
            Some(spec) => st.partners.replay(spec, &file).await,
        };
        for &i in &members {
            let r = &records[i];
            results[i] = Some(match &ran {
                Err(e) => fail(st, r, "file", e.clone(), Value::Null, notes).await?,
                Ok(report) => match raised_again(report, &r.record.id) {
                    Some(why) => {
                        let why = format!("the file ran again and still fails: {why}");
                        fail(st, r, "file", why, report.clone(), notes).await?
                    }
                    None => done(st, r, "file", report.clone(), notes).await?,
                },
            });
        }
    }
    for (i, input) in singles {
        let r = &records[i];
        let label = input.label();
        results[i] = Some(match input {
            Input::Request { token, body } => match submit_again(st, &token, &body).await {
                Ok(report) => done(st, r, label, report, notes).await?,
                Err(why) => fail(st, r, label, why, Value::Null, notes).await?,
            },
            // Retrying a parked message closes its record in the same transaction.
            Input::Parked => match retry_parked(st, &r.record.id, notes).await {
                Ok(report) => match read(st, std::slice::from_ref(&r.record.id)).await?.pop() {
                    Some(now) if now.record.status == ExceptionStatus::Replayed => Replay::Done {
                        record: now,
                        input: label,
                        report,
                    },
                    Some(now) => Replay::Refused(now),
                    None => Replay::Missing,
                },
                Err(why) => fail(st, r, label, why, Value::Null, notes).await?,
            },
            Input::File { .. } => unreachable!("files run above"),
        });
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Replay::Missing))
        .collect())
}

/// The statuses a replay starts from.
const REPLAY_FROM: [ExceptionStatus; 2] = [ExceptionStatus::Open, ExceptionStatus::Acknowledged];

/// Why a file's run raised record `id` again, if it did. A file refused as a whole (another
/// row or set still bad) applied nothing, so no record of it is replayed either.
fn raised_again(report: &Value, id: &str) -> Option<String> {
    if report["exception_id"] == id {
        return Some(report["error"].as_str().unwrap_or("refused").to_string());
    }
    if report["status"] == "rejected" {
        return Some(
            "the file is still refused as a whole, so nothing of it applied; fix the rest of it"
                .to_string(),
        );
    }
    report["exceptions"]
        .as_array()?
        .iter()
        .find(|e| e["id"] == id)
        .map(|e| e["reason"].as_str().unwrap_or("raised again").to_string())
}

/// The input went through: the record moves to `replayed`, if nobody closed it meanwhile.
async fn done(
    st: &AppState,
    r: &QueueRecord,
    input: &'static str,
    report: Value,
    notes: &Notes<'_>,
) -> Result<Replay, String> {
    let moved = transition(
        st,
        vec![r.record.id.clone()],
        ExceptionStatus::Replayed,
        REPLAY_FROM.to_vec(),
        notes.actor,
        notes.note,
    )
    .await?;
    Ok(match moved.into_iter().next() {
        Some(Transition::Changed(record)) => Replay::Done {
            record,
            input,
            report,
        },
        Some(Transition::Refused(record)) => Replay::Refused(record),
        Some(Transition::Missing) | None => Replay::Missing,
    })
}

/// The input failed again (or could not run): the record keeps its status, with a note why.
async fn fail(
    st: &AppState,
    r: &QueueRecord,
    input: &'static str,
    reason: String,
    report: Value,
    notes: &Notes<'_>,
) -> Result<Replay, String> {
    let (id, actor, note) = (
        r.record.id.clone(),
        notes.actor.to_string(),
        (notes.failed)(&reason),
    );
    let at = Timestamp::now().as_micros();
    let noted = st
        .exceptions
        .call(move |s| s.note_exception(&id, &actor, &note, at))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(match noted {
        Some(record) => Replay::Failed {
            record,
            input,
            reason,
            report,
        },
        None => Replay::Missing,
    })
}

/// Submits a request refused at the HTTP edge again, as its token would now.
async fn submit_again(st: &AppState, token: &str, body: &str) -> Result<Value, String> {
    let t = st
        .config
        .tokens
        .iter()
        .find(|t| t.name == token)
        .ok_or_else(|| format!("token {token:?} is no longer configured"))?;
    let caller = Caller::of(t);
    let env: Envelope = serde_json::from_str(body)
        .map_err(|e| format!("the kept body is not a CloudEvent: {e}"))?;
    let event = Event::from_envelope(&env, Timestamp::now(), || uuid::Uuid::new_v4().to_string())
        .map_err(|e| format!("the kept body is still refused: {e}"))?;
    if !event.data.is_public() {
        return Err(format!(
            "{} is issued by the hub itself and cannot be submitted",
            event.data.type_name()
        ));
    }
    if !caller.may_ingest(event.source.as_str()) {
        return Err(format!(
            "token {token:?} still may not submit events as source {:?}; it needs the ingest:{} scope",
            event.source.as_str(),
            event.source
        ));
    }
    let id = event.id.clone();
    match st.engine.submit(event).await {
        Err(e) => Err(format!("the engine did not take it: {e}")),
        Ok(EventReply::Recorded {
            status,
            seq,
            exception,
        }) => Ok(json!({
            "id": id, "status": status.as_str(), "ledger_seq": seq,
            "exception_kind": exception.as_ref().map(|(k, _)| k.as_str()),
            "exception_reason": exception.map(|(_, r)| r),
        })),
        Ok(EventReply::Duplicate { status, seq }) => Ok(json!({
            "id": id, "status": "duplicate", "original_status": status.as_str(), "ledger_seq": seq,
        })),
        Ok(EventReply::Conflict { seq, exception_id }) => Err(format!(
            "event id {id:?} was recorded before with a different payload (ledger_seq {seq}, exception {exception_id})"
        )),
        Ok(EventReply::Rejected(reason)) => Err(reason),
    }
}

/// Puts the parked message behind a `delivery_failed` record back into its lane.
async fn retry_parked(st: &AppState, id: &str, notes: &Notes<'_>) -> Result<Value, String> {
    let key = id.to_string();
    let letter = st
        .exceptions
        .call(move |s| s.parked_letter_of(&key))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            "no message behind it is parked any more (retried, discarded or superseded)".to_string()
        })?;
    let letters = st
        .delivery
        .act(
            DeadLetterFilter {
                ids: Some(vec![letter]),
                limit: 1,
                ..DeadLetterFilter::default()
            },
            DeadLetterAction::Retry,
            notes.actor.to_string(),
            notes.note.to_string(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match letters.first() {
        None => Err("the parked message was taken meanwhile".into()),
        Some(l) => Ok(json!({
            "dead_letter": l.id, "endpoint": l.row.endpoint, "key": l.row.key,
            "ledger_seq": l.row.ledger_seq,
        })),
    }
}

/// A lifecycle move through the work queue's store thread.
pub async fn transition(
    st: &AppState,
    ids: Vec<String>,
    to: ExceptionStatus,
    from: Vec<ExceptionStatus>,
    actor: &str,
    note: &str,
) -> Result<Vec<Transition>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (actor, note) = (actor.to_string(), note.to_string());
    let at = Timestamp::now().as_micros();
    st.exceptions
        .call(move |s| s.transition_exceptions(&ids, to, &from, &actor, &note, at))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The records `ids` as they are now.
pub async fn read(st: &AppState, ids: &[String]) -> Result<Vec<QueueRecord>, String> {
    let query = ExceptionQuery {
        ids: ids.to_vec(),
        limit: ids.len() as u32,
        ..ExceptionQuery::default()
    };
    st.exceptions
        .call(move |s| s.query_exceptions(&query))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_refused_whole_replays_none_of_its_records() {
        let applied = json!({"status": "processed", "exceptions": []});
        assert_eq!(raised_again(&applied, "ex-1"), None);
        let again = json!({"status": "processed", "exceptions": [{"id": "ex-1", "reason": "unknown item X"}]});
        assert_eq!(
            raised_again(&again, "ex-1").as_deref(),
            Some("unknown item X")
        );
        // Another row is still bad: nothing applied, this record's row neither.
        let whole = json!({"status": "rejected", "exceptions": [{"id": "ex-2", "reason": "bad"}]});
        assert!(
            raised_again(&whole, "ex-1")
                .unwrap()
                .contains("refused as a whole")
        );
        let partly = json!({"status": "partly_rejected", "exceptions": []});
        assert_eq!(raised_again(&partly, "ex-1"), None);
    }

    fn record(kind: ExceptionKind, entity: &str, raw: Option<&str>) -> ExceptionRecord {
        ExceptionRecord::open(
            kind,
            entity,
            entity.to_string(),
            None,
            "why".into(),
            raw.map(str::to_string),
            Timestamp::from_micros(1),
        )
    }

    #[test]
    fn the_record_alone_says_what_can_run_again() {
        assert_eq!(
            Input::of(&record(
                ExceptionKind::UnknownItem,
                "file:acme/stock-1.x12#ISA000000101/GS1/ST0001/LIN2",
                Some("LIN*2*VN*A-2~")
            )),
            Ok(Input::File {
                partner: "acme".into(),
                file: "stock-1.x12".into()
            })
        );
        assert_eq!(
            Input::of(&record(
                ExceptionKind::AuthRejected,
                "token:east",
                Some("{\"specversion\":\"1.0\"}")
            )),
            Ok(Input::Request {
                token: "east".into(),
                body: "{\"specversion\":\"1.0\"}".into()
            })
        );
        assert!(
            Input::of(&record(
                ExceptionKind::SchemaViolation,
                "token:east",
                Some("")
            ))
            .unwrap_err()
            .contains("kept no body")
        );
        assert_eq!(
            Input::of(&record(ExceptionKind::DeliveryFailed, "item:SKU-1", None)),
            Ok(Input::Parked)
        );
        let quarantined = Input::of(&record(
            ExceptionKind::UnknownItem,
            "item:NOPE",
            Some("{\"specversion\":\"1.0\",\"id\":\"e-1\"}"),
        ))
        .unwrap_err();
        assert!(quarantined.contains("already in the log"), "{quarantined}");
        assert!(
            Input::of(&record(
                ExceptionKind::UnknownItem,
                "webhook:shopify/wh-4",
                Some("{}")
            ))
            .unwrap_err()
            .contains("channel webhook")
        );
        assert!(
            Input::of(&record(ExceptionKind::SequenceGap, "source:wms-east", None))
                .unwrap_err()
                .contains("keeps no input")
        );
    }
}
