//! Pieces of the `crossdock` binary that its tests and benchmarks share.

pub mod client;
