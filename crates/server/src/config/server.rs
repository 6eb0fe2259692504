//! `[server]`'s limits at the HTTP edge: what one request body may hold, how many bytes of
//! bodies may be in flight at once, how long a client may take to send its headers and its body,
//! and how many connections are served at once.
//!
//! ```toml
//! [server]
//! body_max_bytes = 16777216     # one request body (a reconciliation snapshot: [reconciliation] snapshot_max_bytes)
//! body_budget_mb = 256          # bodies of every request in flight together; beyond it 503 + Retry-After
//! header_read_timeout_s = 30    # a request's headers (and an idle keep-alive connection)
//! body_read_timeout_s = 60      # a request's whole body, from its headers on
//! connections_max = 4096        # at most; always kept below the process's open-file limit
//! ```

use std::time::Duration;

use super::{Checker, ServerSection};

pub const BODY_BUDGET_MB_DEFAULT: u64 = 256;
pub const HEADER_READ_TIMEOUT_S_DEFAULT: u64 = 30;
pub const BODY_READ_TIMEOUT_S_DEFAULT: u64 = 60;
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;

/// The checked limits (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub body_budget_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// As configured; [`crate::http_server`] lowers it below the open-file limit.
    pub connections_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_budget_bytes: (BODY_BUDGET_MB_DEFAULT as usize) << 20,
            header_read_timeout: Duration::from_secs(HEADER_READ_TIMEOUT_S_DEFAULT),
            body_read_timeout: Duration::from_secs(BODY_READ_TIMEOUT_S_DEFAULT),
            connections_max: CONNECTIONS_MAX_DEFAULT,
        }
    }
}

/// The largest body one request may declare: a semaphore takes at most `u32::MAX` permits at
/// once, and a body past 1 GiB is a file transfer, not a request.
const BODY_MAX_LIMIT: usize = 1 << 30;

impl Checker<'_> {
    /// `[server]`'s limits; `body_maxes` are the per-request limits (`(key, bytes)`) that must
    /// fit the budget, and the largest batch (`body_max_bytes` and `batch_lines_max` events, see
    /// [`crate::admission`]) must fit it too.
    pub(super) fn http_limits(
        &mut self,
        raw: &ServerSection,
        body_maxes: &[(&str, usize)],
        largest_batch: (usize, usize),
    ) -> HttpLimits {
        let d = HttpLimits::default();
        let budget_mb = raw.body_budget_mb.unwrap_or(BODY_BUDGET_MB_DEFAULT);
        if !(1..=64 * 1024).contains(&budget_mb) {
            self.problem(
                "server.body_budget_mb",
                "must be 1 ..= 65536 (MiB of request bodies in flight at once)",
            );
        }
        let body_budget_bytes = usize::try_from(budget_mb.clamp(1, 64 * 1024)).unwrap_or(1) << 20;
        for (key, max) in body_maxes {
            if *max == 0 || *max > BODY_MAX_LIMIT {
                self.problem(*key, format!("must be 1 ..= {BODY_MAX_LIMIT} bytes"));
            } else if *max > body_budget_bytes {
                self.problem(
                    *key,
                    format!(
                        "{max} bytes does not fit server.body_budget_mb ({budget_mb} MiB): one such \
                         body could never be taken; lower it or raise the budget"
                    ),
                );
            }
        }
        let (body_max, lines) = largest_batch;
        let batch =
            body_max.saturating_add(lines.saturating_mul(crate::admission::EVENT_COST_BYTES));
        if body_max <= body_budget_bytes && batch > body_budget_bytes {
            self.problem(
                "server.body_budget_mb",
                format!(
                    "{budget_mb} MiB cannot hold the largest batch: body_max_bytes ({body_max}) and \
                     batch_lines_max ({lines}) events at {} bytes each; raise it to at least {} MiB",
                    crate::admission::EVENT_COST_BYTES,
                    batch.div_ceil(1 << 20)
                ),
            );
        }
        let secs = |this: &mut Self, key: &str, v: Option<u64>, default: Duration| match v {
            None => default,
            Some(s) if (1..=3600).contains(&s) => Duration::from_secs(s),
            Some(_) => {
                this.problem(key, "must be 1 ..= 3600 seconds");
                default
            }
        };
        let header_read_timeout = secs(
            self,
            "server.header_read_timeout_s",
            raw.header_read_timeout_s,
            d.header_read_timeout,
        );
        let body_read_timeout = secs(
            self,
            "server.body_read_timeout_s",
            raw.body_read_timeout_s,
            d.body_read_timeout,
        );
        let connections_max = match raw.connections_max {
            None => d.connections_max,
            Some(n) if n >= 1 => n,
            Some(_) => {
                self.problem("server.connections_max", "must be at least 1");
                d.connections_max
            }
        };
        HttpLimits {
            body_budget_bytes,
            header_read_timeout,
            body_read_timeout,
            connections_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const BASE: &str = "[[locations]]\nid = \"DC-EAST\"\n";

    fn problems(text: &str) -> Vec<String> {
        parse(&format!("{text}\n{BASE}"), Path::new("."))
            .map(|_| Vec::new())
            .unwrap_or_else(|ps| ps.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn defaults_and_the_snapshot_limit_follow_the_budget() {
        let c = parse(BASE, Path::new(".")).unwrap();
        assert_eq!(c.http, HttpLimits::default());
        assert_eq!(c.http.body_budget_bytes, 256 << 20);
        let c = parse(
            &format!("[server]\nbody_budget_mb = 40\n{BASE}"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.http.body_budget_bytes, 40 << 20);
        assert_eq!(
            c.reconciliation.snapshot_max_bytes,
            40 << 20,
            "a snapshot left at its default takes at most the budget"
        );
        let c = parse(
            &format!(
                "[server]\nheader_read_timeout_s = 5\nbody_read_timeout_s = 7\nconnections_max = 10\n{BASE}"
            ),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.http.body_read_timeout, Duration::from_secs(7));
        assert_eq!(c.http.connections_max, 10);
    }

    #[test]
    fn limits_that_cannot_work_are_named_with_their_line() {
        for (text, expected) in [
            (
                "[server]\nbody_budget_mb = 1\nbody_max_bytes = 2097152\nbatch_lines_max = 10\n",
                "line 3: server.body_max_bytes: 2097152 bytes does not fit server.body_budget_mb (1 MiB)",
            ),
            (
                "[server]\nbody_budget_mb = 1\nbody_max_bytes = 1000\nbatch_lines_max = 10\n[reconciliation]\nsnapshot_max_bytes = 2000000\n",
                "line 6: reconciliation.snapshot_max_bytes: 2000000 bytes does not fit",
            ),
            (
                "[server]\nbody_budget_mb = 0\n",
                "line 2: server.body_budget_mb: must be 1 ..= 65536",
            ),
            (
                "[server]\nheader_read_timeout_s = 0\n",
                "line 2: server.header_read_timeout_s: must be 1 ..= 3600",
            ),
            (
                "[server]\nbody_read_timeout_s = 9999\n",
                "line 2: server.body_read_timeout_s: must be 1 ..= 3600",
            ),
            (
                "[server]\nconnections_max = 0\n",
                "line 2: server.connections_max: must be at least 1",
            ),
            (
                "[server]\nbody_max_bytes = 0\n",
                "line 2: server.body_max_bytes: must be 1 ..=",
            ),
            (
                "[server]\nbody_budget_mb = 20\nbody_max_bytes = 16777216\n",
                "line 2: server.body_budget_mb: 20 MiB cannot hold the largest batch: body_max_bytes (16777216) and batch_lines_max (10000) events at 2048 bytes each; raise it to at least 36 MiB",
            ),
        ] {
            let found = problems(text);
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} in {found:#?}"
            );
        }
    }
}
