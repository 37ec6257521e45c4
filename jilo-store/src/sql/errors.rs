//! From sqlx's errors to jilo's, and which of them are worth another try.

use jilo_core::Error;

/// An error inside a store operation: the database's, or a jilo rule that refused the call.
#[derive(Debug)]
pub(crate) enum StoreError {
    Sql(sqlx::Error),
    #[cfg(feature = "sqlite")]
    Sqlite(rusqlite::Error),
    Rule(Error),
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_code(e: &rusqlite::Error) -> Option<rusqlite::ffi::Error> {
    match e {
        rusqlite::Error::SqliteFailure(code, _) => Some(*code),
        _ => None,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Sql(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        StoreError::Rule(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Rule(Error::storage(
            "a stored job could not be read",
            false,
            Some(Box::new(e) as jilo_core::error::BoxError),
        ))
    }
}

pub(crate) type StoreResult<T> = Result<T, StoreError>;

fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl StoreError {
    /// A busy or locked SQLite database, or a Postgres serialization failure or deadlock:
    /// the same call succeeds when tried again.
    pub(crate) fn is_transient(&self) -> bool {
        #[cfg(feature = "sqlite")]
        if let StoreError::Sqlite(e) = self {
            return sqlite_code(e).is_some_and(|c| {
                matches!(
                    c.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            });
        }
        let StoreError::Sql(e) = self else {
            return false;
        };
        if let Some(code) = code(e) {
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
            // Postgres: serialization_failure, deadlock_detected.
            if matches!(
                code.as_str(),
                "5" | "6" | "261" | "262" | "517" | "40001" | "40P01"
            ) {
                return true;
            }
        }
        let text = e.to_string();
        text.contains("database is locked") || text.contains("database table is locked")
    }

    /// A unique key refused the write, as the driver tells it.
    pub(crate) fn is_unique_violation(&self) -> bool {
        #[cfg(feature = "sqlite")]
        if let StoreError::Sqlite(e) = self {
            // SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE.
            return sqlite_code(e).is_some_and(|c| matches!(c.extended_code, 1555 | 2067));
        }
        matches!(self, StoreError::Sql(sqlx::Error::Database(db)) if db.is_unique_violation())
    }

    /// The jilo error for the caller.
    pub(crate) fn into_error(self, what: &str) -> Error {
        if self.is_unique_violation() {
            return Error::already_exists("record", format!("({what})"));
        }
        let transient = self.is_transient();
        match self {
            StoreError::Rule(e) => e,
            #[cfg(feature = "sqlite")]
            StoreError::Sqlite(e) => Error::storage(
                format!("{what} failed"),
                transient,
                Some(Box::new(e) as jilo_core::error::BoxError),
            ),
            StoreError::Sql(e) => {
                let retryable =
                    transient || matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_));
                Error::storage(
                    format!("{what} failed"),
                    retryable,
                    Some(Box::new(e) as jilo_core::error::BoxError),
                )
            }
        }
    }
}
