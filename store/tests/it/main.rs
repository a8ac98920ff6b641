//! The store conformance suite: every case runs against SQLite (a fresh file)
//! and Postgres (a fresh schema), so both backends keep one behaviour; the
//! hot-state and work-queue cases run in memory and on Redis alike.

mod files;
mod hot;
mod journal;
mod leases;
mod plans;
mod queue;
mod redis_support;
mod results;
mod support;

/// Declares each listed case once per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = crate::support::TestStore::sqlite().await;
                    super::$case(&backend.store).await;
                    backend.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = crate::support::TestStore::postgres().await;
                    super::$case(&backend.store).await;
                    backend.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use conformance;
