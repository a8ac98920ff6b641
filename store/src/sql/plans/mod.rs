//! [`PlanStore`] on sqlx: the import transaction and the reads built on plans.
//!
//! A trait impl cannot span files, so the impl here only names each port
//! method's home: every method is an inherent method of [`SqlStore`] in the
//! submodule of its kind.
//!
//! # Layout
//! - `mod.rs`: the [`PlanStore`] port, each method handed to its submodule
//! - `import`: the import digest and the transaction that creates or replaces a plan
//! - `reads`: a stored plan as imported, its counts, a candidate's record
//! - `runtime`: plan runtime read and fenced save, room and candidate runtimes
//! - `logins`: what candidate and proctor logins are checked against
//! - `live`: what a coordinator or a room actor restores

mod import;
mod live;
mod logins;
mod reads;
mod runtime;

use async_trait::async_trait;
use invigil_actors::domain::{
    CandidateId, CredentialHash, PlanEvent, PlanId, PlanRuntime, PlanSpec, PlanState, RoomId,
    Timestamp,
};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{
    CandidateLogin, CandidateRecord, CandidateRuntimeRow, FencedError, ImportOutcome, PlanCounts,
    PlanStore, ProctorLogin, RoomRuntimeRow, StoredPlan, VersionedPlanRuntime,
};
use invigil_actors::shard::Fence;

use super::SqlStore;
use crate::error::corrupt;

#[async_trait]
impl PlanStore for SqlStore {
    async fn plan_digest(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<(String, PlanState)>, StoreError> {
        self.read_plan_digest(plan_id).await
    }

    async fn import_plan(
        &self,
        plan: &PlanSpec<CredentialHash>,
        digest: &str,
        now: Timestamp,
    ) -> Result<ImportOutcome, StoreError> {
        self.write_plan_import(plan, digest, now).await
    }

    async fn load_plan(&self, plan_id: &PlanId) -> Result<Option<StoredPlan>, StoreError> {
        self.read_plan(plan_id).await
    }

    async fn plan_runtime(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<VersionedPlanRuntime>, StoreError> {
        self.read_plan_runtime(plan_id).await
    }

    async fn save_plan_runtime(
        &self,
        fence: Fence,
        plan_id: &PlanId,
        expected_revision: i64,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<i64, FencedError> {
        self.write_plan_runtime(fence, plan_id, expected_revision, runtime, events)
            .await
    }

    async fn plan_counts(&self, plan_id: &PlanId) -> Result<Option<PlanCounts>, StoreError> {
        self.read_plan_counts(plan_id).await
    }

    async fn plan_results(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<invigil_actors::ports::PlanResults>, StoreError> {
        self.read_plan_results(plan_id).await
    }

    async fn room_runtimes(&self, plan_id: &PlanId) -> Result<Vec<RoomRuntimeRow>, StoreError> {
        self.read_room_runtimes(plan_id).await
    }

    async fn candidate_runtimes(
        &self,
        plan_id: &PlanId,
    ) -> Result<Vec<CandidateRuntimeRow>, StoreError> {
        self.read_candidate_runtimes(plan_id).await
    }

    async fn candidate_login(
        &self,
        plan_id: &PlanId,
        reg_no: &str,
    ) -> Result<Option<CandidateLogin>, StoreError> {
        self.read_candidate_login(plan_id, reg_no).await
    }

    async fn candidate_record(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<CandidateRecord>, StoreError> {
        self.read_candidate_record(plan_id, candidate_id).await
    }

    async fn plan_context(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<invigil_actors::ports::PlanContext>, StoreError> {
        self.read_plan_context(plan_id).await
    }

    async fn load_room(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<Option<invigil_actors::ports::RoomSnapshot>, StoreError> {
        self.read_room(plan_id, room_id).await
    }

    async fn active_plans(&self) -> Result<Vec<PlanId>, StoreError> {
        self.read_active_plans().await
    }

    async fn candidate_room(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<RoomId>, StoreError> {
        self.read_candidate_room(plan_id, candidate_id).await
    }

    async fn incident(
        &self,
        plan_id: &PlanId,
        incident_id: &str,
    ) -> Result<Option<invigil_actors::domain::Incident>, StoreError> {
        self.read_incident(plan_id, incident_id).await
    }

    async fn proctor_logins(&self, login: &str) -> Result<Vec<ProctorLogin>, StoreError> {
        self.read_proctor_logins(login).await
    }
}

fn parse_plan_state(state: &str) -> Result<PlanState, StoreError> {
    PlanState::parse(state).ok_or_else(|| corrupt("plan state", state))
}
