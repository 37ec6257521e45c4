//! The chat-webhook notifier posts what an admin needs; neither notifier shows a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jilo_core::{Alert, AlertKind, Notifier, Timestamp};
use jilo_providers::notify::{ChatWebhookNotifier, EmailNotifier};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn alert() -> Alert {
    Alert {
        kind: AlertKind::ProviderOutOfFunds {
            provider: "suchuang".into(),
        },
        detail: "suchuang account is out of funds (HTTP 200: 余额不足)".into(),
        at: Timestamp::from_millis(1_796_000_000_000),
    }
}

#[tokio::test]
async fn the_chat_webhook_gets_the_provider_what_to_do_and_when() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/T000/B000/secret-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let url = format!("{}/hooks/T000/B000/secret-token", server.uri());
    let chat = ChatWebhookNotifier::new(url).unwrap();
    chat.notify(&alert()).await.unwrap();
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    let text = sent["text"].as_str().unwrap();
    assert!(
        text.contains("suchuang") && text.contains("top up its account"),
        "{text}"
    );
    assert!(text.contains("When: ") && text.contains("2026"), "{text}");
    assert!(!format!("{chat:?}").contains("secret-token"));

    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    let err = ChatWebhookNotifier::new(format!("{}/hooks/secret-token", failing.uri()))
        .unwrap()
        .notify(&alert())
        .await
        .unwrap_err();
    assert!(
        !format!("{err} {err:?}").contains("secret-token"),
        "{err:?}"
    );
}

#[test]
fn the_smtp_password_never_shows() {
    let email = EmailNotifier::new(
        "smtp://alerts:hunter2@mail.example:587",
        "a@b.c",
        "admin@b.c",
    )
    .unwrap();
    let shown = format!("{email:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("mail.example:587"),
        "{shown}"
    );
    let err = EmailNotifier::new("ftp://alerts:hunter2@x", "a@b.c", "admin@b.c").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(EmailNotifier::new("smtp://mail.example", "not an address", "admin@b.c").is_err());
}
