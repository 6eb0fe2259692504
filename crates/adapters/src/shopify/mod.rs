//! Shopify: availability out through the GraphQL Admin API (`inventorySetQuantities`, with
//! compare-and-set and an idempotency key), orders, refunds and inventory levels in through
//! HMAC-signed webhooks; the location's levels back through `inventoryLevels` ([`stock`]).

pub mod inbound;
pub mod publish;
pub mod stock;

pub use publish::{ShopifyConfig, ShopifyPublisher};
