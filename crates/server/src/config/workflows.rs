//! `[workflows]`: where orders, returns, transfers and POs are posted, the credit check, the
//! sourcing rules per channel, substitutions and deadlines.

use std::collections::HashMap;
use std::time::Duration;

use crossdock_engine::PostingRoutes;
use crossdock_ledger::{ChanIdx, LocIdx, SourcingRule, WorkflowPolicy};
use crossdock_model::{ChannelId, ItemId, LocationId};
use serde::Deserialize;

use super::Checker;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct WorkflowSection {
    /// `[[endpoints]]` name (a webhook) receiving order, return and PO postings.
    pub erp_endpoint: Option<String>,
    pub shipment_sla_s: Option<u64>,
    pub ack_timeout_s: Option<u64>,
    pub credit: Option<CreditEntry>,
    pub warehouses: Vec<WarehouseEntry>,
    pub sourcing: Vec<SourcingEntry>,
    pub substitutions: Vec<SubstitutionEntry>,
}

#[derive(Debug, Deserialize)]
pub struct CreditEntry {
    pub url: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `"approve_up_to"` (with `approve_up_to_minor`) or `"hold"`.
    pub fallback: String,
    #[serde(default)]
    pub approve_up_to_minor: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct WarehouseEntry {
    pub location: String,
    /// A webhook endpoint taking JSON releases, or
    #[serde(default)]
    pub endpoint: Option<String>,
    /// a trading partner taking 940s.
    #[serde(default)]
    pub partner: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SourcingEntry {
    pub channel: String,
    #[serde(default)]
    pub locations: Option<Vec<String>>,
    #[serde(default)]
    pub ship_complete: bool,
    #[serde(default)]
    pub max_splits: Option<u32>,
    #[serde(default)]
    pub backorder: bool,
    #[serde(default)]
    pub substitute: bool,
}

#[derive(Debug, Deserialize)]
pub struct SubstitutionEntry {
    pub item: String,
    pub with: Vec<String>,
}

/// What the credit check does when the ERP does not answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditFallback {
    /// Approve orders up to this amount (minor units), hold the rest.
    ApproveUpTo(i64),
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditSettings {
    pub url: String,
    pub timeout: Duration,
    pub fallback: CreditFallback,
}

/// The checked section, for the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowSettings {
    pub credit: Option<CreditSettings>,
    pub routes: PostingRoutes,
}

pub(super) struct Known<'a> {
    pub locations: &'a HashMap<&'a str, usize>,
    pub channels: &'a [ChannelId],
    pub endpoints: &'a [String],
    pub partners: &'a [String],
}

impl Checker<'_> {
    pub(super) fn workflows(
        &mut self,
        raw: &WorkflowSection,
        known: &Known<'_>,
        regions: HashMap<LocIdx, Vec<String>>,
    ) -> (WorkflowPolicy, WorkflowSettings) {
        let mut policy = WorkflowPolicy {
            regions,
            ..WorkflowPolicy::default()
        };
        let mut settings = WorkflowSettings::default();
        if let Some(s) = raw.shipment_sla_s {
            if s == 0 {
                self.problem("workflows.shipment_sla_s", "must be at least 1 second");
            }
            policy.shipment_sla_s = s.max(1);
        }
        if let Some(s) = raw.ack_timeout_s {
            if s == 0 {
                self.problem("workflows.ack_timeout_s", "must be at least 1 second");
            }
            policy.ack_timeout_s = s.max(1);
        }
        let endpoint = |c: &mut Self, key: &str, name: &str| -> Option<String> {
            if known.endpoints.iter().any(|e| e == name) {
                Some(name.to_string())
            } else {
                c.problem(key, format!("no [[endpoints]] entry is named {name:?}"));
                None
            }
        };
        if let Some(name) = &raw.erp_endpoint {
            settings.routes.erp = endpoint(self, "workflows.erp_endpoint", name);
        }
        for (i, w) in raw.warehouses.iter().enumerate() {
            let key = format!("workflows.warehouses.{i}");
            if !known.locations.contains_key(w.location.as_str()) {
                self.problem(
                    format!("{key}.location"),
                    format!("unknown location {:?}; add it to [[locations]]", w.location),
                );
                continue;
            }
            let target = match (&w.endpoint, &w.partner) {
                (Some(e), None) => endpoint(self, &format!("{key}.endpoint"), e),
                (None, Some(p)) if known.partners.iter().any(|x| x == p) => {
                    Some(partner_endpoint(p))
                }
                (None, Some(p)) => {
                    self.problem(
                        format!("{key}.partner"),
                        format!("no [[partners]] entry has id {p:?}"),
                    );
                    None
                }
                _ => {
                    self.problem(&key, "needs exactly one of endpoint or partner");
                    None
                }
            };
            if let Some(t) = target
                && settings
                    .routes
                    .warehouses
                    .insert(w.location.clone(), t)
                    .is_some()
            {
                self.problem(
                    format!("{key}.location"),
                    format!("location {} is listed twice", w.location),
                );
            }
        }
        for p in known.partners {
            settings
                .routes
                .partners
                .insert(p.clone(), partner_endpoint(p));
        }
        for (i, s) in raw.sourcing.iter().enumerate() {
            let key = format!("workflows.sourcing.{i}");
            let Some(chan) = known.channels.iter().position(|c| c.as_str() == s.channel) else {
                self.problem(
                    format!("{key}.channel"),
                    format!("unknown channel {:?}; add it to [[channels]]", s.channel),
                );
                continue;
            };
            let locations = s.locations.as_ref().map(|ls| {
                ls.iter()
                    .enumerate()
                    .filter_map(|(j, l)| match known.locations.get(l.as_str()) {
                        Some(&idx) => Some(LocIdx(idx as u16)),
                        None => {
                            self.problem(
                                format!("{key}.locations.{j}"),
                                format!("unknown location {l:?}; add it to [[locations]]"),
                            );
                            None
                        }
                    })
                    .collect()
            });
            if s.ship_complete && s.max_splits.is_some_and(|m| m > 0) {
                self.problem(
                    format!("{key}.max_splits"),
                    "ship_complete orders ship from one location; drop max_splits or ship_complete",
                );
            }
            let rule = SourcingRule {
                locations,
                ship_complete: s.ship_complete,
                max_splits: s.max_splits.unwrap_or(SourcingRule::default().max_splits),
                backorder: s.backorder,
                substitute: s.substitute,
            };
            if policy.sourcing.insert(ChanIdx(chan as u16), rule).is_some() {
                self.problem(
                    format!("{key}.channel"),
                    format!("channel {} has two sourcing rules", s.channel),
                );
            }
        }
        for (i, s) in raw.substitutions.iter().enumerate() {
            let key = format!("workflows.substitutions.{i}");
            let item = match ItemId::new(&s.item) {
                Ok(i) => i,
                Err(e) => {
                    self.problem(format!("{key}.item"), e.to_string());
                    continue;
                }
            };
            let mut with = Vec::new();
            for (j, w) in s.with.iter().enumerate() {
                match ItemId::new(w) {
                    Ok(w) if w == item => self.problem(
                        format!("{key}.with.{j}"),
                        "an item cannot substitute itself",
                    ),
                    Ok(w) => with.push(w),
                    Err(e) => self.problem(format!("{key}.with.{j}"), e.to_string()),
                }
            }
            policy.substitutions.insert(item, with);
        }
        if let Some(c) = &raw.credit {
            let fallback = match (c.fallback.as_str(), c.approve_up_to_minor) {
                ("hold", None) => Some(CreditFallback::Hold),
                ("approve_up_to", Some(n)) if n >= 0 => Some(CreditFallback::ApproveUpTo(n)),
                ("approve_up_to", _) => {
                    self.problem(
                        "workflows.credit.approve_up_to_minor",
                        "approve_up_to needs approve_up_to_minor, an amount in minor units >= 0",
                    );
                    None
                }
                ("hold", Some(_)) => {
                    self.problem(
                        "workflows.credit.approve_up_to_minor",
                        "only meaningful with fallback = \"approve_up_to\"",
                    );
                    None
                }
                (other, _) => {
                    self.problem(
                        "workflows.credit.fallback",
                        format!("must be \"approve_up_to\" or \"hold\", got {other:?}"),
                    );
                    None
                }
            };
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                self.problem("workflows.credit.url", "must be an http:// or https:// URL");
            }
            let timeout_ms = c.timeout_ms.unwrap_or(200);
            if !(1..=60_000).contains(&timeout_ms) {
                self.problem("workflows.credit.timeout_ms", "must be between 1 and 60000");
            }
            settings.credit = fallback.map(|fallback| CreditSettings {
                url: c.url.clone(),
                timeout: Duration::from_millis(timeout_ms),
                fallback,
            });
        }
        (policy, settings)
    }
}

/// The delivery endpoint writing a partner's documents (850, 940, 810).
pub fn partner_endpoint(partner: &str) -> String {
    format!("partner:{partner}")
}

/// Regions per location from `[[locations]] regions = [...]`.
pub(super) fn regions_of(locations: &[(LocationId, Vec<String>)]) -> HashMap<LocIdx, Vec<String>> {
    locations
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| !r.is_empty())
        .map(|(i, (_, r))| (LocIdx(i as u16), r.clone()))
        .collect()
}
