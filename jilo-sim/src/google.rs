//! Google's OAuth endpoints and the YouTube Data API and upload server, on loopback.
//!
//! It speaks what `../shared/specs/youtube.md` describes: authorize with PKCE S256 (a consent
//! page that approves at once and redirects with the code), the code exchange and refresh,
//! revoke, `channels.list`, the resumable upload (a session, chunks in 256 KiB units, `308`
//! with `Range`, status queries, session expiry), thumbnails, playlist items and video
//! statistics that grow as time passes. It checks what a client sends (every header, the PKCE
//! pair, each `Content-Range` and chunk size) and records each broken rule in `violations`.
//! Faults come two ways: the switches of [`Switches`] (quota exhausted, a
//! dropped upload, an expired session, 5xx bursts, rate limits, a rejected client), and a
//! scripted queue of [`Fault`]s for the next chunks, for a test that needs one exact fault.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::server::{
    self, body, dropped, empty, header, query, random, reply, reply_with, urlencode, Answer, Req,
};
use crate::{Pace, Service, Switches};

/// The OAuth client id the simulator knows.
pub const CLIENT_ID: &str = "jilo-sim.apps.googleusercontent.com";
/// That client's secret.
pub const CLIENT_SECRET: &str = "GOCSPX-jilo-sim-secret";
/// The id of the channel every consent connects.
pub const CHANNEL_ID: &str = "UCjilo0000000000000000";
/// That channel's title.
pub const CHANNEL_NAME: &str = "纪录 Shorts";
/// The Google account every consent signs in as (`sub` of the userinfo endpoint).
pub const ACCOUNT_SUB: &str = "108234567890123456789";
/// That account's (verified) email.
pub const ACCOUNT_EMAIL: &str = "creator@jilo-sim.example";
const YOUTUBE_SCOPES: &str =
    "https://www.googleapis.com/auth/youtube https://www.googleapis.com/auth/youtube.upload";
const UNIT: u64 = 256 * 1024;
/// The views a new video shows at its first statistics read.
pub const BASE_VIEWS: u64 = 12_345_678_901;
const SERVICE: Service = Service::Youtube;

/// What the upload server does with the next chunk (scripted by a test).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Keeps only this many bytes of the chunk (and says so with `Range`).
    Partial(u64),
    /// Reads this many bytes of the body, keeps the whole 256 KiB units among them, then
    /// drops the connection without an answer.
    DropAfter(u64),
    /// Keeps the chunk, then drops the connection without an answer.
    DropAnswer,
    /// Answers this status (a 503 keeps nothing).
    Status(u16),
    /// The session expires now: this and every later request on it get 404.
    Expire,
    /// Answers this status at once, before reading the body (a 503 keeps nothing).
    EarlyAnswer(u16),
    /// Answers this status with `Retry-After: secs` (keeps nothing).
    StatusRetryAfter(u16, u64),
    /// Keeps the chunk and answers 308 with `Retry-After: secs`.
    PauseAfter(u64),
}

/// One resumable upload session.
#[derive(Default, Debug)]
pub struct Upload {
    /// The length declared at the start.
    pub total: u64,
    /// The declared content type.
    pub content_type: String,
    /// The video resource sent at the start.
    pub metadata: Value,
    /// The bytes kept so far.
    pub received: Vec<u8>,
    /// Whether the session expired.
    pub expired: bool,
    /// The video resource once the upload finished.
    pub video: Option<Value>,
    /// The size of the first non-final chunk.
    pub chunk_size: Option<u64>,
}

/// Everything the simulator holds, open to a test for inspection and scripting.
#[derive(Default, Debug)]
pub struct State {
    /// The simulator's base URL.
    pub base: String,
    /// Authorization codes issued and not yet exchanged: code → (challenge, redirect).
    pub codes: HashMap<String, (String, String)>,
    /// Refresh tokens issued and whether each still works.
    pub refresh_tokens: HashMap<String, bool>,
    /// Access tokens issued and whether each still works.
    pub access_tokens: HashMap<String, bool>,
    /// The `expires_in` of each access token issued.
    pub token_lifetime: u64,
    /// Access tokens issued (code exchanges and refreshes).
    pub issued: u32,
    /// Upload sessions by id.
    pub sessions: HashMap<String, Upload>,
    /// Faults for the next chunks, in order.
    pub faults: VecDeque<Fault>,
    /// The next this many `channels.list` calls are refused with 401 (a token revoked a moment
    /// after it was issued).
    pub refuse_channel_lookups: u32,
    /// Errors for the next session starts, in order.
    pub start_errors: VecDeque<(u16, Value)>,
    /// Each rule a client broke.
    pub violations: Vec<String>,
    /// Every request line.
    pub requests: Vec<String>,
    /// Bytes the upload server kept, over all sessions.
    pub kept: u64,
    /// Bytes that arrived in chunk bodies, over all sessions.
    pub arrived: u64,
    /// Status queries (`Content-Range: bytes */N`) answered.
    pub status_queries: u32,
    /// Thumbnails set: video id → (content type, bytes).
    pub thumbnails: HashMap<String, (String, Vec<u8>)>,
    /// Playlist items inserted: (playlist, video).
    pub playlist_items: Vec<(String, String)>,
    /// The number of the last video made.
    pub next_video: u32,
    /// Videos are kept private whatever the upload asked (as for an unaudited API project).
    pub keep_private: bool,
    /// The scopes each pending code and each access token was granted.
    pub granted_scopes: HashMap<String, String>,
    /// Refresh tokens revoked.
    pub revoked: Vec<String>,
    /// A pause before each chunk is answered (a slow line).
    pub put_delay: Option<std::time::Duration>,
    /// How long a thumbnail call waits before its answer.
    pub thumbnail_delay: Option<std::time::Duration>,
    /// When each authorized `PUT` on a session arrived.
    pub put_times: Vec<tokio::time::Instant>,
    /// Statistics reads per video.
    pub stat_reads: HashMap<String, u64>,
    /// When each video finished uploading, by id (its statistics grow from then).
    pub published_at: HashMap<String, tokio::time::Instant>,
}

impl State {
    fn violation(&mut self, what: String) {
        tracing::warn!(target: "jilo_sim::google", "{what}");
        self.violations.push(what);
    }
}

/// The Google simulator: OAuth on `/o/oauth2/v2/auth`, `/token`, `/revoke`; the YouTube Data
/// API under `/youtube/v3`; the upload server under `/upload/youtube/v3`.
#[derive(Clone, Debug)]
pub struct GoogleSim {
    /// The base URL of every endpoint.
    pub url: String,
    /// The simulator's state.
    pub state: Arc<Mutex<State>>,
    switches: Switches,
    pace: Pace,
    task: Arc<crate::Task>,
}

fn google_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}]}})
}

impl server::Simulator for GoogleSim {
    async fn answer(self, req: Req) -> Answer {
        self.handle(req).await
    }

    fn with_task(mut self, task: Arc<crate::Task>) -> Self {
        self.task = task;
        self
    }
}

impl GoogleSim {
    /// Starts on a free loopback port with its own switches, at test pace.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Switches::default(),
            Pace::Instant,
        )
        .await
    }

    /// Starts on `addr`, following `switches`.
    pub async fn start_on(
        addr: SocketAddr,
        switches: Switches,
        pace: Pace,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            token_lifetime: 3599,
            ..State::default()
        }));
        let sim = server::launch(addr, |url| GoogleSim {
            url,
            state,
            switches,
            pace,
            task: Arc::default(),
        })
        .await?;
        let url = sim.url.clone();
        sim.lock().base = url;
        Ok(sim)
    }

    /// The fault switches this simulator follows.
    pub fn switches(&self) -> &Switches {
        &self.switches
    }

    /// The state, for a test to read or script.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scripts a fault for a coming chunk.
    pub fn fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Every access token issued so far stops working (as if an hour passed).
    pub fn expire_access_tokens(&self) {
        for valid in self.lock().access_tokens.values_mut() {
            *valid = false;
        }
    }

    /// Each rule a client broke so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The only video's bytes, when one upload finished.
    pub fn uploaded(&self) -> Vec<(Value, Vec<u8>)> {
        self.lock()
            .sessions
            .values()
            .filter_map(|s| s.video.clone().map(|v| (v, s.received.clone())))
            .collect()
    }

    /// Issues tokens as the consent screen and the code exchange would, and returns the
    /// refresh token: for tests that start with a connected channel.
    pub fn issue_tokens(&self) -> (String, String) {
        let mut s = self.lock();
        let access = random("ya29.");
        let refresh = random("1//r");
        s.access_tokens.insert(access.clone(), true);
        s.refresh_tokens.insert(refresh.clone(), true);
        (access, refresh)
    }

    fn authorized(&self, req: &Req) -> Option<Answer> {
        let token = header(req, "authorization");
        let s = &mut *self.lock();
        let ok = token
            .as_deref()
            .and_then(|t| t.strip_prefix("Bearer "))
            .and_then(|t| s.access_tokens.get(t))
            .copied()
            .unwrap_or(false);
        if ok {
            None
        } else {
            Some(reply(
                401,
                google_error(401, "authError", "Invalid Credentials"),
            ))
        }
    }

    async fn handle(&self, req: Req) -> Answer {
        self.lock().requests.push(server::line(&req));
        let path = req.uri().path().to_owned();
        if let Some(answer) = self.switched(&req, &path) {
            return answer;
        }
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/o/oauth2/v2/auth") => self.authorize(req),
            ("POST", "/token") => self.token(req).await,
            ("POST", "/revoke") => self.revoke(req).await,
            ("GET", "/v1/userinfo") => self.userinfo(req),
            ("GET", "/youtube/v3/channels") => self.channels(req),
            ("POST", "/upload/youtube/v3/videos") if query(&req).contains_key("upload_id") => {
                self.put(req).await
            }
            ("POST", "/upload/youtube/v3/videos") => self.start_session(req).await,
            ("PUT", "/upload/youtube/v3/videos") => self.put(req).await,
            ("POST", "/upload/youtube/v3/thumbnails/set") => self.thumbnail(req).await,
            ("POST", "/youtube/v3/playlistItems") => self.playlist(req).await,
            ("GET", "/youtube/v3/videos") => self.stats(req),
            _ => reply(404, google_error(404, "notFound", "no such endpoint")),
        }
    }

    /// What the fault switches answer instead of the endpoint, if anything; a switched upload
    /// fault becomes the next chunk's scripted fault.
    fn switched(&self, req: &Req, path: &str) -> Option<Answer> {
        let faults = self.switches.get(SERVICE);
        let youtube = path.starts_with("/youtube/") || path.starts_with("/upload/");
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            return Some(reply(
                503,
                google_error(503, "backendError", "Backend Error"),
            ));
        }
        if path == "/token" && faults.key_rejected {
            return Some(reply(
                401,
                json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
            ));
        }
        if !youtube {
            return None;
        }
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            return Some(reply(
                503,
                google_error(503, "backendError", "Backend Error"),
            ));
        }
        if let Some(secs) = faults.rate_limited {
            return Some(reply_with(
                429,
                google_error(
                    429,
                    "rateLimitExceeded",
                    "The request cannot be completed because you have exceeded your quota.",
                ),
                &[("retry-after", secs.to_string())],
            ));
        }
        let chunk = req.method() == "PUT" && path == "/upload/youtube/v3/videos";
        if faults.quota_exhausted && !chunk {
            let message = "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.";
            return Some(reply(
                403,
                json!({"error": {"code": 403, "message": message, "errors": [
                    {"message": message, "domain": "youtube.quota", "reason": "quotaExceeded"}]}}),
            ));
        }
        if chunk {
            let is_query = header(req, "content-range").is_some_and(|r| r.starts_with("bytes */"));
            if !is_query {
                if self.switches.take(SERVICE, |f| &mut f.expire_uploads) {
                    self.lock().faults.push_front(Fault::Expire);
                } else if self.switches.take(SERVICE, |f| &mut f.drop_uploads) {
                    self.lock().faults.push_front(Fault::DropAfter(UNIT / 2));
                }
            }
        }
        None
    }

    fn authorize(&self, req: Req) -> Answer {
        let q = query(&req);
        let mut s = self.lock();
        let must_be = |s: &mut State, k: &str, v: &str| {
            if q.get(k).map(String::as_str) != Some(v) {
                s.violation(format!("authorize: {k} is {:?}, not {v}", q.get(k)));
            }
        };
        must_be(&mut s, "client_id", CLIENT_ID);
        must_be(&mut s, "response_type", "code");
        must_be(&mut s, "access_type", "offline");
        must_be(&mut s, "prompt", "consent");
        must_be(&mut s, "code_challenge_method", "S256");
        let scopes = q.get("scope").cloned().unwrap_or_default();
        // A sign-in asks for the OpenID scopes (`email` in its short or URL form); a channel
        // connection for YouTube's.
        let needs: &[&str] = if scopes.split(' ').any(|x| x == "openid") {
            if !scopes
                .split(' ')
                .any(|x| x == "email" || x == "https://www.googleapis.com/auth/userinfo.email")
            {
                s.violation(format!("authorize: no email scope in `{scopes}`"));
            }
            &["openid"]
        } else {
            &[
                "https://www.googleapis.com/auth/youtube",
                "https://www.googleapis.com/auth/youtube.upload",
            ]
        };
        for needed in needs {
            if !scopes.split(' ').any(|x| x == *needed) {
                s.violation(format!("authorize: scope {needed} missing from `{scopes}`"));
            }
        }
        let (Some(challenge), Some(redirect), Some(state)) = (
            q.get("code_challenge"),
            q.get("redirect_uri"),
            q.get("state"),
        ) else {
            s.violation("authorize: challenge, redirect or state missing".into());
            return reply(400, json!({"error": "invalid_request"}));
        };
        if state.len() < 16 {
            s.violation("authorize: the state is too short to be random".into());
        }
        let code = random("4/0A");
        s.codes
            .insert(code.clone(), (challenge.clone(), redirect.clone()));
        s.granted_scopes.insert(code.clone(), scopes.clone());
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let location = format!(
            "{redirect}{sep}state={}&code={}&scope={}",
            urlencode(state),
            urlencode(&code),
            urlencode(&scopes)
        );
        empty(302, &[("location", location)])
    }

    async fn form(req: Req) -> (Option<String>, HashMap<String, String>) {
        let ctype = header(&req, "content-type");
        let body = body(req).await;
        (
            ctype,
            url::form_urlencoded::parse(&body).into_owned().collect(),
        )
    }

    async fn token(&self, req: Req) -> Answer {
        let (ctype, f) = Self::form(req).await;
        let mut s = self.lock();
        if ctype.as_deref() != Some("application/x-www-form-urlencoded") {
            s.violation(format!("token: content type {ctype:?}"));
        }
        if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        {
            return reply(
                401,
                json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
            );
        }
        let lifetime = s.token_lifetime;
        match f.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = f.get("code").cloned().unwrap_or_default();
                let Some((challenge, redirect)) = s.codes.remove(&code) else {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Malformed auth code."}),
                    );
                };
                if f.get("redirect_uri") != Some(&redirect) {
                    s.violation("token: redirect_uri differs from the authorization's".into());
                    return reply(400, json!({"error": "redirect_uri_mismatch"}));
                }
                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                let ok_chars = verifier
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
                if !(43..=128).contains(&verifier.len()) || !ok_chars {
                    s.violation(format!("token: verifier of {} characters", verifier.len()));
                }
                let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Sha256::digest(verifier.as_bytes()));
                if computed != challenge {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Invalid code verifier."}),
                    );
                }
                let access = random("ya29.");
                let refresh = random("1//r");
                let scope = s
                    .granted_scopes
                    .remove(&code)
                    .filter(|g| !g.is_empty())
                    .unwrap_or_else(|| YOUTUBE_SCOPES.to_owned());
                s.access_tokens.insert(access.clone(), true);
                s.granted_scopes.insert(access.clone(), scope.clone());
                s.refresh_tokens.insert(refresh.clone(), true);
                s.issued += 1;
                // An `openid` grant gets no `id_token` here (Google signs one with its RS256
                // keys): clients read the identity from the userinfo endpoint instead.
                reply(
                    200,
                    json!({"access_token": access, "expires_in": lifetime,
                        "refresh_token": refresh, "token_type": "Bearer", "scope": scope}),
                )
            }
            Some("refresh_token") => {
                let refresh = f.get("refresh_token").cloned().unwrap_or_default();
                if s.refresh_tokens.get(&refresh) != Some(&true) {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
                    );
                }
                let access = random("ya29.");
                s.access_tokens.insert(access.clone(), true);
                s.issued += 1;
                reply(
                    200,
                    json!({"access_token": access, "expires_in": lifetime, "token_type": "Bearer",
                        "scope": "https://www.googleapis.com/auth/youtube.upload https://www.googleapis.com/auth/youtube"}),
                )
            }
            other => {
                s.violation(format!("token: grant_type {other:?}"));
                reply(400, json!({"error": "unsupported_grant_type"}))
            }
        }
    }

    async fn revoke(&self, req: Req) -> Answer {
        let q = query(&req);
        let (_, f) = Self::form(req).await;
        let token = f
            .get("token")
            .or(q.get("token"))
            .cloned()
            .unwrap_or_default();
        let mut s = self.lock();
        match s.refresh_tokens.get_mut(&token) {
            Some(valid) if *valid => {
                *valid = false;
                s.revoked.push(token);
                empty(200, &[])
            }
            _ => reply(
                400,
                json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
            ),
        }
    }

    /// OpenID Connect's userinfo: the signed-in account, for a token granted `openid`.
    fn userinfo(&self, req: Req) -> Answer {
        let token = header(&req, "authorization");
        let s = self.lock();
        let granted = token
            .as_deref()
            .and_then(|t| t.strip_prefix("Bearer "))
            .filter(|t| s.access_tokens.get(*t) == Some(&true))
            .and_then(|t| s.granted_scopes.get(t));
        match granted {
            Some(scopes) if scopes.split(' ').any(|x| x == "openid") => reply(
                200,
                json!({"sub": ACCOUNT_SUB, "email": ACCOUNT_EMAIL, "email_verified": true,
                    "name": CHANNEL_NAME}),
            ),
            _ => reply_with(
                401,
                json!({"error": "invalid_request", "error_description": "Invalid Credentials"}),
                &[(
                    "www-authenticate",
                    "Bearer error=\"invalid_token\"".to_owned(),
                )],
            ),
        }
    }

    fn channels(&self, req: Req) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        {
            let mut s = self.lock();
            if s.refuse_channel_lookups > 0 {
                s.refuse_channel_lookups -= 1;
                return reply(401, google_error(401, "authError", "Invalid Credentials"));
            }
        }
        let q = query(&req);
        if q.get("mine").map(String::as_str) != Some("true") {
            self.lock()
                .violation("channels.list without mine=true".into());
        }
        reply(
            200,
            json!({"kind": "youtube#channelListResponse",
                "items": [{"kind": "youtube#channel", "id": CHANNEL_ID,
                    "snippet": {"title": CHANNEL_NAME}}]}),
        )
    }

    async fn start_session(&self, req: Req) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        let ctype = header(&req, "content-type");
        let length = header(&req, "x-upload-content-length").and_then(|l| l.parse::<u64>().ok());
        let upload_type = header(&req, "x-upload-content-type").unwrap_or_default();
        let declared = header(&req, "content-length").and_then(|l| l.parse::<usize>().ok());
        let body = body(req).await;
        let mut s = self.lock();
        if q.get("uploadType").map(String::as_str) != Some("resumable") {
            s.violation(format!(
                "session start: uploadType {:?}",
                q.get("uploadType")
            ));
        }
        let parts = q.get("part").cloned().unwrap_or_default();
        if !(parts.contains("snippet") && parts.contains("status")) {
            s.violation(format!("session start: part `{parts}`"));
        }
        if ctype.as_deref() != Some("application/json; charset=UTF-8") {
            s.violation(format!("session start: content type {ctype:?}"));
        }
        if declared != Some(body.len()) {
            s.violation(format!(
                "session start: Content-Length {declared:?} for {} bytes",
                body.len()
            ));
        }
        if !(upload_type.starts_with("video/") || upload_type == "application/octet-stream") {
            s.violation(format!(
                "session start: X-Upload-Content-Type `{upload_type}`"
            ));
        }
        let Some(total) = length else {
            s.violation("session start: no X-Upload-Content-Length".into());
            return reply(400, google_error(400, "badRequest", "no length"));
        };
        let metadata: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                s.violation(format!("session start: body is not JSON: {e}"));
                return reply(400, google_error(400, "parseError", "bad JSON"));
            }
        };
        if let Some((status, error)) = s.start_errors.pop_front() {
            return reply(status, error);
        }
        let title = metadata.pointer("/snippet/title").and_then(Value::as_str);
        if title.is_none_or(|t| t.is_empty() || t.chars().count() > 100) {
            return reply(400, google_error(400, "invalidTitle", "bad title"));
        }
        let id = random("up");
        s.sessions.insert(
            id.clone(),
            Upload {
                total,
                content_type: upload_type,
                metadata,
                ..Upload::default()
            },
        );
        let location = format!(
            "{}/upload/youtube/v3/videos?uploadType=resumable&upload_id={id}&part=snippet,status",
            s.base
        );
        empty(200, &[("location", location), ("x-guploader-uploadid", id)])
    }

    fn range_header(held: u64) -> Vec<(&'static str, String)> {
        if held == 0 {
            vec![]
        } else {
            vec![("range", format!("bytes=0-{}", held - 1))]
        }
    }

    fn finish(s: &mut State, id: &str) -> Value {
        s.next_video += 1;
        let video_id = format!("vid{:08}", s.next_video);
        let keep_private = s.keep_private;
        let upload = s.sessions.entry(id.to_owned()).or_default();
        let mut status = upload
            .metadata
            .get("status")
            .cloned()
            .unwrap_or_else(|| json!({}));
        status["uploadStatus"] = json!("uploaded");
        if keep_private {
            status["privacyStatus"] = json!("private");
        }
        let video = json!({"kind": "youtube#video", "etag": "e", "id": video_id,
            "snippet": upload.metadata.get("snippet").cloned().unwrap_or_default(),
            "status": status});
        upload.video = Some(video.clone());
        s.published_at.insert(video_id, tokio::time::Instant::now());
        video
    }

    async fn put(&self, req: Req) -> Answer {
        // The session URI is the credential: a chunk may come without `Authorization`, but
        // one that carries a token must carry a valid one.
        if header(&req, "authorization").is_some() {
            if let Some(denied) = self.authorized(&req) {
                return denied;
            }
        }
        self.lock().put_times.push(tokio::time::Instant::now());
        let q = query(&req);
        let id = q.get("upload_id").cloned().unwrap_or_default();
        let range = header(&req, "content-range").unwrap_or_default();
        let declared = header(&req, "content-length").and_then(|l| l.parse::<u64>().ok());
        let ctype = header(&req, "content-type");
        {
            let mut s = self.lock();
            let Some(upload) = s.sessions.get(&id) else {
                return reply(404, google_error(404, "notFound", "no such session"));
            };
            if upload.expired {
                return reply(404, google_error(404, "notFound", "session expired"));
            }
            if let Some(video) = upload.video.clone() {
                // A finished upload answers as its last chunk was answered.
                return reply(201, video);
            }
            let total = upload.total;
            // A status query.
            if let Some(t) = range.strip_prefix("bytes */") {
                s.status_queries += 1;
                if t.parse::<u64>().ok() != Some(total) {
                    s.violation(format!("status query: `{range}` for {total} bytes"));
                }
                if declared != Some(0) {
                    s.violation(format!("status query: Content-Length {declared:?}"));
                }
                let held = s.sessions[&id].received.len() as u64;
                return empty(308, &Self::range_header(held));
            }
        }
        // A chunk: `bytes FIRST-LAST/TOTAL`; none means the whole file in one request.
        let whole = {
            let s = self.lock();
            s.sessions.get(&id).map(|u| u.total).unwrap_or(0)
        };
        let range = if range.is_empty() && whole > 0 {
            format!("bytes 0-{}/{whole}", whole - 1)
        } else {
            range
        };
        let parsed = range.strip_prefix("bytes ").and_then(|r| {
            let (span, total) = r.split_once('/')?;
            let (a, b) = span.split_once('-')?;
            Some((
                a.parse::<u64>().ok()?,
                b.parse::<u64>().ok()?,
                total.parse::<u64>().ok()?,
            ))
        });
        let fault = self.lock().faults.pop_front();
        if let Some(Fault::EarlyAnswer(code)) = fault {
            return reply(code, google_error(code, "backendError", "Backend Error"));
        }
        let mut body = req.into_body();
        let mut data: Vec<u8> = Vec::new();
        let drop_after = match &fault {
            Some(Fault::DropAfter(n)) => Some(*n),
            _ => None,
        };
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                cut = true;
                break;
            };
            if let Ok(chunk) = frame.into_data() {
                data.extend_from_slice(&chunk);
            }
            if let Some(n) = drop_after {
                if data.len() as u64 >= n {
                    data.truncate(n as usize);
                    break;
                }
            }
        }
        let (answer, delay) = self.take_chunk(
            &id,
            parsed,
            fault.as_ref(),
            data,
            cut,
            declared,
            ctype,
            &range,
        );
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        answer
    }

    #[allow(clippy::too_many_arguments)]
    fn take_chunk(
        &self,
        id: &str,
        parsed: Option<(u64, u64, u64)>,
        fault: Option<&Fault>,
        data: Vec<u8>,
        cut: bool,
        declared: Option<u64>,
        ctype: Option<String>,
        range: &str,
    ) -> (Answer, Option<std::time::Duration>) {
        let id = id.to_owned();
        let drop_after = match fault {
            Some(Fault::DropAfter(n)) => Some(*n),
            _ => None,
        };
        let mut s = self.lock();
        if !s.sessions.contains_key(&id) {
            return (
                reply(404, google_error(404, "notFound", "no such session")),
                None,
            );
        }
        s.arrived += data.len() as u64;
        if cut {
            // The client went away mid-body: keep the whole units that arrived, as the
            // upload server may.
            let keep = (data.len() as u64 / UNIT) * UNIT;
            let upload = s.sessions.entry(id.clone()).or_default();
            if parsed.is_some_and(|(first, _, _)| first == upload.received.len() as u64) {
                upload.received.extend_from_slice(&data[..keep as usize]);
                s.kept += keep;
            }
            return (dropped(), None);
        }
        let Some((first, last, total_in)) = parsed else {
            s.violation(format!("chunk: Content-Range `{range}`"));
            return (
                reply(
                    400,
                    google_error(
                        400,
                        "badContentRange",
                        "Failed to parse Content-Range header.",
                    ),
                ),
                None,
            );
        };
        let upload_total = s.sessions[&id].total;
        let held = s.sessions[&id].received.len() as u64;
        if last < first || last >= total_in {
            s.violation(format!(
                "chunk: Content-Range `{range}` is not a range of the file"
            ));
            return (
                reply(
                    400,
                    google_error(
                        400,
                        "badContentRange",
                        "Failed to parse Content-Range header.",
                    ),
                ),
                None,
            );
        }
        let len = last + 1 - first;
        let is_last = last + 1 == upload_total;
        if total_in != upload_total {
            s.violation(format!(
                "chunk: total {total_in}, the session has {upload_total}"
            ));
        }
        if drop_after.is_none() && (declared != Some(len) || data.len() as u64 != len) {
            s.violation(format!(
                "chunk: Content-Length {declared:?}, body {}, range length {len}",
                data.len()
            ));
        }
        if ctype.as_deref() != Some(s.sessions[&id].content_type.as_str()) {
            s.violation(format!("chunk: content type {ctype:?}"));
        }
        if !is_last && len % UNIT != 0 {
            s.violation(format!("chunk of {len} bytes is not a multiple of 256 KiB"));
        }
        if !is_last {
            let size = *s
                .sessions
                .entry(id.clone())
                .or_default()
                .chunk_size
                .get_or_insert(len);
            if size != len {
                s.violation(format!("chunk of {len} bytes after chunks of {size}"));
            }
        }
        if first != held {
            // Google keeps none of a request that overlaps or leaves a gap.
            s.violation(format!("chunk starts at {first}, the server holds {held}"));
            return (empty(308, &Self::range_header(held)), None);
        }
        let keep = match fault {
            Some(Fault::Status(code)) => {
                let code = *code;
                return (
                    reply(code, google_error(code, "backendError", "Backend Error")),
                    None,
                );
            }
            Some(Fault::StatusRetryAfter(code, secs)) => {
                return (
                    reply_with(
                        *code,
                        google_error(*code, "backendError", "Backend Error"),
                        &[("retry-after", secs.to_string())],
                    ),
                    None,
                );
            }
            Some(Fault::Expire) => {
                s.sessions.entry(id.clone()).or_default().expired = true;
                return (
                    reply(404, google_error(404, "notFound", "session expired")),
                    None,
                );
            }
            Some(Fault::Partial(n)) => (*n).min(data.len() as u64),
            Some(Fault::DropAfter(_)) => (data.len() as u64 / UNIT) * UNIT,
            Some(Fault::DropAnswer)
            | Some(Fault::EarlyAnswer(_))
            | Some(Fault::PauseAfter(_))
            | None => data.len() as u64,
        };
        let upload = s.sessions.entry(id.clone()).or_default();
        upload.received.extend_from_slice(&data[..keep as usize]);
        let now_held = upload.received.len() as u64;
        s.kept += keep;
        if matches!(fault, Some(Fault::DropAfter(_)) | Some(Fault::DropAnswer)) {
            if now_held == upload_total {
                Self::finish(&mut s, &id);
            }
            return (dropped(), None);
        }
        let delay = s.put_delay;
        let answer = if now_held == upload_total {
            let video = Self::finish(&mut s, &id);
            reply(201, video)
        } else {
            let mut headers = Self::range_header(now_held);
            if let Some(Fault::PauseAfter(secs)) = fault {
                headers.push(("retry-after", secs.to_string()));
            }
            empty(308, &headers)
        };
        (answer, delay)
    }

    async fn thumbnail(&self, req: Req) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        let ctype = header(&req, "content-type").unwrap_or_default();
        let body = body(req).await;
        let delay = self.lock().thumbnail_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut s = self.lock();
        if q.get("uploadType").map(String::as_str) != Some("media") {
            s.violation("thumbnail without uploadType=media".into());
        }
        let video = q.get("videoId").cloned().unwrap_or_default();
        if !s
            .sessions
            .values()
            .any(|u| u.video.as_ref().is_some_and(|v| v["id"] == json!(video)))
        {
            return reply(404, google_error(404, "videoNotFound", "no such video"));
        }
        if !(ctype == "image/jpeg" || ctype == "image/png") {
            return reply(400, google_error(400, "invalidImage", "not an image"));
        }
        s.thumbnails.insert(video, (ctype, body.to_vec()));
        reply(
            200,
            json!({"kind": "youtube#thumbnailSetResponse", "items": []}),
        )
    }

    async fn playlist(&self, req: Req) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let body = body(req).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let playlist = v.pointer("/snippet/playlistId").and_then(Value::as_str);
        let video = v
            .pointer("/snippet/resourceId/videoId")
            .and_then(Value::as_str);
        let kind = v
            .pointer("/snippet/resourceId/kind")
            .and_then(Value::as_str);
        let mut s = self.lock();
        match (playlist, video, kind) {
            (Some("PLfull"), _, _) => reply(
                403,
                google_error(403, "playlistContainsMaximumNumberOfVideos", "full"),
            ),
            (Some(p), Some(v), Some("youtube#video")) => {
                s.playlist_items.push((p.to_owned(), v.to_owned()));
                reply(200, json!({"kind": "youtube#playlistItem", "id": "item1"}))
            }
            _ => {
                s.violation(format!("playlistItems.insert body {v}"));
                reply(400, google_error(400, "badRequest", "bad body"))
            }
        }
    }

    fn stats(&self, req: Req) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        if q.get("part").map(String::as_str) != Some("statistics") {
            self.lock()
                .violation(format!("videos.list part {:?}", q.get("part")));
        }
        let ids = q.get("id").cloned().unwrap_or_default();
        let pace = self.pace;
        let mut s = self.lock();
        let mut items = Vec::new();
        for id in ids.split(',') {
            let Some(at) = s.published_at.get(id).copied() else {
                continue;
            };
            // Counts grow with each read and with (simulated) minutes since publishing.
            let reads = s.stat_reads.entry(id.to_owned()).or_insert(0);
            let minutes = match pace {
                Pace::Instant => 0,
                Pace::Speed(speed) => (at.elapsed().as_secs_f64() * speed / 60.0) as u64,
            };
            let n = *reads + minutes;
            *reads += 1;
            items.push(json!({"kind": "youtube#video", "id": id, "statistics": {
                "viewCount": (BASE_VIEWS + 1000 * n).to_string(),
                "likeCount": (42 + 3 * n).to_string(), "favoriteCount": "0",
                "commentCount": (7 + n).to_string()}}));
        }
        reply(
            200,
            json!({"kind": "youtube#videoListResponse", "items": items}),
        )
    }
}
