//! From sqlx's errors to jilo's, and which of them are worth another try.

use jilo_core::Error;

/// An error inside a store operation: the database's, or a jilo rule that refused the call.
#[derive(Debug)]
pub(crate) enum StoreError {
    #[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

/// A failure to open a Postgres database, as the driver reports it: what is wrong in words,
/// whether trying again may help, and where (`target`, with no password).
#[cfg(feature = "postgres")]
pub(crate) fn open_error(target: &str, e: sqlx::Error) -> Error {
    let (cause, retryable) = match &e {
        sqlx::Error::Database(db) => {
            let sqlstate = db.code().unwrap_or_default();
            if sqlstate.starts_with("28") {
                ("refused the credentials", false)
            } else if sqlstate == "3D000" {
                ("has no such database", false)
            } else {
                // A server starting or shutting down (57…), short of resources (53…): it may
                // take the next try.
                let passing = sqlstate.starts_with("57") || sqlstate.starts_with("53");
                ("refused the connection", passing)
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => ("cannot be reached", true),
        sqlx::Error::Tls(_) => ("refused the TLS handshake", false),
        sqlx::Error::Configuration(_) => ("is not configured right", false),
        _ => ("could not be opened", true),
    };
    Error::storage(
        format!("{target} {cause}"),
        retryable,
        Some(Box::new(e) as jilo_core::error::BoxError),
    )
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
        #[cfg(feature = "postgres")]
        if let StoreError::Sql(sqlx::Error::Database(db)) = self {
            // serialization_failure, deadlock_detected.
            return db
                .code()
                .is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01"));
        }
        false
    }

    /// A unique key refused the write, as the driver tells it.
    pub(crate) fn is_unique_violation(&self) -> bool {
        #[cfg(feature = "sqlite")]
        if let StoreError::Sqlite(e) = self {
            // SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE.
            return sqlite_code(e).is_some_and(|c| matches!(c.extended_code, 1555 | 2067));
        }
        #[cfg(feature = "postgres")]
        if let StoreError::Sql(sqlx::Error::Database(db)) = self {
            return db.is_unique_violation();
        }
        false
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
            #[cfg(feature = "postgres")]
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
