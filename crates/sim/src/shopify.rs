//! Shopify GraphQL Admin API: the inventory calls Crossdock makes, as a loopback server.
//!
//! Faithful to (as of Admin API 2026-01):
//! - `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`; a wrong or missing
//!   token is a 401 with Shopify's `{"errors":"[API] Invalid API key or access token ..."}`;
//!   a body that is not `{"query": ...}` JSON is a 400 `{"errors":{"query":"Required parameter
//!   missing or invalid"}}`.
//! - `inventorySetQuantities` (`name: "available"`): at most 250 quantities (more is a top-level
//!   `MAX_INPUT_SIZE_EXCEEDED` error); all or nothing; `changeFromQuantity` compare-and-set
//!   (`null` or absent skips the check; a mismatch is a `CHANGE_FROM_QUANTITY_STALE` user error
//!   per stale quantity); the `@idempotent(key:)` directive, with the key as a variable or a
//!   literal (a repeat with the same input replays the first answer and applies nothing; a
//!   repeat with another input is a top-level error).
//! - `inventoryItem(id:) { inventoryLevel(locationId:) { quantities(names: ["available"]) } }`.
//! - `location(id:) { inventoryLevels(first:, after:) { nodes { item { id } quantities(names:
//!   ["available"]) { name quantity } } pageInfo { hasNextPage endCursor } } }`: every level of
//!   the location, ordered by inventory item gid, at most `first` (1 to 250, else a top-level
//!   error) and at most [`ShopifyConfig::levels_page_max`] per page, after the opaque cursor
//!   `after` (a cursor the shop did not hand out is a top-level error); `location: null` for a
//!   location the shop does not have. Arguments are literals or `$variables`.
//! - Cost-based throttling: a leaky bucket of points per shop (`maximumAvailable`,
//!   `restoreRate`), the mutation costing 10 points and the read 2. A levels page requests
//!   `3 + level_cost × first` points and costs `3 + level_cost × levels returned`; the
//!   difference is refunded, as Shopify does. A call whose requested cost is more than the
//!   bucket holds at all is `MAX_COST_EXCEEDED`. A call whose requested cost is not available
//!   is `THROTTLED` (status 200, top-level error, nothing applied). Every GraphQL answer
//!   carries `extensions.cost` with `throttleStatus`.
//!
//! Left out: a real GraphQL parser (calls are recognised by the field names in the query text,
//! and answers carry the fields Crossdock selects whether or not the query asked for them);
//! every other query and mutation (answered `{"errors":[{"message":"unsupported by the
//! simulator"}]}`); quantity names other than `available`; the legacy
//! `compareQuantity`/`ignoreCompareQuantity` pair; per-location quantities (the shop keeps one
//! `available` per inventory item, readable and writable at every configured location); the
//! REST Admin API and its `X-Shopify-Shop-Api-Call-Limit` bucket.
//!
//! Item ids are inventory item gids (`gid://shopify/InventoryItem/123`); the handle's methods
//! and [`crate::Faults::permanent_items`] also take the bare number (`123`).
//!
//! Permanent rejection: a quantity for an item in [`crate::Faults::permanent_items`] gets the
//! user error `ITEM_NOT_STOCKED_AT_LOCATION` on `["input","quantities","<i>","inventoryItemId"]`
//! (and nothing of the call is applied); with [`ShopifyConfig::strict_items`], an item never
//! inserted gets `INVALID_INVENTORY_ITEM`. Such items are not stocked anywhere: levels pages
//! leave them out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::ops::Bound as KeyBound;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crossdock_model::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bucket::{RateLimit, Take, TokenBucket};
use crate::endpoint::{Arrival, Endpoint, gate, json};
use crate::server::{Bound, Server};

const INVENTORY_ITEM_GID: &str = "gid://shopify/InventoryItem/";
const LOCATION_GID: &str = "gid://shopify/Location/";

/// Shopify's largest `first` (or `last`) on a connection.
pub const CONNECTION_FIRST_MAX: u64 = 250;

/// Points a levels page requests besides its levels: the location, the connection, its
/// `pageInfo`.
const LEVELS_BASE_COST: f64 = 3.0;

/// The GraphQL cost bucket of a shop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShopifyThrottle {
    /// `throttleStatus.maximumAvailable`: the bucket size in points.
    pub maximum_available: f64,
    /// `throttleStatus.restoreRate`: points restored per second.
    pub restore_rate: f64,
}

impl ShopifyThrottle {
    /// Standard plans: 100 points per second.
    pub const STANDARD: ShopifyThrottle = ShopifyThrottle {
        maximum_available: 1000.0,
        restore_rate: 100.0,
    };
    /// Advanced plans: 200 points per second.
    pub const ADVANCED: ShopifyThrottle = ShopifyThrottle {
        maximum_available: 2000.0,
        restore_rate: 200.0,
    };
    /// Shopify Plus: 1000 points per second.
    pub const PLUS: ShopifyThrottle = ShopifyThrottle {
        maximum_available: 10_000.0,
        restore_rate: 1000.0,
    };
}

#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    /// The `X-Shopify-Access-Token` every call must carry. Default `shpat_simulator`.
    pub access_token: String,
    /// Numeric ids of the shop's locations (`gid://shopify/Location/<n>`). Default `[1]`.
    pub location_ids: Vec<u64>,
    /// Default [`ShopifyThrottle::STANDARD`] (1000 points, 100 per second).
    pub throttle: ShopifyThrottle,
    /// Requested (and actual) cost of `inventorySetQuantities`. Default 10.
    pub mutation_cost: f64,
    /// Requested (and actual) cost of the `inventoryLevel` read. Default 2.
    pub read_cost: f64,
    /// Points per level of a levels page (the level, its item, its quantities): requested per
    /// level asked for with `first`, spent per level returned. Default 3.
    pub level_cost: f64,
    /// Most levels one `inventoryLevels` page returns, whatever `first` asks (pages then follow
    /// through `hasNextPage`). Default 250, Shopify's own limit; a test sets it small to page
    /// through a few items.
    pub levels_page_max: usize,
    /// Refuse items never inserted with [`ShopifySim::insert_item`] (`INVALID_INVENTORY_ITEM`)
    /// instead of creating them at 0. Default false.
    pub strict_items: bool,
    /// Shopify's input-array limit on `quantities`. Default 250.
    pub max_quantities: usize,
    /// Idempotency keys remembered; the oldest is forgotten first. Default 100,000.
    pub idempotency_keys_max: usize,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        ShopifyConfig {
            access_token: "shpat_simulator".into(),
            location_ids: vec![1],
            throttle: ShopifyThrottle::STANDARD,
            mutation_cost: 10.0,
            read_cost: 2.0,
            level_cost: 3.0,
            levels_page_max: 250,
            strict_items: false,
            max_quantities: 250,
            idempotency_keys_max: 100_000,
        }
    }
}

impl ShopifyConfig {
    fn check(&self) -> Result<(), String> {
        let limit = RateLimit::new(self.throttle.restore_rate, self.throttle.maximum_available);
        if let Some(problem) = limit.problem() {
            return Err(format!("throttle: {problem}"));
        }
        for (key, cost) in [
            ("mutation_cost", self.mutation_cost),
            ("read_cost", self.read_cost),
        ] {
            if !(cost.is_finite() && cost > 0.0 && cost <= self.throttle.maximum_available) {
                return Err(format!(
                    "{key} must be above 0 and at most throttle.maximum_available ({}), found {cost}",
                    self.throttle.maximum_available
                ));
            }
        }
        if !(self.level_cost.is_finite() && self.level_cost > 0.0) {
            return Err(format!(
                "level_cost must be above 0, found {}",
                self.level_cost
            ));
        }
        if self.location_ids.is_empty() {
            return Err("location_ids is empty".into());
        }
        if self.levels_page_max == 0 {
            return Err("levels_page_max must be at least 1".into());
        }
        if self.max_quantities == 0 || self.idempotency_keys_max == 0 {
            return Err("max_quantities and idempotency_keys_max must be at least 1".into());
        }
        Ok(())
    }
}

/// A running Shopify simulator. Dereferences to its [`Endpoint`] (faults, stats, quantities).
#[derive(Debug)]
pub struct ShopifySim {
    server: Server,
    shop: Arc<Shop>,
}

impl Deref for ShopifySim {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.shop.endpoint
    }
}

impl ShopifySim {
    /// Binds `127.0.0.1:0` and serves until dropped or stopped. Fails on a config that cannot
    /// work (the error names the key) or when the port cannot be bound.
    pub async fn start(config: ShopifyConfig) -> io::Result<ShopifySim> {
        config.check().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("shopify sim: {e}"))
        })?;
        let bound = Bound::loopback().await?;
        let endpoint = Arc::new(Endpoint::new(
            canonical_item_id,
            fault_answer,
            bound.shutdown_signal(),
        ));
        let limit = RateLimit::new(
            config.throttle.restore_rate,
            config.throttle.maximum_available,
        );
        let shop = Arc::new(Shop {
            endpoint: endpoint.clone(),
            locations: config
                .location_ids
                .iter()
                .map(|n| format!("{LOCATION_GID}{n}"))
                .collect(),
            bucket: Mutex::new(TokenBucket::full(limit, Instant::now())),
            replays: Mutex::new(Replays::default()),
            config,
        });
        let router = Router::new()
            .route("/admin/api/{version}/graphql.json", post(graphql))
            .with_state(shop.clone())
            .layer(axum::middleware::from_fn_with_state(endpoint, gate));
        Ok(ShopifySim {
            server: bound.serve(router, "shopify"),
            shop,
        })
    }

    /// The shop's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// `<url>/admin/api/<version>/graphql.json`.
    pub fn graphql_url(&self, version: &str) -> String {
        format!("{}/admin/api/{version}/graphql.json", self.url())
    }

    pub fn config(&self) -> &ShopifyConfig {
        &self.shop.config
    }

    /// Creates (or resets) an inventory item with `quantity` available, outside the API.
    pub fn insert_item(&self, inventory_item_id: u64, quantity: i64) {
        self.set_quantity(
            &format!("{INVENTORY_ITEM_GID}{inventory_item_id}"),
            quantity,
        );
    }

    /// `throttleStatus.currentlyAvailable` now.
    pub fn currently_available(&self) -> f64 {
        self.shop.bucket().available(Instant::now())
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// `123` → `gid://shopify/InventoryItem/123`; anything else as it is.
fn canonical_item_id(raw: &str) -> String {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("{INVENTORY_ITEM_GID}{raw}")
    } else {
        raw.to_owned()
    }
}

fn fault_answer(status: StatusCode) -> Response {
    json(
        status,
        json!({ "errors": status.canonical_reason().unwrap_or("Error") }),
    )
}

#[derive(Debug)]
struct Shop {
    endpoint: Arc<Endpoint>,
    config: ShopifyConfig,
    locations: HashSet<String>,
    bucket: Mutex<TokenBucket>,
    /// Lock order: after the endpoint's item book.
    replays: Mutex<Replays>,
}

impl Shop {
    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_permanent(&self, gid: &str) -> bool {
        let faults = self.endpoint.faults();
        faults.is_permanent(gid)
            || gid
                .strip_prefix(INVENTORY_ITEM_GID)
                .is_some_and(|n| faults.is_permanent(n))
    }

    /// `extensions.cost` for a call that requested `requested` points; `actual` is `None` when
    /// it was throttled.
    fn cost(&self, requested: f64, actual: Option<f64>, currently_available: f64) -> Value {
        // Shopify writes costs and the available budget as integers, the bucket's size and
        // rate as floats. Rounding the budget down never overstates it.
        json!({
            "cost": {
                "requestedQueryCost": points(requested),
                "actualQueryCost": actual.map(points),
                "throttleStatus": {
                    "maximumAvailable": self.config.throttle.maximum_available,
                    "currentlyAvailable": currently_available.floor() as i64,
                    "restoreRate": self.config.throttle.restore_rate,
                }
            }
        })
    }
}

/// A cost as Shopify writes it: an integer when it is whole.
fn points(cost: f64) -> Value {
    if cost.fract() == 0.0 && cost.abs() < 1e15 {
        json!(cost as i64)
    } else {
        json!(cost)
    }
}

/// Answers of past `inventorySetQuantities` calls by idempotency key, bounded.
#[derive(Debug, Default)]
struct Replays {
    by_key: HashMap<String, Replay>,
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Replay {
    /// The call's `input` as JSON text: a repeat must carry the same.
    input: String,
    data: Value,
    succeeded: bool,
}

impl Replays {
    fn remember(&mut self, key: String, replay: Replay, max: usize) {
        while self.order.len() >= max {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.by_key.insert(key, replay);
    }
}

#[derive(Debug, Deserialize)]
struct GraphqlRequest {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetInput {
    name: String,
    reason: String,
    #[serde(default)]
    reference_document_uri: Option<String>,
    quantities: Vec<QuantityInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuantityInput {
    inventory_item_id: String,
    location_id: String,
    quantity: i64,
    /// `None` when null or absent: no compare-and-set.
    #[serde(default)]
    change_from_quantity: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    SetQuantities,
    ReadLevel,
    ReadLevels,
    Unsupported,
}

fn classify(query: &str) -> Call {
    if query.contains("inventorySetQuantities") {
        Call::SetQuantities
    } else if query.contains("inventoryLevels") {
        Call::ReadLevels
    } else if query.contains("inventoryLevel") {
        Call::ReadLevel
    } else {
        Call::Unsupported
    }
}

/// What a call produced, before `extensions` is added.
struct Answer {
    body: Value,
    accepted: bool,
    /// What the call really cost, when less than it requested (the rest is refunded).
    actual_cost: Option<f64>,
}

impl Answer {
    fn new(body: Value, accepted: bool) -> Self {
        Answer {
            body,
            accepted,
            actual_cost: None,
        }
    }
}

async fn graphql(
    State(shop): State<Arc<Shop>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = &shop.endpoint;
    endpoint.note_correlation(&headers);
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(shop.config.access_token.as_str()) {
        endpoint.stats.auth_failed();
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        );
    }
    let Ok(request) = serde_json::from_slice::<GraphqlRequest>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"errors": {"query": "Required parameter missing or invalid"}}),
        );
    };
    let variables = request.variables.unwrap_or(Value::Null);
    let call = classify(&request.query);
    endpoint.touch(&arrival, named_items(call, &variables));

    let levels = (call == Call::ReadLevels).then(|| LevelsArgs::read(&request.query, &variables));
    let requested = match (call, &levels) {
        (Call::SetQuantities, _) => shop.config.mutation_cost,
        (Call::ReadLevel, _) => shop.config.read_cost,
        (Call::ReadLevels, Some(Ok(args))) => levels_cost(&shop.config, args.first as usize),
        (Call::ReadLevels, _) | (Call::Unsupported, _) => 0.0,
    };
    let maximum = shop.config.throttle.maximum_available;
    if requested > maximum {
        let mut answer = top_level_error(
            format!(
                "Query cost is {}, which exceeds the single query max cost limit ({}).",
                points(requested),
                points(maximum)
            ),
            "MAX_COST_EXCEEDED",
        );
        let available = shop.bucket().available(arrival.at);
        answer.body["extensions"] = shop.cost(requested, None, available);
        return json(StatusCode::OK, answer.body);
    }
    let take = shop.bucket().take(arrival.at, requested);
    let left = match take {
        Take::Granted { left } => left,
        Take::Refused { available, .. } => {
            endpoint.stats.violation();
            return json(
                StatusCode::OK,
                json!({
                    "errors": [{
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits"
                        }
                    }],
                    "extensions": shop.cost(requested, None, available),
                }),
            );
        }
    };

    let mut answer = match (call, levels) {
        (Call::SetQuantities, _) => set_quantities(&shop, &request.query, &variables),
        (Call::ReadLevel, _) => read_level(&shop, &variables),
        (Call::ReadLevels, Some(Ok(args))) => read_levels(&shop, &args),
        (Call::ReadLevels, Some(Err(refusal))) => refusal,
        (Call::ReadLevels, None) | (Call::Unsupported, _) => Answer::new(
            json!({"errors": [{"message": "unsupported by the simulator"}]}),
            false,
        ),
    };
    if answer.accepted {
        endpoint.stats.accepted();
    }
    let actual = answer.actual_cost.unwrap_or(requested).min(requested);
    let left = if actual < requested {
        shop.bucket().give_back(arrival.at, requested - actual)
    } else {
        left
    };
    answer.body["extensions"] = shop.cost(requested, Some(actual), left);
    json(StatusCode::OK, answer.body)
}

/// The inventory items a call names, as gids.
fn named_items(call: Call, variables: &Value) -> Vec<String> {
    match call {
        Call::SetQuantities => variables
            .pointer("/input/quantities")
            .and_then(Value::as_array)
            .map(|quantities| {
                quantities
                    .iter()
                    .filter_map(|q| q.get("inventoryItemId").and_then(Value::as_str))
                    .map(canonical_item_id)
                    .collect()
            })
            .unwrap_or_default(),
        Call::ReadLevel => variables
            .get("inventoryItemId")
            .and_then(Value::as_str)
            .map(|id| vec![canonical_item_id(id)])
            .unwrap_or_default(),
        Call::ReadLevels | Call::Unsupported => Vec::new(),
    }
}

/// The key of `@idempotent(key: ...)`: a `$variable` or a string literal.
fn idempotency_key(query: &str, variables: &Value) -> Option<String> {
    let at = query.find("@idempotent")?;
    let rest = query[at..].split_once('(')?.1;
    let rest = rest.trim_start().strip_prefix("key")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    if let Some(name) = rest.strip_prefix('$') {
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        variables.get(&name)?.as_str().map(str::to_owned)
    } else {
        let literal = rest.strip_prefix('"')?;
        literal.split_once('"').map(|(key, _)| key.to_owned())
    }
}

fn top_level_error(message: String, code: &str) -> Answer {
    Answer::new(
        json!({"errors": [{"message": message, "extensions": {"code": code}}]}),
        false,
    )
}

fn user_error(index: usize, field: &str, message: &str, code: &str) -> Value {
    json!({
        "field": ["input", "quantities", index.to_string(), field],
        "message": message,
        "code": code,
    })
}

fn set_quantities(shop: &Shop, query: &str, variables: &Value) -> Answer {
    let Some(raw_input) = variables.get("input") else {
        return top_level_error(
            "Variable $input of type InventorySetQuantitiesInput! was provided invalid value (Expected value to not be null)".into(),
            "INVALID_VARIABLE",
        );
    };
    let input: SetInput = match serde_json::from_value(raw_input.clone()) {
        Ok(input) => input,
        Err(e) => {
            return top_level_error(
                format!(
                    "Variable $input of type InventorySetQuantitiesInput! was provided invalid value ({e})"
                ),
                "INVALID_VARIABLE",
            );
        }
    };
    let max = shop.config.max_quantities;
    if input.quantities.len() > max {
        return top_level_error(
            format!(
                "The input array size of {} is greater than the maximum allowed of {max}.",
                input.quantities.len()
            ),
            "MAX_INPUT_SIZE_EXCEEDED",
        );
    }
    let key = idempotency_key(query, variables);
    let input_text = raw_input.to_string();
    let endpoint = &shop.endpoint;

    let mut items = endpoint.items();
    let mut replays = shop.replays.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(key) = &key
        && let Some(replay) = replays.by_key.get(key)
    {
        if replay.input != input_text {
            return top_level_error(
                format!("The idempotency key {key:?} was already used with different input."),
                "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
            );
        }
        endpoint.stats.duplicate();
        return Answer::new(json!({"data": replay.data}), replay.succeeded);
    }

    let mut user_errors = Vec::new();
    let mut rejected = 0;
    if input.name != "available" {
        user_errors.push(json!({
            "field": ["input", "name"],
            "message": "The simulator only sets the available quantity.",
            "code": "INVALID_NAME",
        }));
    }
    for (index, q) in input.quantities.iter().enumerate() {
        let item = canonical_item_id(&q.inventory_item_id);
        let current = items.quantity(&item);
        if shop.is_permanent(&item) {
            rejected += 1;
            user_errors.push(user_error(
                index,
                "inventoryItemId",
                "The specified inventory item is not stocked at the location.",
                "ITEM_NOT_STOCKED_AT_LOCATION",
            ));
        } else if shop.config.strict_items && current.is_none() {
            rejected += 1;
            user_errors.push(user_error(
                index,
                "inventoryItemId",
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
        } else if !shop.locations.contains(q.location_id.as_str()) {
            user_errors.push(user_error(
                index,
                "locationId",
                "The specified location could not be found.",
                "INVALID_LOCATION",
            ));
        } else if let Some(expected) = q.change_from_quantity
            && expected != current.unwrap_or(0)
        {
            user_errors.push(user_error(
                index,
                "changeFromQuantity",
                "The specified compare quantity does not match the current quantity.",
                "CHANGE_FROM_QUANTITY_STALE",
            ));
        }
    }
    endpoint.stats.rejected(rejected);

    let succeeded = user_errors.is_empty();
    let data = if succeeded {
        let changes: Vec<Value> = input
            .quantities
            .iter()
            .map(|q| {
                let item = canonical_item_id(&q.inventory_item_id);
                let write = items.apply(&item, q.quantity);
                endpoint.stats.wrote(write);
                // A lost write is answered as if it applied.
                let before = write.before.unwrap_or(0);
                json!({
                    "name": "available",
                    "delta": q.quantity - before,
                    "quantityAfterChange": q.quantity,
                    "item": {"id": item},
                    "location": {"id": q.location_id},
                })
            })
            .collect();
        json!({
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": {
                    "createdAt": Timestamp::now().to_rfc3339(),
                    "reason": input.reason,
                    "referenceDocumentUri": input.reference_document_uri,
                    "changes": changes,
                },
                "userErrors": [],
            }
        })
    } else {
        json!({
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": null,
                "userErrors": user_errors,
            }
        })
    };
    if let Some(key) = key {
        replays.remember(
            key,
            Replay {
                input: input_text,
                data: data.clone(),
                succeeded,
            },
            shop.config.idempotency_keys_max,
        );
    }
    Answer::new(json!({"data": data}), succeeded)
}

fn read_level(shop: &Shop, variables: &Value) -> Answer {
    let (Some(item), Some(location)) = (
        variables.get("inventoryItemId").and_then(Value::as_str),
        variables.get("locationId").and_then(Value::as_str),
    ) else {
        return top_level_error(
            "Variables $inventoryItemId and $locationId of type ID! must be given".into(),
            "INVALID_VARIABLE",
        );
    };
    let item = canonical_item_id(item);
    let quantity = shop.endpoint.items().quantity(&item);
    if shop.config.strict_items && quantity.is_none() {
        return Answer::new(json!({"data": {"inventoryItem": null}}), true);
    }
    let level = match quantity {
        Some(q) if !shop.is_permanent(&item) && shop.locations.contains(location) => {
            json!({"quantities": [{"name": "available", "quantity": q}]})
        }
        _ => Value::Null,
    };
    Answer::new(
        json!({"data": {"inventoryItem": {"id": item, "inventoryLevel": level}}}),
        true,
    )
}

/// The points a levels page of `first` levels requests (or, for the levels returned, costs).
fn levels_cost(config: &ShopifyConfig, levels: usize) -> f64 {
    LEVELS_BASE_COST + config.level_cost * levels as f64
}

/// The arguments of a levels query: `location(id:)`, `inventoryLevels(first:, after:)`.
#[derive(Debug, PartialEq, Eq)]
struct LevelsArgs {
    location: String,
    first: u64,
    /// The item gid the page starts after, decoded from the cursor.
    after: Option<String>,
}

impl LevelsArgs {
    /// Reads the arguments from the query text and its variables; `Err` is the answer.
    fn read(query: &str, variables: &Value) -> Result<LevelsArgs, Answer> {
        let refuse = |message: String| {
            Err(Answer::new(
                json!({"errors": [{"message": message}]}),
                false,
            ))
        };
        let location = match argument(query, "location", "id", variables) {
            Some(Value::String(id)) => id,
            _ => return refuse("location needs an id argument (ID!)".into()),
        };
        let first = match argument(query, "inventoryLevels", "first", variables) {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        let Some(first) = first.filter(|f| (1..=CONNECTION_FIRST_MAX).contains(f)) else {
            return refuse(format!(
                "inventoryLevels needs `first` between 1 and {CONNECTION_FIRST_MAX}"
            ));
        };
        let after = match argument(query, "inventoryLevels", "after", variables) {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) => match decode_cursor(&cursor) {
                Some(after) => Some(after),
                None => return refuse(format!("Invalid cursor: {cursor:?}")),
            },
            Some(other) => return refuse(format!("Invalid cursor: {other}")),
        };
        Ok(LevelsArgs {
            location,
            first,
            after,
        })
    }
}

/// The value of argument `name` of `field(...)` in `query`: a literal (string, integer,
/// `null`) or a `$variable` looked up in `variables` (an absent variable reads as null).
fn argument(query: &str, field: &str, name: &str, variables: &Value) -> Option<Value> {
    let start = query.find(&format!("{field}("))? + field.len() + 1;
    let args = &query[start..start + query[start..].find(')')?];
    args.split(',').find_map(|pair| {
        let (key, value) = pair.split_once(':')?;
        if key.trim() != name {
            return None;
        }
        let value = value.trim();
        Some(if let Some(variable) = value.strip_prefix('$') {
            variables.get(variable).cloned().unwrap_or(Value::Null)
        } else if let Some(text) = value.strip_prefix('"') {
            Value::String(text.strip_suffix('"').unwrap_or(text).to_owned())
        } else if value == "null" {
            Value::Null
        } else {
            value.parse::<u64>().map(Value::from).unwrap_or(Value::Null)
        })
    })
}

/// The opaque cursor of a level: its item gid, base64.
fn encode_cursor(item: &str) -> String {
    BASE64.encode(format!("crossdock-sim:{item}"))
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let text = String::from_utf8(BASE64.decode(cursor.trim()).ok()?).ok()?;
    text.strip_prefix("crossdock-sim:").map(str::to_owned)
}

/// A gid's number (`gid://shopify/Location/7` → `7`), for level ids.
fn gid_number(gid: &str) -> &str {
    gid.rsplit('/').next().unwrap_or(gid)
}

fn read_levels(shop: &Shop, args: &LevelsArgs) -> Answer {
    if !shop.locations.contains(args.location.as_str()) {
        return Answer {
            actual_cost: Some(LEVELS_BASE_COST),
            ..Answer::new(json!({"data": {"location": null}}), true)
        };
    }
    let page_max = (args.first as usize).min(shop.config.levels_page_max);
    let after = match &args.after {
        Some(item) => KeyBound::Excluded(item.clone()),
        None => KeyBound::Unbounded,
    };
    // One page and one more level, to know whether another page follows.
    let shown: Vec<(String, i64)> = shop
        .endpoint
        .items()
        .quantities()
        .range((after, KeyBound::Unbounded))
        .filter(|(item, _)| !shop.is_permanent(item))
        .take(page_max + 1)
        .map(|(item, q)| (item.clone(), *q))
        .collect();
    let has_next = shown.len() > page_max;
    let page = &shown[..shown.len().min(page_max)];
    let location_number = gid_number(&args.location);
    let nodes: Vec<Value> = page
        .iter()
        .map(|(item, quantity)| {
            json!({
                "id": format!(
                    "gid://shopify/InventoryLevel/{location_number}?inventory_item_id={}",
                    gid_number(item)
                ),
                "item": {"id": item},
                "location": {"id": args.location},
                "quantities": [{"name": "available", "quantity": quantity}],
            })
        })
        .collect();
    let cursor = |i: Option<&(String, i64)>| i.map(|(item, _)| encode_cursor(item));
    Answer {
        actual_cost: Some(levels_cost(&shop.config, page.len())),
        ..Answer::new(
            json!({"data": {"location": {
                "id": args.location,
                "inventoryLevels": {
                    "nodes": nodes,
                    "pageInfo": {
                        "hasNextPage": has_next,
                        "hasPreviousPage": args.after.is_some(),
                        "startCursor": cursor(page.first()),
                        "endCursor": cursor(page.last()),
                    },
                },
            }}}),
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_idempotency_key_from_a_variable_or_a_literal() {
        let vars = json!({"idempotencyKey": "k-1"});
        let by_variable = "mutation M($idempotencyKey: String!) { inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) { userErrors { code } } }";
        assert_eq!(idempotency_key(by_variable, &vars).as_deref(), Some("k-1"));
        let literal = r#"mutation { inventorySetQuantities(input: $input) @idempotent(key: "lit-2") { userErrors { code } } }"#;
        assert_eq!(idempotency_key(literal, &vars).as_deref(), Some("lit-2"));
        assert_eq!(
            idempotency_key("mutation { inventorySetQuantities }", &vars),
            None
        );
    }

    #[test]
    fn calls_are_recognised_by_their_fields() {
        assert_eq!(
            classify("mutation { inventorySetQuantities }"),
            Call::SetQuantities
        );
        assert_eq!(
            classify("query { inventoryItem { inventoryLevel(locationId: $l) { id } } }"),
            Call::ReadLevel
        );
        assert_eq!(classify("{ shop { name } }"), Call::Unsupported);
    }

    #[test]
    fn levels_arguments_come_from_literals_or_variables() {
        let query = "query L($loc: ID!, $cursor: String) { location(id: $loc) {
            inventoryLevels(first: 250, after: $cursor) { nodes { item { id } } } } }";
        let cursor = encode_cursor("gid://shopify/InventoryItem/5");
        let args = LevelsArgs::read(
            query,
            &json!({"loc": "gid://shopify/Location/1", "cursor": cursor}),
        )
        .ok()
        .unwrap();
        assert_eq!(
            args,
            LevelsArgs {
                location: "gid://shopify/Location/1".into(),
                first: 250,
                after: Some("gid://shopify/InventoryItem/5".into()),
            }
        );
        let literal = r#"{ location(id: "gid://shopify/Location/2") { inventoryLevels(first: 3) { nodes { item { id } } } } }"#;
        let args = LevelsArgs::read(literal, &Value::Null).ok().unwrap();
        assert_eq!((args.first, args.after), (3, None));
        let too_many = "{ location(id: \"x\") { inventoryLevels(first: 251) { nodes { id } } } }";
        assert!(LevelsArgs::read(too_many, &Value::Null).is_err());
        let bad_cursor = "{ location(id: \"x\") { inventoryLevels(first: 1, after: \"nope\") { nodes { id } } } }";
        assert!(LevelsArgs::read(bad_cursor, &Value::Null).is_err());
        assert_eq!(
            classify("{ location(id: $l) { inventoryLevels(first: 1) { nodes { id } } } }"),
            Call::ReadLevels
        );
    }

    #[test]
    fn ids_take_the_gid_form() {
        assert_eq!(canonical_item_id("42"), "gid://shopify/InventoryItem/42");
        assert_eq!(
            canonical_item_id("gid://shopify/InventoryItem/42"),
            "gid://shopify/InventoryItem/42"
        );
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        assert!(ShopifyConfig::default().check().is_ok());
        let too_costly = ShopifyConfig {
            mutation_cost: 5000.0,
            ..ShopifyConfig::default()
        };
        assert!(too_costly.check().unwrap_err().contains("mutation_cost"));
        let no_location = ShopifyConfig {
            location_ids: vec![],
            ..ShopifyConfig::default()
        };
        assert!(no_location.check().unwrap_err().contains("location_ids"));
    }
}
