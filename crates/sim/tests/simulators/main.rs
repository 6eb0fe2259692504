//! Each simulator driven over loopback by a plain HTTP client, as Crossdock's adapters will.
//!
//! Timing is only ever asserted with generous bounds: rate-limit tests either send a burst far
//! faster than the limit refills, or space calls at twice the limit's interval.

mod amazon;
mod shopify;
mod webhook;
mod woocommerce;

use std::time::Duration;

/// A client with a timeout long enough for every test but the timeout-fault ones.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("the test client builds")
}
