//! Listings Items API 2021-08-01: `patchListingsItem`, `getListingsItem` and
//! `searchListingsItems`.
//!
//! - `PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=ATVPDKIKX0DER` with
//!   `{"productType":"PRODUCT","patches":[{"op":"replace","path":"/attributes/fulfillment_availability","value":[{"fulfillment_channel_code":"DEFAULT","quantity":5}]}]}`
//!   answers 200 `{"sku","status":"ACCEPTED","submissionId","issues":[]}` and sets the SKU's
//!   quantity (`replace` and `merge` of the `DEFAULT` channel; other patches are accepted and
//!   not kept). `mode=VALIDATION_PREVIEW` answers `"status":"VALID"` and applies nothing. A
//!   body that cannot be read is 400 `InvalidInput`; a permanent SKU is 400 `BAD_REQUEST`; with
//!   `strict_items` an unknown SKU is 404 `NOT_FOUND`. SP-API has no idempotency: a body
//!   identical to the previous one for the same SKU is applied again and only counted as a
//!   duplicate.
//! - `GET /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=..&includedData=..` answers
//!   `{"sku", "summaries"?, "fulfillmentAvailability"?, "issues"?}` as `includedData` asks
//!   (default `summaries`), 404 `NOT_FOUND` for an unknown or permanent SKU.
//! - `GET /listings/2021-08-01/items/{sellerId}?marketplaceIds=..&includedData=..&pageSize=..&pageToken=..`
//!   answers `{"numberOfResults", "pagination": {"nextToken"}?, "items": [..]}`, each item as
//!   `getListingsItem` shows it. Listings come ordered by SKU, ascending (whatever `sortBy`
//!   says), at most `pageSize` (1 to 20, default 10, else 400 `InvalidInput`) and at most
//!   [`super::AmazonConfig::search_page_size_max`] per page; `pagination.nextToken` is there
//!   while more follow, and is passed back as `pageToken` (a token the simulator did not hand
//!   out is 400 `InvalidInput`). Paging stops after
//!   [`super::AmazonConfig::search_results_max`] listings (1,000, as Amazon documents), while
//!   `numberOfResults` counts every one. Permanent SKUs are not listed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crossdock_model::Timestamp;
use serde_json::{Value, json};

use super::{Market, Operation, sp_error, unauthorized};
use crate::endpoint::{Arrival, json};

/// The previous PATCH body per SKU (as a hash), to count repeats.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    last_patch: HashMap<String, u64>,
}

fn body_hash(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

fn invalid_input(message: &str) -> Response {
    sp_error(StatusCode::BAD_REQUEST, "InvalidInput", message, "")
}

fn not_found(sku: &str, marketplace: &str) -> Response {
    sp_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("SKU '{sku}' not found in marketplace {marketplace}"),
        "",
    )
}

/// The marketplace of the call: `marketplaceIds` must name one the seller sells in.
fn marketplace(market: &Market, query: &HashMap<String, String>) -> Result<String, Response> {
    let Some(raw) = query.get("marketplaceIds") else {
        return Err(invalid_input(
            "Missing required 'marketplaceIds' parameter.",
        ));
    };
    let ids: Vec<&str> = raw.split(',').map(str::trim).collect();
    if ids.len() != 1 {
        return Err(invalid_input("Exactly one marketplace id is supported."));
    }
    if !market.config.marketplace_ids.iter().any(|m| m == ids[0]) {
        return Err(invalid_input(&format!(
            "Invalid marketplace identifier '{}'.",
            ids[0]
        )));
    }
    Ok(ids[0].to_owned())
}

/// The `DEFAULT` channel quantity a PATCH sets, if any (the last one wins).
fn patched_quantity(patches: &[Value]) -> Result<Option<i64>, &'static str> {
    let mut quantity = None;
    for patch in patches {
        let op = patch.get("op").and_then(Value::as_str);
        let path = patch.get("path").and_then(Value::as_str);
        let (Some(op), Some(path)) = (op, path) else {
            return Err("Each patch needs 'op' and 'path'.");
        };
        if !matches!(op, "add" | "replace" | "merge" | "delete") {
            return Err("Patch 'op' must be add, replace, merge or delete.");
        }
        if path != "/attributes/fulfillment_availability" || op == "delete" {
            continue;
        }
        let values = patch
            .get("value")
            .and_then(Value::as_array)
            .ok_or("fulfillment_availability needs a 'value' array.")?;
        for value in values {
            if value
                .get("fulfillment_channel_code")
                .and_then(Value::as_str)
                == Some("DEFAULT")
            {
                quantity = Some(
                    value
                        .get("quantity")
                        .and_then(Value::as_i64)
                        .filter(|q| *q >= 0)
                        .ok_or(
                            "fulfillment_availability quantity must be an integer of 0 or more.",
                        )?,
                );
            }
        }
    }
    Ok(quantity)
}

pub(crate) async fn patch_listings_item(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    Path((seller_id, sku)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = &market.endpoint;
    endpoint.touch(&arrival, vec![sku.clone()]);
    if let Err(refusal) = market.admit(&headers, Operation::PatchListingsItem, arrival.at) {
        return refusal;
    }
    if seller_id != market.config.seller_id {
        endpoint.stats.auth_failed();
        return unauthorized("The seller id in the path is not the seller of the access token.");
    }
    let marketplace = match marketplace(&market, &query) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let patches = parsed
        .as_ref()
        .filter(|b| b.get("productType").and_then(Value::as_str).is_some())
        .and_then(|b| b.get("patches"))
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty());
    let Some(patches) = patches else {
        return invalid_input(
            "Request has missing or invalid parameters and cannot be parsed: productType and a non-empty patches array are required.",
        );
    };
    let quantity = match patched_quantity(patches) {
        Ok(q) => q,
        Err(message) => return invalid_input(message),
    };

    if endpoint.faults().is_permanent(&sku) {
        endpoint.stats.rejected(1);
        return sp_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Invalid input",
            &format!("The listing for SKU '{sku}' cannot be updated (refused by the simulator)."),
        );
    }
    let mut items = endpoint.items();
    if market.config.strict_items && !items.contains(&sku) {
        endpoint.stats.rejected(1);
        return not_found(&sku, &marketplace);
    }
    let preview = query.get("mode").map(String::as_str) == Some("VALIDATION_PREVIEW");
    if !preview {
        let hash = body_hash(&body);
        let mut listings = market.listings.lock().unwrap_or_else(|e| e.into_inner());
        if listings.last_patch.insert(sku.clone(), hash) == Some(hash) {
            endpoint.stats.duplicate();
        }
        drop(listings);
        if let Some(q) = quantity {
            let write = items.apply(&sku, q);
            endpoint.stats.wrote(write);
        }
    }
    drop(items);
    endpoint.stats.accepted();
    json(
        StatusCode::OK,
        json!({
            "sku": sku,
            "status": if preview { "VALID" } else { "ACCEPTED" },
            "submissionId": market.ids.uuid(),
            "issues": [],
        }),
    )
}

pub(crate) async fn get_listings_item(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    Path((seller_id, sku)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let endpoint = &market.endpoint;
    endpoint.touch(&arrival, vec![sku.clone()]);
    if let Err(refusal) = market.admit(&headers, Operation::GetListingsItem, arrival.at) {
        return refusal;
    }
    if seller_id != market.config.seller_id {
        endpoint.stats.auth_failed();
        return unauthorized("The seller id in the path is not the seller of the access token.");
    }
    let marketplace = match marketplace(&market, &query) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    let quantity = endpoint.items().quantity(&sku);
    let Some(quantity) = quantity.filter(|_| !endpoint.faults().is_permanent(&sku)) else {
        return not_found(&sku, &marketplace);
    };
    let answer = listing_json(&sku, quantity, &marketplace, included_data(&query));
    endpoint.stats.accepted();
    json(StatusCode::OK, answer)
}

/// `includedData`, default `summaries`.
fn included_data(query: &HashMap<String, String>) -> &str {
    query
        .get("includedData")
        .map(String::as_str)
        .unwrap_or("summaries")
}

/// A listing as `getListingsItem` and `searchListingsItems` show it, with the data sets
/// `included` names.
fn listing_json(sku: &str, quantity: i64, marketplace: &str, included: &str) -> Value {
    let mut answer = json!({"sku": sku});
    for part in included.split(',').map(str::trim) {
        match part {
            "summaries" => {
                let now = Timestamp::now().to_rfc3339();
                answer["summaries"] = json!([{
                    "marketplaceId": marketplace,
                    "productType": "PRODUCT",
                    "conditionType": "new_new",
                    "status": ["BUYABLE", "DISCOVERABLE"],
                    "itemName": format!("Simulated listing {sku}"),
                    "createdDate": now,
                    "lastUpdatedDate": now,
                }]);
            }
            "fulfillmentAvailability" => {
                answer["fulfillmentAvailability"] =
                    json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": quantity}]);
            }
            "issues" => answer["issues"] = json!([]),
            _ => {}
        }
    }
    answer
}

/// `searchListingsItems`' largest and default `pageSize`.
const SEARCH_PAGE_SIZE_MAX: usize = 20;
const SEARCH_PAGE_SIZE_DEFAULT: usize = 10;

/// Where a search page starts: how many listings earlier pages listed, and the last SKU.
#[derive(Debug, PartialEq, Eq)]
struct SearchToken {
    listed: usize,
    after: String,
}

impl SearchToken {
    fn encode(&self) -> String {
        BASE64.encode(format!("{}:{}", self.listed, self.after))
    }

    fn decode(token: &str) -> Option<SearchToken> {
        let text = String::from_utf8(BASE64.decode(token.trim()).ok()?).ok()?;
        let (listed, after) = text.split_once(':')?;
        Some(SearchToken {
            listed: listed.parse().ok()?,
            after: after.to_owned(),
        })
    }
}

pub(crate) async fn search_listings_items(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    Path(seller_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let endpoint = &market.endpoint;
    if let Err(refusal) = market.admit(&headers, Operation::SearchListingsItems, arrival.at) {
        return refusal;
    }
    if seller_id != market.config.seller_id {
        endpoint.stats.auth_failed();
        return unauthorized("The seller id in the path is not the seller of the access token.");
    }
    let marketplace = match marketplace(&market, &query) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    let page_size = match query.get("pageSize").map(|raw| raw.trim().parse::<usize>()) {
        None => SEARCH_PAGE_SIZE_DEFAULT,
        Some(Ok(n)) if (1..=SEARCH_PAGE_SIZE_MAX).contains(&n) => n,
        Some(_) => {
            return invalid_input(&format!(
                "pageSize must be an integer from 1 to {SEARCH_PAGE_SIZE_MAX}."
            ));
        }
    };
    let page_size = page_size.min(market.config.search_page_size_max);
    let start = match query.get("pageToken").map(|t| SearchToken::decode(t)) {
        None => None,
        Some(Some(token)) => Some(token),
        Some(None) => return invalid_input("Invalid pageToken."),
    };

    let listings: Vec<(String, i64)> = endpoint
        .items()
        .quantities()
        .into_iter()
        .filter(|(sku, _)| !endpoint.faults().is_permanent(sku))
        .collect();
    let (listed_before, from) = match &start {
        None => (0, 0),
        Some(token) => (
            token.listed,
            listings.partition_point(|(sku, _)| sku.as_str() <= token.after.as_str()),
        ),
    };
    let cap = market.config.search_results_max;
    let take = page_size.min(cap.saturating_sub(listed_before));
    let page = &listings[from..(from + take).min(listings.len())];
    let listed = listed_before + page.len();
    let more = from + page.len() < listings.len() && listed < cap;
    let included = included_data(&query);
    let items: Vec<Value> = page
        .iter()
        .map(|(sku, quantity)| listing_json(sku, *quantity, &marketplace, included))
        .collect();
    let mut answer = json!({"numberOfResults": listings.len(), "items": items});
    if let (true, Some((last, _))) = (more, page.last()) {
        let token = SearchToken {
            listed,
            after: last.clone(),
        };
        answer["pagination"] = json!({"nextToken": token.encode()});
    }
    endpoint.stats.accepted();
    json(StatusCode::OK, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_tokens_round_trip_and_refuse_what_was_not_handed_out() {
        let token = SearchToken {
            listed: 40,
            after: "SKU:1/A".into(),
        };
        assert_eq!(SearchToken::decode(&token.encode()), Some(token));
        assert_eq!(SearchToken::decode("not a token"), None);
        assert_eq!(SearchToken::decode(&BASE64.encode("x:SKU")), None);
    }

    #[test]
    fn reads_the_default_channel_quantity_from_patches() {
        let patches = json!([
            {"op": "replace", "path": "/attributes/item_name", "value": [{"value": "x"}]},
            {"op": "replace", "path": "/attributes/fulfillment_availability",
             "value": [{"fulfillment_channel_code": "AMAZON_NA"},
                       {"fulfillment_channel_code": "DEFAULT", "quantity": 5}]}
        ]);
        assert_eq!(patched_quantity(patches.as_array().unwrap()), Ok(Some(5)));
        let none = json!([{"op": "delete", "path": "/attributes/fulfillment_availability"}]);
        assert_eq!(patched_quantity(none.as_array().unwrap()), Ok(None));
        let negative = json!([{"op": "replace", "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": -1}]}]);
        assert!(patched_quantity(negative.as_array().unwrap()).is_err());
        let no_op = json!([{"path": "/attributes/fulfillment_availability"}]);
        assert!(patched_quantity(no_op.as_array().unwrap()).is_err());
    }
}
