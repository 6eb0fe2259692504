//! Building blocks shared by the typed transaction sets: parties (the N1 loop), references
//! (REF, N9), dates (DTM, G62), contacts (PER), notes (NTE), product ids by qualifier, carriers
//! (TD5, W27, W66), and the reading/rendering helpers.
//!
//! Reading is forgiving about what it does not know: segments the typed layer does not map are
//! left in the set's `raw` segments. A value that is present but unreadable (a date that is not a
//! date, a quantity that is not a number) is an error diagnostic naming the segment and element;
//! the field is then left empty.

use serde::{Deserialize, Serialize};

use crate::diag::{DiagCode, Diagnostic};
use crate::segment::{Element, Segment, seg};
use crate::value::{Date, Decimal, Time};

/// A party: the N1 loop (N1 name and id, N2 extra names, N3 address lines, N4 place, REF, PER).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Party {
    /// N101 entity identifier code: `ST` ship to, `BT` bill to, `SF` ship from, `WH` warehouse,
    /// `BY` buyer, `SE` seller, `VN` vendor, ...
    pub entity: String,
    /// N102 name.
    pub name: Option<String>,
    /// N103 identification code qualifier (`1` DUNS, `9` DUNS+4, `92` assigned by buyer, `ZZ`).
    pub id_qualifier: Option<String>,
    /// N104 identification code (e.g. a store or warehouse number).
    pub id: Option<String>,
    /// N2 additional names.
    pub additional_names: Vec<String>,
    /// N3 address lines.
    pub address: Vec<String>,
    /// N401 city.
    pub city: Option<String>,
    /// N402 state or province code.
    pub state: Option<String>,
    /// N403 postal code.
    pub postal_code: Option<String>,
    /// N404 country code.
    pub country: Option<String>,
    /// REF in the N1 loop.
    pub references: Vec<Reference>,
    /// PER in the N1 loop.
    pub contacts: Vec<Contact>,
}

/// A reference: REF01/REF02/REF03, or N901/N902/N903.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reference {
    /// Qualifier (`BM` bill of lading, `PK` packing list, `CN` carrier PRO, `IA` vendor id, ...).
    pub qualifier: String,
    /// The reference number.
    pub value: Option<String>,
    /// Free-form description.
    pub description: Option<String>,
}

/// A qualified date and time: DTM01/02/03 or G6201/02 with G6204.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DateRef {
    /// Qualifier (`002` delivery requested, `011` shipped, `017` estimated delivery, G62 `10`
    /// requested ship, ...).
    pub qualifier: String,
    /// The date.
    pub date: Option<Date>,
    /// The time.
    pub time: Option<Time>,
}

/// A contact: PER01 function, PER02 name, PER03..PER08 communication numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contact {
    /// PER01 function code (`BD` buyer, `IC` information contact, ...).
    pub function: String,
    /// PER02 name.
    pub name: Option<String>,
    /// Communication numbers by qualifier (`TE` phone, `EM` e-mail, `FX` fax).
    pub channels: Vec<ProductId>,
}

/// A note: NTE01 reference code and NTE02 text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Note {
    /// NTE01 (`GEN`, `WHI` warehouse instruction, ...).
    pub code: Option<String>,
    /// NTE02.
    pub text: String,
}

/// A qualified identifier, e.g. a product id: `UP` UPC, `VN` vendor item, `BP` buyer part, `SK`
/// SKU, `EN` EAN/GTIN-13, `UK` GTIN-14, `VA` vendor style, `IN` buyer item. Also used for PER
/// communication numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProductId {
    /// Qualifier.
    pub qualifier: String,
    /// Identifier.
    pub id: String,
}

/// A quantity with qualifier and unit of measure (QTY01/02/03, or in a QTY loop with UIT).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualifiedQuantity {
    /// QTY01 qualifier (`33` available, `17` on hand, `02` cumulative, `QH` on hold, ...).
    pub qualifier: String,
    /// QTY02.
    pub quantity: Option<Decimal>,
    /// Unit of measure (QTY03-01, or UIT01-01 of a following UIT).
    pub unit: Option<String>,
    /// DTM in the QTY loop.
    pub dates: Vec<DateRef>,
}

/// A carrier: TD5 (SCAC and routing), W27 or W66.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Carrier {
    /// TD502 identification code qualifier (`2` SCAC) (TD5 only).
    pub id_qualifier: Option<String>,
    /// Carrier code: TD503, W2702, W6610 (the SCAC).
    pub scac: Option<String>,
    /// Transportation method: TD504, W2701, W6602 (`M` motor, `A` air, `U` parcel, ...).
    pub transport_method: Option<String>,
    /// Routing: TD505, W2703, W6605.
    pub routing: Option<String>,
    /// Shipment method of payment: W6601, W2704 (`PP` prepaid, `CC` collect).
    pub payment_method: Option<String>,
}

/// Reading context: the diagnostics of the set being read.
pub(crate) struct Ctx<'a> {
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn bad(&mut self, code: DiagCode, s: &Segment, n: usize, what: &str, value: &str) {
        let shown: String = value.chars().take(40).collect();
        self.diags.push(
            Diagnostic::error(code, format!("{} is not {what}: {shown:?}", s.name(n)))
                .at(s.position, &s.id)
                .element(n),
        );
    }

    /// A required string element; an error when empty.
    pub fn required(&mut self, s: &Segment, n: usize, what: &str) -> String {
        match s.opt(n) {
            Some(value) => value,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        DiagCode::MissingElement,
                        format!("{} ({what}) is required but empty", s.name(n)),
                    )
                    .at(s.position, &s.id)
                    .element(n),
                );
                String::new()
            }
        }
    }

    /// An optional date element (CCYYMMDD).
    pub fn date(&mut self, s: &Segment, n: usize) -> Option<Date> {
        let text = s.opt(n)?;
        let date = Date::from_x12(text.trim());
        if date.is_none() {
            self.bad(DiagCode::InvalidDate, s, n, "a date (CCYYMMDD)", &text);
        }
        date
    }

    /// An optional time element (HHMM[SS[d..]]).
    pub fn time(&mut self, s: &Segment, n: usize) -> Option<Time> {
        let text = s.opt(n)?;
        let time = Time::from_x12(text.trim());
        if time.is_none() {
            self.bad(DiagCode::InvalidTime, s, n, "a time (HHMM[SS])", &text);
        }
        time
    }

    /// An optional decimal element (X12 `R`).
    pub fn decimal(&mut self, s: &Segment, n: usize) -> Option<Decimal> {
        let text = s.opt(n)?;
        let number = Decimal::from_x12(text.trim());
        if number.is_none() {
            self.bad(DiagCode::InvalidNumber, s, n, "a number", &text);
        }
        number
    }

    /// An optional number with implied decimals (X12 `N2` and the like).
    pub fn implied(&mut self, s: &Segment, n: usize, places: u32) -> Option<Decimal> {
        let text = s.opt(n)?;
        let number = Decimal::from_implied(text.trim(), places);
        if number.is_none() {
            self.bad(
                DiagCode::InvalidNumber,
                s,
                n,
                "a number with implied decimals",
                &text,
            );
        }
        number
    }

    /// A reference from REF (or N9, same layout for the first three elements).
    pub fn reference(&mut self, s: &Segment) -> Reference {
        Reference {
            qualifier: self.required(s, 1, "reference qualifier"),
            value: s.opt(2),
            description: s.opt(3),
        }
    }

    /// A date from DTM.
    pub fn dtm(&mut self, s: &Segment) -> DateRef {
        DateRef {
            qualifier: self.required(s, 1, "date qualifier"),
            date: self.date(s, 2),
            time: self.time(s, 3),
        }
    }

    /// A date from G62 (G6201 date qualifier, G6202 date, G6204 time).
    pub fn g62(&mut self, s: &Segment) -> DateRef {
        DateRef {
            qualifier: s.opt(1).or_else(|| s.opt(3)).unwrap_or_default(),
            date: self.date(s, 2),
            time: self.time(s, 4),
        }
    }

    /// A contact from PER.
    pub fn contact(&mut self, s: &Segment) -> Contact {
        Contact {
            function: self.required(s, 1, "contact function"),
            name: s.opt(2),
            channels: pairs(s, 3, 8),
        }
    }

    /// A note from NTE.
    pub fn note(&mut self, s: &Segment) -> Note {
        Note {
            code: s.opt(1),
            text: s.opt(2).unwrap_or_default(),
        }
    }

    /// A quantity from QTY.
    pub fn qty(&mut self, s: &Segment) -> QualifiedQuantity {
        QualifiedQuantity {
            qualifier: self.required(s, 1, "quantity qualifier"),
            quantity: self.decimal(s, 2),
            unit: s.opt_component(3, 1),
            dates: Vec::new(),
        }
    }

    /// A TD5 carrier.
    pub fn td5(&mut self, s: &Segment) -> Carrier {
        Carrier {
            id_qualifier: s.opt(2),
            scac: s.opt(3),
            transport_method: s.opt(4),
            routing: s.opt(5),
            payment_method: None,
        }
    }

    /// A W27 carrier (943, 945).
    pub fn w27(&mut self, s: &Segment) -> Carrier {
        Carrier {
            id_qualifier: None,
            scac: s.opt(2),
            transport_method: s.opt(1),
            routing: s.opt(3),
            payment_method: s.opt(4),
        }
    }

    /// Reads an N1 loop starting at `segs[*i]` (an N1), advancing `*i` past N2/N3/N4/REF/PER.
    pub fn party(&mut self, segs: &[Segment], i: &mut usize) -> Party {
        let Some(n1) = segs.get(*i) else {
            return Party::default();
        };
        let mut party = Party {
            entity: self.required(n1, 1, "entity identifier code"),
            name: n1.opt(2),
            id_qualifier: n1.opt(3),
            id: n1.opt(4),
            ..Party::default()
        };
        *i += 1;
        while let Some(s) = segs.get(*i) {
            match s.id.as_str() {
                "N2" => party
                    .additional_names
                    .extend(s.opt(1).into_iter().chain(s.opt(2))),
                "N3" => party.address.extend(s.opt(1).into_iter().chain(s.opt(2))),
                "N4" => {
                    party.city = s.opt(1);
                    party.state = s.opt(2);
                    party.postal_code = s.opt(3);
                    party.country = s.opt(4);
                }
                "REF" => {
                    let r = self.reference(s);
                    party.references.push(r);
                }
                "PER" => {
                    let c = self.contact(s);
                    party.contacts.push(c);
                }
                _ => break,
            }
            *i += 1;
        }
        party
    }
}

/// Qualifier/id pairs from element `first` to element `last` (1-based, inclusive), skipping
/// empty pairs. `LIN02..LIN31`, `PO106..PO125`, `PER03..PER08`, ...
pub(crate) fn pairs(s: &Segment, first: usize, last: usize) -> Vec<ProductId> {
    (first..last)
        .step_by(2)
        .filter_map(|q| {
            let id = s.opt(q + 1)?;
            Some(ProductId {
                qualifier: s.opt(q).unwrap_or_default(),
                id,
            })
        })
        .collect()
}

/// Qualifier/id pairs at the given (qualifier, id) element positions.
pub(crate) fn pairs_at(s: &Segment, positions: &[(usize, usize)]) -> Vec<ProductId> {
    positions
        .iter()
        .filter_map(|&(q, v)| {
            Some(ProductId {
                qualifier: s.opt(q).unwrap_or_default(),
                id: s.opt(v)?,
            })
        })
        .collect()
}

// ---- rendering helpers -------------------------------------------------------------------

/// `Some(simple element)` for a string.
pub(crate) fn e(value: &str) -> Option<Element> {
    Some(Element::simple(value))
}

/// An optional string as an element.
pub(crate) fn o(value: &Option<String>) -> Option<Element> {
    value.as_deref().map(Element::simple)
}

/// An optional date as CCYYMMDD.
pub(crate) fn od(value: &Option<Date>) -> Option<Element> {
    value.map(|d| Element::simple(d.to_x12()))
}

/// An optional time as HHMM[SS].
pub(crate) fn ot(value: &Option<Time>) -> Option<Element> {
    value.as_ref().map(|t| Element::simple(t.to_x12()))
}

/// An optional decimal.
pub(crate) fn on(value: &Option<Decimal>) -> Option<Element> {
    value.map(|d| Element::simple(d.to_x12()))
}

/// An optional decimal with implied decimals.
pub(crate) fn oi(value: &Option<Decimal>, places: u32) -> Option<Element> {
    value.map(|d| Element::simple(d.to_implied(places)))
}

/// A count.
pub(crate) fn count(n: usize) -> Option<Element> {
    Some(Element::simple(n.to_string()))
}

/// Qualifier/id pairs as consecutive elements.
pub(crate) fn pair_elements(ids: &[ProductId]) -> Vec<Option<Element>> {
    ids.iter()
        .flat_map(|p| [e(&p.qualifier), e(&p.id)])
        .collect()
}

/// Places pairs at the given (qualifier, id) element positions of a segment being built: the
/// `values` vector is grown as needed. Extra pairs beyond the positions are dropped (the caller
/// documents how many a segment holds).
pub(crate) fn place_pairs(
    values: &mut Vec<Option<Element>>,
    ids: &[ProductId],
    positions: &[(usize, usize)],
) {
    for (p, &(q, v)) in ids.iter().zip(positions) {
        let needed = q.max(v);
        if values.len() < needed {
            values.resize(needed, None);
        }
        if let Some(slot) = values.get_mut(q - 1) {
            *slot = e(&p.qualifier);
        }
        if let Some(slot) = values.get_mut(v - 1) {
            *slot = e(&p.id);
        }
    }
}

pub(crate) fn ref_seg(id: &str, r: &Reference) -> Segment {
    seg(id, [e(&r.qualifier), o(&r.value), o(&r.description)])
}

pub(crate) fn dtm_seg(d: &DateRef) -> Segment {
    seg("DTM", [e(&d.qualifier), od(&d.date), ot(&d.time)])
}

pub(crate) fn g62_seg(d: &DateRef) -> Segment {
    // G6203 (time qualifier) is required with a time; `1` is the generic "time" qualifier.
    let time_qualifier = d.time.as_ref().map(|_| Element::simple("1"));
    seg(
        "G62",
        [e(&d.qualifier), od(&d.date), time_qualifier, ot(&d.time)],
    )
}

pub(crate) fn per_seg(c: &Contact) -> Segment {
    let mut values = vec![e(&c.function), o(&c.name)];
    values.extend(pair_elements(c.channels.get(..3).unwrap_or(&c.channels)));
    seg("PER", values)
}

pub(crate) fn nte_seg(n: &Note) -> Segment {
    seg("NTE", [o(&n.code), e(&n.text)])
}

pub(crate) fn td5_seg(c: &Carrier) -> Segment {
    seg(
        "TD5",
        [
            None,
            o(&c.id_qualifier),
            o(&c.scac),
            o(&c.transport_method),
            o(&c.routing),
        ],
    )
}

pub(crate) fn w27_seg(c: &Carrier) -> Segment {
    seg(
        "W27",
        [
            Some(Element::simple(
                c.transport_method.as_deref().unwrap_or("ZZ"),
            )),
            o(&c.scac),
            o(&c.routing),
            o(&c.payment_method),
        ],
    )
}

pub(crate) fn qty_segs(q: &QualifiedQuantity) -> Vec<Segment> {
    let mut out = vec![seg("QTY", [e(&q.qualifier), on(&q.quantity), o(&q.unit)])];
    out.extend(q.dates.iter().map(dtm_seg));
    out
}

/// The segments of an N1 loop. `with_refs` is false for sets whose N1 loop has no REF (940s).
pub(crate) fn party_segs(p: &Party, with_refs: bool) -> Vec<Segment> {
    let mut out = vec![seg(
        "N1",
        [e(&p.entity), o(&p.name), o(&p.id_qualifier), o(&p.id)],
    )];
    for names in p.additional_names.chunks(2) {
        out.push(seg("N2", names.iter().map(|n| e(n))));
    }
    for lines in p.address.chunks(2) {
        out.push(seg("N3", lines.iter().map(|n| e(n))));
    }
    if p.city.is_some() || p.state.is_some() || p.postal_code.is_some() || p.country.is_some() {
        out.push(seg(
            "N4",
            [o(&p.city), o(&p.state), o(&p.postal_code), o(&p.country)],
        ));
    }
    if with_refs {
        out.extend(p.references.iter().map(|r| ref_seg("REF", r)));
    }
    out.extend(p.contacts.iter().map(per_seg));
    out
}

/// A description from PID (PID05, free-form with PID01 `F`).
pub(crate) fn pid_seg(description: &str) -> Segment {
    seg("PID", [e("F"), None, None, None, e(description)])
}
