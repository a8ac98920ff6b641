//! Integration tests against a real node: real HTTP, a real database
//! (SQLite file or Postgres schema per test), an injected clock.

mod admin;
mod auth;
mod errors;
mod live;
mod support;
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
