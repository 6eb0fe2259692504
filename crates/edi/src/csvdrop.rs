//! CSV drops: stock snapshots (`item,location,qty[,lot][,as_of]` → `inventory.counted`) and
//! adjustments (`item,location,delta,reason[,lot]` → `inventory.adjusted`) from a partner's
//! inbound folder. A count's time is its `as_of` (RFC 3339), else the file's modification time.
//! Codes go through the partner's crosswalk. A bad row becomes an exception keeping the row and
//! the other rows still apply; event ids derive from the file's content and the line, so a
//! resent file is a repeat.

use crossdock_master::{CsvSheet, MasterData};
use crossdock_model::event::{Adjusted, Counted, EventData};
use crossdock_model::{Event, ExceptionKind, ExceptionRecord, Lot, Timestamp};

use crate::partner::PartnerSpec;

/// What a CSV file maps to.
#[derive(Debug, Default)]
pub struct CsvMapped {
    pub events: Vec<Event>,
    pub exceptions: Vec<ExceptionRecord>,
    /// Rows read (not blank).
    pub rows: usize,
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
    let mut out = CsvMapped::default();
    let mut sheet = CsvSheet::new(file);
    let required: &[&str] = if snapshot {
        &["item", "location", "qty"]
    } else {
        &["item", "location", "delta", "reason"]
    };
    sheet.read(text, required, |_, line, get| {
        out.rows += 1;
        let raw = lines
            .get(usize::try_from(line).unwrap_or(0).saturating_sub(1))
            .map(|l| l.to_string());
        let fail = |out: &mut CsvMapped, kind: ExceptionKind, reason: String| {
            out.exceptions.push(ExceptionRecord::open(
                kind,
                &format!("csv\0{}\0{digest:016x}\0{line}", partner.id),
                format!("file:{}/{file}#{line}", partner.id),
                Some(format!("csv:{}/{digest:016x}", partner.id)),
                format!("{file} line {line}: {reason}"),
                raw.clone(),
                Timestamp::now(),
            ));
        };
        let item = match get("item").map(|c| master.resolve_item(&partner.id, &c)) {
            Some(Ok(i)) => i,
            Some(Err(e)) => return fail(&mut out, ExceptionKind::UnknownItem, e.to_string()),
            None => {
                return fail(
                    &mut out,
                    ExceptionKind::SchemaViolation,
                    "item is empty".into(),
                );
            }
        };
        let location = match get("location").map(|c| master.resolve_location(&partner.id, &c)) {
            Some(Ok(l)) => l,
            Some(Err(e)) => return fail(&mut out, ExceptionKind::UnknownLocation, e.to_string()),
            None => {
                return fail(
                    &mut out,
                    ExceptionKind::SchemaViolation,
                    "location is empty".into(),
                );
            }
        };
        let lot = match get("lot").map(|l| Lot::new(&l)) {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                return fail(&mut out, ExceptionKind::SchemaViolation, format!("lot {e}"));
            }
            None => None,
        };
        // An `as_of` column says when each count was true; else the file's time.
        let time = match get("as_of").map(|t| Timestamp::parse_rfc3339(&t)) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                return fail(
                    &mut out,
                    ExceptionKind::SchemaViolation,
                    format!("as_of: {e}"),
                );
            }
            None => as_of,
        };
        let column = if snapshot { "qty" } else { "delta" };
        let number = match get(column).map(|q| q.parse::<i64>()) {
            Some(Ok(n)) if !snapshot || n >= 0 => n,
            Some(Ok(n)) => {
                return fail(
                    &mut out,
                    ExceptionKind::SchemaViolation,
                    format!("qty {n} is negative; a count is 0 or more"),
                );
            }
            Some(Err(_)) | None => {
                return fail(
                    &mut out,
                    ExceptionKind::SchemaViolation,
                    format!(
                        "{column} {:?} is not a whole number",
                        get(column).unwrap_or_default()
                    ),
                );
            }
        };
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
        out.events.push(Event {
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
    for p in sheet.problems() {
        let raw = lines
            .get(usize::try_from(p.line).unwrap_or(0).saturating_sub(1))
            .map(|l| l.to_string());
        out.exceptions.push(ExceptionRecord::open(
            ExceptionKind::SchemaViolation,
            &format!("csv\0{}\0{digest:016x}\0{}", partner.id, p.line),
            format!("file:{}/{file}#{}", partner.id, p.line),
            Some(format!("csv:{}/{digest:016x}", partner.id)),
            format!("{file} line {}: {}", p.line, p.reason),
            raw,
            Timestamp::now(),
        ));
    }
    Ok(out)
}
