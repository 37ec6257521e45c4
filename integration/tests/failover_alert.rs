//! The seed's incident, end to end on the simulators of `jilo-sim`: 速创 answers out of funds,
//! the job completes on FAL (its webhook, signed by the simulator with Ed25519, delivered to
//! the job-named URL and verified against the simulator's JWKS), exactly one alert email
//! reaches an SMTP server on loopback (a real SMTP conversation), and the ledger shows one
//! hold and one settle. A second job goes straight to FAL, with no second email.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jilo::providers::fal::FalProvider;
use jilo::providers::notify::EmailNotifier;
use jilo::providers::suchuang::SuchuangProvider;
use jilo::store::{SqlStore, StoreUrl};
use jilo::{
    AspectRatio, Grant, JobState, Policy, Pricing, ProviderId, QuotaStore, Studio, SubmissionKey,
    Timestamp, UserId, VideoRequest, WebhookDelivery,
};
use jilo_sim::fal::FalSim;
use jilo_sim::suchuang::SuchuangSim;
use jilo_sim::Service;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

/// The host's webhook route, reduced to what the test needs: each delivery (path, headers,
/// body) arrives on a channel, answered 200.
async fn webhook_route() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<(String, String)>, Vec<u8>)>,
) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                                .collect();
                            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let _ = tx.send((path, headers, body));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_funds_at_suchuang_completes_on_fal_with_one_alert_email() {
    let (smtp_url, mails) = smtp_server().await;
    let suchuang = SuchuangSim::start().await.unwrap();
    suchuang
        .switches()
        .update(Service::Suchuang, |f| f.out_of_funds = true);
    let fal = FalSim::start().await.unwrap();
    let (hooks, mut deliveries) = webhook_route().await;

    let store = Arc::new(SqlStore::open(&sqlite_url()).await.unwrap());
    let studio = Studio::builder()
        .provider(Arc::new(
            SuchuangProvider::new(jilo_sim::suchuang::KEY)
                .unwrap()
                .with_base_url(&suchuang.url)
                .unwrap(),
        ))
        .provider(Arc::new(
            FalProvider::new(jilo_sim::fal::KEY)
                .unwrap()
                .with_queue_url(&fal.url, None)
                .unwrap()
                .with_jwks_url(fal.jwks_url())
                .unwrap()
                .with_user_id(jilo_sim::fal::USER_ID),
        ))
        .store(store.clone())
        .notifier(Arc::new(
            EmailNotifier::new(&smtp_url, "jilo <alerts@jilo.test>", "admin@jilo.test").unwrap(),
        ))
        .policy(Policy {
            pricing: Pricing::new().with_price("veo3", 8, 15),
            webhook_base_url: Some(hooks.clone()),
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
    let request_id = job.provider_request_id.clone().unwrap();
    assert_eq!(
        fal.lock().accepted,
        vec![request_id.clone()],
        "one FAL submit"
    );
    assert!(
        suchuang.lock().accepted.is_empty(),
        "nothing was taken at 速创"
    );
    assert_eq!(suchuang.lock().refused_out_of_funds, 1);
    assert_eq!(
        fal.lock().requests[&request_id].webhook.as_deref(),
        Some(format!("{hooks}/fal/{id}/{}", job.attempts).as_str())
    );

    // The simulator delivers its signed webhook to the job-named route; the host hands it on.
    let (path, headers, body) = tokio::time::timeout(Duration::from_secs(60), deliveries.recv())
        .await
        .expect("the simulator delivers the webhook")
        .unwrap();
    let mut tail = path.rsplit('/');
    let (attempt, job_id) = (tail.next().unwrap(), tail.next().unwrap());
    let delivery = WebhookDelivery::new(headers, body)
        .for_submission(SubmissionKey::from_route(job_id, attempt).unwrap());
    let out = studio
        .handle_webhook(&"fal".into(), &delivery)
        .await
        .unwrap();
    assert!(out.applied);
    studio.tick().await.unwrap();
    let done = studio.job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.video_url, Some(fal.video_url(&request_id)));

    // A second job goes straight to FAL: 速创 is cooling, and no second email goes out.
    let second = studio.generate(&user, request).await.unwrap();
    assert_eq!(
        studio.job(&second).await.unwrap().provider(),
        Some(&ProviderId::new("fal"))
    );
    assert_eq!(
        suchuang.lock().refused_out_of_funds,
        1,
        "the second job was not tried at 速创 again"
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
