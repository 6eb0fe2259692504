//! WooCommerce webhooks: signature check and parsing of order topics.
//!
//! Faithful to WooCommerce's webhook delivery: `X-WC-Webhook-Signature` is the base64
//! HMAC-SHA256 of the raw body keyed with the webhook's secret, `X-WC-Webhook-Topic` names the
//! topic, and the body is the REST API v3 order object. WooCommerce sends no separate cancel or
//! refund topic for a status change, so `order.updated` is read by status:
//!
//! - `cancelled` → [`ChannelInput::OrderCancelled`] (at `date_modified_gmt`);
//! - `refunded` → [`ChannelInput::Refund`] of every line in full, with
//!   [`Restock::NoRestock`]: WooCommerce restocks a refund only when the merchant ticks "restock
//!   refunded items", and the order webhook does not say whether they did (a restock shows up
//!   as the product's own stock change);
//! - anything else → [`ChannelInput::OrderUpdated`] with the status.
//!
//! Dates: WooCommerce's `*_gmt` fields are UTC without an offset; they are given back with `Z`
//! appended so they parse as RFC 3339.

use serde::Deserialize;

use crate::inbound::{
    self, ChannelInput, ChannelOrder, ChannelRefund, InboundError, OrderLine, RefundLine, Restock,
    ShipTo,
};

/// Checks `X-WC-Webhook-Signature` against the raw body, in constant time.
pub fn verify_signature(secret: &[u8], raw_body: &[u8], header_value: &str) -> bool {
    crate::util::verify_base64_hmac(secret, raw_body, header_value)
}

/// The topics [`parse`] understands (the `X-WC-Webhook-Topic` header values).
pub const TOPICS: [&str; 2] = ["order.created", "order.updated"];

/// Parses a webhook body for `topic`.
pub fn parse(topic: &str, body: &[u8]) -> Result<ChannelInput, InboundError> {
    match topic {
        "order.created" => {
            let order: Order = inbound::parse_json(body, "order")?;
            Ok(ChannelInput::OrderPlaced(order.into_channel()?))
        }
        "order.updated" => {
            let order: Order = inbound::parse_json(body, "order")?;
            let status = order.status.clone().unwrap_or_default();
            match status.as_str() {
                "cancelled" => Ok(ChannelInput::OrderCancelled {
                    at: order
                        .date_modified_gmt
                        .as_deref()
                        .map(utc)
                        .or(order.date_modified.clone()),
                    order_id: order.id,
                    reason: None,
                }),
                "refunded" => {
                    let order = order.into_channel()?;
                    Ok(ChannelInput::Refund(ChannelRefund {
                        refund_id: format!("{}/refunded", order.order_id),
                        lines: order
                            .lines
                            .into_iter()
                            .map(|l| RefundLine {
                                line_id: l.line_id,
                                sku: l.sku,
                                external_item: l.external_item,
                                quantity: l.quantity,
                                restock: Restock::NoRestock,
                                location_id: None,
                            })
                            .collect(),
                        order_id: order.order_id,
                    }))
                }
                "" => Err(InboundError::malformed("status", "missing")),
                _ => Ok(ChannelInput::OrderUpdated {
                    order: order.into_channel()?,
                    status,
                }),
            }
        }
        other => Err(InboundError::UnsupportedTopic(other.to_owned())),
    }
}

/// A WooCommerce GMT time (`2017-03-22T19:28:02`) as RFC 3339 UTC.
fn utc(raw: &str) -> String {
    let has_offset =
        raw.ends_with('Z') || raw.get(19..).is_some_and(|tail| tail.contains(['+', '-']));
    if has_offset {
        raw.to_owned()
    } else {
        format!("{raw}Z")
    }
}

#[derive(Deserialize)]
struct Order {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    currency: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text_or_number")]
    total: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    date_created: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    date_created_gmt: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    date_modified: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    date_modified_gmt: Option<String>,
    #[serde(default)]
    shipping: Option<Address>,
    line_items: Vec<LineItem>,
}

#[derive(Deserialize)]
struct LineItem {
    #[serde(deserialize_with = "inbound::id")]
    id: String,
    #[serde(default, deserialize_with = "inbound::opt_id")]
    product_id: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_id")]
    variation_id: Option<String>,
    #[serde(deserialize_with = "inbound::positive_qty")]
    quantity: i64,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    sku: Option<String>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default, deserialize_with = "inbound::opt_text")]
    country: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "inbound::opt_text")]
    postcode: Option<String>,
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
                let external_item = match (l.product_id, l.variation_id) {
                    (Some(p), Some(v)) => Some(format!("{p}/{v}")),
                    (Some(p), None) => Some(p),
                    // A variation without its parent cannot be looked up in the crosswalk.
                    (None, _) => None,
                };
                if l.sku.is_none() && external_item.is_none() {
                    return Err(InboundError::malformed(
                        format!("line_items[{n}]"),
                        format!("line {} has neither a sku nor a product_id", l.id),
                    ));
                }
                Ok(OrderLine {
                    line_id: l.id,
                    sku: l.sku,
                    external_item,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An address of empty strings (a virtual order) is no address.
        let ship_to = self
            .shipping
            .map(|a| ShipTo {
                country: a.country,
                state: a.state,
                zip: a.postcode,
                city: a.city,
            })
            .filter(|s| *s != ShipTo::default());
        Ok(ChannelOrder {
            name: self.number.or_else(|| Some(self.id.clone())),
            order_id: self.id,
            created_at: self
                .date_created_gmt
                .as_deref()
                .map(utc)
                .or(self.date_created),
            lines,
            ship_to,
            total: self.total,
            currency: self.currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../testdata/channels/woocommerce/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The same order with another status.
    fn with_status(raw: &[u8], status: &str) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(raw).unwrap();
        v["status"] = status.into();
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn order_created_from_the_real_order() {
        let raw = fixture("orders__create_an_order__response.json");
        let ChannelInput::OrderPlaced(order) = parse("order.created", &raw).unwrap() else {
            panic!("expected OrderPlaced");
        };
        assert_eq!(order.order_id, "727");
        assert_eq!(order.name.as_deref(), Some("727"));
        assert_eq!(order.created_at.as_deref(), Some("2017-03-22T19:28:02Z"));
        assert_eq!(order.total.as_deref(), Some("29.35"));
        assert_eq!(order.currency.as_deref(), Some("USD"));
        assert_eq!(
            order.lines,
            vec![
                OrderLine {
                    line_id: "315".into(),
                    sku: None,
                    external_item: Some("93".into()),
                    quantity: 2,
                },
                OrderLine {
                    line_id: "316".into(),
                    sku: Some("Bar3".into()),
                    external_item: Some("22/23".into()),
                    quantity: 1,
                },
            ]
        );
        assert_eq!(
            order.ship_to,
            Some(ShipTo {
                country: Some("US".into()),
                state: Some("CA".into()),
                zip: Some("94103".into()),
                city: Some("San Francisco".into()),
            })
        );
    }

    #[test]
    fn order_updated_reads_the_status() {
        let raw = fixture("orders__update_an_order__response.json");
        let ChannelInput::OrderUpdated { order, status } = parse("order.updated", &raw).unwrap()
        else {
            panic!("expected OrderUpdated");
        };
        assert_eq!(status, "completed");
        assert_eq!(order.lines.len(), 2);

        let cancelled = parse("order.updated", &with_status(&raw, "cancelled")).unwrap();
        assert_eq!(
            cancelled,
            ChannelInput::OrderCancelled {
                order_id: "727".into(),
                at: Some("2017-03-22T19:30:35Z".into()),
                reason: None,
            }
        );

        let ChannelInput::Refund(refund) =
            parse("order.updated", &with_status(&raw, "refunded")).unwrap()
        else {
            panic!("expected Refund");
        };
        assert_eq!(refund.order_id, "727");
        assert_eq!(refund.refund_id, "727/refunded");
        let lines: Vec<(&str, i64, Restock)> = refund
            .lines
            .iter()
            .map(|l| (l.line_id.as_str(), l.quantity, l.restock))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("315", 2, Restock::NoRestock),
                ("316", 1, Restock::NoRestock)
            ]
        );
    }

    #[test]
    fn every_order_of_the_real_batch_parses() {
        let raw = fixture("orders__batch_update_orders__response.json");
        let all: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let mut seen = 0;
        for list in ["create", "update", "delete"] {
            for order in all[list].as_array().unwrap() {
                let body = serde_json::to_vec(order).unwrap();
                let parsed = parse("order.created", &body).unwrap();
                assert!(matches!(parsed, ChannelInput::OrderPlaced(ref o) if !o.lines.is_empty()));
                seen += 1;
            }
        }
        assert_eq!(seen, 4);
    }

    #[test]
    fn bad_orders_name_the_field() {
        let raw = fixture("orders__create_an_order__response.json");
        let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut copy = v.clone();
            f(&mut copy);
            serde_json::to_vec(&copy).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
            (
                "missing quantity",
                edit(&|o| {
                    o["line_items"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("quantity");
                }),
                "line_items[1]",
                "missing field `quantity`",
            ),
            (
                "negative quantity",
                edit(&|o| o["line_items"][0]["quantity"] = (-1).into()),
                "line_items[0].quantity",
                "found -1",
            ),
            (
                "no sku, no product",
                edit(&|o| o["line_items"][0]["product_id"] = 0.into()),
                "line_items[0]",
                "line 315 has neither a sku nor a product_id",
            ),
            (
                "not JSON",
                b"id=727&status=processing".to_vec(),
                "(body)",
                "not JSON",
            ),
        ];
        for (name, body, field, reason) in cases {
            match parse("order.created", &body) {
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
        v["status"] = serde_json::Value::Null;
        let err = parse("order.updated", &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err, InboundError::malformed("status", "missing"));
    }

    #[test]
    fn unknown_topics_and_bad_signatures_are_refused() {
        assert_eq!(
            parse("product.updated", b"{}").unwrap_err(),
            InboundError::UnsupportedTopic("product.updated".into())
        );
        let body = fixture("orders__create_an_order__response.json");
        let header = crate::util::base64_encode(&crate::util::hmac_sha256(b"wc-secret", &[&body]));
        assert!(verify_signature(b"wc-secret", &body, &header));
        assert!(!verify_signature(b"wc-secret", &body[1..], &header));
        assert!(!verify_signature(b"other", &body, &header));
        assert!(!verify_signature(b"wc-secret", &body, "sha256=abc"));
    }

    #[test]
    fn gmt_times_get_a_zone() {
        assert_eq!(utc("2017-03-22T19:28:02"), "2017-03-22T19:28:02Z");
        assert_eq!(utc("2017-03-22T19:28:02Z"), "2017-03-22T19:28:02Z");
        assert_eq!(
            utc("2017-03-22T19:28:02+00:00"),
            "2017-03-22T19:28:02+00:00"
        );
    }
}
