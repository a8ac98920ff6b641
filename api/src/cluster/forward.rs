//! Forwarding: a request refused here with `not_owner` goes to the shard's
//! owner, and a request forwarded by another node is served here (see the
//! module doc of `crate::cluster`).

use std::time::Duration;

use invigil_actors::shard::ShardId;
use poem::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use tracing::Instrument;

use super::port::{ForwardedRequest, ForwardedResponse, Route};
use crate::error::{ApiError, SHARD_HEADER};
use crate::state::AppState;

/// Marks a request forwarded by another node: it is served here or refused,
/// never forwarded again.
pub const FORWARDED_HEADER: &str = "x-invigil-forwarded-by";
/// How long a forwarded request keeps trying while its shard moves.
pub const FORWARD_PATIENCE: Duration = Duration::from_secs(5);

/// Forwards requests refused with `not_owner` to the shard's owner.
pub struct Forward {
    pub state: AppState,
}

impl<E: Endpoint<Output = Response>> Middleware<E> for Forward {
    type Output = ForwardEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ForwardEndpoint {
            inner,
            state: self.state.clone(),
        }
    }
}

pub struct ForwardEndpoint<E> {
    inner: E,
    state: AppState,
}

/// Whether a request may reach live actors (and so be refused `not_owner`).
fn may_need_owner(request: &Request) -> bool {
    let path = request.uri().path();
    // Candidate login checks the candidate in at the room.
    (path.starts_with("/api/v1/candidate")
        || path == "/api/v1/auth/candidate"
        || path.starts_with("/api/v1/proctor")
        || path.starts_with("/api/v1/admin/plans"))
        && !request.headers().contains_key(FORWARDED_HEADER)
}

impl<E: Endpoint<Output = Response>> Endpoint for ForwardEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let Some(cluster) = self.state.cluster.clone() else {
            return self.inner.call(request).await;
        };
        if !may_need_owner(&request) {
            return self.inner.call(request).await;
        }
        // Buffer the body (bounded by the import limit) so the request can
        // be sent on; `not_owner` is decided before any of it is used.
        let limit = self.state.settings.body_limits.import_bytes;
        let (parts, body) = request.into_parts();
        let body = match body.into_bytes_limit(limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return Ok(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body exceeds {limit} bytes"),
                )
                .into_response());
            }
        };
        // The forwarding is a span of its own; the owner's request span
        // continues its trace (the `traceparent` sent along replaces the
        // client's, which this span continues).
        let span = tracing::info_span!(
            "http.forward",
            uri = %parts.uri.path(),
            trace_id = tracing::field::Empty,
        );
        let client_trace = parts
            .headers
            .get(crate::trace::TRACEPARENT)
            .and_then(|value| value.to_str().ok());
        crate::trace::continue_trace(&span, client_trace);
        let mut headers: Vec<(String, String)> = header_pairs(&parts.headers)
            .into_iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case(crate::trace::TRACEPARENT))
            .collect();
        if let Some(traceparent) = crate::trace::traceparent(&span) {
            headers.push((crate::trace::TRACEPARENT.to_owned(), traceparent));
        }
        let forwarded = ForwardedRequest {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers,
            body: body.to_vec(),
        };
        let local = Request::from_parts(parts, Body::from(body));
        self.forward_while_moving(local, forwarded, cluster)
            .instrument(span)
            .await
    }
}

impl<E: Endpoint<Output = Response>> ForwardEndpoint<E> {
    /// Serves `local` here; while the answer is `not_owner`, sends
    /// `forwarded` to the shard's owner (up to [`FORWARD_PATIENCE`]).
    async fn forward_while_moving(
        &self,
        local: Request,
        forwarded: ForwardedRequest,
        cluster: std::sync::Arc<dyn crate::cluster::port::ClusterPort>,
    ) -> poem::Result<Response> {
        let mut response = self.inner.call(local).await?;
        let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
        while let Some(shard) = not_owner_shard(&response) {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            response = match cluster.route(shard) {
                Route::Node(node) => {
                    self.state.metrics.forwarded("rest");
                    match cluster.forward(&node, forwarded.clone()).await {
                        Ok(answer) => into_response(answer),
                        Err(error) => {
                            tracing::debug!(node = %node, %error, "forwarding failed; retrying");
                            response
                        }
                    }
                }
                Route::Here => {
                    let retry = rebuild(&forwarded)?;
                    self.inner.call(retry).await?
                }
                Route::Nowhere => response,
            };
            if not_owner_shard(&response).is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(response)
    }
}

/// Headers as text pairs (a value that is not text is left out).
fn header_pairs(headers: &poem::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The shard of a `not_owner` refusal.
fn not_owner_shard(response: &Response) -> Option<ShardId> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = response.headers().get(SHARD_HEADER)?.to_str().ok()?;
    ShardId::new(value.parse().ok()?)
}

/// A request as the owner receives it.
pub fn rebuild(forwarded: &ForwardedRequest) -> poem::Result<Request> {
    let method = Method::from_bytes(forwarded.method.as_bytes())
        .map_err(|_| ApiError::bad_request("bad_forward", "unknown method"))?;
    let uri: Uri = forwarded
        .uri
        .parse()
        .map_err(|_| ApiError::bad_request("bad_forward", "malformed uri"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(forwarded.body.clone()));
    for (name, value) in &forwarded.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    Ok(request)
}

/// The owner's answer as this node's response.
pub fn into_response(answer: ForwardedResponse) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY))
        .body(answer.body);
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            if name == poem::http::header::CONTENT_LENGTH
                || name == poem::http::header::TRANSFER_ENCODING
            {
                continue;
            }
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Serves a forwarded request through this node's endpoint and reads the
/// whole answer (bounded: answers that reach live actors are small).
pub async fn serve_forwarded(
    endpoint: &dyn poem::endpoint::DynEndpoint<Output = Response>,
    node_id: &str,
    forwarded: ForwardedRequest,
) -> ForwardedResponse {
    let mut request = match rebuild(&forwarded) {
        Ok(request) => request,
        Err(error) => return capture(error.into_response()).await,
    };
    if let Ok(value) = HeaderValue::from_str(node_id) {
        request
            .headers_mut()
            .insert(HeaderName::from_static(FORWARDED_HEADER), value);
    }
    let response = match poem::endpoint::DynEndpoint::call(endpoint, request).await {
        Ok(response) => response,
        Err(error) => crate::error::problem_response(error),
    };
    capture(response).await
}

async fn capture(response: Response) -> ForwardedResponse {
    let (parts, body) = response.into_parts();
    let body = body.into_vec().await.unwrap_or_default();
    ForwardedResponse {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body,
    }
}
