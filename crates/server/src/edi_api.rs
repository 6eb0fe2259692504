//! `/v1/partners` and `/v1/master`: trading partners and their folders, sending an 856, 810 or
//! 940 to a partner, and master data files replaced at runtime (exception replay, which re-runs
//! a stored partner file once master data is fixed, is in [`crate::replay`]).

use std::sync::Arc;

use crate::extract::Path;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use crossdock_edi::outbound::{self, ReleaseDoc, ShipmentDoc};
use crossdock_x12::sets::TypedSet;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::auth::{Needed, authenticate};
use crate::master_data::MasterKind;
use crate::problem::Problem;

type AppResult = Result<Response, Problem>;

pub async fn get_partners(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    let partners: Vec<Value> = st
        .partners
        .specs
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "source": p.source.as_str(),
                "isa": p.isa.as_ref().map(|(q, i)| format!("{q}/{i}")),
                "channel": p.channel.as_ref().map(|c| c.as_str()),
                "inbound": p.inbound.display().to_string(),
                "outbound": p.outbound.display().to_string(),
                "version": format!("{}{}", p.release.gs08(), p.version_suffix),
            })
        })
        .collect();
    Ok(Json(json!({ "partners": partners })).into_response())
}

/// `POST /v1/partners/{id}/send/{set}`: an 856 or 810 (body: a shipment) or a 940 (body: a
/// release) rendered for the partner and written to its outbound folder.
pub async fn post_send(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, set)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Admin)?;
    let spec = st
        .partners
        .spec(&id)
        .ok_or_else(|| Problem::not_found("no-such-partner", format!("no partner {id:?}")))?;
    let master = st.partners.master.current();
    let bad_body = |e: serde_json::Error| {
        Problem::bad_request("invalid-body", format!("the {set} document: {e}"))
    };
    let typed: TypedSet = match set.as_str() {
        "856" | "810" => {
            let doc: ShipmentDoc = serde_json::from_slice(&body).map_err(bad_body)?;
            if set == "856" {
                outbound::asn_856(spec, &master, &doc).into()
            } else {
                outbound::invoice_810(spec, &master, &doc).into()
            }
        }
        "940" => {
            let doc: ReleaseDoc = serde_json::from_slice(&body).map_err(bad_body)?;
            outbound::shipping_order_940(spec, &master, &doc).into()
        }
        other => {
            return Err(Problem::bad_request(
                "invalid-parameter",
                format!("{other:?}: send 856, 810 or 940 (846, 855 and 997 are sent by the hub)"),
            ));
        }
    };
    let file = st
        .partners
        .send(spec, &[typed])
        .await
        .map_err(|e| Problem::unprocessable("cannot-render", e))?;
    Ok(Json(json!({ "partner": id, "set": set, "file": file })).into_response())
}

pub async fn get_master(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Query)?;
    Ok(Json(json!(st.partners.master.counts())).into_response())
}

/// `POST /v1/master/{items|locations|crosswalks|units}` with the CSV file as the body.
pub async fn post_master(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: axum::body::Bytes,
) -> AppResult {
    authenticate(&st.config.tokens, &headers)?.require(Needed::Admin)?;
    let k = MasterKind::parse(&kind).ok_or_else(|| {
        Problem::not_found(
            "no-such-master-file",
            format!("{kind:?}: use items, locations, crosswalks or units"),
        )
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("invalid-body", "the file is not UTF-8 text"))?
        .to_string();
    let master = st.partners.master.clone();
    let result = tokio::task::spawn_blocking(move || master.replace(k, &text))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    match result {
        Ok(counts) => Ok(Json(json!({ "replaced": kind, "counts": counts })).into_response()),
        Err(crossdock_master::LoadError::Invalid { problems, .. }) => {
            let rows: Vec<Value> = problems
                .iter()
                .map(|p| json!({"line": p.line, "column": p.column, "reason": p.reason}))
                .collect();
            Err(Problem::unprocessable(
                "invalid-rows",
                format!("{} bad rows; nothing was changed", problems.len()),
            )
            .with("rows", rows))
        }
        Err(e) => Err(Problem::unavailable(e.to_string())),
    }
}
