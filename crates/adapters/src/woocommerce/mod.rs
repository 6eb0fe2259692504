//! WooCommerce: stock out through the REST API v3 batch endpoints, orders in through signed
//! webhooks, stock back through the product and variation lists ([`stock`]).

pub mod inbound;
pub mod publish;
pub mod stock;

pub use publish::{WooConfig, WooPublisher};
