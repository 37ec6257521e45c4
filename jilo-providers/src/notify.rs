//! Admin alerts by email over SMTP (feature `email`) and to a chat webhook (feature `chat`,
//! Slack-compatible JSON). The log notifier is [`jilo_core::LogNotifier`].
//!
//! An alert says which provider, what happened, what to do (the seed's "top up the account")
//! and when. The Studio already sends one alert per subject per cooldown, across processes.

use jilo_core::Alert;

/// The alert as text: what, what to do, the details, and when.
pub fn alert_text(alert: &Alert) -> (String, String) {
    let when = httpdate::fmt_http_date(alert.at.to_system());
    let subject = format!("[jilo] {}", alert.kind);
    let mut body = format!("{}\n\nWhen: {when}\n", alert.kind);
    if !alert.detail.trim().is_empty() {
        body.push_str(&format!("Details: {}\n", alert.detail.trim()));
    }
    (subject, body)
}

#[cfg(feature = "email")]
pub use email::EmailNotifier;

#[cfg(feature = "email")]
mod email {
    use std::fmt;

    use async_trait::async_trait;
    use jilo_core::{Alert, Error, Notifier, Result};
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    use secrecy::{ExposeSecret, SecretString};

    use super::alert_text;

    /// Sends alerts by email through an SMTP server (rustls for TLS).
    pub struct EmailNotifier {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        server: String,
        from: Mailbox,
        to: Mailbox,
    }

    impl fmt::Debug for EmailNotifier {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("EmailNotifier")
                .field("server", &self.server)
                .field("to", &self.to.to_string())
                .finish_non_exhaustive()
        }
    }

    fn bad(field: &str, e: impl fmt::Display) -> Error {
        Error::invalid(field, e.to_string())
    }

    impl EmailNotifier {
        /// An SMTP URL (`smtp://user:pass@host:587?tls=required`, `smtps://host`, or
        /// `smtp://host:25` without TLS for a local relay), the sender and the admin's address.
        /// The URL's password never shows in `Debug` or errors.
        pub fn new(smtp_url: &str, from: &str, to: &str) -> Result<Self> {
            let secret = SecretString::from(smtp_url.to_owned());
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(secret.expose_secret())
                .map_err(|_| bad("SMTP_URL", "not an smtp:// or smtps:// URL"))?
                .build();
            let server = url::Url::parse(smtp_url)
                .ok()
                .and_then(|u| {
                    u.host_str()
                        .map(|h| format!("{h}:{}", u.port().unwrap_or(25)))
                })
                .unwrap_or_default();
            Ok(Self {
                transport,
                server,
                from: from.parse().map_err(|e| bad("from", e))?,
                to: to.parse().map_err(|e| bad("JILO_ADMIN_EMAIL", e))?,
            })
        }

        /// `SMTP_URL`, `JILO_ADMIN_EMAIL` (both required) and `JILO_ALERT_FROM` (default
        /// `jilo <alerts@localhost>`).
        pub fn from_env() -> Result<Self> {
            let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
            let url =
                var("SMTP_URL").ok_or_else(|| bad("SMTP_URL", "set it to the SMTP server"))?;
            let to = var("JILO_ADMIN_EMAIL")
                .ok_or_else(|| bad("JILO_ADMIN_EMAIL", "set it to the admin's address"))?;
            let from = var("JILO_ALERT_FROM").unwrap_or_else(|| "jilo <alerts@localhost>".into());
            Self::new(&url, &from, &to)
        }
    }

    #[async_trait]
    impl Notifier for EmailNotifier {
        async fn notify(&self, alert: &Alert) -> Result<()> {
            let (subject, body) = alert_text(alert);
            let message = Message::builder()
                .from(self.from.clone())
                .to(self.to.clone())
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| bad("alert", e))?;
            // A span per send (the server, never its credentials), with what came of it.
            let span = tracing::info_span!("smtp", server = %self.server, alert = %alert.kind);
            let started = std::time::Instant::now();
            let sent =
                tracing::Instrument::instrument(self.transport.send(message), span.clone()).await;
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            span.in_scope(|| match &sent {
                Ok(_) => tracing::info!(latency_ms, "alert emailed"),
                Err(e) => tracing::warn!(latency_ms, error = %e, "the alert email was not sent"),
            });
            sent.map(|_| ()).map_err(|e| Error::Unavailable {
                service: format!("smtp {}", self.server),
                reason: "the alert email could not be sent".to_owned(),
                response: None,
                source: Some(Box::new(e)),
            })
        }
    }
}

#[cfg(feature = "chat")]
pub use chat::ChatWebhookNotifier;

#[cfg(feature = "chat")]
mod chat {
    use std::fmt;

    use async_trait::async_trait;
    use jilo_core::{Alert, Notifier, Result};
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    use super::alert_text;
    use crate::http::{self, CallKind, RetryPolicy};

    /// Posts alerts as `{"text": …}` to a chat webhook (Slack, Mattermost, Lark/Feishu custom
    /// bots with the same shape). The URL is a secret (it is the credential).
    pub struct ChatWebhookNotifier {
        url: SecretString,
        http: reqwest::Client,
    }

    impl fmt::Debug for ChatWebhookNotifier {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ChatWebhookNotifier(***)")
        }
    }

    impl ChatWebhookNotifier {
        /// Posts to this webhook URL: an http(s) URL, else [`Error::InvalidInput`](jilo_core::Error::InvalidInput) on
        /// `JILO_ALERT_WEBHOOK` (the URL itself is never shown: it is the credential).
        pub fn new(url: impl Into<String>) -> Result<Self> {
            let url = url.into();
            jilo_core::config::http_url("JILO_ALERT_WEBHOOK", &url)?;
            Ok(Self {
                url: SecretString::from(url),
                http: http::client(std::time::Duration::from_secs(10))?,
            })
        }

        /// `JILO_ALERT_WEBHOOK` (required).
        pub fn from_env() -> Result<Self> {
            Self::new(http::required_env(
                "JILO_ALERT_WEBHOOK",
                "set it to the chat webhook URL",
            )?)
        }
    }

    #[async_trait]
    impl Notifier for ChatWebhookNotifier {
        async fn notify(&self, alert: &Alert) -> Result<()> {
            let (subject, body) = alert_text(alert);
            let payload = json!({"text": format!("*{subject}*\n{body}")});
            // Sent again only when surely not delivered (a refused connection, a 429).
            http::send(
                "chat webhook",
                CallKind::PaidStart,
                &RetryPolicy::default(),
                |_| false,
                |f| f.into_error("chat webhook"),
                || self.http.post(self.url.expose_secret()).json(&payload),
            )
            .await
            .map(|_| ())
        }
    }
}
