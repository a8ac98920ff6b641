//! `/healthz` (the process is up) and `/readyz` (this node can serve).

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct OpsApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct Health {
    pub status: String,
    pub node_id: String,
    pub version: String,
}

#[derive(Debug, Object)]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Object)]
pub struct ReadinessView {
    pub status: String,
    pub node_id: String,
    pub checks: Vec<CheckView>,
}

#[derive(ApiResponse)]
pub enum ReadinessResponse {
    #[oai(status = 200)]
    Ready(Json<ReadinessView>),
    #[oai(status = 503)]
    NotReady(Json<ReadinessView>),
}

#[OpenApi]
impl OpsApi {
    /// The process is up.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Operations")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
            node_id: self.state.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// The node can serve: store reachable, shard leases held.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Operations")]
    async fn readyz(&self) -> Result<ReadinessResponse, ApiError> {
        let checks = self.state.readiness.checks().await;
        let ready = checks.iter().all(|check| check.ok);
        let view = ReadinessView {
            status: if ready { "ready" } else { "not_ready" }.into(),
            node_id: self.state.node_id.clone(),
            checks: checks
                .into_iter()
                .map(|check| CheckView {
                    name: check.name.into(),
                    ok: check.ok,
                    detail: check.detail,
                })
                .collect(),
        };
        Ok(if ready {
            ReadinessResponse::Ready(Json(view))
        } else {
            ReadinessResponse::NotReady(Json(view))
        })
    }
}
