//! Discovery and publishing (the seed's flows 3 and 4): trending videos scored across
//! platforms, a prompt from one, a YouTube channel connected by OAuth (PKCE), metadata
//! suggested by the creative model, and a durable upload with its progress on SSE.

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use jilo::providers::tokens::SealedToken;
use jilo::providers::youtube::PendingAuthorization;
use jilo::{
    ChannelStore, DiscoverQuery, DiscoveredVideo, JobId, JobState, Platform, Privacy,
    ProgressReporter, Publication, PublicationState, PublishMetadata,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::PendingOAuth;
use crate::auth::{CallbackQuery, CurrentUser};
use crate::error::{ApiError, ApiJson};
use crate::i18n::Msg;
use crate::AppState;

/// `POST /api/discover/search`'s body.
#[derive(Debug, Deserialize)]
pub struct SearchBody {
    /// What to search for.
    pub keyword: String,
    /// `tiktok`, `youtube_shorts`, `instagram_reels` (default: all three).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Fewest views.
    pub min_views: Option<u64>,
    /// Most views.
    pub max_views: Option<u64>,
    /// Published within this many days (default 30).
    pub days: Option<u32>,
}

fn platform(name: &str) -> Result<Platform, ApiError> {
    [
        Platform::TikTok,
        Platform::YouTubeShorts,
        Platform::InstagramReels,
    ]
    .into_iter()
    .find(|p| p.as_str() == name.trim())
    .ok_or_else(|| {
        ApiError::field(
            "platforms",
            Msg::InvalidField {
                field: "platforms".into(),
                reason: format!("`{name}` is not tiktok, youtube_shorts or instagram_reels"),
            },
        )
    })
}

/// `POST /api/discover/search`: trending videos across the platforms, best score first, the
/// top ten analysed; a platform that failed is listed with why, the others still answer.
pub async fn search(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Value>, ApiError> {
    let platforms = if body.platforms.is_empty() {
        vec![
            Platform::TikTok,
            Platform::YouTubeShorts,
            Platform::InstagramReels,
        ]
    } else {
        body.platforms
            .iter()
            .map(|p| platform(p))
            .collect::<Result<Vec<_>, _>>()?
    };
    let query = DiscoverQuery::new(body.keyword, platforms)
        .with_views(body.min_views, body.max_views)
        .within_days(body.days.unwrap_or(30))
        .analyze_top(10);
    let found = state.studio().discover(&query).await?;
    let failures: Vec<Value> = found
        .failures
        .iter()
        .map(|f| json!({ "platform": f.platform.as_str(), "message": f.message }))
        .collect();
    Ok(Json(json!({
        "videos": found.videos,
        "failures": failures,
        "from_cache": found.from_cache,
        "fetched_at": crate::rfc3339(found.fetched_at),
    })))
}

/// `POST /api/discover/prompt`'s body: a video of a search's answer, as it came.
#[derive(Debug, Deserialize)]
pub struct PromptBody {
    /// The discovered video.
    pub video: DiscoveredVideo,
    /// The seconds the prompt is written for (default 5).
    pub duration: Option<u32>,
}

/// `POST /api/discover/prompt`: a generation prompt written from a trending video.
pub async fn prompt(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
    ApiJson(body): ApiJson<PromptBody>,
) -> Result<Json<Value>, ApiError> {
    let prompt = state
        .studio()
        .prompt_from(&body.video, body.duration.unwrap_or(5))
        .await?;
    Ok(Json(json!({ "prompt": prompt })))
}

const OAUTH_OWNER: &str = "oauth-pending";

/// `POST /api/youtube/connect`: the consent URL to send the browser to. The PKCE verifier
/// waits sealed in the database for the callback.
pub async fn connect(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let redirect = format!("{}/api/youtube/callback", state.config().public_url());
    let pending = state.youtube.oauth().authorize(&redirect)?;
    let sealed = state.cipher.seal(pending.verifier(), OAUTH_OWNER)?;
    state
        .accounts()
        .keep_oauth(
            pending.state(),
            &PendingOAuth {
                purpose: "youtube".into(),
                user: Some(user),
                url: pending.url.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                verifier: sealed.to_string(),
                binding: None,
            },
            state.now(),
        )
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "url": pending.url })))
}

/// `GET /api/youtube/callback`: finishes the connection (the state is taken once) and sends
/// the browser back to the page.
pub async fn callback(
    State(state): State<AppState>,
    CurrentUser(signed_in): CurrentUser,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let (Some(returned), Some(code)) = (q.state.as_deref(), q.code.as_deref()) else {
        tracing::info!(
            error = q.error.as_deref().unwrap_or("none"),
            "a channel connection was declined"
        );
        return Ok(Redirect::to("/?youtube=declined").into_response());
    };
    let Some(kept) = state
        .accounts()
        .take_oauth(returned, state.now())
        .await
        .map_err(ApiError::internal)?
        .filter(|p| p.purpose == "youtube")
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "oauth_state",
            Msg::GoogleSignInFailed,
        ));
    };
    // The channel goes to the user who asked for it, and only in their own browser: a consent
    // URL sent to someone else cannot land their channel on the sender's account.
    let user = kept.user.clone().ok_or_else(ApiError::sign_in)?;
    if user != signed_in {
        tracing::warn!(user = %signed_in, "a channel callback came to another user's session");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            Msg::Forbidden,
        ));
    }
    let sealed = SealedToken::from_str(&kept.verifier)?;
    let verifier = state.cipher.open(&sealed, OAUTH_OWNER)?;
    let pending = PendingAuthorization::restore(
        kept.url,
        kept.redirect_uri,
        SecretString::from(returned.to_owned()),
        verifier,
    );
    let channel = state
        .youtube
        .connect_channel(&user, &pending, returned, code)
        .await?;
    Ok(Redirect::to(&format!(
        "/?youtube=connected&channel={}",
        url::form_urlencoded::byte_serialize(channel.channel_id.as_bytes()).collect::<String>()
    ))
    .into_response())
}

/// `GET /api/youtube/channels`: the user's connected channels (never their tokens).
pub async fn channels(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let channels: Vec<Value> = state
        .store
        .channels(&user)
        .await?
        .iter()
        .map(|c| {
            json!({
                "channel_id": c.channel_id,
                "channel_name": c.channel_name,
                "connected_at": crate::rfc3339(c.connected_at),
            })
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

/// `POST /api/ai/optimize-metadata`'s body.
#[derive(Debug, Deserialize)]
pub struct OptimizeBody {
    /// The finished video (its job id).
    pub video_id: String,
    /// Keywords to work in.
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// `POST /api/ai/optimize-metadata`: three titles, a description and tags for a video.
pub async fn optimize_metadata(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<OptimizeBody>,
) -> Result<Json<Value>, ApiError> {
    let suggestion = state
        .studio()
        .suggest_metadata(&user, &JobId::new(body.video_id), body.keywords)
        .await?;
    Ok(Json(json!({ "metadata": suggestion })))
}

/// `POST /api/publish/youtube`'s body.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    /// The finished video (its job id).
    pub video_id: String,
    /// The channel; default the user's first.
    pub channel_id: Option<String>,
    /// The title.
    pub title: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `public`, `unlisted` or `private` (default `private`).
    pub privacy: Option<Privacy>,
    /// YouTube's category id (default 22, People & Blogs).
    pub category_id: Option<String>,
}

/// The bytes YouTube holds: all of them once published, else what it confirmed.
fn uploaded_of(p: &Publication) -> u64 {
    match p.state {
        PublicationState::Published => p.total_bytes,
        _ => p.session.as_ref().map_or(0, |s| s.confirmed),
    }
}

/// A publication as the API shows it.
pub fn publication_view(p: &Publication) -> Value {
    json!({
        "video_id": p.job.to_string(),
        "channel_id": p.channel_id,
        "state": p.state.as_str(),
        "url": p.url,
        "youtube_id": p.video_id,
        "uploaded_bytes": uploaded_of(p),
        "total_bytes": p.total_bytes,
        "attempts": p.attempts,
        "notes": p.notes,
        "stats": p.stats.as_ref().map(|(s, at)| json!({
            "views": s.views, "likes": s.likes, "comments": s.comments, "read_at": crate::rfc3339(*at),
        })),
    })
}

/// The channel a request names, or the user's first; 409 with the seed's "请先绑定YouTube账号"
/// when there is none.
async fn channel_for(
    state: &AppState,
    user: &jilo::UserId,
    named: Option<&str>,
) -> Result<String, ApiError> {
    let not_connected = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "youtube_not_connected",
            Msg::YouTubeNotConnected,
        )
    };
    match named {
        Some(id) => Ok(state
            .store
            .channel(user, id)
            .await?
            .ok_or_else(not_connected)?
            .channel_id),
        None => Ok(state
            .store
            .channels(user)
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_connected)?
            .channel_id),
    }
}

/// How long `POST /api/publish/youtube` waits for the upload before answering 202 (the rest
/// is followed on `/api/publish/{id}/events`).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// `POST /api/publish/youtube`: publishes a finished video. Bad metadata, no channel, an
/// unfinished video or YouTube's quota are answered at once; an upload that takes longer than
/// a few seconds is answered 202 and goes on (durably: a restart resumes it).
pub async fn publish(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Response, ApiError> {
    let job_id = JobId::new(body.video_id.clone());
    let job = state.studio().job_for(&user, &job_id).await?;
    if job.state != JobState::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_allowed",
            Msg::NotAllowed {
                reason: format!("the video is {}, not completed", job.state.as_str()),
            },
        ));
    }
    let channel = channel_for(&state, &user, body.channel_id.as_deref()).await?;
    let metadata = PublishMetadata {
        title: body.title,
        description: body.description,
        tags: body.tags,
        category_id: Some(body.category_id.unwrap_or_else(|| "22".into())),
        privacy: body.privacy.unwrap_or(Privacy::Private),
        publish_at: None,
        playlist_id: None,
        thumbnail_key: None,
    };
    metadata.validate()?;
    let studio = state.studio().clone();
    let (task_user, task_channel) = (user.clone(), channel.clone());
    let upload = tokio::spawn(async move {
        studio
            .publish(
                &task_user,
                &job_id,
                &task_channel,
                metadata,
                ProgressReporter::none(),
            )
            .await
    });
    match tokio::time::timeout(ANSWER_WITHIN, upload).await {
        Ok(Ok(Ok(p))) => Ok((
            StatusCode::OK,
            Json(json!({ "publication": publication_view(&p) })),
        )
            .into_response()),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(join)) => Err(ApiError::internal(join)),
        Err(_) => {
            let p = state.studio().publication(&job.id, &channel).await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "publication": p.as_ref().map(publication_view) })),
            )
                .into_response())
        }
    }
}

/// `?channel=` of the publication routes.
#[derive(Debug, Deserialize)]
pub struct ChannelQuery {
    /// The channel; default the user's first.
    pub channel: Option<String>,
}

async fn own_publication(
    state: &AppState,
    user: &jilo::UserId,
    id: &str,
    channel: Option<&str>,
) -> Result<(JobId, String, Option<Publication>), ApiError> {
    let job = state.studio().job_for(user, &JobId::new(id)).await?;
    let channel = channel_for(state, user, channel).await?;
    let p = state.studio().publication(&job.id, &channel).await?;
    Ok((job.id, channel, p))
}

/// `GET /api/publish/{id}`: the publication of a video: state, URL, statistics.
pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<ChannelQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, _, p) = own_publication(&state, &user, &id, q.channel.as_deref()).await?;
    let p = p.ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({ "publication": publication_view(&p) })))
}

fn upload_event(uploaded: u64, total: u64, state: &str, p: Option<&Publication>) -> Event {
    let percent = jilo::UploadProgress { uploaded, total }.percent();
    let mut data =
        json!({ "state": state, "uploaded": uploaded, "total": total, "percent": percent });
    if let Some(p) = p {
        data["publication"] = publication_view(p);
    }
    Event::default().event("upload").data(data.to_string())
}

/// Record reads without a record after which a publication stream ends (a second each).
const NO_PUBLICATION_READS: u32 = 60;

/// `GET /api/publish/{id}/events`: the upload's progress (bytes, %) as YouTube confirms it,
/// ending with the publication once it is published or failed.
pub async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<ChannelQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Watch first, then read, so no progress between the two is missed.
    let updates = state.studio().watch_uploads();
    let (job, channel, current) = own_publication(&state, &user, &id, q.channel.as_deref()).await?;
    let studio = state.studio().clone();
    let stopping = state.shutdown.clone().cancelled_owned();
    // A failure from before this stream is an earlier attempt, not the end of the one a page
    // opens the stream for (publishing again starts over).
    let opened = state.now();
    let current = current.filter(|p| {
        !(p.state == PublicationState::Failed && p.updated_at.as_millis() < opened.as_millis())
    });
    let first = current.as_ref().map(|p| {
        let uploaded = uploaded_of(p);
        let done = p.state != PublicationState::Uploading;
        (
            upload_event(uploaded, p.total_bytes, p.state.as_str(), done.then_some(p)),
            done,
        )
    });
    let ended_already = first.as_ref().is_some_and(|(_, done)| *done);
    let (watch_job, watch_channel) = (job.clone(), channel.clone());
    let progress = updates
        .filter(move |u| {
            futures::future::ready(u.job == watch_job && u.channel_id == watch_channel)
        })
        .map(|u| {
            (
                upload_event(u.progress.uploaded, u.progress.total, "uploading", None),
                false,
            )
        });
    // The record is read again every second: the end (published, or failed since the stream
    // opened) comes from it. No record for a minute: nothing is being published; the stream
    // ends.
    let rereads = futures::stream::unfold(0u32, move |misses| {
        let (studio, job, channel) = (studio.clone(), job.clone(), channel.clone());
        async move {
            if misses >= NO_PUBLICATION_READS {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let read = studio.publication(&job, &channel).await.ok().flatten();
            let misses = if read.is_some() { 0 } else { misses + 1 };
            Some((read, misses))
        }
    })
    .filter_map(move |p| async move {
        let p = p?;
        let ended = p.state == PublicationState::Published
            || (p.state == PublicationState::Failed
                && p.updated_at.as_millis() >= opened.as_millis());
        ended.then(|| {
            (
                upload_event(uploaded_of(&p), p.total_bytes, p.state.as_str(), Some(&p)),
                true,
            )
        })
    })
    .chain(futures::stream::once(async {
        (upload_event(0, 0, "not_started", None), true)
    }));
    let live = futures::stream::select(progress, rereads);
    let stream = futures::stream::iter(first)
        .chain(if ended_already {
            futures::stream::empty().boxed()
        } else {
            live.boxed()
        })
        .scan(false, |ended, (event, done)| {
            if *ended {
                return futures::future::ready(None);
            }
            *ended = done;
            futures::future::ready(Some(Ok(event)))
        })
        .take_until(stopping);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
