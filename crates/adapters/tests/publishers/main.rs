//! Publishers against loopback stubs of each channel: what goes on the wire, and how every
//! answer is read back into per-message results.

mod amazon;
mod shopify;
mod stub;
mod webhook;
mod woocommerce;
