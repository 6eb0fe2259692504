//! An ERP's credit check, as a loopback server.
//!
//! ```text
//! POST /credit   {"order": "SO-1", "amount_minor": 12500, ...}
//! 200            {"approved": true, "reason": "within the credit limit"}
//! ```
//!
//! Orders up to [`CreditConfig::limit_minor`] are approved, larger ones declined. Every answer
//! waits [`CreditConfig::latency`] first (the ERP's own time); [`CreditSim::set_hang`] makes it
//! wait much longer (a timeout for any sensible client) and [`CreditSim::set_failing`] answers
//! 503. Calls are counted.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::server::{Bound, Server};

#[derive(Debug, Clone)]
pub struct CreditConfig {
    pub latency: Duration,
    pub limit_minor: i64,
}

impl Default for CreditConfig {
    fn default() -> Self {
        CreditConfig {
            latency: Duration::from_millis(5),
            limit_minor: 1_000_000,
        }
    }
}

struct Shared {
    config: CreditConfig,
    hang: AtomicBool,
    failing: AtomicBool,
    calls: AtomicU64,
}

pub struct CreditSim {
    server: Server,
    shared: Arc<Shared>,
}

impl CreditSim {
    pub async fn start(config: CreditConfig) -> io::Result<CreditSim> {
        let bound = Bound::loopback().await?;
        let shared = Arc::new(Shared {
            config,
            hang: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/credit", post(check))
            .with_state(shared.clone());
        Ok(CreditSim {
            server: bound.serve(router, "credit"),
            shared,
        })
    }

    /// The credit check URL.
    pub fn url(&self) -> String {
        format!("{}/credit", self.server.url())
    }

    /// Answers only after 30 s (clients time out first).
    pub fn set_hang(&self, on: bool) {
        self.shared.hang.store(on, Ordering::SeqCst);
    }

    /// Answers 503.
    pub fn set_failing(&self, on: bool) {
        self.shared.failing.store(on, Ordering::SeqCst);
    }

    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

async fn check(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let wait = if s.hang.load(Ordering::SeqCst) {
        Duration::from_secs(30)
    } else {
        s.config.latency
    };
    tokio::time::sleep(wait).await;
    if s.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "credit service down").into_response();
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let amount = req["amount_minor"].as_i64().unwrap_or(0);
    let approved = amount <= s.config.limit_minor;
    let reason = if approved {
        "within the credit limit".to_string()
    } else {
        format!("{amount} is over the credit limit {}", s.config.limit_minor)
    };
    axum::Json(json!({"approved": approved, "reason": reason})).into_response()
}
