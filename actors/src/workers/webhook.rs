//! The admin webhook worker: plan notices (`plan.ended`, `plan.finalized`)
//! from the `webhooks` topic, POSTed to the configured URL with an
//! HMAC-SHA256 signature.
//!
//! Request: `Content-Type: application/json`, body
//! `{"id","event","plan_id","at"}`, headers `X-Invigil-Event`,
//! `X-Invigil-Delivery` (the notice id: the same on every retry, so the
//! receiver can deduplicate) and
//! `X-Invigil-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! Delivery: a 2xx is success. A timeout, a connection error, 408, 429 or a
//! 5xx is retried within the delivery (backoff 0.5 s, 1 s, 2 s), then left
//! for redelivery (after the queue's `min_idle`); after `max_deliveries` the
//! notice goes to the dead-letter stream. Any other 4xx means the receiver
//! refuses it: dead-lettered at once, with the status as the reason.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tracing::{info, warn};

use super::consumer::{Consume, Outcome, decode};
use super::events::{PlanNotice, topics};
use crate::ports::{Clock, WebhookSender, WorkItem};

/// Attempts within one delivery.
const ATTEMPTS: u32 = 3;

/// Where and how to notify the admin server.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub struct WebhookWorker {
    target: WebhookTarget,
    sender: Arc<dyn WebhookSender>,
    clock: Arc<dyn Clock>,
    /// First retry pause within a delivery (tests shorten it).
    pub first_backoff: Duration,
}

impl WebhookWorker {
    pub const GROUP: &'static str = "admin-webhook";

    pub fn new(
        target: WebhookTarget,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            target,
            sender,
            clock,
            first_backoff: Duration::from_millis(500),
        }
    }

    async fn deliver(&self, notice: &PlanNotice) -> Outcome {
        let body = serde_json::json!({
            "id": notice.id,
            "event": notice.event,
            "plan_id": notice.plan_id,
            "at": chrono::DateTime::from_timestamp_millis(notice.at)
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        })
        .to_string();
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let now = self.clock.now().as_millis();
            let headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-invigil-event".to_string(), notice.event.clone()),
                ("x-invigil-delivery".to_string(), notice.id.clone()),
                (
                    "x-invigil-signature".to_string(),
                    signature(&self.target.secret, now, body.as_bytes()),
                ),
            ];
            match self
                .sender
                .post(
                    &self.target.url,
                    &headers,
                    body.clone().into_bytes(),
                    self.target.timeout,
                )
                .await
            {
                Ok(status) if (200..300).contains(&status) => {
                    info!(event = %notice.event, plan_id = %notice.plan_id, id = %notice.id, "webhook delivered");
                    return Outcome::Done;
                }
                Ok(status) if status == 408 || status == 429 || status >= 500 => {
                    last = format!("HTTP {status}");
                }
                Ok(status) => {
                    return Outcome::Poison(format!("refused by the receiver: HTTP {status}"));
                }
                Err(error) => last = error,
            }
            warn!(event = %notice.event, id = %notice.id, attempt, reason = %last, "webhook attempt failed");
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Outcome::Retry(last)
    }
}

/// `t=<ms>,v1=<hex HMAC-SHA256(secret, "<ms>.<body>")>`.
pub fn signature(secret: &str, at_ms: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(at_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={at_ms},v1={hex}")
}

#[async_trait]
impl Consume for WebhookWorker {
    fn topic(&self) -> &'static str {
        topics::WEBHOOKS
    }

    fn group(&self) -> &'static str {
        Self::GROUP
    }

    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(match decode::<PlanNotice>(item) {
                Ok(notice) => self.deliver(&notice).await,
                Err(poison) => poison,
            });
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_time_and_body() {
        // echo -n '1700000000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000_000, b"{}"),
            "t=1700000000000,v1=8399216d111287e3bb28e25c0f4f31dffdf831c68c9ee2b96c2f67c9b81d341b"
        );
        assert_ne!(
            signature("secret", 1_700_000_000_000, b"{}"),
            signature("other", 1_700_000_000_000, b"{}")
        );
    }
}
