//! `GET /metrics`, and the HTTP request metrics and spans (docs/observability.md).
//!
//! Requests are counted by route *pattern* (`/api/v1/admin/plans/:plan_id`),
//! which the router knows once it matched; a path that matched no route is
//! `other`, so the label set is bounded by the routes that exist, never by
//! the URLs clients send.

use std::sync::Arc;
use std::time::Instant;

use invigil_actors::metrics::Metrics;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response};
use tracing::Instrument;

/// Renders the node's metrics in the Prometheus text format.
pub trait MetricsExposition: Send + Sync + 'static {
    fn render(&self) -> Vec<u8>;
}

/// The `GET /metrics` endpoint.
pub fn endpoint(exposition: Arc<dyn MetricsExposition>) -> impl Endpoint<Output = Response> {
    poem::get(poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(exposition.render())
    }))
}

/// Counts and times every request by route pattern, method and status class.
pub struct HttpMetrics {
    pub metrics: Metrics,
}

impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpMetricsEndpoint {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

pub struct HttpMetricsEndpoint<E> {
    inner: E,
    metrics: Metrics,
}

impl<E: Endpoint> Endpoint for HttpMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = method_label(request.method());
        // The request's span continues a trace another node (or a client)
        // started, when the request carries one.
        let span = tracing::info_span!(
            "http.request",
            method,
            route = tracing::field::Empty,
            status = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let traceparent = request
            .headers()
            .get(crate::trace::TRACEPARENT)
            .and_then(|value| value.to_str().ok());
        crate::trace::continue_trace(&span, traceparent);
        let result = self
            .inner
            .call(request)
            .instrument(span.clone())
            .await
            .map(IntoResponse::into_response);
        let (status, pattern) = match &result {
            Ok(response) => (response.status(), response.data::<PathPattern>().cloned()),
            Err(error) => (error.status(), error.data::<PathPattern>().cloned()),
        };
        let route = pattern.as_ref().map_or("other", |pattern| &pattern.0);
        span.record("route", route);
        span.record("status", status.as_u16());
        self.metrics
            .http_request(route, method, status.as_u16(), started.elapsed());
        result
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
