//! Runtimes: a plan's read and its fenced compare-and-set save with the
//! transitions it records, and the runtimes of every room and candidate.

use invigil_actors::domain::{PlanEvent, PlanId, PlanRuntime, Timestamp};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{
    CandidateRuntimeRow, FencedError, RoomRuntimeRow, VersionedPlanRuntime,
};
use invigil_actors::shard::Fence;
use sqlx::{QueryBuilder, Row};

use crate::error::from_sqlx;
use crate::sql::rows::{from_json, id, to_json};
use crate::sql::{SqlStore, on_backend};

impl SqlStore {
    /// `PlanStore::plan_runtime`: a plan's runtime with its revision.
    pub(super) async fn read_plan_runtime(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<VersionedPlanRuntime>, StoreError> {
        let row = on_backend!(self, pool => {
            sqlx::query("SELECT runtime, revision, duration_s FROM plans WHERE id = $1")
                .bind(plan_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
                .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1), row.get::<i64, _>(2)))
        });
        row.map(|(runtime, revision, duration_s)| {
            Ok(VersionedPlanRuntime {
                runtime: from_json("plan runtime", &runtime)?,
                revision,
                duration_s,
            })
        })
        .transpose()
    }

    /// `PlanStore::save_plan_runtime`: the fenced compare-and-set of a plan's runtime.
    pub(super) async fn write_plan_runtime(
        &self,
        fence: Fence,
        plan_id: &PlanId,
        expected_revision: i64,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<i64, FencedError> {
        let runtime_json = to_json(runtime)?;
        let at = events.last().map_or(Timestamp::default(), PlanEvent::at);
        let details = events.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
        on_backend!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(from_sqlx)?;
            let epoch: Option<i64> = sqlx::query_scalar(self.dialect(
                "SELECT epoch FROM shard_lease WHERE shard = $1 FOR SHARE",
                "SELECT epoch FROM shard_lease WHERE shard = $1",
            ))
            .bind(i64::from(fence.shard.get()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if epoch != Some(fence.epoch) {
                return Err(FencedError::StaleFence(fence));
            }
            let updated = sqlx::query(
                "UPDATE plans SET state = $1, runtime = $2, revision = revision + 1, updated_at_ms = $3 \
                 WHERE id = $4 AND revision = $5",
            )
            .bind(runtime.state.as_str())
            .bind(runtime_json.as_str())
            .bind(at.as_millis())
            .bind(plan_id.as_str())
            .bind(expected_revision)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!("plan {plan_id} changed since revision {expected_revision}")).into());
            }
            let mut insert = QueryBuilder::new(
                "INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) ",
            );
            insert.push_values(events.iter().zip(&details), |mut row, (event, detail)| {
                row.push_bind(plan_id.as_str().to_owned())
                    .push_bind("plan")
                    .push_bind(plan_id.as_str().to_owned())
                    .push_bind(event.name())
                    .push_bind(runtime.state.as_str())
                    .push_bind(detail.clone())
                    .push_bind(i64::from(fence.shard.get()))
                    .push_bind(fence.epoch)
                    .push_bind(event.at().as_millis());
            });
            insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            tx.commit().await.map_err(from_sqlx)?;
            Ok(expected_revision + 1)
        })
    }

    /// `PlanStore::room_runtimes`: every room's runtime, in import order.
    pub(super) async fn read_room_runtimes(
        &self,
        plan_id: &PlanId,
    ) -> Result<Vec<RoomRuntimeRow>, StoreError> {
        on_backend!(self, pool => {
            sqlx::query("SELECT id, runtime, revision FROM rooms WHERE plan_id = $1 ORDER BY position")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| {
                    Ok(RoomRuntimeRow {
                        room_id: id("room id", row.get(0))?,
                        runtime: from_json("room runtime", row.get::<&str, _>(1))?,
                        revision: row.get(2),
                    })
                })
                .collect()
        })
    }

    /// `PlanStore::candidate_runtimes`: every candidate's runtime, in import order.
    pub(super) async fn read_candidate_runtimes(
        &self,
        plan_id: &PlanId,
    ) -> Result<Vec<CandidateRuntimeRow>, StoreError> {
        on_backend!(self, pool => {
            sqlx::query(
                "SELECT id, room_id, extra_time_s, runtime, revision FROM candidates WHERE plan_id = $1 ORDER BY position",
            )
            .bind(plan_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| {
                Ok(CandidateRuntimeRow {
                    candidate_id: id("candidate id", row.get(0))?,
                    room_id: id("room id", row.get(1))?,
                    extra_time_s: row.get(2),
                    runtime: from_json("candidate runtime", row.get::<&str, _>(3))?,
                    revision: row.get(4),
                })
            })
            .collect()
        })
    }
}
