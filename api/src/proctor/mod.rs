//! A proctor's rooms (Bearer, role proctor; only assigned rooms).

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::admin::dto::RoomStatusView;
use crate::auth::ProctorToken;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;
use crate::views::room_status;

pub struct ProctorApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct ProctorRooms {
    pub plan_id: String,
    pub rooms: Vec<RoomStatusView>,
}

#[OpenApi(prefix_path = "/api/v1")]
impl ProctorApi {
    /// The rooms assigned to this proctor, with counts by candidate state.
    #[oai(path = "/proctor/rooms", method = "get", tag = "ApiTags::Proctor")]
    async fn rooms(&self, token: ProctorToken) -> Result<Json<ProctorRooms>, ApiError> {
        let claims = token.0;
        let counts = self
            .state
            .plans
            .plan_counts(&claims.plan)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the plan no longer exists"))?;
        Ok(Json(ProctorRooms {
            plan_id: claims.plan.to_string(),
            rooms: counts
                .rooms
                .iter()
                .filter(|room| claims.reaches_room(&room.room_id))
                .map(room_status)
                .collect(),
        }))
    }
}
