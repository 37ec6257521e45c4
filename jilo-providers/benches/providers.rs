//! Provider figures, each beside its floor in the same run:
//! - FAL webhook verifications per second on one core (headers, timestamp window, SHA-256 of
//!   the body, Ed25519 against the cached keys, the body parsed) beside the bare cryptography
//!   (the SHA-256 and one Ed25519 verification) of the same deliveries;
//! - the shared HTTP layer's time per request against a local server beside a bare reqwest call.
//!
//! `cargo bench -p jilo-providers --features fal --bench providers`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use jilo_core::{VideoProvider, WebhookDelivery};
use jilo_providers::fal::FalProvider;
use jilo_providers::http::{self, CallKind, RetryPolicy};
use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DELIVERIES: usize = 20_000;
const REQUESTS: usize = 2_000;

fn delivery(key: &SigningKey, i: usize, ts: u64) -> WebhookDelivery {
    let id = format!("019d61ac-62e0-7893-bea6-{i:012}");
    let body = format!(
        "{{\"error\": null, \"gateway_request_id\": \"{id}\", \"payload\": {{\"seed\": 17454220438242315174, \"video\": {{\"content_type\": \"video/mp4\", \"file_size\": 4404019, \"url\": \"https://v3.fal.media/files/{i}/output.mp4\"}}}}, \"request_id\": \"{id}\", \"status\": \"OK\"}}"
    );
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let sig = key.sign(format!("{id}\nuser-1\n{ts}\n{digest}").as_bytes());
    WebhookDelivery::new(
        vec![
            ("x-fal-webhook-request-id".into(), id),
            ("x-fal-webhook-user-id".into(), "user-1".into()),
            ("x-fal-webhook-timestamp".into(), ts.to_string()),
            (
                "x-fal-webhook-signature".into(),
                hex::encode(sig.to_bytes()),
            ),
        ],
        body.into_bytes(),
    )
}

fn main() {
    // One core: a current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = SigningKey::from_bytes(&[3; 32]);
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519",
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
            }]})))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/ping"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "IN_QUEUE"})))
            .mount(&server)
            .await;
        let fal = FalProvider::new("k").unwrap().with_jwks_url(format!("{}/jwks", server.uri())).unwrap();
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let deliveries: Vec<WebhookDelivery> = (0..DELIVERIES).map(|i| delivery(&key, i, ts)).collect();
        fal.parse_webhook(&deliveries[0]).await.unwrap(); // keys fetched once

        println!("| what | per second | per item |");
        println!("|---|---:|---:|");
        for _ in 0..2 {
            let start = Instant::now();
            for d in &deliveries {
                fal.parse_webhook(d).await.unwrap();
            }
            let jilo = start.elapsed();
            let verifying = key.verifying_key();
            let start = Instant::now();
            for d in &deliveries {
                let digest = hex::encode(Sha256::digest(&d.body));
                let id = d.header("x-fal-webhook-request-id").unwrap();
                let message = format!("{id}\nuser-1\n{ts}\n{digest}");
                let sig = hex::decode(d.header("x-fal-webhook-signature").unwrap()).unwrap();
                let sig = Signature::from_slice(&sig).unwrap();
                verifying.verify(message.as_bytes(), &sig).unwrap();
            }
            let floor = start.elapsed();
            let row = |name: &str, d: Duration, n: usize| {
                println!(
                    "| {name} | {:.0} | {:.1} µs |",
                    n as f64 / d.as_secs_f64(),
                    d.as_secs_f64() * 1e6 / n as f64
                )
            };
            row("jilo FAL webhook verification + parse", jilo, DELIVERIES);
            row("floor: SHA-256 + Ed25519 verify alone", floor, DELIVERIES);
        }

        jilo_providers::http::install_crypto_provider();
        let client = reqwest::Client::new();
        let url = format!("{}/ping", server.uri());
        let policy = RetryPolicy::default();
        for _ in 0..2 {
            let start = Instant::now();
            for _ in 0..REQUESTS {
                let resp = http::send("bench", CallKind::Read, &policy, |_| false, |f| f.into_error("bench"), || client.get(&url))
                    .await
                    .unwrap();
                resp.text().await.unwrap();
            }
            let layer = start.elapsed();
            let start = Instant::now();
            for _ in 0..REQUESTS {
                client.get(&url).send().await.unwrap().text().await.unwrap();
            }
            let bare = start.elapsed();
            println!(
                "| HTTP layer GET, local server | {:.0} | {:.1} µs |",
                REQUESTS as f64 / layer.as_secs_f64(),
                layer.as_secs_f64() * 1e6 / REQUESTS as f64
            );
            println!(
                "| floor: bare reqwest GET | {:.0} | {:.1} µs |",
                REQUESTS as f64 / bare.as_secs_f64(),
                bare.as_secs_f64() * 1e6 / REQUESTS as f64
            );
        }
    });
}
