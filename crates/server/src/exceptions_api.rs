//! `/v1/exceptions`: the work queue for people. Records filtered and paged with counts by kind
//! and status; lifecycle moves one by one (`POST /v1/exceptions/{id}/{acknowledge|resolve|
//! discard|replay}`) or by filter (`POST /v1/exceptions/bulk`), each audited with the caller's
//! token name and note.
//!
//! Lifecycle: `open → acknowledged`; `open | acknowledged → resolved | replayed | discarded`.
//! A closed record (resolved, replayed, discarded) does not move: 409 `invalid-transition`
//! naming its status. The store enforces this with a conditional update, so two people acting on
//! one record at once get one move and one refusal. (The hub itself reopens a closed record
//! when the same input fails again, a partner file or a parked message raising it anew.)

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossdock_model::{ExceptionKind, ExceptionStatus, Timestamp};
use crossdock_store::{Cursor, ExceptionQuery, QueueRecord, Transition};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::auth::{Caller, Needed, authenticate};
use crate::problem::Problem;
use crate::replay::{Input, Notes, Replay, replay_many};

type AppResult = Result<Response, Problem>;

pub const LIST_LIMIT_DEFAULT: u32 = 100;
pub const LIST_LIMIT_MAX: u32 = 1000;
pub const BULK_LIMIT_DEFAULT: u32 = 100;
pub const BULK_LIMIT_MAX: u32 = 1000;

/// An operator's move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Acknowledge,
    Resolve,
    Discard,
    Replay,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Action> {
        match raw {
            "acknowledge" => Some(Action::Acknowledge),
            "resolve" => Some(Action::Resolve),
            "discard" => Some(Action::Discard),
            "replay" => Some(Action::Replay),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
            Action::Discard => "discard",
            Action::Replay => "replay",
        }
    }

    /// Where the move goes and the statuses it starts from.
    pub fn moves(self) -> (ExceptionStatus, &'static [ExceptionStatus]) {
        use ExceptionStatus::*;
        match self {
            Action::Acknowledge => (Acknowledged, &[Open]),
            Action::Resolve => (Resolved, &[Open, Acknowledged]),
            Action::Discard => (Discarded, &[Open, Acknowledged]),
            Action::Replay => (Replayed, &[Open, Acknowledged]),
        }
    }
}

fn store_problem(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(format!("the exception store could not answer ({e}); retry"))
}

fn ts(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |us| json!(Timestamp::from_micros(us)))
}

/// A record on the wire: the record, who changed it last and why, its kind's policy, what
/// can be replayed, and what the work queue did with it.
pub fn record_json(st: &AppState, r: &QueueRecord) -> Value {
    let mut v = serde_json::to_value(&r.record).expect("records serialize");
    let obj = v.as_object_mut().expect("a record is an object");
    obj.insert("actor".into(), json!(r.actor));
    obj.insert("note".into(), json!(r.note));
    obj.insert(
        "policy".into(),
        json!(st.config.exceptions.policy(r.record.kind).as_str()),
    );
    obj.insert(
        "replay".into(),
        json!(Input::of(&r.record).ok().map(|i| i.label())),
    );
    obj.insert("attempts".into(), json!(r.attempts));
    obj.insert("attempted_at".into(), ts(r.attempted_at_us));
    obj.insert("held_at".into(), ts(r.held_at_us));
    obj.insert("notified_at".into(), ts(r.notified_at_us));
    obj.insert("corrected_at".into(), ts(r.corrected_at_us));
    v
}

/// The filters `GET /v1/exceptions` and bulk moves share.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A kind, or several separated by commas.
    #[serde(default)]
    kind: Option<String>,
    /// A status, several separated by commas, `active` (open and acknowledged) or `closed`
    /// (resolved, replayed and discarded).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    entity_prefix: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    /// RFC 3339: raised at or after.
    #[serde(default)]
    since: Option<String>,
    /// RFC 3339: raised before.
    #[serde(default)]
    until: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.status.is_none()
            && self.entity_prefix.is_none()
            && self.correlation_id.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// The store query; `field` prefixes the names of offending fields (`filter.` in a body).
    fn query(&self, field: &str) -> Result<ExceptionQuery, Problem> {
        let bad = |name: &str, detail: String| {
            Problem::bad_request("invalid-parameter", detail).field(format!("{field}{name}"))
        };
        let mut q = ExceptionQuery::default();
        for k in list(&self.kind) {
            q.kinds.push(ExceptionKind::parse(k).ok_or_else(|| {
                let kinds: Vec<&str> = ExceptionKind::ALL.iter().map(|k| k.as_str()).collect();
                bad(
                    "kind",
                    format!(
                        "unknown exception kind {k:?}; kinds are {}",
                        kinds.join(", ")
                    ),
                )
            })?);
        }
        for s in list(&self.status) {
            use ExceptionStatus::*;
            match s {
                "active" => q.statuses.extend([Open, Acknowledged]),
                "closed" => q.statuses.extend([Resolved, Replayed, Discarded]),
                other => q
                    .statuses
                    .push(ExceptionStatus::parse(other).ok_or_else(|| {
                    bad(
                        "status",
                        format!(
                            "unknown status {other:?}; use open, acknowledged, resolved, replayed, \
                             discarded, active or closed"
                        ),
                    )
                })?),
            }
        }
        q.entity_prefix = self.entity_prefix.clone().filter(|p| !p.is_empty());
        q.correlation_id = self.correlation_id.clone();
        let time = |name: &str, raw: &Option<String>| -> Result<Option<i64>, Problem> {
            raw.as_deref()
                .map(|t| {
                    Timestamp::parse_rfc3339(t)
                        .map(|t| t.as_micros())
                        .map_err(|e| bad(name, format!("{name} must be an RFC 3339 time: {e}")))
                })
                .transpose()
        };
        q.since_us = time("since", &self.since)?;
        q.until_us = time("until", &self.until)?;
        Ok(q)
    }
}

fn list(raw: &Option<String>) -> impl Iterator<Item = &str> {
    raw.as_deref()
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `GET /v1/exceptions` parameters: the [`Filter`] fields, `limit` and `cursor`.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub entity_prefix: Option<String>,
    pub correlation_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One page of the work queue and the counts beside it.
#[derive(Debug)]
pub struct ExceptionPage {
    /// Newest first.
    pub records: Vec<QueueRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Everything the filter matches, by kind and status.
    pub matching: Vec<(ExceptionKind, ExceptionStatus, u64)>,
    /// Open and acknowledged records by kind, whatever the filter.
    pub open_by_kind: Vec<(ExceptionKind, u64)>,
}

/// The records `p` selects, a page at a time (`query`).
pub async fn page(st: &AppState, caller: &Caller, p: ListParams) -> Result<ExceptionPage, Problem> {
    caller.require(Needed::Query)?;
    let filter = Filter {
        kind: p.kind,
        status: p.status,
        entity_prefix: p.entity_prefix,
        correlation_id: p.correlation_id,
        since: p.since,
        until: p.until,
    };
    let mut query = filter.query("")?;
    let limit = p
        .limit
        .unwrap_or(LIST_LIMIT_DEFAULT)
        .clamp(1, LIST_LIMIT_MAX);
    // One more than a page says whether there is a next one.
    query.limit = limit + 1;
    query.after = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            Problem::bad_request(
                "invalid-parameter",
                "cursor: send back next_cursor of the previous page as it was",
            )
            .field("cursor")
        })?),
    };
    let (mut page, matching, open_by_kind) = st
        .exceptions
        .call(move |s| -> crossdock_store::Result<_> {
            Ok((
                s.query_exceptions(&query)?,
                s.count_exceptions(&query)?,
                s.exception_counts()?,
            ))
        })
        .await
        .map_err(store_problem)?
        .map_err(store_problem)?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = match page.last() {
        Some(last) if more => Some(
            Cursor {
                created_at_us: last.record.created_at.as_micros(),
                id: last.record.id.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(ExceptionPage {
        records: page,
        next_cursor,
        matching,
        open_by_kind,
    })
}

/// Open and acknowledged records by kind (`query`): the counts alone, for a glance.
pub async fn open_by_kind(
    st: &AppState,
    caller: &Caller,
) -> Result<Vec<(ExceptionKind, u64)>, Problem> {
    caller.require(Needed::Query)?;
    st.exceptions
        .call(|s| s.exception_counts())
        .await
        .map_err(store_problem)?
        .map_err(store_problem)
}

/// Record `id` as it is now (`query`).
pub async fn record(st: &AppState, caller: &Caller, id: &str) -> Result<QueueRecord, Problem> {
    caller.require(Needed::Query)?;
    crate::replay::read(st, &[id.to_string()])
        .await
        .map_err(store_problem)?
        .pop()
        .ok_or_else(|| no_such(id))
}

/// `GET /v1/exceptions`: newest first, paged by `cursor` (`next_cursor` of the previous page,
/// null on the last page), with the counts of everything the filter matches and the open counts by kind.
pub async fn get_exceptions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let page = page(&st, &caller, p).await?;
    let mut by_kind: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut total = 0u64;
    for (kind, status, n) in &page.matching {
        total += n;
        by_kind
            .entry(kind.as_str())
            .or_default()
            .insert(status.as_str().to_string(), json!(n));
    }
    let open_by_kind: Map<String, Value> = page
        .open_by_kind
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    let list: Vec<Value> = page.records.iter().map(|r| record_json(&st, r)).collect();
    Ok(Json(json!({
        "exceptions": list,
        "next_cursor": page.next_cursor,
        "matching": {"total": total, "by_kind": by_kind},
        "open_by_kind": open_by_kind,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: String,
}

fn note_of(body: &[u8]) -> Result<String, Problem> {
    let b: NoteBody = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!("expected {{\"note\": \"...\"}}: {e}"),
        )
        .field("note")
    })?;
    if b.note.trim().is_empty() {
        return Err(
            Problem::bad_request("missing-note", "say why in \"note\"; it is audited")
                .field("note"),
        );
    }
    Ok(b.note)
}

fn invalid_transition(action: Action, r: &QueueRecord) -> Problem {
    let (_, from) = action.moves();
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Problem::new(
        StatusCode::CONFLICT,
        "invalid-transition",
        "Conflict",
        format!(
            "exception {} is {}; {} moves only a record that is {}",
            r.record.id,
            r.record.status.as_str(),
            action.as_str(),
            from.join(" or ")
        ),
    )
    .with("record_status", r.record.status.as_str())
}

fn no_such(id: &str) -> Problem {
    Problem::not_found("no-such-exception", format!("no exception {id:?}"))
}

/// `POST /v1/exceptions/{id}/{acknowledge|resolve|discard|replay}` with `{"note": "..."}`.
pub async fn post_action(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let action = Action::parse(&action).ok_or_else(|| {
        Problem::not_found(
            "no-such-route",
            format!("{action:?}: use acknowledge, resolve, discard or replay"),
        )
    })?;
    caller.require(Needed::Admin)?;
    let note = note_of(&body)?;
    match act(&st, &caller, &id, action, note).await? {
        Acted::Moved(record) => {
            Ok(Json(json!({"exception": record_json(&st, &record)})).into_response())
        }
        Acted::Replayed {
            record,
            input,
            report,
        } => Ok(Json(json!({
            "exception": record_json(&st, &record),
            "input": input,
            "replayed": replayed_name(&record),
            "report": report,
        }))
        .into_response()),
    }
}

/// What an operator's move did.
#[derive(Debug)]
pub enum Acted {
    /// Acknowledged, resolved or discarded: the record as moved.
    Moved(QueueRecord),
    /// Ran its kept input again and was moved to `replayed`.
    Replayed {
        record: QueueRecord,
        /// What ran (`file`, `request`, `dead_letter`).
        input: &'static str,
        report: Value,
    },
}

/// One move of record `id`, audited with the caller's token name and `note` (`admin`). A
/// closed record answers 409 `invalid-transition`; a replay that fails again 422
/// `replay-failed` (the record keeps its status, with a note saying why).
pub async fn act(
    st: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    note: String,
) -> Result<Acted, Problem> {
    caller.require(Needed::Admin)?;
    if note.trim().is_empty() {
        return Err(
            Problem::bad_request("missing-note", "say why in \"note\"; it is audited")
                .field("note"),
        );
    }
    if action == Action::Replay {
        let record = crate::replay::read(st, &[id.to_string()])
            .await
            .map_err(store_problem)?
            .pop()
            .ok_or_else(|| no_such(id))?;
        let notes = Notes {
            actor: &caller.name,
            note: &note,
            failed: &|why| format!("replay failed: {why}"),
        };
        let result = replay_many(st, std::slice::from_ref(&record), &notes)
            .await
            .map_err(store_problem)?
            .pop()
            .unwrap_or(Replay::Missing);
        return match result {
            Replay::Done {
                record,
                input,
                report,
            } => Ok(Acted::Replayed {
                record,
                input,
                report,
            }),
            Replay::Failed {
                record,
                input,
                reason,
                report,
            } => Err(Problem::unprocessable(
                "replay-failed",
                format!(
                    "the {input} ran again and failed: {reason}; the record stays {}, with a note",
                    record.record.status.as_str()
                ),
            )
            .with("exception", record_json(st, &record))
            .with("report", report)),
            Replay::NotReplayable(why) => Err(Problem::unprocessable("not-replayable", why)),
            Replay::Refused(r) => Err(invalid_transition(action, &r)),
            Replay::Missing => Err(no_such(id)),
        };
    }
    let (to, from) = action.moves();
    let moved = crate::replay::transition(
        st,
        vec![id.to_string()],
        to,
        from.to_vec(),
        &caller.name,
        &note,
    )
    .await
    .map_err(store_problem)?;
    match moved.into_iter().next() {
        Some(Transition::Changed(r)) => Ok(Acted::Moved(r)),
        Some(Transition::Refused(r)) => Err(invalid_transition(action, &r)),
        Some(Transition::Missing) | None => Err(no_such(id)),
    }
}

/// The stored file a partner-file record names, for the answer of a replay.
fn replayed_name(r: &QueueRecord) -> Value {
    match Input::of(&r.record) {
        Ok(Input::File { file, .. }) => json!(file),
        _ => Value::Null,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: String,
    #[serde(default)]
    filter: Filter,
    note: String,
    #[serde(default)]
    limit: Option<u32>,
}

/// `POST /v1/exceptions/bulk`: one move for every record the filter matches, oldest first, at
/// most `limit` (default 100, at most 1000). Without a `status` in the filter it selects the
/// records the move starts from. Answers what was applied and, per record skipped, why.
pub async fn post_bulk(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    caller.require(Needed::Admin)?;
    let b: BulkBody = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!(
                "expected {{\"action\": \"acknowledge|resolve|discard|replay\", \"filter\": {{...}}, \
                 \"note\": \"...\", \"limit\": N}}: {e}"
            ),
        )
    })?;
    let action = Action::parse(&b.action).ok_or_else(|| {
        Problem::bad_request(
            "invalid-parameter",
            format!(
                "action {:?}: use acknowledge, resolve, discard or replay",
                b.action
            ),
        )
        .field("action")
    })?;
    if b.note.trim().is_empty() {
        return Err(
            Problem::bad_request("missing-note", "say why in \"note\"; it is audited")
                .field("note"),
        );
    }
    if b.filter.is_empty() {
        return Err(Problem::bad_request(
            "missing-filter",
            "name at least one condition in \"filter\" (kind, status, entity_prefix, correlation_id, \
             since, until), so that a bulk move never takes every record by accident",
        )
        .field("filter"));
    }
    let limit = b.limit.unwrap_or(BULK_LIMIT_DEFAULT);
    if !(1..=BULK_LIMIT_MAX).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid-parameter",
            format!("limit must be 1 ..= {BULK_LIMIT_MAX}, got {limit}"),
        )
        .field("limit"));
    }
    let mut query = b.filter.query("filter.")?;
    let (to, from) = action.moves();
    if query.statuses.is_empty() {
        query.statuses = from.to_vec();
    }
    query.oldest_first = true;
    // One more than the limit says whether more records match.
    query.limit = limit + 1;
    let mut matched = st
        .exceptions
        .call(move |s| s.query_exceptions(&query))
        .await
        .map_err(store_problem)?
        .map_err(store_problem)?;
    let more = matched.len() > limit as usize;
    matched.truncate(limit as usize);
    let mut results: Vec<Value> = Vec::with_capacity(matched.len());
    let mut applied = 0usize;
    let skip = |id: &str, status: ExceptionStatus, reason: String| json!({"id": id, "outcome": "skipped", "status": status.as_str(), "reason": reason});
    if action == Action::Replay {
        let notes = Notes {
            actor: &caller.name,
            note: &b.note,
            failed: &|why| format!("replay failed: {why}"),
        };
        let outcomes = replay_many(&st, &matched, &notes)
            .await
            .map_err(store_problem)?;
        for (r, outcome) in matched.iter().zip(outcomes) {
            let id = r.record.id.as_str();
            results.push(match outcome {
                Replay::Done { record, input, .. } => {
                    applied += 1;
                    json!({"id": id, "outcome": "applied", "status": record.record.status.as_str(), "input": input})
                }
                Replay::Failed { record, reason, .. } => skip(
                    id,
                    record.record.status,
                    format!("replayed and failed again: {reason}"),
                ),
                Replay::NotReplayable(why) => skip(id, r.record.status, why),
                Replay::Refused(now) => skip(
                    id,
                    now.record.status,
                    invalid_transition(action, &now).detail,
                ),
                Replay::Missing => skip(id, r.record.status, "no longer there".into()),
            });
        }
    } else {
        let ids: Vec<String> = matched.iter().map(|r| r.record.id.clone()).collect();
        let moved = crate::replay::transition(&st, ids, to, from.to_vec(), &caller.name, &b.note)
            .await
            .map_err(store_problem)?;
        for (r, t) in matched.iter().zip(moved) {
            let id = r.record.id.as_str();
            results.push(match t {
                Transition::Changed(now) => {
                    applied += 1;
                    json!({"id": id, "outcome": "applied", "status": now.record.status.as_str()})
                }
                Transition::Refused(now) => skip(
                    id,
                    now.record.status,
                    invalid_transition(action, &now).detail,
                ),
                Transition::Missing => skip(id, r.record.status, "no longer there".into()),
            });
        }
    }
    Ok(Json(json!({
        "action": action.as_str(),
        "matched": matched.len(),
        "applied": applied,
        "skipped": matched.len() - applied,
        "more": more,
        "results": results,
    }))
    .into_response())
}
