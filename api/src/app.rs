//! The HTTP application: every API under one OpenAPI document, the
//! document itself, Swagger UI, and problem+json for every error.

use poem::middleware::{CatchPanic, Tracing};
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::OpenApiService;

use crate::admin::AdminApi;
use crate::candidate::CandidateApi;
use crate::cluster::{ClusterApi, Forward};
use crate::error::{ApiError, problem_response};
use crate::files::FilesApi;
use crate::login::LoginApi;
use crate::metrics::HttpMetrics;
use crate::monitoring::MonitoringApi;
use crate::ops::OpsApi;
use crate::proctor::ProctorApi;
use crate::state::AppState;

/// Every route group, in the order the OpenAPI document lists them.
pub type Apis = (
    OpsApi,
    AdminApi,
    LoginApi,
    CandidateApi,
    ProctorApi,
    FilesApi,
    MonitoringApi,
    ClusterApi,
);

/// The OpenAPI service with every API.
pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            OpsApi {
                state: state.clone(),
            },
            AdminApi {
                state: state.clone(),
            },
            LoginApi {
                state: state.clone(),
            },
            CandidateApi {
                state: state.clone(),
            },
            ProctorApi {
                state: state.clone(),
            },
            FilesApi {
                state: state.clone(),
            },
            MonitoringApi {
                state: state.clone(),
            },
            ClusterApi {
                state: state.clone(),
            },
        ),
        "invigil",
        env!("CARGO_PKG_VERSION"),
    )
    .description("The real-time backend of live computer-based exams. Wire contract: docs/wire-contract.md and docs/protocol.md in the repository.")
}

/// Builds the whole endpoint.
pub fn build(state: AppState) -> impl Endpoint<Output = Response> {
    let api = openapi(&state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let limits = state.settings.body_limits;
    let forward = Forward {
        state: state.clone(),
    };
    let mut routes = Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/ws/candidate", poem::get(crate::ws::candidate_socket))
        .at("/ws/proctor", poem::get(crate::ws::proctor_socket));
    if let Some(exposition) = &state.exposition {
        routes = routes.at("/metrics", crate::metrics::endpoint(exposition.clone()));
    }
    routes
        .with(HttpMetrics {
            metrics: state.metrics.clone(),
        })
        .data(state)
        .data(limits)
        .catch_all_error(|error| async move { problem_response(error) })
        .with(forward)
        .with(
            CatchPanic::new()
                .with_handler(|_| ApiError::internal("a handler panicked").into_response()),
        )
        .with(Tracing)
        .map_to_response()
}
