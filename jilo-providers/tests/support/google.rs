//! A local stand-in for Google's OAuth endpoints and the YouTube API and upload server, on a
//! real HTTP server on loopback. It checks what the client sends (every header, the PKCE pair,
//! each `Content-Range` and chunk size) and records each broken rule in `violations`; faults
//! scripted by a test make it accept only part of a chunk, drop connections, answer 503, or
//! expire a session.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "jilo-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-test-secret";
pub const CHANNEL_ID: &str = "UCjilo0000000000000000";
pub const CHANNEL_NAME: &str = "纪录 Shorts";
const UNIT: u64 = 256 * 1024;

/// What the upload server does with the next chunk.
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

#[derive(Default)]
pub struct Upload {
    pub total: u64,
    pub content_type: String,
    pub metadata: Value,
    pub received: Vec<u8>,
    pub expired: bool,
    pub video: Option<Value>,
    pub chunk_size: Option<u64>,
}

#[derive(Default)]
pub struct State {
    pub base: String,
    pub codes: HashMap<String, (String, String)>,
    pub refresh_tokens: HashMap<String, bool>,
    pub access_tokens: HashMap<String, bool>,
    pub token_lifetime: u64,
    pub issued: u32,
    pub sessions: HashMap<String, Upload>,
    pub faults: VecDeque<Fault>,
    pub start_errors: VecDeque<(u16, Value)>,
    pub violations: Vec<String>,
    pub requests: Vec<String>,
    /// Bytes the upload server kept, over all sessions.
    pub kept: u64,
    /// Bytes that arrived in chunk bodies, over all sessions.
    pub arrived: u64,
    pub status_queries: u32,
    pub thumbnails: HashMap<String, (String, Vec<u8>)>,
    pub playlist_items: Vec<(String, String)>,
    pub next_video: u32,
    pub keep_private: bool,
    pub revoked: Vec<String>,
    /// A pause before each chunk is answered (a slow line).
    pub put_delay: Option<std::time::Duration>,
    /// How long a thumbnail call waits before its answer.
    pub thumbnail_delay: Option<std::time::Duration>,
    /// When each authorized `PUT` on a session arrived.
    pub put_times: Vec<std::time::Instant>,
}

impl State {
    fn violation(&mut self, what: String) {
        eprintln!("google stand-in: {what}");
        self.violations.push(what);
    }
}

#[derive(Clone)]
pub struct GoogleSim {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn reply(status: u16, body: Value) -> Answer {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

fn empty(status: u16, headers: &[(&str, String)]) -> Answer {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    Ok(b.header("content-length", "0")
        .body(Full::new(Bytes::new()))
        .unwrap())
}

fn google_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}]}})
}

fn dropped() -> Answer {
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection dropped by the test",
    ))
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

impl GoogleSim {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            base: url.clone(),
            token_lifetime: 3599,
            ..State::default()
        }));
        let sim = GoogleSim {
            url,
            state: state.clone(),
        };
        let server = sim.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sim = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let sim = sim.clone();
                        async move { sim.handle(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        sim
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Every access token issued so far stops working (as if an hour passed).
    pub fn expire_access_tokens(&self) {
        for valid in self.lock().access_tokens.values_mut() {
            *valid = false;
        }
    }

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

    /// A channel connected earlier: tokens issued by the stand-in, sealed for `user` as the
    /// publisher seals them, valid for an hour from `now`.
    pub fn connected_channel(
        &self,
        user: &jilo_core::UserId,
        cipher: &jilo_providers::tokens::TokenCipher,
        now: jilo_core::Timestamp,
    ) -> jilo_core::ChannelConnection {
        let (access, refresh) = self.issue_tokens();
        let owner = format!("{user}/{CHANNEL_ID}");
        let seal = |t: String| {
            cipher
                .seal(&secrecy::SecretString::from(t), &owner)
                .unwrap()
                .to_string()
        };
        jilo_core::ChannelConnection {
            user: user.clone(),
            channel_id: CHANNEL_ID.to_owned(),
            channel_name: CHANNEL_NAME.to_owned(),
            access_token: seal(access),
            access_expires_at: now.plus(std::time::Duration::from_secs(3599)),
            refresh_token: seal(refresh),
            scopes: vec![],
            connected_at: now,
            updated_at: now,
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> Option<Answer> {
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

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        let line = format!(
            "{} {}",
            req.method(),
            req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
        );
        self.lock().requests.push(line);
        let path = req.uri().path().to_owned();
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/o/oauth2/v2/auth") => self.authorize(req),
            ("POST", "/token") => self.token(req).await,
            ("POST", "/revoke") => self.revoke(req).await,
            ("GET", "/youtube/v3/channels") => self.channels(req),
            ("POST", "/upload/youtube/v3/videos") => self.start_session(req).await,
            ("PUT", "/upload/youtube/v3/videos") => self.put(req).await,
            ("POST", "/upload/youtube/v3/thumbnails/set") => self.thumbnail(req).await,
            ("POST", "/youtube/v3/playlistItems") => self.playlist(req).await,
            ("GET", "/youtube/v3/videos") => self.stats(req),
            _ => reply(404, google_error(404, "notFound", "no such endpoint")),
        }
    }

    fn authorize(&self, req: Request<Incoming>) -> Answer {
        let q = query(&req);
        let mut s = self.lock();
        let expect = |s: &mut State, k: &str, v: &str| {
            if q.get(k).map(String::as_str) != Some(v) {
                s.violation(format!("authorize: {k} is {:?}, not {v}", q.get(k)));
            }
        };
        expect(&mut s, "client_id", CLIENT_ID);
        expect(&mut s, "response_type", "code");
        expect(&mut s, "access_type", "offline");
        expect(&mut s, "prompt", "consent");
        expect(&mut s, "code_challenge_method", "S256");
        let scopes = q.get("scope").cloned().unwrap_or_default();
        for needed in [
            "https://www.googleapis.com/auth/youtube",
            "https://www.googleapis.com/auth/youtube.upload",
        ] {
            if !scopes.split(' ').any(|x| x == needed) {
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
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let location = format!(
            "{redirect}{sep}state={}&code={}&scope={}",
            urlencode(state),
            urlencode(&code),
            urlencode(&scopes)
        );
        empty(302, &[("location", location)])
    }

    async fn form(req: Request<Incoming>) -> (Option<String>, HashMap<String, String>) {
        let ctype = header(&req, "content-type");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        (
            ctype,
            url::form_urlencoded::parse(&body).into_owned().collect(),
        )
    }

    async fn token(&self, req: Request<Incoming>) -> Answer {
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
                s.access_tokens.insert(access.clone(), true);
                s.refresh_tokens.insert(refresh.clone(), true);
                s.issued += 1;
                reply(
                    200,
                    json!({"access_token": access, "expires_in": lifetime,
                        "refresh_token": refresh, "token_type": "Bearer",
                        "scope": "https://www.googleapis.com/auth/youtube https://www.googleapis.com/auth/youtube.upload"}),
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

    async fn revoke(&self, req: Request<Incoming>) -> Answer {
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

    fn channels(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
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

    async fn start_session(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        let ctype = header(&req, "content-type");
        let length = header(&req, "x-upload-content-length").and_then(|l| l.parse::<u64>().ok());
        let upload_type = header(&req, "x-upload-content-type").unwrap_or_default();
        let declared = header(&req, "content-length").and_then(|l| l.parse::<usize>().ok());
        let body = req.into_body().collect().await.unwrap().to_bytes();
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
        let upload = s.sessions.get_mut(id).unwrap();
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
        video
    }

    async fn put(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        self.lock().put_times.push(std::time::Instant::now());
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
                return reply(200, video);
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
        // A chunk: `bytes FIRST-LAST/TOTAL`.
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
        s.arrived += data.len() as u64;
        if cut {
            // The client went away mid-body: keep the whole units that arrived, as the
            // upload server may.
            let keep = (data.len() as u64 / UNIT) * UNIT;
            let upload = s.sessions.get_mut(&id).unwrap();
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
                .get_mut(&id)
                .unwrap()
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
                let mut answer = reply(*code, google_error(*code, "backendError", "Backend Error"));
                if let Ok(r) = answer.as_mut() {
                    r.headers_mut()
                        .insert("retry-after", secs.to_string().parse().unwrap());
                }
                return (answer, None);
            }
            Some(Fault::Expire) => {
                s.sessions.get_mut(&id).unwrap().expired = true;
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
        let upload = s.sessions.get_mut(&id).unwrap();
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

    async fn thumbnail(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        let ctype = header(&req, "content-type").unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
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

    async fn playlist(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let body = req.into_body().collect().await.unwrap().to_bytes();
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

    fn stats(&self, req: Request<Incoming>) -> Answer {
        if let Some(denied) = self.authorized(&req) {
            return denied;
        }
        let q = query(&req);
        if q.get("part").map(String::as_str) != Some("statistics") {
            self.lock()
                .violation(format!("videos.list part {:?}", q.get("part")));
        }
        let ids = q.get("id").cloned().unwrap_or_default();
        let s = self.lock();
        let items: Vec<Value> = ids
            .split(',')
            .filter(|id| {
                s.sessions
                    .values()
                    .any(|u| u.video.as_ref().is_some_and(|v| v["id"] == json!(id)))
            })
            .enumerate()
            .map(|(i, id)| {
                json!({"kind": "youtube#video", "id": id, "statistics": {
                    "viewCount": format!("{}", 12_345_678_901_u64 + i as u64),
                    "likeCount": "42", "favoriteCount": "0", "commentCount": "7"}})
            })
            .collect();
        reply(
            200,
            json!({"kind": "youtube#videoListResponse", "items": items}),
        )
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
