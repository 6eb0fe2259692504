//! Reading back the `available` quantities Shopify shows at the configured location (see
//! [`crate::stock`]).
//!
//! Faithful to the GraphQL Admin API (the version in the config): one query per page,
//! `location(id:) { inventoryLevels(first: 250, after: $cursor) { nodes { item { id }
//! quantities(names: ["available"]) { name quantity } } pageInfo { hasNextPage endCursor } } }`,
//! following `endCursor` while `hasNextPage`. Each answer's `extensions.cost` says what the page
//! cost and what is left in the bucket; when the next page's requested cost is not there yet,
//! the reader waits for it (at most [`BUDGET_WAIT_MAX`]) instead of being throttled.
//!
//! What fails the read: top-level `THROTTLED` (429), internal or unavailable errors, HTTP 429
//! and 5xx are retryable; 401/403, any other top-level error (`ACCESS_DENIED`, a bad cursor), a
//! location Shopify does not know, and answers the reader cannot take are permanent.
//!
//! Inventory item ids come back as gids; the crosswalk may hold either `N` or
//! `gid://shopify/InventoryItem/N`, and both match. Unmapped ids are reported as gids.

use std::time::Duration;

use crossdock_delivery::{BoxFuture, Failure};
use serde_json::{Value, json};

use super::publish::{
    Answer, GraphqlResponse, INVENTORY_ITEM_GID, ShopifyPublisher, feedback, gid, top_level_failure,
};
use crate::stock::{PullError, Shown, StockPull, StockReader};
use crate::util;

/// Levels per page: Shopify's largest `first` on a connection.
pub const LEVELS_PAGE: usize = 250;

/// Longest pause before a page while the cost bucket refills. A longer wait (a tiny bucket, a
/// slow restore rate) is not waited: the page is asked for, and a throttled answer fails the
/// read as retryable.
pub const BUDGET_WAIT_MAX: Duration = Duration::from_secs(30);

const LEVELS_QUERY: &str = "query CrossdockReadLevels($locationId: ID!, $cursor: String) {
  location(id: $locationId) {
    inventoryLevels(first: 250, after: $cursor) {
      nodes {
        item { id }
        quantities(names: [\"available\"]) { name quantity }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

/// One page of levels: `(inventory item gid, available)`, and the cursor of the next page.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    levels: Vec<(String, i64)>,
    next: Option<String>,
}

impl ShopifyPublisher {
    async fn read_levels(&self) -> Result<StockPull, PullError> {
        let mut shown = Shown::default();
        let mut cursor: Option<String> = None;
        loop {
            let n = shown.page(&self.channel, "inventoryLevels")?;
            let what = format!("inventoryLevels of {}, page {n}", self.location_gid);
            let body = json!({
                "query": LEVELS_QUERY,
                "variables": { "locationId": self.location_gid, "cursor": cursor },
            });
            let (page, wait) = match self.post(&body, None).await {
                Ok(answer) => read_levels_page(&answer),
                Err(failure) => Err(failure),
            }
            .map_err(|f| PullError::from_failure(&self.channel, &what, f))?;
            for (id, quantity) in page.levels {
                // Shopify answers gids; anything else is kept as it came, to be reported.
                let id = gid(INVENTORY_ITEM_GID, &id).unwrap_or(id);
                shown.level(&self.channel, id, quantity)?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
        }
        let index = self
            .crosswalk
            .index_by(|external| gid(INVENTORY_ITEM_GID, external));
        Ok(shown.finish(|id| {
            index
                .get(id)
                .map(|items| items.iter().map(|&item| item.to_owned()).collect())
                .unwrap_or_default()
        }))
    }
}

impl StockReader for ShopifyPublisher {
    fn read_stock(&self) -> BoxFuture<'_, Result<StockPull, PullError>> {
        Box::pin(self.read_levels())
    }

    /// One `inventoryItem(id:) { inventoryLevel(locationId:) }` query (the compare-and-set
    /// read) instead of every page.
    fn read_item<'a>(&'a self, item: &'a str) -> BoxFuture<'a, Result<Option<i64>, PullError>> {
        Box::pin(async move {
            self.read(item)
                .await
                .map(Some)
                .map_err(|f| PullError::from_failure(&self.channel, &format!("reading {item}"), f))
        })
    }
}

/// Reads one page of the levels query, and how long to wait before asking for the next one.
fn read_levels_page(answer: &Answer) -> Result<(Page, Option<Duration>), Failure> {
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
    let unexpected = |what: &str| {
        Failure::permanent(
            Some(answer.status),
            util::detail(format!("{what}: {}", answer.text)),
        )
    };
    let location = parsed
        .data
        .as_ref()
        .and_then(|d| d.get("location"))
        .ok_or_else(|| unexpected("answer has no location"))?;
    if location.is_null() {
        return Err(Failure::permanent(
            Some(answer.status),
            "the location is not found (check location_id)",
        ));
    }
    let connection = location
        .get("inventoryLevels")
        .filter(|c| !c.is_null())
        .ok_or_else(|| unexpected("answer has no inventoryLevels"))?;
    let nodes = connection
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| unexpected("inventoryLevels has no nodes"))?;
    let mut levels = Vec::with_capacity(nodes.len());
    for node in nodes {
        let id = node
            .pointer("/item/id")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("a level has no item id"))?;
        let quantity = node
            .get("quantities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
            .and_then(|q| q.get("quantity"))
            .and_then(Value::as_i64)
            .ok_or_else(|| unexpected(&format!("the level of {id} has no available quantity")))?;
        levels.push((id.to_owned(), quantity));
    }
    let has_next = connection
        .pointer("/pageInfo/hasNextPage")
        .and_then(Value::as_bool)
        .ok_or_else(|| unexpected("inventoryLevels has no pageInfo.hasNextPage"))?;
    let next = if has_next {
        let cursor = connection
            .pointer("/pageInfo/endCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| unexpected("hasNextPage without an endCursor"))?;
        Some(cursor.to_owned())
    } else {
        None
    };
    let wait = budget_wait(answer, &parsed);
    Ok((Page { levels, next }, wait))
}

/// How long until the bucket holds what this page requested (the next page asks the same),
/// when that is short enough to wait.
fn budget_wait(answer: &Answer, parsed: &GraphqlResponse) -> Option<Duration> {
    let requested = parsed
        .extensions
        .as_ref()?
        .cost
        .as_ref()?
        .requested_query_cost?;
    let feedback = feedback(answer, Some(parsed));
    let (available, rate) = (feedback.available?, feedback.rate?);
    if available >= requested || !(rate.is_finite() && rate > 0.0) {
        return None;
    }
    let wait = Duration::try_from_secs_f64((requested - available) / rate).ok()?;
    (wait <= BUDGET_WAIT_MAX).then_some(wait)
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

    fn level(id: &str, quantity: i64) -> Value {
        json!({"item": {"id": id}, "quantities": [{"name": "available", "quantity": quantity}]})
    }

    #[test]
    fn the_query_asks_for_the_largest_page_and_what_the_reader_needs() {
        assert!(LEVELS_QUERY.contains(&format!(
            "inventoryLevels(first: {LEVELS_PAGE}, after: $cursor)"
        )));
        for field in [
            "item { id }",
            "quantities(names: [\"available\"])",
            "pageInfo { hasNextPage endCursor }",
        ] {
            assert!(LEVELS_QUERY.contains(field), "{field}");
        }
    }

    #[test]
    fn reads_a_page_its_cursor_and_the_wait_for_the_next() {
        let text = json!({
            "data": {"location": {"inventoryLevels": {
                "nodes": [level("gid://shopify/InventoryItem/1", 4), level("gid://shopify/InventoryItem/2", -1)],
                "pageInfo": {"hasNextPage": true, "endCursor": "abc"}}}},
            "extensions": {"cost": {"requestedQueryCost": 753, "actualQueryCost": 9,
                "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 553, "restoreRate": 100.0}}}
        })
        .to_string();
        let (page, wait) = read_levels_page(&answer(200, &text)).unwrap();
        assert_eq!(
            page,
            Page {
                levels: vec![
                    ("gid://shopify/InventoryItem/1".into(), 4),
                    ("gid://shopify/InventoryItem/2".into(), -1)
                ],
                next: Some("abc".into()),
            }
        );
        assert_eq!(wait, Some(Duration::from_secs(2)));
        let last = json!({"data": {"location": {"inventoryLevels": {"nodes": [],
            "pageInfo": {"hasNextPage": false, "endCursor": null}}}}})
        .to_string();
        let (page, wait) = read_levels_page(&answer(200, &last)).unwrap();
        assert_eq!((page.levels.len(), page.next, wait), (0, None, None));
    }

    #[test]
    fn failures_are_classified() {
        let throttled =
            r#"{"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}"#;
        let f = read_levels_page(&answer(200, throttled)).unwrap_err();
        assert_eq!((f.class, f.status), (RetryClass::Retryable, Some(429)));
        let f = read_levels_page(&answer(401, "[API] Invalid API key")).unwrap_err();
        assert_eq!((f.class, f.status), (RetryClass::Permanent, Some(401)));
        let f = read_levels_page(&answer(502, "bad gateway")).unwrap_err();
        assert_eq!(f.class, RetryClass::Retryable);
        let f = read_levels_page(&answer(200, r#"{"data": {"location": null}}"#)).unwrap_err();
        assert_eq!(f.class, RetryClass::Permanent);
        assert!(f.detail.contains("location_id"), "{}", f.detail);
        let no_cursor = r#"{"data": {"location": {"inventoryLevels": {"nodes": [],
            "pageInfo": {"hasNextPage": true, "endCursor": null}}}}}"#;
        let f = read_levels_page(&answer(200, no_cursor)).unwrap_err();
        assert!(f.detail.contains("endCursor"), "{}", f.detail);
        let no_available = json!({"data": {"location": {"inventoryLevels": {
            "nodes": [{"item": {"id": "gid://shopify/InventoryItem/7"}, "quantities": []}],
            "pageInfo": {"hasNextPage": false}}}}})
        .to_string();
        let f = read_levels_page(&answer(200, &no_available)).unwrap_err();
        assert!(
            f.detail.contains("InventoryItem/7 has no available"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn a_long_wait_is_not_waited() {
        let text = json!({"data": {}, "extensions": {"cost": {"requestedQueryCost": 753,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 0, "restoreRate": 1.0}}}})
        .to_string();
        let parsed: GraphqlResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(budget_wait(&answer(200, &text), &parsed), None);
    }
}
