//! The bulk path: a `JSON_LISTINGS_FEED` (Feeds API 2021-06-30, listings feed schema v2).
//!
//! 1. `createFeedDocument` with the content type → a document id and a presigned upload URL;
//! 2. `PUT` the feed to that URL (no SP-API token: the URL carries its own authorisation);
//! 3. `createFeed` with the document id → a feed id;
//! 4. `getFeed` every `feed_poll_ms` until `DONE`, `FATAL` or `CANCELLED`;
//! 5. `getFeedDocument` for the result document → a presigned URL (and `GZIP` when compressed);
//! 6. download the processing report and read its `issues`: an `ERROR` issue with a
//!    `messageId` fails that message permanently (message ids are batch positions + 1); a
//!    message without one is delivered.
//!
//! Each operation takes a token from its own bucket first, waiting for it if need be, all
//! within `feed_timeout_s`. What a failed step means for the messages:
//! - a refused or failed call before the feed exists: every message gets that failure;
//! - `CANCELLED`, or no end state before the deadline: retryable (nothing, or an unknown part,
//!   was applied; the values are "latest" and safe to send again);
//! - `FATAL`: messages with their own errors are permanent, the rest retryable;
//! - `DONE` but the report cannot be read: retryable, so a value is never taken as delivered
//!   on a guess.
//!
//! The lane's rate feedback is left empty for a feed: the feed operations' limits are not the
//! patch limit the lane enforces.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use crossdock_delivery::{Body, Failure, Message, MsgResult, Outcome, RateFeedback, http};
use serde::Deserialize;
use serde_json::{Value, json};

use super::publish::{AmazonPublisher, FeedOp, availability_patch};
use crate::util;

pub const FEEDS_VERSION: &str = "2021-06-30";
pub const FEED_TYPE: &str = "JSON_LISTINGS_FEED";
pub const CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// Largest processing report read (after decompression).
pub const REPORT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// One feed message: its id in the feed, its SKU and the quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeedEntry {
    pub(crate) message_id: u64,
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

/// The feed document (listings feed schema v2).
pub(crate) fn build_feed(
    seller_id: &str,
    product_type: &str,
    channel_code: &str,
    entries: &[FeedEntry],
) -> Value {
    let messages: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "messageId": e.message_id,
                "sku": e.sku,
                "operationType": "PATCH",
                "productType": product_type,
                "patches": [availability_patch(channel_code, e.quantity)],
            })
        })
        .collect();
    json!({
        "header": { "sellerId": seller_id, "version": "2.0", "issueLocale": "en_US" },
        "messages": messages,
    })
}

/// How the feed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedEnd {
    Done,
    Fatal,
}

/// Maps a processing report onto the feed's messages, in `message_ids` order.
pub(crate) fn read_report(report: &Value, message_ids: &[u64], end: FeedEnd) -> Vec<MsgResult> {
    let mut own: HashMap<u64, Vec<&Value>> = HashMap::new();
    let mut feed_level: Vec<&Value> = Vec::new();
    for issue in report
        .get("issues")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if issue.get("severity").and_then(Value::as_str) != Some("ERROR") {
            continue;
        }
        match issue.get("messageId").and_then(Value::as_u64) {
            Some(id) => own.entry(id).or_default().push(issue),
            None => feed_level.push(issue),
        }
    }
    let accepted = report
        .pointer("/summary/messagesAccepted")
        .and_then(Value::as_u64);
    let feed_detail = || {
        util::detail(Value::Array(feed_level.iter().map(|v| (*v).clone()).collect()).to_string())
    };
    message_ids
        .iter()
        .map(|id| {
            if let Some(issues) = own.get(id) {
                let list = Value::Array(issues.iter().map(|v| (*v).clone()).collect());
                return MsgResult::Failed(Failure::permanent(
                    None,
                    util::detail(format!("feed message {id} refused: {list}")),
                ));
            }
            match end {
                FeedEnd::Fatal => MsgResult::Failed(Failure::retryable(
                    None,
                    format!("feed ended FATAL; feed-level issues: {}", feed_detail()),
                )),
                // Errors about the feed as a whole and nothing accepted: the feed itself is
                // wrong (a formatting issue), which a resend will not fix.
                FeedEnd::Done if !feed_level.is_empty() && accepted.unwrap_or(0) == 0 => {
                    MsgResult::Failed(Failure::permanent(
                        None,
                        format!("feed refused as a whole: {}", feed_detail()),
                    ))
                }
                FeedEnd::Done => MsgResult::Delivered,
            }
        })
        .collect()
}

/// Reads a downloaded processing report, gunzipping it when Amazon says it is compressed.
pub(crate) fn decode_report(bytes: &[u8], compression: Option<&str>) -> Result<Value, String> {
    let text = match compression {
        None => bytes.to_vec(),
        Some(c) if c.eq_ignore_ascii_case("GZIP") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(REPORT_MAX_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("processing report does not gunzip: {e}"))?;
            if out.len() as u64 > REPORT_MAX_BYTES {
                return Err(format!(
                    "processing report is larger than {REPORT_MAX_BYTES} bytes"
                ));
            }
            out
        }
        Some(other) => return Err(format!("unknown compressionAlgorithm {other:?}")),
    };
    serde_json::from_slice(&text).map_err(|e| format!("processing report is not JSON: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedDocument {
    feed_document_id: String,
    url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedFeed {
    feed_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedState {
    processing_status: String,
    #[serde(default)]
    result_feed_document_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedDocument {
    url: String,
    #[serde(default)]
    compression_algorithm: Option<String>,
}

impl AmazonPublisher {
    pub(super) async fn send_feed(&self, batch: &[Message]) -> Outcome {
        let mut results: Vec<Option<MsgResult>> = vec![None; batch.len()];
        let mut positions = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let Body::Availability {
                item, available, ..
            } = &message.body
            else {
                results[i] = Some(util::unsupported_body(message, &self.channel));
                continue;
            };
            match self.sku(item) {
                Ok(sku) => {
                    positions.push(i);
                    entries.push(FeedEntry {
                        message_id: i as u64 + 1,
                        sku: sku.to_owned(),
                        quantity: *available,
                    });
                }
                Err(failure) => results[i] = Some(MsgResult::Failed(failure)),
            }
        }
        if !entries.is_empty() {
            let correlation = crate::util::correlation_header(batch);
            let deadline = Instant::now() + Duration::from_secs(self.config.feed_timeout_s);
            let answers = self
                .run_feed(&entries, correlation.as_deref(), deadline)
                .await;
            debug_assert_eq!(answers.len(), entries.len());
            for (i, result) in positions.into_iter().zip(answers) {
                results[i] = Some(result);
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

    async fn run_feed(
        &self,
        entries: &[FeedEntry],
        correlation: Option<&str>,
        deadline: Instant,
    ) -> Vec<MsgResult> {
        let all = |failure: Failure| vec![MsgResult::Failed(failure); entries.len()];
        let ids: Vec<u64> = entries.iter().map(|e| e.message_id).collect();
        match self.feed_steps(entries, correlation, deadline).await {
            Ok((report, end)) => read_report(&report, &ids, end),
            Err(failure) => all(failure),
        }
    }

    /// Steps 1–6; the report and how the feed ended, or the failure for every message.
    async fn feed_steps(
        &self,
        entries: &[FeedEntry],
        correlation: Option<&str>,
        deadline: Instant,
    ) -> Result<(Value, FeedEnd), Failure> {
        let document = build_feed(
            &self.config.seller_id,
            &self.config.product_type,
            &self.config.fulfillment_channel_code,
            entries,
        )
        .to_string();

        self.take(FeedOp::CreateFeedDocument, deadline).await?;
        let url = self.url(&["feeds", FEEDS_VERSION, "documents"], &[]);
        let created: CreatedDocument = self
            .call(
                reqwest::Method::POST,
                url,
                Some(&json!({ "contentType": CONTENT_TYPE })),
                correlation,
            )
            .await?
            .json("createFeedDocument")?;

        let upload = self
            .client
            .put(&created.url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(document)
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        if !upload.status().is_success() {
            let mut failure = util::status_failure(upload).await;
            failure.detail = format!("feed document upload: {}", failure.detail);
            return Err(failure);
        }

        self.take(FeedOp::CreateFeed, deadline).await?;
        let url = self.url(&["feeds", FEEDS_VERSION, "feeds"], &[]);
        let body = json!({
            "feedType": FEED_TYPE,
            "marketplaceIds": [self.config.marketplace_id],
            "inputFeedDocumentId": created.feed_document_id,
        });
        let feed: CreatedFeed = self
            .call(reqwest::Method::POST, url, Some(&body), correlation)
            .await?
            .json("createFeed")?;
        tracing::info!(feed_id = %feed.feed_id, messages = entries.len(), "SP-API listings feed created");

        let (end, result_document) = self
            .await_feed(&feed.feed_id, correlation, deadline)
            .await?;
        let Some(result_document) = result_document else {
            return Err(match end {
                FeedEnd::Done => Failure::retryable(
                    None,
                    format!("feed {} is DONE without a result document", feed.feed_id),
                ),
                FeedEnd::Fatal => Failure::retryable(
                    None,
                    format!(
                        "feed {} ended FATAL without a processing report",
                        feed.feed_id
                    ),
                ),
            });
        };

        self.take(FeedOp::GetFeedDocument, deadline).await?;
        let url = self.url(
            &["feeds", FEEDS_VERSION, "documents", &result_document],
            &[],
        );
        let located: FeedDocument = self
            .call(reqwest::Method::GET, url, None, correlation)
            .await?
            .json("getFeedDocument")?;
        let download = self
            .client
            .get(&located.url)
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        if !download.status().is_success() {
            let mut failure = util::status_failure(download).await;
            failure.detail = format!("processing report download: {}", failure.detail);
            // The feed was applied; only its report is missing. Retrying sends the same values.
            failure.class = crossdock_delivery::RetryClass::Retryable;
            return Err(failure);
        }
        let bytes = download
            .bytes()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        let report =
            decode_report(&bytes, located.compression_algorithm.as_deref()).map_err(|reason| {
                Failure::retryable(None, format!("feed {}: {reason}", feed.feed_id))
            })?;
        Ok((report, end))
    }

    /// Polls `getFeed` until an end state; the end and the result document id.
    async fn await_feed(
        &self,
        feed_id: &str,
        correlation: Option<&str>,
        deadline: Instant,
    ) -> Result<(FeedEnd, Option<String>), Failure> {
        let poll = Duration::from_millis(self.config.feed_poll_ms);
        // Bounded by the deadline; the count is a second bound in case the clock misbehaves.
        let polls_max = self.config.feed_timeout_s * 1000 / self.config.feed_poll_ms.max(1) + 2;
        for _ in 0..polls_max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(poll.min(deadline - now)).await;
            self.take(FeedOp::GetFeed, deadline).await?;
            let url = self.url(&["feeds", FEEDS_VERSION, "feeds", feed_id], &[]);
            let state: FeedState = self
                .call(reqwest::Method::GET, url, None, correlation)
                .await?
                .json("getFeed")?;
            match state.processing_status.as_str() {
                "DONE" => return Ok((FeedEnd::Done, state.result_feed_document_id)),
                "FATAL" => return Ok((FeedEnd::Fatal, state.result_feed_document_id)),
                "CANCELLED" => {
                    return Err(Failure::retryable(
                        None,
                        format!("feed {feed_id} was cancelled before processing"),
                    ));
                }
                "IN_QUEUE" | "IN_PROGRESS" => continue,
                other => {
                    return Err(Failure::retryable(
                        None,
                        format!("feed {feed_id} has an unknown processing status {other:?}"),
                    ));
                }
            }
        }
        Err(Failure::retryable(
            None,
            format!(
                "feed {feed_id} did not finish within {} s",
                self.config.feed_timeout_s
            ),
        ))
    }

    /// Takes one token for `op`, waiting for it, unless it would come after `deadline`.
    async fn take(&self, op: FeedOp, deadline: Instant) -> Result<(), Failure> {
        // Each wait is exactly what the bucket asks for, so a second pass finds the token; the
        // bound only guards against another feed taking it in between, over and over.
        for _ in 0..64 {
            let now = Instant::now();
            let wait = match self.lock_buckets().get(op).try_take(now, 1.0) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if now + wait > deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Err(Failure::retryable(
            None,
            format!("no {} token before the feed deadline", op.name()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;
    use std::io::Write;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../testdata/channels/amazon_spapi/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_feed_matches_amazons_patch_message_shape() {
        let feed = build_feed(
            "AXXXXXXXXXXXX",
            "LUGGAGE",
            "DEFAULT",
            &[FeedEntry {
                message_id: 4,
                sku: "My-SKU-D".into(),
                quantity: 10,
            }],
        );
        // Amazon's own example, message 4, is exactly this PATCH.
        let example: Value = serde_json::from_str(&fixture(
            "schemas__feeds__listings-feed-schema-v2.example.json",
        ))
        .unwrap();
        assert_eq!(feed["messages"][0], example["messages"][3]);
        assert_eq!(feed["header"]["sellerId"], "AXXXXXXXXXXXX");
        assert_eq!(feed["header"]["version"], "2.0");
    }

    #[test]
    fn the_real_report_fails_only_the_messages_with_errors() {
        let report: Value = serde_json::from_str(&fixture(
            "schemas__feeds__listings-feed-processing-report-schema-v2.example.json",
        ))
        .unwrap();
        let results = read_report(&report, &[1, 2, 3, 4, 5], FeedEnd::Done);
        assert_eq!(
            &results[..3],
            &[
                MsgResult::Delivered,
                MsgResult::Delivered,
                MsgResult::Delivered
            ]
        );
        for (r, needle) in results[3..]
            .iter()
            .zip(["batteries_required", "purchasable_offer"])
        {
            let MsgResult::Failed(f) = r else {
                panic!("expected failure, got {r:?}");
            };
            assert_eq!(f.class, RetryClass::Permanent);
            assert!(f.detail.contains(needle), "{}", f.detail);
        }
        // Message 4 has two errors; both are kept.
        let MsgResult::Failed(f) = &results[3] else {
            unreachable!()
        };
        assert!(f.detail.contains("supplier_declared_dg_hz_regulation"));
    }

    #[test]
    fn fatal_and_feed_level_errors() {
        let report = json!({
            "issues": [
                {"severity": "ERROR", "code": "4000", "message": "feed is not valid JSON"},
                {"messageId": 2, "severity": "WARNING", "message": "just a warning"}
            ],
            "summary": {"errors": 1, "messagesProcessed": 0, "messagesAccepted": 0}
        });
        let done = read_report(&report, &[1, 2], FeedEnd::Done);
        assert!(done.iter().all(|r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("4000"))));
        let fatal = read_report(&report, &[1, 2], FeedEnd::Fatal);
        assert!(
            fatal
                .iter()
                .all(|r| matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable))
        );
        // Feed-level errors with messages accepted: those without their own errors went through.
        let partial = json!({
            "issues": [{"severity": "ERROR", "message": "something about the feed"}],
            "summary": {"messagesAccepted": 2}
        });
        assert_eq!(
            read_report(&partial, &[1, 2], FeedEnd::Done),
            vec![MsgResult::Delivered; 2]
        );
    }

    #[test]
    fn reports_may_come_gzipped() {
        let raw = br#"{"issues": [], "summary": {"messagesAccepted": 1}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(raw).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(
            decode_report(&packed, Some("GZIP")).unwrap(),
            decode_report(raw, None).unwrap()
        );
        assert!(decode_report(raw, Some("GZIP")).is_err());
        assert!(decode_report(raw, Some("ZSTD")).is_err());
        assert!(decode_report(b"not json", None).is_err());
    }
}
