//! WooCommerce: stock out through the REST API v3 batch endpoints, orders in through signed
//! webhooks.

pub mod inbound;
pub mod publish;

pub use publish::{WooConfig, WooPublisher};
