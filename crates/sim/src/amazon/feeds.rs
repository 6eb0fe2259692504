//! Feeds API 2021-06-30 with `JSON_LISTINGS_FEED`.
//!
//! The flow, as SP-API runs it:
//! 1. `POST /feeds/2021-06-30/documents` `{"contentType":"application/json; charset=UTF-8"}` →
//!    201 `{"feedDocumentId","url"}`, the URL a presigned upload URL (`<sim>/upload/<id>`);
//! 2. `PUT <url>` with the feed (no SP-API token, as for S3) → 200;
//! 3. `POST /feeds/2021-06-30/feeds` `{"feedType":"JSON_LISTINGS_FEED","marketplaceIds":[..],
//!    "inputFeedDocumentId"}` → 202 `{"feedId"}`;
//! 4. the feed is processed after [`super::AmazonConfig::feed_processing_delay`] (`IN_QUEUE`
//!    until then): every message with `operationType` `PATCH`, `UPDATE` or `PARTIAL_UPDATE`
//!    that carries a `DEFAULT` `fulfillment_availability` quantity sets it; `DELETE` is accepted
//!    and applies nothing; a message for a permanent SKU, or one that cannot be read, is an
//!    `ERROR` issue and applies nothing;
//! 5. `GET /feeds/2021-06-30/feeds/{feedId}` → `{"feedId","feedType","marketplaceIds",
//!    "createdTime","processingStatus","processingStartTime","processingEndTime",
//!    "resultFeedDocumentId"}`;
//! 6. `GET /feeds/2021-06-30/documents/{id}` → `{"feedDocumentId","url"}` (`<sim>/download/<id>`),
//!    whose content is the processing report (listings-feed-processing-report-schema-v2:
//!    `header`, `issues` per `messageId`, `summary`).
//!
//! A document that is not a listings feed (not JSON, `header.version` not `"2.0"`, no
//! `messages` array, more than `feed_messages_max` messages) makes the feed `FATAL`, with a
//! report holding one issue that says why.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crossdock_model::Timestamp;
use serde_json::{Value, json};

use super::{Market, Operation, sp_error};
use crate::endpoint::{Arrival, json};

/// Most feed documents (uploads and reports) the simulator keeps.
pub const FEED_DOCUMENTS_MAX: usize = 10_000;

const LISTINGS_FEED: &str = "JSON_LISTINGS_FEED";

#[derive(Debug, Default)]
pub(crate) struct FeedBook {
    documents: HashMap<String, Document>,
    feeds: HashMap<String, Feed>,
}

#[derive(Debug)]
struct Document {
    content_type: String,
    content: Option<Bytes>,
}

#[derive(Debug, Clone)]
pub(crate) struct Feed {
    feed_type: String,
    marketplace_ids: Vec<String>,
    created_time: String,
    input_document_id: String,
    pub status: FeedStatus,
    processing_start_time: Option<String>,
    processing_end_time: Option<String>,
    result_document_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedStatus {
    InQueue,
    Done,
    Fatal,
}

impl FeedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::InQueue => "IN_QUEUE",
            FeedStatus::Done => "DONE",
            FeedStatus::Fatal => "FATAL",
        }
    }
}

impl FeedBook {
    pub fn feed(&self, id: &str) -> Option<&Feed> {
        self.feeds.get(id)
    }
}

fn invalid_input(message: &str) -> Response {
    sp_error(StatusCode::BAD_REQUEST, "InvalidInput", message, "")
}

fn not_found(what: &str) -> Response {
    sp_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("The requested {what} was not found."),
        "",
    )
}

pub(crate) async fn create_feed_document(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = market.admit(&headers, Operation::CreateFeedDocument, arrival.at) {
        return refusal;
    }
    let content_type = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b.get("contentType")?.as_str().map(str::to_owned));
    let Some(content_type) = content_type else {
        return invalid_input("'contentType' is required.");
    };
    let id = market.ids.uuid();
    {
        let mut book = market.feeds();
        if book.documents.len() >= FEED_DOCUMENTS_MAX {
            return invalid_input(&format!(
                "The simulator keeps at most {FEED_DOCUMENTS_MAX} feed documents."
            ));
        }
        book.documents.insert(
            id.clone(),
            Document {
                content_type,
                content: None,
            },
        );
    }
    market.endpoint.stats.accepted();
    json(
        StatusCode::CREATED,
        json!({"feedDocumentId": id, "url": format!("{}/upload/{id}", market.url)}),
    )
}

/// The presigned upload URL: stores the document's content.
pub(crate) async fn upload(
    State(market): State<Arc<Market>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut book = market.feeds();
    let Some(document) = book.documents.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "NoSuchUpload").into_response();
    };
    document.content = Some(body);
    drop(book);
    market.endpoint.stats.accepted();
    StatusCode::OK.into_response()
}

/// The presigned download URL: a document's content.
pub(crate) async fn download(
    State(market): State<Arc<Market>>,
    Path(id): Path<String>,
) -> Response {
    let book = market.feeds();
    let Some((content_type, content)) = book
        .documents
        .get(&id)
        .and_then(|d| Some((d.content_type.clone(), d.content.clone()?)))
    else {
        return (StatusCode::NOT_FOUND, "NoSuchKey").into_response();
    };
    drop(book);
    market.endpoint.stats.accepted();
    let mut response = content.into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

pub(crate) async fn get_feed_document(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = market.admit(&headers, Operation::GetFeedDocument, arrival.at) {
        return refusal;
    }
    if !market.feeds().documents.contains_key(&id) {
        return not_found("feed document");
    }
    market.endpoint.stats.accepted();
    json(
        StatusCode::OK,
        json!({"feedDocumentId": id, "url": format!("{}/download/{id}", market.url)}),
    )
}

pub(crate) async fn create_feed(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = market.admit(&headers, Operation::CreateFeed, arrival.at) {
        return refusal;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_input("The body is not a CreateFeedSpecification.");
    };
    let feed_type = request.get("feedType").and_then(Value::as_str);
    let document_id = request.get("inputFeedDocumentId").and_then(Value::as_str);
    let marketplace_ids: Option<Vec<String>> = request
        .get("marketplaceIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        });
    let (Some(feed_type), Some(document_id), Some(marketplace_ids)) =
        (feed_type, document_id, marketplace_ids)
    else {
        return invalid_input(
            "'feedType', 'marketplaceIds' and 'inputFeedDocumentId' are required.",
        );
    };
    if feed_type != LISTINGS_FEED {
        return invalid_input(&format!(
            "Feed type '{feed_type}' is not supported by the simulator (only {LISTINGS_FEED})."
        ));
    }
    if marketplace_ids.is_empty()
        || !marketplace_ids
            .iter()
            .all(|m| market.config.marketplace_ids.contains(m))
    {
        return invalid_input("Invalid marketplace identifier.");
    }
    let content = market
        .feeds()
        .documents
        .get(document_id)
        .and_then(|d| d.content.clone());
    let Some(content) = content else {
        return invalid_input(&format!(
            "Feed document '{document_id}' does not exist or has no uploaded content."
        ));
    };
    // The SKUs the feed names, for the request log.
    market.endpoint.touch(&arrival, feed_skus(&content));

    let feed_id = market.ids.number();
    market.feeds().feeds.insert(
        feed_id.clone(),
        Feed {
            feed_type: feed_type.to_owned(),
            marketplace_ids,
            created_time: Timestamp::now().to_rfc3339(),
            input_document_id: document_id.to_owned(),
            status: FeedStatus::InQueue,
            processing_start_time: None,
            processing_end_time: None,
            result_document_id: None,
        },
    );
    let delay = market.config.feed_processing_delay;
    if delay.is_zero() {
        process(&market, &feed_id);
    } else {
        let market = market.clone();
        let feed_id = feed_id.clone();
        tokio::spawn(async move {
            if market.endpoint.pause(delay).await {
                process(&market, &feed_id);
            }
        });
    }
    market.endpoint.stats.accepted();
    json(StatusCode::ACCEPTED, json!({"feedId": feed_id}))
}

pub(crate) async fn get_feed(
    State(market): State<Arc<Market>>,
    Extension(arrival): Extension<Arrival>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = market.admit(&headers, Operation::GetFeed, arrival.at) {
        return refusal;
    }
    let Some(feed) = market.feeds().feed(&id).cloned() else {
        return not_found("feed");
    };
    let mut answer = json!({
        "feedId": id,
        "feedType": feed.feed_type,
        "marketplaceIds": feed.marketplace_ids,
        "createdTime": feed.created_time,
        "processingStatus": feed.status.as_str(),
    });
    if let Some(start) = feed.processing_start_time {
        answer["processingStartTime"] = json!(start);
    }
    if let Some(end) = feed.processing_end_time {
        answer["processingEndTime"] = json!(end);
    }
    if let Some(result) = feed.result_document_id {
        answer["resultFeedDocumentId"] = json!(result);
    }
    market.endpoint.stats.accepted();
    json(StatusCode::OK, answer)
}

fn feed_skus(content: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(content)
        .ok()
        .and_then(|feed| {
            Some(
                feed.get("messages")?
                    .as_array()?
                    .iter()
                    .filter_map(|m| m.get("sku")?.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// One issue of the processing report.
fn issue(message_id: Option<u64>, sku: Option<&str>, code: &str, message: String) -> Value {
    let mut issue = json!({"code": code, "severity": "ERROR", "message": message});
    if let Some(id) = message_id {
        issue["messageId"] = json!(id);
    }
    if let Some(sku) = sku {
        issue["sku"] = json!(sku);
    }
    issue
}

/// One feed message, as far as the simulator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedMessage {
    message_id: u64,
    sku: String,
    /// The `DEFAULT` channel quantity the message sets, if any.
    quantity: Option<i64>,
}

/// Why a message cannot be read, for its issue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unreadable {
    message_id: Option<u64>,
    why: String,
}

fn read_message(message: &Value) -> Result<FeedMessage, Unreadable> {
    let message_id = message
        .get("messageId")
        .and_then(Value::as_u64)
        .filter(|id| *id >= 1);
    let Some(message_id) = message_id else {
        return Err(Unreadable {
            message_id: None,
            why: "Each message needs a 'messageId' of 1 or more.".into(),
        });
    };
    let unreadable = |why: String| Unreadable {
        message_id: Some(message_id),
        why,
    };
    let Some(sku) = message
        .get("sku")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(unreadable("The message has no 'sku'.".into()));
    };
    let operation = message
        .get("operationType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let quantity = match operation {
        "DELETE" => None,
        "UPDATE" | "PARTIAL_UPDATE" => {
            default_quantity(message.pointer("/attributes/fulfillment_availability"))
                .map_err(unreadable)?
        }
        "PATCH" => {
            let patches = message
                .get("patches")
                .and_then(Value::as_array)
                .ok_or_else(|| unreadable("A PATCH message needs 'patches'.".into()))?;
            let mut quantity = None;
            for patch in patches {
                let op = patch.get("op").and_then(Value::as_str);
                if patch.get("path").and_then(Value::as_str)
                    == Some("/attributes/fulfillment_availability")
                    && matches!(op, Some("add" | "replace" | "merge"))
                {
                    quantity = default_quantity(patch.get("value"))
                        .map_err(unreadable)?
                        .or(quantity);
                }
            }
            quantity
        }
        other => {
            return Err(unreadable(format!(
                "'{other}' is not an operationType (UPDATE, PARTIAL_UPDATE, PATCH, DELETE)."
            )));
        }
    };
    Ok(FeedMessage {
        message_id,
        sku: sku.to_owned(),
        quantity,
    })
}

/// The `DEFAULT` channel quantity in a `fulfillment_availability` array.
fn default_quantity(values: Option<&Value>) -> Result<Option<i64>, String> {
    let Some(values) = values else {
        return Ok(None);
    };
    let values = values
        .as_array()
        .ok_or("fulfillment_availability must be an array.")?;
    let mut quantity = None;
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
                    .ok_or("The DEFAULT quantity must be an integer of 0 or more.")?,
            );
        }
    }
    Ok(quantity)
}

/// Processes a queued feed: applies its messages and stores its processing report.
fn process(market: &Market, feed_id: &str) {
    let started = Timestamp::now().to_rfc3339();
    let content = {
        let book = market.feeds();
        let Some(feed) = book.feed(feed_id) else {
            return;
        };
        book.documents
            .get(&feed.input_document_id)
            .and_then(|d| d.content.clone())
            .unwrap_or_default()
    };
    let (status, report) = match run_feed(market, feed_id, &content) {
        Ok(report) => (FeedStatus::Done, report),
        Err(why) => (
            FeedStatus::Fatal,
            json!({
                "header": {"sellerId": market.config.seller_id, "version": "2.0", "feedId": feed_id},
                "issues": [issue(None, None, "FATAL", why)],
                "summary": {"errors": 1, "warnings": 0, "messagesProcessed": 0,
                            "messagesAccepted": 0, "messagesInvalid": 0},
            }),
        ),
    };
    let report_id = market.ids.uuid();
    let mut book = market.feeds();
    book.documents.insert(
        report_id.clone(),
        Document {
            content_type: "application/json; charset=UTF-8".into(),
            content: Some(Bytes::from(report.to_string())),
        },
    );
    if let Some(feed) = book.feeds.get_mut(feed_id) {
        feed.status = status;
        feed.processing_start_time = Some(started);
        feed.processing_end_time = Some(Timestamp::now().to_rfc3339());
        feed.result_document_id = Some(report_id);
    }
}

/// Applies a listings feed; `Err` says why the whole feed is fatal.
fn run_feed(market: &Market, feed_id: &str, content: &[u8]) -> Result<Value, String> {
    let feed: Value = serde_json::from_slice(content)
        .map_err(|e| format!("The feed document is not valid JSON ({e})."))?;
    if feed.pointer("/header/version").and_then(Value::as_str) != Some("2.0") {
        return Err("The feed header must have \"version\": \"2.0\".".into());
    }
    let messages = feed
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("The feed has no 'messages' array.")?;
    let max = market.config.feed_messages_max;
    if messages.len() > max {
        return Err(format!(
            "The feed has {} messages; at most {max} are accepted.",
            messages.len()
        ));
    }

    let endpoint = &market.endpoint;
    let mut issues = Vec::new();
    let mut accepted = 0u64;
    let mut items = endpoint.items();
    for message in messages {
        let read = match read_message(message) {
            Ok(read) => read,
            Err(unreadable) => {
                issues.push(issue(unreadable.message_id, None, "100", unreadable.why));
                continue;
            }
        };
        let FeedMessage {
            message_id,
            sku,
            quantity,
        } = read;
        let creates = message.get("operationType").and_then(Value::as_str) == Some("UPDATE");
        if endpoint.faults().is_permanent(&sku) {
            endpoint.stats.rejected(1);
            issues.push(issue(
                Some(message_id),
                Some(&sku),
                "90000900",
                format!(
                    "The listing for SKU '{sku}' cannot be updated (refused by the simulator)."
                ),
            ));
        } else if market.config.strict_items && !creates && !items.contains(&sku) {
            endpoint.stats.rejected(1);
            issues.push(issue(
                Some(message_id),
                Some(&sku),
                "4000001",
                format!("SKU '{sku}' does not exist; use UPDATE to create it."),
            ));
        } else {
            accepted += 1;
            if let Some(q) = quantity {
                let write = items.apply(&sku, q);
                endpoint.stats.wrote(write);
            }
        }
    }
    let processed = messages.len() as u64;
    Ok(json!({
        "header": {"sellerId": market.config.seller_id, "version": "2.0", "feedId": feed_id},
        "issues": issues,
        "summary": {
            "errors": issues.len(),
            "warnings": 0,
            "messagesProcessed": processed,
            "messagesAccepted": accepted,
            "messagesInvalid": processed - accepted,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind_of_message() {
        // Amazon's own example feed, from testdata/channels (see its MANIFEST.tsv).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/channels/amazon_spapi/schemas__feeds__listings-feed-schema-v2.example.json"
        );
        let text = std::fs::read_to_string(path).expect("the example feed is in testdata/channels");
        let example: Value = serde_json::from_str(&text).expect("the example feed is JSON");
        let read: Vec<_> = example["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(read_message)
            .collect();
        let message = |message_id, sku: &str, quantity| {
            Ok(FeedMessage {
                message_id,
                sku: sku.into(),
                quantity,
            })
        };
        assert_eq!(read[0], message(1, "My-SKU-A", None)); // DELETE
        assert_eq!(read[1], message(2, "My-SKU-B", Some(10))); // PARTIAL_UPDATE, DEFAULT
        assert_eq!(read[2], message(3, "My-SKU-C", None)); // UPDATE, AMAZON_NA only
        assert_eq!(read[3], message(4, "My-SKU-D", Some(10))); // PATCH replace
        assert_eq!(read[4], message(5, "My-SKU-E", Some(10))); // PATCH merge
        assert!(read_message(&json!({"sku": "X", "operationType": "PATCH"})).is_err());
        assert!(
            read_message(&json!({"messageId": 1, "sku": "X", "operationType": "NUKE"})).is_err()
        );
    }
}
