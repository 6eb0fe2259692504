//! The API's extractors for the query string and the path: axum's, refusing with a problem that
//! names the parameter instead of a line of text.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// The query string as `T`; a value that does not parse is a 400 `invalid-parameter` naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|rejection| {
                let text = rejection.body_text();
                // "Failed to deserialize query string: limit: invalid digit found in string"
                let reason = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let field = reason.split_once(": ").map(|(f, _)| f).filter(|f| {
                    !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                let p = Problem::bad_request(
                    "invalid-parameter",
                    format!("the query string does not parse: {reason}"),
                );
                match field {
                    Some(f) => p.field(f),
                    None => p,
                }
            })
    }
}

/// The path's parameters as `T`; a segment that does not decode is a 400 `invalid-path`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection| {
                Problem::bad_request(
                    "invalid-path",
                    format!("the path does not parse: {}", rejection.body_text()),
                )
            })
    }
}

/// An id taken from the path, checked as every id is (not empty, not blank, no control
/// characters, bounded): a 400 `invalid-parameter` naming `field` otherwise.
pub fn path_id(raw: &str, field: &str) -> Result<(), Problem> {
    crossdock_model::ids::validate_id(raw)
        .map_err(|e| Problem::bad_request("invalid-parameter", format!("{field} {e}")).field(field))
}
