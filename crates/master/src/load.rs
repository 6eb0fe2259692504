//! Master data from CSV files with a header row. Columns are found by name (any order; extra
//! columns are ignored), every bad row is reported with its line, and a file with any bad row
//! loads nothing, so a half-applied master never exists.
//!
//! | file | columns (required in bold) |
//! |---|---|
//! | items | **item**, description, gtin (GTIN-8/12/13/14, UPC, EAN), base_uom (default `EA`) |
//! | locations | **location**, name |
//! | crosswalks | **partner**, **kind** (`item` or `location`), **external**, **internal** |
//! | units | **item** (or `*` for every item), **uom**, **base_qty** (base units in one `uom`) |

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crossdock_model::{ItemId, LocationId};

use crate::gtin::Gtin;
use crate::uom::{Conversion, Uom};
use crate::{CrosswalkKind, Item, Location};

/// One bad row (or the header, line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: {error}")]
    Io {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: {} bad rows, first: {}", problems.len(), problems.first().map(ToString::to_string).unwrap_or_default())]
    Invalid {
        source_name: String,
        problems: Vec<RowProblem>,
    },
}

/// A partner's name for one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrosswalkRow {
    pub partner: String,
    pub kind: CrosswalkKind,
    pub external: String,
    pub internal: String,
}

/// A CSV file with a header row, read by column name, collecting every problem with its line:
/// the one CSV reader of the project (files of master data, crosswalks, stock snapshots).
pub struct CsvSheet {
    source_name: String,
    problems: Vec<RowProblem>,
}

impl CsvSheet {
    /// `source_name` names the file in errors.
    pub fn new(source_name: &str) -> CsvSheet {
        CsvSheet {
            source_name: source_name.to_string(),
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, line: u64, column: Option<&str>, reason: impl Into<String>) {
        self.problems.push(RowProblem {
            line,
            column: column.map(str::to_string),
            reason: reason.into(),
        });
    }

    /// Calls `row` with each non-blank record's line and a lookup of its (trimmed, non-empty)
    /// value by column name. A header without a `required` column is one problem on line 1.
    pub fn read(
        &mut self,
        text: &str,
        required: &[&str],
        mut row: impl FnMut(&mut CsvSheet, u64, &dyn Fn(&str) -> Option<String>),
    ) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
            Err(e) => return self.problem(1, None, format!("unreadable header: {e}")),
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| !header.iter().any(|h| h == r))
            .collect();
        if !missing.is_empty() {
            return self.problem(
                1,
                None,
                format!(
                    "the header lacks {}; it has {}",
                    missing.join(", "),
                    header.join(",")
                ),
            );
        }
        for record in reader.records() {
            match record {
                Ok(r) => {
                    let line = r.position().map_or(0, |p| p.line());
                    if r.iter().all(str::is_empty) {
                        continue;
                    }
                    let get = |name: &str| {
                        header
                            .iter()
                            .position(|h| h == name)
                            .and_then(|i| r.get(i))
                            .filter(|v| !v.is_empty())
                            .map(str::to_string)
                    };
                    row(self, line, &get);
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.problem(line, None, format!("unreadable row: {e}"));
                }
            }
        }
    }

    /// Problems so far.
    pub fn problems(&self) -> &[RowProblem] {
        &self.problems
    }

    /// `rows`, or every problem found.
    pub fn finish<T>(self, rows: Vec<T>) -> Result<Vec<T>, LoadError> {
        if self.problems.is_empty() {
            Ok(rows)
        } else {
            Err(LoadError::Invalid {
                source_name: self.source_name,
                problems: self.problems,
            })
        }
    }
}

fn sheet(source_name: &str) -> CsvSheet {
    CsvSheet::new(source_name)
}

fn read_file(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Io {
        source_name: path.display().to_string(),
        error,
    })
}

pub fn items_from_str(source_name: &str, text: &str) -> Result<Vec<Item>, LoadError> {
    let mut s = sheet(source_name);
    let mut out = Vec::new();
    let mut seen: HashMap<ItemId, u64> = HashMap::new();
    let mut gtins: HashMap<Gtin, u64> = HashMap::new();
    s.read(text, &["item"], |s, line, get| {
        let Some(raw) = get("item") else {
            return s.problem(line, Some("item"), "empty");
        };
        let id = match ItemId::new(&raw) {
            Ok(id) => id,
            Err(e) => return s.problem(line, Some("item"), e.to_string()),
        };
        if let Some(first) = seen.insert(id.clone(), line) {
            return s.problem(line, Some("item"), format!("{id} is also on line {first}"));
        }
        let gtin = match get("gtin").map(|g| Gtin::parse(&g)) {
            None => None,
            Some(Ok(g)) => {
                if let Some(first) = gtins.insert(g, line) {
                    return s.problem(line, Some("gtin"), format!("{g} is also on line {first}"));
                }
                Some(g)
            }
            Some(Err(e)) => return s.problem(line, Some("gtin"), e.to_string()),
        };
        let base_uom = match get("base_uom").map(|u| Uom::parse(&u)) {
            None => Uom::each(),
            Some(Ok(u)) => u,
            Some(Err(e)) => return s.problem(line, Some("base_uom"), e),
        };
        out.push(Item {
            id,
            description: get("description"),
            gtin,
            base_uom,
        });
    });
    s.finish(out)
}

pub fn items_from_path(path: &Path) -> Result<Vec<Item>, LoadError> {
    items_from_str(&path.display().to_string(), &read_file(path)?)
}

pub fn locations_from_str(source_name: &str, text: &str) -> Result<Vec<Location>, LoadError> {
    let mut s = sheet(source_name);
    let mut out = Vec::new();
    let mut seen: HashMap<LocationId, u64> = HashMap::new();
    s.read(text, &["location"], |s, line, get| {
        let Some(raw) = get("location") else {
            return s.problem(line, Some("location"), "empty");
        };
        let id = match LocationId::new(&raw) {
            Ok(id) => id,
            Err(e) => return s.problem(line, Some("location"), e.to_string()),
        };
        if let Some(first) = seen.insert(id.clone(), line) {
            return s.problem(
                line,
                Some("location"),
                format!("{id} is also on line {first}"),
            );
        }
        out.push(Location {
            id,
            name: get("name"),
        });
    });
    s.finish(out)
}

pub fn locations_from_path(path: &Path) -> Result<Vec<Location>, LoadError> {
    locations_from_str(&path.display().to_string(), &read_file(path)?)
}

/// Crosswalk rows; each `internal` must be a known item or location.
pub fn crosswalks_from_str(
    source_name: &str,
    text: &str,
    items: &HashSet<String>,
    locations: &HashSet<String>,
) -> Result<Vec<CrosswalkRow>, LoadError> {
    let mut s = sheet(source_name);
    let mut out = Vec::new();
    let mut seen: HashMap<(String, CrosswalkKind, String), u64> = HashMap::new();
    s.read(
        text,
        &["partner", "kind", "external", "internal"],
        |s, line, get| {
            let (Some(partner), Some(kind), Some(external), Some(internal)) = (
                get("partner"),
                get("kind"),
                get("external"),
                get("internal"),
            ) else {
                return s.problem(
                    line,
                    None,
                    "partner, kind, external and internal are all required",
                );
            };
            let kind = match kind.to_ascii_lowercase().as_str() {
                "item" => CrosswalkKind::Item,
                "location" => CrosswalkKind::Location,
                other => {
                    return s.problem(
                        line,
                        Some("kind"),
                        format!("{other:?} is not item or location"),
                    );
                }
            };
            let known = match kind {
                CrosswalkKind::Item => items.contains(&internal),
                CrosswalkKind::Location => locations.contains(&internal),
            };
            if !known {
                let what = if kind == CrosswalkKind::Item {
                    "item"
                } else {
                    "location"
                };
                return s.problem(
                    line,
                    Some("internal"),
                    format!("no {what} {internal:?} in the master"),
                );
            }
            if let Some(first) = seen.insert((partner.clone(), kind, external.clone()), line) {
                return s.problem(
                    line,
                    Some("external"),
                    format!("{partner} {external:?} is also on line {first}"),
                );
            }
            out.push(CrosswalkRow {
                partner,
                kind,
                external,
                internal,
            });
        },
    );
    s.finish(out)
}

pub fn conversions_from_str(source_name: &str, text: &str) -> Result<Vec<Conversion>, LoadError> {
    let mut s = sheet(source_name);
    let mut out = Vec::new();
    let mut seen: HashMap<(Option<ItemId>, Uom), u64> = HashMap::new();
    s.read(text, &["item", "uom", "base_qty"], |s, line, get| {
        let item = match get("item").as_deref() {
            None => return s.problem(line, Some("item"), "empty (use * for every item)"),
            Some("*") => None,
            Some(raw) => match ItemId::new(raw) {
                Ok(id) => Some(id),
                Err(e) => return s.problem(line, Some("item"), e.to_string()),
            },
        };
        let uom = match get("uom").map(|u| Uom::parse(&u)) {
            Some(Ok(u)) => u,
            Some(Err(e)) => return s.problem(line, Some("uom"), e),
            None => return s.problem(line, Some("uom"), "empty"),
        };
        let base_qty = match get("base_qty").map(|q| q.parse::<i64>()) {
            Some(Ok(q)) if q >= 1 => q,
            Some(Ok(q)) => return s.problem(line, Some("base_qty"), format!("{q} is not at least 1")),
            _ => {
                return s.problem(
                    line,
                    Some("base_qty"),
                    "a whole number of base units is required (conversions are exact; no fractions)",
                );
            }
        };
        if let Some(first) = seen.insert((item.clone(), uom.clone()), line) {
            return s.problem(line, Some("uom"), format!("{uom} is also on line {first}"));
        }
        out.push(Conversion { item, uom, base_qty });
    });
    s.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(e: LoadError) -> Vec<String> {
        match e {
            LoadError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect()
            }
            LoadError::Io { .. } => panic!("io"),
        }
    }

    #[test]
    fn good_items_load_in_any_column_order() {
        let items = items_from_str(
            "items.csv",
            "\u{feff}gtin, item ,description\n036000291452,SKU-1,\"Widget, large\"\n,SKU-2,\n\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].description.as_deref(), Some("Widget, large"));
        assert_eq!(items[0].gtin.unwrap().to_string(), "00036000291452");
        assert_eq!(items[1].base_uom, Uom::each());
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_loads() {
        let long = "X".repeat(300);
        let text = format!(
            "item,gtin,base_uom\nSKU-1,036000291453,EA\nSKU-1,,EA\n,,\n{long},,EA\nSKU-4,,C/S\n"
        );
        let p = problems(items_from_str("items.csv", &text).unwrap_err());
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].starts_with("line 2, column gtin: check digit"),
            "{p:#?}"
        );
        assert!(
            p[1].starts_with("line 3, column item: SKU-1 is also on line 2"),
            "{p:#?}"
        );
        assert!(p[2].starts_with("line 5, column item"), "{p:#?}");
        assert!(p[3].starts_with("line 6, column base_uom"), "{p:#?}");
        let p = problems(items_from_str("items.csv", "sku,gtin\nA,\n").unwrap_err());
        assert!(p[0].contains("header lacks item"), "{p:#?}");
    }

    #[test]
    fn crosswalks_must_point_at_known_things() {
        let items: HashSet<String> = ["SKU-1".to_string()].into();
        let locations: HashSet<String> = ["DC-EAST".to_string()].into();
        let text = "partner,kind,external,internal\nacme,item,A1,SKU-1\nacme,item,A2,SKU-9\nacme,pallet,P,SKU-1\nacme,item,A1,SKU-1\nacme,location,07,DC-EAST\n";
        let p = problems(crosswalks_from_str("x.csv", text, &items, &locations).unwrap_err());
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].contains("line 3") && p[0].contains("no item \"SKU-9\""),
            "{p:#?}"
        );
        assert!(p[1].contains("line 4") && p[1].contains("pallet"), "{p:#?}");
        assert!(
            p[2].contains("line 5") && p[2].contains("also on line 2"),
            "{p:#?}"
        );
    }

    #[test]
    fn conversions_are_whole_numbers() {
        let ok =
            conversions_from_str("u.csv", "item,uom,base_qty\n*,CS,12\nSKU-1,cs,24\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].uom.as_str(), "CS");
        let p = problems(
            conversions_from_str(
                "u.csv",
                "item,uom,base_qty\n*,CS,0.5\n*,PK,0\n*,CS,12\n*,CS,6\n",
            )
            .unwrap_err(),
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(p[0].contains("no fractions"), "{p:#?}");
        assert!(p[1].contains("not at least 1"), "{p:#?}");
        assert!(
            p[2].contains("line 5") && p[2].contains("also on line 4"),
            "{p:#?}"
        );
    }
}
