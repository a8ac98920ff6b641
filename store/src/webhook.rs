//! [`WebhookSender`] over HTTP (reqwest, rustls): one POST, bounded by the
//! caller's timeout, redirects not followed (a signed body goes only where
//! it was configured to go).

use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::ports::WebhookSender;

#[derive(Clone, Debug)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
}

impl HttpWebhookSender {
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, String> {
        let mut request = self.client.post(url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) if error.is_timeout() => Err(format!("timed out after {timeout:?}")),
            Err(error) => Err(format!("request failed: {error}")),
        }
    }
}
