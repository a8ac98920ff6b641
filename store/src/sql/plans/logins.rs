//! What a login is checked against: a candidate by registration number, and
//! every non-finalized plan's proctor with a login.

use invigil_actors::domain::{CredentialHash, PlanId, PlanSettings, Timestamp};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{CandidateLogin, ProctorLogin};
use sqlx::Row;

use super::parse_plan_state;
use crate::error::from_sqlx;
use crate::sql::rows::{from_json, id};
use crate::sql::{SqlStore, on_backend};

impl SqlStore {
    /// `PlanStore::candidate_login`: a candidate by registration number.
    pub(super) async fn read_candidate_login(
        &self,
        plan_id: &PlanId,
        reg_no: &str,
    ) -> Result<Option<CandidateLogin>, StoreError> {
        on_backend!(self, pool => {
            let Some(row) = sqlx::query(
                "SELECT c.id, c.room_id, c.name, c.access_code_hash, c.extra_time_s, c.runtime, c.revision, \
                        p.runtime, p.duration_s, p.settings \
                 FROM candidates c JOIN plans p ON p.id = c.plan_id \
                 WHERE c.plan_id = $1 AND c.reg_no = $2",
            )
            .bind(plan_id.as_str())
            .bind(reg_no)
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let settings: PlanSettings = from_json("plan settings", row.get::<&str, _>(9))?;
            Ok(Some(CandidateLogin {
                plan_id: plan_id.clone(),
                candidate_id: id("candidate id", row.get(0))?,
                room_id: id("room id", row.get(1))?,
                name: row.get(2),
                access_code_hash: CredentialHash(row.get(3)),
                extra_time_s: row.get(4),
                runtime: from_json("candidate runtime", row.get::<&str, _>(5))?,
                revision: row.get(6),
                plan_runtime: from_json("plan runtime", row.get::<&str, _>(7))?,
                duration_s: row.get(8),
                late_entry_s: settings.late_entry_s,
            }))
        })
    }

    /// `PlanStore::proctor_logins`: every non-finalized plan's proctor with this login.
    pub(super) async fn read_proctor_logins(
        &self,
        login: &str,
    ) -> Result<Vec<ProctorLogin>, StoreError> {
        on_backend!(self, pool => {
            let rows = sqlx::query(
                "SELECT pr.plan_id, pr.id, pr.name, pr.password_hash, p.state, p.starts_at_ms, p.import_digest \
                 FROM proctors pr JOIN plans p ON p.id = pr.plan_id \
                 WHERE pr.login = $1 AND p.state <> 'finalized'",
            )
            .bind(login)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?;
            let mut logins = Vec::with_capacity(rows.len());
            for row in rows {
                let plan_id: String = row.get(0);
                let proctor_id: String = row.get(1);
                let room_ids = sqlx::query_scalar::<_, String>(
                    "SELECT room_id FROM proctor_rooms WHERE plan_id = $1 AND proctor_id = $2 ORDER BY room_id",
                )
                .bind(plan_id.as_str())
                .bind(proctor_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|room| id("room id", room))
                .collect::<Result<Vec<_>, _>>()?;
                let state: String = row.get(4);
                logins.push(ProctorLogin {
                    plan_id: id("plan id", plan_id)?,
                    proctor_id: id("proctor id", proctor_id)?,
                    name: row.get(2),
                    password_hash: CredentialHash(row.get(3)),
                    room_ids,
                    plan_state: parse_plan_state(&state)?,
                    starts_at: Timestamp::from_millis(row.get(5)),
                    plan_digest: row.get(6),
                });
            }
            Ok(logins)
        })
    }
}
