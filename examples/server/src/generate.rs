//! Generation (the seed's flow 2): start a job with its credits held, the providers' webhooks,
//! the user's videos with the stored file streamed (with `Range`), live progress over SSE, and
//! cancel.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use jilo::{
    AspectRatio, ErrorKind, Job, JobEvent, JobId, JobState, MediaStore, SubmissionKey,
    VideoRequest, WebhookDelivery,
};
use serde::{Deserialize, Serialize};

use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson};
use crate::i18n::{Lang, Msg};
use crate::AppState;

/// `POST /api/generate`'s body.
#[derive(Debug, Deserialize)]
pub struct GenerateBody {
    /// What to make (10 to 500 characters).
    pub prompt: String,
    /// jilo's model id (`kling-t2v`, `veo3`, …).
    pub model: String,
    /// Seconds.
    pub duration: u32,
    /// `16:9` (default), `9:16` or `1:1`.
    #[serde(default)]
    pub aspect_ratio: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// The id.
    pub id: String,
    /// `queued` … `completed`, `failed`, `timed_out`, `cancelled`.
    pub state: &'static str,
    /// 0 to 100.
    pub progress: u8,
    /// A short stage description.
    pub stage: Option<String>,
    /// The prompt.
    pub prompt: String,
    /// The model.
    pub model: String,
    /// Seconds.
    pub duration: u32,
    /// The ratio.
    pub aspect_ratio: &'static str,
    /// Credits held or charged.
    pub credits: i64,
    /// Where the stored video plays, once completed.
    pub video_url: Option<String>,
    /// Its size in bytes.
    pub video_bytes: Option<u64>,
    /// Why it failed, in the user's language, when it did.
    pub message: Option<String>,
    /// The language-free reason code of a failure.
    pub failure_code: Option<&'static str>,
    /// When it was made, RFC 3339.
    pub created_at: String,
}

impl JobView {
    /// The view of `job` for a reader of `lang`.
    pub fn of(job: &Job, lang: Lang) -> Self {
        let (message, failure_code) = match job.state {
            JobState::Failed if job.failed_for_service() => (
                Some(Msg::ServiceUnavailable.render(lang)),
                Some("service_unavailable"),
            ),
            JobState::Failed => (
                Some(match lang {
                    Lang::Zh => "生成失败，积分已退回".to_owned(),
                    Lang::En => "The video could not be made; the credits were returned".to_owned(),
                }),
                Some("generation_failed"),
            ),
            JobState::TimedOut => (
                Some(match lang {
                    Lang::Zh => "生成超时（15分钟未完成），已为你提供一次免费重试".to_owned(),
                    Lang::En => {
                        "The video did not arrive in 15 minutes; one free retry was granted"
                            .to_owned()
                    }
                }),
                Some("timed_out"),
            ),
            _ => (None, None),
        };
        Self {
            id: job.id.to_string(),
            state: job.state.as_str(),
            progress: job.progress,
            stage: job.stage.clone(),
            prompt: job.request.prompt.clone(),
            model: job.request.model.clone(),
            duration: job.request.duration_secs,
            aspect_ratio: job.request.aspect_ratio.as_str(),
            credits: job.credits,
            video_url: (job.state == JobState::Completed && job.output.is_some())
                .then(|| format!("/api/videos/{}/content", job.id)),
            video_bytes: job.output.as_ref().and_then(|o| o.bytes),
            message,
            failure_code,
            created_at: crate::rfc3339(job.created_at),
        }
    }
}

/// `POST /api/generate`: holds the credits and hands the job to a provider. 402 with the
/// available credits, 422 naming the field, 429 at the daily cap, 503 with the seed's
/// wording when no provider can serve it (the credits are back by then).
pub async fn generate(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response, ApiError> {
    let mut request = VideoRequest::new(body.prompt, body.model, body.duration);
    if let Some(ratio) = body.aspect_ratio.as_deref() {
        request = request.with_aspect_ratio(ratio.parse::<AspectRatio>()?);
    }
    let id = state.studio().generate(&user, request).await?;
    let job = state.studio().job(&id).await?;
    if job.failed_for_service() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            Msg::ServiceUnavailable,
        )
        .with("job", id.to_string()));
    }
    let lang = Lang::from_headers(&headers);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job": JobView::of(&job, lang) })),
    )
        .into_response())
}

/// `GET /api/models`: the models on offer (each once, as its first provider offers it), with
/// their durations, ratios and prices in credits.
pub async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let mut seen = std::collections::HashSet::new();
    let models: Vec<serde_json::Value> = state
        .studio()
        .models()
        .into_iter()
        .filter(|(_, m)| seen.insert(m.id.clone()))
        .map(|(_, m)| {
            let policy = state.studio().policy();
            let prices: Vec<serde_json::Value> = m
                .durations
                .iter()
                .filter_map(|d| {
                    policy
                        .pricing
                        .credits_for(&m, *d)
                        .map(|credits| serde_json::json!({ "duration": d, "credits": credits }))
                })
                .collect();
            serde_json::json!({
                "id": m.id,
                "durations": m.durations,
                "aspect_ratios": m.aspect_ratios.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "prices": prices,
            })
        })
        .collect();
    Json(serde_json::json!({ "models": models }))
}

/// `POST /api/webhooks/{provider}/{job}/{attempt}`: a provider's delivery, verified on the raw
/// bytes. 401 for a bad signature, 404 for an unknown provider or job; either changes nothing.
pub async fn provider_webhook(
    State(state): State<AppState>,
    Path((provider, job, attempt)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = match SubmissionKey::from_route(&job, &attempt) {
        Ok(k) => k,
        Err(_) => return ApiError::not_found().into_response(),
    };
    let delivery = WebhookDelivery::from_http(&headers, body).for_submission(key);
    match state
        .studio()
        .handle_webhook(&provider.as_str().into(), &delivery)
        .await
    {
        Ok(outcome) => (
            StatusCode::OK,
            Json(serde_json::json!({ "state": outcome.state.as_str() })),
        )
            .into_response(),
        Err(e) if e.kind() == ErrorKind::Unauthorized => {
            tracing::warn!(provider, error = %e, "a webhook was refused");
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", Msg::BadSignature)
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/videos?limit=N`'s query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// At most this many (1 to 100, default 20).
    pub limit: Option<usize>,
}

/// `GET /api/videos`: the user's jobs, newest first.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let lang = Lang::from_headers(&headers);
    let jobs = state.studio().jobs_for_user(&user, limit).await?;
    let views: Vec<JobView> = jobs.iter().map(|j| JobView::of(j, lang)).collect();
    Ok(Json(serde_json::json!({ "videos": views })))
}

/// The user's job, or 404 (also for another user's).
async fn own_job(state: &AppState, user: &jilo::UserId, id: &str) -> Result<Job, ApiError> {
    Ok(state.studio().job_for(user, &JobId::new(id)).await?)
}

/// `GET /api/videos/{id}`.
pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = own_job(&state, &user, &id).await?;
    Ok(Json(
        serde_json::json!({ "video": JobView::of(&job, Lang::from_headers(&headers)) }),
    ))
}

/// A `Range` that asks for nothing of the file (416).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A byte range of a `size`-byte file (RFC 9110 §14): `bytes=a-b`, `bytes=a-`, `bytes=-n`.
/// `Ok(None)` is the whole file: no header, or one that is not a valid single range (several
/// ranges, bad syntax, a last position before the first), which a server ignores. `Err` is a
/// valid range that asks for nothing of this file (416).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let Ok(n) = end.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        return Ok(Some((size.saturating_sub(n), size - 1)));
    }
    let Ok(a) = start.parse::<u64>() else {
        return Ok(None);
    };
    let b = if end.is_empty() {
        u64::MAX
    } else {
        match end.parse::<u64>() {
            Ok(b) if b >= a => b,
            _ => return Ok(None),
        }
    };
    if a >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some((a, b.min(size - 1))))
}

/// `GET /api/videos/{id}/content`: the stored video, whole or the asked `Range` (206).
pub async fn content(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, &user, &id).await?;
    let Some(output) = job.output.filter(|_| job.state == JobState::Completed) else {
        return Err(ApiError::not_found());
    };
    let info = state.media.info(&output.key).await?;
    let size = info.bytes;
    let range = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let content_type = info
        .content_type
        .or(output.content_type)
        .unwrap_or_else(|| "video/mp4".into());
    let (status, start, len) = match parse_range(range, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        Err(Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let stream = state.media.read_from(&output.key, start).await?;
    let limited = stream.scan(len, |left, chunk| {
        if *left == 0 {
            return futures::future::ready(None);
        }
        let out = match chunk {
            Ok(mut bytes) => {
                let keep = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes.truncate(keep);
                *left -= keep as u64;
                Ok(bytes)
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        futures::future::ready(Some(out))
    });
    let mut response = Response::new(Body::from_stream(limited));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1)) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// An SSE event for a job change: `id` is the job's version, so a reconnecting client's
/// `Last-Event-ID` resumes after what it saw.
pub fn sse_event(e: &JobEvent, lang: Lang, job: Option<&Job>) -> Event {
    let mut data = serde_json::json!({
        "state": e.state.as_str(),
        "progress": e.progress,
        "stage": e.stage,
        "version": e.version,
        "at": humantime::format_rfc3339_millis(e.at.to_system()).to_string(),
    });
    if let Some(view) = job.map(|j| JobView::of(j, lang)) {
        data["video"] = serde_json::to_value(view).unwrap_or_default();
    }
    Event::default()
        .id(e.version.to_string())
        .event("job")
        .data(data.to_string())
}

async fn finished_job(state: &AppState, id: &JobId, version: u64) -> Option<Job> {
    let cell = {
        let mut finished = state.finished.lock().ok()?;
        if finished.len() > 1024 {
            finished.clear();
        }
        finished.entry((id.clone(), version)).or_default().clone()
    };
    // A failed read is not kept: the next watcher reads again.
    cell.get_or_try_init(|| async { state.studio().job(id).await })
        .await
        .ok()
        .cloned()
}

/// `GET /api/jobs/{id}/events`: the job's state, progress % and stage as they change, ending
/// after a terminal state (with the finished job). Resumes after `Last-Event-ID`; a client that
/// saw the end already gets 204, which tells a browser's `EventSource` to stop reconnecting.
pub async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, &user, &id).await?;
    let lang = Lang::from_headers(&headers);
    let seen: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if job.state.is_terminal() && seen >= job.version {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let changes = state.studio().subscribe(&job.id).await?;
    let shared = state.clone();
    let stopping = state.shutdown.clone().cancelled_owned();
    let stream = changes
        .take_until(stopping)
        .filter(move |e| futures::future::ready(e.version > seen))
        .then(move |e| {
            let state = shared.clone();
            async move {
                // The last event carries the finished job (its video URL or its message).
                let finished = if e.state.is_terminal() {
                    finished_job(&state, &e.job, e.version).await
                } else {
                    None
                };
                Ok::<_, Infallible>(sse_event(&e, lang, finished.as_ref()))
            }
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `POST /api/jobs/{id}/cancel`: refunded when the provider will not bill; 409 when it is too
/// late (the job goes on).
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = state.studio().cancel(&user, &JobId::new(id)).await?;
    Ok(Json(
        serde_json::json!({ "job": JobView::of(&job, Lang::from_headers(&headers)) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::{parse_range, Unsatisfiable};

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(Unsatisfiable));
        // Not a valid range: ignored, the whole file.
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=-"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-5"), 100), Ok(None));
    }
}
