//! Channel adapters: the code that speaks each outside system's language and nothing else.
//!
//! One folder per system (`shopify/`, `amazon/`, `woocommerce/`, `webhook/`). Outbound, each
//! folder has a publisher implementing [`crossdock_delivery::Target`]: it turns a batch of
//! canonical messages into the system's HTTP call(s) and reads the answer back into one
//! [`MsgResult`](crossdock_delivery::MsgResult) per message plus the rate-limit feedback the
//! system gave. The delivery lane owns ordering, rate limits, retries, the breaker and the
//! dead-letter queue; a publisher never retries on its own (the one exception is an SP-API
//! access token that expired in flight) and never panics.
//!
//! Inbound, Shopify and WooCommerce webhooks are verified ([`shopify::inbound::verify_hmac`],
//! [`woocommerce::inbound::verify_signature`]) and parsed into the shared [`inbound`] types.
//!
//! Items are mapped through a per-channel [`crosswalk::Crosswalk`]: an item without an entry
//! is a permanent failure naming the item and the channel, never a silent skip.
//!
//! Back, for reconciliation, the Shopify, SP-API and WooCommerce publishers implement
//! [`StockReader`]: every level the channel shows, mapped to items, with the ids the crosswalk
//! does not know listed apart (see [`stock`]).

pub mod amazon;
pub mod crosswalk;
pub mod inbound;
pub mod shopify;
pub mod stock;
pub mod webhook;
pub mod woocommerce;

mod util;

pub use crosswalk::{Crosswalk, CrosswalkError};
pub use inbound::{ChannelInput, InboundError};
pub use stock::{ChannelLevel, PullError, StockPull, StockReader};
pub use util::ConfigError;
