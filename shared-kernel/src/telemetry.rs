//! Structured JSON logs through tracing-subscriber, and traces through OpenTelemetry:
//! every span is also an OpenTelemetry span, exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and only kept for propagation otherwise).
//!
//! Nothing leaves in clear what [`crate::redact`] masks (ADR 0019): every log line goes
//! through [`Redacting`] on its way to stderr, every exported span through
//! [`RedactingExporter`], and a panic is logged by [`install_panic_hook`], redacted.

use crate::redact;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::borrow::Cow;
use std::io::Write;
use std::sync::OnceLock;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
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
            Ok(exporter) => builder.with_batch_exporter(RedactingExporter(exporter)),
            Err(e) => {
                eprintln!("OTLP exporter not started: {e}");
                builder
            }
        },
    };
    builder.build()
}

/// Installs the log and trace subscriber for a process, with JSON logs on stderr; a
/// second call is a no-op. The level comes from `RUST_LOG` (default
/// [`DEFAULT_FILTER`]).
pub fn init(context: &str) {
    init_with(context, std::io::stderr);
}

/// [`init`] with the log lines written to `writer` (through [`Redacting`]). Also installs
/// the redacting panic hook, and reads `<CONTEXT>__LOG__REDACTION` /
/// `FLEET__LOG__REDACTION`: `off` switches redaction off in a debug build (for the test
/// that proves it matters), loudly; a release build ignores it.
pub fn init_with<W>(context: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let redaction = crate::config::Env::new(context).get("LOG", "REDACTION");
    let off_asked = redaction
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("off"));
    let switched_off = off_asked && redact::switch_off();
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
                .with_writer(Redacting(writer))
                .with_filter(filter),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("fleet"))
                .with_filter(LevelFilter::INFO),
        )
        .try_init()
        .is_ok();
    if !installed {
        return;
    }
    install_panic_hook();
    tracing::info!(context, "telemetry initialised");
    if switched_off {
        for _ in 0..3 {
            tracing::warn!(
                context,
                "LOG REDACTION IS OFF (LOG__REDACTION=off, debug build): card numbers, tokens \
                 and secrets are logged and exported IN CLEAR. Only a test may do this."
            );
        }
    } else if off_asked {
        tracing::warn!(
            context,
            "LOG__REDACTION=off is ignored: this is a release build, which always redacts"
        );
    } else if let Some(other) = redaction.filter(|v| !v.eq_ignore_ascii_case("on")) {
        tracing::warn!(
            context,
            value = %other,
            "LOG__REDACTION accepts only on or off; redaction stays on"
        );
    }
}

/// A log writer that masks what [`redact::apply`] masks in each line before it reaches
/// the inner writer. A JSON line stays JSON: when masking a line as text would break it
/// (a card number written as a bare number), the line is masked value by value instead.
#[derive(Debug, Clone, Copy)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}

/// The writer of [`Redacting`]: each `write` is one whole line from the formatter.
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&redact_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One log line, masked (see [`Redacting`]).
pub fn redact_line(line: &[u8]) -> Cow<'_, [u8]> {
    if !redact::enabled() {
        return Cow::Borrowed(line);
    }
    let text = String::from_utf8_lossy(line);
    let masked = match redact::redact(&text) {
        Cow::Borrowed(_) => return Cow::Borrowed(line),
        Cow::Owned(masked) => masked,
    };
    let original = text.trim_end();
    if original.starts_with('{')
        && serde_json::from_str::<serde_json::Value>(masked.trim_end()).is_err()
    {
        if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(original) {
            redact::redact_json(&mut value);
            let mut out = value.to_string();
            out.push_str(&text[original.len()..]);
            return Cow::Owned(out.into_bytes());
        }
    }
    Cow::Owned(masked.into_bytes())
}

/// A span exporter that masks, before `E` sends them, the span names, attribute
/// values (`http.target`, `http.user_agent`, `exception.details`, ...), event names and
/// attributes (log lines inside a span), link attributes and error descriptions.
#[derive(Debug)]
pub struct RedactingExporter<E>(pub E);

impl<E: SpanExporter> SpanExporter for RedactingExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let batch = if redact::enabled() {
            batch.into_iter().map(redact_span).collect()
        } else {
            batch
        };
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

fn redact_cow(text: Cow<'static, str>) -> Cow<'static, str> {
    match redact::redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(masked) => Cow::Owned(masked),
    }
}

fn redact_value(value: opentelemetry::Value) -> opentelemetry::Value {
    use opentelemetry::{Array, StringValue, Value};
    let masked = |s: StringValue| -> StringValue {
        match redact::redact(s.as_str()) {
            Cow::Borrowed(_) => s,
            Cow::Owned(masked) => masked.into(),
        }
    };
    match value {
        Value::String(s) => Value::String(masked(s)),
        Value::Array(Array::String(items)) => {
            Value::Array(Array::String(items.into_iter().map(masked).collect()))
        }
        other => other,
    }
}

fn redact_attributes(attributes: &mut [opentelemetry::KeyValue]) {
    for kv in attributes {
        let value = std::mem::replace(&mut kv.value, opentelemetry::Value::Bool(false));
        kv.value = redact_value(value);
    }
}

/// One span with everything that carries text masked.
pub fn redact_span(mut span: SpanData) -> SpanData {
    span.name = redact_cow(span.name);
    redact_attributes(&mut span.attributes);
    for event in span.events.events.iter_mut() {
        event.name = redact_cow(std::mem::take(&mut event.name));
        redact_attributes(&mut event.attributes);
    }
    for link in span.links.links.iter_mut() {
        redact_attributes(&mut link.attributes);
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        *description = redact_cow(std::mem::take(description));
    }
    span
}

/// Replaces the panic hook with one that logs the panic (message, location, thread, and
/// the backtrace when `RUST_BACKTRACE` asks for one) as an error line, redacted; the
/// default hook would print the message in clear on stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = panic_text(info.payload(), info.location());
        let text = redact::apply(&text);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                Some(redact::apply(&backtrace.to_string()).into_owned())
            }
            _ => None,
        };
        if tracing::enabled!(tracing::Level::ERROR) {
            tracing::error!(panic = %text, thread, backtrace, "panic");
        } else {
            eprintln!("thread '{thread}' {text}");
        }
    }));
}

/// `panicked at src/x.rs:1:2: <message>`, the way the default hook words it.
pub fn panic_text(
    payload: &(dyn std::any::Any + Send),
    location: Option<&std::panic::Location<'_>>,
) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    match location {
        Some(l) => format!(
            "panicked at {}:{}:{}: {message}",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("panicked: {message}"),
    }
}

/// Exports the spans still buffered (at shutdown).
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use std::sync::{Arc, Mutex};

    const PAN: &str = "4000056655665556";
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZw";

    #[test]
    fn log_lines_are_masked_and_stay_json() {
        let line = format!(
            "{{\"message\":\"card {PAN}\",\"span\":{{\"http.target\":\"/v1/cards/{PAN}?t={JWT}\"}}}}\n"
        );
        let out = String::from_utf8(redact_line(line.as_bytes()).into_owned()).unwrap();
        assert!(!out.contains(PAN) && !out.contains(JWT), "{out}");
        assert!(
            out.contains("/v1/cards/400005******5556?t=[REDACTED-JWT]"),
            "{out}"
        );
        assert!(out.ends_with("}\n"));
        // A card number as a bare JSON number becomes a string: the line is still JSON.
        let line = format!("{{\"message\":\"x\",\"pan\":{PAN},\"n\":42}}\n");
        let out = String::from_utf8(redact_line(line.as_bytes()).into_owned()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["pan"], "400005******5556");
        assert_eq!(v["n"], 42);
        assert!(out.ends_with('\n'));
        // Nothing to mask: the very same bytes.
        let line = b"{\"message\":\"listening\",\"port\":8081}\n";
        assert!(matches!(redact_line(line), Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_masks_each_line() {
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter(&mut out);
            w.write_all(format!("Authorization: Bearer {JWT}\n").as_bytes())
                .unwrap();
            w.write_all(format!("pan {PAN}\n").as_bytes()).unwrap();
        }
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "Authorization: [REDACTED]\npan 400005******5556\n");
    }

    fn span() -> SpanData {
        let mut events = opentelemetry_sdk::trace::SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            format!("card {PAN}"),
            std::time::SystemTime::now(),
            vec![KeyValue::new("message", format!("token {JWT}"))],
            0,
        ));
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(format!("GET /v1/cards/{PAN}")),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![
                KeyValue::new("http.target", format!("/v1/cards/{PAN}?q=1")),
                KeyValue::new("http.status_code", 404),
                KeyValue::new(
                    "list",
                    opentelemetry::Value::Array(opentelemetry::Array::String(vec![format!(
                        "Bearer {JWT}"
                    )
                    .into()])),
                ),
            ],
            dropped_attributes_count: 0,
            events,
            links: Default::default(),
            status: Status::error(format!("Problem {{ detail: \"{PAN}\" }}")),
            instrumentation_scope: InstrumentationScope::builder("fleet").build(),
        }
    }

    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn exported_spans_are_masked() {
        let sink = Collect::default();
        let exporter = RedactingExporter(sink.clone());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(exporter.export(vec![span()]))
            .unwrap();
        let spans = sink.0.lock().unwrap();
        let text = format!("{:?}", spans[0]);
        assert!(!text.contains(PAN) && !text.contains(JWT), "{text}");
        assert_eq!(spans[0].name, "GET /v1/cards/400005******5556");
        assert!(text.contains("/v1/cards/400005******5556?q=1"), "{text}");
        assert!(text.contains("token [REDACTED-JWT]"), "{text}");
        assert!(text.contains("Bearer [REDACTED]"), "{text}");
        assert_eq!(
            spans[0].attributes[1],
            KeyValue::new("http.status_code", 404)
        );
    }

    #[test]
    fn panic_text_reads_like_the_default_hook() {
        let payload: Box<dyn std::any::Any + Send> = Box::new(format!("bad card {PAN}"));
        let text = panic_text(payload.as_ref(), Some(std::panic::Location::caller()));
        assert!(
            text.starts_with("panicked at shared-kernel/src/telemetry.rs:"),
            "{text}"
        );
        assert!(text.ends_with(&format!(": bad card {PAN}")), "{text}");
        let payload: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_text(payload.as_ref(), None), "panicked: static");
    }
}
