//! `from_env` of every client refuses a bad value naming its variable (a key with a trailing
//! newline, a URL that is not one, a model id that would walk the request's path), and a
//! machine without CA certificates gets an error from every constructor, not a panic. jilo
//! never installs a process-wide TLS provider, so a host's own installs after it.
//!
//! One test in its own binary: it sets the process environment, which no other test shares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jilo_core::{Error, InMemoryStore};
use jilo_providers::apify::ApifySource;
use jilo_providers::fal::FalProvider;
use jilo_providers::gemini::GeminiModel;
use jilo_providers::notify::ChatWebhookNotifier;
use jilo_providers::suchuang::SuchuangProvider;
use jilo_providers::tokens::TokenCipher;
use jilo_providers::youtube::{GoogleOAuth, YouTubePublisher};
use secrecy::SecretString;

fn field_of<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("expected an input error, got {other:?}"),
    }
}

fn set(vars: &[(&str, &str)]) {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

fn clear(vars: &[&str]) {
    for k in vars {
        std::env::remove_var(k);
    }
}

#[test]
fn from_env_checks_every_value_and_no_ca_certificates_is_an_error() {
    const ALL: [&str; 16] = [
        "FAL_KEY",
        "FAL_QUEUE_URL",
        "FAL_JWKS_URL",
        "FAL_USER_ID",
        "SUCHUANG_API_KEY",
        "SUCHUANG_API_URL",
        "APIFY_TOKEN",
        "APIFY_API_URL",
        "GEMINI_API_KEY",
        "GEMINI_API_URL",
        "GEMINI_MODEL",
        "YOUTUBE_CLIENT_ID",
        "YOUTUBE_CLIENT_SECRET",
        "GOOGLE_TOKEN_URL",
        "YOUTUBE_API_URL",
        "JILO_ALERT_WEBHOOK",
    ];
    clear(&ALL);

    // Unset: the variable is named.
    assert_eq!(field_of(FalProvider::from_env()), "FAL_KEY");
    assert_eq!(field_of(ApifySource::from_env()), "APIFY_TOKEN");

    // A key read from a file with its newline.
    set(&[
        ("FAL_KEY", "fal-id:secret\n"),
        ("APIFY_TOKEN", "apify_api_x\r\n"),
    ]);
    assert_eq!(field_of(FalProvider::from_env()), "FAL_KEY");
    assert_eq!(field_of(ApifySource::from_env()), "APIFY_TOKEN");

    set(&[
        ("FAL_KEY", "fal-id:secret"),
        ("FAL_QUEUE_URL", "queue.fal.run"),
    ]);
    assert_eq!(field_of(FalProvider::from_env()), "FAL_QUEUE_URL");
    set(&[
        ("FAL_QUEUE_URL", "https://queue.fal.run"),
        ("FAL_JWKS_URL", "jwks"),
    ]);
    assert_eq!(field_of(FalProvider::from_env()), "FAL_JWKS_URL");
    clear(&["FAL_JWKS_URL"]);
    set(&[("FAL_USER_ID", "user\u{7}")]);
    assert_eq!(field_of(FalProvider::from_env()), "FAL_USER_ID");
    set(&[("FAL_USER_ID", "user-1")]);
    assert!(FalProvider::from_env().is_ok());
    for bad in ["0", "-5", "fast"] {
        set(&[("FAL_REQUESTS_PER_MINUTE", bad)]);
        assert_eq!(field_of(FalProvider::from_env()), "FAL_REQUESTS_PER_MINUTE");
    }
    set(&[("FAL_REQUESTS_PER_MINUTE", "6000")]);
    assert!(FalProvider::from_env().is_ok());
    clear(&["FAL_REQUESTS_PER_MINUTE"]);

    set(&[
        ("SUCHUANG_API_KEY", "sc-key"),
        ("SUCHUANG_API_URL", "not a url"),
    ]);
    assert_eq!(field_of(SuchuangProvider::from_env()), "SUCHUANG_API_URL");
    set(&[("SUCHUANG_API_URL", "http://127.0.0.1:9/")]);
    assert!(SuchuangProvider::from_env().is_ok());

    set(&[("GEMINI_API_KEY", "g-key"), ("GEMINI_MODEL", "../../admin")]);
    assert_eq!(field_of(GeminiModel::from_env()), "GEMINI_MODEL");
    set(&[
        ("GEMINI_MODEL", "gemini-2.5-flash"),
        ("GEMINI_API_URL", "ftp://x"),
    ]);
    assert_eq!(field_of(GeminiModel::from_env()), "GEMINI_API_URL");
    clear(&["GEMINI_API_URL"]);
    assert!(GeminiModel::from_env().is_ok());

    set(&[
        ("YOUTUBE_CLIENT_ID", "client.apps.googleusercontent.com"),
        ("YOUTUBE_CLIENT_SECRET", "GOCSPX-secret "),
    ]);
    assert_eq!(field_of(GoogleOAuth::from_env()), "YOUTUBE_CLIENT_SECRET");
    set(&[
        ("YOUTUBE_CLIENT_SECRET", "GOCSPX-secret"),
        ("GOOGLE_TOKEN_URL", "oauth2.googleapis.com/token"),
    ]);
    assert_eq!(field_of(GoogleOAuth::from_env()), "GOOGLE_TOKEN_URL");
    clear(&["GOOGLE_TOKEN_URL"]);
    let oauth = GoogleOAuth::from_env().unwrap();
    set(&[("YOUTUBE_API_URL", "www.googleapis.com")]);
    let cipher = TokenCipher::new("k1", &[7u8; 32]).unwrap();
    assert_eq!(
        field_of(YouTubePublisher::new(
            oauth,
            Arc::new(InMemoryStore::new()),
            cipher
        )),
        "YOUTUBE_API_URL"
    );
    clear(&["YOUTUBE_API_URL"]);

    // Token keys: every older key's entry is checked, and named by its place and id.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes
    set(&[("JILO_TOKEN_KEY", key), ("JILO_TOKEN_KEY_ID", "k2")]);
    for (previous, says) in [
        ("k1", "entry 1 is not `id=base64-key`"),
        (&format!("k1={key},={key}") as &str, "entry 2 (``)"),
        (&format!("k2={key}"), "entry 1 (`k2`)"),
        (&format!("k1={key},k:0={key}"), "entry 2 (`k:0`)"),
        ("k1=bm90IDMyIGJ5dGVz", "entry 1 (`k1`)"),
    ] {
        set(&[("JILO_TOKEN_KEYS_PREVIOUS", previous)]);
        match TokenCipher::from_env() {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "JILO_TOKEN_KEYS_PREVIOUS");
                assert!(reason.contains(says), "{previous}: {reason}");
                assert!(!reason.contains("AAEC"), "no key shows: {reason}");
            }
            other => panic!("{previous}: expected an input error, got {other:?}"),
        }
    }
    set(&[(
        "JILO_TOKEN_KEYS_PREVIOUS",
        &format!("k1={key}, k0={key},") as &str,
    )]);
    assert!(TokenCipher::from_env().is_ok());
    set(&[("JILO_TOKEN_KEY_ID", "k:2")]);
    assert_eq!(field_of(TokenCipher::from_env()), "JILO_TOKEN_KEY_ID");
    clear(&[
        "JILO_TOKEN_KEY",
        "JILO_TOKEN_KEY_ID",
        "JILO_TOKEN_KEYS_PREVIOUS",
    ]);

    set(&[("JILO_ALERT_WEBHOOK", "hooks.slack.com/services/x")]);
    assert_eq!(
        field_of(ChatWebhookNotifier::from_env()),
        "JILO_ALERT_WEBHOOK"
    );

    // A slim container: no CA certificates load. Every constructor answers an error.
    set(&[
        ("SSL_CERT_FILE", "/nonexistent/ca-certificates.crt"),
        ("SSL_CERT_DIR", "/nonexistent/certs"),
    ]);
    let tls = |r: Result<(), Error>| {
        let f = field_of(r);
        assert_eq!(f, "TLS");
    };
    tls(FalProvider::new("k").map(|_| ()));
    tls(SuchuangProvider::new("k").map(|_| ()));
    tls(ApifySource::new("k").map(|_| ()));
    tls(GeminiModel::new("k").map(|_| ()));
    tls(GoogleOAuth::new("id", SecretString::from("s")).map(|_| ()));
    tls(ChatWebhookNotifier::new("https://hooks.example/x").map(|_| ()));
    clear(&["SSL_CERT_FILE", "SSL_CERT_DIR"]);
    assert!(FalProvider::new("k").is_ok());

    // jilo built every client above on its own TLS configuration: the process default is
    // still the host's to install.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    assert!(rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok());
    clear(&ALL);
}
