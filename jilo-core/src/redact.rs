//! Keeping secrets out of what is shown: URLs without their user info, texts without the
//! secrets they carry. At the bottom of the crate: errors and configuration both use it.

/// A URL as it may be shown in `Debug` or logs: its user info (`user:password@`, e.g. a
/// proxy's) replaced with `***`. A value that does not parse is shown as `***` whole.
pub fn redact_url(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(url) if url.username().is_empty() && url.password().is_none() => value.to_owned(),
        Ok(mut url) => {
            // Rebuilt from the parsed form: the user info ends where the parser says (a
            // password may hold an `@`), never where a text search guesses.
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}

/// The forms a secret may take in a text: as given, and URL-encoded as a query value or a
/// path segment carries it.
pub(crate) fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let path = query.replace('+', "%20");
    for form in [query, path] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// The text with each secret (as given, and URL-encoded as a query value or a path segment
/// carries it) replaced by `***`, and a tail that is the start of a secret (a body cut short
/// inside it) cut off. What `Error::redact` does to every text an error holds; a
/// client runs it on any other text it keeps from a service (a failed task's reason).
pub fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets {
        for form in secret_forms(secret) {
            if text.contains(&form) {
                text = text.replace(&form, "***");
            }
            // The longest start of the secret the text ends with, four characters at least
            // (shorter tails are too common to mean anything).
            let cut = (4..form.len())
                .rev()
                .filter(|&n| form.is_char_boundary(n))
                .find(|&n| text.ends_with(&form[..n]));
            if let Some(n) = cut {
                text.truncate(text.len() - n);
                text.push_str("***");
            }
        }
    }
    text
}
