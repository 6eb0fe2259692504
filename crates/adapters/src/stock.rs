//! Reading back the stock a channel shows, for reconciliation: what the hub last sent is
//! compared with what the channel displays now (someone edited it in the channel's admin, or a
//! write was acknowledged and then lost).
//!
//! Each publisher that can list its channel's levels implements [`StockReader`]:
//! [`ShopifyPublisher`](crate::shopify::ShopifyPublisher) (the location's `inventoryLevels`),
//! [`AmazonPublisher`](crate::amazon::AmazonPublisher) (`searchListingsItems` with
//! `fulfillmentAvailability`) and [`WooPublisher`](crate::woocommerce::WooPublisher) (products
//! and variations). A read follows every page, with the same credentials, crosswalk and channel
//! name as the publisher's writes, and either returns the whole picture or fails: a partial
//! picture would make items look missing from the channel.
//!
//! Levels are mapped back to item ids through the crosswalk in the channel's own id form. An id
//! the crosswalk does not know is not an error: it is listed in [`StockPull::unmapped`] for the
//! caller to report.

use std::collections::BTreeMap;
use std::fmt;

use crossdock_delivery::{BoxFuture, Failure, RetryClass};

/// Most levels one read collects (a bound, not a target: the crosswalk's own row limit).
pub const LEVELS_MAX: usize = crate::crosswalk::ROWS_MAX;

/// Most pages one read follows. A channel that keeps answering "there is more" past this is
/// not trusted to ever stop.
pub const PAGES_MAX: usize = 100_000;

/// One level as the channel shows it, mapped back to a Crossdock item id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChannelLevel {
    pub item: String,
    pub quantity: i64,
}

/// What a pull returned: mapped levels, plus external ids the crosswalk does not know (not an
/// error: the caller reports them).
///
/// Levels are sorted by item and unmapped ids by their text; each item and each external id
/// appears once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockPull {
    pub levels: Vec<ChannelLevel>,
    pub unmapped: Vec<String>,
}

/// A read that did not return the whole picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    /// Whether reading again later can help (throttled, 5xx, timeouts), as opposed to
    /// credentials, a missing location or an answer the reader cannot take.
    pub retryable: bool,
    /// Names the channel, what was being read and what went wrong (with the HTTP status when
    /// there was one).
    pub message: String,
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable {
            "retryable"
        } else {
            "permanent"
        };
        write!(f, "{} ({kind})", self.message)
    }
}

impl std::error::Error for PullError {}

impl PullError {
    pub(crate) fn permanent(channel: &str, what: &str, reason: impl fmt::Display) -> Self {
        PullError {
            retryable: false,
            message: format!("{channel}: {what}: {reason}"),
        }
    }

    /// A delivery failure met while reading `what` on `channel`.
    pub(crate) fn from_failure(channel: &str, what: &str, failure: Failure) -> Self {
        let status = match failure.status {
            Some(status) => format!("HTTP {status}: "),
            None => String::new(),
        };
        PullError {
            retryable: failure.class == RetryClass::Retryable,
            message: format!("{channel}: {what}: {status}{}", failure.detail),
        }
    }
}

/// A channel whose published stock can be read back.
pub trait StockReader: Send + Sync {
    /// Reads every level the channel shows for this hub's location/marketplace, following
    /// pagination.
    fn read_stock(&self) -> BoxFuture<'_, Result<StockPull, PullError>>;

    /// The level the channel shows for one item (`None`: the channel does not list it). A
    /// reader with a cheaper single read overrides this whole-channel read.
    fn read_item<'a>(&'a self, item: &'a str) -> BoxFuture<'a, Result<Option<i64>, PullError>> {
        Box::pin(async move {
            let pull = self.read_stock().await?;
            Ok(pull
                .levels
                .iter()
                .find(|l| l.item == item)
                .map(|l| l.quantity))
        })
    }
}

/// The levels of one read as the channel names them, before they are mapped to items. A
/// repeated external id (a page boundary that moved while reading) keeps the later value.
#[derive(Debug, Default)]
pub(crate) struct Shown {
    by_external: BTreeMap<String, i64>,
    pages: usize,
}

impl Shown {
    /// Counts one more page; `Err` past [`PAGES_MAX`].
    pub(crate) fn page(&mut self, channel: &str, what: &str) -> Result<usize, PullError> {
        if self.pages >= PAGES_MAX {
            return Err(PullError::permanent(
                channel,
                what,
                format!("still more pages after {PAGES_MAX}; the read was abandoned"),
            ));
        }
        self.pages += 1;
        Ok(self.pages)
    }

    /// Notes one level; `Err` past [`LEVELS_MAX`].
    pub(crate) fn level(
        &mut self,
        channel: &str,
        external: String,
        quantity: i64,
    ) -> Result<(), PullError> {
        if self.by_external.len() >= LEVELS_MAX && !self.by_external.contains_key(&external) {
            return Err(PullError::permanent(
                channel,
                "reading stock",
                format!("the channel shows more than {LEVELS_MAX} levels"),
            ));
        }
        self.by_external.insert(external, quantity);
        Ok(())
    }

    /// Maps every level through `items_of` (the items an external id stands for; none for an
    /// unknown one).
    pub(crate) fn finish<F>(self, items_of: F) -> StockPull
    where
        F: Fn(&str) -> Vec<String>,
    {
        let mut pull = StockPull::default();
        for (external, quantity) in self.by_external {
            let items = items_of(&external);
            if items.is_empty() {
                pull.unmapped.push(external);
                continue;
            }
            for item in items {
                pull.levels.push(ChannelLevel { item, quantity });
            }
        }
        pull.levels.sort_unstable();
        debug_assert!(
            pull.levels.windows(2).all(|w| w[0].item != w[1].item),
            "an item maps to one external id, so it is shown once"
        );
        pull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_levels_map_to_items_or_stay_unmapped() {
        let mut shown = Shown::default();
        shown.level("c", "2".into(), 5).unwrap();
        shown.level("c", "1".into(), 3).unwrap();
        shown.level("c", "9".into(), 7).unwrap();
        // The same id again (a page boundary moved): the later value stands.
        shown.level("c", "1".into(), 4).unwrap();
        let pull = shown.finish(|external| match external {
            "1" => vec!["B".to_owned()],
            "2" => vec!["A".to_owned()],
            _ => vec![],
        });
        assert_eq!(
            pull.levels,
            vec![
                ChannelLevel {
                    item: "A".into(),
                    quantity: 5
                },
                ChannelLevel {
                    item: "B".into(),
                    quantity: 4
                },
            ]
        );
        assert_eq!(pull.unmapped, vec!["9".to_owned()]);
    }

    #[test]
    fn errors_name_the_channel_the_read_and_the_status() {
        let e = PullError::from_failure(
            "shopify:x",
            "inventoryLevels page 2",
            Failure::from_status(503, "busy"),
        );
        assert!(e.retryable);
        assert_eq!(
            e.message,
            "shopify:x: inventoryLevels page 2: HTTP 503: busy"
        );
        assert_eq!(
            e.to_string(),
            "shopify:x: inventoryLevels page 2: HTTP 503: busy (retryable)"
        );
        let e = PullError::from_failure("c", "r", Failure::from_status(401, "no"));
        assert!(!e.retryable);
        let e = PullError::from_failure("c", "r", Failure::retryable(None, "timed out"));
        assert_eq!((e.retryable, e.message.as_str()), (true, "c: r: timed out"));
    }

    #[test]
    fn pages_are_bounded() {
        let mut shown = Shown {
            pages: PAGES_MAX - 1,
            ..Shown::default()
        };
        assert_eq!(shown.page("c", "r"), Ok(PAGES_MAX));
        let e = shown.page("c", "r").unwrap_err();
        assert!(!e.retryable && e.message.contains("more pages"), "{e}");
    }
}
