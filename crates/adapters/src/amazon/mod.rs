//! Amazon Selling Partner API: seller-fulfilled availability out through the Listings Items
//! API (2021-08-01), one `patchListingsItem` per SKU, or a `JSON_LISTINGS_FEED` through the
//! Feeds API (2021-06-30) when the backlog is large.
//!
//! Faithful to SP-API as documented: Login with Amazon refresh-token grant for the
//! `x-amz-access-token` (no SigV4 since 2023), `replace` of
//! `/attributes/fulfillment_availability` with `fulfillment_channel_code` and `quantity`, the
//! listings feed schema v2 and its processing report, per-operation token buckets (the live
//! rate in `x-amzn-RateLimit-Limit`), and 429 as retryable.
//!
//! A patch answers `ACCEPTED` (delivered), `INVALID` with issues (permanent), or an error list
//! with an HTTP status (through [`crossdock_delivery::Failure::from_status`]). See
//! [`feed`] for the bulk path, and [`stock`] for reading the listings' quantities back.

pub mod bucket;
pub mod config;
pub mod feed;
mod lwa;
pub mod publish;
pub mod stock;

pub use config::{AmazonConfig, FeedLimits};
pub use publish::AmazonPublisher;
