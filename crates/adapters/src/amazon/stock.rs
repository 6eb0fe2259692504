//! Reading back the quantities Amazon shows for the seller's listings (see [`crate::stock`]).
//!
//! What is read is what the publisher writes: the `fulfillment_availability` quantity of the
//! configured `fulfillment_channel_code` (`DEFAULT`, the seller-fulfilled channel), through the
//! Listings Items API 2021-08-01 `searchListingsItems`:
//!
//! `GET /listings/2021-08-01/items/{sellerId}?marketplaceIds={m}&includedData=fulfillmentAvailability&pageSize=20&sortBy=sku&sortOrder=ASC`
//!
//! with the LWA `x-amz-access-token` (the writes' token handling, refresh after a 403
//! included), following `pagination.nextToken` as `pageToken`. Each page first takes a token
//! from the `search_listings_limit` bucket (the usage plan: 5 per second, burst 5); a 429 is
//! retryable. A listing whose `fulfillmentAvailability` has no entry for the channel code is
//! not one the hub writes (an FBA-only offer) and is left out; an entry without `quantity`
//! reads 0.
//!
//! Not the FBA Inventory API: `getInventorySummaries` reports units in Amazon's fulfilment
//! centres, which Amazon sets and no write of the hub changes, so comparing it with what the
//! hub sent would compare two different stocks.
//!
//! Limit: `searchListingsItems` pages through at most 1,000 listings. When `numberOfResults`
//! says there are more than the pages listed, the read fails (permanent) rather than return a
//! picture in which the rest look missing; a catalogue that large needs the Reports API
//! (`GET_MERCHANT_LISTINGS_ALL_DATA`), which this reader does not use.
//!
//! SKU → item: the crosswalk's reverse lookup; with `sku_is_item`, a SKU the crosswalk does not
//! know stands for the item of the same id, unless that item is mapped to another SKU (the
//! same rule the writes follow). Unmapped ids are reported as SKUs.

use std::time::Instant;

use crossdock_delivery::{BoxFuture, Failure};
use serde_json::Value;

use super::publish::{AmazonPublisher, LISTINGS_VERSION, SpAnswer};
use crate::stock::{PullError, Shown, StockPull, StockReader};
use crate::util;

/// Listings per page: `searchListingsItems`' largest `pageSize`.
pub const SEARCH_PAGE_SIZE: usize = 20;

/// One page of a search: the levels of the configured channel, how many listings it held, the
/// total Amazon found, and the token of the next page.
#[derive(Debug, PartialEq, Eq)]
struct SearchPage {
    levels: Vec<(String, i64)>,
    listed: u64,
    number_of_results: Option<u64>,
    next: Option<String>,
}

impl AmazonPublisher {
    async fn read_listings(&self) -> Result<StockPull, PullError> {
        let mut shown = Shown::default();
        let mut page_token: Option<String> = None;
        let mut listed: u64 = 0;
        let mut found: Option<u64> = None;
        let page_size = SEARCH_PAGE_SIZE.to_string();
        loop {
            let n = shown.page(&self.channel, "searchListingsItems")?;
            let what = format!("searchListingsItems page {n}");
            self.take_search_token().await;
            let mut query = vec![
                ("marketplaceIds", self.config.marketplace_id.as_str()),
                ("includedData", "fulfillmentAvailability"),
                ("pageSize", page_size.as_str()),
                ("sortBy", "sku"),
                ("sortOrder", "ASC"),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.as_str()));
            }
            let url = self.url(
                &[
                    "listings",
                    LISTINGS_VERSION,
                    "items",
                    &self.config.seller_id,
                ],
                &query,
            );
            let page = match self.call(reqwest::Method::GET, url, None, None).await {
                Ok(answer) => read_search_page(&answer, &self.config.fulfillment_channel_code),
                Err(failure) => Err(failure),
            }
            .map_err(|f| PullError::from_failure(&self.channel, &what, f))?;
            listed += page.listed;
            found = page.number_of_results.or(found);
            for (sku, quantity) in page.levels {
                shown.level(&self.channel, sku, quantity)?;
            }
            match page.next {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        if let Some(found) = found
            && listed < found
        {
            return Err(PullError::permanent(
                &self.channel,
                "searchListingsItems",
                format!(
                    "Amazon found {found} listings but its pages listed {listed} \
                     (searchListingsItems pages through at most 1,000); the rest cannot be read \
                     this way"
                ),
            ));
        }
        Ok(shown.finish(|sku| self.items_of_sku(sku)))
    }

    /// The item a SKU stands for, by the rule the writes follow.
    fn items_of_sku(&self, sku: &str) -> Vec<String> {
        if let Some(item) = self.crosswalk.item(sku) {
            return vec![item.to_owned()];
        }
        if self.config.sku_is_item && self.crosswalk.external(sku).is_none() {
            return vec![sku.to_owned()];
        }
        Vec::new()
    }

    /// Waits for a `searchListingsItems` token. Each wait is what the bucket asks for; the
    /// bound only guards against other reads taking it in between, and past it the call goes
    /// anyway (Amazon's 429 is retryable).
    async fn take_search_token(&self) {
        for _ in 0..64 {
            let taken = self
                .search_bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_take(Instant::now(), 1.0);
            match taken {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

impl StockReader for AmazonPublisher {
    fn read_stock(&self) -> BoxFuture<'_, Result<StockPull, PullError>> {
        Box::pin(self.read_listings())
    }
}

/// Reads one `searchListingsItems` answer.
fn read_search_page(answer: &SpAnswer, channel_code: &str) -> Result<SearchPage, Failure> {
    let body: Value = answer.json("searchListingsItems")?;
    let unexpected = |what: String| {
        Failure::permanent(
            Some(answer.status),
            util::detail(format!("{what}: {}", answer.text)),
        )
    };
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| unexpected("answer has no items".into()))?;
    let mut levels = Vec::with_capacity(items.len());
    for item in items {
        let sku = item
            .get("sku")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unexpected("a listing has no sku".into()))?;
        let entry = item
            .get("fulfillmentAvailability")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| {
                e.get("fulfillmentChannelCode").and_then(Value::as_str) == Some(channel_code)
            });
        let Some(entry) = entry else {
            continue;
        };
        let quantity = match entry.get("quantity") {
            None | Some(Value::Null) => 0,
            Some(q) => q
                .as_i64()
                .ok_or_else(|| unexpected(format!("the quantity of {sku} is not an integer")))?,
        };
        levels.push((sku.to_owned(), quantity));
    }
    let next = body
        .pointer("/pagination/nextToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(SearchPage {
        levels,
        listed: items.len() as u64,
        number_of_results: body.get("numberOfResults").and_then(Value::as_u64),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;

    fn answer(status: u16, text: &str) -> SpAnswer {
        SpAnswer {
            status,
            rate_limit: None,
            retry_after: None,
            text: text.into(),
        }
    }

    #[test]
    fn reads_amazons_own_search_example() {
        let path = format!(
            "{}/../../testdata/channels/amazon_spapi/example__searchListingsItems__200__0.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let page = read_search_page(&answer(200, &text), "DEFAULT").unwrap();
        assert_eq!(page.levels, vec![("GM-ZDPI-9B4E".to_owned(), 100)]);
        assert_eq!(page.listed, 1);
        assert_eq!(page.number_of_results, Some(3));
        assert_eq!(
            page.next.as_deref(),
            Some("xsdflkj324lkjsdlkj3423klkjsdfkljlk2j34klj2l3k4jlksdjl234")
        );
        // Another channel code: the listing is not one the hub writes.
        let page = read_search_page(&answer(200, &text), "AMAZON_NA").unwrap();
        assert!(page.levels.is_empty());
    }

    #[test]
    fn a_missing_quantity_reads_zero_and_failures_are_classified() {
        let text = r#"{"numberOfResults": 1, "items": [{"sku": "A",
            "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT"}]}]}"#;
        let page = read_search_page(&answer(200, text), "DEFAULT").unwrap();
        assert_eq!(page.levels, vec![("A".to_owned(), 0)]);
        assert_eq!(page.next, None);
        let quota = r#"{"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota", "details": ""}]}"#;
        let f = read_search_page(&answer(429, quota), "DEFAULT").unwrap_err();
        assert_eq!((f.class, f.status), (RetryClass::Retryable, Some(429)));
        assert!(
            f.detail.starts_with("searchListingsItems: "),
            "{}",
            f.detail
        );
        let f = read_search_page(&answer(400, "{}"), "DEFAULT").unwrap_err();
        assert_eq!(f.class, RetryClass::Permanent);
        let f = read_search_page(&answer(200, r#"{"numberOfResults": 0}"#), "DEFAULT").unwrap_err();
        assert_eq!(f.class, RetryClass::Permanent);
    }
}
