//! Logging and tracing: JSON lines for machines, pretty for people
//! (`RUST_LOG` overrides the configured filter); with
//! `telemetry.otlp_endpoint` set, spans also go to an OpenTelemetry
//! collector over OTLP (HTTP, JSON), and the W3C trace context is carried
//! on requests forwarded to other nodes and on tunnelled socket frames
//! (docs/observability.md, "Traces").

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetrySection};

/// Keeps the span exporter alive; dropping it exports what is buffered.
#[must_use = "dropping the guard stops the span export"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown()
        {
            tracing::warn!(%error, "the span exporter did not flush");
        }
    }
}

/// The OTLP traces URL: a bare `http://host:port` gets `/v1/traces`.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let path_starts = trimmed.find("://").map_or(0, |scheme| scheme + 3);
    if trimmed[path_starts..].contains('/') {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// Installs the global subscriber once (later calls only return a guard
/// that does nothing). `node_id` names the spans' service instance.
pub fn init(telemetry: &TelemetrySection, node_id: &str) -> anyhow::Result<TelemetryGuard> {
    let tracer = match telemetry
        .otlp_endpoint
        .as_deref()
        .filter(|url| !url.is_empty())
    {
        None => None,
        Some(endpoint) => {
            let url = traces_url(endpoint);
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(&url)
                .build()
                .with_context(|| format!("telemetry.otlp_endpoint {url}"))?;
            let provider = SdkTracerProvider::builder()
                .with_resource(
                    Resource::builder_empty()
                        .with_service_name("invigil")
                        .with_attributes([KeyValue::new(
                            "service.instance.id",
                            node_id.to_string(),
                        )])
                        .build(),
                )
                .with_batch_exporter(exporter)
                .build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            Some(provider)
        }
    };
    // One global filter, no per-layer filters: tracing-subscriber keeps a
    // per-layer filter's verdict in a thread-local that a nested event
    // (one emitted while another is being dispatched, as the exporter's
    // own diagnostics are) can leave stale, and the log then silently lost
    // lines inside request spans on cluster nodes (tokio-rs/tracing#2704).
    // Without a collector the log filter is the only filter. With one,
    // spans go to the collector down to `debug` for invigil's own crates
    // (the answer path's spans are `debug`: with no collector they are
    // disabled and cost a cached check) and the log keeps its own level
    // by a check of its own on each event ([`LogGate`]).
    match tracer.as_ref() {
        None => {
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(&telemetry.log_filter));
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(log_layer(telemetry.log_format))
                .try_init();
        }
        Some(provider) => {
            let log = log_targets(std::env::var("RUST_LOG").ok(), &telemetry.log_filter)?;
            let spans = Targets::new()
                .with_target("invigil_actors", Level::DEBUG)
                .with_target("invigil_api", Level::DEBUG)
                .with_target("invigil_node", Level::DEBUG)
                .with_default(Level::INFO);
            let gate = log.clone();
            let global = tracing_subscriber::filter::filter_fn(move |meta| {
                gate.would_enable(meta.target(), meta.level())
                    || spans.would_enable(meta.target(), meta.level())
            });
            let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("invigil"));
            let _ = tracing_subscriber::registry()
                .with(global)
                .with(otel)
                .with(LogGate {
                    inner: log_layer(telemetry.log_format),
                    log,
                })
                .try_init();
        }
    }
    if let Some(url) = telemetry
        .otlp_endpoint
        .as_deref()
        .filter(|url| !url.is_empty())
    {
        tracing::info!(url = %traces_url(url), "exporting spans over OTLP");
    }
    Ok(TelemetryGuard { tracer })
}

/// The log's layer: JSON lines whose events carry the fields of the span
/// they happen in (its `trace_id`), or compact text.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    }
}

/// The log filter as `target=level` directives (`RUST_LOG` first): with
/// spans exported the log level is checked per event, which needs the
/// plain form (no span or field directives).
fn log_targets(rust_log: Option<String>, configured: &str) -> anyhow::Result<Targets> {
    let (source, text) = match rust_log {
        Some(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => ("telemetry.log_filter", configured.to_owned()),
    };
    // `Targets` would take `[span]` for a target name that never matches.
    let plain = !text.contains(['[', ']', '{', '}']);
    plain
        .then(|| text.parse::<Targets>().ok())
        .flatten()
        .with_context(|| {
            format!(
                "{source} {text:?}: with telemetry.otlp_endpoint set, the log filter must be \
             target=level directives (no span or field filters)"
            )
        })
}

/// Writes an event to the log only when the log's own level allows it;
/// spans pass through so events keep their span's fields.
struct LogGate<L> {
    inner: L,
    log: Targets,
}

impl<S, L> Layer<S> for LogGate<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }
    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }
    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }
    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if self.log.would_enable(meta.target(), meta.level()) {
            self.inner.on_event(event, ctx);
        }
    }
    fn on_enter(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_enter(id, ctx);
    }
    fn on_exit(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_exit(id, ctx);
    }
    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_close(id, ctx);
    }
    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: LayerContext<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::{log_targets, traces_url};
    use tracing::Level;

    #[test]
    fn the_log_filter_with_span_export_is_target_directives() {
        let targets = log_targets(None, "info,sqlx=warn").unwrap();
        assert!(targets.would_enable("invigil_api", &Level::INFO));
        assert!(!targets.would_enable("sqlx::query", &Level::INFO));
        let targets = log_targets(Some("debug".into()), "info").unwrap();
        assert!(targets.would_enable("invigil_api", &Level::DEBUG));
        let refused = log_targets(Some("info,[request]=debug".into()), "info").unwrap_err();
        assert!(format!("{refused:#}").contains("RUST_LOG"), "{refused:#}");
    }

    #[test]
    fn a_bare_collector_address_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector/custom/path"),
            "http://collector/custom/path"
        );
    }
}
