//! The exceptions work queue's view of the `exceptions` table: filtered and paged reads, lifecycle
//! moves enforced by conditional updates (one transaction, one audit row per record), and the
//! bookkeeping the queue's policies keep per record (automatic replay attempts, handed to a
//! person, notified, corrected by the hub itself).
//!
//! Lifecycle moves are checked where the row is written, never by reading first and writing
//! after: two operators acting on one record at once get one move and one refusal.

use crossdock_model::{ExceptionKind, ExceptionRecord, ExceptionStatus};

use crate::Result;

/// Selects exception records; every given condition must hold. The work-queue conditions
/// (`held`, `notified`, …) are `None` for an operator's query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionQuery {
    /// Any of these ids; empty: every id.
    pub ids: Vec<String>,
    /// Any of these kinds; empty: every kind.
    pub kinds: Vec<ExceptionKind>,
    /// Any of these statuses; empty: every status.
    pub statuses: Vec<ExceptionStatus>,
    /// `entity` starts with this (`file:acme/`, `item:SKU-1`).
    pub entity_prefix: Option<String>,
    pub correlation_id: Option<String>,
    /// `created_at` (when the hub received the input) at or after this.
    pub since_us: Option<i64>,
    /// `created_at` before this.
    pub until_us: Option<i64>,
    /// Rows after this one in the query's order (the last row of the previous page).
    pub after: Option<Cursor>,
    /// Oldest first (the work queue); newest first otherwise (operators).
    pub oldest_first: bool,
    /// Whether the work queue has handed the record to a person.
    pub held: Option<bool>,
    /// Whether the configured webhook has acknowledged a notification of the record.
    pub notified: Option<bool>,
    /// Whether the work queue saw the hub correct what the record is about.
    pub corrected: Option<bool>,
    /// Never replayed automatically, or last at or before this.
    pub attempted_before_us: Option<i64>,
    /// Fewer automatic replay attempts than this.
    pub attempts_below: Option<u32>,
    pub limit: u32,
}

/// A position in a query's order: the `(created_at, id)` of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_us: i64,
    pub id: String,
}

impl Cursor {
    /// The opaque text a client sends back (`<created_at_us>_<id>`).
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at_us, self.id)
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let (at, id) = raw.split_once('_')?;
        Some(Cursor {
            created_at_us: at.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// A record with what the queue knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRecord {
    pub record: ExceptionRecord,
    /// Who made the last change and why; empty until someone does.
    pub actor: String,
    pub note: String,
    /// Automatic replays so far.
    pub attempts: u32,
    pub attempted_at_us: Option<i64>,
    pub held_at_us: Option<i64>,
    pub notified_at_us: Option<i64>,
    pub corrected_at_us: Option<i64>,
}

/// What a lifecycle move did to one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Moved; the record as changed.
    Changed(QueueRecord),
    /// Not moved: its status is not one the move starts from. The record as it is.
    Refused(QueueRecord),
    Missing,
}

/// Bookkeeping columns the work queue sets once per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMark {
    /// Handed to a person (policy `hold`, retries used up, nothing to replay, nothing the hub
    /// corrects).
    Held,
    /// The configured webhook answered 2xx to the notification.
    Notified,
    /// The hub corrected what the record is about, and policy `hold` kept it open.
    Corrected,
}

impl QueueMark {
    pub fn column(self) -> &'static str {
        match self {
            QueueMark::Held => "held_at_us",
            QueueMark::Notified => "notified_at_us",
            QueueMark::Corrected => "corrected_at_us",
        }
    }
}

/// The audit action of a move to `to`.
pub fn audit_action(to: ExceptionStatus) -> &'static str {
    match to {
        ExceptionStatus::Open => "reopened",
        other => other.as_str(),
    }
}

pub trait ExceptionStore {
    /// The records `query` selects, in its order, at most `limit`.
    fn query_exceptions(&mut self, query: &ExceptionQuery) -> Result<Vec<QueueRecord>>;
    /// How many records `query` selects (its cursor and limit ignored), by kind and status.
    fn count_exceptions(
        &mut self,
        query: &ExceptionQuery,
    ) -> Result<Vec<(ExceptionKind, ExceptionStatus, u64)>>;
    /// Moves each record of `ids` to `to` if its status is one of `from`, in one transaction,
    /// with the actor and note of the change and one audit row per record moved.
    fn transition_exceptions(
        &mut self,
        ids: &[String],
        to: ExceptionStatus,
        from: &[ExceptionStatus],
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Vec<Transition>>;
    /// Records why on record `id` (actor, note, one audit row) without moving it; the record as
    /// changed, `None` when there is no such record.
    fn note_exception(
        &mut self,
        id: &str,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Option<QueueRecord>>;
    /// Sets `mark` on record `id` unless it is set already; with `note` (actor, text) also
    /// records why, with an audit row. Returns whether it was set now.
    fn mark_exception(
        &mut self,
        id: &str,
        mark: QueueMark,
        note: Option<(&str, &str)>,
        at_us: i64,
    ) -> Result<bool>;
    /// Counts one automatic replay attempt of record `id`, durably; returns the attempts so far
    /// (0 when there is no such record).
    fn count_attempt(&mut self, id: &str, at_us: i64) -> Result<u32>;
    /// The parked dead letter behind a `delivery_failed` record, if one is still parked.
    fn parked_letter_of(&mut self, exception_id: &str) -> Result<Option<i64>>;
    /// When `endpoint` last recorded a delivered value for `key`.
    fn sent_at(&mut self, endpoint: &str, key: &str) -> Result<Option<i64>>;
}

/// One bound value of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// The columns every queue read selects, in the order [`QueueRecord`] decoders expect:
/// the record's own columns, then the queue's.
macro_rules! queue_columns {
    () => {
        concat!(
            exception_columns!(),
            ", actor, note, attempts, attempted_at_us, held_at_us, notified_at_us, corrected_at_us"
        )
    };
}

/// The `WHERE` clause of `q` (cursor included when `paged`) and its arguments. `param(n)` spells
/// the n-th placeholder; `text` wraps a text column for byte-order comparison.
pub(crate) fn where_clause(
    q: &ExceptionQuery,
    paged: bool,
    param: &dyn Fn(usize) -> String,
    text: &dyn Fn(&str) -> String,
) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let bind = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        param(args.len())
    };
    if !q.ids.is_empty() {
        let list: Vec<String> = q
            .ids
            .iter()
            .map(|id| bind(&mut args, Arg::Text(id.clone())))
            .collect();
        conds.push(format!("id IN ({})", list.join(", ")));
    }
    if !q.kinds.is_empty() {
        let list: Vec<String> = q
            .kinds
            .iter()
            .map(|k| bind(&mut args, Arg::Text(k.as_str().into())))
            .collect();
        conds.push(format!("kind IN ({})", list.join(", ")));
    }
    if !q.statuses.is_empty() {
        let list: Vec<String> = q
            .statuses
            .iter()
            .map(|s| bind(&mut args, Arg::Text(s.as_str().into())))
            .collect();
        conds.push(format!("status IN ({})", list.join(", ")));
    }
    if let Some(prefix) = &q.entity_prefix {
        // A range the entity index serves, then the exact test.
        let lo = bind(&mut args, Arg::Text(prefix.clone()));
        let hi = bind(&mut args, Arg::Text(format!("{prefix}\u{10FFFF}")));
        let exact = bind(&mut args, Arg::Text(prefix.clone()));
        let entity = text("entity");
        conds.push(format!(
            "{entity} >= {lo} AND {entity} <= {hi} AND substr(entity, 1, length({exact})) = {exact}"
        ));
    }
    if let Some(c) = &q.correlation_id {
        conds.push(format!(
            "correlation_id = {}",
            bind(&mut args, Arg::Text(c.clone()))
        ));
    }
    if let Some(t) = q.since_us {
        conds.push(format!("created_at_us >= {}", bind(&mut args, Arg::Int(t))));
    }
    if let Some(t) = q.until_us {
        conds.push(format!("created_at_us < {}", bind(&mut args, Arg::Int(t))));
    }
    for (flag, column) in [
        (q.held, "held_at_us"),
        (q.notified, "notified_at_us"),
        (q.corrected, "corrected_at_us"),
    ] {
        if let Some(set) = flag {
            conds.push(format!("{column} IS {}NULL", if set { "NOT " } else { "" }));
        }
    }
    if let Some(t) = q.attempted_before_us {
        conds.push(format!(
            "(attempted_at_us IS NULL OR attempted_at_us <= {})",
            bind(&mut args, Arg::Int(t))
        ));
    }
    if let Some(n) = q.attempts_below {
        conds.push(format!(
            "attempts < {}",
            bind(&mut args, Arg::Int(i64::from(n)))
        ));
    }
    if paged && let Some(c) = &q.after {
        let at = bind(&mut args, Arg::Int(c.created_at_us));
        let at2 = bind(&mut args, Arg::Int(c.created_at_us));
        let id = bind(&mut args, Arg::Text(c.id.clone()));
        let cmp = if q.oldest_first { ">" } else { "<" };
        conds.push(format!(
            "(created_at_us {cmp} {at} OR (created_at_us = {at2} AND {} > {id}))",
            text("id")
        ));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// The full paged select of `q`.
pub(crate) fn select_sql(
    q: &ExceptionQuery,
    param: &dyn Fn(usize) -> String,
    text: &dyn Fn(&str) -> String,
) -> (String, Vec<Arg>) {
    let (filter, mut args) = where_clause(q, true, param, text);
    let dir = if q.oldest_first { "" } else { " DESC" };
    args.push(Arg::Int(i64::from(q.limit)));
    let sql = format!(
        "SELECT {} FROM exceptions{filter} ORDER BY created_at_us{dir}, {} LIMIT {}",
        queue_columns!(),
        text("id"),
        param(args.len())
    );
    (sql, args)
}

/// The count by kind and status of `q`.
pub(crate) fn count_sql(
    q: &ExceptionQuery,
    param: &dyn Fn(usize) -> String,
    text: &dyn Fn(&str) -> String,
) -> (String, Vec<Arg>) {
    let (filter, args) = where_clause(q, false, param, text);
    (
        format!("SELECT kind, status, COUNT(*) FROM exceptions{filter} GROUP BY kind, status"),
        args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_param(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn an_empty_query_selects_everything_newest_first() {
        let (sql, args) = select_sql(
            &ExceptionQuery {
                limit: 5,
                ..Default::default()
            },
            &sqlite_param,
            &|c| c.to_string(),
        );
        assert!(
            sql.ends_with("FROM exceptions ORDER BY created_at_us DESC, id LIMIT ?1"),
            "{sql}"
        );
        assert_eq!(args, vec![Arg::Int(5)]);
    }

    #[test]
    fn every_condition_binds_its_own_placeholder() {
        let q = ExceptionQuery {
            kinds: vec![ExceptionKind::UnknownItem, ExceptionKind::UomMismatch],
            statuses: vec![ExceptionStatus::Open],
            entity_prefix: Some("file:acme/".into()),
            correlation_id: Some("c-1".into()),
            since_us: Some(1),
            until_us: Some(2),
            after: Some(Cursor {
                created_at_us: 9,
                id: "ex-1".into(),
            }),
            oldest_first: true,
            held: Some(false),
            notified: Some(true),
            attempted_before_us: Some(3),
            attempts_below: Some(4),
            limit: 10,
            ..Default::default()
        };
        let (sql, args) = select_sql(&q, &sqlite_param, &|c| c.to_string());
        let placeholders = (1..=args.len())
            .filter(|n| sql.contains(&format!("?{n}")))
            .count();
        assert_eq!(placeholders, args.len(), "{sql}");
        assert!(sql.contains("held_at_us IS NULL"), "{sql}");
        assert!(sql.contains("notified_at_us IS NOT NULL"), "{sql}");
        assert!(
            sql.contains("created_at_us > ?"),
            "oldest first pages forward: {sql}"
        );
        assert!(sql.contains("ORDER BY created_at_us, id"), "{sql}");
    }

    #[test]
    fn cursors_round_trip_and_reject_noise() {
        let c = Cursor {
            created_at_us: 1_700_000_000_000_000,
            id: "ex-00ff".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nonsense"), None);
        assert_eq!(Cursor::decode("x_ex-1"), None);
    }
}
