//! The seed's incident, end to end: 速创 answers out of funds, the job completes on FAL (its
//! webhook delivered to the job-named URL and verified with Ed25519), exactly one alert email
//! reaches an SMTP server on loopback (a real SMTP conversation), and the ledger shows one
//! hold and one settle. A second job goes straight to FAL, with no second email.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use jilo::providers::fal::FalProvider;
use jilo::providers::notify::EmailNotifier;
use jilo::providers::suchuang::SuchuangProvider;
use jilo::store::{SqlStore, StoreUrl};
use jilo::{
    AspectRatio, Grant, JobState, Policy, Pricing, ProviderId, QuotaStore, Studio, SubmissionKey,
    Timestamp, UserId, VideoRequest, WebhookDelivery,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A small SMTP server: greets, answers EHLO, MAIL, RCPT, DATA (keeping each message) and
/// QUIT as RFC 5321 has it.
async fn smtp_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write
                    .write_all(b"220 localhost ESMTP test\r\n")
                    .await
                    .unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-localhost\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "DATA" => {
                            write
                                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                                .await
                                .unwrap();
                            let mut message = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                message.push_str(&l);
                                message.push('\n');
                            }
                            kept.lock().unwrap().push(message);
                            b"250 OK queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 Bye\r\n").await;
                            break;
                        }
                        _ => b"502 Command not implemented\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://{addr}"), mails)
}

fn sqlite_url() -> StoreUrl {
    let dir = std::env::temp_dir().join("jilo-root-tests");
    std::fs::create_dir_all(&dir).unwrap();
    StoreUrl::SqliteFile(
        dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()))
            .to_string_lossy()
            .into_owned(),
    )
}

/// FAL's webhook for a request, signed as fal signs, at the URL naming the job's attempt.
fn fal_webhook(signer: &SigningKey, request_id: &str, route: &str) -> WebhookDelivery {
    let body = format!(
        "{{\"error\": null, \"gateway_request_id\": \"{request_id}\", \"payload\": {{\"video\": {{\"content_type\": \"video/mp4\", \"url\": \"https://v3.fal.media/files/{request_id}.mp4\"}}}}, \"request_id\": \"{request_id}\", \"status\": \"OK\"}}"
    );
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let signature = hex::encode(
        signer
            .sign(format!("{request_id}\nuser-1\n{ts}\n{digest}").as_bytes())
            .to_bytes(),
    );
    let mut tail = route.rsplit('/');
    let (attempt, job) = (tail.next().unwrap(), tail.next().unwrap());
    WebhookDelivery::new(
        vec![
            ("x-fal-webhook-request-id".into(), request_id.into()),
            ("x-fal-webhook-user-id".into(), "user-1".into()),
            ("x-fal-webhook-timestamp".into(), ts.to_string()),
            ("x-fal-webhook-signature".into(), signature),
        ],
        body.into_bytes(),
    )
    .for_submission(SubmissionKey::from_route(job, attempt).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_funds_at_suchuang_completes_on_fal_with_one_alert_email() {
    let (smtp_url, mails) = smtp_server().await;
    let suchuang_api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/async/video_veo3.1_fast"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": 400, "msg": "账户余额不足，请充值"})),
        )
        .expect(1)
        .mount(&suchuang_api)
        .await;
    let fal_api = MockServer::start().await;
    let signer = SigningKey::from_bytes(&[7; 32]);
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.verifying_key().as_bytes())
        }]})))
        .mount(&fal_api)
        .await;
    for n in 1..=2 {
        Mock::given(method("POST"))
            .and(path("/fal-ai/veo3"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"request_id": format!("fal-{n}")})),
            )
            .up_to_n_times(1)
            .mount(&fal_api)
            .await;
    }

    let store = Arc::new(SqlStore::open(&sqlite_url()).await.unwrap());
    let studio = Studio::builder()
        .provider(Arc::new(
            SuchuangProvider::new("sc-key")
                .unwrap()
                .with_base_url(suchuang_api.uri())
                .unwrap(),
        ))
        .provider(Arc::new(
            FalProvider::new("fal-key")
                .unwrap()
                .with_queue_url(fal_api.uri(), None)
                .unwrap()
                .with_jwks_url(format!("{}/.well-known/jwks.json", fal_api.uri()))
                .unwrap()
                .with_user_id("user-1"),
        ))
        .store(store.clone())
        .notifier(Arc::new(
            EmailNotifier::new(&smtp_url, "jilo <alerts@jilo.test>", "admin@jilo.test").unwrap(),
        ))
        .policy(Policy {
            pricing: Pricing::new().with_price("veo3", 8, 15),
            webhook_base_url: Some("https://host.example/webhooks".into()),
            ..Policy::default()
        })
        .build()
        .unwrap();
    let user = UserId::new("creator");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    let request = VideoRequest::new("A lantern festival over a river at night", "veo3", 8)
        .with_aspect_ratio(AspectRatio::Landscape);

    let id = studio.generate(&user, request.clone()).await.unwrap();
    let job = studio.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Submitted);
    assert_eq!(
        job.provider(),
        Some(&ProviderId::new("fal")),
        "failed over to FAL"
    );
    assert_eq!(job.provider_request_id.as_deref(), Some("fal-1"));
    let fal_submit = &fal_api.received_requests().await.unwrap()[0];
    let hook = fal_submit
        .url
        .query_pairs()
        .find(|(k, _)| k == "fal_webhook")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(
        hook,
        format!("https://host.example/webhooks/fal/{id}/{}", job.attempts)
    );

    let out = studio
        .handle_webhook(&"fal".into(), &fal_webhook(&signer, "fal-1", &hook))
        .await
        .unwrap();
    assert!(out.applied);
    studio.tick().await.unwrap();
    let done = studio.job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        done.video_url.as_deref(),
        Some("https://v3.fal.media/files/fal-1.mp4")
    );

    // A second job goes straight to FAL: 速创 is cooling, and no second email goes out.
    let second = studio.generate(&user, request).await.unwrap();
    assert_eq!(
        studio.job(&second).await.unwrap().provider(),
        Some(&ProviderId::new("fal"))
    );
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "exactly one alert email: {mails:?}");
    assert!(
        mails[0].contains("suchuang") && mails[0].contains("top up"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("To: admin@jilo.test"), "{}", mails[0]);

    let history = store.history(&user).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["grant", "hold", "settle", "hold"],
        "one hold and one settle for the first job"
    );
    let b = store.balance(&user).await.unwrap();
    assert_eq!((b.available, b.held, b.spent), (70, 15, 15));
}
