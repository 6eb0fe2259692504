//! Item crosswalk for one channel: Crossdock item id ↔ the channel's own id (a Shopify
//! inventory item, an Amazon SKU, a WooCommerce product or variation).
//!
//! Both directions are one-to-one: a duplicate item or a duplicate external id is an error,
//! because either would make a stock write or an inbound order ambiguous.
//!
//! File format: CSV with the header `item,external_id`, one pair per row. Fields may be quoted
//! (`"a,b"`, with `""` for a quote inside); surrounding spaces are trimmed; blank lines are
//! skipped. Every bad row is reported, with its line number, in one error.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Most rows a crosswalk file may hold (a bound, not a target: far above any catalogue).
pub const ROWS_MAX: usize = 5_000_000;

#[derive(Debug, Clone, Default)]
pub struct Crosswalk {
    to_external: HashMap<String, String>,
    to_item: HashMap<String, String>,
}

/// One bad row of a crosswalk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// 1-based line number in the file (the header is line 1).
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CrosswalkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: {}", ProblemList(.problems))]
    Invalid {
        /// The file path, or `pairs` for [`Crosswalk::from_pairs`].
        source_name: String,
        problems: Vec<RowProblem>,
    },
}

struct ProblemList<'a>(&'a [RowProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, p) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "line {}: {}", p.line, p.reason)?;
        }
        Ok(())
    }
}

impl Crosswalk {
    /// Reads a crosswalk CSV (`item,external_id`).
    pub fn load_csv(path: impl AsRef<Path>) -> Result<Self, CrosswalkError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CrosswalkError::Io {
            path: name.clone(),
            source,
        })?;
        Self::parse_csv(&name, &text)
    }

    /// Parses crosswalk CSV text; `source_name` names it in errors.
    pub fn parse_csv(source_name: &str, text: &str) -> Result<Self, CrosswalkError> {
        let invalid = |problems| CrosswalkError::Invalid {
            source_name: source_name.to_owned(),
            problems,
        };
        let mut lines = text.lines().enumerate();
        let header = loop {
            match lines.next() {
                Some((_, l)) if l.trim().is_empty() => continue,
                Some((n, l)) => break Some((n + 1, l)),
                None => break None,
            }
        };
        let Some((header_line, header)) = header else {
            return Err(invalid(vec![RowProblem {
                line: 1,
                reason: "empty file: expected the header `item,external_id`".into(),
            }]));
        };
        let fields = split_csv_line(header.trim_start_matches('\u{feff}'));
        let header_ok =
            matches!(&fields, Ok(f) if f.len() == 2 && f[0] == "item" && f[1] == "external_id");
        if !header_ok {
            return Err(invalid(vec![RowProblem {
                line: header_line,
                reason: format!("expected the header `item,external_id`, found `{header}`"),
            }]));
        }

        let mut walk = Crosswalk::default();
        let mut problems = Vec::new();
        // Where each item and external id was first seen, to name both lines of a duplicate.
        let mut item_line: HashMap<String, usize> = HashMap::new();
        let mut external_line: HashMap<String, usize> = HashMap::new();
        for (n, raw) in lines {
            let line = n + 1;
            if raw.trim().is_empty() {
                continue;
            }
            if walk.to_item.len() >= ROWS_MAX {
                problems.push(RowProblem {
                    line,
                    reason: format!("more than {ROWS_MAX} rows"),
                });
                break;
            }
            let fields = match split_csv_line(raw) {
                Ok(f) => f,
                Err(reason) => {
                    problems.push(RowProblem { line, reason });
                    continue;
                }
            };
            let [item, external] = match <[String; 2]>::try_from(fields) {
                Ok(pair) => pair,
                Err(f) => {
                    problems.push(RowProblem {
                        line,
                        reason: format!("expected 2 fields (item,external_id), found {}", f.len()),
                    });
                    continue;
                }
            };
            if item.is_empty() || external.is_empty() {
                problems.push(RowProblem {
                    line,
                    reason: "item and external_id must both be non-empty".into(),
                });
                continue;
            }
            if let Some(first) = item_line.get(&item) {
                problems.push(RowProblem {
                    line,
                    reason: format!("item {item} already mapped on line {first}"),
                });
                continue;
            }
            if let Some(first) = external_line.get(&external) {
                problems.push(RowProblem {
                    line,
                    reason: format!("external id {external} already mapped on line {first}"),
                });
                continue;
            }
            item_line.insert(item.clone(), line);
            external_line.insert(external.clone(), line);
            walk.insert(item, external);
        }
        if problems.is_empty() {
            Ok(walk)
        } else {
            Err(invalid(problems))
        }
    }

    /// Builds a crosswalk from `(item, external_id)` pairs; the same one-to-one rules as a file
    /// (the "line" of a problem is the 1-based pair position).
    pub fn from_pairs<I, A, B>(pairs: I) -> Result<Self, CrosswalkError>
    where
        I: IntoIterator<Item = (A, B)>,
        A: Into<String>,
        B: Into<String>,
    {
        let mut walk = Crosswalk::default();
        let mut problems = Vec::new();
        for (n, (item, external)) in pairs.into_iter().enumerate() {
            let (item, external) = (item.into(), external.into());
            let line = n + 1;
            let reason = if item.is_empty() || external.is_empty() {
                Some("item and external_id must both be non-empty".to_owned())
            } else if walk.to_external.contains_key(&item) {
                Some(format!("item {item} already mapped"))
            } else if walk.to_item.contains_key(&external) {
                Some(format!("external id {external} already mapped"))
            } else {
                None
            };
            match reason {
                Some(reason) => problems.push(RowProblem { line, reason }),
                None => walk.insert(item, external),
            }
        }
        if problems.is_empty() {
            Ok(walk)
        } else {
            Err(CrosswalkError::Invalid {
                source_name: "pairs".into(),
                problems,
            })
        }
    }

    fn insert(&mut self, item: String, external: String) {
        debug_assert!(!self.to_external.contains_key(&item));
        debug_assert!(!self.to_item.contains_key(&external));
        self.to_item.insert(external.clone(), item.clone());
        self.to_external.insert(item, external);
    }

    /// The channel's id for `item`.
    pub fn external(&self, item: &str) -> Option<&str> {
        self.to_external.get(item).map(String::as_str)
    }

    /// The item a channel id stands for.
    pub fn item(&self, external: &str) -> Option<&str> {
        self.to_item.get(external).map(String::as_str)
    }

    /// Every `(item, external id)` pair, in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.to_external
            .iter()
            .map(|(item, external)| (item.as_str(), external.as_str()))
    }

    /// The reverse lookup under a channel's own reading of its ids: the items whose external id
    /// `read` turns into each key. [`Crosswalk::item`] compares the text exactly; a channel that
    /// accepts one id in several forms (Shopify takes `123` and
    /// `gid://shopify/InventoryItem/123` for the same inventory item) looks up here instead.
    /// External ids `read` refuses (`None`) are left out. Two items under one key happen only
    /// when their external ids are two forms of the same channel id; both are listed, sorted.
    pub fn index_by<K, F>(&self, read: F) -> HashMap<K, Vec<&str>>
    where
        K: std::hash::Hash + Eq,
        F: Fn(&str) -> Option<K>,
    {
        let mut index: HashMap<K, Vec<&str>> = HashMap::with_capacity(self.len());
        for (item, external) in self.pairs() {
            if let Some(key) = read(external) {
                index.entry(key).or_default().push(item);
            }
        }
        for items in index.values_mut() {
            if items.len() > 1 {
                items.sort_unstable();
            }
        }
        index
    }

    pub fn len(&self) -> usize {
        self.to_external.len()
    }

    pub fn is_empty(&self) -> bool {
        self.to_external.is_empty()
    }
}

/// Splits one CSV line into trimmed fields, honouring double quotes.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                fields.push(finish(&mut field, was_quoted));
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".into());
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(finish(&mut field, was_quoted));
    Ok(fields)
}

fn finish(field: &mut String, was_quoted: bool) -> String {
    let text = std::mem::take(field);
    if was_quoted {
        text
    } else {
        text.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs_both_ways() {
        let walk = Crosswalk::parse_csv(
            "t.csv",
            "item,external_id\nSKU-1, 111\n\n\"SKU,2\",\"gid://shopify/InventoryItem/222\"\n",
        )
        .unwrap();
        assert_eq!(walk.len(), 2);
        assert_eq!(walk.external("SKU-1"), Some("111"));
        assert_eq!(
            walk.external("SKU,2"),
            Some("gid://shopify/InventoryItem/222")
        );
        assert_eq!(walk.item("111"), Some("SKU-1"));
        assert_eq!(walk.external("SKU-3"), None);
        assert_eq!(walk.item("SKU-1"), None);
    }

    #[test]
    fn reports_every_bad_row_with_its_line() {
        let text = "item,external_id\nA,1\nB,1\nA,2\nC\n,4\nD,\"5\nE,6,7\n";
        let err = Crosswalk::parse_csv("walk.csv", text).unwrap_err();
        let CrosswalkError::Invalid { problems, .. } = &err else {
            panic!("expected Invalid, got {err:?}");
        };
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8]);
        assert!(
            problems[0]
                .reason
                .contains("external id 1 already mapped on line 2")
        );
        assert!(
            problems[1]
                .reason
                .contains("item A already mapped on line 2")
        );
        assert!(problems[2].reason.contains("expected 2 fields"));
        let shown = err.to_string();
        assert!(shown.starts_with("walk.csv: line 3:"), "{shown}");
    }

    #[test]
    fn refuses_a_wrong_header_or_an_empty_file() {
        let err = Crosswalk::parse_csv("x", "sku,id\nA,1\n").unwrap_err();
        assert!(err.to_string().contains("item,external_id"), "{err}");
        assert!(Crosswalk::parse_csv("x", "\n\n").is_err());
        assert!(Crosswalk::parse_csv("x", "\u{feff}item,external_id\nA,1\n").is_ok());
    }

    #[test]
    fn from_pairs_refuses_duplicates() {
        let ok = Crosswalk::from_pairs([("A", "1"), ("B", "2")]).unwrap();
        assert_eq!(ok.item("2"), Some("B"));
        let err = Crosswalk::from_pairs([("A", "1"), ("A", "2"), ("C", "1")]).unwrap_err();
        let CrosswalkError::Invalid { problems, .. } = err else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].line, 2);
        assert_eq!(problems[1].line, 3);
    }

    #[test]
    fn index_by_reads_external_ids_in_the_channels_form() {
        let walk = Crosswalk::from_pairs([
            ("A", "123"),
            ("B", "gid://shopify/InventoryItem/124"),
            ("C", "gid://shopify/InventoryItem/123"),
            ("D", "not a number"),
        ])
        .unwrap();
        let index = walk.index_by(|external| {
            let n = external
                .strip_prefix("gid://shopify/InventoryItem/")
                .unwrap_or(external);
            n.parse::<u64>().ok()
        });
        assert_eq!(index.len(), 2);
        assert_eq!(index[&123], vec!["A", "C"]);
        assert_eq!(index[&124], vec!["B"]);
        let mut pairs: Vec<_> = walk.pairs().collect();
        pairs.sort();
        assert_eq!(pairs[3], ("D", "not a number"));
    }

    #[test]
    fn load_csv_names_a_missing_file() {
        let err = Crosswalk::load_csv("/nonexistent/crossdock/walk.csv").unwrap_err();
        assert!(matches!(err, CrosswalkError::Io { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/crossdock/walk.csv")
        );
    }

    #[test]
    fn load_csv_reads_a_real_file() {
        let dir = std::env::temp_dir().join(format!("crossdock-walk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("walk.csv");
        std::fs::write(&path, "item,external_id\r\nA,1\r\nB,2\r\n").unwrap();
        let walk = Crosswalk::load_csv(&path).unwrap();
        assert_eq!(walk.external("B"), Some("2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
