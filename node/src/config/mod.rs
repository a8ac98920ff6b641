//! Typed, layered configuration: a TOML file, then `INVIGIL_<SECTION>__<KEY>`
//! environment variables. Unknown keys are errors; secrets never print.
//!
//! # Layout
//! - `sections`: the sections and their fields, with defaults
//! - `validate`: what types alone cannot check
//! - `settings`: the settings each part of the node is built with, from the config

mod sections;
mod settings;
mod validate;

use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

pub use self::sections::*;

impl Config {
    /// Loads defaults ← `file` ← environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_figment(figment.merge(Self::environment()))
    }

    /// `INVIGIL_<SECTION>__<KEY>`; variables without a section separator
    /// (e.g. test settings) are not configuration.
    fn environment() -> Env {
        Env::prefixed("INVIGIL_")
            .filter(|key| key.as_str().contains("__"))
            .split("__")
    }

    pub fn from_figment(figment: Figment) -> anyhow::Result<Self> {
        let mut config: Config = figment.extract().context("invalid configuration")?;
        if config.node.id.is_empty() && config.store.url.expose().starts_with("sqlite:") {
            config.node.id = "node-1".into();
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its own error type
mod tests {
    use figment::Jail;

    use super::*;

    const VALID: &str = r#"
        [node]
        id = "node-7"
        listen = "127.0.0.1:9000"
        [auth]
        api_keys = ["admin-key-0123456789"]
        jwt_secret = "jwt-secret-0123456789-0123456789-xx"
        access_code_secret = "code-secret-0123456789-0123456789-x"
    "#;

    #[test]
    fn file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            jail.set_env("INVIGIL_NODE__LISTEN", "127.0.0.1:9001");
            jail.set_env("INVIGIL_STORE__MAX_CONNECTIONS", "3");
            jail.set_env("INVIGIL_TEST_PG_URL", "not configuration");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.id, "node-7");
            assert_eq!(config.node.listen.port(), 9001);
            assert_eq!(config.store.max_connections, 3);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_weak_secrets_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", &format!("{VALID}\n[journal]\nmax_bath = 5\n"))?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("typo.toml"))).unwrap_err()
            );
            assert!(error.contains("max_bath"), "{error}");
            jail.create_file(
                "weak.toml",
                &VALID.replace("jwt-secret-0123456789-0123456789-xx", "short"),
            )?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("weak.toml"))).unwrap_err()
            );
            assert!(error.contains("jwt_secret"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn postgres_nodes_need_an_id() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "pg.toml",
                &VALID
                    .replace("id = \"node-7\"", "")
                    .replace("[auth]", "[store]\nurl = \"postgres://h/db\"\n[auth]"),
            )?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("pg.toml"))).unwrap_err()
            );
            assert!(error.contains("node.id is required"), "{error}");
            jail.create_file("lite.toml", &VALID.replace("id = \"node-7\"", ""))?;
            let config = Config::load(Some(Path::new("lite.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.id, "node-1");
            Ok(())
        });
    }

    #[test]
    fn metrics_and_traces_are_configured_and_checked() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert!(config.metrics.enabled && config.metrics.listen.is_none());
            assert_eq!(config.telemetry.otlp_endpoint, None);
            jail.set_env("INVIGIL_METRICS__ENABLED", "false");
            jail.set_env("INVIGIL_METRICS__LISTEN", "127.0.0.1:9464");
            jail.set_env("INVIGIL_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert!(!config.metrics.enabled);
            assert_eq!(config.metrics.listen.unwrap().port(), 9464);
            for bad in [
                "https://collector:4318",
                "collector:4318",
                "http://",
                "http://a b",
            ] {
                jail.set_env("INVIGIL_TELEMETRY__OTLP_ENDPOINT", bad);
                let error = format!(
                    "{:#}",
                    Config::load(Some(Path::new("node.toml"))).unwrap_err()
                );
                assert!(error.contains("telemetry.otlp_endpoint"), "{bad}: {error}");
            }
            jail.set_env("INVIGIL_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318");
            jail.set_env("INVIGIL_METRICS__LISTEN", "not an address");
            assert!(Config::load(Some(Path::new("node.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn file_limits_come_from_the_environment_and_are_bounded() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            jail.set_env("INVIGIL_FILES__MAX_BYTES", "1048576");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.files.max_bytes, 1_048_576);
            assert_eq!(config.files.cache_max_age_s, 86_400);
            jail.set_env("INVIGIL_FILES__MAX_BYTES", "100");
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("node.toml"))).unwrap_err()
            );
            assert!(error.contains("files.max_bytes"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn redis_is_optional_and_checked() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.url_opt(), None, "embedded by default");
            assert_eq!(config.redis.key_prefix, "invigil:");

            jail.set_env(
                "INVIGIL_REDIS__URL",
                "redis://:hunter2-password@cache:6379/2",
            );
            jail.set_env("INVIGIL_REDIS__OP_TIMEOUT_MS", "250");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                config.redis.url_opt(),
                Some("redis://:hunter2-password@cache:6379/2")
            );
            assert_eq!(config.redis.op_timeout_ms, 250);
            assert!(
                !format!("{config:?}").contains("hunter2"),
                "the url prints redacted"
            );

            jail.set_env("INVIGIL_REDIS__URL", "");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.url_opt(), None, "empty turns Redis off");

            for (key, value, named) in [
                ("INVIGIL_REDIS__URL", "http://cache:6379", "redis.url"),
                ("INVIGIL_REDIS__URL", "rediss://cache:6380", "TLS"),
                ("INVIGIL_REDIS__OP_TIMEOUT_MS", "0", "redis.op_timeout_ms"),
                ("INVIGIL_REDIS__RESUME_TTL_S", "5", "redis.resume_ttl_s"),
                (
                    "INVIGIL_REDIS__KEY_PREFIX",
                    "has space:",
                    "redis.key_prefix",
                ),
            ] {
                jail.clear_env();
                jail.set_env(key, value);
                let error = format!(
                    "{:#}",
                    Config::load(Some(Path::new("node.toml"))).unwrap_err()
                );
                assert!(error.contains(named), "{key}={value}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let mut config = Config::default();
        config.auth.jwt_secret = Secret::new("super-secret-value");
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }
}
