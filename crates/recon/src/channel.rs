//! Channel reconciliation: what a channel shows, compared with what Crossdock last sent it and
//! what it intends it to show now (the channel's ATS).

use std::collections::HashMap;

use serde::Serialize;

/// One item as the two sides see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelItem {
    pub item: String,
    /// What the channel shows; `None` when the channel does not list the item.
    pub shown: Option<i64>,
    /// The value Crossdock last delivered; `None` when nothing was delivered yet.
    pub sent: Option<i64>,
    /// The channel's ATS now.
    pub intended: i64,
    /// Other values Crossdock had delivered or was sending while the channel was read: a read
    /// that overlaps a write may show any of them, which is not drift.
    pub recent: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The channel shows what Crossdock intends.
    InSync,
    /// The channel shows what Crossdock last sent; a newer value is on its way (not drift).
    Pending,
    /// The channel shows something Crossdock neither sent nor intends: edited in the channel,
    /// or an update was lost. Repaired by a compare-and-set write from `shown` to `intended`.
    Drift,
    /// Crossdock delivered a value, the channel does not list the item.
    MissingInChannel,
}

/// Judges one item.
pub fn judge(c: &ChannelItem) -> Verdict {
    match c.shown {
        None if c.sent.is_some() => Verdict::MissingInChannel,
        None => Verdict::InSync,
        Some(shown) if shown == c.intended => Verdict::InSync,
        Some(shown) if Some(shown) == c.sent || c.recent.contains(&shown) => Verdict::Pending,
        Some(_) => Verdict::Drift,
    }
}

/// Joins a channel's levels with what Crossdock sent and intends: every item either side knows.
pub fn join(
    shown: &[(String, i64)],
    known: impl IntoIterator<Item = (String, Option<i64>, i64)>,
) -> Vec<ChannelItem> {
    let mut by_item: HashMap<&str, i64> = shown.iter().map(|(i, q)| (i.as_str(), *q)).collect();
    let mut out: Vec<ChannelItem> = known
        .into_iter()
        .map(|(item, sent, intended)| ChannelItem {
            shown: by_item.remove(item.as_str()),
            item,
            sent,
            intended,
            recent: Vec::new(),
        })
        .collect();
    out.extend(by_item.into_iter().map(|(item, q)| ChannelItem {
        item: item.to_string(),
        shown: Some(q),
        sent: None,
        intended: 0,
        recent: Vec::new(),
    }));
    out.sort_by(|a, b| a.item.cmp(&b.item));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(shown: Option<i64>, sent: Option<i64>, intended: i64) -> ChannelItem {
        ChannelItem {
            item: "SKU-1".into(),
            shown,
            sent,
            intended,
            recent: Vec::new(),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&c(Some(5), Some(5), 5)), Verdict::InSync);
        // A newer value is still in the outbox: not drift.
        assert_eq!(judge(&c(Some(5), Some(5), 3)), Verdict::Pending);
        // Edited by hand (or an update lost): neither sent nor intended.
        assert_eq!(judge(&c(Some(9), Some(5), 5)), Verdict::Drift);
        assert_eq!(judge(&c(Some(9), None, 5)), Verdict::Drift);
        assert_eq!(judge(&c(None, Some(5), 5)), Verdict::MissingInChannel);
        assert_eq!(judge(&c(None, None, 5)), Verdict::InSync);
        // The read overlapped a write: the channel shows a value that was on its way.
        let overlapped = ChannelItem {
            recent: vec![7, 8],
            ..c(Some(7), Some(6), 9)
        };
        assert_eq!(judge(&overlapped), Verdict::Pending);
        let edited = ChannelItem {
            recent: vec![7, 8],
            ..c(Some(40), Some(6), 9)
        };
        assert_eq!(judge(&edited), Verdict::Drift);
    }

    #[test]
    fn join_keeps_items_only_one_side_knows() {
        let joined = join(
            &[("A".into(), 1), ("C".into(), 7)],
            [("A".into(), Some(1), 1), ("B".into(), Some(2), 2)],
        );
        let items: Vec<(&str, Option<i64>)> =
            joined.iter().map(|c| (c.item.as_str(), c.shown)).collect();
        assert_eq!(items, vec![("A", Some(1)), ("B", None), ("C", Some(7))]);
    }
}
