//! Mapping of driver errors to the ports' [`StoreError`].

use invigil_actors::error::StoreError;

/// Converts a sqlx error: connection trouble is `Unavailable` (retry may
/// help), a unique violation is `Conflict`, the rest is `Internal`.
pub fn from_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(database) => {
            if database.is_unique_violation() {
                StoreError::Conflict(database.message().to_string())
            } else if database.code().is_some_and(|code| code.starts_with("22")) {
                // Postgres' data exceptions (invalid text, out of range, …).
                StoreError::Rejected(database.message().to_string())
            } else if is_busy(database.code().as_deref()) {
                StoreError::Unavailable(database.message().to_string())
            } else {
                StoreError::Internal(database.message().to_string())
            }
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Internal(error.to_string()),
    }
}

/// SQLite's busy/locked codes and Postgres' serialization failures and
/// connection-class errors are worth a retry.
fn is_busy(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P03")
    ) || code.is_some_and(|c| c.starts_with("08"))
}

/// Converts a JSON column that does not parse.
pub fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}
