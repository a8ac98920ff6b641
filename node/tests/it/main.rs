//! Integration tests against a real node: real HTTP, a real database
//! (SQLite file or Postgres schema per test), an injected clock.

mod admin;
mod auth;
mod errors;
mod files;
mod hot_state;
mod live;
mod metrics;
mod redis_faults;
mod results;
mod support;
mod workers;
mod ws;

/// Declares each listed case once per backend.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = crate::support::TestApp::spawn(crate::support::Backend::Sqlite).await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = crate::support::TestApp::spawn(crate::support::Backend::Postgres).await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
