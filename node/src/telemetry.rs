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
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer, SubscriberExt};
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
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&telemetry.log_filter));
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
    // Spans go to the collector down to `debug` for invigil's own crates
    // (the answer path's spans are `debug`: with no collector they are
    // disabled and cost a cached check); the log keeps its own filter.
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("invigil"))
            .with_filter(
                Targets::new()
                    .with_target("invigil_actors", Level::DEBUG)
                    .with_target("invigil_api", Level::DEBUG)
                    .with_target("invigil_node", Level::DEBUG)
                    .with_default(Level::INFO),
            )
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // Events carry the fields of the span they happen in (its `trace_id`).
    let fmt = match telemetry.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt.compact().with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init();
    if let Some(url) = telemetry
        .otlp_endpoint
        .as_deref()
        .filter(|url| !url.is_empty())
    {
        tracing::info!(url = %traces_url(url), "exporting spans over OTLP");
    }
    Ok(TelemetryGuard { tracer })
}

#[cfg(test)]
mod tests {
    use super::traces_url;

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
