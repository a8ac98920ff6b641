//! A topic's backlog for the gauges (`invigil_queue_pending`,
//! `invigil_queue_dead_letters`).

use std::collections::HashMap;

use invigil_actors::ports::{QueueDepth, QueueError};

use super::{RedisWorkQueue, unavailable};

impl RedisWorkQueue {
    /// [`WorkQueue::depth`]: `XLEN` of the stream and of its dead letters,
    /// then the group's `pending` and `lag` from `XINFO GROUPS`.
    pub(super) async fn read_depth(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<QueueDepth, QueueError> {
        let stream = self.connection.keys().queue(topic);
        let dead_letters = self.connection.keys().dead_letters(topic);
        let mut connection = self.connection.manager();
        let (length, dead): (u64, u64) = self
            .connection
            .call("depth", async {
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&stream)
                    .cmd("XLEN")
                    .arg(&dead_letters)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("depth", failure))?;
        if length == 0 {
            return Ok(QueueDepth {
                pending: 0,
                dead_letters: dead,
            });
        }
        let mut connection = self.connection.manager();
        let groups = self
            .connection
            .call("depth", async {
                redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&stream)
                    .query_async::<Vec<HashMap<String, redis::Value>>>(&mut connection)
                    .await
            })
            .await;
        let groups = match groups {
            Ok(groups) => groups,
            Err(failure) if failure.code().is_some_and(|code| code.starts_with("ERR")) => {
                Vec::new()
            }
            Err(failure) => return Err(unavailable("depth", failure)),
        };
        let number = |fields: &HashMap<String, redis::Value>, name: &str| -> Option<u64> {
            match fields.get(name)? {
                redis::Value::Int(value) => u64::try_from(*value).ok(),
                _ => None,
            }
        };
        let pending = groups
            .iter()
            .find(|fields| {
                matches!(fields.get("name"), Some(redis::Value::BulkString(name)) if name == group.as_bytes())
            })
            // `lag` is unknown (nil) after some deletions: the whole stream
            // then counts as behind, an overestimate that errs on the side
            // of an alert.
            .map_or(length, |fields| {
                number(fields, "pending").unwrap_or(0) + number(fields, "lag").unwrap_or(length)
            });
        Ok(QueueDepth {
            pending,
            dead_letters: dead,
        })
    }
}
