//! The [`Publisher`] YouTube is: a request checked before any call, the resumable upload,
//! the thumbnail and playlist after it (their failures are warnings), and statistics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jilo_core::{
    Error, MediaStore, ProgressReporter, PublishRequest, PublishedVideo, Publisher, Result,
    UploadJournal, UserId, VideoStats,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::http::{retry_after, transport_error, CallKind, TracedSend};

use super::config::YouTubePublisher;
use super::config::MAX_THUMBNAIL_BYTES;
use super::errors::{youtube_error, SERVICE};
use super::wire::video_from;

impl YouTubePublisher {
    /// Checks what can be checked before any call: the metadata, the size, the thumbnail.
    async fn check(&self, request: &PublishRequest, media: &dyn MediaStore) -> Result<()> {
        request.metadata.validate()?;
        if request.total_bytes == 0 {
            return Err(Error::invalid(
                "total_bytes",
                "an empty video cannot be uploaded",
            ));
        }
        if !(request.content_type.starts_with("video/")
            || request.content_type == "application/octet-stream")
        {
            return Err(Error::invalid(
                "content_type",
                format!("`{}` is not a video type", request.content_type),
            ));
        }
        let info = media.info(&request.media_key).await?;
        if info.bytes != request.total_bytes {
            return Err(Error::invalid(
                "total_bytes",
                format!(
                    "the request says {} bytes but media storage holds {}",
                    request.total_bytes, info.bytes
                ),
            ));
        }
        if let Some(key) = &request.metadata.thumbnail_key {
            let thumb = media.info(key).await?;
            if thumb.bytes > MAX_THUMBNAIL_BYTES {
                return Err(Error::invalid(
                    "thumbnail_key",
                    format!(
                        "the thumbnail is {} bytes; at most {MAX_THUMBNAIL_BYTES}",
                        thumb.bytes
                    ),
                ));
            }
            if !matches!(
                thumb.content_type.as_deref(),
                Some("image/jpeg" | "image/png")
            ) {
                return Err(Error::invalid(
                    "thumbnail_key",
                    "a thumbnail is a JPEG or PNG (`.jpg`, `.png`)",
                ));
            }
        }
        Ok(())
    }

    /// `Ok` for a 2xx answer, else YouTube's error read from it.
    async fn succeeded(&self, response: reqwest::Response) -> Result<()> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(youtube_error(status, &text, wait, self.clock.now()))
    }

    async fn set_thumbnail(
        &self,
        video_id: &str,
        key: &str,
        media: &dyn MediaStore,
        token: &SecretString,
    ) -> Result<()> {
        use futures::StreamExt;
        let info = media.info(key).await?;
        let mut stream = media.read_from(key, 0).await?;
        let mut image = Vec::with_capacity(usize::try_from(info.bytes).unwrap_or(0));
        while let Some(piece) = stream.next().await {
            image.extend_from_slice(&piece?);
        }
        let url = format!(
            "{}/upload/youtube/v3/thumbnails/set?videoId={video_id}&uploadType=media",
            self.upload_url
        );
        let response = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .header(
                "content-type",
                info.content_type.as_deref().unwrap_or("image/jpeg"),
            )
            .timeout(Duration::from_secs(60))
            .body(image)
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        self.succeeded(response).await
    }

    async fn add_to_playlist(
        &self,
        video_id: &str,
        playlist_id: &str,
        token: &SecretString,
    ) -> Result<()> {
        let url = format!("{}/youtube/v3/playlistItems?part=snippet", self.api_url);
        let body = json!({
            "snippet": {
                "playlistId": playlist_id,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            }
        });
        let response = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .json(&body)
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        self.succeeded(response).await
    }
}

#[async_trait]
impl Publisher for YouTubePublisher {
    async fn publish(
        &self,
        request: &PublishRequest,
        media: Arc<dyn MediaStore>,
        journal: Arc<dyn UploadJournal>,
        progress: ProgressReporter,
    ) -> Result<PublishedVideo> {
        self.check(request, media.as_ref()).await?;
        let resource = self
            .upload(request, media.as_ref(), journal.as_ref(), &progress)
            .await?;
        let mut video = video_from(&resource, request)?;
        journal.uploaded(&video).await?;
        tracing::info!(job = %request.job, video = %video.video_id, "video uploaded");
        let wants_extras =
            request.metadata.thumbnail_key.is_some() || request.metadata.playlist_id.is_some();
        if !wants_extras {
            return Ok(video);
        }
        // The video is published whatever happens from here: failures are warnings.
        let token = match self
            .access_token(&request.user, &request.channel_id, false)
            .await
        {
            Ok(token) => token,
            Err(e) => {
                video
                    .warnings
                    .push(format!("the thumbnail and playlist were not set: {e}"));
                return Ok(video);
            }
        };
        if let Some(key) = &request.metadata.thumbnail_key {
            if let Err(e) = self
                .set_thumbnail(&video.video_id, key, media.as_ref(), &token)
                .await
            {
                tracing::warn!(video = %video.video_id, error = %e, "thumbnail not set");
                video
                    .warnings
                    .push(format!("the thumbnail was not set: {e}"));
            }
        }
        if let Some(playlist) = &request.metadata.playlist_id {
            if let Err(e) = self
                .add_to_playlist(&video.video_id, playlist, &token)
                .await
            {
                tracing::warn!(video = %video.video_id, error = %e, "not added to the playlist");
                video.warnings.push(format!(
                    "the video was not added to playlist {playlist}: {e}"
                ));
            }
        }
        Ok(video)
    }

    async fn stats(
        &self,
        user: &UserId,
        channel_id: &str,
        video_ids: &[String],
    ) -> Result<Vec<(String, VideoStats)>> {
        if video_ids.is_empty() {
            return Ok(Vec::new());
        }
        if video_ids.len() > 50 {
            return Err(Error::invalid("video_ids", "at most 50 ids a call"));
        }
        let url = format!(
            "{}/youtube/v3/videos?part=statistics&id={}",
            self.api_url,
            video_ids.join(",")
        );
        let token = self.access_token(user, channel_id, false).await?;
        let body = match self.get_json(&url, &token).await {
            // A token revoked or expired early: refresh once.
            Err(Error::Unauthorized { .. }) => {
                let token = self.access_token(user, channel_id, true).await?;
                self.get_json(&url, &token).await?
            }
            other => other?,
        };
        let count = |item: &Value, field: &str| -> u64 {
            item.pointer(&format!("/statistics/{field}"))
                .and_then(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| v.as_u64())
                })
                .unwrap_or(0)
        };
        Ok(body
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let id = item.get("id")?.as_str()?.to_owned();
                        Some((
                            id,
                            VideoStats {
                                views: count(item, "viewCount"),
                                likes: count(item, "likeCount"),
                                comments: count(item, "commentCount"),
                            },
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
