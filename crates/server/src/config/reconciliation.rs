//! `[reconciliation]`: the sources whose snapshots are compared with the ledger, how often, with
//! which tolerances, and what to do with each class of variance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossdock_recon::{Class, Tolerance};
use serde::Deserialize;

use super::Checker;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ReconciliationSection {
    /// How far ahead of the hub's clock a source's event times may run; inputs committed this
    /// long before a snapshot's time are never looked at when backing out.
    pub clock_skew_s: Option<u64>,
    /// Largest snapshot accepted with a request, in bytes.
    pub snapshot_max_bytes: Option<usize>,
    pub sources: Vec<SourceEntry>,
}

#[derive(Debug, Deserialize)]
pub struct SourceEntry {
    pub name: String,
    /// `csv`, `x12_846` or `channel`.
    pub kind: String,
    /// csv: the file a scheduled run reads (the system drops its latest snapshot there).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// x12_846: the trading partner whose 846 snapshots are compared.
    #[serde(default)]
    pub partner: Option<String>,
    /// channel: the `[[endpoints]]` channel whose published quantities are pulled.
    #[serde(default)]
    pub channel: Option<String>,
    /// Runs on its own every this many seconds; absent: on demand only.
    #[serde(default)]
    pub interval_s: Option<u64>,
    /// The locations the source is responsible for: a location its snapshot leaves out is
    /// missing, not out of scope. Absent: the locations each snapshot names.
    #[serde(default)]
    pub locations: Option<Vec<String>>,
    #[serde(default)]
    pub tolerance_units: Option<i64>,
    #[serde(default)]
    pub tolerance_percent: Option<u8>,
    /// A snapshot older than this when compared is stale as a whole.
    #[serde(default)]
    pub stale_after_s: Option<u64>,
    /// Per class: `report`, `exception` or `auto_correct`; `default` for the rest.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
}

/// What a run does with a variance of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Report,
    /// Open an `inventory_mismatch` exception for a person.
    Exception,
    /// Stock: an `inventory.counted` from the reconciler. Channel: a compare-and-set write.
    AutoCorrect,
}

impl Action {
    fn parse(raw: &str) -> Option<Action> {
        match raw {
            "report" => Some(Action::Report),
            "exception" => Some(Action::Exception),
            "auto_correct" => Some(Action::AutoCorrect),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Csv { file: Option<PathBuf> },
    X12_846 { partner: String },
    Channel { endpoint: String },
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Csv { .. } => "csv",
            SourceKind::X12_846 { .. } => "x12_846",
            SourceKind::Channel { .. } => "channel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconSource {
    pub name: String,
    pub kind: SourceKind,
    pub locations: Vec<crossdock_model::LocationId>,
    pub interval_s: Option<u64>,
    pub tolerance: Tolerance,
    pub stale_after_s: u64,
    actions: BTreeMap<Class, Action>,
    default_action: Action,
}

impl ReconSource {
    pub fn action(&self, class: Class) -> Action {
        self.actions
            .get(&class)
            .copied()
            .unwrap_or(self.default_action)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconSettings {
    pub clock_skew_s: u64,
    pub snapshot_max_bytes: usize,
    pub sources: Vec<ReconSource>,
}

impl Default for ReconSettings {
    fn default() -> Self {
        ReconSettings {
            clock_skew_s: CLOCK_SKEW_DEFAULT_S,
            snapshot_max_bytes: SNAPSHOT_MAX_DEFAULT,
            sources: Vec::new(),
        }
    }
}

impl ReconSettings {
    pub fn source(&self, name: &str) -> Option<&ReconSource> {
        self.sources.iter().find(|s| s.name == name)
    }
}

pub const CLOCK_SKEW_DEFAULT_S: u64 = 300;
/// 256 MiB: a snapshot of several million item-locations.
pub const SNAPSHOT_MAX_DEFAULT: usize = 256 * 1024 * 1024;
pub const STALE_AFTER_DEFAULT_S: u64 = 24 * 3600;

/// Classes a reconciler count can correct (stock), or a compare-and-set write (channel).
fn correctable(kind: &SourceKind, class: Class) -> bool {
    match kind {
        SourceKind::Channel { .. } => class == Class::QuantityVariance,
        _ => matches!(
            class,
            Class::QuantityVariance | Class::MissingInSource | Class::MissingInCrossdock
        ),
    }
}

pub(super) struct Known<'a> {
    pub locations: &'a std::collections::HashMap<&'a str, usize>,
    pub channels: &'a [String],
    pub partners: &'a [String],
}

impl Checker<'_> {
    pub(super) fn reconciliation(
        &mut self,
        raw: &ReconciliationSection,
        base: &Path,
        known: &Known<'_>,
    ) -> ReconSettings {
        let mut settings = ReconSettings {
            clock_skew_s: raw.clock_skew_s.unwrap_or(CLOCK_SKEW_DEFAULT_S),
            snapshot_max_bytes: raw.snapshot_max_bytes.unwrap_or(SNAPSHOT_MAX_DEFAULT),
            sources: Vec::new(),
        };
        for (i, s) in raw.sources.iter().enumerate() {
            let key = format!("reconciliation.sources.{i}");
            if s.name.trim().is_empty() || s.name.contains('/') {
                self.problem(
                    format!("{key}.name"),
                    "must be a non-empty name without '/'",
                );
            }
            if raw.sources[..i].iter().any(|o| o.name == s.name) {
                self.problem(
                    format!("{key}.name"),
                    format!("source {:?} is listed twice", s.name),
                );
            }
            let kind = match s.kind.as_str() {
                "csv" => Some(SourceKind::Csv {
                    file: s.file.as_ref().map(|f| base.join(f)),
                }),
                "x12_846" => match &s.partner {
                    Some(p) if known.partners.contains(p) => {
                        Some(SourceKind::X12_846 { partner: p.clone() })
                    }
                    Some(p) => {
                        self.problem(
                            format!("{key}.partner"),
                            format!("no X12 [[partners]] entry is named {p:?}"),
                        );
                        None
                    }
                    None => {
                        self.problem(
                            format!("{key}.partner"),
                            "an x12_846 source names its partner",
                        );
                        None
                    }
                },
                "channel" => match &s.channel {
                    Some(c) if known.channels.contains(c) => Some(SourceKind::Channel {
                        endpoint: c.clone(),
                    }),
                    Some(c) => {
                        self.problem(
                            format!("{key}.channel"),
                            format!(
                                "no Shopify, Amazon or WooCommerce [[endpoints]] entry is named {c:?}"
                            ),
                        );
                        None
                    }
                    None => {
                        self.problem(
                            format!("{key}.channel"),
                            "a channel source names its endpoint",
                        );
                        None
                    }
                },
                other => {
                    self.problem(
                        format!("{key}.kind"),
                        format!("must be csv, x12_846 or channel, got {other:?}"),
                    );
                    None
                }
            };
            let mut locations = Vec::new();
            for (j, l) in s.locations.iter().flatten().enumerate() {
                match crossdock_model::LocationId::new(l) {
                    Ok(id) if known.locations.contains_key(l.as_str()) => locations.push(id),
                    _ => self.problem(
                        format!("{key}.locations.{j}"),
                        format!("unknown location {l:?}; add it to [[locations]]"),
                    ),
                }
            }
            if s.interval_s == Some(0) {
                self.problem(format!("{key}.interval_s"), "must be at least 1 second");
            }
            if s.tolerance_units.is_some_and(|u| u < 0) {
                self.problem(format!("{key}.tolerance_units"), "must not be negative");
            }
            if s.tolerance_percent.is_some_and(|p| p > 100) {
                self.problem(format!("{key}.tolerance_percent"), "must be 0..=100");
            }
            let mut actions = BTreeMap::new();
            let mut default_action = Action::Report;
            for (class_name, raw_action) in &s.actions {
                let at = format!("{key}.actions.{class_name}");
                let Some(action) = Action::parse(raw_action) else {
                    self.problem(
                        at,
                        format!("must be report, exception or auto_correct, got {raw_action:?}"),
                    );
                    continue;
                };
                if class_name == "default" {
                    if action == Action::AutoCorrect {
                        self.problem(at, "auto_correct is chosen per class, not as the default");
                    } else {
                        default_action = action;
                    }
                    continue;
                }
                let Some(class) = Class::ALL
                    .into_iter()
                    .find(|c| c.as_str() == class_name && *c != Class::Match)
                else {
                    self.problem(
                        at,
                        "not a variance class (quantity_variance, status_variance, lot_variance, \
                         missing_in_source, missing_in_crossdock, stale, default)",
                    );
                    continue;
                };
                if let Some(kind) = &kind
                    && action == Action::AutoCorrect
                    && !correctable(kind, class)
                {
                    self.problem(
                        at,
                        format!(
                            "a {} source cannot auto-correct {class_name}; use report or exception",
                            kind.name()
                        ),
                    );
                    continue;
                }
                actions.insert(class, action);
            }
            if let Some(kind) = kind {
                settings.sources.push(ReconSource {
                    name: s.name.clone(),
                    kind,
                    locations,
                    interval_s: s.interval_s,
                    tolerance: Tolerance {
                        units: s.tolerance_units.unwrap_or(0).max(0),
                        percent: s.tolerance_percent.unwrap_or(0).min(100),
                    },
                    stale_after_s: s.stale_after_s.unwrap_or(STALE_AFTER_DEFAULT_S),
                    actions,
                    default_action,
                });
            }
        }
        settings
    }
}
