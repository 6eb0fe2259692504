//! Publishers against loopback stubs of each channel (what goes on the wire, and how every
//! answer is read back into per-message results) and against the `crossdock-sim` simulators
//! (the same publishers talking to a faithful model of each platform), and the stock readers
//! against the simulators.

mod against_sim;
mod amazon;
mod shopify;
mod stock;
mod stub;
mod webhook;
mod woocommerce;
