//! `/v1/reconciliations` (runs on demand, their results and CSV export) and
//! `/v1/items/{item}/history` (time travel).

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crossdock_model::Timestamp;
use crossdock_store::{RunRow, VarianceRow};
use serde::Deserialize;
use serde_json::json;

use crate::api::{AppState, engine_problem};
use crate::auth::{Caller, Needed, authenticate};
use crate::problem::Problem;
use crate::reconcile::{Input, RunError, run_json, variance_json};

type AppResult = Result<Response, Problem>;

pub const PAGE_DEFAULT: u32 = 1000;
pub const PAGE_MAX: u32 = 10_000;

fn time_param(raw: Option<&str>, field: &str) -> Result<Option<Timestamp>, Problem> {
    raw.map(|t| {
        Timestamp::parse_rfc3339(t).map_err(|e| {
            Problem::bad_request(
                "invalid-parameter",
                format!("{field} must be an RFC 3339 time: {e}"),
            )
            .field(field)
        })
    })
    .transpose()
}

#[derive(Deserialize)]
pub struct RunParams {
    source: Option<String>,
    as_of: Option<String>,
    /// Names the snapshot in records and logs (the CLI sends the file name).
    name: Option<String>,
}

/// `POST /v1/reconciliations?source=S[&as_of=T]`: the body is the snapshot (CSV, or an X12 846
/// for an `x12_846` source); an empty body reconciles what the source has now.
pub async fn post_run(
    State(st): State<Arc<AppState>>,
    Query(q): Query<RunParams>,
    req: Request,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, req.headers())?;
    caller.require(Needed::Admin)?;
    let limit = st.reconciler.settings().snapshot_max_bytes;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Payload too large",
                format!("the snapshot exceeds {limit} bytes ([reconciliation] snapshot_max_bytes)"),
            )
        })?;
    let source = q.source.ok_or_else(|| {
        Problem::bad_request("missing-parameter", "source is required").field("source")
    })?;
    let as_of = time_param(q.as_of.as_deref(), "as_of")?;
    let input = if body.is_empty() {
        Input::Latest
    } else {
        Input::Given {
            bytes: body,
            as_of,
            name: q.name.unwrap_or_else(|| "request".into()),
        }
    };
    match st.reconciler.run(&source, input, "api").await {
        Ok(outcome) => Ok((StatusCode::CREATED, Json(outcome.to_json())).into_response()),
        Err(e) => Err(run_problem(e)),
    }
}

fn run_problem(e: RunError) -> Problem {
    let detail = e.to_string();
    match e {
        RunError::UnknownSource(_) => Problem::not_found("unknown-source", detail).field("source"),
        RunError::Busy(_) => Problem::new(StatusCode::CONFLICT, "busy", "Busy", detail),
        RunError::NoSnapshot(_) => Problem::new(
            StatusCode::CONFLICT,
            "no-snapshot",
            "Nothing to compare",
            detail,
        ),
        RunError::BadInput {
            errors,
            exception_id,
        } => Problem::unprocessable("invalid-snapshot", detail)
            .with(
                "errors",
                errors
                    .iter()
                    .map(|e| json!({"line": e.line, "column": e.column, "message": e.message}))
                    .collect::<Vec<_>>(),
            )
            .with("exception_id", exception_id),
        RunError::Unavailable(_) => Problem::unavailable(detail),
    }
}

#[derive(Deserialize)]
pub struct ListParams {
    source: Option<String>,
    limit: Option<u32>,
}

pub async fn list_runs(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let runs = runs(&st, &caller, q.source, q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()})).into_response())
}

/// The newest runs (of one source, or every source), at most `limit` (1 ..= 1000) (`query`).
pub async fn runs(
    st: &AppState,
    caller: &Caller,
    source: Option<String>,
    limit: u32,
) -> Result<Vec<RunRow>, Problem> {
    caller.require(Needed::Query)?;
    let limit = limit.clamp(1, 1000);
    st.engine
        .read(move |s| s.list_runs(source.as_deref(), limit))
        .await
        .map_err(engine_problem)
}

#[derive(Deserialize)]
pub struct PageParams {
    after: Option<u32>,
    limit: Option<u32>,
}

/// `GET /v1/reconciliations/{id}`: the run and a page of its variance rows (`after`, `limit`).
pub async fn get_run(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let (run, rows) = run_page(&st, &caller, &id, q.after, limit).await?;
    let mut v = run_json(&run);
    v["variances"] = json!(rows.iter().map(variance_json).collect::<Vec<_>>());
    if rows.len() as u32 == limit {
        v["next_after"] = json!(rows.last().map(|r| r.n));
    }
    Ok(Json(v).into_response())
}

/// Run `id` and its variance rows after row `after`, at most `limit` (`query`).
pub async fn run_page(
    st: &AppState,
    caller: &Caller,
    id: &str,
    after: Option<u32>,
    limit: u32,
) -> Result<(RunRow, Vec<VarianceRow>), Problem> {
    caller.require(Needed::Query)?;
    let key = id.to_string();
    let (run, rows) = st
        .engine
        .read(move |s| {
            let run = s.find_run(&key)?;
            let rows = match &run {
                Some(_) => s.run_variances(&key, after, limit)?,
                None => Vec::new(),
            };
            Ok((run, rows))
        })
        .await
        .map_err(engine_problem)?;
    let run =
        run.ok_or_else(|| Problem::not_found("unknown-run", format!("no reconciliation {id:?}")))?;
    Ok((run, rows))
}

/// `GET /v1/reconciliations/{id}/variances.csv`: every variance row of the run.
pub async fn get_variances_csv(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let key = id.clone();
    let found = st
        .engine
        .read(move |s| s.find_run(&key))
        .await
        .map_err(engine_problem)?;
    if found.is_none() {
        return Err(Problem::not_found(
            "unknown-run",
            format!("no reconciliation {id:?}"),
        ));
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "item",
        "location",
        "lot",
        "class",
        "source_qty",
        "ledger_qty",
        "delta",
        "action",
        "reference",
        "detail",
    ];
    let csv_error = |e: csv::Error| Problem::unavailable(format!("cannot write CSV: {e}"));
    out.write_record(header).map_err(csv_error)?;
    let mut after = None;
    loop {
        let key = id.clone();
        let rows = st
            .engine
            .read(move |s| s.run_variances(&key, after, PAGE_MAX))
            .await
            .map_err(engine_problem)?;
        for r in &rows {
            let opt = |q: Option<i64>| q.map_or_else(String::new, |q| q.to_string());
            out.write_record([
                r.item.as_str(),
                &r.location,
                &r.lot,
                &r.class,
                &opt(r.source_qty),
                &opt(r.ledger_qty),
                &r.delta.to_string(),
                &r.action,
                &r.reference,
                &r.detail,
            ])
            .map_err(csv_error)?;
        }
        match rows.last() {
            Some(last) if rows.len() as u32 == PAGE_MAX => after = Some(last.n),
            _ => break,
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| Problem::unavailable(format!("cannot write CSV: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-variances.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct HistoryParams {
    at: Option<String>,
}

/// `GET /v1/items/{item}/history?at=T`.
pub async fn get_history(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<HistoryParams>,
) -> AppResult {
    let caller = authenticate(&st.config.tokens, &headers)?;
    Ok(Json(
        item_history(&st, &caller, &raw, q.at.as_deref())
            .await?
            .to_json(),
    )
    .into_response())
}

/// Item `raw` as the hub knew it at `at` (RFC 3339, required) (`query`).
pub async fn item_history(
    st: &AppState,
    caller: &Caller,
    raw: &str,
    at: Option<&str>,
) -> Result<crate::reconcile::History, Problem> {
    caller.require(Needed::Query)?;
    let item = crate::api::item(st, Some(raw), "item")?;
    let at = time_param(at, "at")?.ok_or_else(|| {
        Problem::bad_request("missing-parameter", "at is required (an RFC 3339 time)").field("at")
    })?;
    crate::reconcile::history(&st.engine, &item, at)
        .await
        .map_err(engine_problem)
}
