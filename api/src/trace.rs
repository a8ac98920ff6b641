//! The W3C trace context across nodes (docs/observability.md, "Traces"):
//! a request forwarded to a room's owner and a socket tunnelled to it carry
//! the `traceparent` of the span that sent them, and the receiving node's
//! span continues that trace, so a forwarded answer is one trace across
//! two nodes. Without a collector (no propagator installed) nothing is
//! injected and nothing is extracted.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The `traceparent` of `span`, when it is being traced.
pub fn traceparent(span: &Span) -> Option<String> {
    let context = span.context();
    let mut carrier = Carrier(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier.0.remove(TRACEPARENT)
}

/// Makes `span` continue the trace of `traceparent` (a header from another
/// node or a client), and records its trace id in the span's `trace_id`
/// field (the JSON log lines of events inside it carry it).
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let carrier = Carrier(HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]));
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&carrier)
        });
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Records the span's trace id in its `trace_id` field (when traced).
pub fn record_trace_id(span: &Span) {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}
