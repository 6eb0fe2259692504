//! What a channel's webhook says, in channel-neutral terms. The Shopify and WooCommerce
//! parsers produce these; the server maps them onto canonical events through the crosswalks
//! (an unknown item there is an exception with the raw payload kept, not a parse error here).
//!
//! Parsing is strict on the fields Crossdock uses (ids, quantities, line identity) and ignores
//! everything else the platform sends. A bad field is [`InboundError::Malformed`] naming its
//! path in the payload (`line_items[1].quantity`).

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// One webhook, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelInput {
    /// Shopify `orders/create`, WooCommerce `order.created`.
    OrderPlaced(ChannelOrder),
    /// WooCommerce `order.updated` to a status other than cancelled or refunded.
    OrderUpdated { order: ChannelOrder, status: String },
    /// Shopify `orders/cancelled`, WooCommerce `order.updated` to `cancelled`.
    OrderCancelled {
        order_id: String,
        at: Option<String>,
        reason: Option<String>,
    },
    /// Shopify `refunds/create`, WooCommerce `order.updated` to `refunded` (all lines).
    Refund(ChannelRefund),
    /// Shopify `inventory_levels/update`: the channel's own available count changed.
    InventoryLevel {
        inventory_item_id: String,
        location_id: String,
        available: i64,
        updated_at: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOrder {
    pub order_id: String,
    /// The human order name or number (`#1001`, `727`).
    pub name: Option<String>,
    pub created_at: Option<String>,
    pub lines: Vec<OrderLine>,
    pub ship_to: Option<ShipTo>,
    /// Order total as the channel writes it (a decimal string).
    pub total: Option<String>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub line_id: String,
    pub sku: Option<String>,
    /// The channel's id of what was sold: the Shopify variant id, or the WooCommerce
    /// `product_id` or `product_id/variation_id` (the same form as the WooCommerce crosswalk).
    pub external_item: Option<String>,
    /// Always at least 1.
    pub quantity: i64,
}

/// Where an order ships, as far as stock routing cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipTo {
    /// ISO country code when the channel gives one, else the country name.
    pub country: Option<String>,
    /// Province or state (code when given).
    pub state: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRefund {
    pub order_id: String,
    pub refund_id: String,
    pub lines: Vec<RefundLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundLine {
    /// The order line refunded.
    pub line_id: String,
    pub sku: Option<String>,
    /// As in [`OrderLine::external_item`], when the channel repeats it.
    pub external_item: Option<String>,
    /// Always at least 1.
    pub quantity: i64,
    pub restock: Restock,
    /// The channel location the goods went back to, when restocked.
    pub location_id: Option<String>,
}

/// What the channel did with the refunded goods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restock {
    /// Refunded before fulfilment: the units go back to available.
    Cancel,
    /// Returned after fulfilment and restocked.
    Return,
    /// Money back, goods not restocked.
    NoRestock,
    /// A refund made with Shopify's older `restock: true` flag (or `legacy_restock`): the
    /// channel restocked without saying whether it was a cancel or a return.
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("unsupported webhook topic {0:?}")]
    UnsupportedTopic(String),
    #[error("{field}: {reason}")]
    Malformed { field: String, reason: String },
}

impl InboundError {
    pub(crate) fn malformed(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InboundError::Malformed {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The field name used when the body as a whole is the problem.
pub(crate) const BODY: &str = "(body)";

/// Parses `body` as JSON, unwrapping `{"<wrapper>": {...}}` (the REST API's shape) to the bare
/// object (the webhook's shape), then deserializes `T` with field paths in errors.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    wrapper: &str,
) -> Result<T, InboundError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| InboundError::malformed(BODY, format!("not JSON: {e}")))?;
    let value = match value {
        serde_json::Value::Object(mut map) if map.len() == 1 && map.contains_key(wrapper) => {
            map.remove(wrapper).expect("checked just above")
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(map),
        other => {
            return Err(InboundError::malformed(
                BODY,
                format!("expected a JSON object, found {}", json_kind(&other)),
            ));
        }
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { BODY.to_owned() } else { path };
        InboundError::malformed(field, e.into_inner().to_string())
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An id the platform sends as a number (Shopify, WooCommerce) or a string.
pub(crate) fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match IdOrText::deserialize(d)? {
        IdOrText::Number(n) => Ok(n.to_string()),
        IdOrText::Signed(n) => Ok(n.to_string()),
        IdOrText::Text(s) if !s.trim().is_empty() => Ok(s),
        IdOrText::Text(_) => Err(de::Error::custom("must not be empty")),
    }
}

/// An optional id; `null`, absent, `0` and `""` are all "none" (WooCommerce writes
/// `variation_id: 0` for a simple product).
pub(crate) fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<IdOrText>::deserialize(d)? {
        None | Some(IdOrText::Number(0)) | Some(IdOrText::Signed(0)) => None,
        Some(IdOrText::Number(n)) => Some(n.to_string()),
        Some(IdOrText::Signed(n)) => Some(n.to_string()),
        Some(IdOrText::Text(s)) if s.trim().is_empty() || s.trim() == "0" => None,
        Some(IdOrText::Text(s)) => Some(s),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrText {
    Number(u64),
    Signed(i64),
    Text(String),
}

/// Optional text where `""` means absent.
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.trim().is_empty()))
}

/// Optional text or number (a Shopify price may come either way), `""` meaning absent.
pub(crate) fn opt_text_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<TextOrNumber>::deserialize(d)? {
        None => None,
        Some(TextOrNumber::Text(s)) => Some(s).filter(|s| !s.trim().is_empty()),
        Some(TextOrNumber::Number(n)) => Some(n.to_string()),
    })
}

/// A quantity of at least 1: a JSON integer, or a string holding one.
pub(crate) fn positive_qty<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let raw = serde_json::Value::deserialize(d)?;
    let n = match &raw {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let max = crossdock_model::event::QTY_MAX;
    match n {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(de::Error::custom(format!(
            "must be a positive integer of at most {max}, found {n}"
        ))),
        None => Err(de::Error::custom(format!(
            "must be a positive integer, found {raw}"
        ))),
    }
}

/// A signed stock count (it may be negative on a channel that allows overselling).
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let raw = serde_json::Value::deserialize(d)?;
    let n = match &raw {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let max = crossdock_model::event::QTY_MAX;
    match n {
        Some(n) if crossdock_model::event::qty_in_bound(n) => Ok(n),
        Some(n) => Err(de::Error::custom(format!(
            "must be an integer within ±{max}, found {n}"
        ))),
        None => Err(de::Error::custom(format!(
            "must be an integer, found {raw}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "id")]
        id: String,
        #[serde(default, deserialize_with = "opt_id")]
        other: Option<String>,
        #[serde(deserialize_with = "positive_qty")]
        qty: i64,
    }

    #[test]
    fn ids_and_quantities_accept_numbers_and_strings() {
        let p: Probe = parse_json(br#"{"id": 12, "other": 0, "qty": "3"}"#, "x").unwrap();
        assert_eq!((p.id.as_str(), p.other, p.qty), ("12", None, 3));
        let p: Probe = parse_json(br#"{"x": {"id": "a", "other": 7, "qty": 1}}"#, "x").unwrap();
        assert_eq!((p.id.as_str(), p.other.as_deref()), ("a", Some("7")));
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse_json::<Probe>(br#"{"id": 1, "qty": 0}"#, "x").unwrap_err();
        assert_eq!(
            err,
            InboundError::malformed(
                "qty",
                "must be a positive integer of at most 1000000000000, found 0"
            )
        );
        for (raw, found) in [
            ("9223372036854775807", "9223372036854775807"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("1000000000001", "1000000000001"),
        ] {
            let body = format!(r#"{{"id": 1, "qty": {raw}}}"#);
            let err = parse_json::<Probe>(body.as_bytes(), "x").unwrap_err();
            assert!(
                matches!(&err, InboundError::Malformed { field, reason } if field == "qty" && reason.ends_with(found)),
                "{err}"
            );
        }
        let err = parse_json::<Probe>(br#"{"id": 1, "qty": 1.5}"#, "x").unwrap_err();
        assert!(matches!(&err, InboundError::Malformed { field, .. } if field == "qty"));
        let err = parse_json::<Probe>(br#"{"id": 1}"#, "x").unwrap_err();
        assert!(err.to_string().contains("qty"), "{err}");
        let err = parse_json::<Probe>(b"[1]", "x").unwrap_err();
        assert_eq!(
            err,
            InboundError::malformed(BODY, "expected a JSON object, found an array")
        );
        let err = parse_json::<Probe>(b"{nope", "x").unwrap_err();
        assert!(
            matches!(&err, InboundError::Malformed { field, reason } if field == BODY && reason.starts_with("not JSON"))
        );
    }
}
