//! A trading partner as the config file describes it (`[[partners]]`), checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossdock_model::event::StockStatus;
use crossdock_model::{ChannelId, LocationId, SourceId};
use crossdock_x12::envelope::{Release, Version};
use serde::Deserialize;

/// `[[partners]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerEntry {
    /// Our name for the partner: folders, control-number scopes and crosswalks use it.
    pub id: String,
    /// The canonical source its inventory events come from (a `[[sources]]` id; its ownership
    /// rules apply).
    pub source: String,
    /// Its interchange id (ISA06 of what it sends, ISA08 of what we send) and qualifier.
    #[serde(default)]
    pub isa_id: Option<String>,
    #[serde(default)]
    pub isa_qualifier: Option<String>,
    /// Ours (default `ZZ` / `CROSSDOCK`).
    #[serde(default)]
    pub our_isa_id: Option<String>,
    #[serde(default)]
    pub our_isa_qualifier: Option<String>,
    /// Where its stock is when a document names no location it has a code for.
    #[serde(default)]
    pub location: Option<String>,
    /// The channel its orders (850) reserve on and whose availability its 846s carry.
    #[serde(default)]
    pub channel: Option<String>,
    /// Folders (default `<data_dir>/partners/<id>/inbound` and `.../outbound`).
    #[serde(default)]
    pub inbound: Option<PathBuf>,
    #[serde(default)]
    pub outbound: Option<PathBuf>,
    /// GS08 of what we send: `004010` (default), `005010`, with a suffix such as `004010VICS`.
    #[serde(default)]
    pub version: Option<String>,
    /// Send a 997 for every functional group received (default true).
    #[serde(default)]
    pub acknowledge: Option<bool>,
    /// 846 QTY01 qualifier → `counted` (an `inventory.counted` event) or `snapshot` (an
    /// availability snapshot kept for reconciliation). Default: `17` (on hand) counted,
    /// `33` (available for sale) snapshot; other qualifiers are ignored and reported.
    #[serde(default)]
    pub qty_846: BTreeMap<String, String>,
    /// 947 W19 reason code → `damaged`, `quarantined` or `sellable` (the units move to that
    /// status: an `inventory.status_changed` event). Codes not listed adjust on hand by the
    /// signed quantity (`inventory.adjusted`).
    #[serde(default)]
    pub status_947: BTreeMap<String, String>,
    /// How often the inbound folder is looked at, in milliseconds (default 1000).
    #[serde(default)]
    pub poll_ms: Option<u64>,
    /// A file is picked up only once unchanged for this long, in milliseconds (default 500).
    #[serde(default)]
    pub settle_ms: Option<u64>,
}

/// What an 846 quantity qualifier means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QtyMeaning {
    Counted,
    Snapshot,
}

/// A checked partner.
#[derive(Debug, Clone)]
pub struct PartnerSpec {
    pub id: String,
    pub source: SourceId,
    /// (qualifier, id) of the partner; `None` for a partner that only drops CSV files.
    pub isa: Option<(String, String)>,
    pub us: (String, String),
    pub location: Option<LocationId>,
    pub channel: Option<ChannelId>,
    pub inbound: PathBuf,
    pub outbound: PathBuf,
    pub release: Release,
    pub version_suffix: String,
    pub acknowledge: bool,
    pub qty_846: BTreeMap<String, QtyMeaning>,
    pub status_947: BTreeMap<String, StockStatus>,
    pub poll_ms: u64,
    pub settle_ms: u64,
}

/// Names a checked config knows, for cross-checks.
pub struct Known<'a> {
    pub sources: &'a dyn Fn(&str) -> bool,
    pub locations: &'a dyn Fn(&str) -> bool,
    pub channels: &'a dyn Fn(&str) -> bool,
}

impl PartnerEntry {
    /// Checks the entry; problems are `(key, message)` with keys relative to the entry.
    pub fn check(
        &self,
        base: &Path,
        data_dir: &Path,
        known: &Known<'_>,
    ) -> Result<PartnerSpec, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |key: &str, message: String| problems.push((key.to_string(), message));
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problem(
                "id",
                format!("{:?} must be letters, digits, '-' or '_'", self.id),
            );
        }
        let source = match SourceId::new(&self.source) {
            Ok(s) if (known.sources)(&self.source) => Some(s),
            Ok(_) => {
                problem(
                    "source",
                    format!("{:?} is not a [[sources]] id", self.source),
                );
                None
            }
            Err(e) => {
                problem("source", e.to_string());
                None
            }
        };
        let isa = match (&self.isa_id, &self.isa_qualifier) {
            (Some(id), q) => {
                let q = q.clone().unwrap_or_else(|| "ZZ".into());
                check_isa_id(&mut problem, "isa_id", id, &q);
                Some((q, id.clone()))
            }
            (None, Some(_)) => {
                problem("isa_qualifier", "set isa_id too".into());
                None
            }
            (None, None) => None,
        };
        let us = (
            self.our_isa_qualifier
                .clone()
                .unwrap_or_else(|| "ZZ".into()),
            self.our_isa_id
                .clone()
                .unwrap_or_else(|| "CROSSDOCK".into()),
        );
        check_isa_id(&mut problem, "our_isa_id", &us.1, &us.0);
        let location = self.location.as_ref().and_then(|l| {
            if !(known.locations)(l) {
                problem("location", format!("{l:?} is not a [[locations]] id"));
                return None;
            }
            LocationId::new(l).ok()
        });
        let channel = self.channel.as_ref().and_then(|c| {
            if !(known.channels)(c) {
                problem("channel", format!("{c:?} is not a [[channels]] id"));
                return None;
            }
            ChannelId::new(c).ok()
        });
        let version = Version(self.version.clone().unwrap_or_else(|| "004010".into()));
        let release = version.release().unwrap_or_else(|| {
            problem(
                "version",
                format!(
                    "{:?}: use 004010 or 005010, optionally with a suffix such as 004010VICS",
                    version.0
                ),
            );
            Release::V004010
        });
        let mut qty_846 = BTreeMap::new();
        let qty_entries: Vec<(String, String)> = if self.qty_846.is_empty() {
            vec![
                ("17".into(), "counted".into()),
                ("33".into(), "snapshot".into()),
            ]
        } else {
            self.qty_846.clone().into_iter().collect()
        };
        for (qualifier, meaning) in qty_entries {
            match meaning.as_str() {
                "counted" => drop(qty_846.insert(qualifier, QtyMeaning::Counted)),
                "snapshot" => drop(qty_846.insert(qualifier, QtyMeaning::Snapshot)),
                other => problem(
                    &format!("qty_846.{qualifier}"),
                    format!("{other:?}: use \"counted\" or \"snapshot\""),
                ),
            }
        }
        let mut status_947 = BTreeMap::new();
        for (code, status) in &self.status_947 {
            let s = match status.as_str() {
                "damaged" => StockStatus::Damaged,
                "quarantined" => StockStatus::Quarantined,
                "sellable" => StockStatus::Sellable,
                other => {
                    problem(
                        &format!("status_947.{code}"),
                        format!("{other:?}: use \"damaged\", \"quarantined\" or \"sellable\""),
                    );
                    continue;
                }
            };
            status_947.insert(code.clone(), s);
        }
        let folder = |given: &Option<PathBuf>, name: &str| match given {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => base.join(p),
            None => data_dir.join("partners").join(&self.id).join(name),
        };
        let spec = PartnerSpec {
            id: self.id.clone(),
            source: source.unwrap_or_else(|| SourceId::new("invalid").expect("valid id")),
            isa,
            us,
            location,
            channel,
            inbound: folder(&self.inbound, "inbound"),
            outbound: folder(&self.outbound, "outbound"),
            release,
            version_suffix: version.suffix().to_string(),
            acknowledge: self.acknowledge.unwrap_or(true),
            qty_846,
            status_947,
            poll_ms: self.poll_ms.unwrap_or(1000).max(10),
            settle_ms: self.settle_ms.unwrap_or(500),
        };
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(problems)
        }
    }
}

fn check_isa_id(problem: &mut impl FnMut(&str, String), key: &str, id: &str, qualifier: &str) {
    if id.is_empty() || id.len() > 15 || !id.is_ascii() {
        problem(key, format!("{id:?} must be 1 to 15 ASCII characters"));
    }
    if qualifier.len() != 2 {
        problem(key, format!("qualifier {qualifier:?} must be 2 characters"));
    }
}

impl PartnerSpec {
    /// Whether `sender` (ISA05, ISA06 as read) is this partner.
    pub fn sent(&self, qualifier: &str, id: &str) -> bool {
        self.isa
            .as_ref()
            .is_some_and(|(q, i)| q.trim() == qualifier.trim() && i.trim() == id.trim())
    }
}
