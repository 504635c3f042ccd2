//! W3C trace context across processes: the `traceparent` of the current span, to carry
//! in an event (and its AMQP headers), and a span continued from a received one.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `traceparent` header value of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span that `traceparent` names; an absent or
/// malformed value leaves the span a root of its own trace.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// The trace id of `span` (32 hex digits; zeros when it belongs to no trace).
pub fn trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().span_context().trace_id().to_string()
}
