//! The inventory ledger: positions, channel availability, reservations, ownership, the event-time
//! rule and the resequencer. Pure: no I/O, no clock, no randomness; replaying the same inputs
//! always yields the same state.

pub mod ats;
pub mod cross;
pub mod exposure;
pub mod items;
pub mod policy;
pub mod position;
pub mod reservation;
pub mod state;
pub mod workflow;

pub use items::ItemMap;
pub use policy::{
    Buffer, ChanIdx, ChannelPolicy, LocIdx, OwnershipRule, Policy, SourcePolicy, SourcingRule,
    WorkflowPolicy,
};
pub use position::{Buckets, Position};
pub use reservation::{ResLine, ResStatus, Reservation, Shortfall};
pub use state::{AtsChange, Effects, ItemState, Ledger, Outcome, PositionChange, Rejection};
pub use workflow::{Doc, PostTo, Posting, Step, Workflow, WorkflowKind};
