//! Shopify availability publisher.
//!
//! Faithful to the GraphQL Admin API as of version 2026-01, the first version with both
//! features this publisher relies on: the `changeFromQuantity` compare-and-set field of
//! `InventoryQuantityInput` (an explicit `null` opts out of the check) and the
//! `@idempotent(key:)` directive on inventory mutations. One call sets up to 250 quantities
//! (Shopify's input-array limit), all or nothing: when any quantity is refused, none is applied.
//!
//! What is read back:
//! - top-level `errors` with `extensions.code == "THROTTLED"`: every message is retryable (429);
//!   internal or unavailable errors are retryable; any other top-level error is permanent;
//! - `userErrors` whose `field` points at `input.quantities.<i>`: message `i` is a
//!   compare-and-set [`MsgResult::Mismatch`] when the code is `CHANGE_FROM_QUANTITY_STALE` (or
//!   the older `COMPARE_QUANTITY_STALE`), else a permanent failure carrying the user error; the
//!   messages of the refused call that had no error of their own are [`MsgResult::Requeue`];
//! - `extensions.cost`: the actual query cost and the `throttleStatus` bucket
//!   (`currentlyAvailable`, `maximumAvailable`, `restoreRate`), plus `Retry-After`;
//! - HTTP statuses other than 2xx through [`Failure::from_status`] (401/403 permanent, 429 and
//!   5xx retryable).

use std::time::Duration;

use crossdock_delivery::{
    Body, BoxFuture, Failure, Message, MsgResult, Outcome, RateFeedback, Target, http,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::crosswalk::Crosswalk;
use crate::util::{self, ConfigError};

/// Shopify's limit on the `quantities` input array.
pub const MAX_BATCH: usize = 250;

const SET_MUTATION: &str = "mutation CrossdockSetAvailable($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { reason referenceDocumentUri }
    userErrors { field message code }
  }
}";

const READ_QUERY: &str = "query CrossdockReadAvailable($inventoryItemId: ID!, $locationId: ID!) {
  inventoryItem(id: $inventoryItemId) {
    inventoryLevel(locationId: $locationId) {
      quantities(names: [\"available\"]) { name quantity }
    }
  }
}";

pub(super) const INVENTORY_ITEM_GID: &str = "gid://shopify/InventoryItem/";
const LOCATION_GID: &str = "gid://shopify/Location/";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// The shop's base URL (`https://x.myshopify.com`, or a simulator's `http://127.0.0.1:P`).
    pub shop_url: String,
    /// Admin API version in the path (`/admin/api/<version>/graphql.json`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The location whose `available` quantity Crossdock sets: `gid://shopify/Location/N` or N.
    pub location_id: String,
    #[serde(default = "util::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Points one `inventorySetQuantities` call costs before Shopify says (the lane's limiter
    /// counts GraphQL points for this target).
    #[serde(default = "default_mutation_cost")]
    pub mutation_cost: f64,
}

/// The first Admin API version with `changeFromQuantity` and `@idempotent`.
pub const DEFAULT_API_VERSION: &str = "2026-01";

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_mutation_cost() -> f64 {
    10.0
}

pub struct ShopifyPublisher {
    client: reqwest::Client,
    /// `{shop_url}/admin/api/{version}/graphql.json`
    endpoint: String,
    access_token: String,
    pub(super) location_gid: String,
    pub(super) crosswalk: Crosswalk,
    /// Names the shop in failure details (`shopify:x.myshopify.com`).
    pub(super) channel: String,
    mutation_cost: f64,
    timeout: Duration,
}

impl std::fmt::Debug for ShopifyPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access token stays out of logs.
        f.debug_struct("ShopifyPublisher")
            .field("endpoint", &self.endpoint)
            .field("location_gid", &self.location_gid)
            .field("crosswalk_len", &self.crosswalk.len())
            .finish_non_exhaustive()
    }
}

impl ShopifyPublisher {
    /// `crosswalk` maps item ids to inventory item ids (`123` or
    /// `gid://shopify/InventoryItem/123`).
    pub fn new(
        config: ShopifyConfig,
        access_token: String,
        crosswalk: Crosswalk,
    ) -> Result<Self, ConfigError> {
        let base = util::base_url("shop_url", &config.shop_url)?;
        let version = config.api_version.trim();
        if version.is_empty() || version.contains('/') {
            return Err(ConfigError::new(
                "api_version",
                format!("not an API version: {version:?}"),
            ));
        }
        let location_gid = gid(LOCATION_GID, &config.location_id).ok_or_else(|| {
            ConfigError::new(
                "location_id",
                format!(
                    "expected gid://shopify/Location/N or N, found {:?}",
                    config.location_id
                ),
            )
        })?;
        if !(config.mutation_cost.is_finite() && config.mutation_cost > 0.0) {
            return Err(ConfigError::new("mutation_cost", "must be more than 0"));
        }
        if access_token.trim().is_empty() {
            return Err(ConfigError::new("access_token", "is empty"));
        }
        let timeout = util::timeout("timeout_ms", config.timeout_ms)?;
        Ok(ShopifyPublisher {
            client: http::client(timeout),
            endpoint: format!("{base}/admin/api/{version}/graphql.json"),
            access_token,
            location_gid,
            crosswalk,
            channel: format!("shopify:{}", util::host_of(&base)),
            mutation_cost: config.mutation_cost,
            timeout,
        })
    }

    /// The inventory item gid for `item`, or the failure to report.
    fn inventory_item(&self, item: &str) -> Result<String, Failure> {
        let Some(external) = self.crosswalk.external(item) else {
            return Err(util::no_crosswalk_entry(item, &self.channel));
        };
        gid(INVENTORY_ITEM_GID, external).ok_or_else(|| {
            Failure::permanent(
                None,
                format!(
                    "crosswalk entry {external:?} for item {item} is not an inventory item id \
                     (expected N or gid://shopify/InventoryItem/N)"
                ),
            )
        })
    }

    pub(super) async fn post(
        &self,
        body: &Value,
        correlation_id: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .header("X-Shopify-Access-Token", &self.access_token)
            .json(body);
        if let Some(id) = correlation_id {
            request = request.header("X-Correlation-Id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers());
        let call_limit = http::shopify_call_limit(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        Ok(Answer {
            status,
            retry_after,
            call_limit,
            text,
        })
    }

    async fn send_batch(&self, batch: &[Message]) -> Outcome {
        let mut results: Vec<Option<MsgResult>> = vec![None; batch.len()];
        // Batch positions of the quantities in the mutation, in mutation order.
        let mut sent: Vec<usize> = Vec::with_capacity(batch.len());
        let mut quantities: Vec<Value> = Vec::with_capacity(batch.len());
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for (i, message) in batch.iter().enumerate() {
            let Body::Availability {
                item,
                available,
                last_sent,
            } = &message.body
            else {
                results[i] = Some(util::unsupported_body(message, &self.channel));
                continue;
            };
            let gid = match self.inventory_item(item) {
                Ok(gid) => gid,
                Err(failure) => {
                    results[i] = Some(MsgResult::Failed(failure));
                    continue;
                }
            };
            // One quantity per inventory item: the lane coalesces by key, so a repeat means two
            // items share a Shopify id. Only the later one goes; the earlier is sent again later.
            if let Some(&slot) = seen.get(&gid) {
                results[sent[slot]] = Some(MsgResult::Requeue);
                sent[slot] = i;
                quantities[slot] = quantity_input(&gid, &self.location_gid, *available, *last_sent);
                continue;
            }
            seen.insert(gid.clone(), sent.len());
            sent.push(i);
            quantities.push(quantity_input(
                &gid,
                &self.location_gid,
                *available,
                *last_sent,
            ));
        }
        if sent.is_empty() {
            return finish(results, RateFeedback::default());
        }

        let sent_messages: Vec<&Message> = sent.iter().map(|&i| &batch[i]).collect();
        let seq = sent_messages
            .iter()
            .map(|m| m.ledger_seq)
            .max()
            .unwrap_or_default();
        let input = json!({
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": format!("crossdock://ledger/{seq}"),
            "quantities": quantities,
        });
        let key = idempotency_key(&sent_messages, &input);
        let body = json!({
            "query": SET_MUTATION,
            "variables": { "input": input, "idempotencyKey": key },
        });
        let correlation = crate::util::correlation_header(sent_messages.iter().copied());
        let (answers, feedback) = match self.post(&body, correlation.as_deref()).await {
            Ok(answer) => read_set_answer(&answer, sent.len()),
            Err(failure) => (
                vec![MsgResult::Failed(failure); sent.len()],
                RateFeedback::default(),
            ),
        };
        debug_assert_eq!(answers.len(), sent.len());
        for (slot, result) in sent.iter().zip(answers) {
            results[*slot] = Some(result);
        }
        finish(results, feedback)
    }

    pub(crate) async fn read(&self, key: &str) -> Result<i64, Failure> {
        let gid = self.inventory_item(key)?;
        let body = json!({
            "query": READ_QUERY,
            "variables": { "inventoryItemId": gid, "locationId": self.location_gid },
        });
        let answer = self.post(&body, None).await?;
        read_level_answer(&answer)
    }
}

impl Target for ShopifyPublisher {
    /// The longest one `send` can take: one GraphQL call. A lane's own bound on a call should
    /// not be shorter.
    fn call_budget(&self, _batch: &[Message]) -> Duration {
        self.timeout
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn estimated_cost(&self, _batch: &[Message]) -> f64 {
        self.mutation_cost
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send_batch(batch))
    }

    fn read_current<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Result<i64, Failure>>> {
        Box::pin(async move { Some(self.read(key).await) })
    }
}

/// A Shopify global id from `N` or a full gid of the right type.
pub(super) fn gid(prefix: &str, raw: &str) -> Option<String> {
    let raw = raw.trim();
    let number = raw.strip_prefix(prefix).unwrap_or(raw);
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{prefix}{number}"))
}

fn quantity_input(gid: &str, location: &str, available: i64, last_sent: Option<i64>) -> Value {
    json!({
        "inventoryItemId": gid,
        "locationId": location,
        "quantity": available,
        // Explicit null: no compare-and-set (nothing delivered before).
        "changeFromQuantity": last_sent,
    })
}

/// Stable for the same call: derived from the messages' own idempotency keys and the exact
/// input, so a resend after a timeout replays Shopify's first answer, while a resend with a
/// new `changeFromQuantity` (after a resync) is a new request.
fn idempotency_key(messages: &[&Message], input: &Value) -> String {
    let input_text = input.to_string();
    let mut parts: Vec<&[u8]> = messages
        .iter()
        .map(|m| m.idempotency_key.as_bytes())
        .collect();
    parts.push(input_text.as_bytes());
    let hash = util::sha256_hex(&parts);
    format!("crossdock-{}", &hash[..48])
}

fn finish(results: Vec<Option<MsgResult>>, feedback: RateFeedback) -> Outcome {
    Outcome {
        results: results
            .into_iter()
            .map(|r| r.expect("every message of the batch has a result"))
            .collect(),
        feedback,
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    /// `X-Shopify-Shop-Api-Call-Limit` (REST): requests left and bucket size.
    pub(super) call_limit: Option<(f64, f64)>,
    pub(super) text: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct GraphqlResponse {
    #[serde(default)]
    pub(super) data: Option<Value>,
    #[serde(default)]
    pub(super) errors: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) extensions: Option<Extensions>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Extensions {
    #[serde(default)]
    pub(super) cost: Option<Cost>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Cost {
    /// What the call was estimated to cost before it ran (the budget it needed).
    #[serde(default)]
    pub(super) requested_query_cost: Option<f64>,
    #[serde(default)]
    actual_query_cost: Option<f64>,
    #[serde(default)]
    throttle_status: Option<ThrottleStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThrottleStatus {
    #[serde(default)]
    maximum_available: Option<f64>,
    #[serde(default)]
    currently_available: Option<f64>,
    #[serde(default)]
    restore_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct UserError {
    #[serde(default)]
    field: Option<Vec<String>>,
    #[serde(default)]
    code: Option<String>,
}

pub(super) fn feedback(answer: &Answer, parsed: Option<&GraphqlResponse>) -> RateFeedback {
    let cost = parsed
        .and_then(|p| p.extensions.as_ref())
        .and_then(|e| e.cost.as_ref());
    let throttle = cost.and_then(|c| c.throttle_status.as_ref());
    // GraphQL answers carry the points bucket; a REST-style answer (an edge 429) carries the
    // request bucket instead, which only a `leaky` limit in requests should be configured for.
    let rest = throttle.is_none().then_some(answer.call_limit).flatten();
    RateFeedback {
        retry_after: answer.retry_after,
        available: throttle
            .and_then(|t| t.currently_available)
            .or(rest.map(|r| r.0)),
        capacity: throttle
            .and_then(|t| t.maximum_available)
            .or(rest.map(|r| r.1)),
        rate: throttle.and_then(|t| t.restore_rate),
        cost: cost.and_then(|c| c.actual_query_cost),
    }
}

/// How top-level GraphQL `errors` read: `None` when there are none.
pub(super) fn top_level_failure(status: u16, errors: &[Value]) -> Option<Failure> {
    if errors.is_empty() {
        return None;
    }
    let codes: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str))
        .collect();
    let text = util::detail(Value::Array(errors.to_vec()).to_string());
    Some(if codes.contains(&"THROTTLED") {
        Failure::retryable(Some(429), text)
    } else if codes.iter().any(|c| {
        matches!(
            *c,
            "INTERNAL_SERVER_ERROR" | "SERVICE_UNAVAILABLE" | "TIMEOUT"
        ) || c.starts_with("IDEMPOTENCY_CONCURRENT")
    }) {
        Failure::retryable(Some(if status >= 500 { status } else { 503 }), text)
    } else {
        Failure::permanent(Some(status), text)
    })
}

/// The batch position a user error points at: `["input", "quantities", "<i>", ...]`.
fn user_error_index(field: Option<&[String]>, n: usize) -> Option<usize> {
    let field = field?;
    let at = field.iter().position(|f| f == "quantities")?;
    let index: usize = field.get(at + 1)?.parse().ok()?;
    (index < n).then_some(index)
}

/// Reads the answer to an `inventorySetQuantities` call carrying `n` quantities.
fn read_set_answer(answer: &Answer, n: usize) -> (Vec<MsgResult>, RateFeedback) {
    let parsed: Option<GraphqlResponse> = serde_json::from_str(&answer.text).ok();
    let feedback = feedback(answer, parsed.as_ref());
    let all = |failure: Failure| (vec![MsgResult::Failed(failure); n], feedback.clone());

    if !(200..300).contains(&answer.status) {
        return all(Failure::from_status(
            answer.status,
            util::detail(answer.text.clone()),
        ));
    }
    let Some(parsed) = parsed else {
        return all(Failure::retryable(
            Some(answer.status),
            util::detail(format!("answer is not GraphQL JSON: {}", answer.text)),
        ));
    };
    if let Some(failure) = top_level_failure(answer.status, parsed.errors.as_deref().unwrap_or(&[]))
    {
        return all(failure);
    }
    let Some(payload) = parsed
        .data
        .as_ref()
        .and_then(|d| d.get("inventorySetQuantities"))
        .filter(|p| !p.is_null())
    else {
        return all(Failure::retryable(
            Some(answer.status),
            util::detail(format!(
                "answer has no inventorySetQuantities payload: {}",
                answer.text
            )),
        ));
    };
    let raw_errors: Vec<Value> = payload
        .get("userErrors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if raw_errors.is_empty() {
        return (vec![MsgResult::Delivered; n], feedback);
    }

    // Shopify applies all or nothing: every quantity without an error of its own is requeued,
    // unless an error names no quantity, which then is every message's error.
    let mut results: Vec<Option<MsgResult>> = vec![None; n];
    let mut unplaced: Vec<Value> = Vec::new();
    for raw in raw_errors {
        let parsed: Option<UserError> = serde_json::from_value(raw.clone()).ok();
        let index = parsed
            .as_ref()
            .and_then(|e| user_error_index(e.field.as_deref(), n));
        let code = parsed.as_ref().and_then(|e| e.code.as_deref());
        let Some(index) = index else {
            unplaced.push(raw);
            continue;
        };
        let result = if matches!(
            code,
            Some("CHANGE_FROM_QUANTITY_STALE" | "COMPARE_QUANTITY_STALE")
        ) {
            MsgResult::Mismatch { found: None }
        } else {
            MsgResult::Failed(Failure::permanent(
                Some(answer.status),
                util::detail(raw.to_string()),
            ))
        };
        // A second error for the same quantity: the first one stands (a mismatch wins over
        // nothing, and a permanent failure is already enough to park the message).
        results[index].get_or_insert(result);
    }
    let rest = if unplaced.is_empty() {
        MsgResult::Requeue
    } else {
        MsgResult::Failed(Failure::permanent(
            Some(answer.status),
            util::detail(Value::Array(unplaced).to_string()),
        ))
    };
    (
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| rest.clone()))
            .collect(),
        feedback,
    )
}

/// Reads the answer to the `inventoryItem { inventoryLevel { quantities } }` query.
fn read_level_answer(answer: &Answer) -> Result<i64, Failure> {
    if !(200..300).contains(&answer.status) {
        return Err(Failure::from_status(
            answer.status,
            util::detail(answer.text.clone()),
        ));
    }
    let parsed: GraphqlResponse = serde_json::from_str(&answer.text).map_err(|e| {
        Failure::retryable(
            Some(answer.status),
            util::detail(format!("answer is not GraphQL JSON ({e}): {}", answer.text)),
        )
    })?;
    if let Some(failure) = top_level_failure(answer.status, parsed.errors.as_deref().unwrap_or(&[]))
    {
        return Err(failure);
    }
    let item = parsed
        .data
        .as_ref()
        .and_then(|d| d.get("inventoryItem"))
        .filter(|v| !v.is_null())
        .ok_or_else(|| Failure::permanent(Some(answer.status), "inventory item not found"))?;
    let level = item
        .get("inventoryLevel")
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            Failure::permanent(
                Some(answer.status),
                "inventory item is not stocked at the configured location",
            )
        })?;
    level
        .get("quantities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
        .and_then(|q| q.get("quantity"))
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Failure::permanent(
                Some(answer.status),
                util::detail(format!("answer has no available quantity: {}", answer.text)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;

    fn answer(status: u16, text: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            call_limit: None,
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_rest_style_answer_reports_the_request_bucket() {
        let mut a = answer(429, "Exceeded 2 calls per second for api client.");
        a.call_limit = Some((0.0, 40.0));
        a.retry_after = Some(Duration::from_secs(1));
        let fb = feedback(&a, None);
        assert_eq!((fb.available, fb.capacity), (Some(0.0), Some(40.0)));
        assert_eq!(fb.retry_after, Some(Duration::from_secs(1)));
        // A GraphQL answer's points bucket wins over the header.
        let parsed: GraphqlResponse =
            serde_json::from_str(&format!("{{\"data\": {{}}, {COST}}}")).unwrap();
        a.status = 200;
        let fb = feedback(&a, Some(&parsed));
        assert_eq!((fb.available, fb.capacity), (Some(1990.0), Some(2000.0)));
    }

    const COST: &str = r#""extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}}"#;

    #[test]
    fn a_clean_answer_delivers_all_and_reads_the_bucket() {
        let text = format!(
            r#"{{"data": {{"inventorySetQuantities": {{"inventoryAdjustmentGroup": {{"reason": "correction"}},
            "userErrors": []}}}}, {COST}}}"#
        );
        let (results, feedback) = read_set_answer(&answer(200, &text), 3);
        assert_eq!(results, vec![MsgResult::Delivered; 3]);
        assert_eq!(
            feedback,
            RateFeedback {
                retry_after: None,
                available: Some(1990.0),
                capacity: Some(2000.0),
                rate: Some(100.0),
                cost: Some(10.0),
            }
        );
    }

    #[test]
    fn throttled_is_retryable_429_for_every_message() {
        let text = r#"{"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
            "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": null,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 3, "restoreRate": 100.0}}}}"#;
        let mut a = answer(200, text);
        a.retry_after = Some(Duration::from_secs(1));
        let (results, feedback) = read_set_answer(&a, 2);
        for r in &results {
            let MsgResult::Failed(f) = r else {
                panic!("expected a failure, got {r:?}");
            };
            assert_eq!((f.class, f.status), (RetryClass::Retryable, Some(429)));
            assert!(f.detail.contains("THROTTLED"));
        }
        assert_eq!(results.len(), 2);
        assert_eq!(feedback.available, Some(3.0));
        assert_eq!(feedback.cost, None);
        assert_eq!(feedback.retry_after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn other_top_level_errors_are_permanent_unless_internal() {
        let denied = r#"{"errors": [{"message": "Access denied for inventorySetQuantities field.",
            "extensions": {"code": "ACCESS_DENIED"}}]}"#;
        let (results, _) = read_set_answer(&answer(200, denied), 1);
        assert!(matches!(&results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent));
        let internal = r#"{"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}"#;
        let (results, _) = read_set_answer(&answer(200, internal), 1);
        assert!(matches!(&results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable));
        let invalid = r#"{"errors": [{"message": "Field 'changeFromQuantity' doesn't exist on type 'InventoryQuantityInput'",
            "locations": [{"line": 2, "column": 3}]}]}"#;
        let (results, _) = read_set_answer(&answer(200, invalid), 2);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("changeFromQuantity")))
        );
    }

    #[test]
    fn user_errors_map_to_their_quantity_and_requeue_the_rest() {
        let text = r#"{"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": null,
            "userErrors": [
              {"field": ["input", "quantities", "1", "changeFromQuantity"],
               "message": "The specified compare quantity does not match the current quantity.",
               "code": "CHANGE_FROM_QUANTITY_STALE"},
              {"field": ["input", "quantities", "3", "inventoryItemId"],
               "message": "The specified inventory item could not be found.",
               "code": "INVALID_INVENTORY_ITEM"}
            ]}}}"#;
        let (results, _) = read_set_answer(&answer(200, text), 4);
        assert_eq!(results[0], MsgResult::Requeue);
        assert_eq!(results[1], MsgResult::Mismatch { found: None });
        assert_eq!(results[2], MsgResult::Requeue);
        let MsgResult::Failed(f) = &results[3] else {
            panic!("expected a failure, got {:?}", results[3]);
        };
        assert_eq!(f.class, RetryClass::Permanent);
        assert!(f.detail.contains("INVALID_INVENTORY_ITEM"), "{}", f.detail);
        // The older code reads the same.
        let older = r#"{"data": {"inventorySetQuantities": {"userErrors": [
            {"field": ["input", "quantities", "0", "compareQuantity"], "message": "stale", "code": "COMPARE_QUANTITY_STALE"}]}}}"#;
        let (results, _) = read_set_answer(&answer(200, older), 1);
        assert_eq!(results, vec![MsgResult::Mismatch { found: None }]);
    }

    #[test]
    fn a_user_error_without_a_quantity_fails_everyone_permanently() {
        let text = r#"{"data": {"inventorySetQuantities": {"userErrors": [
            {"field": ["input", "reason"], "message": "Reason is invalid", "code": "INVALID_REASON"}]}}}"#;
        let (results, _) = read_set_answer(&answer(200, text), 2);
        assert!(results.iter().all(
            |r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("INVALID_REASON"))
        ));
    }

    #[test]
    fn http_statuses_classify_every_message() {
        for (status, class) in [
            (401, RetryClass::Permanent),
            (403, RetryClass::Permanent),
            (404, RetryClass::Permanent),
            (429, RetryClass::Retryable),
            (500, RetryClass::Retryable),
            (503, RetryClass::Retryable),
        ] {
            let (results, _) = read_set_answer(&answer(status, "nope"), 2);
            assert_eq!(results.len(), 2);
            for r in results {
                assert!(
                    matches!(&r, MsgResult::Failed(f) if f.class == class && f.status == Some(status)),
                    "{status}: {r:?}"
                );
            }
        }
        let (results, _) = read_set_answer(&answer(200, "<html>oops</html>"), 1);
        assert!(matches!(&results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable));
    }

    #[test]
    fn reads_the_available_level() {
        let ok = r#"{"data": {"inventoryItem": {"inventoryLevel": {"quantities": [{"name": "available", "quantity": 7}]}}}}"#;
        assert_eq!(read_level_answer(&answer(200, ok)), Ok(7));
        let missing = r#"{"data": {"inventoryItem": null}}"#;
        assert!(
            matches!(read_level_answer(&answer(200, missing)), Err(f) if f.class == RetryClass::Permanent)
        );
        let unstocked = r#"{"data": {"inventoryItem": {"inventoryLevel": null}}}"#;
        assert!(
            matches!(read_level_answer(&answer(200, unstocked)), Err(f) if f.detail.contains("not stocked"))
        );
        assert!(
            matches!(read_level_answer(&answer(502, "bad gateway")), Err(f) if f.class == RetryClass::Retryable)
        );
    }

    #[test]
    fn gids_accept_numbers_and_full_ids_of_the_right_type() {
        assert_eq!(
            gid(INVENTORY_ITEM_GID, "808950810").as_deref(),
            Some("gid://shopify/InventoryItem/808950810")
        );
        assert_eq!(
            gid(INVENTORY_ITEM_GID, "gid://shopify/InventoryItem/1").as_deref(),
            Some("gid://shopify/InventoryItem/1")
        );
        assert_eq!(gid(INVENTORY_ITEM_GID, "gid://shopify/Location/1"), None);
        assert_eq!(gid(INVENTORY_ITEM_GID, ""), None);
        assert_eq!(gid(LOCATION_GID, "abc"), None);
    }

    fn message(key: &str, idem: &str) -> Message {
        Message {
            key: key.into(),
            ledger_seq: 1,
            body: Body::Availability {
                item: key.into(),
                available: 1,
                last_sent: None,
            },
            idempotency_key: idem.into(),
            correlation_id: None,
        }
    }

    #[test]
    fn idempotency_key_follows_the_content() {
        let (a, b) = (message("A", "k1"), message("B", "k2"));
        let input = json!({"quantities": [1]});
        let key = idempotency_key(&[&a, &b], &input);
        assert_eq!(key, idempotency_key(&[&a, &b], &input));
        assert_ne!(key, idempotency_key(&[&b, &a], &input));
        assert_ne!(key, idempotency_key(&[&a, &b], &json!({"quantities": [2]})));
        assert!(key.starts_with("crossdock-") && key.len() == "crossdock-".len() + 48);
    }

    #[test]
    fn config_is_checked_strictly() {
        let config: ShopifyConfig = serde_json::from_value(json!({
            "shop_url": "https://x.myshopify.com", "location_id": "905684977"
        }))
        .unwrap();
        assert_eq!(config.api_version, DEFAULT_API_VERSION);
        assert_eq!(config.mutation_cost, 10.0);
        let p = ShopifyPublisher::new(config.clone(), "tok".into(), Crosswalk::default()).unwrap();
        assert_eq!(
            p.endpoint,
            "https://x.myshopify.com/admin/api/2026-01/graphql.json"
        );
        assert_eq!(p.location_gid, "gid://shopify/Location/905684977");
        let bad = ShopifyConfig {
            location_id: "gid://shopify/InventoryItem/1".into(),
            ..config
        };
        let err = ShopifyPublisher::new(bad, "tok".into(), Crosswalk::default()).unwrap_err();
        assert_eq!(err.key, "location_id");
        let unknown = serde_json::from_value::<ShopifyConfig>(json!({
            "shop_url": "https://x", "location_id": "1", "api_verison": "2025-01"
        }));
        assert!(unknown.unwrap_err().to_string().contains("api_verison"));
    }
}
