//! Delivery: one lane per target endpoint, reading the outbox by priority, coalescing "latest
//! value" messages, keeping ordered documents in order per key, within the endpoint's rate limit,
//! retrying with backoff behind a circuit breaker, and parking what the target refuses in the
//! dead-letter queue.

pub mod http;
pub mod hub;
pub mod lane;
pub mod queue;
pub mod rate;
pub mod retry;
pub mod target;

pub use hub::{Delivery, DeliveryError, EndpointStatus};
pub use lane::{LATENCY_BUCKETS_S, Lane, LaneConfig, LaneState, LaneStats, LaneStatus};
pub use retry::BreakerState;
pub use target::{
    Body, BoxFuture, CORRELATIONS_MAX, Failure, Message, MsgResult, Outcome, RateFeedback,
    RetryClass, Target, correlation_list,
};
