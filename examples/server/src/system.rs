//! Credits (`/api/quota`), operations (`/api/admin/grant`, `/api/system/status`, health) and
//! the seed's maintenance banner's source.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jilo::{Grant, GrantOutcome, GrantReason, HistoryCursor, HistoryQuery, QuotaStore, UserId};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson};
use crate::i18n::{Lang, Msg};
use crate::parts::BalanceRead;
use crate::AppState;

/// `GET /api/quota`: the balance, expiring credits by date, and what was spent this month.
pub async fn quota(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let s = state.studio().credit_statement(&user).await?;
    let expiring: Vec<Value> = s
        .expiring
        .iter()
        .map(|e| json!({ "credits": e.credits, "expires_at": crate::rfc3339(e.expires_at) }))
        .collect();
    Ok(Json(json!({
        "available": s.balance.available,
        "held": s.balance.held,
        "spent": s.balance.spent,
        "granted": s.balance.granted,
        "expiring": expiring,
        "lasting": s.lasting,
        "spent_this_month": s.spent_this_period,
        "period_start": crate::rfc3339(s.period_start),
    })))
}

/// `GET /api/quota/history`'s query.
#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    /// Entries per page (1 to 100, default 20).
    pub limit: Option<u32>,
    /// The previous page's `next`.
    pub before: Option<i64>,
}

/// `GET /api/quota/history`: one page of the ledger, newest first; `next` continues it.
pub async fn history(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(p): Query<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let mut query = HistoryQuery::newest(p.limit.unwrap_or(20).clamp(1, 100));
    if let Some(before) = p.before {
        query = query.after(HistoryCursor::before_seq(before));
    }
    let page = state.studio().credit_history(&user, &query).await?;
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "entry": e.kind,
                "credits": e.credits,
                "at": crate::rfc3339(e.at),
            })
        })
        .collect();
    Ok(Json(json!({
        "entries": entries,
        "next": page.next.and_then(|c| serde_json::to_value(c).ok()),
    })))
}

/// `POST /api/admin/grant`'s body.
#[derive(Debug, Deserialize)]
pub struct AdminGrant {
    /// The user's id, or
    pub user: Option<String>,
    /// their email.
    pub email: Option<String>,
    /// Credits to add, positive.
    pub credits: i64,
    /// Makes the grant once however often it is sent.
    pub idempotency_key: String,
}

fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = || ApiError::new(StatusCode::FORBIDDEN, "forbidden", Msg::Forbidden);
    let expected = state.config().admin_token.as_ref().ok_or_else(forbidden)?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(forbidden)?;
    // Digests compared: the time taken says nothing about the token.
    if Sha256::digest(given.trim().as_bytes())
        == Sha256::digest(expected.expose_secret().as_bytes())
    {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// `POST /api/admin/grant` (bearer `JILO_ADMIN_TOKEN`): an operator's adjustment, once per key.
pub async fn admin_grant(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AdminGrant>,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let user = match (&body.user, &body.email) {
        (Some(id), _) => UserId::new(id.clone()),
        (None, Some(email)) => {
            state
                .accounts()
                .by_email(&email.trim().to_lowercase())
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(ApiError::not_found)?
                .id
        }
        (None, None) => {
            return Err(ApiError::field(
                "user",
                Msg::InvalidField {
                    field: "user".into(),
                    reason: "name the user or their email".into(),
                },
            ))
        }
    };
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 {
        return Err(ApiError::field(
            "idempotency_key",
            Msg::InvalidField {
                field: "idempotency_key".into(),
                reason: "1 to 200 characters".into(),
            },
        ));
    }
    let outcome = state
        .store
        .grant(&Grant {
            user: user.clone(),
            credits: body.credits,
            reason: GrantReason::Adjustment,
            key: format!("admin:{}", body.idempotency_key.trim()),
            at: state.now(),
            expires_at: None,
        })
        .await?;
    let balance = state.studio().balance(&user).await?;
    Ok(Json(json!({
        "user": user.to_string(),
        "granted": outcome == GrantOutcome::Granted,
        "available": balance.available,
    })))
}

const BALANCE_TTL: Duration = Duration::from_secs(30);

/// `GET /api/system/status`: each provider healthy, cooling or out of funds (read from its
/// balance where it has one), and whether the page shows the maintenance banner: no provider
/// can serve.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let lang = Lang::from_headers(&headers);
    let balances = {
        let mut cache = state.status.0.lock().await;
        match cache.as_ref().filter(|(at, _)| at.elapsed() < BALANCE_TTL) {
            Some((_, b)) => b.clone(),
            None => {
                let read: Vec<BalanceRead> = state
                    .studio()
                    .check_balances()
                    .await
                    .into_iter()
                    .map(|(p, b)| {
                        (
                            p.to_string(),
                            b.as_ref().map(|b| b.minor),
                            b.map(|b| b.currency),
                        )
                    })
                    .collect();
                *cache = Some((Instant::now(), read.clone()));
                read
            }
        }
    };
    let cooling = state
        .studio()
        .alert_store()
        .cooling_providers(state.now())
        .await?;
    let providers: Vec<Value> = balances
        .iter()
        .map(|(id, minor, _currency)| {
            let status = if minor.is_some_and(|m| m <= 0) {
                "out_of_funds"
            } else if cooling.iter().any(|c| c.as_str() == id) {
                "cooling"
            } else {
                "healthy"
            };
            // Balances are the operator's business: the page reads only the status.
            json!({ "id": id, "status": status })
        })
        .collect();
    let maintenance = !providers.iter().any(|p| p["status"] == "healthy");
    Ok(Json(json!({
        "providers": providers,
        "maintenance": maintenance,
        "banner": maintenance.then(|| Msg::ServiceUnavailable.render(lang)),
    })))
}

/// `GET /metrics`: the library's metrics (`jilo_core::telemetry`) in the Prometheus text
/// format.
pub async fn metrics() -> Response {
    match crate::parts::prometheus() {
        Some(handle) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder").into_response(),
    }
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.accounts().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
