//! What a lane hands to a target and what it expects back. Adapters (Shopify, SP-API,
//! WooCommerce, webhooks) implement [`Target`]; the lane owns everything else: ordering,
//! coalescing, rate limits, retries, the breaker and the dead-letter queue.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a message asks the target to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Set the channel's sellable quantity of `item` to `available`.
    Availability {
        item: String,
        available: i64,
        /// What Crossdock last delivered for this item, if anything: the compare-and-set
        /// "from" value for targets that support it.
        last_sent: Option<i64>,
    },
    /// A JSON document delivered as it is (an event, a posting).
    Document { json: String },
}

/// One message as a target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: String,
    pub ledger_seq: u64,
    pub body: Body,
    /// Stable for the message: a resend after a crash carries the same key.
    pub idempotency_key: String,
    pub correlation_id: Option<String>,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Timeouts, connection errors, 5xx, 429: back off and try again.
    Retryable,
    /// A 4xx the target will not accept however often it is sent: park at once.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: RetryClass,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// What the target answered (truncated), or the transport error.
    pub detail: String,
}

impl Failure {
    pub fn retryable(status: Option<u16>, detail: impl Into<String>) -> Self {
        Failure {
            class: RetryClass::Retryable,
            status,
            detail: detail.into(),
        }
    }

    pub fn permanent(status: Option<u16>, detail: impl Into<String>) -> Self {
        Failure {
            class: RetryClass::Permanent,
            status,
            detail: detail.into(),
        }
    }

    /// The usual reading of an HTTP status: 408, 425, 429 and 5xx are worth retrying; any other
    /// 4xx is not.
    pub fn from_status(status: u16, detail: impl Into<String>) -> Self {
        if matches!(status, 408 | 425 | 429) || status >= 500 {
            Failure::retryable(Some(status), detail)
        } else {
            Failure::permanent(Some(status), detail)
        }
    }
}

/// The result for one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgResult {
    Delivered,
    /// Compare-and-set refused: the target holds `found`, not the `last_sent` the message
    /// expected. Someone changed the channel outside Crossdock (or an earlier attempt landed).
    Mismatch {
        found: Option<i64>,
    },
    /// Not applied because another message of the same all-or-nothing call was refused: send it
    /// again soon, without counting a failure against it or the endpoint.
    Requeue,
    Failed(Failure),
}

/// What the target said about its limits, read from its response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateFeedback {
    /// `Retry-After`: send nothing before this has passed.
    pub retry_after: Option<Duration>,
    /// Budget left right now, in the limiter's unit (requests or points).
    pub available: Option<f64>,
    /// Bucket size the target reports.
    pub capacity: Option<f64>,
    /// Refill per second the target reports (`restoreRate`, `x-amzn-RateLimit-Limit`).
    pub rate: Option<f64>,
    /// What the call actually cost, in points (GraphQL `actualQueryCost`).
    pub cost: Option<f64>,
}

/// The answer to one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// One per message, in the order sent.
    pub results: Vec<MsgResult>,
    pub feedback: RateFeedback,
}

impl Outcome {
    /// The same result for every message of a batch of `n`.
    pub fn all(n: usize, result: MsgResult, feedback: RateFeedback) -> Self {
        Outcome {
            results: vec![result; n],
            feedback,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A system Crossdock delivers to.
pub trait Target: Send + Sync + 'static {
    /// The most messages one call may carry (1 when the API takes one at a time).
    fn max_batch(&self) -> usize;

    /// How many of `backlog` ready messages to put in the next call (at most
    /// [`Target::max_batch`]). A target with a bulk path that has its own, slower limit (an
    /// SP-API feed) can choose it only when the backlog is worth it.
    fn batch_size(&self, backlog: usize) -> usize {
        backlog.min(self.max_batch()).max(1)
    }

    /// What sending `batch` costs against the endpoint's rate limit, before the target says:
    /// requests count 1 per HTTP call, GraphQL counts points.
    fn estimated_cost(&self, _batch: &[Message]) -> f64 {
        1.0
    }

    /// How long a call for `batch` may take at most, when that is longer than one HTTP call
    /// (an SP-API feed polls until processed). Zero: the lane's own bound applies.
    fn call_budget(&self, _batch: &[Message]) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Delivers `batch` (never empty, never longer than `max_batch`). Never panics; every
    /// transport problem is a [`Failure`] in the outcome.
    fn send<'a>(&'a self, batch: &'a [Message]) -> BoxFuture<'a, Outcome>;

    /// What one [`Target::read_current`] costs against the rate limit.
    fn read_cost(&self) -> f64 {
        1.0
    }

    /// Reads the quantity the target currently shows for `key`, to resync after a
    /// compare-and-set mismatch. `None` when the target cannot be asked.
    fn read_current<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Option<Result<i64, Failure>>> {
        Box::pin(async { None })
    }
}

/// Most correlation ids one call names (in `X-Correlation-Id` and its `deliver` span).
pub const CORRELATIONS_MAX: usize = 32;

/// The distinct correlation ids of the changes `messages` carry, in message order, separated by
/// `", "` (a list header value), at most [`CORRELATIONS_MAX`]; `None` when none has one.
pub fn correlation_list<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Option<String> {
    let mut ids: Vec<&str> = Vec::new();
    for id in messages
        .into_iter()
        .filter_map(|m| m.correlation_id.as_deref())
    {
        if ids.len() == CORRELATIONS_MAX {
            break;
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    (!ids.is_empty()).then(|| ids.join(", "))
}
