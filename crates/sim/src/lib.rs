//! Simulators of the systems Crossdock delivers to, each a real HTTP server on loopback.
//!
//! | simulator | faithful to |
//! |---|---|
//! | [`ShopifySim`] | Shopify GraphQL Admin API: `inventorySetQuantities` with compare-and-set and idempotency keys, the `inventoryLevel` read, a location's `inventoryLevels` in pages, cost-based throttling with refunds |
//! | [`AmazonSim`] | Amazon SP-API: Login with Amazon tokens, `patchListingsItem`, `getListingsItem`, `searchListingsItems` in pages, the `JSON_LISTINGS_FEED` flow (documents, feeds, processing reports), per-operation token buckets |
//! | [`WooSim`] | WooCommerce REST API v3: product and variation batch updates, product reads, product and variation lists in pages, Basic auth, an optional host rate limit |
//! | [`WebhookSim`] | a receiver of Crossdock's signed generic webhooks |
//! | [`credit::CreditSim`] | an ERP credit check (approve up to a limit, latency, hangs, 503s) |
//!
//! Each starts in-process with `XSim::start(config).await`, binds `127.0.0.1:0`, serves on a
//! task of the current Tokio runtime until dropped or [`ShopifySim::stop`]ped, and gives the test
//! a handle: its base URL, seeding methods, and (through `Deref`) its [`Endpoint`]:
//! - [`Faults`], changeable at any time: latency, `fail_next`, timeouts, outages, items the
//!   platform refuses for good. A request a fault answers applies nothing.
//! - [`StatsSnapshot`] counters and the [`RequestRecord`] log (receive instant taken before the
//!   body is read, and the items each request named), for tests and benchmarks.
//! - The quantity the platform shows per external item id, edits by hand
//!   ([`Endpoint::edit_by_hand`]), lost updates ([`Endpoint::lose_next_writes`]), and the
//!   history of values requests applied.
//!
//! Rate limits come from each simulator's config, at the platforms' documented plan limits by
//! default, and are enforced by an exact token bucket ([`bucket`]): a client that keeps to the
//! limit is never counted as a violation.
//!
//! Everything is in memory, bounded, and safe to call from any thread: state sits behind
//! `std::sync::Mutex`es that are never held across an `.await`.

// Handlers answer a refused request with the `Response` itself (`Result<_, Response>`): it is
// built once per refusal, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod amazon;
pub mod bucket;
pub mod credit;
mod endpoint;
mod faults;
pub mod items;
mod server;
pub mod shopify;
mod stats;
pub mod webhook;
pub mod woocommerce;

pub use amazon::{AmazonConfig, AmazonSim};
pub use bucket::RateLimit;
pub use endpoint::Endpoint;
pub use faults::Faults;
pub use shopify::{ShopifyConfig, ShopifySim, ShopifyThrottle};
pub use stats::{REQUEST_LOG_MAX, RequestRecord, StatsSnapshot};
pub use webhook::{Delivery, WebhookConfig, WebhookSim};
pub use woocommerce::{WooConfig, WooSim};
