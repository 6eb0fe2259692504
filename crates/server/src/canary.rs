//! Synthetic canaries: per configured channel, every `interval` a test update of the canary's
//! own item (an `inventory.counted` from `crossdock.canary`, alternating between 1 and 2 units
//! so the channel's value always changes) goes through the whole path (engine, outbox, lane,
//! adapter); the channel's level is then read back until it shows the hub's new value or
//! `timeout` passes. Each round feeds `crossdock_canary_visible_seconds`,
//! `crossdock_canary_checks_total` and the `channel_visible` objectives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdock_adapters::StockReader;
use crossdock_engine::{Engine, EventReply};
use crossdock_ledger::policy::CANARY_SOURCE;
use crossdock_model::event::Counted;
use crossdock_model::{Event, EventData, SourceId, Timestamp};
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::config::telemetry::Canary;
use crate::telemetry::Telemetry;

/// How often a round reads the channel while waiting for the value.
const READ_EVERY: Duration = Duration::from_millis(250);

/// Starts one task per canary; they stop when `stop` turns true.
pub fn start(
    canaries: &[Canary],
    engine: Arc<Engine>,
    readers: &HashMap<String, Arc<dyn StockReader>>,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) {
    for c in canaries {
        let Some(reader) = readers.get(c.channel.as_str()).cloned() else {
            // The config checker only accepts channels with a reader.
            warn!(channel = %c.channel, "canary channel has no reader; not started");
            continue;
        };
        let canary = c.clone();
        let (engine, telemetry, mut stop) = (engine.clone(), telemetry.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round: u64 = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(canary.interval) => {}
                    _ = stop.changed() => return,
                }
                round += 1;
                let outcome = run_round(&canary, &engine, &*reader, round).await;
                if let Err((why, detail)) = &outcome {
                    warn!(channel = %canary.channel, result = why, detail, "canary round failed");
                }
                telemetry.canary(canary.channel.as_str(), outcome.map_err(|(why, _)| why));
            }
        });
    }
}

type RoundError = (&'static str, String);

/// One round: the update, then reads until the channel shows it. `Ok(lag)` from commit to
/// visible.
async fn run_round(
    c: &Canary,
    engine: &Engine,
    reader: &dyn StockReader,
    round: u64,
) -> Result<Duration, RoundError> {
    let chan = engine
        .policy()
        .channel(&c.channel)
        .ok_or_else(|| ("error", format!("channel {} is not configured", c.channel)))?;
    let before = engine.availability(&c.item, chan).0;
    let started = Timestamp::now();
    let correlation = format!("canary:{}:{}", c.channel, started.as_micros());
    let span = tracing::info_span!("canary", channel = %c.channel, correlation_id = %correlation);
    async {
        // Whichever of 1 and 2 moves the channel's value (a buffer may hide one of them).
        let mut expected = None;
        for qty in [1 + (round % 2) as i64, 2 - (round % 2) as i64] {
            let event = Event {
                id: format!("{correlation}:{qty}"),
                source: SourceId::new(CANARY_SOURCE).expect("a valid source id"),
                time: Timestamp::now(),
                sequence: None,
                correlation_id: correlation.clone(),
                causation_id: None,
                data: EventData::Counted(Counted {
                    item: c.item.clone(),
                    location: c.location.clone(),
                    qty,
                    lot: None,
                }),
                received_at: Timestamp::now(),
            };
            match engine.submit(event).await {
                Ok(EventReply::Recorded { exception: None, .. }) => {}
                Ok(other) => return Err(("error", format!("the update was not applied: {other:?}"))),
                Err(e) => return Err(("error", format!("the update was not committed: {e}"))),
            }
            let now = engine.availability(&c.item, chan).0;
            if now != before {
                expected = Some(now);
                break;
            }
        }
        let expected = expected.ok_or_else(|| {
            (
                "error",
                format!(
                    "{}'s availability on {} stays {before} whether 1 or 2 are counted at {}; give the canary an item and location the channel's buffer does not hide",
                    c.item, c.channel, c.location
                ),
            )
        })?;
        let committed = Instant::now();
        let mut last = None;
        while committed.elapsed() < c.timeout {
            match reader.read_item(c.item.as_str()).await {
                Ok(Some(v)) if v == expected => {
                    let lag = committed.elapsed();
                    info!(value = v, lag_ms = lag.as_millis() as u64, "canary value visible");
                    return Ok(lag);
                }
                Ok(shown) => last = Some(format!("the channel shows {shown:?}")),
                Err(e) if e.retryable => last = Some(e.to_string()),
                Err(e) => return Err(("error", e.to_string())),
            }
            tokio::time::sleep(READ_EVERY).await;
        }
        Err((
            "timeout",
            format!(
                "{} not seen on {} within {:?} (expected {expected}; {})",
                c.item,
                c.channel,
                c.timeout,
                last.unwrap_or_else(|| "no read finished".into())
            ),
        ))
    }
    .instrument(span)
    .await
}
