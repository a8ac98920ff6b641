//! View builders shared by routes: the plan clock and per-room status.

use std::collections::BTreeMap;

use invigil_actors::domain::PlanId;
use invigil_actors::domain::{CandidateState, PlanRuntime, Timestamp};
use invigil_actors::live::wire::PresenceCounts;
use invigil_actors::ports::RoomCounts;

use crate::admin::dto::{CandidateCounts, ConnectionCounts, PlanClockView, RoomStatusView};
use crate::time::to_datetime;

pub fn plan_clock(runtime: &PlanRuntime, duration_s: i64, now: Timestamp) -> PlanClockView {
    let clock = runtime.clock(duration_s);
    PlanClockView {
        state: runtime.state.as_str().to_string(),
        opened_at: runtime.opened_at.map(to_datetime),
        started_at: runtime.started_at.map(to_datetime),
        ended_at: runtime.ended_at.map(to_datetime),
        paused: runtime.pauses.is_paused(),
        extension_s: runtime.extension_s,
        // Once over, nothing is left, whatever the clock did not use.
        remaining_s: if runtime.state.is_over() {
            0
        } else {
            clock.remaining_s(now)
        },
    }
}

pub fn candidate_counts(by_state: &BTreeMap<CandidateState, i64>) -> CandidateCounts {
    let count = |state| by_state.get(&state).copied().unwrap_or(0);
    CandidateCounts {
        registered: count(CandidateState::Registered),
        checked_in: count(CandidateState::CheckedIn),
        testing: count(CandidateState::Testing),
        paused: count(CandidateState::Paused),
        submitted: count(CandidateState::Submitted),
        force_submitted: count(CandidateState::ForceSubmitted),
        expelled: count(CandidateState::Expelled),
        absent: count(CandidateState::Absent),
        total: by_state.values().sum(),
    }
}

pub fn add_counts(total: &mut CandidateCounts, room: &CandidateCounts) {
    total.registered += room.registered;
    total.checked_in += room.checked_in;
    total.testing += room.testing;
    total.paused += room.paused;
    total.submitted += room.submitted;
    total.force_submitted += room.force_submitted;
    total.expelled += room.expelled;
    total.absent += room.absent;
    total.total += room.total;
}

/// The status of rooms: durable counts from the store, connections from the
/// live rooms (a room that is not live has nobody connected).
pub async fn room_statuses(
    state: &crate::state::AppState,
    plan_id: &PlanId,
    rooms: &[RoomCounts],
) -> Vec<RoomStatusView> {
    let presences = rooms
        .iter()
        .map(|room| state.exam.presence(plan_id, &room.room_id));
    let presences = futures::future::join_all(presences).await;
    rooms
        .iter()
        .zip(presences)
        .map(|(room, presence)| room_status(room, presence))
        .collect()
}

fn room_status(room: &RoomCounts, presence: Option<PresenceCounts>) -> RoomStatusView {
    let candidates = candidate_counts(&room.candidates_by_state);
    let presence = presence.unwrap_or(PresenceCounts {
        online: 0,
        stale: 0,
        offline: candidates.total,
    });
    RoomStatusView {
        room_id: room.room_id.to_string(),
        name: room.name.clone(),
        state: room.runtime.state.as_str().to_string(),
        paused: room.runtime.pauses.is_paused(),
        capacity: room.capacity,
        extension_s: room.runtime.extension_s,
        connection: ConnectionCounts {
            online: presence.online,
            stale: presence.stale,
            offline: presence.offline,
        },
        candidates,
        incidents_open: room.incidents_open,
    }
}
