//! The statistics worker: answer distribution per question, progress per
//! room and counts by state, for the monitoring views, refreshed every
//! `refresh` for every live plan.
//!
//! It recomputes from the durable store (a few grouped queries per plan)
//! instead of folding a stream of answer events: the aggregates are then
//! exact and idempotent by construction — a lost, duplicated or reordered
//! queue entry cannot skew a count — and 20,000 answers/s do not have to
//! travel through the queue a second time. The result goes to the hot state
//! (`stats:<plan>`), where any node's API reads it; one node per window does
//! the work (a hot-state counter elects it), whichever node that is.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, warn};

use crate::domain::PlanId;
use crate::ports::{Clock, HotState, PlanStatistics, PlanStore, StatisticsStore};

/// The hot-state key of a plan's statistics.
pub fn statistics_key(plan_id: &PlanId) -> String {
    format!("stats:{plan_id}")
}

/// Computes a plan's statistics and stores them for every node.
pub async fn refresh(
    store: &dyn StatisticsStore,
    hot: &dyn HotState,
    clock: &dyn Clock,
    plan_id: &PlanId,
    keep: Duration,
) -> Result<Option<PlanStatistics>, String> {
    let Some(statistics) = store
        .plan_statistics(plan_id, clock.now())
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(None);
    };
    match serde_json::to_vec(&statistics) {
        Ok(bytes) => {
            if let Err(error) = hot
                .put_snapshot(&statistics_key(plan_id), bytes, keep)
                .await
            {
                // Served from the store on demand meanwhile.
                debug!(%error, "statistics not cached");
            }
        }
        Err(error) => warn!(%error, "statistics not serializable"),
    }
    Ok(Some(statistics))
}

/// The cached statistics of a plan, if fresh ones exist.
pub async fn cached(hot: &dyn HotState, plan_id: &PlanId) -> Option<PlanStatistics> {
    let bytes = hot.snapshot(&statistics_key(plan_id)).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

pub struct StatisticsActor;

pub struct StatisticsArgs {
    pub plans: Arc<dyn PlanStore>,
    pub store: Arc<dyn StatisticsStore>,
    pub hot: Arc<dyn HotState>,
    pub clock: Arc<dyn Clock>,
    pub refresh: Duration,
}

pub enum StatisticsMsg {
    Refresh,
}

impl ractor::Message for StatisticsMsg {}

impl Actor for StatisticsActor {
    type Msg = StatisticsMsg;
    type State = StatisticsArgs;
    type Arguments = StatisticsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StatisticsMsg>,
        args: StatisticsArgs,
    ) -> Result<StatisticsArgs, ActorProcessingErr> {
        myself.send_interval(args.refresh, || StatisticsMsg::Refresh);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<StatisticsMsg>,
        StatisticsMsg::Refresh: StatisticsMsg,
        state: &mut StatisticsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let plans = match state.plans.active_plans().await {
            Ok(plans) => plans,
            Err(error) => {
                warn!(%error, "statistics: live plans unreadable");
                return Ok(());
            }
        };
        for plan_id in plans {
            // One node per window computes a plan; the others skip it.
            let window = format!("stats-turn:{plan_id}");
            match state.hot.count_in_window(&window, state.refresh).await {
                Ok(1) => {}
                Ok(_) => continue,
                // Without the hot state every node computes for itself.
                Err(_) => {}
            }
            if let Err(error) = refresh(
                state.store.as_ref(),
                state.hot.as_ref(),
                state.clock.as_ref(),
                &plan_id,
                state.refresh * 5,
            )
            .await
            {
                warn!(%error, %plan_id, "statistics not refreshed");
            }
        }
        Ok(())
    }
}
