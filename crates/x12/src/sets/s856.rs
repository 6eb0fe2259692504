//! 856 Ship Notice/Manifest: BSN header and the HL hierarchy as a tree.
//!
//! Each HL becomes an [`HlNode`] with its level (`S` shipment, `O` order, `T` tare, `P` pack,
//! `I` item), the typed content found under it (item: LIN/SN1/PID; order: PRF; pack/tare: MAN
//! marks such as SSCC-18; shipment: TD1 packaging and weight, TD5 carrier; any level: REF, DTM,
//! N1) and its children. Any hierarchy shape works (SOI, SOPI, SOTPI, ...).
//!
//! Hierarchy checks on reading: HL01 present and unique (error), HL02 refers to an HL read
//! before (error; the node is attached at the top so nothing is lost), HL03 present (error) and
//! one of S/O/T/P/I (other codes are kept, a warning), HL01 numbered 1, 2, 3, ... (a warning
//! otherwise). CTT01 is checked against the number of HL segments (a warning).
//!
//! Rendering walks the tree depth-first; HL01 are the node ids when all are present and unique,
//! otherwise 1, 2, 3, ... in tree order; HL02 is the parent's id. CTT01 is the number of HLs.

use serde::{Deserialize, Serialize};

use super::common::*;
use super::s850::check_ctt;
use super::{SetType, beginning};
use crate::diag::{DiagCode, Diagnostic};
use crate::envelope::TransactionSet;
use crate::segment::{Segment, seg};
use crate::value::{Date, Decimal, Time};

/// An advance ship notice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Asn856 {
    /// BSN01 purpose (`00` original, `05` replace).
    pub purpose: String,
    /// BSN02 shipment identification.
    pub shipment_id: String,
    /// BSN03 date.
    pub date: Option<Date>,
    /// BSN04 time.
    pub time: Option<Time>,
    /// BSN05 hierarchical structure code (`0001` S/O/P/I, `0002` S/O/I/P, `0004` S/O/I).
    pub structure: Option<String>,
    /// DTM at header level (`011` shipped, `017` estimated delivery).
    pub dates: Vec<DateRef>,
    /// The top HL nodes (normally one shipment) with their children.
    pub hierarchy: Vec<HlNode>,
    /// The set's segments as read (not rendered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Segment>,
}

/// HL03 hierarchical level code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[derive(Default)]
pub enum HlLevel {
    /// `S`
    Shipment,
    /// `O`
    Order,
    /// `T`
    Tare,
    /// `P`
    Pack,
    /// `I`
    #[default]
    Item,
    /// Any other code, kept as written.
    Other(String),
}

impl HlLevel {
    /// The HL03 code.
    pub fn code(&self) -> &str {
        match self {
            Self::Shipment => "S",
            Self::Order => "O",
            Self::Tare => "T",
            Self::Pack => "P",
            Self::Item => "I",
            Self::Other(code) => code,
        }
    }
}

impl From<String> for HlLevel {
    fn from(code: String) -> Self {
        match code.as_str() {
            "S" => Self::Shipment,
            "O" => Self::Order,
            "T" => Self::Tare,
            "P" => Self::Pack,
            "I" => Self::Item,
            _ => Self::Other(code),
        }
    }
}

impl From<HlLevel> for String {
    fn from(level: HlLevel) -> Self {
        level.code().to_string()
    }
}

/// One HL and what sits under it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlNode {
    /// HL01 (as read; see the module docs for rendering).
    pub id: String,
    /// HL03 level.
    pub level: HlLevel,
    /// HL04 hierarchical child code (`1` has children, `0` none), as read.
    pub child_code: Option<String>,
    /// LIN/SN1/PID of an item level.
    pub item: Option<AsnItem>,
    /// PRF of an order level.
    pub order: Option<OrderRef>,
    /// TD1 packaging and weight.
    pub packaging: Vec<Packaging>,
    /// TD5 carriers.
    pub carriers: Vec<Carrier>,
    /// REF (`BM` bill of lading, `CN` PRO number, `IA` vendor number, ...).
    pub references: Vec<Reference>,
    /// MAN marks (`GM` SSCC-18, `CP` carrier-assigned package id, `UC` UCC-128).
    pub marks: Vec<Mark>,
    /// DTM.
    pub dates: Vec<DateRef>,
    /// N1 loops (`ST` ship to, `SF` ship from, `BY` buying party / store).
    pub parties: Vec<Party>,
    /// Child HL nodes.
    pub children: Vec<HlNode>,
}

/// LIN/SN1/PID of an item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsnItem {
    /// LIN01 assigned id.
    pub line_number: Option<String>,
    /// LIN02..LIN31 product ids.
    pub product_ids: Vec<ProductId>,
    /// SN101 assigned id.
    pub shipped_line_number: Option<String>,
    /// SN102 units shipped.
    pub quantity_shipped: Option<Decimal>,
    /// SN103 unit of measure.
    pub unit: Option<String>,
    /// SN105 quantity ordered.
    pub quantity_ordered: Option<Decimal>,
    /// SN106 unit of measure of the ordered quantity.
    pub ordered_unit: Option<String>,
    /// PID05 description.
    pub description: Option<String>,
}

/// PRF: the purchase order a shipment fills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderRef {
    /// PRF01 purchase order number.
    pub po_number: String,
    /// PRF02 release number.
    pub release: Option<String>,
    /// PRF04 purchase order date.
    pub date: Option<Date>,
}

/// TD1 packaging and weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Packaging {
    /// TD101 packaging code (`CTN25`, `PLT94`).
    pub packaging_code: Option<String>,
    /// TD102 lading quantity.
    pub lading_quantity: Option<Decimal>,
    /// TD106 weight qualifier (`G` gross).
    pub weight_qualifier: Option<String>,
    /// TD107 weight.
    pub weight: Option<Decimal>,
    /// TD108 weight unit (`LB`, `KG`).
    pub weight_unit: Option<String>,
}

/// MAN marks and numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mark {
    /// MAN01 qualifier (`GM` SSCC-18 and application identifier).
    pub qualifier: String,
    /// MAN02 number.
    pub number: String,
}

/// HL reading state: a flat list of nodes with parent indexes, turned into a tree at the end.
struct Flat {
    node: HlNode,
    parent: Option<usize>,
}

impl SetType for Asn856 {
    const ID: &'static str = "856";
    const FUNCTIONAL_ID: &'static str = "SH";
    const BEGINNING: &'static str = "BSN";

    fn read(set: &TransactionSet, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let bsn = beginning(set, Self::BEGINNING, diags)?.clone();
        let mut cx = Ctx { diags };
        let mut asn = Self {
            purpose: cx.required(&bsn, 1, "purpose"),
            shipment_id: cx.required(&bsn, 2, "shipment identification"),
            date: cx.date(&bsn, 3),
            time: cx.time(&bsn, 4),
            structure: bsn.opt(5),
            raw: set.segments.clone(),
            ..Self::default()
        };
        let segs = &set.segments;
        let mut flat: Vec<Flat> = Vec::new();
        let mut ctt = None;
        let mut i = 0;
        while let Some(s) = segs.get(i) {
            if s.id == "HL" {
                read_hl(&mut cx, s, &mut flat);
                i += 1;
                continue;
            }
            let Some(node) = flat.last_mut().map(|f| &mut f.node) else {
                if s.id == "DTM" {
                    asn.dates.push(cx.dtm(s));
                }
                i += 1;
                continue;
            };
            match s.id.as_str() {
                "N1" => {
                    let p = cx.party(segs, &mut i);
                    node.parties.push(p);
                    continue;
                }
                "LIN" => {
                    let item = node.item.get_or_insert_with(AsnItem::default);
                    item.line_number = s.opt(1);
                    item.product_ids = pairs(s, 2, 31);
                }
                "SN1" => {
                    let quantity_shipped = cx.decimal(s, 2);
                    let quantity_ordered = cx.decimal(s, 5);
                    let item = node.item.get_or_insert_with(AsnItem::default);
                    item.shipped_line_number = s.opt(1);
                    item.quantity_shipped = quantity_shipped;
                    item.unit = s.opt(3);
                    item.quantity_ordered = quantity_ordered;
                    item.ordered_unit = s.opt(6);
                }
                // A coded PID (PID01 `S`) has no free-form description and no item data.
                "PID" => {
                    if let Some(description) = s.opt(5) {
                        let item = node.item.get_or_insert_with(AsnItem::default);
                        item.description.get_or_insert(description);
                    }
                }
                "PRF" => {
                    node.order = Some(OrderRef {
                        po_number: cx.required(s, 1, "purchase order number"),
                        release: s.opt(2),
                        date: cx.date(s, 4),
                    })
                }
                "TD1" => {
                    let packaging = Packaging {
                        packaging_code: s.opt(1),
                        lading_quantity: cx.decimal(s, 2),
                        weight_qualifier: s.opt(6),
                        weight: cx.decimal(s, 7),
                        weight_unit: s.opt(8),
                    };
                    node.packaging.push(packaging);
                }
                "TD5" => node.carriers.push(cx.td5(s)),
                "REF" => node.references.push(cx.reference(s)),
                "MAN" => node.marks.push(Mark {
                    qualifier: cx.required(s, 1, "marks qualifier"),
                    number: cx.required(s, 2, "marks and numbers"),
                }),
                "DTM" => node.dates.push(cx.dtm(s)),
                "CTT" => ctt = Some(s),
                _ => {}
            }
            i += 1;
        }
        check_ctt(cx.diags, ctt, flat.len(), "HL segments");
        asn.hierarchy = build_tree(flat);
        Some(asn)
    }

    fn body(&self) -> Vec<Segment> {
        let mut out = vec![seg(
            "BSN",
            [
                e(&self.purpose),
                e(&self.shipment_id),
                od(&self.date),
                ot(&self.time),
                o(&self.structure),
            ],
        )];
        out.extend(self.dates.iter().map(dtm_seg));
        let keep_ids = ids_are_usable(&self.hierarchy);
        let mut counter = 0usize;
        for node in &self.hierarchy {
            render_node(node, None, keep_ids, &mut counter, &mut out);
        }
        out.push(seg("CTT", [count(counter)]));
        out
    }
}

fn read_hl(cx: &mut Ctx<'_>, s: &Segment, flat: &mut Vec<Flat>) {
    let id = cx.required(s, 1, "hierarchical id number");
    let expected = (flat.len() + 1).to_string();
    if !id.is_empty() && id != expected {
        cx.diags.push(
            Diagnostic::warning(
                DiagCode::Hierarchy,
                format!("HL01 is {id:?}; HL ids are expected to count 1, 2, 3, ... (expected {expected})"),
            )
            .at(s.position, "HL")
            .element(1),
        );
    }
    if !id.is_empty() && flat.iter().any(|f| f.node.id == id) {
        cx.diags.push(
            Diagnostic::error(DiagCode::Hierarchy, format!("HL01 {id:?} is used twice"))
                .at(s.position, "HL")
                .element(1),
        );
    }
    let parent = match s.opt(2) {
        None => None,
        Some(parent_id) => {
            let found = flat.iter().rposition(|f| f.node.id == parent_id);
            if found.is_none() {
                cx.diags.push(
                    Diagnostic::error(
                        DiagCode::Hierarchy,
                        format!("HL02 parent {parent_id:?} is not an HL read before this one"),
                    )
                    .at(s.position, "HL")
                    .element(2),
                );
            }
            found
        }
    };
    let code = cx.required(s, 3, "hierarchical level code");
    let level = HlLevel::from(code.clone());
    if let HlLevel::Other(_) = level
        && !code.is_empty()
    {
        cx.diags.push(
            Diagnostic::warning(
                DiagCode::Hierarchy,
                format!("HL03 level {code:?} is none of S, O, T, P, I; kept as written"),
            )
            .at(s.position, "HL")
            .element(3),
        );
    }
    flat.push(Flat {
        node: HlNode {
            id,
            level,
            child_code: s.opt(4),
            ..HlNode::default()
        },
        parent,
    });
}

/// Turns the flat list into a tree. Parents always come before children (HL02 must refer to an
/// HL read before), so attaching from the last node backwards is safe.
fn build_tree(mut flat: Vec<Flat>) -> Vec<HlNode> {
    let mut roots: Vec<(usize, HlNode)> = Vec::new();
    // Children lists per index, filled from the back so that order is kept.
    let mut children: Vec<Vec<HlNode>> = vec![Vec::new(); flat.len()];
    while let Some(Flat { mut node, parent }) = flat.pop() {
        let index = flat.len();
        if let Some(mine) = children.get_mut(index) {
            node.children = std::mem::take(mine);
            node.children.reverse();
        }
        match parent.and_then(|p| children.get_mut(p)) {
            Some(siblings) => siblings.push(node),
            None => roots.push((index, node)),
        }
    }
    roots.reverse();
    roots.into_iter().map(|(_, node)| node).collect()
}

fn ids_are_usable(nodes: &[HlNode]) -> bool {
    fn collect<'a>(nodes: &'a [HlNode], ids: &mut Vec<&'a str>) {
        for n in nodes {
            ids.push(&n.id);
            collect(&n.children, ids);
        }
    }
    let mut ids = Vec::new();
    collect(nodes, &mut ids);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == ids.len() && ids.iter().all(|id| !id.is_empty() && id.len() <= 12)
}

fn render_node(
    node: &HlNode,
    parent: Option<&str>,
    keep_ids: bool,
    counter: &mut usize,
    out: &mut Vec<Segment>,
) {
    *counter += 1;
    let id = if keep_ids {
        node.id.clone()
    } else {
        counter.to_string()
    };
    out.push(seg(
        "HL",
        [
            e(&id),
            parent.and_then(e),
            e(node.level.code()),
            o(&node.child_code),
        ],
    ));
    if let Some(item) = &node.item {
        if item.line_number.is_some() || !item.product_ids.is_empty() {
            let mut values = vec![o(&item.line_number)];
            values.extend(pair_elements(
                item.product_ids.get(..15).unwrap_or(&item.product_ids),
            ));
            out.push(seg("LIN", values));
        }
        if item.quantity_shipped.is_some() || item.unit.is_some() {
            out.push(seg(
                "SN1",
                [
                    o(&item.shipped_line_number),
                    on(&item.quantity_shipped),
                    o(&item.unit),
                    None,
                    on(&item.quantity_ordered),
                    o(&item.ordered_unit),
                ],
            ));
        }
    }
    if let Some(order) = &node.order {
        out.push(seg(
            "PRF",
            [
                e(&order.po_number),
                o(&order.release),
                None,
                od(&order.date),
            ],
        ));
    }
    if let Some(description) = node.item.as_ref().and_then(|i| i.description.as_ref()) {
        out.push(pid_seg(description));
    }
    for p in &node.packaging {
        out.push(seg(
            "TD1",
            [
                o(&p.packaging_code),
                on(&p.lading_quantity),
                None,
                None,
                None,
                o(&p.weight_qualifier),
                on(&p.weight),
                o(&p.weight_unit),
            ],
        ));
    }
    out.extend(node.carriers.iter().map(td5_seg));
    out.extend(node.references.iter().map(|r| ref_seg("REF", r)));
    for m in &node.marks {
        out.push(seg("MAN", [e(&m.qualifier), e(&m.number)]));
    }
    out.extend(node.dates.iter().map(dtm_seg));
    for p in &node.parties {
        out.extend(party_segs(p, true));
    }
    for child in &node.children {
        render_node(child, Some(&id), keep_ids, counter, out);
    }
}
