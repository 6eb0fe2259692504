//! `[exceptions]`: what the hub does by itself with each kind of exception, and whom it tells.
//!
//! ```toml
//! [exceptions]
//! notify_url = "https://ops.example.com/crossdock/exceptions"   # records waiting for a person
//! notify_secret_env = "EXCEPTIONS_WEBHOOK_SECRET"               # signs each notification
//! retry_interval_s = 300          # between automatic replays (policy retry)
//! retry_max = 12                  # automatic replays before a person takes over
//! scan_interval_ms = 5000         # how often the work queue looks at open records
//! [exceptions.policy]
//! unknown_item = "retry"          # retry | hold | auto_correct
//! oversell_risk = "hold"
//! ```
//!
//! A policy must make sense for its kind (checked, with key and line): `retry` only where the hub
//! keeps the input that caused the record and can run it again, `auto_correct` only where the hub
//! corrects the cause by itself. See [`abilities`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crossdock_model::ExceptionKind;
use serde::Deserialize;

/// `[exceptions]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ExceptionsEntry {
    pub notify_url: Option<String>,
    pub notify_secret_env: Option<String>,
    pub notify_timeout_ms: Option<u64>,
    pub retry_interval_s: Option<u64>,
    pub retry_max: Option<u32>,
    pub scan_interval_ms: Option<u64>,
    /// Kind → `retry`, `hold` or `auto_correct`.
    pub policy: BTreeMap<String, String>,
}

/// What the hub does with an open record of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KindPolicy {
    /// Replay the kept input every `retry_interval_s`, at most `retry_max` times; then (or when
    /// a record keeps nothing to replay) hand it to a person.
    Retry,
    /// Hand it to a person at once (notified once). The hub's own correction, where it makes
    /// one, does not close the record: it is noted and a person closes it.
    Hold,
    /// The hub corrects the cause by itself and closes the record when it has; a record the hub
    /// cannot correct (see [`abilities`]) is handed to a person.
    AutoCorrect,
}

impl KindPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            KindPolicy::Retry => "retry",
            KindPolicy::Hold => "hold",
            KindPolicy::AutoCorrect => "auto_correct",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [KindPolicy::Retry, KindPolicy::Hold, KindPolicy::AutoCorrect]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }
}

/// What the hub can do by itself for records of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abilities {
    /// The input the hub keeps and can run again, if it keeps any for this kind.
    pub replays: Option<&'static str>,
    /// How the hub corrects the cause by itself, if it does.
    pub corrects: Option<&'static str>,
}

const PARTNER_FILE: &str = "the partner file it came in (kept under processed/ or rejected/)";

/// Per kind: what can be replayed and what the hub corrects. Kept in step with the code that
/// raises each kind (`crate::replay` runs the inputs named here).
pub fn abilities(kind: ExceptionKind) -> Abilities {
    use ExceptionKind as K;
    let (replays, corrects) = match kind {
        K::UnknownItem | K::UnknownLocation | K::UomMismatch | K::AsnMismatch => {
            (Some(PARTNER_FILE), None)
        }
        K::SchemaViolation => (
            Some("the partner file, or the request body refused at the HTTP edge"),
            None,
        ),
        K::AuthRejected => (
            Some("the request body refused at the HTTP edge, submitted again as its token"),
            None,
        ),
        K::DeliveryFailed => (Some("the parked message, put back in its lane"), None),
        K::OversellRisk => (
            None,
            Some(
                "the ledger holds the item's channel availability at 0 and lifts the hold when \
                 available is back at or above zero",
            ),
        ),
        K::InventoryMismatch => (
            None,
            Some(
                "the delivery lane writes Crossdock's value to the channel again by compare-and-set",
            ),
        ),
        K::UnknownChannel
        | K::OwnershipViolation
        | K::DuplicateConflict
        | K::SequenceGap
        | K::TransferVariance
        | K::PartnerAckTimeout
        | K::ShipmentPostingDelay
        | K::PricingFailure
        | K::CreditHold
        | K::OutOfBounds
        | K::ReservationTimeout => (None, None),
    };
    Abilities { replays, corrects }
}

/// The policy of a kind nobody configured.
pub fn default_policy(kind: ExceptionKind) -> KindPolicy {
    use ExceptionKind as K;
    match kind {
        // Usually fixed by importing master data; the next replay then goes through.
        K::UnknownItem | K::UnknownLocation | K::UomMismatch => KindPolicy::Retry,
        K::OversellRisk | K::InventoryMismatch => KindPolicy::AutoCorrect,
        _ => KindPolicy::Hold,
    }
}

pub const RETRY_INTERVAL_S_DEFAULT: u64 = 300;
pub const RETRY_MAX_DEFAULT: u32 = 12;
pub const SCAN_INTERVAL_MS_DEFAULT: u64 = 5_000;
pub const NOTIFY_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Where records waiting for a person are announced.
#[derive(Clone)]
pub struct Notify {
    pub url: String,
    pub secret: Vec<u8>,
    pub timeout: Duration,
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The checked `[exceptions]` section.
#[derive(Debug, Clone)]
pub struct ExceptionsConfig {
    policies: Vec<(ExceptionKind, KindPolicy)>,
    pub notify: Option<Notify>,
    pub retry_interval: Duration,
    pub retry_max: u32,
    pub scan_interval: Duration,
}

impl Default for ExceptionsConfig {
    fn default() -> Self {
        ExceptionsConfig {
            policies: ExceptionKind::ALL
                .iter()
                .map(|&k| (k, default_policy(k)))
                .collect(),
            notify: None,
            retry_interval: Duration::from_secs(RETRY_INTERVAL_S_DEFAULT),
            retry_max: RETRY_MAX_DEFAULT,
            scan_interval: Duration::from_millis(SCAN_INTERVAL_MS_DEFAULT),
        }
    }
}

impl ExceptionsConfig {
    pub fn policy(&self, kind: ExceptionKind) -> KindPolicy {
        self.policies
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(|| default_policy(kind), |(_, p)| *p)
    }

    /// The kinds under `policy`.
    pub fn kinds(&self, policy: KindPolicy) -> Vec<ExceptionKind> {
        ExceptionKind::ALL
            .iter()
            .copied()
            .filter(|&k| self.policy(k) == policy)
            .collect()
    }

    /// Whether the ledger closes an oversell record itself when available recovers (policy
    /// `auto_correct`); under `hold` it lifts the hold and leaves the record to a person.
    pub fn ledger_resolves_oversell(&self) -> bool {
        self.policy(ExceptionKind::OversellRisk) == KindPolicy::AutoCorrect
    }
}

/// Checks the section; each problem is `(key under "exceptions.", message)`.
pub fn check(entry: &ExceptionsEntry) -> Result<ExceptionsConfig, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut config = ExceptionsConfig::default();
    for (key, value) in &entry.policy {
        let at = format!("policy.{key}");
        let Some(kind) = ExceptionKind::parse(key) else {
            let kinds: Vec<&str> = ExceptionKind::ALL.iter().map(|k| k.as_str()).collect();
            problems.push((
                at,
                format!("no exception kind {key:?}; kinds are {}", kinds.join(", ")),
            ));
            continue;
        };
        let Some(policy) = KindPolicy::parse(value) else {
            problems.push((
                at,
                format!("must be \"retry\", \"hold\" or \"auto_correct\", got {value:?}"),
            ));
            continue;
        };
        let can = abilities(kind);
        match policy {
            KindPolicy::Retry if can.replays.is_none() => problems.push((
                at,
                format!(
                    "retry makes no sense for {key}: the hub keeps no input of it to run again; use \"hold\"{}",
                    if can.corrects.is_some() { " or \"auto_correct\"" } else { "" }
                ),
            )),
            KindPolicy::AutoCorrect if can.corrects.is_none() => problems.push((
                at,
                format!(
                    "auto_correct makes no sense for {key}: the hub does not correct it by itself; use \"hold\"{}",
                    if can.replays.is_some() { " or \"retry\"" } else { "" }
                ),
            )),
            _ => {
                for slot in &mut config.policies {
                    if slot.0 == kind {
                        slot.1 = policy;
                    }
                }
            }
        }
    }
    let mut ranged = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| -> u64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(v) => {
                problems.push((key.to_string(), format!("must be {min} ..= {max}, got {v}")));
                default
            }
        }
    };
    config.retry_interval = Duration::from_secs(ranged(
        "retry_interval_s",
        entry.retry_interval_s,
        RETRY_INTERVAL_S_DEFAULT,
        1,
        7 * 24 * 3600,
    ));
    config.retry_max = ranged(
        "retry_max",
        entry.retry_max.map(u64::from),
        u64::from(RETRY_MAX_DEFAULT),
        1,
        1000,
    ) as u32;
    config.scan_interval = Duration::from_millis(ranged(
        "scan_interval_ms",
        entry.scan_interval_ms,
        SCAN_INTERVAL_MS_DEFAULT,
        10,
        3_600_000,
    ));
    let timeout = Duration::from_millis(ranged(
        "notify_timeout_ms",
        entry.notify_timeout_ms,
        NOTIFY_TIMEOUT_MS_DEFAULT,
        1,
        60_000,
    ));
    match (&entry.notify_url, &entry.notify_secret_env) {
        (None, None) => {}
        (None, Some(_)) => problems.push((
            "notify_secret_env".into(),
            "signs notifications to notify_url, which is not set".into(),
        )),
        (Some(_), None) => problems.push((
            "notify_url".into(),
            "needs notify_secret_env: every notification is signed (secrets never sit in the config)"
                .into(),
        )),
        (Some(url), Some(var)) => {
            let parsed = reqwest::Url::parse(url.trim());
            let url_ok = match &parsed {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => true,
                Ok(_) => {
                    problems.push((
                        "notify_url".into(),
                        "must be an http:// or https:// URL".into(),
                    ));
                    false
                }
                Err(e) => {
                    problems.push(("notify_url".into(), format!("not a URL ({e})")));
                    false
                }
            };
            let secret = match std::env::var(var) {
                Ok(s) if !s.is_empty() => Some(s.into_bytes()),
                _ => {
                    problems.push((
                        "notify_secret_env".into(),
                        format!("environment variable {var} is not set"),
                    ));
                    None
                }
            };
            if let (true, Some(secret), Ok(u)) = (url_ok, secret, parsed) {
                config.notify = Some(Notify {
                    url: u.to_string(),
                    secret,
                    timeout,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(policy: &[(&str, &str)]) -> ExceptionsEntry {
        ExceptionsEntry {
            policy: policy
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_default_is_a_policy_its_kind_allows() {
        for &kind in ExceptionKind::ALL {
            let can = abilities(kind);
            match default_policy(kind) {
                KindPolicy::Retry => assert!(can.replays.is_some(), "{kind:?}"),
                KindPolicy::AutoCorrect => assert!(can.corrects.is_some(), "{kind:?}"),
                KindPolicy::Hold => {}
            }
        }
        let c = check(&ExceptionsEntry::default()).unwrap();
        assert_eq!(c.policy(ExceptionKind::UnknownItem), KindPolicy::Retry);
        assert_eq!(
            c.policy(ExceptionKind::OversellRisk),
            KindPolicy::AutoCorrect
        );
        assert!(c.ledger_resolves_oversell());
        assert!(c.notify.is_none());
    }

    #[test]
    fn policies_that_make_no_sense_are_refused_by_key() {
        let problems = check(&entry(&[
            ("sequence_gap", "retry"),
            ("unknown_item", "auto_correct"),
            ("oversell_risk", "retry"),
            ("nonsense", "hold"),
            ("asn_mismatch", "sometimes"),
        ]))
        .unwrap_err();
        let has =
            |key: &str, words: &str| problems.iter().any(|(k, m)| k == key && m.contains(words));
        assert!(
            has("policy.sequence_gap", "retry makes no sense"),
            "{problems:#?}"
        );
        assert!(
            has("policy.unknown_item", "does not correct"),
            "{problems:#?}"
        );
        assert!(
            has("policy.oversell_risk", "or \"auto_correct\""),
            "{problems:#?}"
        );
        assert!(has("policy.nonsense", "no exception kind"), "{problems:#?}");
        assert!(has("policy.asn_mismatch", "sometimes"), "{problems:#?}");
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn hold_overrides_and_turns_the_ledger_closing_off() {
        let c = check(&entry(&[
            ("oversell_risk", "hold"),
            ("delivery_failed", "retry"),
        ]))
        .unwrap();
        assert_eq!(c.policy(ExceptionKind::OversellRisk), KindPolicy::Hold);
        assert!(!c.ledger_resolves_oversell());
        assert!(
            c.kinds(KindPolicy::Retry)
                .contains(&ExceptionKind::DeliveryFailed)
        );
    }

    #[test]
    fn notification_needs_a_url_and_a_secret() {
        let mut e = entry(&[]);
        e.notify_url = Some("ftp://example.com".into());
        e.notify_secret_env = Some("CROSSDOCK_TEST_SURELY_UNSET".into());
        e.retry_max = Some(0);
        let problems = check(&e).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["retry_max", "notify_url", "notify_secret_env"],
            "{problems:#?}"
        );
        let mut e = entry(&[]);
        e.notify_url = Some("http://127.0.0.1:9/x".into());
        assert_eq!(check(&e).unwrap_err()[0].0, "notify_url");
    }
}
