//! Snapshot files: CSV with a header naming `item`, `location`, `qty` (or `quantity`) and
//! optionally `status` (`sellable`, `quarantined`, `damaged`) and `lot`, in any order.

use std::collections::HashMap;

use crossdock_model::event::StockStatus;
use crossdock_model::{ItemId, LocationId, Lot, Timestamp};

use crate::SnapshotRow;

/// Why a snapshot cannot be read: where and what, precise enough to fix the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    /// 1-based line of the file; `None` for the file as a whole.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(column) = &self.column {
            write!(f, "{column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SnapshotError {}

/// A snapshot as read: its rows and, when the file has an `as_of` column, the latest time in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub rows: Vec<SnapshotRow>,
    pub as_of: Option<Timestamp>,
}

/// At most this many problems are listed before reading stops.
pub const ERRORS_MAX: usize = 20;

/// Reads a CSV snapshot. Every row is checked; on any problem the whole snapshot is refused
/// with the first [`ERRORS_MAX`] problems (a half-read snapshot would report false drift).
pub fn parse_csv(bytes: &[u8]) -> Result<Snapshot, Vec<SnapshotError>> {
    let mut rows = Vec::new();
    let as_of = parse_csv_into(bytes, |r| rows.push(r))?;
    Ok(Snapshot { rows, as_of })
}

/// [`parse_csv`], handing each good row to `sink` as it is read (no copy of the snapshot is
/// kept); returns the `as_of` column's latest time. On error, rows already handed over are to
/// be discarded.
pub fn parse_csv_into(
    bytes: &[u8],
    mut sink: impl FnMut(SnapshotRow),
) -> Result<Option<Timestamp>, Vec<SnapshotError>> {
    let whole = |message: String| {
        vec![SnapshotError {
            line: None,
            column: None,
            message,
        }]
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| whole(format!("cannot read the header: {e}")))?
        .clone();
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n.as_bytes())))
    };
    let (Some(item_at), Some(location_at), Some(qty_at)) = (
        find(&["item", "sku"]),
        find(&["location"]),
        find(&["qty", "quantity"]),
    ) else {
        return Err(whole(format!(
            "the header must name item, location and qty (found {:?})",
            String::from_utf8_lossy(header.as_slice())
        )));
    };
    let (status_at, lot_at, as_of_at) = (find(&["status"]), find(&["lot"]), find(&["as_of"]));
    let mut as_of: Option<Timestamp> = None;
    let mut errors = Vec::new();
    let mut locations: HashMap<Vec<u8>, LocationId> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                errors.push(SnapshotError {
                    line: e.position().map(|p| p.line()),
                    column: None,
                    message: e.to_string(),
                });
                break;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if let Some(at) = as_of_at {
            let raw = String::from_utf8_lossy(record.get(at).unwrap_or_default());
            match Timestamp::parse_rfc3339(&raw) {
                Ok(t) => as_of = Some(as_of.map_or(t, |a| a.max(t))),
                Err(e) => errors.push(SnapshotError {
                    line: Some(line),
                    column: Some("as_of".into()),
                    message: format!("{raw:?} is not an RFC 3339 time: {e}"),
                }),
            }
        }
        match parse_row(
            &record,
            item_at,
            location_at,
            qty_at,
            status_at,
            lot_at,
            &mut locations,
        ) {
            Ok(row) if errors.is_empty() => sink(row),
            Ok(_) => {}
            Err((column, message)) => {
                errors.push(SnapshotError {
                    line: Some(line),
                    column: Some(column.into()),
                    message,
                });
                if errors.len() >= ERRORS_MAX {
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(as_of)
    } else {
        Err(errors)
    }
}

fn parse_row(
    r: &csv::ByteRecord,
    item_at: usize,
    location_at: usize,
    qty_at: usize,
    status_at: Option<usize>,
    lot_at: Option<usize>,
    locations: &mut HashMap<Vec<u8>, LocationId>,
) -> Result<SnapshotRow, (&'static str, String)> {
    let field = |at: usize, name: &'static str| {
        let raw = r.get(at).unwrap_or_default();
        std::str::from_utf8(raw).map_err(|_| (name, "is not UTF-8".to_string()))
    };
    let item = ItemId::new(field(item_at, "item")?).map_err(|e| ("item", e.to_string()))?;
    let raw_location = r.get(location_at).unwrap_or_default();
    let location = match locations.get(raw_location) {
        Some(l) => l.clone(),
        None => {
            let l = LocationId::new(field(location_at, "location")?)
                .map_err(|e| ("location", e.to_string()))?;
            locations.insert(raw_location.to_vec(), l.clone());
            l
        }
    };
    let raw_qty = field(qty_at, "qty")?;
    let qty: i64 = raw_qty
        .parse()
        .map_err(|_| ("qty", format!("{raw_qty:?} is not a whole number")))?;
    if qty < 0 {
        return Err((
            "qty",
            format!("{qty} is negative; a snapshot counts what is there"),
        ));
    }
    let status = match status_at.map(|at| field(at, "status")).transpose()? {
        None | Some("") => None,
        Some(s) => Some(match s.to_ascii_lowercase().as_str() {
            "sellable" | "available" => StockStatus::Sellable,
            "quarantined" | "quarantine" | "hold" => StockStatus::Quarantined,
            "damaged" => StockStatus::Damaged,
            _ => {
                return Err((
                    "status",
                    format!("{s:?} is not sellable, quarantined or damaged"),
                ));
            }
        }),
    };
    let lot = match lot_at.map(|at| field(at, "lot")).transpose()? {
        None | Some("") => None,
        Some(l) => Some(Lot::new(l).map_err(|e| ("lot", e.to_string()))?),
    };
    Ok(SnapshotRow {
        item,
        location,
        qty,
        status,
        lot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_in_any_order_with_optional_status_and_lot() {
        let rows = parse_csv(
            b"location,qty,item,status,lot\n# a comment\nDC-1,5,SKU-1,,\nDC-2, 3 ,SKU-2,Damaged,L7\n",
        )
        .unwrap()
        .rows;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].item.as_str(), "SKU-1");
        assert_eq!(rows[0].status, None);
        assert_eq!(rows[1].qty, 3);
        assert_eq!(rows[1].status, Some(StockStatus::Damaged));
        assert_eq!(rows[1].lot.as_ref().map(|l| l.as_str()), Some("L7"));
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_column() {
        let errors = parse_csv(
            b"item,location,qty,status\nSKU-1,DC-1,x,\nSKU-2,DC-1,-4,\nSKU-3,DC-1,1,lost\nSKU-4,DC-1,2,\n",
        )
        .unwrap_err();
        let seen: Vec<(Option<u64>, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some(2), Some("qty")),
                (Some(3), Some("qty")),
                (Some(4), Some("status"))
            ]
        );
        assert!(
            errors[0]
                .to_string()
                .contains("\"x\" is not a whole number")
        );
    }

    #[test]
    fn a_header_without_the_needed_columns_is_refused_whole() {
        let errors = parse_csv(b"sku,qty\nSKU-1,5\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, None);
        assert!(errors[0].message.contains("item, location and qty"));
    }

    #[test]
    fn an_as_of_column_gives_the_snapshot_time() {
        let s = parse_csv(
            b"item,location,qty,as_of\nA,DC-1,1,2026-11-23T10:00:00Z\nB,DC-1,2,2026-11-23T10:05:00Z\n",
        )
        .unwrap();
        assert_eq!(
            s.as_of,
            Some(Timestamp::parse_rfc3339("2026-11-23T10:05:00Z").unwrap())
        );
        let bad = parse_csv(b"item,location,qty,as_of\nA,DC-1,1,yesterday\n").unwrap_err();
        assert_eq!(bad[0].column.as_deref(), Some("as_of"));
    }

    #[test]
    fn a_ragged_row_is_an_error_not_a_guess() {
        let errors = parse_csv(b"item,location,qty\nSKU-1,DC-1\n").unwrap_err();
        assert_eq!(errors[0].line, Some(2));
    }
}
