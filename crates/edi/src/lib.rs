//! Trading partners for Crossdock: X12 and CSV files mapped to and from canonical events.
//!
//! - [`partner`]: a `[[partners]]` config entry, checked.
//! - [`inbound`]: a parsed X12 document → events, orders (850), availability snapshots (846),
//!   documents kept for workflows (855, 180, 997), exceptions keeping the raw segment, and a
//!   997 per functional group. The 997 is decided first and only what it accepts is mapped: an
//!   interchange, group or set it rejects applies nothing. Pure; ids derive from (sender,
//!   ISA13, GS06, ST02, line).
//! - [`outbound`]: canonical → typed sets: 846 from a channel's availability, 855 answering an
//!   order, 856 and 810 for a shipment, 940 releasing an order.
//! - [`csvdrop`]: CSV snapshots and adjustments, applied whole or not at all.
//! - [`files`]: the folder transport (claim, processed/rejected with a report, atomic writes).
//!
//! The hub (`crossdock-server`) runs the folders, applies what comes out through the engine and
//! takes control numbers from the store.

pub mod csvdrop;
pub mod files;
pub mod inbound;
pub mod outbound;
pub mod partner;

pub use partner::{PartnerEntry, PartnerSpec};
