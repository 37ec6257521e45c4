//! Which database a store opens.

use std::fmt;

use jilo_core::Error;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_SQLITE_PATH: &str = "jilo.db";

/// A database location, from `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    SqliteFile(String),
    /// An SQLite database in memory (one connection's lifetime).
    SqliteMemory,
    /// A Postgres connection URL (may carry a password: `Debug` hides it).
    Postgres(String),
}

impl StoreUrl {
    /// Parses `sqlite://path`, `sqlite:path`, `sqlite::memory:`, `postgres://…` or
    /// `postgresql://…`. Anything else is [`Error::InvalidInput`] on `DATABASE_URL`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(StoreUrl::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(Error::invalid(
                    "DATABASE_URL",
                    "an sqlite URL needs a file path",
                ));
            }
            return Ok(StoreUrl::SqliteFile(path.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(Error::invalid(
            "DATABASE_URL",
            format!("`{}` is neither sqlite:// nor postgres://", redact(url)),
        ))
    }

    /// Reads `DATABASE_URL`; without it, the SQLite file [`DEFAULT_SQLITE_PATH`].
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Self::parse(&url),
            _ => Ok(StoreUrl::SqliteFile(DEFAULT_SQLITE_PATH.to_owned())),
        }
    }
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::SqliteFile(p) => write!(f, "SqliteFile({p:?})"),
            StoreUrl::SqliteMemory => f.write_str("SqliteMemory"),
            StoreUrl::Postgres(url) => write!(f, "Postgres({:?})", redact(url)),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::SqliteFile(p) => write!(f, "sqlite://{p}"),
            StoreUrl::SqliteMemory => f.write_str("sqlite::memory:"),
            StoreUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(
            StoreUrl::parse("sqlite::memory:").unwrap(),
            StoreUrl::SqliteMemory
        );
        assert_eq!(
            StoreUrl::parse("sqlite://data/jilo.db?mode=rwc").unwrap(),
            StoreUrl::SqliteFile("data/jilo.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:jilo.db").unwrap(),
            StoreUrl::SqliteFile("jilo.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgresql://u@localhost/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
    }

    #[test]
    fn refuses_other_schemes_without_leaking_passwords() {
        let err = StoreUrl::parse("mysql://root:hunter2@db/jilo").unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "DATABASE_URL"));
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(StoreUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_never_show() {
        let url = StoreUrl::parse("postgres://jilo:s3cret@127.0.0.1:5432/test").unwrap();
        assert_eq!(url.to_string(), "postgres://jilo:***@127.0.0.1:5432/test");
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = StoreUrl::parse("postgres://jilo@127.0.0.1/test").unwrap();
        assert_eq!(plain.to_string(), "postgres://jilo@127.0.0.1/test");
    }
}
