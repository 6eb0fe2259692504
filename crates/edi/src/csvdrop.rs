//! CSV drops: stock snapshots (`item,location,qty[,lot][,as_of]` → `inventory.counted`) and
//! adjustments (`item,location,delta,reason[,lot]` → `inventory.adjusted`) from a partner's
//! inbound folder. A count's time is its `as_of` (RFC 3339), else the file's modification time.
//! Codes go through the partner's crosswalk. Event ids derive from the file's content and the
//! line, so a resent file is a repeat.
//!
//! A file is applied whole or not at all, as the master-data loaders do: every row is checked
//! first (codes, numbers, times, and the check every door makes, `EventData::validate`), and a
//! file with a bad row applies nothing. Each bad row is named by its line ([`CsvMapped::bad_rows`])
//! and becomes an exception keeping the row; once the rows are fixed, the corrected file
//! applies. A snapshot states one quantity per position (item, location, lot), so two rows for
//! one position are bad rows too (which one is meant cannot be told); adjustments are
//! movements, and several for one position are several movements.

use std::collections::HashMap;

use crossdock_master::{CsvSheet, MasterData};
use crossdock_model::event::{Adjusted, Counted, EventData};
use crossdock_model::{Event, ExceptionKind, ExceptionRecord, ItemId, LocationId, Lot, Timestamp};
use serde::Serialize;

use crate::partner::PartnerSpec;

/// What a CSV file maps to.
#[derive(Debug, Default)]
pub struct CsvMapped {
    /// Empty when any row is bad.
    pub events: Vec<Event>,
    /// One per bad row, keeping the row.
    pub exceptions: Vec<ExceptionRecord>,
    /// Every bad row, by line; the file applies nothing when there is one.
    pub bad_rows: Vec<BadRow>,
    /// Rows read (not blank).
    pub rows: usize,
}

impl CsvMapped {
    /// Whether the file is refused whole (it has a bad row).
    pub fn refused(&self) -> bool {
        !self.bad_rows.is_empty()
    }
}

/// One bad row of a CSV drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
    /// The exception record opened for it.
    pub exception_id: String,
}

/// Why a whole file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("{0}: the file is not UTF-8 text")]
    NotText(String),
    #[error(
        "{file}: the header must be item,location,qty[,lot] (a snapshot) or item,location,delta,reason[,lot] (adjustments); it is {header:?}"
    )]
    Header { file: String, header: String },
}

/// Maps a CSV file from `partner`; `as_of` is the time of a snapshot's counts.
pub fn map_csv(
    bytes: &[u8],
    file: &str,
    partner: &PartnerSpec,
    master: &MasterData,
    as_of: Timestamp,
    received_at: Timestamp,
) -> Result<CsvMapped, CsvError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CsvError::NotText(file.to_string()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header = text.lines().next().unwrap_or_default().to_ascii_lowercase();
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let snapshot = columns.contains(&"qty");
    if !(columns.contains(&"item") && columns.contains(&"location"))
        || snapshot == columns.contains(&"delta")
    {
        return Err(CsvError::Header {
            file: file.to_string(),
            header: header.clone(),
        });
    }
    let digest = xxhash_rust::xxh3::xxh3_64(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let raw_line = |line: u64| {
        lines
            .get(usize::try_from(line).unwrap_or(0).saturating_sub(1))
            .map(|l| l.to_string())
    };
    let mut out = CsvMapped::default();
    let mut events = Vec::new();
    // Bad rows: (line, kind, reason).
    let mut bad: Vec<(u64, ExceptionKind, String)> = Vec::new();
    // A snapshot's positions, with the line that first named each.
    let mut positions: HashMap<(ItemId, LocationId, Option<Lot>), u64> = HashMap::new();
    let mut sheet = CsvSheet::new(file);
    let required: &[&str] = if snapshot {
        &["item", "location", "qty"]
    } else {
        &["item", "location", "delta", "reason"]
    };
    sheet.read(text, required, |_, line, get| {
        out.rows += 1;
        let mut fail = |kind: ExceptionKind, reason: String| bad.push((line, kind, reason));
        let item = match get("item").map(|c| master.resolve_item(&partner.id, &c)) {
            Some(Ok(i)) => i,
            Some(Err(e)) => return fail(ExceptionKind::UnknownItem, e.to_string()),
            None => return fail(ExceptionKind::SchemaViolation, "item is empty".into()),
        };
        let location = match get("location").map(|c| master.resolve_location(&partner.id, &c)) {
            Some(Ok(l)) => l,
            Some(Err(e)) => return fail(ExceptionKind::UnknownLocation, e.to_string()),
            None => return fail(ExceptionKind::SchemaViolation, "location is empty".into()),
        };
        let lot = match get("lot").map(|l| Lot::new(&l)) {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => return fail(ExceptionKind::SchemaViolation, format!("lot {e}")),
            None => None,
        };
        // An `as_of` column says when each count was true; else the file's time.
        let time = match get("as_of").map(|t| Timestamp::parse_rfc3339(&t)) {
            Some(Ok(t)) => t,
            Some(Err(e)) => return fail(ExceptionKind::SchemaViolation, format!("as_of: {e}")),
            None => as_of,
        };
        let column = if snapshot { "qty" } else { "delta" };
        let Some(number) = get(column).and_then(|q| q.parse::<i64>().ok()) else {
            return fail(
                ExceptionKind::SchemaViolation,
                format!(
                    "{column} {:?} is not a whole number",
                    get(column).unwrap_or_default()
                ),
            );
        };
        if snapshot {
            let key = (item.clone(), location.clone(), lot.clone());
            if let Some(first) = positions.get(&key) {
                let lot = lot.as_ref().map_or(String::new(), |l| format!(" lot {l}"));
                return fail(
                    ExceptionKind::SchemaViolation,
                    format!(
                        "{item} at {location}{lot} is also on line {first}; a snapshot has one \
                         row per position"
                    ),
                );
            }
            positions.insert(key, line);
        }
        let data = if snapshot {
            EventData::Counted(Counted {
                item,
                location,
                qty: number,
                lot,
            })
        } else {
            EventData::Adjusted(Adjusted {
                item,
                location,
                delta: number,
                reason: get("reason").unwrap_or_default(),
                lot,
            })
        };
        // The check every door makes (`POST /v1/events` too).
        if let Err(e) = data.validate() {
            let e = e.to_string();
            let e = e.strip_prefix("data.").unwrap_or(&e);
            return fail(
                ExceptionKind::SchemaViolation,
                format!("{} refused: {e}", data.type_name()),
            );
        }
        events.push(Event {
            id: format!("csv:{}/{digest:016x}/{line}", partner.id),
            source: partner.source.clone(),
            time,
            sequence: None,
            correlation_id: format!("csv:{}/{digest:016x}", partner.id),
            causation_id: None,
            data,
            received_at,
        });
    });
    bad.extend(
        sheet
            .problems()
            .iter()
            .map(|p| (p.line, ExceptionKind::SchemaViolation, p.reason.clone())),
    );
    bad.sort_by_key(|b| b.0);
    for (line, kind, reason) in bad {
        let record = ExceptionRecord::open(
            kind,
            &format!("csv\0{}\0{digest:016x}\0{line}", partner.id),
            format!("file:{}/{file}#{line}", partner.id),
            Some(format!("csv:{}/{digest:016x}", partner.id)),
            format!("{file} line {line}: {reason}; nothing in the file was applied"),
            raw_line(line),
            Timestamp::now(),
        );
        out.bad_rows.push(BadRow {
            line,
            reason,
            exception_id: record.id.clone(),
        });
        out.exceptions.push(record);
    }
    if out.bad_rows.is_empty() {
        out.events = events;
    }
    Ok(out)
}
