//! Structured JSON logs through tracing-subscriber, and traces through OpenTelemetry:
//! every span is also an OpenTelemetry span, exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and only kept for propagation otherwise).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::{fmt, EnvFilter};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The default log filter: `info`, with lapin's own logs (which can carry message
/// bodies) at `error`.
pub const DEFAULT_FILTER: &str = "info,lapin=error";

/// A tracer provider for `context`: OTLP/HTTP export when the standard environment
/// variables configure an endpoint, none otherwise (ids are still made and propagated).
pub fn provider(context: &str) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(context.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    let builder = match endpoint {
        None => builder,
        Some(_) => match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder.with_batch_exporter(exporter),
            Err(e) => {
                eprintln!("OTLP exporter not started: {e}");
                builder
            }
        },
    };
    builder.build()
}

/// Installs the log and trace subscriber for a process; a second call is a no-op.
/// The level comes from `RUST_LOG` (default [`DEFAULT_FILTER`]).
pub fn init(context: &str) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = PROVIDER.get_or_init(|| provider(context));
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // The log filter applies to the log lines only: spans (and the trace context they
    // carry into events) exist whatever RUST_LOG says.
    let installed = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("fleet"))
                .with_filter(LevelFilter::INFO),
        )
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(context, "telemetry initialised");
    }
}

/// Exports the spans still buffered (at shutdown).
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}
