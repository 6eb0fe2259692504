//! `[[endpoints]]`: where each channel's availability is delivered, and how. One endpoint per
//! channel; its lane is named after the channel.
//!
//! ```toml
//! [[endpoints]]
//! channel = "shopify"
//! kind = "shopify"                      # shopify | amazon | woocommerce | webhook
//! crosswalk = "shopify-items.csv"       # item,external_id (relative to the config file)
//! secrets_env = { access_token = "SHOPIFY_TOKEN", webhook_secret = "SHOPIFY_WEBHOOK_SECRET" }
//! rate = { kind = "cost", rate = 100, burst = 1000 }
//! retry = { base_ms = 200, cap_ms = 60000, max_attempts = 25 }
//! breaker = { failures = 5, open_ms = 2000, open_max_ms = 30000 }
//! [endpoints.shopify]
//! shop_url = "https://example.myshopify.com"
//! location_id = "gid://shopify/Location/1"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossdock_adapters::amazon::{AmazonConfig, AmazonPublisher};
use crossdock_adapters::shopify::{ShopifyConfig, ShopifyPublisher};
use crossdock_adapters::webhook::{WebhookConfig, WebhookPublisher};
use crossdock_adapters::woocommerce::{WooConfig, WooPublisher};
use crossdock_adapters::{ConfigError, Crosswalk, StockReader};
use crossdock_delivery::rate::RateConfig;
use crossdock_delivery::retry::{BreakerConfig, RetryConfig};
use crossdock_delivery::{LaneConfig, Target};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct EndpointEntry {
    /// The channel whose availability this endpoint publishes (the lane is named after it).
    #[serde(default)]
    pub channel: Option<String>,
    /// An event feed instead: its name, and the event types it takes (`inventory.*`,
    /// `reservation.committed.v1`, `*`), delivered in ledger order per item.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    pub kind: String,
    #[serde(default)]
    pub crosswalk: Option<PathBuf>,
    /// Secret name → environment variable holding it.
    #[serde(default)]
    pub secrets_env: BTreeMap<String, String>,
    /// Secret name → file holding it (relative to the config file).
    #[serde(default)]
    pub secrets_file: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub rate: Option<RateConfig>,
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
    /// `risk_first` (default: zero crossings, then low stock, then the rest, oldest first) or
    /// `fifo` (oldest first only; a baseline for benchmarks).
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub shopify: Option<ShopifyConfig>,
    #[serde(default)]
    pub amazon: Option<AmazonConfig>,
    #[serde(default)]
    pub woocommerce: Option<WooConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// A checked endpoint, with its publisher built.
#[derive(Clone)]
pub struct EndpointSpec {
    pub lane: LaneConfig,
    pub target: Arc<dyn Target>,
    /// Reads what the channel shows, for reconciliation (Shopify, Amazon, WooCommerce).
    pub reader: Option<Arc<dyn StockReader>>,
    /// Verifies the channel's inbound webhooks (Shopify, WooCommerce), when configured.
    pub webhook_secret: Option<Vec<u8>>,
    /// Item ↔ the channel's own ids (inbound mapping uses it too).
    pub crosswalk: Arc<Crosswalk>,
    /// The channel's own id of the location Crossdock publishes to (Shopify), so inventory
    /// reports about other locations are not mistaken for drift.
    pub channel_location: Option<String>,
    /// Set for an event feed; `None` for a channel's availability.
    pub feed: Option<crossdock_engine::Feed>,
}

impl EndpointSpec {
    /// The lane's name: the channel, or the feed's name.
    pub fn id(&self) -> &str {
        &self.lane.endpoint
    }
}

impl std::fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("lane", &self.lane)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<set>"),
            )
            .field("crosswalk", &self.crosswalk.len())
            .finish_non_exhaustive()
    }
}

/// The kinds Crossdock can deliver to, with the secrets each needs and its default limit.
const KINDS: &[(&str, &[&str], &[&str])] = &[
    ("shopify", &["access_token"], &["webhook_secret"]),
    (
        "amazon",
        &["refresh_token", "client_id", "client_secret"],
        &[],
    ),
    (
        "woocommerce",
        &["consumer_key", "consumer_secret"],
        &["webhook_secret"],
    ),
    ("webhook", &["signing_secret"], &[]),
];

/// Shopify GraphQL Standard plan: 100 points/s restored into a 1,000-point bucket; SP-API
/// `patchListingsItem`: 5/s, burst 5; WooCommerce has no platform limit (hosts set one).
fn default_rate(kind: &str) -> RateConfig {
    match kind {
        "shopify" => RateConfig::cost(100.0, 1000.0),
        "amazon" => RateConfig::token(5.0, 5.0),
        "woocommerce" => RateConfig::token(5.0, 10.0),
        _ => RateConfig::token(50.0, 50.0),
    }
}

/// Builds one endpoint, or reports every problem as `(key suffix, message)`.
pub fn build(e: &EndpointEntry, base: &Path) -> Result<EndpointSpec, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let (id, feed) = match (&e.channel, &e.name, &e.events) {
        (Some(c), None, None) => (c.clone(), None),
        (None, Some(name), Some(types)) => {
            for (j, t) in types.iter().enumerate() {
                if let Some(p) = event_pattern_problem(t) {
                    problems.push((format!("events.{j}"), p));
                }
            }
            if types.is_empty() {
                problems.push(("events".into(), "name at least one event type".into()));
            }
            if e.kind != "webhook" {
                problems.push((
                    "kind".into(),
                    "an event feed is delivered by a \"webhook\" endpoint".into(),
                ));
            }
            let feed = crossdock_engine::Feed {
                endpoint: name.clone(),
                types: types.clone(),
            };
            (name.clone(), Some(feed))
        }
        // A named endpoint without events takes workflow postings ([workflows] erp_endpoint,
        // warehouse releases).
        (None, Some(name), None) => {
            if e.kind != "webhook" {
                problems.push((
                    "kind".into(),
                    "workflow postings are delivered by a \"webhook\" endpoint".into(),
                ));
            }
            (name.clone(), None)
        }
        _ => {
            return Err(vec![(
                "channel".into(),
                "set either channel (publish its availability), name and events (an event feed), or name alone (workflow postings)"
                    .into(),
            )]);
        }
    };
    let Some(&(kind, required, optional)) = KINDS.iter().find(|k| k.0 == e.kind) else {
        let names: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
        return Err(vec![(
            "kind".into(),
            format!("unknown kind {:?}; use one of {}", e.kind, names.join(", ")),
        )]);
    };
    let mut secrets = BTreeMap::new();
    for name in e.secrets_env.keys().chain(e.secrets_file.keys()) {
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            problems.push((
                format!("secrets_env.{name}"),
                format!(
                    "{kind} takes no secret {name:?} (it takes {})",
                    [required, optional].concat().join(", ")
                ),
            ));
        }
    }
    for name in required.iter().chain(optional) {
        match secret(e, name, base) {
            Ok(Some(s)) => {
                secrets.insert(*name, s);
            }
            Ok(None) if required.contains(name) => problems.push((
                "secrets_env".into(),
                format!("{kind} needs secret {name:?} (from secrets_env or secrets_file)"),
            )),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    let crosswalk = match &e.crosswalk {
        Some(path) => match Crosswalk::load_csv(base.join(path)) {
            Ok(c) => c,
            Err(err) => {
                problems.push(("crosswalk".into(), err.to_string()));
                Crosswalk::default()
            }
        },
        None => Crosswalk::default(),
    };
    let rate = e.rate.unwrap_or_else(|| default_rate(kind));
    if let Some(p) = rate.problem() {
        problems.push(("rate".into(), p));
    }
    let fifo = match e.order.as_deref() {
        None | Some("risk_first") => false,
        Some("fifo") => true,
        Some(other) => {
            problems.push((
                "order".into(),
                format!("must be \"risk_first\" or \"fifo\", not {other:?}"),
            ));
            false
        }
    };
    let sections = [
        ("shopify", e.shopify.is_some()),
        ("amazon", e.amazon.is_some()),
        ("woocommerce", e.woocommerce.is_some()),
        ("webhook", e.webhook.is_some()),
    ];
    for (name, present) in sections {
        if present && name != kind {
            problems.push((
                name.into(),
                format!("a {kind} endpoint takes no [{name}] section"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let get = |name: &str| secrets.get(name).cloned().unwrap_or_default();
    let missing = || {
        vec![(
            kind.to_string(),
            format!("the [endpoints.{kind}] section is required"),
        )]
    };
    let at = |err: ConfigError| vec![(format!("{kind}.{}", err.key), err.reason)];
    let channel_location = e.shopify.as_ref().map(|c| {
        c.location_id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    type Reader = Option<Arc<dyn StockReader>>;
    let (target, reader, timeout_ms): (Arc<dyn Target>, Reader, u64) = match kind {
        "shopify" => {
            let c = e.shopify.clone().ok_or_else(missing)?;
            let t = c.timeout_ms;
            let p = Arc::new(
                ShopifyPublisher::new(c, get("access_token"), crosswalk.clone()).map_err(at)?,
            );
            (p.clone(), Some(p), t)
        }
        "amazon" => {
            let c = e.amazon.clone().ok_or_else(missing)?;
            let t = c.timeout_ms;
            let p = Arc::new(
                AmazonPublisher::new(
                    c,
                    get("refresh_token"),
                    get("client_id"),
                    get("client_secret"),
                    crosswalk.clone(),
                )
                .map_err(|errs| errs.into_iter().flat_map(at).collect::<Vec<_>>())?,
            );
            (p.clone(), Some(p), t)
        }
        "woocommerce" => {
            let c = e.woocommerce.clone().ok_or_else(missing)?;
            let t = c.timeout_ms;
            let p = Arc::new(
                WooPublisher::new(
                    c,
                    get("consumer_key"),
                    get("consumer_secret"),
                    crosswalk.clone(),
                )
                .map_err(at)?,
            );
            (p.clone(), Some(p), t)
        }
        _ => {
            let c = e.webhook.clone().ok_or_else(missing)?;
            let t = c.timeout_ms;
            (
                Arc::new(WebhookPublisher::new(c, get("signing_secret").into_bytes()).map_err(at)?),
                None,
                t,
            )
        }
    };
    Ok(EndpointSpec {
        lane: LaneConfig {
            endpoint: id,
            target: kind.to_string(),
            rate,
            retry: e.retry.unwrap_or_default(),
            breaker: e.breaker.unwrap_or_default(),
            // The publisher bounds each HTTP call; a feed or a resync read can take a few.
            call_timeout: Duration::from_millis(timeout_ms.saturating_mul(4).max(1_000)),
            fifo,
        },
        target,
        reader,
        webhook_secret: secrets
            .get("webhook_secret")
            .map(|s| s.clone().into_bytes()),
        crosswalk: Arc::new(crosswalk),
        channel_location,
        feed,
    })
}

fn secret(e: &EndpointEntry, name: &str, base: &Path) -> Result<Option<String>, (String, String)> {
    match (e.secrets_env.get(name), e.secrets_file.get(name)) {
        (Some(_), Some(_)) => Err((
            format!("secrets_env.{name}"),
            "set in both secrets_env and secrets_file; keep one".into(),
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Ok(_) => Err((
                format!("secrets_env.{name}"),
                format!("environment variable {var} is empty"),
            )),
            Err(_) => Err((
                format!("secrets_env.{name}"),
                format!("environment variable {var} is not set"),
            )),
        },
        (None, Some(file)) => match std::fs::read_to_string(base.join(file)) {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Ok(_) => Err((format!("secrets_file.{name}"), "the file is empty".into())),
            Err(err) => Err((
                format!("secrets_file.{name}"),
                format!("cannot read: {err}"),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// Why an event type pattern matches nothing, if it does not.
fn event_pattern_problem(pattern: &str) -> Option<String> {
    let names = crossdock_model::EventData::TYPES.iter().map(|(n, _)| *n);
    let matches = match pattern.strip_suffix('*') {
        Some(prefix) => names.clone().any(|n| n.starts_with(prefix)),
        None => names.clone().any(|n| n == pattern),
    };
    (!matches).then(|| {
        format!(
            "{pattern:?} matches no event type; use a type such as inventory.received.v1, a prefix such as inventory.*, or *"
        )
    })
}
