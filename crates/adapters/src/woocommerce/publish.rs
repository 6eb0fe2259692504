//! WooCommerce stock publisher.
//!
//! Faithful to the WooCommerce REST API v3 (`/wp-json/wc/v3`), authenticated with the REST
//! consumer key and secret as HTTP Basic (the form WooCommerce accepts over HTTPS):
//!
//! - simple products: one `POST /products/batch` with
//!   `{"update": [{"id": P, "stock_quantity": N, "manage_stock": true}, ...]}`;
//! - variations: one `POST /products/{parent}/variations/batch` per parent product;
//! - the answer lists each updated object, or `{"id": .., "error": {"code", "message",
//!   "data": {"status"}}}` for one that failed: that message alone fails (permanent, or
//!   retryable for a 5xx status), the others are delivered.
//!
//! WooCommerce caps a batch at 100 objects, so [`MAX_BATCH`] is 100. The crosswalk's external id
//! is `"<product_id>"` or `"<product_id>/<variation_id>"`. WooCommerce has no platform rate
//! limit (the host's or plugins' apply), so the only cost is the number of HTTP calls.

use std::collections::{BTreeMap, HashMap};

use crossdock_delivery::{
    Body, BoxFuture, Failure, Message, MsgResult, Outcome, RateFeedback, Target, http,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::crosswalk::Crosswalk;
use crate::util::{self, ConfigError};

/// WooCommerce's limit on objects in one batch request.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WooConfig {
    /// The site's base URL (`https://shop.example`); the API is under `/wp-json/wc/v3`.
    pub url: String,
    #[serde(default = "util::default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Where a WooCommerce stock count lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WooItem {
    Product(u64),
    Variation { parent: u64, variation: u64 },
}

impl WooItem {
    /// Reads `"<product_id>"` or `"<product_id>/<variation_id>"` (ids are positive).
    pub fn parse(raw: &str) -> Option<Self> {
        let number = |s: &str| s.trim().parse::<u64>().ok().filter(|n| *n > 0);
        match raw.split_once('/') {
            None => number(raw).map(WooItem::Product),
            Some((parent, variation)) => Some(WooItem::Variation {
                parent: number(parent)?,
                variation: number(variation)?,
            }),
        }
    }
}

pub struct WooPublisher {
    pub(super) client: reqwest::Client,
    /// `{url}/wp-json/wc/v3`
    pub(super) api: String,
    pub(super) consumer_key: String,
    pub(super) consumer_secret: String,
    pub(super) crosswalk: Crosswalk,
    pub(super) channel: String,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for WooPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WooPublisher")
            .field("api", &self.api)
            .field("crosswalk_len", &self.crosswalk.len())
            .finish_non_exhaustive()
    }
}

/// One object to update: (batch position, WooCommerce object id, stock quantity).
type Update = (usize, u64, i64);

/// One HTTP call of a send: which endpoint, which objects.
struct Call {
    path: String,
    updates: Vec<Update>,
}

impl WooPublisher {
    pub fn new(
        config: WooConfig,
        consumer_key: String,
        consumer_secret: String,
        crosswalk: Crosswalk,
    ) -> Result<Self, ConfigError> {
        let base = util::base_url("url", &config.url)?;
        if consumer_key.trim().is_empty() || consumer_secret.trim().is_empty() {
            return Err(ConfigError::new(
                "consumer_key",
                "the consumer key and secret must both be set",
            ));
        }
        let timeout = util::timeout("timeout_ms", config.timeout_ms)?;
        Ok(WooPublisher {
            client: http::client(timeout),
            api: format!("{base}/wp-json/wc/v3"),
            consumer_key,
            consumer_secret,
            crosswalk,
            channel: format!("woocommerce:{}", util::host_of(&base)),
            timeout,
        })
    }

    fn woo_item(&self, item: &str) -> Result<WooItem, Failure> {
        let Some(external) = self.crosswalk.external(item) else {
            return Err(util::no_crosswalk_entry(item, &self.channel));
        };
        WooItem::parse(external).ok_or_else(|| {
            Failure::permanent(
                None,
                format!(
                    "crosswalk entry {external:?} for item {item} is not \
                     <product_id> or <product_id>/<variation_id>"
                ),
            )
        })
    }

    /// Splits `batch` into calls; messages that cannot be sent get their result at once.
    fn plan(&self, batch: &[Message], results: &mut [Option<MsgResult>]) -> Vec<Call> {
        let mut products = Vec::new();
        let mut variations: BTreeMap<u64, Vec<Update>> = BTreeMap::new();
        let mut seen: HashMap<WooItem, usize> = HashMap::new();
        for (i, message) in batch.iter().enumerate() {
            let Body::Availability {
                item, available, ..
            } = &message.body
            else {
                results[i] = Some(util::unsupported_body(message, &self.channel));
                continue;
            };
            let woo = match self.woo_item(item) {
                Ok(woo) => woo,
                Err(failure) => {
                    results[i] = Some(MsgResult::Failed(failure));
                    continue;
                }
            };
            // The same WooCommerce object twice in one batch: the later value goes, the
            // earlier message is sent again later (by then coalesced away).
            if let Some(earlier) = seen.insert(woo, i) {
                results[earlier] = Some(MsgResult::Requeue);
                products.retain(|(p, _, _)| *p != earlier);
                for list in variations.values_mut() {
                    list.retain(|(p, _, _)| *p != earlier);
                }
            }
            match woo {
                WooItem::Product(id) => products.push((i, id, *available)),
                WooItem::Variation { parent, variation } => variations
                    .entry(parent)
                    .or_default()
                    .push((i, variation, *available)),
            }
        }
        let mut calls = Vec::new();
        if !products.is_empty() {
            calls.push(Call {
                path: "/products/batch".into(),
                updates: products,
            });
        }
        for (parent, updates) in variations {
            calls.push(Call {
                path: format!("/products/{parent}/variations/batch"),
                updates,
            });
        }
        calls
    }

    async fn post_batch(&self, call: &Call, correlation_id: Option<&str>) -> Vec<MsgResult> {
        let update: Vec<Value> = call
            .updates
            .iter()
            .map(|(_, id, quantity)| json!({"id": id, "stock_quantity": quantity, "manage_stock": true}))
            .collect();
        let mut request = self
            .client
            .post(format!("{}{}", self.api, call.path))
            .basic_auth(&self.consumer_key, Some(&self.consumer_secret))
            .json(&json!({ "update": update }));
        if let Some(id) = correlation_id {
            request = request.header("X-Correlation-Id", id);
        }
        let n = call.updates.len();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return vec![MsgResult::Failed(http::transport_failure(&e)); n],
        };
        if !response.status().is_success() {
            return vec![MsgResult::Failed(util::status_failure(response).await); n];
        }
        let status = response.status().as_u16();
        match response.text().await {
            Ok(text) => read_batch_answer(status, &text, &call.updates),
            Err(e) => vec![MsgResult::Failed(http::transport_failure(&e)); n],
        }
    }

    async fn send_batch(&self, batch: &[Message]) -> Outcome {
        let mut results: Vec<Option<MsgResult>> = vec![None; batch.len()];
        let calls = self.plan(batch, &mut results);
        for call in &calls {
            let correlation =
                crate::util::correlation_header(call.updates.iter().map(|(i, _, _)| &batch[*i]));
            let answers = self.post_batch(call, correlation.as_deref()).await;
            debug_assert_eq!(answers.len(), call.updates.len());
            for ((i, _, _), result) in call.updates.iter().zip(answers) {
                results[*i] = Some(result);
            }
        }
        Outcome {
            results: results
                .into_iter()
                .map(|r| r.expect("every message of the batch has a result"))
                .collect(),
            feedback: RateFeedback::default(),
        }
    }

    async fn read(&self, key: &str) -> Result<i64, Failure> {
        let path = match self.woo_item(key)? {
            WooItem::Product(id) => format!("/products/{id}"),
            WooItem::Variation { parent, variation } => {
                format!("/products/{parent}/variations/{variation}")
            }
        };
        let response = self
            .client
            .get(format!("{}{path}", self.api))
            .basic_auth(&self.consumer_key, Some(&self.consumer_secret))
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        if !response.status().is_success() {
            return Err(util::status_failure(response).await);
        }
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        read_stock_answer(status, &text)
    }
}

impl Target for WooPublisher {
    /// The longest one `send` of `batch` can take: its calls are made one after another. A
    /// lane's own bound on a call should not be shorter.
    fn call_budget(&self, batch: &[Message]) -> std::time::Duration {
        let calls = self.estimated_cost(batch).max(1.0) as u32;
        self.timeout.saturating_mul(calls)
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// One per HTTP call the batch needs: one for simple products, one per variation parent.
    fn estimated_cost(&self, batch: &[Message]) -> f64 {
        let mut products = false;
        let mut parents = std::collections::HashSet::new();
        for message in batch {
            let Body::Availability { item, .. } = &message.body else {
                continue;
            };
            match self.woo_item(item) {
                Ok(WooItem::Product(_)) => products = true,
                Ok(WooItem::Variation { parent, .. }) => {
                    parents.insert(parent);
                }
                Err(_) => {}
            }
        }
        (usize::from(products) + parents.len()) as f64
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send_batch(batch))
    }

    fn read_current<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Result<i64, Failure>>> {
        Box::pin(async move { Some(self.read(key).await) })
    }
}

/// Reads a batch answer (`{"update": [...]}`) for the objects of `updates`, matched by id.
fn read_batch_answer(status: u16, text: &str, updates: &[Update]) -> Vec<MsgResult> {
    let n = updates.len();
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let Some(list) = parsed
        .as_ref()
        .and_then(|v| v.get("update"))
        .and_then(Value::as_array)
    else {
        return vec![
            MsgResult::Failed(Failure::retryable(
                Some(status),
                util::detail(format!("answer has no `update` list: {text}")),
            ));
            n
        ];
    };
    let mut by_id: HashMap<u64, &Value> = HashMap::new();
    for entry in list {
        if let Some(id) = entry.get("id").and_then(Value::as_u64) {
            by_id.entry(id).or_insert(entry);
        }
    }
    updates
        .iter()
        .enumerate()
        .map(|(position, (_, id, _))| {
            // WooCommerce answers in request order; an error entry for an unknown id may carry
            // id 0, so fall back to the same position when the id is not found.
            let entry = by_id.get(id).copied().or_else(|| {
                list.get(position).filter(|e| {
                    e.get("error").is_some()
                        && e.get("id").and_then(Value::as_u64).unwrap_or(0) == 0
                })
            });
            match entry {
                None => MsgResult::Failed(Failure::retryable(
                    Some(status),
                    format!("object {id} is missing from the batch answer"),
                )),
                Some(entry) => match entry.get("error").filter(|e| !e.is_null()) {
                    None => MsgResult::Delivered,
                    Some(error) => {
                        let code = error
                            .pointer("/data/status")
                            .and_then(Value::as_u64)
                            .and_then(|s| u16::try_from(s).ok())
                            .unwrap_or(400);
                        MsgResult::Failed(Failure::from_status(
                            code,
                            util::detail(error.to_string()),
                        ))
                    }
                },
            }
        })
        .collect()
}

/// Reads `stock_quantity` from a product or variation.
fn read_stock_answer(status: u16, text: &str) -> Result<i64, Failure> {
    let parsed: Value = serde_json::from_str(text).map_err(|e| {
        Failure::retryable(
            Some(status),
            util::detail(format!("answer is not JSON ({e}): {text}")),
        )
    })?;
    match parsed.get("stock_quantity") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Failure::permanent(
                Some(status),
                format!("stock_quantity {n} is not an integer"),
            )
        }),
        _ if parsed.get("manage_stock") == Some(&Value::Bool(false)) => Err(Failure::permanent(
            Some(status),
            "stock is not managed for this object (manage_stock is false)",
        )),
        _ => Err(Failure::permanent(
            Some(status),
            "answer has no stock_quantity",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../testdata/channels/woocommerce/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn message(item: &str, available: i64) -> Message {
        Message {
            key: item.into(),
            ledger_seq: 1,
            body: Body::Availability {
                item: item.into(),
                available,
                last_sent: None,
            },
            idempotency_key: format!("k-{item}"),
            correlation_id: None,
        }
    }

    fn publisher() -> WooPublisher {
        let walk = Crosswalk::from_pairs([
            ("A", "799"),
            ("B", "22/732"),
            ("C", "22/733"),
            ("D", "40/41"),
            ("BAD", "x/1"),
        ])
        .unwrap();
        WooPublisher::new(
            WooConfig {
                url: "https://shop.example/".into(),
                timeout_ms: 1000,
            },
            "ck".into(),
            "cs".into(),
            walk,
        )
        .unwrap()
    }

    #[test]
    fn parses_external_ids() {
        assert_eq!(WooItem::parse("93"), Some(WooItem::Product(93)));
        assert_eq!(
            WooItem::parse("22/23"),
            Some(WooItem::Variation {
                parent: 22,
                variation: 23
            })
        );
        assert_eq!(WooItem::parse("0"), None);
        assert_eq!(WooItem::parse("22/"), None);
        assert_eq!(WooItem::parse("a/b"), None);
    }

    #[test]
    fn plans_one_call_for_products_and_one_per_parent() {
        let p = publisher();
        let batch = [
            message("A", 5),
            message("B", 1),
            message("NOPE", 1),
            message("D", 0),
            message("C", 2),
            message("BAD", 3),
        ];
        assert_eq!(p.estimated_cost(&batch), 3.0);
        let mut results = vec![None; batch.len()];
        let calls = p.plan(&batch, &mut results);
        let shape: Vec<(&str, Vec<Update>)> = calls
            .iter()
            .map(|c| (c.path.as_str(), c.updates.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("/products/batch", vec![(0, 799, 5)]),
                (
                    "/products/22/variations/batch",
                    vec![(1, 732, 1), (4, 733, 2)]
                ),
                ("/products/40/variations/batch", vec![(3, 41, 0)]),
            ]
        );
        assert!(
            matches!(&results[2], Some(MsgResult::Failed(f)) if f.detail == "no crosswalk entry for item NOPE on channel woocommerce:shop.example")
        );
        assert!(
            matches!(&results[5], Some(MsgResult::Failed(f)) if f.class == RetryClass::Permanent)
        );
        assert_eq!(p.api, "https://shop.example/wp-json/wc/v3");
    }

    #[test]
    fn reads_the_real_batch_answer() {
        // The docs' example updates product 799.
        let text = fixture("products__batch_update_products__response.json");
        let results = read_batch_answer(200, &text, &[(0, 799, 5)]);
        assert_eq!(results, vec![MsgResult::Delivered]);
        let text = fixture("product-variations__batch_update_product_variations__response.json");
        let updated: Value = serde_json::from_str(&text).unwrap();
        let id = updated["update"][0]["id"].as_u64().unwrap();
        assert_eq!(
            read_batch_answer(200, &text, &[(0, id, 1)]),
            vec![MsgResult::Delivered]
        );
        // An id the answer does not mention is not assumed delivered.
        let missing = read_batch_answer(200, &text, &[(0, 999_999, 1)]);
        assert!(matches!(&missing[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable));
    }

    #[test]
    fn per_item_errors_fail_only_their_message() {
        let text = r#"{"update": [
            {"id": 10, "stock_quantity": 5},
            {"id": 11, "error": {"code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.", "data": {"status": 400}}},
            {"id": 12, "error": {"code": "db_error", "message": "Could not update", "data": {"status": 500}}}
        ]}"#;
        let results = read_batch_answer(200, text, &[(0, 10, 5), (1, 11, 1), (2, 12, 2)]);
        assert_eq!(results[0], MsgResult::Delivered);
        let MsgResult::Failed(f) = &results[1] else {
            panic!("expected failure");
        };
        assert_eq!((f.class, f.status), (RetryClass::Permanent, Some(400)));
        assert!(f.detail.contains("woocommerce_rest_product_invalid_id"));
        assert!(
            matches!(&results[2], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(500))
        );
        // An error entry for an id WooCommerce could not read comes back with id 0, in place.
        let text = r#"{"update": [{"id": 0, "error": {"code": "woocommerce_rest_invalid_id", "message": "Invalid ID.", "data": {"status": 404}}}]}"#;
        let results = read_batch_answer(200, text, &[(0, 77, 1)]);
        assert!(matches!(&results[0], MsgResult::Failed(f) if f.status == Some(404)));
        let results = read_batch_answer(200, "<!doctype html>", &[(0, 1, 1), (1, 2, 1)]);
        assert_eq!(results.len(), 2);
        assert!(matches!(&results[1], MsgResult::Failed(f) if f.class == RetryClass::Retryable));
    }

    #[test]
    fn reads_stock_from_the_real_product_and_variation() {
        // Both doc examples have manage_stock false and stock_quantity null.
        for name in [
            "products__retrieve_a_product__response.json",
            "product-variations__retrieve_a_product_variation__response.json",
        ] {
            let err = read_stock_answer(200, &fixture(name)).unwrap_err();
            assert!(
                err.detail.contains("manage_stock"),
                "{name}: {}",
                err.detail
            );
        }
        assert_eq!(
            read_stock_answer(
                200,
                r#"{"id": 1, "manage_stock": true, "stock_quantity": 12}"#
            ),
            Ok(12)
        );
        assert!(read_stock_answer(200, "nope").is_err());
    }
}
