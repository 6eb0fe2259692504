//! The SP-API publisher: one `patchListingsItem` per SKU, or a JSON listings feed for a large
//! backlog (see [`super::feed`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossdock_delivery::{
    Body, BoxFuture, Failure, Message, MsgResult, Outcome, RateFeedback, Target, http,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::bucket::TokenBucket;
use super::config::AmazonConfig;
use super::lwa::Lwa;
use crate::crosswalk::Crosswalk;
use crate::util::{self, ConfigError};

/// The Listings Items API version used for patches and reads.
pub const LISTINGS_VERSION: &str = "2021-08-01";

/// Most messages in one JSON listings feed (Amazon's documented message limit per feed is far
/// higher; this bounds one lane call and its processing report).
pub const FEED_MAX: usize = 10_000;

/// Which feed operation a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FeedOp {
    CreateFeedDocument,
    CreateFeed,
    GetFeed,
    GetFeedDocument,
}

impl FeedOp {
    pub(super) fn name(self) -> &'static str {
        match self {
            FeedOp::CreateFeedDocument => "createFeedDocument",
            FeedOp::CreateFeed => "createFeed",
            FeedOp::GetFeed => "getFeed",
            FeedOp::GetFeedDocument => "getFeedDocument",
        }
    }
}

pub(super) struct FeedBuckets {
    create_feed_document: TokenBucket,
    create_feed: TokenBucket,
    get_feed: TokenBucket,
    get_feed_document: TokenBucket,
}

impl FeedBuckets {
    pub(super) fn get(&mut self, op: FeedOp) -> &mut TokenBucket {
        match op {
            FeedOp::CreateFeedDocument => &mut self.create_feed_document,
            FeedOp::CreateFeed => &mut self.create_feed,
            FeedOp::GetFeed => &mut self.get_feed,
            FeedOp::GetFeedDocument => &mut self.get_feed_document,
        }
    }
}

pub struct AmazonPublisher {
    pub(super) client: reqwest::Client,
    pub(super) endpoint: reqwest::Url,
    pub(super) config: AmazonConfig,
    lwa: Lwa,
    pub(super) crosswalk: Crosswalk,
    pub(super) channel: String,
    pub(super) buckets: Mutex<FeedBuckets>,
    /// `searchListingsItems`, for stock reads (see [`super::stock`]).
    pub(super) search_bucket: Mutex<TokenBucket>,
}

impl std::fmt::Debug for AmazonPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("AmazonPublisher")
            .field("endpoint", &self.endpoint.as_str())
            .field("seller_id", &self.config.seller_id)
            .field("marketplace_id", &self.config.marketplace_id)
            .finish_non_exhaustive()
    }
}

/// An SP-API response, read whole.
#[derive(Debug, Clone)]
pub(super) struct SpAnswer {
    pub(super) status: u16,
    /// `x-amzn-RateLimit-Limit`: the operation's current rate, requests per second.
    pub(super) rate_limit: Option<f64>,
    pub(super) retry_after: Option<Duration>,
    pub(super) text: String,
}

impl SpAnswer {
    async fn read(response: reqwest::Response) -> Result<Self, Failure> {
        let status = response.status().as_u16();
        let rate_limit = response
            .headers()
            .get("x-amzn-RateLimit-Limit")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0);
        let retry_after = http::retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        Ok(SpAnswer {
            status,
            rate_limit,
            retry_after,
            text,
        })
    }

    fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer as `T`, or the failure it means.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Failure> {
        if !self.success() {
            return Err(Failure::from_status(
                self.status,
                util::detail(format!("{what}: {}", self.text)),
            ));
        }
        serde_json::from_str(&self.text).map_err(|e| {
            Failure::retryable(
                Some(self.status),
                util::detail(format!("{what}: unexpected answer ({e}): {}", self.text)),
            )
        })
    }

    fn feedback(&self) -> RateFeedback {
        RateFeedback {
            retry_after: self.retry_after,
            rate: self.rate_limit,
            ..Default::default()
        }
    }
}

impl AmazonPublisher {
    /// `refresh_token`, `client_id` and `client_secret` are the LWA credentials of the seller's
    /// authorisation. `crosswalk` maps item ids to seller SKUs (see `sku_is_item`).
    pub fn new(
        config: AmazonConfig,
        refresh_token: String,
        client_id: String,
        client_secret: String,
        crosswalk: Crosswalk,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut problems = config.problems();
        for (key, value) in [
            ("refresh_token", &refresh_token),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
        ] {
            if value.trim().is_empty() {
                problems.push(ConfigError::new(key, "is empty"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let base = util::base_url("endpoint", &config.endpoint).map_err(|e| vec![e])?;
        let endpoint = reqwest::Url::parse(&base)
            .map_err(|e| vec![ConfigError::new("endpoint", e.to_string())])?;
        if endpoint.cannot_be_a_base() {
            return Err(vec![ConfigError::new("endpoint", "cannot be a base URL")]);
        }
        let lwa_url = util::base_url("lwa_url", &config.lwa_url).map_err(|e| vec![e])?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let now = Instant::now();
        let limits = config.feed_limits;
        Ok(AmazonPublisher {
            client: http::client(timeout),
            channel: format!("amazon:{}", config.marketplace_id),
            buckets: Mutex::new(FeedBuckets {
                create_feed_document: TokenBucket::new(limits.create_feed_document, now),
                create_feed: TokenBucket::new(limits.create_feed, now),
                get_feed: TokenBucket::new(limits.get_feed, now),
                get_feed_document: TokenBucket::new(limits.get_feed_document, now),
            }),
            search_bucket: Mutex::new(TokenBucket::new(config.search_listings_limit, now)),
            lwa: Lwa::new(lwa_url, refresh_token, client_id, client_secret),
            endpoint,
            config,
            crosswalk,
        })
    }

    /// The longest any one `send` can take ([`AmazonPublisher::call_budget`] of the largest
    /// batch): what a lane's per-call bound for this target must allow.
    pub fn longest_call(&self) -> Duration {
        let call = Duration::from_millis(self.config.timeout_ms);
        if self.feeds_enabled() {
            Duration::from_secs(self.config.feed_timeout_s) + call.saturating_mul(8)
        } else {
            call.saturating_mul(4)
        }
    }

    pub(super) fn feeds_enabled(&self) -> bool {
        self.config.feed_threshold > 0
    }

    pub(super) fn lock_buckets(&self) -> std::sync::MutexGuard<'_, FeedBuckets> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The seller SKU for `item`.
    pub(super) fn sku<'a>(&'a self, item: &'a str) -> Result<&'a str, Failure> {
        match self.crosswalk.external(item) {
            Some(sku) => Ok(sku),
            None if self.config.sku_is_item => Ok(item),
            None => Err(util::no_crosswalk_entry(item, &self.channel)),
        }
    }

    /// `{endpoint}/<segments...>?<query>`, each segment percent-encoded (a SKU may hold `/`).
    pub(super) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.endpoint.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("checked in new: the endpoint can be a base");
            path.pop_if_empty();
            for segment in segments {
                path.push(segment);
            }
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// One SP-API call with the access token. A 403 on the first try may be an access token
    /// that expired in flight: the token is fetched again and the call made once more.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
        correlation_id: Option<&str>,
    ) -> Result<SpAnswer, Failure> {
        let mut refreshed = false;
        loop {
            let token = self.lwa.token(&self.client).await?;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .header("x-amz-access-token", token);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(id) = correlation_id {
                request = request.header("X-Correlation-Id", id);
            }
            let response = request
                .send()
                .await
                .map_err(|e| http::transport_failure(&e))?;
            let answer = SpAnswer::read(response).await?;
            if answer.status == 403 && !refreshed {
                self.lwa.invalidate();
                refreshed = true;
                continue;
            }
            return Ok(answer);
        }
    }

    async fn patch(&self, message: &Message) -> (MsgResult, RateFeedback) {
        let Body::Availability {
            item, available, ..
        } = &message.body
        else {
            return (
                util::unsupported_body(message, &self.channel),
                RateFeedback::default(),
            );
        };
        let sku = match self.sku(item) {
            Ok(sku) => sku,
            Err(failure) => return (MsgResult::Failed(failure), RateFeedback::default()),
        };
        let url = self.url(
            &[
                "listings",
                LISTINGS_VERSION,
                "items",
                &self.config.seller_id,
                sku,
            ],
            &[("marketplaceIds", &self.config.marketplace_id)],
        );
        let body = json!({
            "productType": self.config.product_type,
            "patches": [availability_patch(&self.config.fulfillment_channel_code, *available)],
        });
        match self
            .call(
                reqwest::Method::PATCH,
                url,
                Some(&body),
                message.correlation_id.as_deref(),
            )
            .await
        {
            Ok(answer) => (read_patch_answer(&answer), answer.feedback()),
            Err(failure) => (MsgResult::Failed(failure), RateFeedback::default()),
        }
    }

    async fn read(&self, key: &str) -> Result<i64, Failure> {
        let sku = self.sku(key)?;
        let url = self.url(
            &[
                "listings",
                LISTINGS_VERSION,
                "items",
                &self.config.seller_id,
                sku,
            ],
            &[
                ("marketplaceIds", &self.config.marketplace_id),
                ("includedData", "fulfillmentAvailability"),
            ],
        );
        let answer = self.call(reqwest::Method::GET, url, None, None).await?;
        read_listing_quantity(&answer, &self.config.fulfillment_channel_code)
    }

    async fn send_batch(&self, batch: &[Message]) -> Outcome {
        if batch.len() > 1 && self.feeds_enabled() {
            return self.send_feed(batch).await;
        }
        // One patch per message (the lane sends one at a time on this path).
        let mut outcome = Outcome::default();
        for message in batch {
            let (result, feedback) = self.patch(message).await;
            outcome.results.push(result);
            outcome.feedback = feedback;
        }
        outcome
    }
}

impl Target for AmazonPublisher {
    /// The longest one `send` of `batch` can take. A patch is at most four calls (a token, the
    /// patch, and both again after a 403); a feed runs up to `feed_timeout_s` and then a few
    /// calls to fetch its report. A lane's own bound on a call must not be shorter, or every
    /// feed is abandoned and sent again as a new feed.
    fn call_budget(&self, batch: &[Message]) -> Duration {
        let call = Duration::from_millis(self.config.timeout_ms);
        if batch.len() > 1 && self.feeds_enabled() {
            Duration::from_secs(self.config.feed_timeout_s) + call.saturating_mul(8)
        } else {
            call.saturating_mul(4)
                .saturating_mul(batch.len().max(1) as u32)
        }
    }

    fn max_batch(&self) -> usize {
        if self.feeds_enabled() { FEED_MAX } else { 1 }
    }

    /// One (a patch) unless the backlog reaches `feed_threshold` and the feed operations'
    /// own buckets hold a token for each step that is taken once per feed now.
    fn batch_size(&self, backlog: usize) -> usize {
        if !self.feeds_enabled() || backlog < self.config.feed_threshold || backlog < 2 {
            return 1;
        }
        let now = Instant::now();
        let mut buckets = self.lock_buckets();
        let ready = [
            FeedOp::CreateFeedDocument,
            FeedOp::CreateFeed,
            FeedOp::GetFeed,
            FeedOp::GetFeedDocument,
        ]
        .into_iter()
        .all(|op| buckets.get(op).available(now) >= 1.0);
        if ready { backlog.min(FEED_MAX) } else { 1 }
    }

    /// A patch costs 1 against the lane's limiter (the patchListingsItem limit); a feed costs
    /// nothing there, its operations being limited inside the publisher.
    fn estimated_cost(&self, batch: &[Message]) -> f64 {
        if batch.len() > 1 && self.feeds_enabled() {
            0.0
        } else {
            batch.len() as f64
        }
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send_batch(batch))
    }

    fn read_current<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Result<i64, Failure>>> {
        Box::pin(async move { Some(self.read(key).await) })
    }
}

/// The patch that sets the seller-fulfilled quantity. Amazon takes no negative quantity: an
/// oversold item shows 0.
pub(super) fn availability_patch(channel_code: &str, available: i64) -> Value {
    json!({
        "op": "replace",
        "path": "/attributes/fulfillment_availability",
        "value": [{ "fulfillment_channel_code": channel_code, "quantity": available.max(0) }],
    })
}

#[derive(Deserialize)]
struct PatchAnswer {
    status: String,
    #[serde(default)]
    issues: Vec<Value>,
}

/// Reads a `patchListingsItem` answer.
fn read_patch_answer(answer: &SpAnswer) -> MsgResult {
    let parsed: PatchAnswer = match answer.json("patchListingsItem") {
        Ok(parsed) => parsed,
        Err(failure) => return MsgResult::Failed(failure),
    };
    match parsed.status.as_str() {
        "ACCEPTED" => MsgResult::Delivered,
        // INVALID: the submission was refused with issues. VALID only answers a validation
        // preview, which applies nothing: as permanent, since it means a misbuilt request.
        other => MsgResult::Failed(Failure::permanent(
            Some(answer.status),
            util::detail(format!(
                "submission {other}: {}",
                Value::Array(parsed.issues)
            )),
        )),
    }
}

/// Reads the channel's quantity from a `getListingsItem` answer with
/// `includedData=fulfillmentAvailability`.
fn read_listing_quantity(answer: &SpAnswer, channel_code: &str) -> Result<i64, Failure> {
    let listing: Value = answer.json("getListingsItem")?;
    let entry = listing
        .get("fulfillmentAvailability")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("fulfillmentChannelCode").and_then(Value::as_str) == Some(channel_code));
    match entry {
        Some(entry) => Ok(entry.get("quantity").and_then(Value::as_i64).unwrap_or(0)),
        None => Err(Failure::permanent(
            Some(answer.status),
            format!("the listing shows no {channel_code} fulfillment availability"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;

    pub(crate) fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../testdata/channels/amazon_spapi/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn answer(status: u16, text: &str) -> SpAnswer {
        SpAnswer {
            status,
            rate_limit: None,
            retry_after: None,
            text: text.into(),
        }
    }

    #[test]
    fn reads_the_real_patch_answers() {
        let accepted = fixture("example__patchListingsItem__200__0.json");
        assert_eq!(
            read_patch_answer(&answer(200, &accepted)),
            MsgResult::Delivered
        );
        let valid = fixture("example__patchListingsItem__200__1.json");
        assert!(matches!(
            read_patch_answer(&answer(200, &valid)),
            MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.starts_with("submission VALID")
        ));
        let bad = fixture("example__patchListingsItem__400__0.json");
        let MsgResult::Failed(f) = read_patch_answer(&answer(400, &bad)) else {
            panic!("expected failure");
        };
        assert_eq!((f.class, f.status), (RetryClass::Permanent, Some(400)));
        assert!(f.detail.contains("Invalid input"));
    }

    #[test]
    fn invalid_submissions_carry_their_issues() {
        let text = r#"{"sku": "A", "status": "INVALID", "submissionId": "x",
            "issues": [{"code": "90220", "message": "'quantity' is required", "severity": "ERROR"}]}"#;
        let MsgResult::Failed(f) = read_patch_answer(&answer(200, text)) else {
            panic!("expected failure");
        };
        assert_eq!(f.class, RetryClass::Permanent);
        assert!(f.detail.contains("90220"), "{}", f.detail);
        for (status, class) in [
            (429, RetryClass::Retryable),
            (503, RetryClass::Retryable),
            (404, RetryClass::Permanent),
        ] {
            assert!(
                matches!(read_patch_answer(&answer(status, "{}")), MsgResult::Failed(f) if f.class == class)
            );
        }
    }

    #[test]
    fn reads_the_quantity_of_the_real_listing() {
        let listing = fixture("example__getListingsItem__200__0.json");
        assert_eq!(
            read_listing_quantity(&answer(200, &listing), "DEFAULT"),
            Ok(100)
        );
        assert!(read_listing_quantity(&answer(200, &listing), "AMAZON_NA").is_err());
        assert!(matches!(
            read_listing_quantity(&answer(429, "{}"), "DEFAULT"),
            Err(f) if f.class == RetryClass::Retryable
        ));
    }

    #[test]
    fn the_patch_never_goes_negative() {
        assert_eq!(
            availability_patch("DEFAULT", -4),
            json!({"op": "replace", "path": "/attributes/fulfillment_availability",
                   "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 0}]})
        );
    }

    fn publisher(feed_threshold: usize, sku_is_item: bool) -> AmazonPublisher {
        let config: AmazonConfig = serde_json::from_value(json!({
            "endpoint": "https://sellingpartnerapi-na.amazon.com",
            "seller_id": "A1SELLER", "marketplace_id": "ATVPDKIKX0DER",
            "feed_threshold": feed_threshold, "sku_is_item": sku_is_item
        }))
        .unwrap();
        let walk = Crosswalk::from_pairs([("ITEM-1", "SKU/1 X")]).unwrap();
        AmazonPublisher::new(config, "r".into(), "c".into(), "s".into(), walk).unwrap()
    }

    #[test]
    fn skus_come_from_the_crosswalk_or_the_item() {
        let p = publisher(500, true);
        assert_eq!(p.sku("ITEM-1"), Ok("SKU/1 X"));
        assert_eq!(p.sku("ITEM-2"), Ok("ITEM-2"));
        let strict = publisher(500, false);
        assert_eq!(
            strict.sku("ITEM-2").unwrap_err().detail,
            "no crosswalk entry for item ITEM-2 on channel amazon:ATVPDKIKX0DER"
        );
        let url = p.url(
            &["listings", LISTINGS_VERSION, "items", "A1SELLER", "SKU/1 X"],
            &[("marketplaceIds", "ATVPDKIKX0DER")],
        );
        assert_eq!(
            url.as_str(),
            "https://sellingpartnerapi-na.amazon.com/listings/2021-08-01/items/A1SELLER/SKU%2F1%20X?marketplaceIds=ATVPDKIKX0DER"
        );
    }

    #[test]
    fn batches_are_single_patches_until_the_feed_threshold() {
        let p = publisher(500, true);
        assert_eq!(p.max_batch(), FEED_MAX);
        assert_eq!(p.batch_size(1), 1);
        assert_eq!(p.batch_size(499), 1);
        assert_eq!(p.batch_size(500), 500);
        assert_eq!(p.batch_size(50_000), FEED_MAX);
        // With the createFeed bucket spent, patches again.
        {
            let now = Instant::now();
            let mut buckets = p.lock_buckets();
            while buckets.get(FeedOp::CreateFeed).try_take(now, 1.0).is_ok() {}
        }
        assert_eq!(p.batch_size(5_000), 1);
        let off = publisher(0, true);
        assert_eq!((off.max_batch(), off.batch_size(50_000)), (1, 1));
        let m = Message {
            key: "A".into(),
            ledger_seq: 1,
            body: Body::Availability {
                item: "A".into(),
                available: 1,
                last_sent: None,
            },
            idempotency_key: "k".into(),
            correlation_id: None,
        };
        assert_eq!(p.estimated_cost(std::slice::from_ref(&m)), 1.0);
        // A feed may run for feed_timeout_s (600 s) plus its report calls (10 s each).
        assert_eq!(
            p.call_budget(&[m.clone(), m.clone()]),
            Duration::from_secs(680)
        );
        assert_eq!(
            p.call_budget(std::slice::from_ref(&m)),
            Duration::from_secs(40)
        );
        assert_eq!(p.estimated_cost(&[m.clone(), m]), 0.0);
    }
}
