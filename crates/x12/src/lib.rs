//! ASC X12 for Crossdock, usable on its own: read, validate, acknowledge and render
//! interchanges of the supply-chain transaction sets.
//!
//! - **Read**: [`parse`] tokenizes the input (separators come from each ISA), checks the
//!   envelopes (ISA/IEA, GS/GE, ST/SE: every count and control number) and returns a
//!   [`Document`] of interchanges, groups and raw [`TransactionSet`]s. [`TypedSet::read`] maps a
//!   set into a typed struct: 846, 850, 855, 856, 810, 940, 943, 944, 945, 947, 180 and 997
//!   (see [`sets`]).
//! - **Validate**: every problem is a [`Diagnostic`] naming the segment (its position in the
//!   file, the ISA being 1, and its id), the element and component, and what is wrong. Errors
//!   mean the data must not be acted on without review; warnings record a leniency that was
//!   applied. [`ParseError`] means there was no usable interchange at all (empty input, no ISA,
//!   a broken ISA, or EDIFACT, which is not supported yet).
//! - **Acknowledge**: [`FunctionalAck997::for_group`] builds the 997 for a group from its
//!   diagnostics, including application-level problems a caller adds (see [`ack`]);
//!   [`FunctionalAck997::for_interchange`] does so for every group of an interchange and rejects
//!   them all when the interchange's own envelope is wrong. A 997 is a verdict: act on exactly
//!   the sets it accepts.
//! - **Render**: [`render`] writes typed sets as one interchange with an [`OutboundEnvelope`],
//!   computing counts and control numbers, and refuses values it cannot write correctly
//!   ([`RenderError`]).
//!
//! Reading never panics, whatever the input, and reports every problem it finds rather than
//! stopping at the first.
//!
//! Leniencies (the data is understood as written; each is a warning unless noted):
//! - a UTF-8 byte order mark, whitespace before the ISA, and line breaks and indentation between
//!   segments (pretty-printed files) are skipped without a diagnostic;
//! - line breaks as segment terminators, and a declared terminator the file does not use (the
//!   one the next segment really ends with is used);
//! - ISA fields not padded to their fixed widths, and a missing ISA16 (composites not split);
//! - input that is not UTF-8 (read as ISO 8859-1), trailing spaces in a segment, lowercase
//!   segment ids, empty segments, a missing final terminator;
//! - control numbers compared as numbers (`1` matches `000000001`), a GS01 that does not match
//!   the sets, GS08 versions other than 004010/005010 and suffixes such as `004010VICS`;
//! - CTT01 counts that differ from what was counted (partners differ in what they count).
//!
//! # Example
//!
//! Read a purchase order, then acknowledge its group with a 997:
//!
//! ```
//! use crossdock_x12::{
//!     Date, FunctionalAck997, OutboundEnvelope, Time, TypedSet, parse, render,
//! };
//!
//! let input = "ISA*00*          *00*          *ZZ*BUYER          *ZZ*SELLER         \
//!     *240105*1200*U*00401*000000101*0*P*>~\n\
//!     GS*PO*BUYER*SELLER*20240105*1200*101*X*004010~\n\
//!     ST*850*0001~\n\
//!     BEG*00*SA*PO-1001**20240105~\n\
//!     PO1*1*12*EA*4.5**VN*ABC-1~\n\
//!     CTT*1~\n\
//!     SE*5*0001~\n\
//!     GE*1*101~\n\
//!     IEA*1*000000101~\n";
//! let document = parse(input.as_bytes())?;
//! assert!(!document.has_errors());
//!
//! let mut diagnostics = document.diagnostics.clone();
//! for (_group, set) in document.sets() {
//!     if let Some(TypedSet::PurchaseOrder(po)) = TypedSet::read(set, &mut diagnostics) {
//!         assert_eq!(po.po_number, "PO-1001");
//!         assert_eq!(po.lines[0].product_ids[0].id, "ABC-1");
//!     }
//! }
//!
//! let group = &document.interchanges[0].groups[0];
//! let ack = FunctionalAck997::for_group(group, &diagnostics);
//! let envelope = OutboundEnvelope::new(
//!     ("ZZ", "SELLER"),
//!     ("ZZ", "BUYER"),
//!     7,
//!     7,
//!     Date::new(2024, 1, 5).ok_or("date")?,
//!     Time::hm(12, 5).ok_or("time")?,
//! );
//! let text = render(&envelope, &[ack.into()])?;
//! assert!(text.contains("AK1*PO*101~\nAK2*850*0001~\nAK5*A~\nAK9*A*1*1*1~\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ack;
pub mod diag;
pub mod envelope;
pub mod segment;
pub mod sets;
pub mod tokenizer;
pub mod value;
pub mod writer;

pub use diag::{DiagCode, Diagnostic, DiagnosticsExt, ParseError, RenderError, Severity};
pub use envelope::{
    Document, FunctionalGroup, Interchange, InterchangeHeader, Release, TransactionSet, Usage,
    Version, parse,
};
pub use segment::{Element, Segment};
pub use sets::{
    AckStatus, Asn856, FunctionalAck997, InventoryAdjustment947, InventoryAdvice846, Invoice810,
    PoAck855, PurchaseOrder850, ReturnAuthorization180, SET_IDS, SetType, ShippingAdvice945,
    ShippingOrder940, StockTransferReceipt944, StockTransferShipment943, TypedSet,
};
pub use tokenizer::Separators;
pub use value::{Date, Decimal, Time};
pub use writer::{OutboundEnvelope, render};
