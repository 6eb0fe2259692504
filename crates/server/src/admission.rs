//! Admission of request bodies: one global budget for the bytes of every body in flight and of
//! the events they carry to the engine's queues, a limit per request, and a deadline for the
//! whole body.
//!
//! A body is charged to the budget before it is read: its `Content-Length` up front (refused with
//! 503 and `Retry-After` when the budget cannot hold it, or 413 past the request's limit, and
//! nothing of it is kept), a chunked body frame by frame as it arrives (refused the same way at
//! the frame that does not fit). A parsed event takes more memory than its text when events are
//! small, so each event of a request is charged [`EVENT_COST_BYTES`] more once its body is split
//! into lines, before anything is parsed (refused with 503 the same way when that does not
//! fit). The charge is held until the request is answered, which is after its events left the
//! engine's queues and committed, so the budget bounds the bodies and events held in memory,
//! parsed or waiting for the engine, whatever the clients send. A body that is not read to its
//! end (refused, or a handler that answered without it) is drained in the background, bounded
//! by the request's limit and deadline, so the client reads the answer instead of a reset
//! connection; nothing drained is kept.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crossdock_model::ExceptionKind;

use crate::api::{AppState, rejected_input};
use crate::auth::authenticate;
use crate::problem::Problem;

/// What one event costs beyond its text while the hub holds it (parsed, queued for the engine,
/// written, answered): measured with batches of 10,000 received events of about 200 bytes of
/// text each, which took about 1.9 KiB each at the hub's peak (`crates/cli/tests/edge.rs`).
pub const EVENT_COST_BYTES: usize = 2048;

/// A request's charge to the budget, released when the request is answered; handlers find it in
/// the request's extensions to charge the events a body carries.
#[derive(Debug, Clone, Default)]
pub struct Charge(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Charge {
    fn add(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.0.lock().expect("permit lock");
        match held.as_mut() {
            Some(p) => p.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// Why a body was refused (counted in `crossdock_http_refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 503: the budget could not hold it.
    Budget,
    /// 413: past the request's limit.
    TooLarge,
    /// 408: not all there before the deadline.
    Timeout,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Budget, Refusal::TooLarge, Refusal::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Budget => "body_budget",
            Refusal::TooLarge => "body_too_large",
            Refusal::Timeout => "body_timeout",
        }
    }
}

/// The error a guarded body's reader sees; carries the answer for the request.
#[derive(Debug)]
pub struct Refused(pub Problem);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.detail)
    }
}

impl std::error::Error for Refused {}

/// The problem of a failed body read, when [`Admission`] refused it (else `None`).
pub fn refusal_of(e: &axum::Error) -> Option<Problem> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        source = err.source();
    }
    None
}

/// The budget and limits, shared by every request.
#[derive(Debug)]
pub struct Admission {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    body_max: usize,
    snapshot_max: usize,
    body_timeout: Duration,
    refused: [AtomicU64; 3],
}

impl Admission {
    pub fn new(config: &crate::Config) -> Arc<Admission> {
        let budget_bytes = config.http.body_budget_bytes;
        Arc::new(Admission {
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            body_max: config.body_max_bytes,
            snapshot_max: config.reconciliation.snapshot_max_bytes,
            body_timeout: config.http.body_read_timeout,
            refused: Default::default(),
        })
    }

    /// The budget, in bytes.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Bytes of bodies charged to the budget now.
    pub fn in_flight_bytes(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }

    /// Refusals since start, by reason.
    pub fn refused(&self) -> [(Refusal, u64); 3] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    /// Charges `events` parsed events to the request's `charge`: refused with 503 (nothing of
    /// the request applied) when the budget cannot hold them. Without a charge (a request that
    /// did not come through [`admit`]) nothing is charged.
    pub fn charge_events(&self, charge: Option<&Charge>, events: usize) -> Result<(), Problem> {
        let Some(charge) = charge else {
            return Ok(());
        };
        let bytes = events.saturating_mul(EVENT_COST_BYTES);
        let permit = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| self.problem(Refusal::Budget, self.body_max))?;
        charge.add(permit);
        Ok(())
    }

    /// The most one request to `path` may send.
    fn limit_for(&self, method: &Method, path: &str) -> usize {
        if method == Method::POST && path == "/v1/reconciliations" {
            self.snapshot_max
        } else {
            self.body_max
        }
    }

    fn problem(&self, why: Refusal, limit: usize) -> Problem {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        match why {
            Refusal::Budget => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Try again shortly",
                    format!(
                        "the hub holds as many request bodies as it takes at once ({} MiB); \
                         nothing of this one was kept, retry after the Retry-After delay",
                        self.budget_bytes >> 20
                    ),
                );
                p.retry_after_s = Some(1);
                p
            }
            Refusal::TooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Payload too large",
                format!("the body exceeds {limit} bytes; send a smaller batch"),
            ),
            Refusal::Timeout => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request timeout",
                format!(
                    "the body did not arrive within {} s of the headers",
                    self.body_timeout.as_secs()
                ),
            ),
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// The middleware: charges the body to the budget, refuses what does not fit, and answers the
/// request with the body's refusal when reading it failed. A body refused for its size from a
/// known token is recorded as a `schema_violation` exception (the body itself is not kept).
pub async fn admit(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let adm = st.admission.clone();
    let limit = adm.limit_for(req.method(), req.uri().path());
    let declared = declared_length(req.headers());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    let expect_continue = expects_continue(req.headers());
    let held = Charge::default();
    let verdict: Arc<OnceLock<Problem>> = Arc::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(held.clone());
    let mut guarded = Guarded {
        inner: Some(body),
        adm: adm.clone(),
        limit,
        read: 0,
        charged: declared.is_some(),
        held: held.clone(),
        verdict: verdict.clone(),
        deadline: Box::pin(tokio::time::sleep(adm.body_timeout)),
        expect_continue,
        polled: false,
        done: false,
        drain_max: limit,
    };
    if let Some(n) = declared {
        let refused = match usize::try_from(n) {
            Ok(n) if n <= limit => {
                // `limit` fits a u32 (the config keeps it at most 1 GiB).
                match adm
                    .budget
                    .clone()
                    .try_acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
                {
                    Ok(permit) => {
                        held.add(permit);
                        None
                    }
                    Err(_) => Some(adm.problem(Refusal::Budget, limit)),
                }
            }
            _ => Some(adm.problem(Refusal::TooLarge, limit)),
        };
        if let Some(p) = refused {
            // Dropping the guard drains what the client still sends (or, when it waits for
            // `100 Continue`, never asks for it).
            guarded.drain_max = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(limit.saturating_mul(2));
            drop(guarded);
            if p.status == StatusCode::PAYLOAD_TOO_LARGE
                && let Ok(caller) = authenticate(&st.config.tokens, &parts.headers)
            {
                let record = rejected_input(ExceptionKind::SchemaViolation, &p, b"", &caller);
                if let Err(unavailable) = crate::api::record(&st, record).await {
                    return unavailable.into_response();
                }
            }
            return p.into_response();
        }
    }
    let resp = next
        .run(Request::from_parts(parts, Body::new(guarded)))
        .await;
    let resp = match verdict.get() {
        Some(p) => p.clone().into_response(),
        None => resp,
    };
    drop(held);
    resp
}

/// A request body that charges the budget, stops at the request's limit and deadline, and
/// drains itself when dropped unfinished.
struct Guarded {
    inner: Option<Body>,
    adm: Arc<Admission>,
    limit: usize,
    read: usize,
    /// The declared length was charged up front.
    charged: bool,
    /// Shared with the middleware, which releases it once the request is answered.
    held: Charge,
    verdict: Arc<OnceLock<Problem>>,
    deadline: Pin<Box<Sleep>>,
    expect_continue: bool,
    polled: bool,
    done: bool,
    /// The most a drain reads before giving up (and the connection closes).
    drain_max: usize,
}

impl Guarded {
    fn refuse(&mut self, why: Refusal) -> Poll<Option<Result<Frame<Bytes>, Refused>>> {
        let p = self.adm.problem(why, self.limit);
        let _ = self.verdict.set(p.clone());
        self.done = true;
        Poll::Ready(Some(Err(Refused(p))))
    }

    fn charge(&mut self, n: usize) -> Result<(), Refusal> {
        self.read += n;
        if self.read > self.limit {
            return Err(Refusal::TooLarge);
        }
        if self.charged || n == 0 {
            return Ok(());
        }
        let permit = self
            .adm
            .budget
            .clone()
            .try_acquire_many_owned(u32::try_from(n).map_err(|_| Refusal::TooLarge)?)
            .map_err(|_| Refusal::Budget)?;
        self.held.add(permit);
        Ok(())
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = Refused;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Refused>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.polled = true;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                match this.charge(n) {
                    Ok(()) => Poll::Ready(Some(Ok(frame))),
                    Err(why) => this.refuse(why),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection failed (the client went away); nothing to answer.
                this.done = true;
                let p = Problem::bad_request("body-unreadable", format!("the body: {e}"));
                Poll::Ready(Some(Err(Refused(p))))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.refuse(Refusal::Timeout),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.inner {
            Some(inner) if !self.done => inner.size_hint(),
            _ => hyper::body::SizeHint::with_exact(0),
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if inner.is_end_stream() || (self.expect_continue && !self.polled) {
            return;
        }
        let deadline = self.deadline.deadline();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(
                inner,
                self.drain_max.saturating_sub(self.read),
                deadline,
            ));
        }
    }
}

/// Reads and drops what is left of a body, at most `max` bytes and until `deadline`; then the
/// connection is closed if the body is still not over.
async fn drain(mut body: Body, max: usize, deadline: Instant) {
    use http_body_util::BodyExt;
    let mut left = max;
    let reading = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n > left {
                return;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout_at(deadline, reading).await;
}
