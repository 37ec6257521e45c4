//! Which database a store opens.

use std::fmt;

use jilo_core::Error;
use url::form_urlencoded;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_SQLITE_PATH: &str = "jilo.db";

/// A database location, from `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file: its path, with the URL's parameters (`?mode=ro&cache=shared`)
    /// kept after a `?` and passed to SQLite when connecting.
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
            let file = rest.strip_prefix("//").unwrap_or(rest);
            let (path, params) = file.split_once('?').unwrap_or((file, ""));
            if path.is_empty() {
                return Err(Error::invalid(
                    "DATABASE_URL",
                    "an sqlite URL needs a file path",
                ));
            }
            if form_urlencoded::parse(params.as_bytes()).any(|(k, _)| k.is_empty()) {
                return Err(Error::invalid(
                    "DATABASE_URL",
                    format!("`{params}` are not sqlite URL parameters"),
                ));
            }
            return Ok(StoreUrl::SqliteFile(file.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Err(e) = ::url::Url::parse(url) {
                return Err(Error::invalid(
                    "DATABASE_URL",
                    format!("`{}` is not a valid URL: {e}", redact(url)),
                ));
            }
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

/// Query parameters that carry a secret in a connection URL.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// The URL with any password (in the user info or as a query parameter) replaced by `***`.
/// A URL that does not parse keeps only its scheme, so nothing in it can leak.
fn redact(url: &str) -> String {
    let Ok(mut parsed) = ::url::Url::parse(url) else {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("unknown");
        return format!("{scheme}://***");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

impl StoreUrl {
    /// An SQLite file's path and its URL parameters (empty when none), e.g. `("jilo.db", "mode=ro")`.
    pub fn sqlite_path_and_params(&self) -> Option<(&str, &str)> {
        match self {
            StoreUrl::SqliteFile(file) => Some(file.split_once('?').unwrap_or((file, ""))),
            _ => None,
        }
    }

    /// An SQLite file's path and the parameters to open it with: the URL's own, with
    /// `mode=rwc` (created when missing) first unless the URL sets a mode.
    ///
    /// ```
    /// use jilo_store::StoreUrl;
    ///
    /// let url = StoreUrl::parse("sqlite://data/jilo.db?cache=shared")?;
    /// assert_eq!(
    ///     url.sqlite_open_params(),
    ///     Some(("data/jilo.db", "mode=rwc&cache=shared".to_owned()))
    /// );
    /// let read_only = StoreUrl::parse("sqlite://data/jilo.db?mode=ro")?;
    /// assert_eq!(read_only.sqlite_open_params(), Some(("data/jilo.db", "mode=ro".to_owned())));
    /// # Ok::<(), jilo_core::Error>(())
    /// ```
    pub fn sqlite_open_params(&self) -> Option<(&str, String)> {
        let (path, params) = self.sqlite_path_and_params()?;
        let mode = if params.split('&').any(|p| p.starts_with("mode=")) {
            ""
        } else {
            "mode=rwc"
        };
        let query = [mode, params]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        Some((path, query))
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
            StoreUrl::SqliteFile("data/jilo.db?mode=rwc".into())
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
    fn sqlite_parameters_are_kept_and_query_passwords_hidden() {
        let url = StoreUrl::parse("sqlite://data/jilo.db?mode=ro&cache=shared").unwrap();
        assert_eq!(
            url.sqlite_path_and_params(),
            Some(("data/jilo.db", "mode=ro&cache=shared"))
        );
        assert_eq!(
            url.to_string(),
            "sqlite://data/jilo.db?mode=ro&cache=shared"
        );
        let pg = StoreUrl::parse(
            "postgres://jilo@db.internal/app?sslmode=require&password=hunter2&application_name=x",
        )
        .unwrap();
        let shown = format!("{pg} {pg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("password=***") && shown.contains("sslmode=require"),
            "{shown}"
        );
        let err = StoreUrl::parse("postgres://jilo:s3cret@[bad/db").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
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
