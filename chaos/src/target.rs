//! The target node: loopback only, one pooled HTTP client.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};

/// Refuses anything but a loopback `http://` base URL: load goes only to
/// nodes on this machine.
pub fn loopback_base(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    if parsed.scheme() != "http" {
        bail!("only http:// targets are supported");
    }
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing non-loopback target {url}: load and chaos traffic stays on this machine");
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::loopback_base;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_base("http://127.0.0.1:8080/").is_ok());
        assert!(loopback_base("http://127.0.0.5:8081").is_ok());
        assert!(loopback_base("http://localhost:8080").is_ok());
        assert!(loopback_base("http://[::1]:8080").is_ok());
        assert!(loopback_base("http://10.0.0.1:8080").is_err());
        assert!(loopback_base("http://example.com").is_err());
        assert!(loopback_base("https://127.0.0.1").is_err());
    }
}
