//! X12 from a partner → canonical events, orders, snapshots, exceptions and 997s.
//!
//! Pure: the caller reads the file, applies what comes out and writes the acknowledgments. Each
//! event's id derives from (sender, ISA13, GS06, ST02, line), so a resent file yields the same
//! ids and the engine treats it as a repeat.
//!
//! The 997 is decided first and the mapping follows it, so what the partner is told is exactly
//! what happened ([`FunctionalAck997::for_interchange`]):
//! - an interchange whose own envelope is wrong (a bad ISA, a missing IEA, IEA01 or IEA02 not
//!   matching, segments outside every group) applies nothing: every group's 997 is AK9 `R`;
//! - a functional group whose GS/GE is wrong (GE01 count, GE02 control number, a missing GE)
//!   applies nothing: AK9 `R`, every AK5 `R`;
//! - a transaction set with an error (SE01 count, SE02 control number, a missing SE, a set that
//!   cannot be read or is not supported) applies nothing: AK5 `R`.
//!
//! Each rejection is one `schema_violation` exception naming the file, the envelope and the
//! segments at fault, keeping the envelope as read; a corrected resend (same control numbers)
//! then applies once, since nothing of the rejected one did.
//!
//! In an accepted set, a line naming an unknown item, location or unit, or one whose event fails
//! the check every door makes (`EventData::validate`: a negative count, a quantity beyond
//! `QTY_MAX`, ...), becomes an exception keeping the raw segment and a warning in the set's 997
//! (accepted with errors); the other lines still apply.

use std::collections::HashMap;

use crossdock_master::MasterData;
use crossdock_model::event::{
    Adjusted, Counted, EventData, ShipLine, Shipped, StatusChanged, StockStatus, SupplyExpected,
    TransferReceived, TransferShipped,
};
use crossdock_model::{
    ChannelId, Event, ExceptionKind, ExceptionRecord, ItemId, LocationId, Timestamp,
};
use crossdock_x12::diag::{DiagCode, Diagnostic};
use crossdock_x12::envelope::{Document, FunctionalGroup, TransactionSet};
use crossdock_x12::segment::Segment;
use crossdock_x12::sets::FunctionalAck997;
use crossdock_x12::sets::{
    Asn856, HlNode, InventoryAdjustment947, InventoryAdvice846, Party, ProductId, PurchaseOrder850,
    ShippingAdvice945, StockTransferReceipt944, StockTransferShipment943, TypedSet,
};
use crossdock_x12::value::{Date, Decimal, Time};
use serde::Serialize;

use crate::partner::{PartnerSpec, QtyMeaning};

/// A customer order (850) for the partner's channel.
#[derive(Debug, Clone, Serialize)]
pub struct OrderIn {
    pub po_number: String,
    pub correlation_id: String,
    /// (PO1 line number, item, base units).
    pub lines: Vec<OrderLine>,
    /// The order as read, to answer with an 855.
    #[serde(skip)]
    pub po: PurchaseOrder850,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderLine {
    pub line_number: Option<String>,
    pub item: ItemId,
    pub qty: i64,
    /// Index in `po.lines`.
    #[serde(skip)]
    pub index: usize,
}

/// One row of an availability snapshot (846 quantities configured as `snapshot`), kept for
/// reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRow {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    pub as_of: Timestamp,
}

/// A document recorded for the workflows rather than applied to stock (855, 180, 997 in).
#[derive(Debug, Clone, Serialize)]
pub struct DocumentNote {
    pub set: String,
    pub control: String,
    pub summary: String,
}

/// Open expected supply of `item` at `location` under `reference` (a PO number), if any.
pub type OpenSupply<'a> = &'a dyn Fn(&ItemId, &LocationId, &str) -> Option<i64>;

/// Which envelope a rejection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// ISA..IEA: nothing in it applied.
    Interchange,
    /// GS..GE: none of its sets applied.
    Group,
    /// ST..SE: none of its lines applied.
    Set,
}

/// An envelope the 997 rejects: nothing under it applied.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub level: Level,
    /// `sender/ISA13[/GS06[/ST02]]`.
    pub control: String,
    /// Every error that rejects it, each naming its segment.
    pub errors: Vec<String>,
    /// The `schema_violation` record that says so.
    pub exception_id: String,
}

/// Everything an interchange file maps to.
#[derive(Debug, Default)]
pub struct Mapped {
    pub events: Vec<Event>,
    pub orders: Vec<OrderIn>,
    /// Return authorizations (180) to start as return workflows.
    pub returns: Vec<crossdock_model::event::ReturnAuthorized>,
    pub snapshots: Vec<SnapshotRow>,
    pub documents: Vec<DocumentNote>,
    pub exceptions: Vec<ExceptionRecord>,
    /// One per functional group when the partner is acknowledged.
    pub acks: Vec<FunctionalAck997>,
    /// What happened, a line per set, for the file's report.
    pub notes: Vec<String>,
    /// The interchanges, groups and sets the 997s reject (whether or not they are sent).
    pub rejected: Vec<Rejection>,
    /// The transaction sets accepted (AK5 `A` or `E`) and mapped.
    pub sets_accepted: usize,
}

impl Mapped {
    /// Whether the file was refused as a whole: something was rejected and no set accepted.
    pub fn refused(&self) -> bool {
        self.sets_accepted == 0 && !self.rejected.is_empty()
    }
}

/// Maps a parsed document from `partner`. `file` is the name the input is filed under; exception
/// entities (`file:<partner>/<file>#...`) carry it so a replay can find it.
pub fn map_document(
    doc: &Document,
    partner: &PartnerSpec,
    master: &MasterData,
    open_supply: OpenSupply<'_>,
    file: &str,
    received_at: Timestamp,
) -> Mapped {
    map_document_with(
        doc,
        partner,
        master,
        open_supply,
        &|_| false,
        file,
        received_at,
    )
}

/// Whether a purchase order is run by a procurement workflow: its 856s become
/// `asn.received.v1` for the workflow to match line by line (and hold for a decision).
pub type WorkflowPo<'a> = &'a dyn Fn(&str) -> bool;

/// [`map_document`], knowing which POs are workflows.
pub fn map_document_with(
    doc: &Document,
    partner: &PartnerSpec,
    master: &MasterData,
    open_supply: OpenSupply<'_>,
    workflow_po: WorkflowPo<'_>,
    file: &str,
    received_at: Timestamp,
) -> Mapped {
    let mut out = Mapped::default();
    // Every diagnostic of the file: the envelopes', then each set's as it is read. Positions
    // are the file's, so each 997 finds its own.
    let mut diags: Vec<Diagnostic> = doc.diagnostics.clone();
    let typed: Vec<Vec<Vec<Option<TypedSet>>>> = doc
        .interchanges
        .iter()
        .map(|i| {
            i.groups
                .iter()
                .map(|g| g.sets.iter().map(|s| read_set(s, &mut diags)).collect())
                .collect()
        })
        .collect();
    for (interchange, typed) in doc.interchanges.iter().zip(typed) {
        let h = &interchange.header;
        let sender = h.sender_id.trim();
        // The verdict, before anything is mapped: only what it accepts is.
        let verdict = FunctionalAck997::for_interchange(interchange, &diags);
        let envelope = Envelope {
            partner,
            file,
            control: format!("{sender}/{}", h.control_number),
        };
        let interchange_rejected = {
            let errors = interchange.envelope_errors(&diags);
            if !errors.is_empty() {
                envelope.reject(
                    &mut out,
                    Level::Interchange,
                    format!("interchange {:09} from {sender}", h.control_number),
                    &errors,
                    interchange.raw_segments(),
                );
            }
            !errors.is_empty()
        };
        for ((group, ack), typed) in interchange.groups.iter().zip(&verdict).zip(typed) {
            let group_key = format!("{}/{}", envelope.control, group.control_number);
            // A rejection is recorded once, for the outermost envelope that is wrong.
            let mut said = interchange_rejected;
            if !said {
                let errors = group.envelope_errors(&diags);
                if !errors.is_empty() {
                    envelope.inner(group_key.clone()).reject(
                        &mut out,
                        Level::Group,
                        format!(
                            "functional group {} ({})",
                            group.control_number, group.functional_id
                        ),
                        &errors,
                        group.raw_segments(),
                    );
                    said = true;
                }
            }
            for ((set, set_ack), typed) in group.sets.iter().zip(&ack.sets).zip(typed) {
                let doc_key = format!("{group_key}/{}", set.control_number);
                let Some(typed) = typed.filter(|_| set_ack.status.is_accepted()) else {
                    if !said {
                        envelope.inner(doc_key).reject(
                            &mut out,
                            Level::Set,
                            format!("transaction set {} {}", set.id, set.control_number),
                            &set.errors(&diags),
                            set.raw_segments(),
                        );
                    }
                    out.notes.push(format!(
                        "set {} {}: rejected, nothing applied",
                        set.id, set.control_number
                    ));
                    continue;
                };
                let ctx = Ctx {
                    partner,
                    workflow_po,
                    master,
                    set,
                    file,
                    doc_key,
                    time: set_time(group, received_at),
                    received_at,
                };
                map_set(&ctx, &typed, open_supply, &mut diags, &mut out);
                out.sets_accepted += 1;
            }
        }
        // The 997s again, with the lines' warnings: a warning turns `A` into `E`, never a
        // verdict into another, so they accept exactly the sets that were mapped.
        let acks = FunctionalAck997::for_interchange(interchange, &diags);
        for ((group, before), after) in interchange.groups.iter().zip(&verdict).zip(acks) {
            debug_assert!(
                before
                    .sets
                    .iter()
                    .zip(&after.sets)
                    .all(|(b, a)| b.status.is_accepted() == a.status.is_accepted()),
                "a mapping warning changed a 997 verdict"
            );
            if partner.acknowledge && group.functional_id != "FA" {
                out.acks.push(after);
            }
        }
    }
    out
}

/// Reads a set with its typed layout; a set this crate does not read is an error on its ST01,
/// so the 997 rejects it (AK5 `R`) rather than accepting what nothing applies.
fn read_set(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<TypedSet> {
    let before = diags.len();
    let typed = TypedSet::read(set, diags);
    if typed.is_none() && !diags[before..].iter().any(Diagnostic::is_error) {
        let reason = if crossdock_x12::sets::SET_IDS.contains(&set.id.as_str()) {
            format!("set {} {} cannot be read", set.id, set.control_number)
        } else {
            format!("transaction set {} is not supported", set.id)
        };
        diags.push(
            Diagnostic::error(DiagCode::UnexpectedSegment, reason)
                .at(set.position, "ST")
                .element(1),
        );
    }
    typed
}

/// At most this many characters of a rejected envelope are kept in its exception record; the
/// whole file stays where the hub filed it.
const RAW_MAX: usize = 64 * 1024;

/// An envelope of the file being rejected.
struct Envelope<'a> {
    partner: &'a PartnerSpec,
    file: &'a str,
    /// `sender/ISA13[/GS06[/ST02]]`.
    control: String,
}

impl Envelope<'_> {
    /// An envelope inside this one, with its own control key.
    fn inner(&self, control: String) -> Self {
        Envelope { control, ..*self }
    }

    /// Records that the 997 rejects this envelope: a `schema_violation` naming the file, the
    /// envelope and every error (each with its segment), keeping the envelope as read.
    fn reject<'s>(
        &self,
        out: &mut Mapped,
        level: Level,
        what: String,
        errors: &[&Diagnostic],
        raw: impl Iterator<Item = &'s Segment>,
    ) {
        let named: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let mut text = String::new();
        let mut left = 0usize;
        for seg in raw {
            if text.len() < RAW_MAX {
                text.push_str(&segment_text(seg));
                text.push('\n');
            } else {
                left += 1;
            }
        }
        if left > 0 {
            text.push_str(&format!(
                "... {left} more segments (the whole file is kept as {})\n",
                self.file
            ));
        }
        let record = ExceptionRecord::open(
            ExceptionKind::SchemaViolation,
            &format!("x12\0{}\0{}", self.partner.id, self.control),
            format!("file:{}/{}#{}", self.partner.id, self.file, self.control),
            Some(format!("x12:{}", self.control)),
            format!(
                "{what} rejected, nothing in it applied: {} (file {})",
                named.join("; "),
                self.file
            ),
            Some(text),
            Timestamp::now(),
        );
        out.notes
            .push(format!("{what}: rejected: {}", named.join("; ")));
        out.rejected.push(Rejection {
            level,
            control: self.control.clone(),
            errors: named,
            exception_id: record.id.clone(),
        });
        out.exceptions.push(record);
    }
}

/// Where in a set a problem is: the line (for the exception's id), the segment and element.
#[derive(Clone, Copy)]
struct At<'s> {
    line: &'s str,
    seg: Option<&'s Segment>,
    element: usize,
}

/// Context of one transaction set.
struct Ctx<'a> {
    partner: &'a PartnerSpec,
    workflow_po: WorkflowPo<'a>,
    master: &'a MasterData,
    set: &'a TransactionSet,
    file: &'a str,
    /// `sender/ISA13/GS06/ST02`.
    doc_key: String,
    /// When the set says it was made (its group's date), else when it arrived.
    time: Timestamp,
    received_at: Timestamp,
}

impl Ctx<'_> {
    fn correlation(&self) -> String {
        format!("x12:{}", self.doc_key)
    }

    fn event(&self, line: &str, data: EventData, time: Timestamp) -> Event {
        Event {
            id: format!("x12:{}/{line}", self.doc_key),
            source: self.partner.source.clone(),
            time,
            sequence: None,
            correlation_id: self.correlation(),
            causation_id: None,
            data,
            received_at: self.received_at,
        }
    }

    /// Adds event `at.line` when `data` passes the check every door makes
    /// ([`EventData::validate`], as `POST /v1/events` does); otherwise the line is a
    /// `schema_violation` on `at` (and a 997 note) and nothing is added. Returns whether it was
    /// added.
    fn emit(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        at: At<'_>,
        data: EventData,
        time: Timestamp,
    ) -> bool {
        if !self.check(out, diags, at, &data) {
            return false;
        }
        out.events.push(self.event(at.line, data, time));
        true
    }

    /// Whether `data` passes [`EventData::validate`]; when it does not, the line is a
    /// `schema_violation` on `at` (and a 997 note).
    fn check(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        at: At<'_>,
        data: &EventData,
    ) -> bool {
        let Err(e) = data.validate() else {
            return true;
        };
        let reason = format!(
            "{} line {} is refused: {} {e}",
            self.set.id,
            at.line,
            data.type_name()
        );
        self.problem(out, diags, ExceptionKind::SchemaViolation, at, reason);
        false
    }

    /// Raises an exception about segment `at.seg` (kept raw) and a 997 note at its element.
    fn problem(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        kind: ExceptionKind,
        at: At<'_>,
        reason: String,
    ) {
        let At { line, seg, element } = at;
        let raw = seg.map(segment_text);
        out.exceptions.push(ExceptionRecord::open(
            kind,
            &format!("x12\0{}\0{}\0{line}", self.partner.id, self.doc_key),
            format!(
                "file:{}/{}#{}/{line}",
                self.partner.id, self.file, self.doc_key
            ),
            Some(self.correlation()),
            format!(
                "{} (file {}, set {} line {line})",
                reason, self.file, self.set.id
            ),
            raw,
            Timestamp::now(),
        ));
        // A problem with no segment of its own (no location anywhere) is noted on the set's ST,
        // so the 997 still says the set was accepted with errors.
        let d = Diagnostic::warning(DiagCode::ElementValue, reason);
        diags.push(match seg {
            Some(s) => d.at(s.position, &s.id).element(element),
            None => d.at(self.set.position, "ST"),
        });
    }

    /// The item a line names: the first of its product ids master data resolves.
    fn item(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        line: &str,
        ids: &[ProductId],
        seg: Option<&Segment>,
    ) -> Option<ItemId> {
        for p in ids {
            if let Ok(item) = self.master.resolve_item(&self.partner.id, &p.id) {
                return Some(item);
            }
        }
        let named: Vec<String> = ids
            .iter()
            .map(|p| format!("{} {}", p.qualifier, p.id))
            .collect();
        let reason = if named.is_empty() {
            "the line names no product id".to_string()
        } else {
            format!(
                "partner {} item {} is not in the item master or the crosswalk",
                self.partner.id,
                named.join(" / ")
            )
        };
        let element = seg.map_or(0, first_product_element);
        self.problem(
            out,
            diags,
            ExceptionKind::UnknownItem,
            At { line, seg, element },
            reason,
        );
        None
    }

    /// The location named by the first party of one of `entities` with an id, else the
    /// partner's own location.
    fn location(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        line: &str,
        parties: &[&[Party]],
        entities: &[&str],
    ) -> Option<LocationId> {
        for list in parties {
            for entity in entities {
                if let Some(p) = list.iter().find(|p| p.entity == *entity && p.id.is_some()) {
                    let code = p.id.as_deref().unwrap_or_default();
                    match self.master.resolve_location(&self.partner.id, code) {
                        Ok(l) => return Some(l),
                        Err(e) => {
                            let seg = nth_segment(self.set, "N1", 0, |s| s.value(4) == code);
                            self.problem(
                                out,
                                diags,
                                ExceptionKind::UnknownLocation,
                                At {
                                    line,
                                    seg,
                                    element: 4,
                                },
                                e.to_string(),
                            );
                            return None;
                        }
                    }
                }
            }
        }
        if let Some(l) = &self.partner.location {
            return Some(l.clone());
        }
        self.problem(
            out,
            diags,
            ExceptionKind::UnknownLocation,
            At {
                line,
                seg: None,
                element: 0,
            },
            format!(
                "the document names no location ({}) and partner {} has no default location",
                entities.join("/"),
                self.partner.id
            ),
        );
        None
    }

    /// `qty` in `unit`, in the item's base units, exactly; `at.element` is the quantity's.
    fn quantity(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        at: At<'_>,
        item: &ItemId,
        qty: Option<&Decimal>,
        unit: Option<&str>,
    ) -> Option<i64> {
        let Some(q) = qty else {
            self.problem(
                out,
                diags,
                ExceptionKind::SchemaViolation,
                at,
                "the line has no quantity".into(),
            );
            return None;
        };
        let Some(whole) = q.whole() else {
            let text = q.to_x12();
            let fraction = text.split_once('.').map_or("", |(_, f)| f);
            let (kind, reason) = if fraction.bytes().any(|b| b != b'0') {
                (
                    ExceptionKind::UomMismatch,
                    format!("quantity {text} is not a whole number of units"),
                )
            } else {
                (
                    ExceptionKind::SchemaViolation,
                    format!("quantity {text} is out of range"),
                )
            };
            self.problem(out, diags, kind, at, reason);
            return None;
        };
        let converted = crossdock_master::Uom::parse(unit.unwrap_or("EA")).and_then(|u| {
            self.master
                .to_base(item, whole, &u)
                .map_err(|e| e.to_string())
        });
        match converted {
            Ok(base) => Some(base),
            Err(e) => {
                self.problem(
                    out,
                    diags,
                    ExceptionKind::UomMismatch,
                    At {
                        element: at.element + 1,
                        ..at
                    },
                    e,
                );
                None
            }
        }
    }
}

/// Maps one accepted set (read as `typed`).
fn map_set(
    ctx: &Ctx<'_>,
    typed: &TypedSet,
    open_supply: OpenSupply<'_>,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let set = ctx.set;
    let before = (out.events.len(), out.exceptions.len());
    match typed {
        TypedSet::InventoryAdvice(s) => inventory_846(ctx, s, diags, out),
        TypedSet::PurchaseOrder(s) => order_850(ctx, s, diags, out),
        TypedSet::Asn(s) => asn_856(ctx, s, open_supply, diags, out),
        TypedSet::StockTransferShipment(s) => transfer_943(ctx, s, diags, out),
        TypedSet::StockTransferReceipt(s) => receipt_944(ctx, s, diags, out),
        TypedSet::ShippingAdvice(s) => shipped_945(ctx, s, diags, out),
        TypedSet::InventoryAdjustment(s) => adjustment_947(ctx, s, diags, out),
        TypedSet::PoAck(s) => {
            po_ack_855(ctx, s, diags, out);
            out.documents.push(DocumentNote {
                set: "855".into(),
                control: ctx.doc_key.clone(),
                summary: serde_json::to_string(&typed.clone().without_raw()).unwrap_or_default(),
            });
        }
        TypedSet::ReturnAuthorization(s) => {
            return_180(ctx, s, diags, out);
            out.documents.push(DocumentNote {
                set: "180".into(),
                control: ctx.doc_key.clone(),
                summary: serde_json::to_string(&typed.clone().without_raw()).unwrap_or_default(),
            });
        }
        other => out.documents.push(DocumentNote {
            set: other.id().to_string(),
            control: ctx.doc_key.clone(),
            summary: serde_json::to_string(&other.clone().without_raw()).unwrap_or_default(),
        }),
    }
    out.notes.push(format!(
        "set {} {}: {} events, {} exceptions",
        set.id,
        set.control_number,
        out.events.len() - before.0,
        out.exceptions.len() - before.1
    ));
}

fn inventory_846(
    ctx: &Ctx<'_>,
    s: &InventoryAdvice846,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let time = at(s.date.as_ref(), s.time.as_ref()).unwrap_or(ctx.time);
    for (n, line) in s.items.iter().enumerate() {
        let no = (n + 1).to_string();
        let seg = nth_segment(ctx.set, "LIN", n, |_| true);
        let Some(item) = ctx.item(out, diags, &no, &line.product_ids, seg) else {
            continue;
        };
        let Some(location) = ctx.location(
            out,
            diags,
            &no,
            &[&line.parties, &s.parties],
            &["WH", "ST", "SF"],
        ) else {
            continue;
        };
        for q in &line.quantities {
            let Some(meaning) = ctx.partner.qty_846.get(&q.qualifier) else {
                out.notes.push(format!(
                    "846 line {no}: quantity qualifier {} ignored",
                    q.qualifier
                ));
                continue;
            };
            let qseg = nth_segment(ctx.set, "QTY", 0, |x| {
                x.position > seg.map_or(0, |s| s.position) && x.value(1) == q.qualifier
            });
            let qline = format!("{no}/{}", q.qualifier);
            let at = At {
                line: &qline,
                seg: qseg,
                element: 2,
            };
            let Some(qty) = ctx.quantity(
                out,
                diags,
                at,
                &item,
                q.quantity.as_ref(),
                q.unit.as_deref(),
            ) else {
                continue;
            };
            let count = EventData::Counted(Counted {
                item: item.clone(),
                location: location.clone(),
                qty,
                lot: None,
            });
            match meaning {
                QtyMeaning::Counted => {
                    ctx.emit(out, diags, at, count, time);
                }
                // A snapshot row is a count kept for reconciliation: checked as one.
                QtyMeaning::Snapshot => {
                    if ctx.check(out, diags, at, &count) {
                        out.snapshots.push(SnapshotRow {
                            item: item.clone(),
                            location: location.clone(),
                            qty,
                            as_of: time,
                        });
                    }
                }
            }
        }
    }
}

fn order_850(ctx: &Ctx<'_>, s: &PurchaseOrder850, diags: &mut Vec<Diagnostic>, out: &mut Mapped) {
    let mut lines = Vec::new();
    for (n, line) in s.lines.iter().enumerate() {
        let no = line
            .line_number
            .clone()
            .unwrap_or_else(|| (n + 1).to_string());
        let seg = nth_segment(ctx.set, "PO1", n, |_| true);
        let Some(item) = ctx.item(out, diags, &no, &line.product_ids, seg) else {
            continue;
        };
        let at = At {
            line: &no,
            seg,
            element: 2,
        };
        let Some(qty) = ctx.quantity(
            out,
            diags,
            at,
            &item,
            line.quantity.as_ref(),
            line.unit.as_deref(),
        ) else {
            continue;
        };
        let line = OrderLine {
            line_number: line.line_number.clone(),
            item,
            qty,
            index: n,
        };
        // The line as the order it starts will carry it (without a channel the order is
        // refused whole when it is placed).
        if let Some(channel) = &ctx.partner.channel {
            let one = order_captured(ctx.partner, channel.clone(), s, std::slice::from_ref(&line));
            if !ctx.check(out, diags, at, &one) {
                continue;
            }
        }
        lines.push(line);
    }
    out.orders.push(OrderIn {
        po_number: s.po_number.clone(),
        correlation_id: ctx.correlation(),
        lines,
        po: s.clone(),
    });
}

impl OrderIn {
    /// The `order.captured.v1` this order starts on `channel` (see [`order_captured`]).
    pub fn captured(&self, partner: &PartnerSpec, channel: ChannelId) -> EventData {
        order_captured(partner, channel, &self.po, &self.lines)
    }
}

/// The `order.captured.v1` a partner's 850 starts on `channel`: order `<partner>:<po>` (so a
/// resent 850 is the same order), the lines of one item merged, shipped to the `ST` party,
/// already sold and taking backorders (a trading partner's PO is answered line by line).
pub fn order_captured(
    partner: &PartnerSpec,
    channel: ChannelId,
    po: &PurchaseOrder850,
    lines: &[OrderLine],
) -> EventData {
    use crossdock_model::event::{Credit, CreditDecision, OrderCaptured, ShipTo};
    let mut merged: Vec<crossdock_model::event::OrderLine> = Vec::new();
    for l in lines {
        match merged.iter_mut().find(|w| w.item == l.item) {
            // Saturating: a sum beyond the bound is refused by the check, never wrapped.
            Some(w) => w.qty = w.qty.saturating_add(l.qty),
            None => merged.push(crossdock_model::event::OrderLine {
                item: l.item.clone(),
                qty: l.qty,
            }),
        }
    }
    let ship_to = po
        .parties
        .iter()
        .find(|p| p.entity == "ST")
        .and_then(|p| p.id.clone().or_else(|| p.name.clone()))
        .unwrap_or_else(|| partner.id.clone());
    EventData::OrderCaptured(OrderCaptured {
        order: format!("{}:{}", partner.id, po.po_number),
        channel,
        lines: merged,
        ship_to: ShipTo {
            name: None,
            region: ship_to,
            country: None,
            postal_code: None,
        },
        amount_minor: 0,
        credit: Credit {
            decision: CreditDecision::NotRequired,
            note: format!("an order from trading partner {}", partner.id),
        },
        sold: false,
        backorder: true,
        origin: format!("edi:{}", partner.id),
    })
}

fn asn_856(
    ctx: &Ctx<'_>,
    s: &Asn856,
    open_supply: OpenSupply<'_>,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let expected_at = s
        .dates
        .iter()
        .find(|d| d.qualifier == "017" || d.qualifier == "067")
        .and_then(|d| at(d.date.as_ref(), d.time.as_ref()))
        .unwrap_or(ctx.time);
    // Walk the hierarchy keeping the parties and the nearest PO above each item.
    let mut items = Vec::new();
    fn walk<'a>(
        node: &'a HlNode,
        parties: Vec<&'a [Party]>,
        po: Option<&'a str>,
        items: &mut Vec<AsnLine<'a>>,
    ) {
        let mut parties = parties;
        parties.insert(0, &node.parties);
        let po = node.order.as_ref().map(|o| o.po_number.as_str()).or(po);
        if node.item.is_some() {
            items.push((node, parties.clone(), po));
        }
        for child in &node.children {
            walk(child, parties.clone(), po, items);
        }
    }
    for node in &s.hierarchy {
        walk(node, Vec::new(), None, &mut items);
    }
    let mut used: HashMap<(ItemId, LocationId, String), i64> = HashMap::new();
    let mut for_workflows: Vec<(String, Vec<crossdock_model::event::AsnLine>)> = Vec::new();
    for (n, (node, parties, po)) in items.into_iter().enumerate() {
        let Some(asn_item) = &node.item else { continue };
        let no = (n + 1).to_string();
        if let Some(po) = po
            && (ctx.workflow_po)(po)
        {
            // The workflow matches the line (an unknown item or a substitution waits there for
            // a decision): pass the item as resolved, else as the partner named it.
            let item = asn_item
                .product_ids
                .iter()
                .find_map(|p| ctx.master.resolve_item(&ctx.partner.id, &p.id).ok())
                .map(|i| i.to_string())
                .or_else(|| asn_item.product_ids.first().map(|p| p.id.clone()));
            let qty = asn_item.quantity_shipped.as_ref().and_then(|q| q.whole());
            let seg = nth_segment(ctx.set, "SN1", n, |_| true);
            let at = At {
                line: &no,
                seg,
                element: 2,
            };
            match (item, qty) {
                (Some(item), Some(qty)) if qty > 0 => {
                    let line = crossdock_model::event::AsnLine { item, qty };
                    // The line as the event will carry it, alone, so a refusal names its SN1.
                    let one = EventData::AsnReceived(crossdock_model::event::AsnReceived {
                        asn: s.shipment_id.clone(),
                        po: po.to_string(),
                        lines: vec![line.clone()],
                        expected_at: Some(expected_at),
                    });
                    if !ctx.check(out, diags, at, &one) {
                        continue;
                    }
                    match for_workflows.iter_mut().find(|(p, _)| p == po) {
                        Some((_, lines)) => lines.push(line),
                        None => for_workflows.push((po.to_string(), vec![line])),
                    }
                }
                _ => ctx.problem(
                    out,
                    diags,
                    ExceptionKind::SchemaViolation,
                    at,
                    format!(
                        "ASN {} line {no} needs a product id and a whole positive quantity",
                        s.shipment_id
                    ),
                ),
            }
            continue;
        }
        let seg = nth_segment(ctx.set, "LIN", n, |_| true);
        let Some(item) = ctx.item(out, diags, &no, &asn_item.product_ids, seg) else {
            continue;
        };
        let Some(location) = ctx.location(out, diags, &no, &parties, &["ST", "WH"]) else {
            continue;
        };
        let sseg = nth_segment(ctx.set, "SN1", n, |_| true);
        let Some(qty) = ctx.quantity(
            out,
            diags,
            At {
                line: &no,
                seg: sseg,
                element: 2,
            },
            &item,
            asn_item.quantity_shipped.as_ref(),
            asn_item.unit.as_deref(),
        ) else {
            continue;
        };
        let Some(po) = po else {
            ctx.problem(
                out,
                diags,
                ExceptionKind::AsnMismatch,
                At {
                    line: &no,
                    seg,
                    element: 1,
                },
                format!(
                    "ASN {} line {no} ({item}) names no purchase order",
                    s.shipment_id
                ),
            );
            continue;
        };
        // What this ASN may still move: the PO's open supply, plus what this same ASN moved
        // before (a file handled again: those lines are repeats), less what earlier lines of
        // this file take.
        let asn_ref = format!("asn:{}", s.shipment_id);
        let key = (item.clone(), location.clone(), po.to_string());
        let taken = used.get(&key).copied().unwrap_or(0);
        let open = open_supply(&item, &location, po)
            .unwrap_or(0)
            .saturating_add(open_supply(&item, &location, &asn_ref).unwrap_or(0))
            .saturating_sub(taken);
        if open <= 0 {
            ctx.problem(out, diags, ExceptionKind::AsnMismatch, At { line: &no, seg, element: 1 }, format!(
                "ASN {} ships {qty} of {item} to {location} on PO {po}, which has no open line for it",
                s.shipment_id
            ));
            continue;
        }
        if qty > open {
            ctx.problem(
                out,
                diags,
                ExceptionKind::AsnMismatch,
                At {
                    line: &no,
                    seg: sseg,
                    element: 2,
                },
                format!(
                    "ASN {} ships {qty} of {item} on PO {po}, {} more than the {open} still open",
                    s.shipment_id,
                    qty.saturating_sub(open)
                ),
            );
            continue;
        }
        // The PO's open supply becomes the ASN's, with the ASN's date: both halves or neither,
        // each checked as it will be applied.
        let from_po = EventData::SupplyExpected(SupplyExpected {
            reference: po.to_string(),
            item: item.clone(),
            location: location.clone(),
            qty: qty.saturating_neg(),
            expected_at,
        });
        let to_asn = EventData::SupplyExpected(SupplyExpected {
            reference: asn_ref,
            item,
            location,
            qty,
            expected_at,
        });
        let po_line = format!("{no}/po");
        let asn_line = format!("{no}/asn");
        let at_po = At {
            line: &po_line,
            seg: sseg,
            element: 2,
        };
        let at_asn = At {
            line: &asn_line,
            ..at_po
        };
        if !(ctx.check(out, diags, at_po, &from_po) && ctx.check(out, diags, at_asn, &to_asn)) {
            continue;
        }
        used.insert(key, taken.saturating_add(qty));
        out.events.push(ctx.event(&po_line, from_po, ctx.time));
        out.events.push(ctx.event(&asn_line, to_asn, ctx.time));
    }
    for (po, lines) in for_workflows {
        let line = format!("asn/{po}");
        let at = At {
            line: &line,
            seg: nth_segment(ctx.set, "BSN", 0, |_| true),
            element: 2,
        };
        ctx.emit(
            out,
            diags,
            at,
            EventData::AsnReceived(crossdock_model::event::AsnReceived {
                asn: s.shipment_id.clone(),
                po,
                lines,
                expected_at: Some(expected_at),
            }),
            ctx.time,
        );
    }
}

/// 855: the supplier's answer to our PO (BAK02: `RD`/`RJ` rejected, `AC`/`AE`/`AP` accepted
/// with changes, anything else accepted).
fn po_ack_855(
    ctx: &Ctx<'_>,
    s: &crossdock_x12::sets::PoAck855,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    use crossdock_model::event::{AckStatus, PurchaseOrderAcknowledged};
    let status = match s.ack_type.as_str() {
        "RD" | "RJ" | "RF" | "RO" => AckStatus::Rejected,
        "AC" | "AE" | "AP" => AckStatus::AcceptedWithChanges,
        _ => AckStatus::Accepted,
    };
    let at = At {
        line: "ack",
        seg: nth_segment(ctx.set, "BAK", 0, |_| true),
        element: 3,
    };
    ctx.emit(
        out,
        diags,
        at,
        EventData::PurchaseOrderAcknowledged(PurchaseOrderAcknowledged {
            po: s.po_number.clone(),
            status,
        }),
        ctx.time,
    );
}

/// 180: a return authorization becomes a return workflow (items through master data; the
/// returning location is the `RL`/`ST` party, else the partner's own location).
fn return_180(
    ctx: &Ctx<'_>,
    s: &crossdock_x12::sets::ReturnAuthorization180,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let Some(location) = ctx.location(out, diags, "0", &[&s.parties], &["RL", "ST", "WH"]) else {
        return;
    };
    use crossdock_model::event::{OrderLine as ReturnLine, ReturnAuthorized};
    let rma = format!("{}:{}", ctx.partner.id, s.reference);
    let order = s.order.as_ref().map(|o| o.po_number.clone());
    let reason = s
        .reason
        .as_ref()
        .and_then(|r| r.description.clone().or_else(|| r.request_reason.clone()))
        .unwrap_or_else(|| format!("X12 180 from {}", ctx.partner.id));
    let authorized = |lines: Vec<ReturnLine>| ReturnAuthorized {
        rma: rma.clone(),
        order: order.clone(),
        location: location.clone(),
        lines,
        reason: reason.clone(),
    };
    let mut lines: Vec<ReturnLine> = Vec::new();
    for (n, item) in s.items.iter().enumerate() {
        let no = (n + 1).to_string();
        let seg = nth_segment(ctx.set, "BLI", n, |_| true);
        let Some(id) = ctx.item(out, diags, &no, &item.product_ids, seg) else {
            continue;
        };
        let at = At {
            line: &no,
            seg,
            element: 3,
        };
        let Some(qty) = ctx.quantity(
            out,
            diags,
            at,
            &id,
            item.quantity.as_ref(),
            item.unit.as_deref(),
        ) else {
            continue;
        };
        // The line as the return will carry it, alone, so a refusal names its BLI.
        let line = ReturnLine { item: id, qty };
        let one = EventData::ReturnAuthorized(authorized(vec![line.clone()]));
        if !ctx.check(out, diags, at, &one) {
            continue;
        }
        match lines.iter_mut().find(|l| l.item == line.item) {
            // Saturating: a sum beyond the bound is refused by the check below, never wrapped.
            Some(l) => l.qty = l.qty.saturating_add(line.qty),
            None => lines.push(line),
        }
    }
    if lines.is_empty() {
        return;
    }
    let whole = authorized(lines);
    let at = At {
        line: "0",
        seg: nth_segment(ctx.set, "BGN", 0, |_| true),
        element: 2,
    };
    if ctx.check(out, diags, at, &EventData::ReturnAuthorized(whole.clone())) {
        out.returns.push(whole);
    }
}

fn transfer_943(
    ctx: &Ctx<'_>,
    s: &StockTransferShipment943,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let transfer = s
        .shipment_id
        .clone()
        .or_else(|| s.depositor_order_number.clone())
        .unwrap_or_else(|| ctx.doc_key.clone());
    for (n, line) in s.lines.iter().enumerate() {
        let w04 = WarehouseLine {
            segment: "W04",
            qty_element: 1,
            product_ids: &line.product_ids,
            upc_case_code: line.upc_case_code.as_ref(),
            qty: line.quantity.as_ref(),
            unit: line.unit.as_deref(),
        };
        let Some(r) = ctx.warehouse_line(out, diags, n, &w04, &s.parties, &["WH", "ST"]) else {
            continue;
        };
        let Some(from) = ctx.location(out, diags, &r.no, &[&s.parties], &["SF"]) else {
            continue;
        };
        let data = EventData::TransferShipped(TransferShipped {
            transfer: transfer.clone(),
            item: r.item.clone(),
            from,
            to: r.location.clone(),
            qty: r.qty,
        });
        let time = at(s.date.as_ref(), None).unwrap_or(ctx.time);
        ctx.emit(out, diags, r.at(), data, time);
    }
}

fn receipt_944(
    ctx: &Ctx<'_>,
    s: &StockTransferReceipt944,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let transfer = s
        .shipment_reference
        .clone()
        .or_else(|| s.depositor_order_number.clone())
        .unwrap_or_else(|| s.receipt_number.clone());
    for (n, line) in s.lines.iter().enumerate() {
        let w07 = WarehouseLine {
            segment: "W07",
            qty_element: 1,
            product_ids: &line.product_ids,
            upc_case_code: line.upc_case_code.as_ref(),
            qty: line.quantity.as_ref(),
            unit: line.unit.as_deref(),
        };
        let Some(r) = ctx.warehouse_line(out, diags, n, &w07, &s.parties, &["WH", "ST"]) else {
            continue;
        };
        let data = EventData::TransferReceived(TransferReceived {
            transfer: transfer.clone(),
            item: r.item.clone(),
            location: r.location.clone(),
            qty: r.qty,
        });
        let time = at(s.date.as_ref(), None).unwrap_or(ctx.time);
        ctx.emit(out, diags, r.at(), data, time);
    }
}

fn shipped_945(
    ctx: &Ctx<'_>,
    s: &ShippingAdvice945,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    let order = s
        .depositor_order_number
        .clone()
        .or_else(|| s.po_number.clone())
        .unwrap_or_else(|| ctx.doc_key.clone());
    let shipped = |lines: Vec<ShipLine>| {
        EventData::Shipped(Shipped {
            order: order.clone(),
            shipment: s.shipment_id.clone(),
            lines,
        })
    };
    let mut lines = Vec::new();
    for (n, line) in s.lines.iter().enumerate() {
        let w12 = WarehouseLine {
            segment: "W12",
            qty_element: 4,
            product_ids: &line.product_ids,
            upc_case_code: line.upc_case_code.as_ref(),
            qty: line.quantity_shipped.as_ref(),
            unit: line.unit.as_deref(),
        };
        let Some(r) = ctx.warehouse_line(out, diags, n, &w12, &s.parties, &["SF", "WH"]) else {
            continue;
        };
        match r.qty {
            // Nothing shipped on this line (W12 status "short" or "cancelled"): nothing to apply.
            0 => {}
            q if q < 0 => {
                let reason = format!("945 line {} ships a negative quantity ({q})", r.no);
                ctx.problem(out, diags, ExceptionKind::SchemaViolation, r.at(), reason);
            }
            _ => {
                let line = ShipLine {
                    item: r.item.clone(),
                    location: r.location.clone(),
                    qty: r.qty,
                };
                // The line as the shipment will carry it, alone, so a refusal names its W12.
                if ctx.check(out, diags, r.at(), &shipped(vec![line.clone()])) {
                    lines.push(line);
                }
            }
        }
    }
    if lines.is_empty() {
        out.notes.push("945: no line shipped anything".into());
        return;
    }
    let at_w06 = At {
        line: "shipment",
        seg: nth_segment(ctx.set, "W06", 0, |_| true),
        element: 2,
    };
    let time = at(s.date.as_ref(), None).unwrap_or(ctx.time);
    ctx.emit(out, diags, at_w06, shipped(lines), time);
}

fn adjustment_947(
    ctx: &Ctx<'_>,
    s: &InventoryAdjustment947,
    diags: &mut Vec<Diagnostic>,
    out: &mut Mapped,
) {
    for (n, line) in s.lines.iter().enumerate() {
        let w19 = WarehouseLine {
            segment: "W19",
            qty_element: 2,
            product_ids: &line.product_ids,
            upc_case_code: line.upc_case_code.as_ref(),
            qty: line.quantity.as_ref(),
            unit: line.unit.as_deref(),
        };
        let Some(r) = ctx.warehouse_line(out, diags, n, &w19, &s.parties, &["WH", "SF"]) else {
            continue;
        };
        let data = match ctx.partner.status_947.get(&line.reason) {
            Some(&to) => {
                let (from, to) = if to == StockStatus::Sellable {
                    (StockStatus::Damaged, to)
                } else {
                    (StockStatus::Sellable, to)
                };
                // The units moved whatever the sign; i64::MIN has no magnitude in i64 and is
                // refused by the check as the bound's breach it is.
                let qty = r.qty.checked_abs().unwrap_or(i64::MIN);
                EventData::StatusChanged(StatusChanged {
                    item: r.item.clone(),
                    location: r.location.clone(),
                    qty,
                    from,
                    to,
                    lot: None,
                })
            }
            None => EventData::Adjusted(Adjusted {
                item: r.item.clone(),
                location: r.location.clone(),
                delta: r.qty,
                reason: format!("947 reason {}", line.reason),
                lot: None,
            }),
        };
        let time = at(s.date.as_ref(), None).unwrap_or(ctx.time);
        ctx.emit(out, diags, r.at(), data, time);
    }
}

/// One line of a warehouse set (943 W04, 944 W07, 945 W12, 947 W19) as the mapping needs it.
struct WarehouseLine<'a> {
    /// The segment that carries the line, and the element its quantity is in.
    segment: &'static str,
    qty_element: usize,
    product_ids: &'a [ProductId],
    upc_case_code: Option<&'a String>,
    qty: Option<&'a Decimal>,
    unit: Option<&'a str>,
}

/// A warehouse line resolved: its number, item, location and quantity in base units.
struct Resolved<'s> {
    no: String,
    item: ItemId,
    location: LocationId,
    qty: i64,
    /// The line's segment and its quantity's element, for problems found later.
    seg: Option<&'s Segment>,
    qty_element: usize,
}

impl<'s> Resolved<'s> {
    /// Where the line's quantity is.
    fn at(&self) -> At<'_> {
        At {
            line: &self.no,
            seg: self.seg,
            element: self.qty_element,
        }
    }
}

impl<'c> Ctx<'c> {
    /// Resolves the `n`-th line of a warehouse set: item (its product ids, then the UPC case
    /// code), location (the first of `entities` among `parties`) and quantity. Each failure is
    /// an exception and a 997 note; `None` then.
    fn warehouse_line(
        &self,
        out: &mut Mapped,
        diags: &mut Vec<Diagnostic>,
        n: usize,
        line: &WarehouseLine<'_>,
        parties: &[Party],
        entities: &[&str],
    ) -> Option<Resolved<'c>> {
        let no = (n + 1).to_string();
        let seg = nth_segment(self.set, line.segment, n, |_| true);
        let mut ids = line.product_ids.to_vec();
        ids.extend(line.upc_case_code.map(|u| ProductId {
            qualifier: "UK".into(),
            id: u.clone(),
        }));
        let item = self.item(out, diags, &no, &ids, seg)?;
        let location = self.location(out, diags, &no, &[parties], entities)?;
        let at = At {
            line: &no,
            seg,
            element: line.qty_element,
        };
        let qty = self.quantity(out, diags, at, &item, line.qty, line.unit)?;
        Some(Resolved {
            no,
            item,
            location,
            qty,
            seg,
            qty_element: line.qty_element,
        })
    }
}

/// An 856 item with the parties above it (nearest first) and its PO.
type AsnLine<'a> = (&'a HlNode, Vec<&'a [Party]>, Option<&'a str>);

/// The `n`-th segment `id` in the set that passes `keep`.
fn nth_segment<'a>(
    set: &'a TransactionSet,
    id: &str,
    n: usize,
    keep: impl Fn(&Segment) -> bool,
) -> Option<&'a Segment> {
    set.segments.iter().filter(|s| s.id == id && keep(s)).nth(n)
}

/// The element holding the first product id of a line segment (LIN03, PO107, W1205, ...).
fn first_product_element(seg: &Segment) -> usize {
    match seg.id.as_str() {
        "LIN" => 3,
        "PO1" => 7,
        "W12" => 8,
        "W19" => 5,
        "W04" | "W07" => 5,
        _ => 1,
    }
}

/// A segment as it would be written with `*`, `:` and `^`, for exception records.
pub fn segment_text(seg: &Segment) -> String {
    let mut out = seg.id.clone();
    for e in &seg.elements {
        out.push('*');
        let repeats: Vec<String> = e.repeats().iter().map(|r| r.join(":")).collect();
        out.push_str(&repeats.join("^"));
    }
    out.push('~');
    out
}

/// The group's date and time, else `fallback`.
fn set_time(group: &FunctionalGroup, fallback: Timestamp) -> Timestamp {
    at(group.date.as_ref(), group.time.as_ref()).unwrap_or(fallback)
}

/// A date and optional time of day (taken as UTC) as a timestamp.
pub fn at(date: Option<&Date>, time: Option<&Time>) -> Option<Timestamp> {
    let d = date?;
    let month = time::Month::try_from(d.month()).ok()?;
    let day = time::Date::from_calendar_date(i32::from(d.year()), month, d.day()).ok()?;
    let (h, m, s) = time.map_or((0, 0, 0), |t| {
        let text = t.to_x12();
        let num =
            |r: std::ops::Range<usize>| text.get(r).and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
        (num(0..2), num(2..4), num(4..6))
    });
    let t = time::Time::from_hms(h, m, s).ok()?;
    let us = time::PrimitiveDateTime::new(day, t)
        .assume_utc()
        .unix_timestamp_nanos()
        / 1000;
    Some(Timestamp::from_micros(i64::try_from(us).ok()?))
}
