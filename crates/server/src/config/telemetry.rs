//! `[telemetry]`: optional OTLP export of spans, and synthetic canaries that check a test
//! update becomes visible on a channel.
//!
//! ```toml
//! [telemetry]
//! otlp_endpoint = "http://127.0.0.1:4318/v1/traces"  # OTLP/HTTP protobuf; absent: no export
//! service_name = "crossdock"
//! span_level = "info"      # "debug" adds a span per applied input
//!
//! [[telemetry.canaries]]
//! channel = "shopify"      # an [[endpoints]] channel whose levels can be read back
//! item = "CANARY-1"        # an item kept for the canary alone
//! location = "DC-EAST"     # a location the channel sells from
//! interval_s = 60
//! timeout_s = 30
//! ```

use std::time::Duration;

use crossdock_model::{ChannelId, ItemId, LocationId};
use serde::Deserialize;

use super::Checker;

pub const SERVICE_NAME_DEFAULT: &str = "crossdock";
pub const CANARY_INTERVAL_DEFAULT_S: u64 = 60;
pub const CANARY_TIMEOUT_DEFAULT_S: u64 = 30;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct TelemetrySection {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub span_level: Option<String>,
    pub canaries: Vec<CanaryEntry>,
}

#[derive(Debug, Deserialize)]
pub struct CanaryEntry {
    pub channel: String,
    pub item: String,
    pub location: String,
    #[serde(default)]
    pub interval_s: Option<u64>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// The collector's OTLP/HTTP traces URL, used as written.
    pub endpoint: String,
    pub service_name: String,
    /// `true`: also a span per applied input (the engine's `apply` spans, at debug level).
    pub debug_spans: bool,
}

/// A checked canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub channel: ChannelId,
    pub item: ItemId,
    pub location: LocationId,
    pub interval: Duration,
    /// How long the value may take to become visible before the round counts as failed.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub otlp: Option<Otlp>,
    pub canaries: Vec<Canary>,
}

/// What the canaries may name.
pub(super) struct Known<'a> {
    /// Channels with an endpoint that can read its levels back.
    pub readable: &'a [String],
    pub locations: &'a [LocationId],
    /// Every channel's locations.
    pub channel_locations: &'a [(ChannelId, Vec<LocationId>)],
}

impl Checker<'_> {
    pub(super) fn telemetry(
        &mut self,
        raw: &TelemetrySection,
        known: &Known<'_>,
    ) -> TelemetrySettings {
        let debug_spans = match raw.span_level.as_deref() {
            None | Some("info") => false,
            Some("debug") => true,
            Some(other) => {
                self.problem(
                    "telemetry.span_level",
                    format!("must be \"info\" or \"debug\", got {other:?}"),
                );
                false
            }
        };
        let otlp = raw.otlp_endpoint.as_ref().and_then(|url| {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.split_once("://").is_some_and(|(_, rest)| !rest.is_empty());
            if !ok {
                self.problem(
                    "telemetry.otlp_endpoint",
                    format!("must be an http:// or https:// URL (the collector's OTLP/HTTP traces URL), got {url:?}"),
                );
                return None;
            }
            Some(Otlp {
                endpoint: url.clone(),
                service_name: raw
                    .service_name
                    .clone()
                    .unwrap_or_else(|| SERVICE_NAME_DEFAULT.to_string()),
                debug_spans,
            })
        });
        if raw.otlp_endpoint.is_none() && raw.service_name.is_some() {
            self.problem(
                "telemetry.service_name",
                "has no effect without telemetry.otlp_endpoint",
            );
        }
        let mut canaries = Vec::new();
        for (i, c) in raw.canaries.iter().enumerate() {
            let key = format!("telemetry.canaries.{i}");
            let channel = match ChannelId::new(&c.channel) {
                Ok(ch) if known.readable.iter().any(|r| r == &c.channel) => Some(ch),
                _ => {
                    self.problem(
                        format!("{key}.channel"),
                        format!(
                            "must be a channel whose endpoint can read its levels back (one of {:?}), got {:?}",
                            known.readable, c.channel
                        ),
                    );
                    None
                }
            };
            if raw.canaries[..i].iter().any(|o| o.channel == c.channel) {
                self.problem(
                    format!("{key}.channel"),
                    format!("channel {:?} has a canary already", c.channel),
                );
            }
            let item = ItemId::new(&c.item)
                .map_err(|e| self.problem(format!("{key}.item"), e.to_string()))
                .ok();
            let location = match LocationId::new(&c.location) {
                Ok(l) if known.locations.contains(&l) => Some(l),
                _ => {
                    self.problem(
                        format!("{key}.location"),
                        format!("must be a configured location, got {:?}", c.location),
                    );
                    None
                }
            };
            if let (Some(ch), Some(l)) = (&channel, &location) {
                let sells = known
                    .channel_locations
                    .iter()
                    .any(|(id, locs)| id == ch && locs.contains(l));
                if !sells {
                    self.problem(
                        format!("{key}.location"),
                        format!(
                            "channel {ch} does not sell from {l}: its value would never change"
                        ),
                    );
                }
            }
            let interval_s = c.interval_s.unwrap_or(CANARY_INTERVAL_DEFAULT_S);
            let timeout_s = c.timeout_s.unwrap_or(CANARY_TIMEOUT_DEFAULT_S);
            if interval_s == 0 {
                self.problem(format!("{key}.interval_s"), "must be at least 1");
            }
            if timeout_s == 0 || timeout_s > interval_s.max(1) {
                self.problem(
                    format!("{key}.timeout_s"),
                    format!("must be between 1 and interval_s ({interval_s})"),
                );
            }
            if let (Some(channel), Some(item), Some(location)) = (channel, item, location) {
                canaries.push(Canary {
                    channel,
                    item,
                    location,
                    interval: Duration::from_secs(interval_s),
                    timeout: Duration::from_secs(timeout_s),
                });
            }
        }
        TelemetrySettings { otlp, canaries }
    }
}
