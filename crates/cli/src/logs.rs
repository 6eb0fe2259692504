//! Logs and spans: JSON lines on stderr (level from `CROSSDOCK_LOG`, `info` by default) and,
//! when `[telemetry] otlp_endpoint` is set, every span exported over OTLP/HTTP (protobuf) by
//! the SDK's batch thread. Spans carry the correlation id of the document they work on
//! (`correlation_id`), so a collector finds a document's ingest, apply, commit and delivery.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crossdock_server::config::telemetry::Otlp;

/// Flushes exported spans when dropped (at exit).
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("spans not all exported at exit: {e}");
        }
    }
}

/// Installs the subscriber. Call outside any async runtime: the OTLP exporter's HTTP client
/// is a blocking one, made here and used from the SDK's own thread.
pub fn init(otlp: Option<&Otlp>) -> Result<Guard, String> {
    let filter =
        EnvFilter::try_from_env("CROSSDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let Some(otlp) = otlp else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Guard { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(otlp.endpoint.clone())
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint {}: {e}", otlp.endpoint))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(otlp.service_name.clone())
                .build(),
        )
        .build();
    let level = if otlp.debug_spans {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    // Only Crossdock's own spans: dependencies' spans would drown a document's journey.
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("crossdock_server", level)
        .with_target("crossdock_engine", level)
        .with_target("crossdock_delivery", level)
        .with_target("crossdock_adapters", level)
        .with_target("crossdock_edi", level);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("crossdock"))
        .with_filter(spans);
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(Guard {
        provider: Some(provider),
    })
}
