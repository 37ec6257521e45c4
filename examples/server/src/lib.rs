//! jilo-server: the host app built on jilo, as a team would copy it. An axum server with the
//! seed's endpoints: accounts and sessions, paid generation with live progress over SSE, the
//! providers' and Stripe's webhooks, credits and their history, plans and checkout, system
//! status for the maintenance banner, and health checks. Every part runs on its real service
//! when its key is set (the README's configuration table) and on `jilo-sim` otherwise.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = jilo_server::Config::from_env_and_args(std::env::args().skip(1))?;
//! let listener = tokio::net::TcpListener::bind(config.addr).await?;
//! let state = jilo_server::AppState::build(config, None).await?;
//! jilo_server::serve(state, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
pub mod error;
pub mod generate;
pub mod i18n;
pub mod parts;
pub mod publish;
pub mod system;

use std::future::Future;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderName;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use app::{AppState, StartError};
pub use config::Config;
pub use error::ApiError;

/// A time as RFC 3339, to the second.
pub fn rfc3339(t: jilo::Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system()).to_string()
}

/// A request's span: its id, method and path. Never the query string: an OAuth callback's
/// carries its code and state.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The page: one static file, plain JavaScript, no build step.
const PAGE: &str = include_str!("../static/index.html");

async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(PAGE)
}

/// Every route, with request ids, request logs (secrets' headers hidden), the body limit, the
/// timeout and JSON errors in the request's language.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let config = state.config().clone();
    Router::new()
        .route("/api/auth/signup", post(auth::signup))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/google", get(auth::google))
        .route("/api/auth/google/callback", get(auth::google_callback))
        .route("/api/me", get(auth::me))
        .route("/", get(page))
        .route("/api/models", get(generate::models))
        .route("/api/generate", post(generate::generate))
        .route("/api/videos", get(generate::list))
        .route("/api/videos/{id}", get(generate::get))
        .route("/api/videos/{id}/content", get(generate::content))
        .route("/api/jobs/{id}/events", get(generate::events))
        .route("/api/jobs/{id}/cancel", post(generate::cancel))
        .route(
            "/api/webhooks/{provider}/{job}/{attempt}",
            post(generate::provider_webhook),
        )
        .route("/api/quota", get(system::quota))
        .route("/api/quota/history", get(system::history))
        .route("/api/plans", get(billing::plans))
        .route("/api/billing/checkout", post(billing::checkout))
        .route("/api/webhooks/stripe", post(billing::stripe_webhook))
        .route("/billing/checkout/{session}", get(billing::simulated_page))
        .route(
            "/billing/checkout/{session}/pay",
            post(billing::simulated_pay),
        )
        .route("/api/discover/search", post(publish::search))
        .route("/api/discover/prompt", post(publish::prompt))
        .route("/api/youtube/connect", post(publish::connect))
        .route("/api/youtube/callback", get(publish::callback))
        .route("/api/youtube/channels", get(publish::channels))
        .route(
            "/api/ai/optimize-metadata",
            post(publish::optimize_metadata),
        )
        .route("/api/publish/youtube", post(publish::publish))
        .route("/api/publish/{id}", get(publish::get))
        .route("/api/publish/{id}/events", get(publish::events))
        .route("/api/admin/grant", post(system::admin_grant))
        .route("/api/system/status", get(system::status))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .fallback(|| async { ApiError::not_found() })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(middleware::from_fn(error::localize))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
            HeaderName::from_static("stripe-signature"),
        ]))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves until `shutdown` resolves, running the Studio's worker beside the routes when the
/// settings say so. On shutdown the live SSE streams end, requests in flight finish, and the
/// worker hands its jobs back (their leases lapse; the next start, or another process, resumes
/// them).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.shutdown.clone();
    let worker = state.config().run_worker.then(|| {
        let studio = state.studio().clone();
        let stop = stopping.clone();
        tokio::spawn(async move { studio.run(stop.cancelled_owned()).await })
    });
    let app = router(state);
    let stop = stopping.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
            stop.cancel();
        })
        .await;
    stopping.cancel();
    if let Some(worker) = worker {
        let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    }
    served
}
