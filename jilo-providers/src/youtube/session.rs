//! The publisher's side of a resumable upload: the session URI sealed in the journal, the
//! session started, chunks streamed from media storage, the server asked what it holds, and
//! the loop that resumes, backs off, refreshes the token and starts over when a session
//! expires.

use std::time::Duration;

use jilo_core::{
    Error, MediaStore, ProgressReporter, PublishRequest, Result, UploadJournal, UploadProgress,
    UploadSession,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::http::{retry_after, transport_error, CallKind, TracedSend};

use super::config::YouTubePublisher;
use super::config::{chunk_timeout, TOKEN_RECHECK};
use super::errors::{asked_to_wait, failure, protocol, Failure, SERVICE};
use super::upload::{backoff, held_from_range, ChunkReader, Step};
use super::wire::video_resource;

impl YouTubePublisher {
    /// Whom an upload session belongs to: one job on one user's channel.
    fn session_owner(request: &PublishRequest) -> String {
        format!(
            "{}/{}/upload/{}",
            request.user, request.channel_id, request.job
        )
    }

    /// A session URI as the journal keeps it: sealed like the channel's tokens, since whoever
    /// holds the URI can send bytes into the upload (a video on the user's channel).
    fn seal_session(&self, request: &PublishRequest, uri: &str) -> Result<String> {
        let uri = SecretString::from(uri.to_owned());
        Ok(self
            .cipher
            .seal(&uri, &Self::session_owner(request))?
            .to_string())
    }

    /// The session URI of a journaled session, as [`Self::seal_session`] sealed it for this
    /// job and channel. One that does not open (altered, sealed for another job, or by a key
    /// no longer configured) never will: the try ends with that cause ([`Error::InvalidInput`]
    /// on `upload session`), and the bearer token is never sent to an address not sealed here.
    fn open_session_uri(&self, request: &PublishRequest, kept: &str) -> Result<String> {
        kept.parse::<crate::tokens::SealedToken>()
            .and_then(|sealed| {
                self.cipher
                    .open(&sealed, &Self::session_owner(request))
                    .map(|uri| uri.expose_secret().to_owned())
            })
            .map_err(|e| {
                Error::invalid(
                    "upload session",
                    format!("the journaled upload session cannot be opened: {e}"),
                )
            })
    }

    /// Starts an upload session; its URI comes back in `Location`.
    async fn open_session(
        &self,
        request: &PublishRequest,
        token: &SecretString,
    ) -> std::result::Result<String, Failure> {
        let url = format!(
            "{}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status",
            self.upload_url
        );
        let body = video_resource(request).to_string();
        let sent = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .header("content-type", "application/json; charset=UTF-8")
            .header("x-upload-content-length", request.total_bytes.to_string())
            .header("x-upload-content-type", request.content_type.as_str())
            .timeout(Duration::from_secs(60))
            .body(body)
            .traced_send(SERVICE)
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure::transient(transport_error(
                    SERVICE,
                    CallKind::Read,
                    e,
                )))
            }
        };
        let status = response.status().as_u16();
        if status == 200 || status == 201 {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| Failure::Fatal(protocol("the session start has no Location")))?;
            let uri = match url::Url::parse(&url).and_then(|base| base.join(&location)) {
                Ok(u) => u.to_string(),
                Err(_) => return Err(Failure::Fatal(protocol("the session URI is not a URL"))),
            };
            return Ok(uri);
        }
        let wait = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(failure(status, &text, wait, self.clock.now()))
    }

    /// Reads an upload request's answer.
    async fn step(&self, response: reqwest::Response) -> std::result::Result<Step, Failure> {
        let status = response.status().as_u16();
        match status {
            308 => {
                let range = response
                    .headers()
                    .get(reqwest::header::RANGE)
                    .and_then(|r| r.to_str().ok());
                let wait = retry_after(response.headers());
                held_from_range(range)
                    .map(|held| Step::Incomplete(held, wait))
                    .map_err(Failure::Fatal)
            }
            200 | 201 => {
                let text = response
                    .text()
                    .await
                    .map_err(|e| Failure::transient(transport_error(SERVICE, CallKind::Read, e)))?;
                // The video exists: an unreadable answer is asked for again (a status query
                // returns the same final answer), never taken as a failure.
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| {
                        v.get("id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| !id.is_empty())
                    })
                    .map(Step::Done)
                    .ok_or_else(|| {
                        Failure::transient(Error::Unavailable {
                            service: SERVICE.to_owned(),
                            reason: "the finished upload's answer names no video".to_owned(),
                            response: Some(jilo_core::HttpFailure::new(status, &text)),
                            source: None,
                        })
                    })
            }
            404 | 410 => Ok(Step::Expired),
            _ => {
                let wait = retry_after(response.headers());
                let text = response.text().await.unwrap_or_default();
                Err(failure(status, &text, wait, self.clock.now()))
            }
        }
    }

    /// `PUT` with no body and `Content-Range: bytes */TOTAL`: what the server holds.
    async fn status_query(
        &self,
        session: &str,
        total: u64,
        token: &SecretString,
    ) -> std::result::Result<Step, Failure> {
        let sent = self
            .http
            .put(session)
            .bearer_auth(token.expose_secret())
            .header("content-length", "0")
            .header("content-range", format!("bytes */{total}"))
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await;
        match sent {
            Ok(r) => self.step(r).await,
            Err(e) => Err(Failure::transient(transport_error(
                SERVICE,
                CallKind::Read,
                e,
            ))),
        }
    }

    async fn put_chunk(
        &self,
        session: &str,
        offset: u64,
        len: usize,
        body: reqwest::Body,
        request: &PublishRequest,
        token: &SecretString,
    ) -> std::result::Result<Step, Failure> {
        let last = offset + len as u64 - 1;
        let sent = self
            .http
            .put(session)
            .bearer_auth(token.expose_secret())
            .header("content-type", request.content_type.as_str())
            .header("content-length", len.to_string())
            .header(
                "content-range",
                format!("bytes {offset}-{last}/{}", request.total_bytes),
            )
            .timeout(chunk_timeout(len))
            .body(body)
            .traced_send(SERVICE)
            .await;
        match sent {
            Ok(r) => self.step(r).await,
            Err(e) => Err(Failure::transient(transport_error(
                SERVICE,
                CallKind::Read,
                e,
            ))),
        }
    }

    /// The resumable upload: returns the video resource.
    pub(super) async fn upload(
        &self,
        request: &PublishRequest,
        media: &dyn MediaStore,
        journal: &dyn UploadJournal,
        progress: &ProgressReporter,
    ) -> Result<Value> {
        let total = request.total_bytes;
        let mut token = self
            .access_token(&request.user, &request.channel_id, false)
            .await?;
        let mut token_checked = self.clock.now();
        let mut reader = ChunkReader::new(media, &request.media_key, total);
        let mut failures = 0u32;
        let mut restarts = 0u32;
        let mut refreshed = false;
        let (mut session, mut confirmed, mut ask) = match &request.session {
            Some(s) => (
                Some(self.open_session_uri(request, &s.uri)?),
                s.confirmed,
                true,
            ),
            None => (None, 0, false),
        };
        loop {
            // A long upload outlives its access token: refresh it before it expires rather
            // than lose a chunk to a 401.
            let now = self.clock.now();
            if now >= token_checked.plus(TOKEN_RECHECK) {
                token_checked = now;
                match self
                    .access_token(&request.user, &request.channel_id, false)
                    .await
                {
                    Ok(fresh) => token = fresh,
                    // The token in hand has up to the margin left and may finish the upload;
                    // a 401 refreshes it then (and a revoked grant ends the upload there).
                    Err(e) => {
                        tracing::warn!(job = %request.job, error = %e, "refreshing the access token mid-upload failed")
                    }
                }
            }
            let outcome = match &session {
                None => match self.open_session(request, &token).await {
                    Ok(uri) => {
                        journal
                            .session_opened(&UploadSession {
                                uri: self.seal_session(request, &uri)?,
                                confirmed: 0,
                            })
                            .await?;
                        tracing::info!(job = %request.job, channel = %request.channel_id, bytes = total, "upload session opened");
                        session = Some(uri);
                        confirmed = 0;
                        ask = false;
                        continue;
                    }
                    Err(f) => Err(f),
                },
                // Asked to, or the server holds every byte but has not answered with the video.
                Some(uri) if ask || confirmed >= total => {
                    self.status_query(uri, total, &token).await
                }
                Some(uri) => {
                    // The body streams as media storage is read: a chunk is never held
                    // whole, and reading overlaps sending.
                    let len = reader.chunk_len(confirmed, self.chunk_size);
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    let body = reqwest::Body::wrap_stream(futures::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) },
                    ));
                    let put = self.put_chunk(uri, confirmed, len, body, request, &token);
                    let feed = reader.feed(confirmed, len, tx);
                    tokio::pin!(put);
                    tokio::pin!(feed);
                    let mut fed = None;
                    // The answer ends the chunk, even one that came before the whole body
                    // was read (the feed is then dropped; the next chunk reads afresh).
                    let sent = loop {
                        tokio::select! {
                            sent = &mut put => break sent,
                            done = &mut feed, if fed.is_none() => fed = Some(done),
                        }
                    };
                    match (fed, sent) {
                        // Media storage failing for good (the media is shorter than declared).
                        (Some(Err(e)), _) if !e.is_retryable() => return Err(e),
                        // A read that failed cut the chunk: back off, ask, go on.
                        (Some(Err(e)), Err(_)) => Err(Failure::transient(e)),
                        (_, sent) => sent,
                    }
                }
            };
            match outcome {
                Ok(Step::Done(video)) => {
                    progress.report(UploadProgress {
                        uploaded: total,
                        total,
                    });
                    return Ok(video);
                }
                Ok(Step::Incomplete(held, asked)) => {
                    if held > total {
                        return Err(protocol(format!(
                            "the server says it holds {held} of {total} bytes"
                        )));
                    }
                    let moved = held != confirmed || ask;
                    ask = false;
                    if held > confirmed {
                        failures = 0;
                        refreshed = false;
                    } else if !moved || held < confirmed {
                        // Nothing taken: count it, so a server that takes nothing ends.
                        failures += 1;
                    }
                    confirmed = held;
                    if session.is_some() {
                        journal.confirmed(held).await?;
                    }
                    progress.report(UploadProgress {
                        uploaded: held,
                        total,
                    });
                    // A 308 with `Retry-After`: no more bytes before then. A long wait ends
                    // this try (the record resumes later from what the server holds).
                    if let Some(asked) = asked.filter(|d| *d > self.retry.max_delay) {
                        return Err(asked_to_wait(asked));
                    }
                    if failures == 0 {
                        if let Some(asked) = asked {
                            tokio::time::sleep(asked).await;
                        }
                    } else {
                        if failures >= self.retry.max_failures {
                            return Err(Error::Unavailable {
                                service: SERVICE.to_owned(),
                                reason: format!(
                                    "the upload server took no bytes {failures} times in a row"
                                ),
                                response: None,
                                source: None,
                            });
                        }
                        tokio::time::sleep(backoff(
                            failures,
                            self.retry.base,
                            self.retry.max_delay,
                            asked,
                        ))
                        .await;
                    }
                }
                Ok(Step::Expired) => {
                    restarts += 1;
                    if restarts > self.retry.max_restarts {
                        return Err(Error::Unavailable {
                            service: SERVICE.to_owned(),
                            reason: format!("the upload session expired {restarts} times"),
                            response: None,
                            source: None,
                        });
                    }
                    tracing::warn!(job = %request.job, "upload session expired; starting a new one");
                    session = None;
                    confirmed = 0;
                }
                Err(Failure::Auth(e)) => {
                    if refreshed {
                        return Err(e);
                    }
                    refreshed = true;
                    token = self
                        .access_token(&request.user, &request.channel_id, true)
                        .await?;
                    ask = session.is_some();
                }
                Err(Failure::Transient(e, asked)) => {
                    failures += 1;
                    if failures >= self.retry.max_failures {
                        return Err(e);
                    }
                    let asked = asked.or(e.retry_after());
                    // A long Retry-After ends this try instead (the record resumes later,
                    // not before the time asked).
                    if let Some(asked) = asked.filter(|d| *d > self.retry.max_delay) {
                        return Err(match e {
                            Error::RateLimited { .. } => e,
                            _ => asked_to_wait(asked),
                        });
                    }
                    let wait = backoff(failures, self.retry.base, self.retry.max_delay, asked);
                    tracing::debug!(job = %request.job, failures, wait_ms = wait.as_millis() as u64, error = %e, "upload interrupted; asking the server what it holds");
                    tokio::time::sleep(wait).await;
                    ask = session.is_some();
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
}
