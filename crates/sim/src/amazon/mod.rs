//! Amazon Selling Partner API: the listings and feeds calls Crossdock makes, with Login with
//! Amazon, as a loopback server.
//!
//! Faithful to:
//! - Login with Amazon: `POST /auth/o2/token` (form body, `grant_type=refresh_token`) answers
//!   `{"access_token":"Atza|...","token_type":"bearer","expires_in":3600,"refresh_token":...}`.
//!   A wrong client id or secret is LWA's 401 `invalid_client`; a wrong refresh token its 400
//!   `invalid_grant`; another grant type 400 `unsupported_grant_type`.
//! - Every SP-API call needs `x-amz-access-token` with an issued, unexpired token, else 403
//!   `{"errors":[{"code":"Unauthorized","message":"Access to requested resource is
//!   denied.","details":""}]}`.
//! - A token bucket per operation ([`AmazonRateLimits`], defaults from SP-API's usage plans). A
//!   call without budget is 429 `QuotaExceeded`. Every SP-API answer carries
//!   `x-amzn-RateLimit-Limit` (the operation's rate) and `x-amzn-RequestId`.
//! - Listings Items 2021-08-01 `patchListingsItem`, `getListingsItem` and
//!   `searchListingsItems` (see [`listings`]).
//! - Feeds 2021-06-30 with `JSON_LISTINGS_FEED`: feed documents, presigned upload and download
//!   URLs (on the simulator itself), feeds and their processing reports (see [`feeds`]).
//!
//! Left out: request signing (SigV4 is no longer required by SP-API); restricted data tokens;
//! every other operation; dynamic usage plans (the limits are fixed by the config);
//! `getFeeds`, `cancelFeed`; compressed reports; listing attributes other than
//! `fulfillment_availability` (accepted, not kept). There is one seller
//! ([`AmazonConfig::seller_id`]); a call for another seller is refused like a bad token.
//!
//! Item ids are SKUs. Permanent rejection: a SKU in [`crate::Faults::permanent_items`] gets
//! 400 `BAD_REQUEST` from `patchListingsItem`, an `ERROR` issue in a feed's processing report,
//! and 404 from `getListingsItem`.

pub mod feeds;
pub mod listings;

use std::collections::HashMap;
use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;

use crate::bucket::{RateLimit, Take, TokenBucket};
use crate::endpoint::{Endpoint, gate, json};
use crate::server::{Bound, Server};

/// Largest feed document the upload URL takes.
pub const UPLOAD_MAX_BYTES: usize = 64 << 20;

/// The SP-API operations the simulator serves, each with its own token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    PatchListingsItem,
    GetListingsItem,
    SearchListingsItems,
    CreateFeedDocument,
    CreateFeed,
    GetFeed,
    GetFeedDocument,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::PatchListingsItem,
        Operation::GetListingsItem,
        Operation::SearchListingsItems,
        Operation::CreateFeedDocument,
        Operation::CreateFeed,
        Operation::GetFeed,
        Operation::GetFeedDocument,
    ];

    /// The operation a request is for, from its method and path.
    pub fn of(method: &Method, path: &str) -> Option<Operation> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("PATCH", ["listings", "2021-08-01", "items", _, _]) => {
                Some(Operation::PatchListingsItem)
            }
            ("GET", ["listings", "2021-08-01", "items", _, _]) => Some(Operation::GetListingsItem),
            ("GET", ["listings", "2021-08-01", "items", _]) => Some(Operation::SearchListingsItems),
            ("POST", ["feeds", "2021-06-30", "documents"]) => Some(Operation::CreateFeedDocument),
            ("POST", ["feeds", "2021-06-30", "feeds"]) => Some(Operation::CreateFeed),
            ("GET", ["feeds", "2021-06-30", "feeds", _]) => Some(Operation::GetFeed),
            ("GET", ["feeds", "2021-06-30", "documents", _]) => Some(Operation::GetFeedDocument),
            _ => None,
        }
    }
}

/// Rate and burst per operation. Defaults: SP-API's usage plans
/// (`shared/extdata/channels/amazon_spapi/USAGE_PLANS.tsv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmazonRateLimits {
    /// 5 per second, burst 5.
    pub patch_listings_item: RateLimit,
    /// 5 per second, burst 10.
    pub get_listings_item: RateLimit,
    /// 5 per second, burst 5.
    pub search_listings_items: RateLimit,
    /// 0.5 per second, burst 15.
    pub create_feed_document: RateLimit,
    /// 0.0083 per second, burst 15.
    pub create_feed: RateLimit,
    /// 2 per second, burst 15.
    pub get_feed: RateLimit,
    /// 0.0222 per second, burst 10.
    pub get_feed_document: RateLimit,
}

impl Default for AmazonRateLimits {
    fn default() -> Self {
        AmazonRateLimits {
            patch_listings_item: RateLimit::new(5.0, 5.0),
            get_listings_item: RateLimit::new(5.0, 10.0),
            search_listings_items: RateLimit::new(5.0, 5.0),
            create_feed_document: RateLimit::new(0.5, 15.0),
            create_feed: RateLimit::new(0.0083, 15.0),
            get_feed: RateLimit::new(2.0, 15.0),
            get_feed_document: RateLimit::new(0.0222, 10.0),
        }
    }
}

impl AmazonRateLimits {
    pub fn of(&self, operation: Operation) -> RateLimit {
        match operation {
            Operation::PatchListingsItem => self.patch_listings_item,
            Operation::GetListingsItem => self.get_listings_item,
            Operation::SearchListingsItems => self.search_listings_items,
            Operation::CreateFeedDocument => self.create_feed_document,
            Operation::CreateFeed => self.create_feed,
            Operation::GetFeed => self.get_feed,
            Operation::GetFeedDocument => self.get_feed_document,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AmazonConfig {
    /// LWA client id. Default `amzn1.application-oa2-client.simulator`.
    pub client_id: String,
    /// LWA client secret. Default `simulator-client-secret`.
    pub client_secret: String,
    /// LWA refresh token. Default `Atzr|simulator-refresh-token`.
    pub refresh_token: String,
    /// Lifetime of an issued access token. Default 3600 s.
    pub access_token_ttl: Duration,
    /// The seller the tokens act for (`{sellerId}` in listings paths). Default `A2SIMSELLER0001`.
    pub seller_id: String,
    /// Marketplaces the seller sells in. Default `["ATVPDKIKX0DER"]` (amazon.com).
    pub marketplace_ids: Vec<String>,
    pub rate_limits: AmazonRateLimits,
    /// Refuse SKUs never inserted (404 from `patchListingsItem`, an issue in a feed) instead
    /// of creating them. Default false.
    pub strict_items: bool,
    /// Time between `createFeed` and the feed being processed (`IN_QUEUE` until then). Default
    /// zero: processed before `createFeed` answers.
    pub feed_processing_delay: Duration,
    /// Most messages in one `JSON_LISTINGS_FEED` (more is a `FATAL` feed). Default 10,000.
    pub feed_messages_max: usize,
    /// Most listings one `searchListingsItems` page holds, whatever `pageSize` asks (1 to 20,
    /// else 400). Default 20, Amazon's own limit; a test sets it small to page through a few
    /// listings.
    pub search_page_size_max: usize,
    /// Most listings `searchListingsItems` pages through; `numberOfResults` still counts them
    /// all. Default 1,000, as Amazon documents.
    pub search_results_max: usize,
}

impl Default for AmazonConfig {
    fn default() -> Self {
        AmazonConfig {
            client_id: "amzn1.application-oa2-client.simulator".into(),
            client_secret: "simulator-client-secret".into(),
            refresh_token: "Atzr|simulator-refresh-token".into(),
            access_token_ttl: Duration::from_secs(3600),
            seller_id: "A2SIMSELLER0001".into(),
            marketplace_ids: vec!["ATVPDKIKX0DER".into()],
            rate_limits: AmazonRateLimits::default(),
            strict_items: false,
            feed_processing_delay: Duration::ZERO,
            feed_messages_max: 10_000,
            search_page_size_max: 20,
            search_results_max: 1_000,
        }
    }
}

impl AmazonConfig {
    fn check(&self) -> Result<(), String> {
        for operation in Operation::ALL {
            if let Some(problem) = self.rate_limits.of(operation).problem() {
                return Err(format!("rate_limits.{operation:?}: {problem}"));
            }
        }
        if self.marketplace_ids.is_empty() {
            return Err("marketplace_ids is empty".into());
        }
        if self.access_token_ttl.is_zero() || self.feed_messages_max == 0 {
            return Err("access_token_ttl and feed_messages_max must be above 0".into());
        }
        if self.search_page_size_max == 0 || self.search_results_max == 0 {
            return Err("search_page_size_max and search_results_max must be above 0".into());
        }
        Ok(())
    }
}

/// A running SP-API simulator. Dereferences to its [`Endpoint`].
#[derive(Debug)]
pub struct AmazonSim {
    server: Server,
    market: Arc<Market>,
}

impl Deref for AmazonSim {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.market.endpoint
    }
}

impl AmazonSim {
    /// Binds `127.0.0.1:0` and serves until dropped or stopped.
    pub async fn start(config: AmazonConfig) -> io::Result<AmazonSim> {
        config
            .check()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("amazon sim: {e}")))?;
        let bound = Bound::loopback().await?;
        let endpoint = Arc::new(Endpoint::new(
            |sku| sku.to_owned(),
            fault_answer,
            bound.shutdown_signal(),
        ));
        let now = Instant::now();
        let buckets = Operation::ALL
            .into_iter()
            .map(|op| (op, TokenBucket::full(config.rate_limits.of(op), now)))
            .collect();
        let market = Arc::new(Market {
            endpoint: endpoint.clone(),
            url: bound.url.clone(),
            buckets: Mutex::new(buckets),
            tokens: Mutex::new(HashMap::new()),
            listings: Mutex::new(listings::Listings::default()),
            feeds: Mutex::new(feeds::FeedBook::default()),
            ids: Ids::new(),
            config,
        });
        let router = Router::new()
            .route("/auth/o2/token", post(token))
            .route(
                "/listings/2021-08-01/items/{seller_id}",
                get(listings::search_listings_items),
            )
            .route(
                "/listings/2021-08-01/items/{seller_id}/{sku}",
                get(listings::get_listings_item).patch(listings::patch_listings_item),
            )
            .route(
                "/feeds/2021-06-30/documents",
                post(feeds::create_feed_document),
            )
            .route(
                "/feeds/2021-06-30/documents/{id}",
                get(feeds::get_feed_document),
            )
            .route("/feeds/2021-06-30/feeds", post(feeds::create_feed))
            .route("/feeds/2021-06-30/feeds/{id}", get(feeds::get_feed))
            .route(
                "/upload/{id}",
                put(feeds::upload).layer(DefaultBodyLimit::max(UPLOAD_MAX_BYTES)),
            )
            .route("/download/{id}", get(feeds::download))
            .with_state(market.clone())
            .layer(axum::middleware::from_fn_with_state(endpoint, gate))
            .layer(axum::middleware::from_fn_with_state(
                market.clone(),
                amazon_headers,
            ));
        Ok(AmazonSim {
            server: bound.serve(router, "amazon"),
            market,
        })
    }

    /// Base URL of SP-API and of LWA, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// `<url>/auth/o2/token`.
    pub fn token_url(&self) -> String {
        format!("{}/auth/o2/token", self.url())
    }

    pub fn config(&self) -> &AmazonConfig {
        &self.market.config
    }

    /// Creates (or resets) a listing with `quantity` for the DEFAULT (merchant) channel,
    /// outside the API.
    pub fn insert_item(&self, sku: &str, quantity: i64) {
        self.set_quantity(sku, quantity);
    }

    /// The processing status of a feed (`IN_QUEUE`, `DONE`, `FATAL`), `None` if unknown.
    pub fn feed_status(&self, feed_id: &str) -> Option<&'static str> {
        self.market
            .feeds()
            .feed(feed_id)
            .map(|feed| feed.status.as_str())
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// SP-API's error list: `{"errors":[{"code","message","details"}]}`.
pub(crate) fn sp_error(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    json(
        status,
        json!({"errors": [{"code": code, "message": message, "details": details}]}),
    )
}

fn fault_answer(status: StatusCode) -> Response {
    let (code, message) = match status {
        StatusCode::SERVICE_UNAVAILABLE => (
            "ServiceUnavailable",
            "Service temporarily unavailable. Please try again later.",
        ),
        StatusCode::GATEWAY_TIMEOUT => ("RequestTimeout", "The request timed out."),
        _ => (
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        ),
    };
    sp_error(status, code, message, "")
}

/// Ids unique to this simulator: a counter, salted with the start time.
#[derive(Debug)]
pub(crate) struct Ids {
    next: AtomicU64,
    salt: u64,
}

impl Ids {
    fn new() -> Self {
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Ids {
            next: AtomicU64::new(1),
            salt,
        }
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A UUID-shaped id (submission ids, request ids, feed document ids).
    pub fn uuid(&self) -> String {
        let n = self.next();
        let s = self.salt;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (s >> 32) as u32,
            (s >> 16) as u16,
            (s & 0xfff) as u16,
            ((n >> 48) & 0xfff) as u16,
            n & 0xffff_ffff_ffff
        )
    }

    /// A numeric id (feed ids).
    pub fn number(&self) -> String {
        (50_000_000_000 + self.next()).to_string()
    }
}

#[derive(Debug)]
pub(crate) struct Market {
    pub endpoint: Arc<Endpoint>,
    pub config: AmazonConfig,
    /// Base URL, for the upload and download URLs the feeds API hands out.
    pub url: String,
    buckets: Mutex<HashMap<Operation, TokenBucket>>,
    /// Issued access tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Lock order: after the endpoint's item book.
    pub listings: Mutex<listings::Listings>,
    /// Lock order: after the endpoint's item book.
    feeds: Mutex<feeds::FeedBook>,
    pub ids: Ids,
}

impl Market {
    pub fn feeds(&self) -> MutexGuard<'_, feeds::FeedBook> {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An issued, unexpired access token in `x-amz-access-token`, then budget for `operation`
    /// at the request's arrival. `Err` is the answer to send.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        operation: Operation,
        at: Instant,
    ) -> Result<(), Response> {
        let token = headers
            .get("x-amz-access-token")
            .and_then(|v| v.to_str().ok());
        let expires = token.and_then(|t| {
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(t)
                .copied()
        });
        let details = match expires {
            None => Some(""),
            Some(expires) if expires <= at => Some("The access token you provided has expired."),
            Some(_) => None,
        };
        if let Some(details) = details {
            self.endpoint.stats.auth_failed();
            return Err(unauthorized(details));
        }
        let take = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&operation)
            .expect("every operation has a bucket")
            .take(at, 1.0);
        if let Take::Refused { .. } = take {
            self.endpoint.stats.violation();
            return Err(sp_error(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                "You exceeded your quota for the requested resource.",
                "",
            ));
        }
        Ok(())
    }

    fn issue_token(&self) -> String {
        let token = format!("Atza|IwEBI{}", self.ids.uuid().replace('-', ""));
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Bounded: forget expired tokens as new ones are issued.
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(token.clone(), now + self.config.access_token_ttl);
        token
    }
}

pub(crate) fn unauthorized(details: &str) -> Response {
    sp_error(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Access to requested resource is denied.",
        details,
    )
}

/// Adds `x-amzn-RequestId` and, for the operations with a usage plan, `x-amzn-RateLimit-Limit`
/// to every SP-API answer (faulted ones included). LWA and the document URLs get neither.
async fn amazon_headers(
    State(market): State<Arc<Market>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_sp_api = path.starts_with("/listings/") || path.starts_with("/feeds/");
    let operation = Operation::of(request.method(), path);
    let mut response = next.run(request).await;
    if is_sp_api {
        let headers = response.headers_mut();
        if let Ok(id) = HeaderValue::from_str(&market.ids.uuid()) {
            headers.insert("x-amzn-RequestId", id);
        }
        if let Some(operation) = operation {
            let rate = market.config.rate_limits.of(operation).rate_per_s;
            // Debug formatting keeps a decimal point ("5.0", "0.0083"), as Amazon writes it.
            if let Ok(value) = HeaderValue::from_str(&format!("{rate:?}")) {
                headers.insert("x-amzn-RateLimit-Limit", value);
            }
        }
    }
    response
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

fn lwa_error(status: StatusCode, error: &str, description: &str) -> Response {
    json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// Login with Amazon: exchanges the refresh token for an access token.
async fn token(
    State(market): State<Arc<Market>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(request)) = form else {
        return lwa_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter : grant_type",
        );
    };
    let config = &market.config;
    if request.grant_type != "refresh_token" {
        return lwa_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        );
    }
    if request.client_id.as_deref() != Some(config.client_id.as_str())
        || request.client_secret.as_deref() != Some(config.client_secret.as_str())
    {
        market.endpoint.stats.auth_failed();
        return lwa_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    if request.refresh_token.as_deref() != Some(config.refresh_token.as_str()) {
        market.endpoint.stats.auth_failed();
        return lwa_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token",
        );
    }
    market.endpoint.stats.accepted();
    json(
        StatusCode::OK,
        json!({
            "access_token": market.issue_token(),
            "token_type": "bearer",
            "expires_in": config.access_token_ttl.as_secs(),
            "refresh_token": config.refresh_token,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_recognised_by_method_and_path() {
        let of = |m: Method, p: &str| Operation::of(&m, p);
        assert_eq!(
            of(Method::PATCH, "/listings/2021-08-01/items/A1/SKU-1"),
            Some(Operation::PatchListingsItem)
        );
        assert_eq!(
            of(Method::GET, "/listings/2021-08-01/items/A1/SKU-1"),
            Some(Operation::GetListingsItem)
        );
        assert_eq!(
            of(Method::GET, "/listings/2021-08-01/items/A1"),
            Some(Operation::SearchListingsItems)
        );
        assert_eq!(
            of(Method::POST, "/feeds/2021-06-30/documents"),
            Some(Operation::CreateFeedDocument)
        );
        assert_eq!(
            of(Method::GET, "/feeds/2021-06-30/documents/d1"),
            Some(Operation::GetFeedDocument)
        );
        assert_eq!(
            of(Method::POST, "/feeds/2021-06-30/feeds"),
            Some(Operation::CreateFeed)
        );
        assert_eq!(
            of(Method::GET, "/feeds/2021-06-30/feeds/1"),
            Some(Operation::GetFeed)
        );
        assert_eq!(of(Method::PUT, "/upload/d1"), None);
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids = Ids::new();
        let a = ids.uuid();
        assert_eq!(a.len(), 36);
        assert_ne!(a, ids.uuid());
        assert_ne!(ids.number(), ids.number());
    }

    #[test]
    fn default_limits_are_the_usage_plans() {
        let limits = AmazonRateLimits::default();
        assert_eq!(
            limits.of(Operation::PatchListingsItem),
            RateLimit::new(5.0, 5.0)
        );
        assert_eq!(
            limits.of(Operation::CreateFeed),
            RateLimit::new(0.0083, 15.0)
        );
        assert!(AmazonConfig::default().check().is_ok());
    }
}
