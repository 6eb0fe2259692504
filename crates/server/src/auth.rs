//! Bearer tokens with scopes. Secrets come from the environment or files and are never logged.

use axum::http::{HeaderMap, StatusCode, header};

use crossdock_ledger::policy::IMPORT_SOURCE;

use crate::config::{Scope, Token};
use crate::problem::Problem;

/// What the caller's token allows.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    /// The caller a configured token makes (an exception replay submits as the token that sent
    /// the input).
    pub fn of(token: &Token) -> Caller {
        Caller {
            name: token.name.clone(),
            scopes: token.scopes.clone(),
        }
    }

    fn admin(&self) -> bool {
        self.scopes.iter().any(|s| matches!(s, Scope::Admin))
    }

    /// Whether the token's scopes grant `needed` (admin grants everything).
    pub fn may(&self, needed: Needed) -> bool {
        self.admin()
            || match needed {
                Needed::Query => self.scopes.iter().any(|s| matches!(s, Scope::Query)),
                Needed::Reserve => self.scopes.iter().any(|s| matches!(s, Scope::Reserve)),
                Needed::Admin => false,
            }
    }

    pub fn require(&self, needed: Needed) -> Result<(), Problem> {
        if self.may(needed) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!("token {:?} lacks the {} scope", self.name, needed.name()),
            ))
        }
    }

    /// Whether this token may submit events as `source`.
    pub fn may_ingest(&self, source: &str) -> bool {
        self.admin() && (source == IMPORT_SOURCE || !source.starts_with("crossdock"))
            || self
                .scopes
                .iter()
                .any(|s| matches!(s, Scope::Ingest(src) if src.as_str() == source))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Needed {
    Query,
    Reserve,
    Admin,
}

impl Needed {
    pub fn name(self) -> &'static str {
        match self {
            Needed::Query => "query",
            Needed::Reserve => "reserve",
            Needed::Admin => "admin",
        }
    }
}

/// Finds the caller's token; compares every configured secret in constant time.
pub fn authenticate(tokens: &[Token], headers: &HeaderMap) -> Result<Caller, Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail.to_string(),
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send Authorization: Bearer <token>"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not readable text"))?;
    let presented = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must use the Bearer scheme"))?;
    caller_of_secret(tokens, presented).ok_or_else(|| unauthorized("the token is not valid"))
}

/// The caller whose token secret is `presented` (surrounding blanks ignored); every configured
/// secret is compared, each in constant time. The dashboard's sign-in uses it too.
pub fn caller_of_secret(tokens: &[Token], presented: &str) -> Option<Caller> {
    let presented = presented.trim();
    let mut found = None;
    for t in tokens {
        if constant_time_eq(t.secret.as_bytes(), presented.as_bytes()) {
            found = Some(t);
        }
    }
    found.map(Caller::of)
}

/// Compares in time that depends on the lengths only (secrets, CSRF tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_model::SourceId;

    fn tokens() -> Vec<Token> {
        vec![
            Token {
                name: "east".into(),
                secret: "east-secret-0123456789".into(),
                scopes: vec![Scope::Ingest(SourceId::new("wms-east").unwrap())],
            },
            Token {
                name: "admin".into(),
                secret: "admin-secret-0123456789".into(),
                scopes: vec![Scope::Admin],
            },
        ]
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn scopes_bind_sources() {
        let east = authenticate(&tokens(), &headers("Bearer east-secret-0123456789")).unwrap();
        assert!(east.may_ingest("wms-east"));
        assert!(!east.may_ingest("wms-west"));
        assert!(east.require(Needed::Query).is_err());
        let admin = authenticate(&tokens(), &headers("Bearer admin-secret-0123456789")).unwrap();
        assert!(admin.may_ingest("wms-west"));
        assert!(!admin.may_ingest("crossdock"), "nobody speaks as the hub");
        assert!(
            admin.may_ingest("crossdock.import"),
            "admins import opening stock"
        );
        assert!(!east.may_ingest("crossdock.import"));
        assert!(admin.require(Needed::Reserve).is_ok());
        assert_eq!(
            authenticate(&tokens(), &headers("Bearer nope"))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&tokens(), &HeaderMap::new())
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
}
