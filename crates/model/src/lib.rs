//! The canonical model of Crossdock: ids, instants, the CloudEvents envelope, the typed event
//! kinds and exception records. No I/O lives here.

pub mod event;
pub mod exception;
pub mod ids;
pub mod time;
pub mod workflow;

pub use event::{Envelope, Event, EventData, EventError, HUB_SOURCE};
pub use exception::{ExceptionKind, ExceptionRecord, ExceptionStatus};
pub use ids::{ChannelId, ItemId, LocationId, Lot, SourceId};
pub use time::Timestamp;
