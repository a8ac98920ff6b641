//! Signed notices to the admin server.

use std::time::Duration;

use async_trait::async_trait;

/// Sends one HTTP POST for the admin webhook worker.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// Returns the response status, or why there was none (timeout,
    /// connection refused, …).
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, String>;
}
