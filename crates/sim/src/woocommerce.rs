//! WooCommerce REST API v3: the stock calls Crossdock makes, as a loopback server.
//!
//! Faithful to (WooCommerce REST API v3, `/wp-json/wc/v3`):
//! - Authentication with the consumer key and secret, as HTTP Basic (`ck:cs`) or as the
//!   `consumer_key` / `consumer_secret` query parameters. Missing credentials answer 401
//!   `woocommerce_rest_cannot_view`; a wrong key or secret 401
//!   `woocommerce_rest_authentication_error` ("Consumer key is invalid." / "Consumer secret is
//!   invalid.").
//! - `POST /products/batch` and `POST /products/{product_id}/variations/batch` with
//!   `{"update":[{"id":799,"stock_quantity":5,"manage_stock":true}]}`: at most 100 objects per
//!   request over `create`, `update` and `delete` (more is WooCommerce's own 413
//!   `woocommerce_rest_request_entity_too_large`, "Unable to accept more than 100 items for
//!   this request."); results per object, in request order, not all-or-nothing: a refused
//!   object is `{"id":799,"error":{"code":"woocommerce_rest_product_invalid_id","message":"Invalid
//!   ID.","data":{"status":400}}}` (`woocommerce_rest_product_variation_invalid_id` for a
//!   variation) while the others apply. Only the keys present in the request appear in the
//!   answer, as WooCommerce does.
//! - `GET /products/{id}` and `GET /products/{product_id}/variations/{id}`: the object with
//!   `stock_quantity`, or 404 with the `..._invalid_id` error.
//! - `GET /products` and `GET /products/{product_id}/variations` with `per_page` (1 to 100,
//!   default 10, else 400 `rest_invalid_param`) and `page` (from 1; past the last page 400
//!   `rest_post_invalid_page_number`): a JSON array, with `X-WP-Total` and `X-WP-TotalPages`.
//!   Objects come ordered by id, ascending (whatever `orderby` says), at most
//!   [`WooConfig::per_page_max`] per page. A product with variations is `"type": "variable"`
//!   with their ids in `variations`, managing stock itself only when the product's own id has
//!   a quantity; any other product is simple. Items in [`crate::Faults::permanent_items`] are
//!   not listed; the variations of a product the store does not have are a 404.
//! - WooCommerce has no rate limit of its own; hosts add one. [`WooConfig::rate_limit`] is that
//!   host limit: a request without budget answers 429 with `Retry-After` and the body of the
//!   Store API's limiter (`rate_limit_exceeded`).
//!
//! Left out: everything but stock. Product and variation objects carry the stock fields, ids,
//! type, status, dates and links, not prices, images or attributes; `create` and `delete`
//! entries are answered with a per-object error and never applied; `manage_stock` is taken as
//! true (the stock is always managed); single-object `PUT`s; OAuth 1.0a over plain HTTP.
//!
//! Item ids: a product is `"<id>"` (`"799"`), a variation `"<product_id>/<variation_id>"`
//! (`"22/733"`).
//!
//! Permanent rejection: an object whose item is in [`crate::Faults::permanent_items`] (or, with
//! [`WooConfig::strict_items`], was never inserted) gets the `..._invalid_id` error in its place.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crossdock_model::Timestamp;
use serde_json::{Value, json};

use crate::bucket::{RateLimit, Take, TokenBucket, retry_after_s};
use crate::endpoint::{Arrival, Endpoint, gate, json};
use crate::server::{Bound, Server};

#[derive(Debug, Clone)]
pub struct WooConfig {
    /// Default `ck_simulator`.
    pub consumer_key: String,
    /// Default `cs_simulator`.
    pub consumer_secret: String,
    /// A host's request limit; `None` (the default) for none, as WooCommerce itself has.
    pub rate_limit: Option<RateLimit>,
    /// Refuse items never inserted instead of creating them. Default false.
    pub strict_items: bool,
    /// Objects per batch request (WooCommerce's `woocommerce_rest_batch_items_limit`).
    /// Default 100.
    pub batch_max: usize,
    /// Most objects one list page holds, whatever `per_page` asks (the page count in
    /// `X-WP-TotalPages` follows). Default 100, WordPress's own limit; a test sets it small to
    /// page through a few products.
    pub per_page_max: usize,
}

impl Default for WooConfig {
    fn default() -> Self {
        WooConfig {
            consumer_key: "ck_simulator".into(),
            consumer_secret: "cs_simulator".into(),
            rate_limit: None,
            strict_items: false,
            batch_max: 100,
            per_page_max: 100,
        }
    }
}

/// A running WooCommerce simulator. Dereferences to its [`Endpoint`].
#[derive(Debug)]
pub struct WooSim {
    server: Server,
    store: Arc<Store>,
}

impl Deref for WooSim {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.store.endpoint
    }
}

impl WooSim {
    /// Binds `127.0.0.1:0` and serves until dropped or stopped.
    pub async fn start(config: WooConfig) -> io::Result<WooSim> {
        let invalid =
            |e: String| io::Error::new(io::ErrorKind::InvalidInput, format!("woo sim: {e}"));
        if let Some(problem) = config.rate_limit.as_ref().and_then(RateLimit::problem) {
            return Err(invalid(format!("rate_limit: {problem}")));
        }
        if config.batch_max == 0 || config.per_page_max == 0 {
            return Err(invalid(
                "batch_max and per_page_max must be at least 1".into(),
            ));
        }
        let bound = Bound::loopback().await?;
        let endpoint = Arc::new(Endpoint::new(
            |id| id.trim().to_owned(),
            fault_answer,
            bound.shutdown_signal(),
        ));
        let store = Arc::new(Store {
            endpoint: endpoint.clone(),
            api_url: format!("{}/wp-json/wc/v3", bound.url),
            bucket: config
                .rate_limit
                .map(|limit| Mutex::new(TokenBucket::full(limit, Instant::now()))),
            config,
        });
        let router = Router::new()
            .route("/wp-json/wc/v3/products/batch", post(batch_products))
            .route(
                "/wp-json/wc/v3/products/{product_id}/variations/batch",
                post(batch_variations),
            )
            .route("/wp-json/wc/v3/products", get(list_products))
            .route(
                "/wp-json/wc/v3/products/{product_id}/variations",
                get(list_variations),
            )
            .route("/wp-json/wc/v3/products/{id}", get(get_product))
            .route(
                "/wp-json/wc/v3/products/{product_id}/variations/{id}",
                get(get_variation),
            )
            .with_state(store.clone())
            .layer(axum::middleware::from_fn_with_state(endpoint, gate));
        Ok(WooSim {
            server: bound.serve(router, "woocommerce"),
            store,
        })
    }

    /// The site's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// `<url>/wp-json/wc/v3`.
    pub fn api_url(&self) -> &str {
        &self.store.api_url
    }

    pub fn config(&self) -> &WooConfig {
        &self.store.config
    }

    /// Creates (or resets) a simple product with `stock_quantity`, outside the API.
    pub fn insert_product(&self, id: u64, stock_quantity: i64) {
        self.set_quantity(&id.to_string(), stock_quantity);
    }

    /// Creates (or resets) a variation with `stock_quantity`, outside the API.
    pub fn insert_variation(&self, product_id: u64, variation_id: u64, stock_quantity: i64) {
        self.set_quantity(&format!("{product_id}/{variation_id}"), stock_quantity);
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// WordPress's error shape: `{"code","message","data":{"status"}}`.
fn wp_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        json!({"code": code, "message": message, "data": {"status": status.as_u16()}}),
    )
}

fn fault_answer(status: StatusCode) -> Response {
    let message = status.canonical_reason().unwrap_or("Error");
    wp_error(status, "internal_server_error", message)
}

#[derive(Debug)]
struct Store {
    endpoint: Arc<Endpoint>,
    config: WooConfig,
    api_url: String,
    bucket: Option<Mutex<TokenBucket>>,
}

/// Which kind of object a batch or read is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Product,
    Variation { product_id: u64 },
}

impl Kind {
    fn invalid_id_code(self) -> &'static str {
        match self {
            Kind::Product => "woocommerce_rest_product_invalid_id",
            Kind::Variation { .. } => "woocommerce_rest_product_variation_invalid_id",
        }
    }

    fn item_id(self, id: u64) -> String {
        match self {
            Kind::Product => id.to_string(),
            Kind::Variation { product_id } => format!("{product_id}/{id}"),
        }
    }
}

impl Store {
    /// Credentials, then the host's rate limit. `Err` is the answer to send.
    fn admit(
        &self,
        arrival: &Arrival,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(), Response> {
        let credentials = basic_credentials(headers).or_else(|| {
            Some((
                query.get("consumer_key")?.clone(),
                query.get("consumer_secret")?.clone(),
            ))
        });
        let refusal = match credentials {
            None => Some((
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            )),
            Some((key, _)) if key != self.config.consumer_key => Some((
                "woocommerce_rest_authentication_error",
                "Consumer key is invalid.",
            )),
            Some((_, secret)) if secret != self.config.consumer_secret => Some((
                "woocommerce_rest_authentication_error",
                "Consumer secret is invalid.",
            )),
            Some(_) => None,
        };
        if let Some((code, message)) = refusal {
            self.endpoint.stats.auth_failed();
            return Err(wp_error(StatusCode::UNAUTHORIZED, code, message));
        }
        if let Some(bucket) = &self.bucket {
            let take = bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(arrival.at, 1.0);
            if let Take::Refused { wait, .. } = take {
                self.endpoint.stats.violation();
                let seconds = retry_after_s(wait);
                let mut response = wp_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    &format!(
                        "Too many requests. Please wait {seconds} seconds before trying again."
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return Err(response);
            }
        }
        Ok(())
    }

    fn object_json(&self, kind: Kind, id: u64, stock_quantity: i64) -> Value {
        let now = Timestamp::now().to_rfc3339();
        // WooCommerce writes local and GMT times without an offset; the simulator runs on UTC.
        let modified = now.get(..19).unwrap_or(&now);
        let stock_status = if stock_quantity > 0 {
            "instock"
        } else {
            "outofstock"
        };
        match kind {
            Kind::Product => json!({
                "id": id,
                "name": format!("Simulated product {id}"),
                "type": "simple",
                "status": "publish",
                "sku": "",
                "date_modified": modified,
                "date_modified_gmt": modified,
                "manage_stock": true,
                "stock_quantity": stock_quantity,
                "stock_status": stock_status,
                "backorders": "no",
                "backorders_allowed": false,
                "backordered": false,
                "variations": [],
                "_links": {
                    "self": [{"href": format!("{}/products/{id}", self.api_url)}],
                    "collection": [{"href": format!("{}/products", self.api_url)}],
                }
            }),
            Kind::Variation { product_id } => json!({
                "id": id,
                "status": "publish",
                "sku": "",
                "date_modified": modified,
                "date_modified_gmt": modified,
                "manage_stock": true,
                "stock_quantity": stock_quantity,
                "stock_status": stock_status,
                "backorders": "no",
                "backorders_allowed": false,
                "backordered": false,
                "_links": {
                    "self": [{"href": format!("{}/products/{product_id}/variations/{id}", self.api_url)}],
                    "collection": [{"href": format!("{}/products/{product_id}/variations", self.api_url)}],
                    "up": [{"href": format!("{}/products/{product_id}", self.api_url)}],
                }
            }),
        }
    }

    /// A product as lists show it: simple, or variable with `variations`, managing stock
    /// itself only when it has its own quantity.
    fn product_json(&self, id: u64, own: Option<i64>, variations: &[u64]) -> Value {
        let mut product = self.object_json(Kind::Product, id, own.unwrap_or(0));
        if !variations.is_empty() {
            product["type"] = json!("variable");
            product["variations"] = json!(variations);
            if own.is_none() {
                product["manage_stock"] = json!(false);
                product["stock_quantity"] = Value::Null;
                product["stock_status"] = json!("instock");
            }
        }
        product
    }

    fn refused(&self, item: &str) -> bool {
        self.endpoint.faults().is_permanent(item)
            || (self.config.strict_items && self.endpoint.items().quantity(item).is_none())
    }
}

/// `Authorization: Basic base64(key:secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (key, secret) = decoded.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

/// An id as WooCommerce takes it: a positive integer or its decimal text.
fn as_id(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// `stock_quantity`: `Ok(None)` when absent or null, `Err` when not an integer.
fn as_stock(value: Option<&Value>) -> Result<Option<i64>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn object_error(id: u64, code: &str, message: &str) -> Value {
    json!({"id": id, "error": {"code": code, "message": message, "data": {"status": 400}}})
}

async fn batch_products(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    batch(&store, &arrival, &query, &headers, &body, Kind::Product)
}

async fn batch_variations(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Path(product_id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    batch(
        &store,
        &arrival,
        &query,
        &headers,
        &body,
        Kind::Variation { product_id },
    )
}

fn batch(
    store: &Store,
    arrival: &Arrival,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    kind: Kind,
) -> Response {
    let endpoint = &store.endpoint;
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return wp_error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_json",
            "Invalid JSON body passed.",
        );
    };
    let list = |name: &str| -> Vec<Value> {
        request
            .get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (creates, updates, deletes) = (list("create"), list("update"), list("delete"));
    let named: Vec<String> = updates
        .iter()
        .filter_map(|object| as_id(object.get("id")))
        .map(|id| kind.item_id(id))
        .collect();
    endpoint.touch(arrival, named);
    if let Err(refusal) = store.admit(arrival, headers, query) {
        return refusal;
    }
    let total = creates.len() + updates.len() + deletes.len();
    if total > store.config.batch_max {
        return wp_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "woocommerce_rest_request_entity_too_large",
            &format!(
                "Unable to accept more than {} items for this request.",
                store.config.batch_max
            ),
        );
    }

    let mut all_applied = true;
    let mut answer = serde_json::Map::new();
    if request.contains_key("update") {
        let mut results = Vec::with_capacity(updates.len());
        for object in &updates {
            let result = update_one(store, kind, object);
            all_applied &= result.get("error").is_none();
            results.push(result);
        }
        answer.insert("update".into(), Value::Array(results));
    }
    for (name, entries) in [("create", &creates), ("delete", &deletes)] {
        if request.contains_key(name) {
            all_applied &= entries.is_empty();
            let refused = entries
                .iter()
                .map(|e| {
                    object_error(
                        as_id(e.get("id")).unwrap_or(0),
                        "woocommerce_rest_simulator_unsupported",
                        "The simulator only updates stock.",
                    )
                })
                .collect();
            answer.insert(name.into(), Value::Array(refused));
        }
    }
    if all_applied {
        endpoint.stats.accepted();
    }
    json(StatusCode::OK, Value::Object(answer))
}

fn update_one(store: &Store, kind: Kind, object: &Value) -> Value {
    let endpoint = &store.endpoint;
    let Some(id) = as_id(object.get("id")) else {
        return object_error(0, kind.invalid_id_code(), "Invalid ID.");
    };
    let item = kind.item_id(id);
    if store.refused(&item) {
        endpoint.stats.rejected(1);
        return object_error(id, kind.invalid_id_code(), "Invalid ID.");
    }
    let Ok(stock) = as_stock(object.get("stock_quantity")) else {
        return object_error(
            id,
            "rest_invalid_param",
            "Invalid parameter(s): stock_quantity",
        );
    };
    let mut items = endpoint.items();
    let quantity = match stock {
        Some(q) => {
            let write = items.apply(&item, q);
            endpoint.stats.wrote(write);
            q
        }
        None => match items.quantity(&item) {
            Some(q) => q,
            None => {
                // Nothing to set on an object that does not exist.
                return object_error(id, kind.invalid_id_code(), "Invalid ID.");
            }
        },
    };
    drop(items);
    store.object_json(kind, id, quantity)
}

async fn get_product(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read(&store, &arrival, &query, &headers, Kind::Product, &id)
}

async fn get_variation(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Path((product_id, id)): Path<(u64, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read(
        &store,
        &arrival,
        &query,
        &headers,
        Kind::Variation { product_id },
        &id,
    )
}

fn read(
    store: &Store,
    arrival: &Arrival,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    kind: Kind,
    raw_id: &str,
) -> Response {
    let id = as_id(Some(&Value::String(raw_id.to_owned())));
    if let Some(id) = id {
        store.endpoint.touch(arrival, vec![kind.item_id(id)]);
    }
    if let Err(refusal) = store.admit(arrival, headers, query) {
        return refusal;
    }
    let found = id.and_then(|id| {
        let item = kind.item_id(id);
        if store.endpoint.faults().is_permanent(&item) {
            return None;
        }
        store.endpoint.items().quantity(&item).map(|q| (id, q))
    });
    match found {
        Some((id, quantity)) => {
            store.endpoint.stats.accepted();
            (
                StatusCode::OK,
                axum::Json(store.object_json(kind, id, quantity)),
            )
                .into_response()
        }
        None => wp_error(StatusCode::NOT_FOUND, kind.invalid_id_code(), "Invalid ID."),
    }
}

/// Largest and default `per_page` of a WordPress list.
const PER_PAGE_MAX: usize = 100;
const PER_PAGE_DEFAULT: usize = 10;

/// The products the store lists, by id: each one's own quantity and its variations' ids.
/// Permanent items are left out; ids that are not WooCommerce ids are ignored.
fn catalogue(store: &Store) -> BTreeMap<u64, (Option<i64>, Vec<u64>)> {
    let faults = store.endpoint.faults();
    let mut products: BTreeMap<u64, (Option<i64>, Vec<u64>)> = BTreeMap::new();
    for (item, quantity) in store.endpoint.quantities() {
        if faults.is_permanent(&item) {
            continue;
        }
        match item.split_once('/') {
            None => {
                if let Ok(id) = item.parse::<u64>() {
                    products.entry(id).or_default().0 = Some(quantity);
                }
            }
            Some((parent, variation)) => {
                if let (Ok(parent), Ok(variation)) = (parent.parse(), variation.parse()) {
                    products.entry(parent).or_default().1.push(variation);
                }
            }
        }
    }
    for (_, variations) in products.values_mut() {
        variations.sort_unstable();
    }
    products
}

async fn list_products(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list(&store, &arrival, &query, &headers, None)
}

async fn list_variations(
    State(store): State<Arc<Store>>,
    Extension(arrival): Extension<Arrival>,
    Path(product_id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list(&store, &arrival, &query, &headers, Some(product_id))
}

/// `per_page` and `page`, or the 400 WordPress answers for them.
fn page_params(query: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize, max: usize| match query.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                wp_error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_param",
                    &format!("Invalid parameter(s): {name}"),
                )
            }),
    };
    Ok((
        number("per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX)?,
        number("page", 1, usize::MAX)?,
    ))
}

fn list(
    store: &Store,
    arrival: &Arrival,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    parent: Option<u64>,
) -> Response {
    if let Err(refusal) = store.admit(arrival, headers, query) {
        return refusal;
    }
    let (per_page, page) = match page_params(query) {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let per_page = per_page.min(store.config.per_page_max);
    let mut products = catalogue(store);
    let objects: Vec<Value> = match parent {
        None => products
            .iter()
            .map(|(id, (own, variations))| store.product_json(*id, *own, variations))
            .collect(),
        Some(product_id) => {
            let Some((_, variations)) = products.remove(&product_id) else {
                return wp_error(
                    StatusCode::NOT_FOUND,
                    Kind::Product.invalid_id_code(),
                    "Invalid ID.",
                );
            };
            let items = store.endpoint.quantities();
            let kind = Kind::Variation { product_id };
            variations
                .into_iter()
                .filter_map(|v| {
                    let q = items.get(&kind.item_id(v))?;
                    Some(store.object_json(kind, v, *q))
                })
                .collect()
        }
    };
    let total = objects.len();
    let total_pages = total.div_ceil(per_page);
    if page > total_pages.max(1) {
        return wp_error(
            StatusCode::BAD_REQUEST,
            "rest_post_invalid_page_number",
            "The page number requested is larger than the number of pages available.",
        );
    }
    let start = (page - 1) * per_page;
    let shown: Vec<Value> = objects.into_iter().skip(start).take(per_page).collect();
    store.endpoint.stats.accepted();
    let mut response = (StatusCode::OK, axum::Json(Value::Array(shown))).into_response();
    let headers = response.headers_mut();
    headers.insert("X-WP-Total", HeaderValue::from(total as u64));
    headers.insert("X-WP-TotalPages", HeaderValue::from(total_pages as u64));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_credentials() {
        let mut headers = HeaderMap::new();
        let encoded = BASE64.encode("ck_a:cs_b");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("ck_a".to_string(), "cs_b".to_string()))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn ids_and_stock_take_numbers_or_their_text() {
        assert_eq!(as_id(Some(&json!(799))), Some(799));
        assert_eq!(as_id(Some(&json!("799"))), Some(799));
        assert_eq!(as_id(Some(&json!(0))), None);
        assert_eq!(as_id(Some(&json!(-3))), None);
        assert_eq!(as_stock(Some(&json!(5))), Ok(Some(5)));
        assert_eq!(as_stock(Some(&json!("-2"))), Ok(Some(-2)));
        assert_eq!(as_stock(None), Ok(None));
        assert_eq!(as_stock(Some(&json!(1.5))), Err(()));
    }
}
