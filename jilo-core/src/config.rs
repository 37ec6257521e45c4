//! Checks of the values a host configures: keys, base URLs, model and actor ids.
//!
//! Every constructor and `from_env` of jilo runs these on what it is given, so a bad value is
//! refused where it is read, with an error naming the variable ([`Error::InvalidInput`] whose
//! `field` is e.g. `FAL_KEY`), instead of failing later inside a request: a key with a trailing
//! newline makes the HTTP client refuse to build the request, a model id like `../../admin`
//! lands in the request's path. The checks never put the value itself in the error (it may be a
//! secret, or carry a password in its user info).
//!
//! ```
//! use jilo_core::config;
//!
//! assert_eq!(config::base_url("FAL_QUEUE_URL", "http://127.0.0.1:8080/")?, "http://127.0.0.1:8080");
//! assert!(config::secret("FAL_KEY", "key-id:secret\n").is_err());
//! assert!(config::model_id("GEMINI_MODEL", "../../admin").is_err());
//! assert_eq!(config::redact_url("https://user:pw@proxy.example/v1"), "https://***@proxy.example/v1");
//! # Ok::<(), jilo_core::Error>(())
//! ```

use crate::error::{Error, Result};

/// Checks a key, token or secret: not empty, no whitespace around it, no control characters
/// (a newline or CR in a header value makes the request unbuildable).
pub fn secret(name: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(name, "is empty"));
    }
    if value.trim() != value {
        return Err(Error::invalid(
            name,
            "has whitespace around it (a trailing newline from a file?)",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(name, "contains a control character"));
    }
    Ok(())
}

/// Checks a URL a client sends requests to: `http` or `https` with a host, no control
/// characters or spaces. Its path, query and fragment are kept as given.
pub fn http_url(name: &str, value: &str) -> Result<url::Url> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            name,
            "contains whitespace or a control character",
        ));
    }
    let url =
        url::Url::parse(value).map_err(|e| Error::invalid(name, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            name,
            format!("must be an http or https URL, not `{}:`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(name, "has no host"));
    }
    Ok(url)
}

/// Checks a base URL that paths are appended to (`FAL_QUEUE_URL`, `GEMINI_API_URL`, …), as
/// [`http_url`] does, and refuses a query or fragment (a path appended after them would be
/// lost). Returns it without the trailing `/`.
pub fn base_url(name: &str, value: &str) -> Result<String> {
    let url = http_url(name, value)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            name,
            "is a base URL and takes no query or fragment",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Checks an id that becomes one segment of a request's path (a model id such as
/// `gemini-2.5-flash`, an Apify actor such as `clockworks~tiktok-scraper`): ASCII letters,
/// digits, `.`, `_`, `-` and `~`, starting with a letter or digit, at most 200 characters.
pub fn path_segment(name: &str, value: &str) -> Result<()> {
    let starts_well = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'));
    if !starts_well || !allowed || value.len() > 200 {
        return Err(Error::invalid(
            name,
            "must be an id of letters, digits, `.`, `_`, `-` or `~` that starts with a letter \
             or digit (it becomes part of the request's path)",
        ));
    }
    Ok(())
}

/// Checks a model id (see [`path_segment`]).
pub fn model_id(name: &str, value: &str) -> Result<()> {
    path_segment(name, value)
}

pub use crate::redact::{redact, redact_url};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn field(e: Error) -> String {
        match e {
            Error::InvalidInput { field, .. } => field,
            other => panic!("not an input error: {other}"),
        }
    }

    #[test]
    fn secrets_with_newlines_spaces_or_controls_are_refused_by_name() {
        for bad in ["", "zq7\n", " zq7", "zq7\r", "zq\u{0}7", "zq\t7"] {
            let e = secret("FAL_KEY", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                !e.to_string().contains("zq"),
                "the value is never shown: {e}"
            );
            assert_eq!(field(e), "FAL_KEY");
        }
        assert!(secret("FAL_KEY", "id:secret-123").is_ok());
        assert!(secret("SUCHUANG_API_KEY", "密钥abc").is_ok());
    }

    #[test]
    fn base_urls_are_http_with_a_host_and_no_query() {
        assert_eq!(
            base_url("X_URL", "https://api.example.com/v1/").unwrap(),
            "https://api.example.com/v1"
        );
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "http://",
            "https://api.example.com/?key=1",
            "https://api.example.com/#x",
            "https://api.example.com/\n",
            "not a url",
        ] {
            assert_eq!(field(base_url("X_URL", bad).unwrap_err()), "X_URL", "{bad}");
        }
        assert!(http_url("HOOK", "https://hooks.example/a?token=1").is_ok());
    }

    #[test]
    fn ids_are_one_path_segment() {
        for good in ["gemini-2.5-flash", "clockworks~tiktok-scraper", "a_b.c"] {
            assert!(model_id("GEMINI_MODEL", good).is_ok(), "{good}");
        }
        for bad in ["../../admin", "a/b", ".hidden", "", "a b", "a?b", "模型"] {
            assert_eq!(
                field(model_id("GEMINI_MODEL", bad).unwrap_err()),
                "GEMINI_MODEL"
            );
        }
    }

    #[test]
    fn urls_lose_their_user_info_when_shown() {
        assert_eq!(
            redact_url("http://proxy:s3cret@10.0.0.1:3128/api"),
            "http://***@10.0.0.1:3128/api"
        );
        assert_eq!(
            redact_url("https://api.example.com/x"),
            "https://api.example.com/x"
        );
        assert_eq!(redact_url("::nonsense::"), "***");
        let at_in_password = redact_url("https://u:p@ss@proxy.example/x");
        assert_eq!(at_in_password, "https://***@proxy.example/x");
    }
}
