//! The engine's spans continue the span of whoever submitted the input: an `apply` span is a
//! child of the request's span although it runs on the partition's writer thread, so a trace
//! collector shows one tree per request.

mod common;

use std::sync::{Arc, Mutex};

use crossdock_engine::{Engine, EngineConfig, EventReply, StoreSpec};
use crossdock_ledger::Policy;
use crossdock_model::event::Received;
use crossdock_model::{Event, EventData, ItemId, LocationId, SourceId, Timestamp};
use tracing::Instrument;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Every span made: `(name, parent's name, correlation id field)`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

struct Parents(Seen);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Parents {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        struct Correlation(Option<String>);
        impl tracing::field::Visit for Correlation {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "correlation_id" {
                    self.0 = Some(format!("{v:?}"));
                }
            }
        }
        let mut c = Correlation(None);
        attrs.record(&mut c);
        let span = ctx.span(id).expect("a new span is known");
        let parent = span.parent().map(|p| p.name().to_string());
        self.0
            .lock()
            .unwrap()
            .push((span.name().to_string(), parent, c.0));
    }
}

fn policy() -> Arc<Policy> {
    common::policy(&["A"])
}

fn received(id: &str, correlation: &str) -> Event {
    Event {
        id: id.into(),
        source: SourceId::new("wms").unwrap(),
        time: Timestamp::now(),
        sequence: None,
        correlation_id: correlation.into(),
        causation_id: None,
        data: EventData::Received(Received {
            item: ItemId::new("SKU-1").unwrap(),
            location: LocationId::new("A").unwrap(),
            qty: 5,
            lot: None,
            reference: None,
        }),
        received_at: Timestamp::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inputs_apply_span_is_a_child_of_the_span_that_submitted_it() {
    let seen: Seen = Arc::default();
    tracing_subscriber::registry()
        .with(Parents(seen.clone()))
        .init();
    let dir = std::env::temp_dir().join(format!("crossdock-spans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::start(
        EngineConfig::new(StoreSpec::Sqlite(dir.join("x.db"))),
        policy(),
    )
    .unwrap();
    let reply = engine
        .submit(received("r-1", "PO-1"))
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    assert!(matches!(reply, EventReply::Recorded { .. }), "{reply:?}");
    // Submitted outside any span: its apply span stands alone.
    engine.submit(received("r-2", "PO-2")).await.unwrap();
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    let seen = seen.lock().unwrap().clone();
    let apply: Vec<(Option<String>, Option<String>)> = seen
        .iter()
        .filter(|(name, ..)| name == "apply")
        .map(|(_, parent, corr)| (parent.clone(), corr.clone()))
        .collect();
    assert_eq!(
        apply,
        vec![
            (Some("request".to_string()), Some("PO-1".to_string())),
            (None, Some("PO-2".to_string())),
        ],
        "{seen:?}"
    );
}
