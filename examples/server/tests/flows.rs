//! The seed's flows over real HTTP against a server on loopback with every service simulated:
//! accounts, generation with its webhook and live progress, playback with `Range`, another
//! user's job, forged webhooks, Stripe's deliveries, credits, and the concurrency bar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jilo_server::billing;
use jilo_sim::Service;
use secrecy::SecretString;
use serde_json::{json, Value};
use support::{Db, Server};

const PROMPT: &str = "A fox running through snow at dusk";

fn kling(prompt: &str) -> Value {
    json!({ "prompt": prompt, "model": "kling-t2v", "duration": 5 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_rules_sessions_and_languages() {
    let server = Server::start(Db::Sqlite).await;
    let signup = |body: Value, lang: &'static str| {
        let req = server
            .http
            .post(server.at("/api/auth/signup"))
            .header("accept-language", lang)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let r = server
        .http
        .post(server.at("/api/auth/signup"))
        .json(
            &json!({ "email": "Ann@Example.com", "password": "secret123", "confirm": "secret123" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("jilo_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
    let token = body["token"].as_str().unwrap().to_owned();
    // The account opened with the seed's 100 credits, in the ledger as one signup grant.
    assert_eq!(server.available(&token).await, 100);
    let (_, history) = server.get(&token, "/api/quota/history").await;
    assert_eq!(history["entries"].as_array().unwrap().len(), 1);
    assert_eq!(history["entries"][0]["entry"]["reason"], "signup");

    // The seed's rules, each naming its field, in Chinese by default and English on request.
    let (s, e) = signup(
        json!({ "email": "ann@example.com", "password": "secret123", "confirm": "secret123" }),
        "zh-CN",
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("email_taken")));
    assert_eq!(e["error"]["message"], "邮箱已注册");
    let (s, e) = signup(
        json!({ "email": "ann@example.com", "password": "secret123", "confirm": "secret123" }),
        "en",
    )
    .await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (409, Some("This email is already registered"))
    );
    let (s, e) = signup(
        json!({ "email": "not-an-email", "password": "secret123", "confirm": "secret123" }),
        "en",
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("email")));
    let (s, e) = signup(
        json!({ "email": "bo@example.com", "password": "short1", "confirm": "short1" }),
        "zh",
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("password")));
    assert_eq!(e["error"]["message"], "密码至少8位，且须同时包含字母和数字");
    let (s, e) = signup(
        json!({ "email": "bo@example.com", "password": "onlyletters", "confirm": "onlyletters" }),
        "en",
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("password")));
    let (s, e) = signup(
        json!({ "email": "bo@example.com", "password": "secret123", "confirm": "secret124" }),
        "en",
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("confirm")));
    let (s, e) = signup(
        json!({ "email": "bo@example.com", "password": "secret123" }),
        "en",
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("confirm")));
    // None of the refused sign-ups made an account.
    let (s, _) = server
        .post(
            "",
            "/api/auth/login",
            json!({ "email": "bo@example.com", "password": "secret123" }),
        )
        .await;
    assert_eq!(s, 401);

    // The cookie alone is a session; without one the routes answer 401 in the error shape.
    let r = server
        .http
        .get(server.at("/api/me"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, e) = server.get("nonsense", "/api/quota").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // Login, then logout ends that session only.
    let login = |password: &'static str| {
        server.post(
            "",
            "/api/auth/login",
            json!({ "email": "ANN@example.com", "password": password }),
        )
    };
    let (s, body) = login("secret123").await;
    assert_eq!(s, 200);
    let second = body["token"].as_str().unwrap().to_owned();
    let r = server
        .http
        .post(server.at("/api/auth/logout"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(server.get(&second, "/api/me").await.0, 401);
    assert_eq!(server.get(&token, "/api/me").await.0, 200);
    // Logging in again granted nothing more.
    assert_eq!(server.available(&token).await, 100);

    // Five wrong passwords, then even the right one waits (429 with Retry-After).
    for _ in 0..5 {
        assert_eq!(login("wrong-pass1").await.0, 401);
    }
    let r = server
        .http
        .post(server.at("/api/auth/login"))
        .json(&json!({ "email": "ann@example.com", "password": "secret123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "too_many_attempts");

    // A burst of concurrent guesses: each one is counted before its password is checked, so
    // at most the five free ones (and one as the window opens) get through; then it waits.
    let burst = (0..10).map(|_| {
        server.post(
            "",
            "/api/auth/login",
            json!({ "email": "nobody@example.com", "password": "guess12345" }),
        )
    });
    let answers: Vec<u16> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(
        answers.iter().all(|s| *s == 401 || *s == 429),
        "{answers:?}"
    );
    let mut guessed = answers.iter().filter(|s| **s == 401).count();
    loop {
        let (s, _) = server
            .post(
                "",
                "/api/auth/login",
                json!({ "email": "nobody@example.com", "password": "guess12345" }),
            )
            .await;
        if s == 429 {
            break;
        }
        guessed += 1;
        assert!(guessed <= 6, "{guessed} guesses went through: {answers:?}");
    }

    // A body over the limit and an unknown route keep the error shape. The
    // server answers 413 before it has read the body and drops that
    // connection, so the oversized request goes on a client of its own: a
    // shared pool could hand the half-written connection to the next request.
    let r = jilo::providers::http::client_builder()
        .unwrap()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(server.at("/api/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    let (s, e) = server.get(&token, "/api/nothing-here").await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_watch_play_back_and_keep_other_users_out() {
    let server = Server::start(Db::Sqlite).await;
    let alice = server.signup("alice@example.com").await;
    let bob = server.signup("bob@example.com").await;

    // Bad input names its field and holds nothing.
    for (body, field) in [
        (
            json!({ "prompt": "short", "model": "kling-t2v", "duration": 5 }),
            "prompt",
        ),
        (
            json!({ "prompt": PROMPT, "model": "no-such-model", "duration": 5 }),
            "model",
        ),
        (
            json!({ "prompt": PROMPT, "model": "kling-t2v", "duration": 7 }),
            "duration",
        ),
        (
            json!({ "prompt": PROMPT, "model": "kling-t2v", "duration": 5, "aspect_ratio": "4:3" }),
            "aspect_ratio",
        ),
        (
            json!({ "prompt": PROMPT, "model": "kling-t2v", "duration": "five" }),
            "duration",
        ),
    ] {
        let (s, e) = server.post(&alice, "/api/generate", body).await;
        assert_eq!((s, e["error"]["field"].as_str()), (422, Some(field)), "{e}");
    }
    assert_eq!(server.available(&alice).await, 100);

    let (s, body) = server.post(&alice, "/api/generate", kling(PROMPT)).await;
    assert_eq!(s, 202, "{body}");
    let job = body["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["job"]["credits"], 15);
    let (_, q) = server.get(&alice, "/api/quota").await;
    assert_eq!(
        (q["available"].as_i64(), q["held"].as_i64()),
        (Some(85), Some(15))
    );

    // Another user sees none of it.
    for path in [
        format!("/api/videos/{job}"),
        format!("/api/videos/{job}/content"),
        format!("/api/jobs/{job}/events"),
    ] {
        let (s, e) = server.get(&bob, &path).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (s, _) = server
        .post(&bob, &format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!(s, 404);
    let (_, listed) = server.get(&bob, "/api/videos").await;
    assert_eq!(listed["videos"].as_array().unwrap().len(), 0);

    // A forged webhook for the job is refused and changes nothing.
    let before = server
        .state
        .studio()
        .job(&job.as_str().into())
        .await
        .unwrap();
    let r = server
        .http
        .post(server.at(&format!("/api/webhooks/fal/{job}/1")))
        .header("content-type", "application/json")
        .header("x-fal-webhook-request-id", before.provider_request_id.clone().unwrap_or_default())
        .header("x-fal-webhook-user-id", jilo_sim::fal::USER_ID)
        .header("x-fal-webhook-timestamp", (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).to_string())
        .header("x-fal-webhook-signature", "00".repeat(64))
        .body(json!({ "request_id": before.provider_request_id, "status": "OK", "payload": { "video": { "url": "https://evil.example/x.mp4" } } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_signature"
    );
    let after = server
        .state
        .studio()
        .job(&job.as_str().into())
        .await
        .unwrap();
    assert_ne!(
        after.video_url.as_deref(),
        Some("https://evil.example/x.mp4")
    );
    let r = server
        .http
        .post(server.at(&format!("/api/webhooks/no-such-provider/{job}/1")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The live progress: state, progress and stage until completed, versions rising, the
    // last event carrying the finished video.
    let events = server.events(&alice, &job, None).await;
    assert!(events.len() >= 2, "{events:?}");
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let progress: Vec<u64> = events
        .iter()
        .map(|e| e.data["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("job"));
    assert_eq!(last.data["state"], "completed");
    assert_eq!(last.data["progress"], 100);
    let video_url = last.data["video"]["video_url"].as_str().unwrap().to_owned();
    let size = last.data["video"]["video_bytes"].as_u64().unwrap();
    // The webhook that finished it was FAL's own, signed, over HTTP to this server.
    assert!(!server.sims.fal.lock().webhooks_delivered.is_empty());
    assert!(
        server
            .state
            .studio()
            .job(&job.as_str().into())
            .await
            .unwrap()
            .webhook
    );

    // Resuming after the second-to-last event gives exactly the last one.
    let resumed = server
        .events(&alice, &job, Some(versions[versions.len() - 2]))
        .await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].id, last.id);
    // After the end, a resuming client is told to stop (204: EventSource does not reconnect).
    let r = server
        .http
        .get(server.at(&format!("/api/jobs/{job}/events")))
        .bearer_auth(&alice)
        .header("last-event-id", versions[versions.len() - 1].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Charged once: 15 spent, nothing held.
    let (_, q) = server.get(&alice, "/api/quota").await;
    assert_eq!(
        (
            q["available"].as_i64(),
            q["held"].as_i64(),
            q["spent_this_month"].as_i64()
        ),
        (Some(85), Some(0), Some(15))
    );

    // The stored video plays back, whole and by range.
    let whole = server
        .http
        .get(server.at(&video_url))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    let whole = whole.bytes().await.unwrap();
    assert_eq!(whole.len() as u64, size);
    assert_eq!(&whole[4..8], b"ftyp");
    for (range, from, to) in [
        ("bytes=0-99".to_owned(), 0, 99),
        (format!("bytes={}-", size - 10), size - 10, size - 1),
        ("bytes=-256".to_owned(), size - 256, size - 1),
        ("bytes=1000-1999".to_owned(), 1000, 1999),
    ] {
        let r = server
            .http
            .get(server.at(&video_url))
            .bearer_auth(&alice)
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes {from}-{to}/{size}")
        );
        let part = r.bytes().await.unwrap();
        assert_eq!(&part[..], &whole[from as usize..=to as usize], "{range}");
    }
    let r = server
        .http
        .get(server.at(&video_url))
        .bearer_auth(&alice)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{size}")
    );

    // The library's metrics, in the Prometheus format.
    let metrics = server.http.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    for needle in [
        "jilo_job_transitions_total{state=\"completed\",provider=\"fal\"}",
        "jilo_provider_submits_total{provider=\"fal\",outcome=\"accepted\"}",
        "jilo_webhooks_total{provider=\"fal\",outcome=\"applied\"}",
        "jilo_webhooks_total{provider=\"fal\",outcome=\"refused\"}",
        "jilo_credits_total{movement=\"settled\"}",
        "jilo_provider_call_seconds_count{provider=\"fal\",call=\"submit\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }

    // The video list and the job agree.
    let (_, listed) = server.get(&alice, "/api/videos").await;
    assert_eq!(listed["videos"][0]["id"], job.as_str());
    assert_eq!(listed["videos"][0]["state"], "completed");
    // A finished job cannot be cancelled.
    let (s, e) = server
        .post(&alice, &format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("not_allowed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_can_serve_is_a_503_with_the_credits_back() {
    let server = Server::start(Db::Sqlite).await;
    let user = server.signup("carol@example.com").await;
    server
        .sims
        .switches
        .update(Service::Suchuang, |f| f.out_of_funds = true);
    server
        .sims
        .switches
        .update(Service::Fal, |f| f.out_of_funds = true);
    let (s, e) = server
        .post(
            &user,
            "/api/generate",
            json!({ "prompt": PROMPT, "model": "veo3", "duration": 8 }),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{e}"
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("⚠️ 服务暂时不可用\n\nAPI服务商账户余额不足，管理员正在处理中。"));
    // Held and refused: every credit is back, the ledger shows the hold and its refund.
    assert_eq!(server.available(&user).await, 100);
    let (_, history) = server.get(&user, "/api/quota/history").await;
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "hold", "grant"]);
    // The job shows the same message in English to an English reader.
    let job = e["error"]["job"].as_str().unwrap();
    let r = server
        .http
        .get(server.at(&format!("/api/videos/{job}")))
        .bearer_auth(&user)
        .header("accept-language", "en-GB,en;q=0.8")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["video"]["failure_code"], "service_unavailable");
    assert!(v["video"]["message"]
        .as_str()
        .unwrap()
        .contains("temporarily unavailable"));
    // The status the maintenance banner reads: every provider is cooling.
    let (s, status) = server.get(&user, "/api/system/status").await;
    assert_eq!(s, 200);
    assert_eq!(status["maintenance"], true, "{status}");
    assert!(status["banner"]
        .as_str()
        .unwrap()
        .contains("服务暂时不可用"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_events_credit_once_and_forged_or_stale_ones_change_nothing() {
    let server = Server::start(Db::Sqlite).await;
    let user = server.signup("dan@example.com").await;
    let (s, plans) = server.get(&user, "/api/plans").await;
    assert_eq!(s, 200);
    assert_eq!(plans["plans"][0]["id"], "basic");
    let (s, e) = server
        .post(&user, "/api/billing/checkout", json!({ "plan": "gold" }))
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("plan")));
    let (s, checkout) = server
        .post(&user, "/api/billing/checkout", json!({ "plan": "basic" }))
        .await;
    assert_eq!(s, 200, "{checkout}");
    let session = checkout["session_id"].as_str().unwrap().to_owned();

    let stored = server
        .state
        .accounts()
        .checkout(&session)
        .await
        .unwrap()
        .unwrap();
    let now = server.state.now();
    let event = billing::completed_event(&stored, "evt_test_1", "pi_test_1", now);
    let payload = event.to_string();
    let secret = server.state.payments.webhook_secret().clone();
    let deliver = |payload: String, signature: String| {
        let req = server
            .http
            .post(server.at("/api/webhooks/stripe"))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(payload);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let t = now.as_millis() / 1000;
    // Forged (another secret), stale (signed 10 minutes ago), and tampered after signing.
    let forged = billing::sign(
        payload.as_bytes(),
        &SecretString::from("whsec_forged".to_owned()),
        t,
    );
    let (s, e) = deliver(payload.clone(), forged).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("bad_signature"))
    );
    let stale = billing::sign(payload.as_bytes(), &secret, t - 600);
    let (s, e) = deliver(payload.clone(), stale).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("stale_event")));
    let good = billing::sign(payload.as_bytes(), &secret, t);
    let tampered = payload.replace("\"amount_total\":4900", "\"amount_total\":1");
    assert_ne!(tampered, payload);
    let (s, _) = deliver(tampered, good.clone()).await;
    assert_eq!(s, 400);
    let (s, _) = deliver(payload.clone(), String::new()).await;
    assert_eq!(s, 400);
    assert_eq!(server.available(&user).await, 100);

    // Delivered three times (Stripe retries): credited once.
    for n in 0..3 {
        let (s, body) = deliver(payload.clone(), good.clone()).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["applied"], n == 0, "{body}");
    }
    // Another event about the same payment grants nothing either.
    let again = billing::completed_event(&stored, "evt_test_2", "pi_test_1", now).to_string();
    let (s, body) = deliver(again.clone(), billing::sign(again.as_bytes(), &secret, t)).await;
    assert_eq!((s, body["applied"].as_bool()), (200, Some(false)));
    assert_eq!(server.available(&user).await, 150);
    let (_, q) = server.get(&user, "/api/quota").await;
    // The plan's month: its credits expire at the month's end.
    assert_eq!(q["expiring"][0]["credits"], 50, "{q}");

    // The keyless checkout page completes a payment the same way, over HTTP.
    let (_, second) = server
        .post(&user, "/api/billing/checkout", json!({ "plan": "basic" }))
        .await;
    let url = second["url"].as_str().unwrap();
    assert!(url.starts_with(&server.url), "{url}");
    let page = server.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"pay\""));
    let paid = server.http.post(format!("{url}/pay")).send().await.unwrap();
    assert_eq!(paid.status(), 303);
    assert_eq!(server.available(&user).await, 200);
    // A paid checkout cannot be paid again.
    assert_eq!(
        server
            .http
            .post(format!("{url}/pay"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(server.available(&user).await, 200);
    // A double-clicked Pay: two payments sent at once about one checkout, granted once.
    let (_, third) = server
        .post(&user, "/api/billing/checkout", json!({ "plan": "basic" }))
        .await;
    let pay = format!("{}/pay", third["url"].as_str().unwrap());
    let (a, b) = tokio::join!(server.http.post(&pay).send(), server.http.post(&pay).send());
    assert!(a.unwrap().status().is_redirection() || b.unwrap().status().is_redirection());
    assert_eq!(server.available(&user).await, 250);

    // The operator's grant: bearer token required, once per key.
    let r = server
        .http
        .post(server.at("/api/admin/grant"))
        .bearer_auth("wrong")
        .json(&json!({ "email": "dan@example.com", "credits": 5, "idempotency_key": "k" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        server.admin_grant("dan@example.com", 5, "k").await["granted"],
        true
    );
    assert_eq!(
        server.admin_grant("dan@example.com", 5, "k").await["granted"],
        false
    );
    assert_eq!(server.available(&user).await, 255);
    let (_, page1) = server.get(&user, "/api/quota/history?limit=2").await;
    assert_eq!(page1["entries"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_i64().unwrap();
    let (_, page2) = server
        .get(&user, &format!("/api/quota/history?limit=2&before={next}"))
        .await;
    assert_eq!(page2["entries"].as_array().unwrap().len(), 2);
    assert!(
        page2["entries"][0]["seq"].as_i64().unwrap() < page1["entries"][1]["seq"].as_i64().unwrap()
    );
}

/// The seed's concurrency bar: 10 generations' worth of credits, 100 concurrent requests:
/// exactly 10 accepted, 90 refused with 402, nothing left.
async fn concurrency_bar(db: Db) {
    let server = Server::start(db).await;
    let user = server.signup("eve@example.com").await;
    // kling-t2v 5 s costs 15: 100 from sign-up and 50 more make ten.
    server.admin_grant("eve@example.com", 50, "top-up").await;
    assert_eq!(server.available(&user).await, 150);
    let requests = (0..100).map(|i| {
        server.post(
            &user,
            "/api/generate",
            kling(&format!("{PROMPT}, take {i}")),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 402)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        accepted,
        10,
        "{:?}",
        answers
            .iter()
            .filter(|(s, _)| *s != 202 && *s != 402)
            .collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 90);
    assert!(refused
        .iter()
        .all(|e| e["error"]["code"] == "insufficient_credits"
            && e["error"]["available"].as_i64().is_some_and(|a| a < 15)));
    // In the seed's words: "配额不足，本月剩余X个".
    let message = refused[0]["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("配额不足，本月剩余"), "{message}");
    let (_, q) = server.get(&user, "/api/quota").await;
    assert_eq!(q["available"], 0, "{q}");
    assert_eq!(
        q["held"].as_i64().unwrap() + q["spent"].as_i64().unwrap(),
        150
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_generations_on_sqlite() {
    concurrency_bar(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_generations_on_postgres() {
    let Some(url) = support::postgres::database("jilo_server_bar").await else {
        return;
    };
    concurrency_bar(Db::Postgres(url.clone())).await;
    support::postgres::drop(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_write_a_prompt_generate_connect_and_publish() {
    let server = Server::start(Db::Sqlite).await;
    let user = server.signup("fay@example.com").await;

    // Trends across the three platforms, best score first, the top ones analysed.
    let (s, e) = server
        .post(
            &user,
            "/api/discover/search",
            json!({ "keyword": "AI tools", "platforms": ["myspace"] }),
        )
        .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("platforms")));
    let (s, found) = server
        .post(
            &user,
            "/api/discover/search",
            json!({ "keyword": "AI tools" }),
        )
        .await;
    assert_eq!(s, 200, "{found}");
    let videos = found["videos"].as_array().unwrap();
    assert!(videos.len() >= 10, "{}", videos.len());
    let scores: Vec<i64> = videos
        .iter()
        .map(|v| v["score"]["total"].as_i64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(videos[0]["analysis"]["hook"].is_string(), "{}", videos[0]);
    assert_eq!(found["failures"].as_array().unwrap().len(), 0);
    let platforms: std::collections::HashSet<&str> = videos
        .iter()
        .map(|v| v["video"]["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms.len(), 3, "{platforms:?}");

    // A prompt from the top video, then its generation to completion.
    let (s, written) = server
        .post(
            &user,
            "/api/discover/prompt",
            json!({ "video": videos[0], "duration": 5 }),
        )
        .await;
    assert_eq!(s, 200, "{written}");
    let prompt = written["prompt"].as_str().unwrap().to_owned();
    assert!((10..=500).contains(&prompt.chars().count()), "{prompt}");
    let (s, body) = server.post(&user, "/api/generate", kling(&prompt)).await;
    assert_eq!(s, 202, "{body}");
    let job = body["job"]["id"].as_str().unwrap().to_owned();
    let events = server.events(&user, &job, None).await;
    assert_eq!(events.last().unwrap().data["state"], "completed");

    // Publishing before a channel is connected: the seed's "请先绑定YouTube账号".
    let publish = json!({
        "video_id": job, "title": "A fox in the snow", "description": "Made with jilo",
        "tags": ["fox", "snow"], "privacy": "public",
    });
    let (s, e) = server
        .post(&user, "/api/publish/youtube", publish.clone())
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("youtube_not_connected"))
    );
    assert_eq!(e["error"]["message"], "请先绑定YouTube账号");

    // Connect: the consent URL, Google's redirect back to the callback, the channel kept.
    let (s, connect) = server.post(&user, "/api/youtube/connect", json!({})).await;
    assert_eq!(s, 200);
    let consent = server
        .http
        .get(connect["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let back = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&server.at("/api/youtube/callback?")),
        "{back}"
    );
    // Opened in another user's browser, the callback is refused (their channel would land on
    // this account).
    let (s, stolen) = server.post(&user, "/api/youtube/connect", json!({})).await;
    assert_eq!(s, 200);
    let stolen = server
        .http
        .get(stolen["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let stolen_back = stolen.headers()["location"].to_str().unwrap().to_owned();
    let other = server.signup("hal@example.com").await;
    let refused = server
        .http
        .get(&stolen_back)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        server.get(&other, "/api/youtube/channels").await.1["channels"],
        json!([])
    );
    let done = server
        .http
        .get(&back)
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert!(done.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/?youtube=connected"));
    // The state is taken once: the same callback again is refused.
    assert_eq!(
        server
            .http
            .get(&back)
            .bearer_auth(&user)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let (_, channels) = server.get(&user, "/api/youtube/channels").await;
    assert_eq!(
        channels["channels"].as_array().unwrap().len(),
        1,
        "{channels}"
    );
    assert_eq!(
        channels["channels"][0]["channel_id"],
        jilo_sim::google::CHANNEL_ID
    );
    assert!(!channels.to_string().contains("token"), "{channels}");

    // Metadata from the creative model.
    let (s, meta) = server
        .post(
            &user,
            "/api/ai/optimize-metadata",
            json!({ "video_id": job, "keywords": ["AI tools"] }),
        )
        .await;
    assert_eq!(s, 200, "{meta}");
    assert_eq!(meta["metadata"]["titles"].as_array().unwrap().len(), 3);

    // Watch the upload's progress while publishing.
    let watcher = {
        let req = server
            .http
            .get(server.at(&format!("/api/publish/{job}/events")))
            .bearer_auth(&user);
        tokio::spawn(async move { support::read_sse(req.send().await.unwrap()).await })
    };
    let (s, published) = server.post(&user, "/api/publish/youtube", publish).await;
    assert_eq!(s, 200, "{published}");
    assert_eq!(published["publication"]["state"], "published");
    let url = published["publication"]["url"].as_str().unwrap().to_owned();
    assert!(url.contains("watch?v=") || url.contains("youtu"), "{url}");
    let progress = watcher.await.unwrap();
    let last = progress.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("upload"));
    assert_eq!(last.data["state"], "published");
    assert_eq!(last.data["percent"], 100);
    let percents: Vec<u64> = progress
        .iter()
        .map(|e| e.data["percent"].as_u64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    // The bytes YouTube holds are the stored video's.
    let video_url = events.last().unwrap().data["video"]["video_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = server
        .http
        .get(server.at(&video_url))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    {
        let google = server.sims.google.state.lock().unwrap();
        let upload = google
            .sessions
            .values()
            .find(|u| u.video.is_some())
            .unwrap();
        assert_eq!(upload.received, stored.to_vec());
        assert_eq!(upload.metadata["snippet"]["title"], "A fox in the snow");
    }
    let (s, read) = server.get(&user, &format!("/api/publish/{job}")).await;
    assert_eq!(s, 200);
    assert_eq!(read["publication"]["url"].as_str(), Some(url.as_str()));
    // Another user cannot read it.
    let other = server.signup("gil@example.com").await;
    assert_eq!(
        server.get(&other, &format!("/api/publish/{job}")).await.0,
        404
    );
}

/// Follows "sign in with Google" as a browser does; answers the session cookie.
async fn google_sign_in(server: &Server) -> String {
    let r = server
        .http
        .get(server.at("/api/auth/google"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let consent = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(consent.contains("scope=openid+"), "{consent}");
    let nonce = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        nonce.starts_with("jilo_oauth=") && nonce.contains("HttpOnly"),
        "{nonce}"
    );
    let nonce = nonce.split(';').next().unwrap().to_owned();
    let r = server.http.get(&consent).send().await.unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&server.at("/api/auth/google/callback?")),
        "{back}"
    );
    let r = server
        .http
        .get(&back)
        .header("cookie", &nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"));
    // The state is taken once: the same callback again is refused.
    assert_eq!(server.http.get(&back).send().await.unwrap().status(), 400);
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_google_finds_or_opens_the_account() {
    let server = Server::start(Db::Sqlite).await;
    let me = |cookie: String| {
        let req = server
            .http
            .get(server.at("/api/me"))
            .header("cookie", cookie);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // A new Google account: opened with the starting credits.
    let first = google_sign_in(&server).await;
    let user = me(first.clone()).await;
    assert_eq!(user["user"]["email"], jilo_sim::google::ACCOUNT_EMAIL);
    let r = server
        .http
        .get(server.at("/api/quota"))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["available"], 100);
    // Again: the same account, nothing granted twice.
    let second = google_sign_in(&server).await;
    assert_ne!(first, second);
    assert_eq!(me(second.clone()).await["user"]["id"], user["user"]["id"]);
    let r = server
        .http
        .get(server.at("/api/quota/history"))
        .header("cookie", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    {
        let google = server.sims.google.state.lock().unwrap();
        // Nothing is revoked: that would end the user's whole grant, channel included.
        assert!(google.revoked.is_empty());
        assert!(google.violations.is_empty(), "{:?}", google.violations);
    }

    // A callback opened in another browser (without the nonce the sign-in set) is refused:
    // nobody can be signed in to an account they did not choose.
    let r = server
        .http
        .get(server.at("/api/auth/google"))
        .send()
        .await
        .unwrap();
    let consent = r.headers()["location"].to_str().unwrap().to_owned();
    let r = server.http.get(&consent).send().await.unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    let r = server.http.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("set-cookie").is_none());

    // An account opened with a password for the same email is not taken over by a Google
    // sign-in: its owner logs in with the password.
    let other = Server::start(Db::Sqlite).await;
    let token = other.signup(jilo_sim::google::ACCOUNT_EMAIL).await;
    let r = other
        .http
        .get(other.at("/api/auth/google"))
        .send()
        .await
        .unwrap();
    let nonce = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let consent = r.headers()["location"].to_str().unwrap().to_owned();
    let r = other.http.get(&consent).send().await.unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    let r = other
        .http
        .get(&back)
        .header("cookie", nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "password_account"
    );
    assert_eq!(other.available(&token).await, 100);
    // A callback with no code (the user declined) changes nothing and goes back to the page.
    let r = other
        .http
        .get(other.at("/api/auth/google/callback?error=access_denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}
