//! The log worker: system, candidate and proctor log lines from the `logs`
//! topic, inserted in batches (one transaction per fetched batch). Each line
//! carries the id it was published with and the insert skips ids already
//! stored, so a batch redelivered after a crash changes nothing twice.

use std::sync::Arc;

use async_trait::async_trait;

use super::consumer::{Consume, Outcome, decode};
use super::events::{LogPayload, topics};
use crate::ports::{Journal, WorkItem};

pub struct LogWorker {
    journal: Arc<dyn Journal>,
}

impl LogWorker {
    pub const GROUP: &'static str = "log-writer";

    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self { journal }
    }
}

#[async_trait]
impl Consume for LogWorker {
    fn topic(&self) -> &'static str {
        topics::LOGS
    }

    fn group(&self) -> &'static str {
        Self::GROUP
    }

    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut lines = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            match decode::<LogPayload>(item) {
                Ok(payload) => {
                    lines.push(payload.into_queued());
                    positions.push(position);
                    outcomes.push(Outcome::Done);
                }
                Err(poison) => outcomes.push(poison),
            }
        }
        if lines.is_empty() {
            return outcomes;
        }
        match self.journal.append_logs(&lines).await {
            Ok(_) => outcomes,
            Err(error) if error.is_transient() => {
                for position in positions {
                    outcomes[position] = Outcome::Retry(error.to_string());
                }
                outcomes
            }
            Err(_) => {
                // One line the store refuses must not hold back the others:
                // write them one by one; the refused one is retried until it
                // is dead-lettered.
                for (line, position) in lines.iter().zip(positions) {
                    if let Err(error) = self.journal.append_logs(std::slice::from_ref(line)).await {
                        outcomes[position] = Outcome::Retry(error.to_string());
                    }
                }
                outcomes
            }
        }
    }
}
