//! The overview: throughput, latency, backlog by domain (delivery, exceptions,
//! reconciliation) and the objectives, with plots of the last ten minutes. Everything below
//! the title is one live fragment (`/ui/live/overview`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use crossdock_delivery::{BreakerState, EndpointStatus, LATENCY_BUCKETS_S, LaneState};
use crossdock_model::Timestamp;
use maud::{Markup, html};

use super::history::{SAMPLES_MAX, Sample};
use super::plot::{Series, chart, compact};
use super::session::Signed;
use super::{Nav, badge, duration_ms, error_page, fragment, layout, when};
use crate::api::AppState;
use crate::config::SloFlow;
use crate::problem::Problem;
use crate::telemetry::SloStatus;

/// Rates on the cards are means over this many of the newest samples (seconds).
const RECENT: usize = 10;

pub async fn page(State(st): State<Arc<AppState>>, signed: Signed) -> Response {
    match numbers(&st, &signed).await {
        Ok(body) => layout(
            &st,
            Some(&signed),
            "Overview",
            Nav::Overview,
            html! {
                h1 { "Overview" }
                div data-live="/ui/live/overview" data-every-ms="1000" { (body) }
            },
        ),
        Err(p) => error_page(&st, &signed, "Overview", Nav::Overview, p),
    }
}

pub async fn live(State(st): State<Arc<AppState>>, signed: Signed) -> Response {
    match numbers(&st, &signed).await {
        Ok(body) => fragment(body),
        Err(p) => fragment(super::problem_box(&p)),
    }
}

/// The mean of `f` over the newest [`RECENT`] samples that have a value.
fn recent(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = samples.iter().rev().take(RECENT).filter_map(f).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The plots' time window: what the samples cover, in whole minutes from one to ten, so a
/// hub that just started does not draw its first seconds as a sliver at the right edge.
fn window(span_s: Option<f64>) -> f64 {
    let minutes = (span_s.unwrap_or(0.0) / 60.0).ceil().max(1.0);
    (minutes * 60.0).min(SAMPLES_MAX as f64)
}

/// The upper bound of the latency bucket holding quantile `q` (`None` without observations;
/// infinite past the last bound).
pub fn bucket_quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    Some(f64::INFINITY)
}

fn bound(s: Option<f64>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.is_infinite() => format!("> {}", duration_ms(60_000.0)),
        Some(s) => format!("≤ {}", duration_ms(s * 1000.0)),
    }
}

async fn numbers(st: &AppState, signed: &Signed) -> Result<Markup, Problem> {
    let lanes = crate::delivery_api::endpoints(st, &signed.caller).await?;
    let open = crate::exceptions_api::open_by_kind(st, &signed.caller).await?;
    let mut runs = Vec::new();
    for source in &st.reconciler.settings().sources {
        let latest =
            crate::reconcile_api::runs(st, &signed.caller, Some(source.name.clone()), 1).await?;
        runs.push((source.name.clone(), latest.into_iter().next()));
    }
    let channels: Vec<String> = st
        .engine
        .policy()
        .channels
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    let slos = st.telemetry.slo_status(&lanes, &channels);
    let totals = st.telemetry.totals();
    let samples = st.dashboard.history.samples();
    let now_us = Timestamp::now().as_micros();

    // Waiting by priority leaves out what is in flight; the card counts both.
    let depth: u64 = lanes
        .iter()
        .map(|l| l.lane.depth.by_priority.iter().sum::<u64>() + l.lane.depth.in_flight)
        .sum();
    let oldest_ms = lanes
        .iter()
        .filter_map(|l| l.lane.oldest_age_ms)
        .max()
        .unwrap_or(0);
    let parked: u64 = lanes.iter().map(|l| l.dead_letters).sum();
    let open_total: u64 = open.iter().map(|(_, n)| n).sum();
    let events_rate = recent(&samples, |s| Some(s.events_per_s));
    let deliveries_rate = recent(&samples, |s| Some(s.deliveries_per_s));
    let commit_ms = recent(&samples, |s| s.commit_ms);
    let lag_ms = recent(&samples, |s| s.lag_ms);
    let window_s = window(samples.first().map(|s| (now_us - s.at_us) as f64 / 1e6));
    let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        samples
            .iter()
            .map(|s| ((now_us - s.at_us) as f64 / 1e6, f(s)))
            .collect()
    };
    let rate = |r: Option<f64>| r.map_or_else(|| "–".to_string(), compact);

    Ok(html! {
        section.cards {
            div.card { h2 { "Events committed" } p.big #events-total { (totals.events) }
                p.sub { "since start" } }
            div.card { h2 { "Events / s" } p.big #events-rate { (rate(events_rate)) }
                p.sub { "last " (RECENT) " s" } }
            div.card { h2 { "Deliveries / s" } p.big #deliveries-rate { (rate(deliveries_rate)) }
                p.sub { "last " (RECENT) " s" } }
            div.card { h2 { "Waiting to deliver" } p.big #backlog { (depth) }
                p.sub title="messages in flight included" { "oldest " span #oldest { (duration_ms(oldest_ms as f64)) } } }
            div.card.warn[parked > 0] { h2 { "Parked (DLQ)" } p.big #parked { (parked) }
                p.sub { a href="/ui/endpoints#dlq" { "dead-letter queue" } } }
            div.card.warn[open_total > 0] { h2 { "Open exceptions" } p.big #open-exceptions { (open_total) }
                p.sub { a href="/ui/exceptions?status=active" { "work queue" } } }
        }
        section.charts {
            (chart("chart-throughput", "Throughput", "/s", window_s, &[
                Series { name: "events committed", class: "s-1", points: series(&|s| Some(s.events_per_s)) },
                Series { name: "deliveries", class: "s-2", points: series(&|s| Some(s.deliveries_per_s)) },
            ]))
            (chart("chart-lag", "Lag", "ms", window_s, &[
                Series { name: "oldest waiting", class: "s-1", points: series(&|s| Some(s.oldest_age_s * 1000.0)) },
                Series { name: "commit → delivered", class: "s-2", points: series(&|s| s.lag_ms) },
            ]))
            (chart("chart-backlog", "Backlog", "messages", window_s, &[
                Series { name: "waiting", class: "s-1", points: series(&|s| Some(s.depth as f64)) },
                Series { name: "parked", class: "s-3", points: series(&|s| Some(s.dead_letters as f64)) },
            ]))
        }
        section.two {
            div {
                h2 { "Latency" }
                table {
                    tr { th { "flow" } th { "last " (RECENT) " s" } th { "since start" } }
                    tr {
                        td { "commit (one group commit, fsync included)" }
                        td { (commit_ms.map_or_else(|| "–".into(), duration_ms)) }
                        td { @if totals.commits > 0 {
                            (duration_ms(totals.commit_us as f64 / 1000.0 / totals.commits as f64)) " mean"
                        } @else { "–" } }
                    }
                    tr {
                        td { "commit → delivered (every endpoint)" }
                        td { (lag_ms.map_or_else(|| "–".into(), duration_ms)) }
                        td { "" }
                    }
                    @for l in &lanes {
                        tr {
                            td.indent { (l.lane.endpoint) }
                            td { "" }
                            td {
                                "p50 " (bound(bucket_quantile(&l.lane.stats.latency_counts, 0.5)))
                                ", p99 " (bound(bucket_quantile(&l.lane.stats.latency_counts, 0.99)))
                            }
                        }
                    }
                }
                h2 { "Objectives" }
                (slo_table(&slos))
            }
            div {
                h2 { "Backlog by domain" }
                (delivery_backlog(&lanes))
                h3 { "Exceptions open" }
                @if open.is_empty() {
                    p.quiet { "none" }
                } @else {
                    table #open-by-kind {
                        tr { th { "kind" } th.num { "open" } }
                        @for (kind, n) in &open {
                            tr {
                                td { a href=(format!("/ui/exceptions?status=active&kind={}", kind.as_str())) { (kind.as_str()) } }
                                td.num { (n) }
                            }
                        }
                    }
                }
                h3 { "Reconciliation (latest run per source)" }
                @if runs.is_empty() {
                    p.quiet { "no sources configured" }
                } @else {
                    table {
                        tr { th { "source" } th { "run" } th.num { "variances" } }
                        @for (source, run) in &runs {
                            tr {
                                td { (source) }
                                @match run {
                                    Some(r) => {
                                        td { a href=(format!("/ui/reconciliations/{}", super::enc(&r.id))) { (when(r.finished_at_us)) } }
                                        td.num { (super::reconciliations::variance_total(r)) }
                                    }
                                    None => { td.quiet { "never run" } td {} }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn delivery_backlog(lanes: &[EndpointStatus]) -> Markup {
    html! {
        h3 { "Deliveries" }
        @if lanes.is_empty() {
            p.quiet { "no endpoints configured" }
        } @else {
            table #backlog-by-endpoint {
                tr {
                    th { "endpoint" } th { "state" }
                    th.num title="crosses zero" { "p0" } th.num title="low stock" { "p1" } th.num { "p2" }
                    th.num { "oldest" } th.num { "parked" }
                }
                @for l in lanes {
                    tr {
                        td { (l.lane.endpoint) }
                        td { (badge(lane_state(l))) }
                        @for n in l.lane.depth.by_priority { td.num { (n) } }
                        td.num { (l.lane.oldest_age_ms.map_or_else(|| "–".into(), |ms| duration_ms(ms as f64))) }
                        td.num { (l.dead_letters) }
                    }
                }
            }
        }
    }
}

pub fn lane_state(l: &EndpointStatus) -> &'static str {
    match l.lane.state {
        LaneState::Idle => "idle",
        LaneState::Delivering => "delivering",
        LaneState::BackingOff => "backing_off",
        LaneState::Paused => "paused",
        LaneState::BreakerOpen => "breaker_open",
    }
}

pub fn breaker_state(l: &EndpointStatus) -> &'static str {
    match l.lane.breaker {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}

fn slo_table(slos: &[SloStatus]) -> Markup {
    html! {
        @if slos.is_empty() {
            p.quiet { "no [[slo]] configured" }
        } @else {
            table #slos {
                tr {
                    th { "objective" } th { "flow" } th.num { "within" } th.num { "target" }
                    th.num { "attained" } th.num { "burn rate" } th { "" }
                }
                @for s in slos {
                    tr {
                        td { (s.name) }
                        td { (match s.flow {
                            SloFlow::OccurredToCommitted => "occurred → committed",
                            SloFlow::CommittedToDelivered => "committed → delivered",
                            SloFlow::ChannelVisible => "visible on the channel (canary)",
                        }) }
                        td.num { (duration_ms(s.threshold_s * 1000.0)) }
                        td.num { (percent(s.objective)) }
                        td.num { (percent(s.attainment())) " of " (s.good + s.bad) }
                        td.num { (format!("{:.2}", s.burn_rate())) }
                        td { @if s.burn_rate() > 1.0 { (badge("missed")) } @else { (badge("met")) } }
                    }
                }
            }
        }
    }
}

fn percent(x: f64) -> String {
    let p = x * 100.0;
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.2}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_name_their_bucket_bound() {
        let mut counts = [0u64; LATENCY_BUCKETS_S.len() + 1];
        assert_eq!(bucket_quantile(&counts, 0.5), None);
        counts[0] = 98; // ≤ 5 ms
        counts[7] = 1; // ≤ 1 s
        counts[12] = 1; // beyond 60 s
        assert_eq!(bucket_quantile(&counts, 0.5), Some(0.005));
        assert_eq!(bucket_quantile(&counts, 0.99), Some(1.0));
        assert_eq!(bucket_quantile(&counts, 1.0), Some(f64::INFINITY));
        assert_eq!(bound(Some(0.005)), "≤ 5 ms");
        assert_eq!(bound(Some(f64::INFINITY)), "> 1 min");
        assert_eq!(percent(0.99), "99%");
        assert_eq!(percent(0.995), "99.50%");
    }

    #[test]
    fn plots_cover_what_was_sampled_in_whole_minutes() {
        assert_eq!(window(None), 60.0);
        assert_eq!(window(Some(5.0)), 60.0);
        assert_eq!(window(Some(61.0)), 120.0);
        assert_eq!(window(Some(599.0)), 600.0);
        assert_eq!(window(Some(5000.0)), 600.0);
    }
}
