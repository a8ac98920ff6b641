//! The incident-rules worker: reads live events from the `events` topic,
//! keeps the windows the rules need in the hot state (so every node's worker
//! sees the same counts, and a redelivered event — same id — counts once),
//! and asks the room to raise an incident when a rule fires. The room keeps
//! one open incident per candidate and kind (per room for room-level kinds),
//! so a rule firing again, or an entry processed twice, adds nothing.
//!
//! Going offline is decided `connectivity_window_s` after the fact: by then
//! the room's other disconnects of the same moment are counted, and either
//! one room-level `connectivity` incident is raised or, for a candidate who
//! went offline alone, `went_offline`. The entry stays unacknowledged until
//! then, so a worker that dies meanwhile leaves it to another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::warn;

use super::consumer::{Consume, Outcome, decode};
use super::events::{LiveEvent, LiveEventKind, topics};
use crate::domain::rules::kinds;
use crate::domain::{IncidentRules, PlanId};
use crate::live::directory::Directory;
use crate::live::room::{RaiseIncident, RoomMsg};
use crate::ports::{Clock, HotState, PlanStore, WorkItem};

/// How long a plan's rule settings are cached.
const SETTINGS_TTL: Duration = Duration::from_secs(30);
/// Hot-state TTL of the last known address of a candidate.
const ADDRESS_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct RulesWorker {
    directory: Arc<Directory>,
    plans: Arc<dyn PlanStore>,
    hot: Arc<dyn HotState>,
    clock: Arc<dyn Clock>,
    settings: HashMap<PlanId, (IncidentRules, Instant)>,
    /// Offline events waiting for their decision: (due, event, item id).
    deferred: Vec<(i64, LiveEvent, String)>,
    /// Ids decided since the last `idle`, to acknowledge.
    decided: Vec<String>,
}

impl RulesWorker {
    pub const GROUP: &'static str = "incident-rules";

    pub fn new(directory: Arc<Directory>) -> Self {
        let deps = directory.deps().clone();
        Self {
            plans: deps.plans.clone(),
            hot: deps.hot.clone(),
            clock: deps.clock.clone(),
            directory,
            settings: HashMap::new(),
            deferred: Vec::new(),
            decided: Vec::new(),
        }
    }

    async fn rules(&mut self, plan_id: &PlanId) -> Result<IncidentRules, String> {
        if let Some((rules, read_at)) = self.settings.get(plan_id)
            && read_at.elapsed() < SETTINGS_TTL
        {
            return Ok(rules.clone());
        }
        let context = self
            .plans
            .plan_context(plan_id)
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("plan {plan_id} does not exist"))?;
        let rules = context.settings.incident_rules;
        self.settings
            .insert(plan_id.clone(), (rules.clone(), Instant::now()));
        Ok(rules)
    }

    async fn handle(&mut self, event: LiveEvent, item_id: &str) -> Outcome {
        let rules = match self.rules(&event.plan_id).await {
            Ok(rules) => rules,
            Err(reason) => return Outcome::Retry(reason),
        };
        let result = match &event.kind {
            LiveEventKind::Client { kind } if kind == "focus_lost" => {
                self.focus_lost(&rules, &event).await
            }
            LiveEventKind::Client { kind } if kind == "copy_paste" && rules.copy_paste => {
                self.raise(
                    &event,
                    true,
                    kinds::COPY_PASTE_DETECTED,
                    "copied or pasted during the exam".into(),
                )
                .await
            }
            LiveEventKind::Client { .. } => Ok(()),
            LiveEventKind::Connected { ip, sitting } => {
                self.connected(&rules, &event, ip.as_deref(), *sitting)
                    .await
            }
            LiveEventKind::WentOffline { .. } => {
                let key = offline_key(&event);
                let keep = window(rules.connectivity_window_s) * 3;
                if let Err(error) = self
                    .hot
                    .window_add(&key, event.candidate_id.as_str(), event.at, keep)
                    .await
                {
                    return Outcome::Retry(error.to_string());
                }
                if !self.deferred.iter().any(|(_, _, id)| id == item_id) {
                    let due = event.at + rules.connectivity_window_s * 1_000;
                    self.deferred.push((due, event, item_id.to_string()));
                }
                return Outcome::Later;
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(reason) => Outcome::Retry(reason),
        }
    }

    async fn focus_lost(&mut self, rules: &IncidentRules, event: &LiveEvent) -> Result<(), String> {
        if rules.focus_lost_count == 0 {
            return Ok(());
        }
        let key = format!("focus:{}:{}", event.plan_id, event.candidate_id);
        let span = window(rules.focus_lost_window_s);
        // The event's id is the member: a redelivered event counts once.
        self.hot
            .window_add(&key, &event.id, event.at, span)
            .await
            .map_err(|error| error.to_string())?;
        // Its position, not a count up to now: a redelivered event sees what
        // it saw the first time, so the same event fires (same incident id).
        let count = self
            .hot
            .window_position(&key, &event.id, rules.focus_lost_window_s * 1_000)
            .await
            .map_err(|error| error.to_string())?;
        if rules.focus_burst(count) {
            let note = format!(
                "focus lost {count} times within {} s",
                rules.focus_lost_window_s
            );
            self.raise(event, true, kinds::FOCUS_LOST_REPEATED, note)
                .await?;
        }
        Ok(())
    }

    async fn connected(
        &mut self,
        rules: &IncidentRules,
        event: &LiveEvent,
        ip: Option<&str>,
        sitting: bool,
    ) -> Result<(), String> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let key = format!("ip:{}:{}", event.plan_id, event.candidate_id);
        let previous = self
            .hot
            .snapshot(&key)
            .await
            .map_err(|error| error.to_string())?;
        if previous.as_deref() == Some(ip.as_bytes()) {
            return Ok(());
        }
        self.hot
            .put_snapshot(&key, ip.as_bytes().to_vec(), ADDRESS_TTL)
            .await
            .map_err(|error| error.to_string())?;
        if let Some(previous) = previous
            && sitting
            && rules.ip_change
        {
            let note = format!(
                "reconnected from {ip}, was {}",
                String::from_utf8_lossy(&previous)
            );
            self.raise(event, true, kinds::IP_CHANGED, note).await?;
        }
        Ok(())
    }

    /// Decides an offline event whose window has passed.
    async fn decide_offline(&mut self, event: &LiveEvent) -> Result<(), String> {
        let LiveEventKind::WentOffline { sitting } = event.kind else {
            return Ok(());
        };
        let rules = self.rules(&event.plan_id).await?;
        let span = rules.connectivity_window_s * 1_000;
        let offline = self
            .hot
            .window_count(&offline_key(event), event.at - span, event.at + span)
            .await
            .map_err(|error| error.to_string())?;
        if rules.room_connectivity(offline, u64::from(sitting)) {
            let note = format!(
                "{offline} candidates of the room went offline within {} s",
                rules.connectivity_window_s
            );
            self.raise(event, false, kinds::CONNECTIVITY, note).await
        } else if rules.offline_alone {
            self.raise(
                event,
                true,
                kinds::WENT_OFFLINE,
                "went offline during the exam".into(),
            )
            .await
        } else {
            Ok(())
        }
    }

    /// Asks the room to raise an incident (of the candidate, or of the
    /// room); done once it is durable.
    async fn raise(
        &self,
        event: &LiveEvent,
        of_candidate: bool,
        kind: &'static str,
        note: String,
    ) -> Result<(), String> {
        let room = self
            .directory
            .room(&event.plan_id, &event.room_id)
            .await
            .map_err(|error| error.to_string())?;
        let timeout = self.directory.deps().config.call_timeout;
        let raised = room
            .call(
                |reply| {
                    RoomMsg::RaiseIncident(RaiseIncident {
                        id: event.id.clone(),
                        candidate_id: of_candidate.then(|| event.candidate_id.clone()),
                        kind,
                        note,
                        reply,
                    })
                },
                Some(timeout),
            )
            .await;
        match raised {
            Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
            Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(error.to_string()),
            Ok(_) => Err("the room did not answer".into()),
            Err(error) => Err(error.to_string()),
        }
    }
}

fn window(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(1).unsigned_abs())
}

fn offline_key(event: &LiveEvent) -> String {
    format!("offline:{}:{}", event.plan_id, event.room_id)
}

#[async_trait]
impl Consume for RulesWorker {
    fn topic(&self) -> &'static str {
        topics::EVENTS
    }

    fn group(&self) -> &'static str {
        Self::GROUP
    }

    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match decode::<LiveEvent>(item) {
                Ok(event) => self.handle(event, &item.id).await,
                Err(poison) => poison,
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    async fn idle(&mut self) -> Vec<String> {
        let now = self.clock.now().as_millis();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(due, _, _)| *due <= now);
        self.deferred = waiting;
        for (at, event, id) in due {
            match self.decide_offline(&event).await {
                Ok(()) => self.decided.push(id),
                Err(reason) => {
                    // Try again shortly; the entry stays pending meanwhile.
                    warn!(%reason, "offline decision failed; retrying");
                    self.deferred.push((at + 1_000, event, id));
                }
            }
        }
        std::mem::take(&mut self.decided)
    }
}
