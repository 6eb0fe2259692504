//! Shopify webhooks: signature check and parsing of the topics Crossdock acts on.
//!
//! Faithful to Shopify's webhook contract: the `X-Shopify-Hmac-Sha256` header is the base64
//! HMAC-SHA256 of the raw request body keyed with the app's client secret, and the body is the
//! bare REST resource (`orders/create` sends the order object itself; the REST API and the
//! fixtures wrap it as `{"order": {...}}`, which is accepted too). Refund lines carry
//! `restock_type` (`cancel`, `return`, `no_restock`, `legacy_restock`) in current API versions
//! and only the refund-level `restock` flag in old ones.

use serde::Deserialize;

use crate::inbound::{
    self, ChannelInput, ChannelOrder, ChannelRefund, InboundError, OrderLine, RefundLine, Restock,
    ShipTo,
};

/// Checks `X-Shopify-Hmac-Sha256` against the raw body, in constant time.
pub fn verify_hmac(secret: &[u8], raw_body: &[u8], header_value: &str) -> bool {
    crate::util::verify_base64_hmac(secret, raw_body, header_value)
}

/// The topics [`parse`] understands (the `X-Shopify-Topic` header values).
pub const TOPICS: [&str; 4] = [
    "orders/create",
    "orders/cancelled",
    "refunds/create",
    "inventory_levels/update",
];

/// Parses a webhook body for `topic` (the `X-Shopify-Topic` header).
pub fn parse(topic: &str, body: &[u8]) -> Result<ChannelInput, InboundError> {
    match topic {
        "orders/create" => {
            let order: Order = inbound::parse_json(body, "order")?;
            Ok(ChannelInput::OrderPlaced(order.into_channel()?))
        }
        "orders/cancelled" => {
            let order: CancelledOrder = inbound::parse_json(body, "order")?;
            Ok(ChannelInput::OrderCancelled {
                order_id: order.id,
                at: order.cancelled_at,
                reason: order.cancel_reason,
            })
        }
        "refunds/create" => {
            let refund: Refund = inbound::parse_json(body, "refund")?;
            refund.into_channel().map(ChannelInput::Refund)
        }
        "inventory_levels/update" => {
            let level: InventoryLevel = inbound::parse_json(body, "inventory_level")?;
            Ok(ChannelInput::InventoryLevel {
                inventory_item_id: level.inventory_item_id,
                location_id: level.location_id,
                available: level.available,
                updated_at: level.updated_at,
            })
        }
        other => Err(InboundError::UnsupportedTopic(other.to_owned())),
    }
}

#[derive(Deserialize)]
struct Order {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    created_at: Option<String>,
    line_items: Vec<LineItem>,
    #[serde(default)]
    shipping_address: Option<Address>,
    #[serde(default, deserialize_with = "inbound::opt_text_or_number")]
    total_price: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    currency: Option<String>,
}

#[derive(Deserialize)]
struct LineItem {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    sku: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_id")]
    variant_id: Option<String>,
    #[serde(deserialize_with = "inbound::positive_qty")]
    quantity: i64,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default, deserialize_with = "inbound::opt_text")]
    country_code: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    country: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    province_code: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    province: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    zip: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    city: Option<String>,
}

impl Order {
    fn into_channel(self) -> Result<ChannelOrder, InboundError> {
        if self.line_items.is_empty() {
            return Err(InboundError::malformed(
                "line_items",
                "the order has no lines",
            ));
        }
        let lines = self
            .line_items
            .into_iter()
            .enumerate()
            .map(|(n, l)| {
                if l.sku.is_none() && l.variant_id.is_none() {
                    return Err(InboundError::malformed(
                        format!("line_items[{n}]"),
                        format!("line {} has neither a sku nor a variant_id", l.id),
                    ));
                }
                Ok(OrderLine {
                    line_id: l.id,
                    sku: l.sku,
                    external_item: l.variant_id,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChannelOrder {
            order_id: self.id,
            name: self.name,
            created_at: self.created_at,
            lines,
            ship_to: self.shipping_address.map(|a| ShipTo {
                country: a.country_code.or(a.country),
                state: a.province_code.or(a.province),
                zip: a.zip,
                city: a.city,
            }),
            total: self.total_price,
            currency: self.currency,
        })
    }
}

#[derive(Deserialize)]
struct CancelledOrder {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    cancelled_at: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    cancel_reason: Option<String>,
}

#[derive(Deserialize)]
struct Refund {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(deserialize_with = "inbound::id")]
    order_id: String,
    /// The refund-level flag of old API versions.
    #[serde(default)]
    restock: Option<bool>,
    #[serde(default)]
    refund_line_items: Vec<RefundLineItem>,
}

#[derive(Deserialize)]
struct RefundLineItem {
    #[serde(deserialize_with = "inbound::id")]
    line_item_id: String,
    #[serde(deserialize_with = "inbound::positive_qty")]
    quantity: i64,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    restock_type: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_id")]
    location_id: Option<String>,
    #[serde(default)]
    line_item: Option<RefundedLine>,
}

#[derive(Deserialize)]
struct RefundedLine {
    #[serde(default, deserialize_with = "inbound::opt_text")]
    sku: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_id")]
    variant_id: Option<String>,
}

impl Refund {
    fn into_channel(self) -> Result<ChannelRefund, InboundError> {
        let legacy_restock = self.restock.unwrap_or(false);
        let lines = self
            .refund_line_items
            .into_iter()
            .enumerate()
            .map(|(n, l)| {
                let restock = match l.restock_type.as_deref() {
                    Some("cancel") => Restock::Cancel,
                    Some("return") => Restock::Return,
                    Some("no_restock") => Restock::NoRestock,
                    Some("legacy_restock") => Restock::Legacy,
                    Some(other) => {
                        return Err(InboundError::malformed(
                            format!("refund_line_items[{n}].restock_type"),
                            format!(
                                "unknown restock type {other:?} (expected cancel, return, no_restock or legacy_restock)"
                            ),
                        ));
                    }
                    None if legacy_restock => Restock::Legacy,
                    None => Restock::NoRestock,
                };
                let (sku, external_item) = match l.line_item {
                    Some(li) => (li.sku, li.variant_id),
                    None => (None, None),
                };
                Ok(RefundLine {
                    line_id: l.line_item_id,
                    sku,
                    external_item,
                    quantity: l.quantity,
                    restock,
                    location_id: l.location_id,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChannelRefund {
            order_id: self.order_id,
            refund_id: self.id,
            lines,
        })
    }
}

#[derive(Deserialize)]
struct InventoryLevel {
    #[serde(deserialize_with = "inbound::id")]
    inventory_item_id: String,
    #[serde(deserialize_with = "inbound::id")]
    location_id: String,
    #[serde(deserialize_with = "inbound::count")]
    available: i64,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Shopify payload from `testdata/shopify` (see its MANIFEST.tsv).
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../testdata/channels/shopify/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The webhook body is the bare object; the fixture wraps it.
    fn unwrap(raw: &[u8], key: &str) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(raw).unwrap();
        serde_json::to_vec(&v[key].take()).unwrap()
    }

    #[test]
    fn orders_create_from_the_real_order() {
        let raw = fixture("pyapi_order.json");
        let bare = unwrap(&raw, "order");
        let ChannelInput::OrderPlaced(order) = parse("orders/create", &bare).unwrap() else {
            panic!("expected OrderPlaced");
        };
        assert_eq!(order.order_id, "450789469");
        assert_eq!(order.name.as_deref(), Some("#1001"));
        assert_eq!(
            order.created_at.as_deref(),
            Some("2008-01-10T11:00:00-05:00")
        );
        assert_eq!(order.total.as_deref(), Some("409.94"));
        assert_eq!(order.currency.as_deref(), Some("USD"));
        let lines: Vec<(&str, Option<&str>, Option<&str>, i64)> = order
            .lines
            .iter()
            .map(|l| {
                (
                    l.line_id.as_str(),
                    l.sku.as_deref(),
                    l.external_item.as_deref(),
                    l.quantity,
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                ("466157049", Some("IPOD2008GREEN"), Some("39072856"), 1),
                ("518995019", Some("IPOD2008RED"), Some("49148385"), 1),
                ("703073504", Some("IPOD2008BLACK"), Some("457924702"), 1),
            ]
        );
        assert_eq!(
            order.ship_to,
            Some(ShipTo {
                country: Some("US".into()),
                state: Some("KY".into()),
                zip: Some("40202".into()),
                city: Some("Louisville".into()),
            })
        );
        // The wrapped REST shape gives the same answer.
        assert_eq!(
            parse("orders/create", &raw).unwrap(),
            ChannelInput::OrderPlaced(order)
        );
    }

    #[test]
    fn orders_cancelled_reads_when_and_why() {
        let body = br#"{"id": 450789469, "cancelled_at": "2024-05-01T10:00:00-04:00",
            "cancel_reason": "customer", "line_items": []}"#;
        assert_eq!(
            parse("orders/cancelled", body).unwrap(),
            ChannelInput::OrderCancelled {
                order_id: "450789469".into(),
                at: Some("2024-05-01T10:00:00-04:00".into()),
                reason: Some("customer".into()),
            }
        );
    }

    #[test]
    fn refunds_create_from_the_real_refund() {
        let raw = fixture("pyapi_refund.json");
        let bare = unwrap(&raw, "refund");
        let ChannelInput::Refund(refund) = parse("refunds/create", &bare).unwrap() else {
            panic!("expected Refund");
        };
        assert_eq!(refund.order_id, "450789469");
        assert_eq!(refund.refund_id, "509562969");
        assert_eq!(
            refund.lines,
            vec![
                RefundLine {
                    line_id: "703073504".into(),
                    sku: Some("IPOD2008BLACK".into()),
                    external_item: Some("457924702".into()),
                    quantity: 1,
                    // The fixture predates restock_type: refund-level `restock: true`.
                    restock: Restock::Legacy,
                    location_id: None,
                },
                RefundLine {
                    line_id: "466157049".into(),
                    sku: Some("IPOD2008GREEN".into()),
                    external_item: Some("39072856".into()),
                    quantity: 1,
                    restock: Restock::Legacy,
                    location_id: None,
                },
            ]
        );
    }

    #[test]
    fn refund_lines_read_restock_type_and_location() {
        let body = br#"{"id": 1, "order_id": 2, "refund_line_items": [
            {"id": 10, "line_item_id": 20, "quantity": 2, "restock_type": "return", "location_id": 905684977},
            {"id": 11, "line_item_id": 21, "quantity": 1, "restock_type": "no_restock", "location_id": null},
            {"id": 12, "line_item_id": 22, "quantity": 1, "restock_type": "cancel"}]}"#;
        let ChannelInput::Refund(refund) = parse("refunds/create", body).unwrap() else {
            panic!("expected Refund");
        };
        let got: Vec<(Restock, Option<&str>, i64)> = refund
            .lines
            .iter()
            .map(|l| (l.restock, l.location_id.as_deref(), l.quantity))
            .collect();
        assert_eq!(
            got,
            vec![
                (Restock::Return, Some("905684977"), 2),
                (Restock::NoRestock, None, 1),
                (Restock::Cancel, None, 1),
            ]
        );
        let bad = br#"{"id": 1, "order_id": 2, "refund_line_items": [
            {"line_item_id": 20, "quantity": 2, "restock_type": "teleport"}]}"#;
        let err = parse("refunds/create", bad).unwrap_err();
        assert!(
            matches!(&err, InboundError::Malformed { field, .. } if field == "refund_line_items[0].restock_type"),
            "{err}"
        );
    }

    #[test]
    fn inventory_levels_update_from_the_real_level() {
        let raw = fixture("pyapi_inventory_level.json");
        let bare = unwrap(&raw, "inventory_level");
        let expected = ChannelInput::InventoryLevel {
            inventory_item_id: "808950810".into(),
            location_id: "905684977".into(),
            available: 6,
            updated_at: Some("2018-05-07T15:51:26-04:00".into()),
        };
        assert_eq!(parse("inventory_levels/update", &bare).unwrap(), expected);
        let negative = br#"{"inventory_item_id": 1, "location_id": 2, "available": -3}"#;
        assert!(matches!(
            parse("inventory_levels/update", negative).unwrap(),
            ChannelInput::InventoryLevel { available: -3, .. }
        ));
        let untracked = br#"{"inventory_item_id": 1, "location_id": 2, "available": null}"#;
        let err = parse("inventory_levels/update", untracked).unwrap_err();
        assert!(matches!(&err, InboundError::Malformed { field, .. } if field == "available"));
    }

    fn order_with_line(line: &str) -> Vec<u8> {
        format!(r#"{{"id": 1, "line_items": [{{"id": 5, "sku": "A", "variant_id": 9, "quantity": 1}}, {line}]}}"#)
            .into_bytes()
    }

    #[test]
    fn bad_orders_name_the_field() {
        let cases: [(&str, Vec<u8>, &str, &str); 5] = [
            (
                "missing quantity",
                order_with_line(r#"{"id": 6, "sku": "B"}"#),
                "line_items[1]",
                "missing field `quantity`",
            ),
            (
                "negative quantity",
                order_with_line(r#"{"id": 6, "sku": "B", "quantity": -2}"#),
                "line_items[1].quantity",
                "found -2",
            ),
            (
                "no sku, no variant",
                order_with_line(r#"{"id": 6, "sku": "", "variant_id": null, "quantity": 1}"#),
                "line_items[1]",
                "line 6 has neither a sku nor a variant_id",
            ),
            ("not JSON", b"<html>".to_vec(), "(body)", "not JSON"),
            (
                "no lines",
                br#"{"id": 1, "line_items": []}"#.to_vec(),
                "line_items",
                "the order has no lines",
            ),
        ];
        for (name, body, field, reason) in cases {
            match parse("orders/create", &body) {
                Err(InboundError::Malformed {
                    field: f,
                    reason: r,
                }) => {
                    assert_eq!(f, field, "{name}");
                    assert!(r.contains(reason), "{name}: {r}");
                }
                other => panic!("{name}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_topics_are_refused() {
        assert_eq!(
            parse("products/update", b"{}").unwrap_err(),
            InboundError::UnsupportedTopic("products/update".into())
        );
    }

    #[test]
    fn hmac_is_checked_on_the_raw_body() {
        let secret = b"hush";
        let body = br#"{"id":1}"#;
        let header = crate::util::base64_encode(&crate::util::hmac_sha256(secret, &[body]));
        assert!(verify_hmac(secret, body, &header));
        assert!(!verify_hmac(b"other", body, &header));
        assert!(!verify_hmac(secret, br#"{"id": 1}"#, &header));
        assert!(!verify_hmac(secret, body, ""));
        assert!(!verify_hmac(secret, body, &header[..header.len() - 4]));
    }
}
