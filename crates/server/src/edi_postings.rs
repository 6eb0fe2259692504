//! Workflow postings to trading partners as X12 files: a purchase order becomes an 850, a
//! release to a partner's warehouse a 940, the invoice of a partner's order an 810. One file per
//! message, through the partner's delivery lane (so it is retried and parked like any posting).

use std::sync::Arc;

use crossdock_delivery::{
    Body, BoxFuture, Failure, Message, MsgResult, Outcome, RateFeedback, Target,
};
use crossdock_edi::PartnerSpec;
use crossdock_edi::outbound::{self, DocLine, ReleaseDoc, ShipmentDoc};
use crossdock_model::{ItemId, LocationId, Timestamp};
use crossdock_store::thread::StoreThread;
use crossdock_x12::sets::TypedSet;
use serde::Deserialize;

use crate::edi::send_document;
use crate::master_data::MasterHandle;

pub struct EdiPostingTarget {
    pub spec: PartnerSpec,
    pub master: Arc<MasterHandle>,
    pub store: StoreThread,
}

#[derive(Deserialize)]
struct Posting {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    po: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    location: Option<LocationId>,
    #[serde(default)]
    lines: Vec<PostedLine>,
    #[serde(default)]
    ship_to: Option<ShipTo>,
}

#[derive(Deserialize)]
struct PostedLine {
    item: ItemId,
    qty: i64,
    #[serde(default)]
    location: Option<LocationId>,
}

#[derive(Deserialize)]
struct ShipTo {
    #[serde(default)]
    name: Option<String>,
    region: String,
}

impl EdiPostingTarget {
    fn document(&self, json: &str) -> Result<TypedSet, String> {
        let p: Posting = serde_json::from_str(json).map_err(|e| format!("posting: {e}"))?;
        let master = self.master.current();
        let lines: Vec<(ItemId, i64)> = p.lines.iter().map(|l| (l.item.clone(), l.qty)).collect();
        let need =
            |v: Option<String>, what: &str| v.ok_or_else(|| format!("{} without {what}", p.ty));
        match p.ty.as_str() {
            "purchase_order.created" => {
                let location = p.location.clone().ok_or("a PO without a location")?;
                Ok(TypedSet::from(outbound::purchase_order_850(
                    &self.spec,
                    &master,
                    &need(p.po.clone(), "po")?,
                    &location,
                    Timestamp::now(),
                    &lines,
                )))
            }
            "order.release" => {
                let ship_to = p.ship_to.as_ref();
                let doc = ReleaseDoc {
                    order: need(p.order.clone(), "order")?,
                    po_number: None,
                    ship_from: p.location.clone().ok_or("a release without a location")?,
                    ship_to_name: ship_to
                        .and_then(|s| s.name.clone())
                        .unwrap_or_else(|| "CUSTOMER".into()),
                    ship_to_code: ship_to.map(|s| s.region.clone()),
                    lines: p
                        .lines
                        .iter()
                        .map(|l| DocLine {
                            item: l.item.clone(),
                            qty: l.qty,
                            unit_price_cents: None,
                        })
                        .collect(),
                };
                Ok(TypedSet::from(outbound::shipping_order_940(
                    &self.spec, &master, &doc,
                )))
            }
            "order.invoiced" => {
                let order = need(p.order.clone(), "order")?;
                let ship_from = p
                    .lines
                    .iter()
                    .find_map(|l| l.location.clone())
                    .ok_or("an invoice without a shipped line")?;
                let doc = ShipmentDoc {
                    shipment: order.clone(),
                    po_number: order.clone(),
                    shipped_at: Timestamp::now(),
                    ship_from,
                    ship_to: None,
                    lines: p
                        .lines
                        .iter()
                        .map(|l| DocLine {
                            item: l.item.clone(),
                            qty: l.qty,
                            unit_price_cents: None,
                        })
                        .collect(),
                    invoice: Some(order),
                };
                Ok(TypedSet::from(outbound::invoice_810(
                    &self.spec, &master, &doc,
                )))
            }
            other => Err(format!(
                "partner {} takes 850, 940 and 810 postings, not {other}",
                self.spec.id
            )),
        }
    }
}

impl Target for EdiPostingTarget {
    fn max_batch(&self) -> usize {
        1
    }

    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(batch.len());
            for m in batch {
                let set = match &m.body {
                    Body::Document { json } => self.document(json),
                    other => Err(format!("a partner document, not {other:?}")),
                };
                results.push(match set {
                    Err(e) => MsgResult::Failed(Failure::permanent(None, e)),
                    Ok(set) => match send_document(&self.store, &self.spec, &[set]).await {
                        Ok(_) => MsgResult::Delivered,
                        Err(e) => MsgResult::Failed(Failure::retryable(None, e)),
                    },
                });
            }
            Outcome {
                results,
                feedback: RateFeedback::default(),
            }
        })
    }
}

/// The lane writing a partner's workflow documents: ordered, a few files a second at most.
pub fn lane_config(endpoint: &str) -> crossdock_delivery::LaneConfig {
    let mut lane = crate::edi::lane_config(endpoint);
    lane.rate.rate = 20.0;
    lane.rate.burst = 20.0;
    lane.fifo = true;
    lane
}
