//! SP-API publisher configuration, with Amazon's documented defaults in one place.

use serde::Deserialize;

use super::bucket::BucketConfig;
use crate::util::{self, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonConfig {
    /// Regional SP-API endpoint (`https://sellingpartnerapi-na.amazon.com`) or a simulator.
    pub endpoint: String,
    /// Login with Amazon token endpoint.
    #[serde(default = "default_lwa_url")]
    pub lwa_url: String,
    pub seller_id: String,
    pub marketplace_id: String,
    /// `productType` sent with every patch and feed message. `PRODUCT` is Amazon's generic
    /// type, accepted for offer-only attributes such as fulfillment availability.
    #[serde(default = "default_product_type")]
    pub product_type: String,
    /// `DEFAULT` is the seller-fulfilled (MFN) channel; FBA quantities are Amazon's to set.
    #[serde(default = "default_fulfillment_channel_code")]
    pub fulfillment_channel_code: String,
    #[serde(default = "util::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Backlog from which a JSON_LISTINGS_FEED is used instead of one patch per SKU; 0 never.
    #[serde(default = "default_feed_threshold")]
    pub feed_threshold: usize,
    /// Pause between `getFeed` polls.
    #[serde(default = "default_feed_poll_ms")]
    pub feed_poll_ms: u64,
    /// Longest a feed may take, from the first call to the processing report.
    #[serde(default = "default_feed_timeout_s")]
    pub feed_timeout_s: u64,
    /// An item without a crosswalk entry is sent with its item id as the seller SKU.
    #[serde(default = "default_true")]
    pub sku_is_item: bool,
    /// The feed operations' own limits (Feeds API 2021-06-30 usage plans).
    #[serde(default)]
    pub feed_limits: FeedLimits,
    /// `searchListingsItems`' limit (Listings Items 2021-08-01 usage plan: 5 per second, burst
    /// 5), which paces the pages of a stock read.
    #[serde(default = "default_search_listings_limit")]
    pub search_listings_limit: BucketConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedLimits {
    pub create_feed: BucketConfig,
    pub create_feed_document: BucketConfig,
    pub get_feed: BucketConfig,
    pub get_feed_document: BucketConfig,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            create_feed: BucketConfig::new(0.0083, 15.0),
            create_feed_document: BucketConfig::new(0.5, 15.0),
            get_feed: BucketConfig::new(2.0, 15.0),
            get_feed_document: BucketConfig::new(0.0222, 10.0),
        }
    }
}

fn default_lwa_url() -> String {
    "https://api.amazon.com/auth/o2/token".into()
}

fn default_product_type() -> String {
    "PRODUCT".into()
}

fn default_fulfillment_channel_code() -> String {
    "DEFAULT".into()
}

fn default_feed_threshold() -> usize {
    500
}

fn default_feed_poll_ms() -> u64 {
    2_000
}

fn default_feed_timeout_s() -> u64 {
    600
}

fn default_search_listings_limit() -> BucketConfig {
    BucketConfig::new(5.0, 5.0)
}

fn default_true() -> bool {
    true
}

impl AmazonConfig {
    /// Every problem at once, each naming its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = util::base_url("endpoint", &self.endpoint) {
            problems.push(e);
        }
        if let Err(e) = util::base_url("lwa_url", &self.lwa_url) {
            problems.push(e);
        }
        for (key, value) in [
            ("seller_id", &self.seller_id),
            ("marketplace_id", &self.marketplace_id),
            ("product_type", &self.product_type),
            ("fulfillment_channel_code", &self.fulfillment_channel_code),
        ] {
            if value.trim().is_empty() {
                problems.push(ConfigError::new(key, "is empty"));
            }
        }
        if let Err(e) = util::timeout("timeout_ms", self.timeout_ms) {
            problems.push(e);
        }
        if self.feed_threshold > 0 {
            if self.feed_poll_ms == 0 {
                problems.push(ConfigError::new("feed_poll_ms", "must be more than 0"));
            }
            if self.feed_timeout_s == 0 {
                problems.push(ConfigError::new("feed_timeout_s", "must be more than 0"));
            }
        }
        for (key, limit) in [
            ("feed_limits.create_feed", self.feed_limits.create_feed),
            (
                "feed_limits.create_feed_document",
                self.feed_limits.create_feed_document,
            ),
            ("feed_limits.get_feed", self.feed_limits.get_feed),
            ("search_listings_limit", self.search_listings_limit),
            (
                "feed_limits.get_feed_document",
                self.feed_limits.get_feed_document,
            ),
        ] {
            if let Some(reason) = limit.problem() {
                problems.push(ConfigError::new(key, reason));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_usage_plans() {
        let c: AmazonConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "https://sellingpartnerapi-na.amazon.com",
            "seller_id": "A1", "marketplace_id": "ATVPDKIKX0DER"
        }))
        .unwrap();
        assert_eq!(c.lwa_url, "https://api.amazon.com/auth/o2/token");
        assert_eq!(
            (c.product_type.as_str(), c.fulfillment_channel_code.as_str()),
            ("PRODUCT", "DEFAULT")
        );
        assert_eq!(
            (c.feed_threshold, c.feed_poll_ms, c.feed_timeout_s),
            (500, 2000, 600)
        );
        assert!(c.sku_is_item);
        assert_eq!(c.feed_limits.create_feed, BucketConfig::new(0.0083, 15.0));
        assert_eq!(c.search_listings_limit, BucketConfig::new(5.0, 5.0));
        assert_eq!(
            c.feed_limits.get_feed_document,
            BucketConfig::new(0.0222, 10.0)
        );
        assert!(c.problems().is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let c: AmazonConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "nope", "seller_id": " ", "marketplace_id": "M",
            "feed_poll_ms": 0, "feed_limits": {"get_feed": {"rate_per_s": 0, "burst": 15}}
        }))
        .unwrap();
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "endpoint",
                "seller_id",
                "feed_poll_ms",
                "feed_limits.get_feed"
            ]
        );
        let unknown = serde_json::from_value::<AmazonConfig>(serde_json::json!({
            "endpoint": "https://x", "seller_id": "A", "marketplace_id": "M", "feed_treshold": 1
        }));
        assert!(unknown.unwrap_err().to_string().contains("feed_treshold"));
    }
}
