//! Plans and payment (the seed's flow 5): a Stripe Checkout for a plan, and Stripe's webhook
//! verified on the raw body (`Stripe-Signature`: v1 HMAC-SHA256 over `t.payload`, a five-minute
//! tolerance, any of several `v1` entries while a secret rotates). A completed checkout grants
//! the plan's month once, keyed by the payment, however often it is delivered; a forged or
//! stale event changes nothing. Without `STRIPE_SECRET_KEY` the checkout URL is a page of this
//! server that completes a simulated payment by sending itself the same signed event.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use jilo::{Grant, GrantOutcome, QuotaStore, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::accounts::Checkout;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson};
use crate::i18n::Msg;
use crate::AppState;

/// How long a bought plan's credits last.
pub const PLAN_MONTH: std::time::Duration = std::time::Duration::from_secs(31 * 86_400);

/// How old a signed event may be, in seconds (Stripe's libraries' default).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a `Stripe-Signature` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is missing or has no `t` or no `v1`.
    Malformed,
    /// No `v1` entry matches.
    Mismatch,
    /// Signed longer ago (or further ahead) than the tolerance.
    Stale,
}

/// Checks a `Stripe-Signature` header over the raw `payload` at `now_secs`: some `v1`
/// entry must be the HMAC-SHA256 of `{t}.{payload}` under `secret` (compared in constant time),
/// and `t` within [`TOLERANCE_SECS`] of now.
pub fn verify_signature(
    header: &str,
    payload: &[u8],
    secret: &SecretString,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => {
                if let Ok(bytes) = hex::decode(v) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = signatures.iter().any(|sig| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        mac.verify_slice(sig).is_ok()
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if (now_secs - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The `Stripe-Signature` header Stripe would send for `payload` signed at `t`.
pub fn sign(payload: &[u8], secret: &SecretString, t: i64) -> String {
    let hex = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(mut mac) => {
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("t={t},v1={hex}")
}

/// `GET /api/plans`.
pub async fn plans(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "plans": state.studio().plans() }))
}

/// `POST /api/billing/checkout`'s body.
#[derive(Debug, Deserialize)]
pub struct CheckoutBody {
    /// The plan's id.
    pub plan: String,
}

/// `POST /api/billing/checkout`: a Checkout Session for the plan; answers its URL.
pub async fn checkout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Json<Value>, ApiError> {
    let plan = state
        .studio()
        .plans()
        .iter()
        .find(|p| p.id == body.plan)
        .cloned()
        .ok_or_else(|| ApiError::field("plan", Msg::UnknownPlan))?;
    let public = state.config().public_url();
    let (session_id, url) = match &state.payments.api_key {
        None if !state.payments.simulated_allowed => {
            tracing::error!(
                "checkout refused: real providers are configured but STRIPE_SECRET_KEY is not"
            );
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payments_unavailable",
                Msg::PaymentsUnavailable,
            ));
        }
        None => {
            let id = format!("cs_sim_{}", uuid::Uuid::new_v4().simple());
            let url = format!("{public}/billing/checkout/{id}");
            (id, url)
        }
        Some(key) => {
            let form = [
                ("mode", "payment".to_owned()),
                ("success_url", format!("{public}/?checkout=success")),
                ("cancel_url", format!("{public}/?checkout=cancelled")),
                ("client_reference_id", user.to_string()),
                ("metadata[plan]", plan.id.clone()),
                ("line_items[0][quantity]", "1".to_owned()),
                (
                    "line_items[0][price_data][currency]",
                    plan.currency.to_lowercase(),
                ),
                (
                    "line_items[0][price_data][unit_amount]",
                    plan.price_minor.to_string(),
                ),
                (
                    "line_items[0][price_data][product_data][name]",
                    plan.name.clone(),
                ),
            ];
            let answer = state
                .http
                .post(format!("{}/v1/checkout/sessions", state.payments.api_url))
                .bearer_auth(key.expose_secret())
                .header(
                    "idempotency-key",
                    format!("checkout-{}", uuid::Uuid::new_v4()),
                )
                .form(&form)
                .send()
                .await
                .map_err(|e| ApiError::internal(format!("stripe: {}", e.without_url())))?;
            let status = answer.status();
            let session: Value = answer
                .json()
                .await
                .map_err(|e| ApiError::internal(format!("stripe: {}", e.without_url())))?;
            if !status.is_success() {
                return Err(ApiError::internal(format!(
                    "stripe refused the checkout: HTTP {status}, {}",
                    session["error"]["message"].as_str().unwrap_or("no message")
                )));
            }
            match (session["id"].as_str(), session["url"].as_str()) {
                (Some(id), Some(url)) => (id.to_owned(), url.to_owned()),
                _ => return Err(ApiError::internal("stripe answered no session id or url")),
            }
        }
    };
    state
        .accounts()
        .keep_checkout(
            &Checkout {
                session_id: session_id.clone(),
                user,
                plan: plan.id.clone(),
                amount_minor: plan.price_minor,
                currency: plan.currency.clone(),
                paid_event: None,
            },
            state.now(),
        )
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "session_id": session_id, "url": url })))
}

/// `POST /api/webhooks/stripe`: applies a completed checkout once.
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = state.now();
    match verify_signature(
        header,
        &body,
        state.payments.webhook_secret(),
        now.as_millis() / 1000,
    ) {
        Ok(()) => {}
        Err(SignatureError::Stale) => {
            tracing::warn!("a payment event outside the tolerance was refused");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "stale_event",
                Msg::StaleEvent,
            ));
        }
        Err(e) => {
            tracing::warn!(reason = ?e, "a payment event with a bad signature was refused");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_signature",
                Msg::BadSignature,
            ));
        }
    }
    let event: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Msg::BadBody {
                reason: e.to_string(),
            },
        )
    })?;
    let event_id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    let object = &event["data"]["object"];
    let completes = matches!(
        kind,
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
    );
    if event_id.is_empty() || !completes || object["payment_status"].as_str() != Some("paid") {
        return Ok(Json(json!({ "received": true, "applied": false })));
    }
    let accounts = state.accounts();
    if accounts
        .event_seen(event_id)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(Json(
            json!({ "received": true, "applied": false, "duplicate": true }),
        ));
    }
    let session_id = object["id"].as_str().unwrap_or_default();
    let Some(checkout) = accounts
        .checkout(session_id)
        .await
        .map_err(ApiError::internal)?
    else {
        tracing::warn!(
            session = session_id,
            "a completed checkout this server did not create"
        );
        return Ok(Json(json!({ "received": true, "applied": false })));
    };
    let Some(plan) = state
        .studio()
        .plans()
        .iter()
        .find(|p| p.id == checkout.plan)
        .cloned()
    else {
        return Err(ApiError::internal(format!(
            "checkout {session_id} names the retired plan {}",
            checkout.plan
        )));
    };
    // The payment, not the event, keys the grant: every event about one payment grants once.
    let payment_id = object["payment_intent"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or(session_id);
    // A month of the plan from the payment (the event's time: a late delivery does not
    // shorten it).
    let paid_at = event["created"]
        .as_i64()
        .filter(|s| *s > 0 && *s <= now.as_millis() / 1000)
        .map_or(now, |s| Timestamp::from_millis(s * 1000));
    let grant = Grant::purchase(checkout.user.clone(), plan.monthly_credits, payment_id, now)
        .expiring_at(paid_at.plus(PLAN_MONTH));
    let outcome = state.store.grant(&grant).await?;
    accounts
        .record_event(event_id, payment_id, session_id, now)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(user = %checkout.user, plan = %plan.id, ?outcome, "payment applied");
    Ok(Json(json!({
        "received": true,
        "applied": outcome == GrantOutcome::Granted,
        "duplicate": outcome == GrantOutcome::Duplicate,
    })))
}

/// The simulated checkout's event, as Stripe would send it.
pub fn completed_event(
    checkout: &Checkout,
    event_id: &str,
    payment_id: &str,
    at: Timestamp,
) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "created": at.as_millis() / 1000,
        "livemode": false,
        "data": { "object": {
            "id": checkout.session_id,
            "object": "checkout.session",
            "client_reference_id": checkout.user.to_string(),
            "metadata": { "plan": checkout.plan },
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
            "payment_intent": payment_id,
            "amount_total": checkout.amount_minor,
            "currency": checkout.currency.to_lowercase(),
        }}
    })
}

async fn unpaid_simulated(state: &AppState, session: &str) -> Result<Checkout, ApiError> {
    if !state.payments.simulated() {
        return Err(ApiError::not_found());
    }
    match state
        .accounts()
        .checkout(session)
        .await
        .map_err(ApiError::internal)?
    {
        Some(c) if c.paid_event.is_none() => Ok(c),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_checkout",
            Msg::UnknownCheckout,
        )),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /billing/checkout/{session}`: the simulated payment page (keyless only).
pub async fn simulated_page(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Html<String>, ApiError> {
    let c = unpaid_simulated(&state, &session).await?;
    let price = format!(
        "{}.{:02} {}",
        c.amount_minor / 100,
        c.amount_minor % 100,
        c.currency
    );
    Ok(Html(format!(
        "<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>模拟支付 · Simulated payment</title>\
         <style>body{{font:16px system-ui;max-width:28rem;margin:4rem auto;padding:0 1rem}}button{{font-size:1rem;padding:.6rem 1.4rem}}</style></head>\
         <body><h1>模拟支付 · Simulated payment</h1><p>套餐 Plan: <b>{plan}</b><br>金额 Amount: <b>{price}</b></p>\
         <p>No payment key is set: this page stands in for Stripe Checkout and sends this server the signed \
         <code>checkout.session.completed</code> event Stripe would.</p>\
         <form method=\"post\" action=\"/billing/checkout/{session}/pay\"><button id=\"pay\" type=\"submit\">支付 Pay</button></form>\
         <p><a href=\"/?checkout=cancelled\">取消 Cancel</a></p></body></html>",
        plan = html_escape(&c.plan),
        price = html_escape(&price),
        session = html_escape(&c.session_id),
    )))
}

/// `POST /billing/checkout/{session}/pay`: completes the simulated payment by delivering the
/// signed event to this server's webhook, then returns to the page.
pub async fn simulated_pay(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Response, ApiError> {
    let c = unpaid_simulated(&state, &session).await?;
    let now = state.now();
    // One payment per checkout: a double-clicked Pay sends two events about it, granted once.
    let event = completed_event(
        &c,
        &format!("evt_sim_{}", uuid::Uuid::new_v4().simple()),
        &format!("pi_sim_{}", c.session_id),
        now,
    );
    let payload = event.to_string();
    let signature = sign(
        payload.as_bytes(),
        state.payments.webhook_secret(),
        now.as_millis() / 1000,
    );
    let answer = state
        .http
        .post(format!(
            "{}/api/webhooks/stripe",
            state.config().public_url()
        ))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("delivering the simulated payment: {e}")))?;
    if !answer.status().is_success() {
        return Err(ApiError::internal(format!(
            "the simulated payment's webhook answered {}",
            answer.status()
        )));
    }
    Ok(Redirect::to("/?checkout=success").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn signatures_verify_rotate_and_expire() {
        let payload = br#"{"id":"evt_1"}"#;
        let s = secret("whsec_current");
        let header = sign(payload, &s, 1_000);
        assert_eq!(verify_signature(&header, payload, &s, 1_000), Ok(()));
        assert_eq!(verify_signature(&header, payload, &s, 1_300), Ok(()));
        assert_eq!(
            verify_signature(&header, payload, &s, 1_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(&header, b"{\"id\":\"evt_2\"}", &s, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, payload, &secret("whsec_other"), 1_000),
            Err(SignatureError::Mismatch)
        );
        // During rotation Stripe signs with both secrets: either one verifies.
        let old = sign(payload, &secret("whsec_old"), 1_000);
        let both = format!(
            "{old},v1={}",
            header.split("v1=").nth(1).unwrap_or_default()
        );
        assert_eq!(verify_signature(&both, payload, &s, 1_000), Ok(()));
        assert_eq!(
            verify_signature(&both, payload, &secret("whsec_old"), 1_000),
            Ok(())
        );
        assert_eq!(
            verify_signature("v1=00", payload, &s, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature("t=1000,v0=ab", payload, &s, 1_000),
            Err(SignatureError::Malformed)
        );
    }
}
