//! Publishing in the Studio: metadata suggestions through the creative model, durable
//! publication records (one per job and channel, written before the upload, holding the
//! session and the confirmed bytes), resumption of uploads a dead process left, and the
//! statistics sync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::creative::{MetadataBrief, MetadataSuggestion};
use crate::error::{Error, Result};
use crate::ids::{JobId, UserId};
use crate::job::JobState;
use crate::publish::{
    HeldPublication, Publication, PublicationClaim, PublicationKey, PublicationLease,
    PublicationOutcome, PublicationState, PublishMetadata, PublishRequest, PublishedVideo,
    StatsReading, UploadCheckpoint, UploadSession, UploadUpdate, MAX_DESCRIPTION_BYTES, MAX_TAGS,
    MAX_TAG_CHARS, MAX_TITLE_CHARS,
};
use crate::traits::{MediaStore, ProgressReporter, Publisher, UploadJournal};

use super::shared::{Inner, Studio};

/// Keeps what the publisher learns in the publication record, under this process's lease.
struct StoreJournal {
    inner: Arc<Inner>,
    /// The record, and this process's lease token.
    held: HeldPublication,
    session: std::sync::Mutex<Option<UploadSession>>,
    /// The video exists and the record ended published: the lease is over.
    uploaded: AtomicBool,
}

impl StoreJournal {
    fn until(&self) -> crate::ids::Timestamp {
        self.inner.clock.now().plus(self.inner.policy.publish_lease)
    }

    async fn save(&self, session: UploadSession) -> Result<()> {
        self.inner
            .publications
            .save_upload(&UploadCheckpoint {
                held: self.held.clone(),
                session: session.clone(),
                until: self.until(),
            })
            .await?;
        if let Ok(mut kept) = self.session.lock() {
            *kept = Some(session);
        }
        Ok(())
    }

    /// Extends the lease while a long call is in flight (before a session exists too).
    async fn renew(&self) -> Result<()> {
        self.inner
            .publications
            .renew_publication(&self.held, self.until())
            .await
    }
}

#[async_trait]
impl UploadJournal for StoreJournal {
    async fn session_opened(&self, session: &UploadSession) -> Result<()> {
        self.save(session.clone()).await
    }

    async fn confirmed(&self, confirmed: u64) -> Result<()> {
        let session = self.session.lock().ok().and_then(|s| s.clone());
        match session {
            Some(session) => {
                self.save(UploadSession {
                    uri: session.uri,
                    confirmed,
                })
                .await
            }
            None => Err(Error::not_allowed(
                "a confirmed count arrived before the upload session",
            )),
        }
    }

    async fn uploaded(&self, video: &PublishedVideo) -> Result<()> {
        // The video exists: from here on nothing may upload it again.
        self.inner
            .publications
            .finish_publication(
                &self.held,
                &PublicationOutcome::Published {
                    video: video.clone(),
                    at: self.inner.clock.now(),
                },
            )
            .await?;
        self.uploaded.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The longest pause a platform's `Retry-After` holds an upload for.
const MAX_PUBLISH_PAUSE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Whether retrying the same upload later may work (the record stays uploading).
fn resumable(e: &Error) -> bool {
    e.is_retryable() || matches!(e, Error::OutcomeUnknown { .. })
}

/// Cuts a suggestion to the rules [`PublishMetadata::validate`] checks.
fn fit_suggestion(mut s: MetadataSuggestion) -> MetadataSuggestion {
    let clean = |t: &str| t.replace(['<', '>'], "").trim().to_owned();
    s.titles = s
        .titles
        .iter()
        .map(|t| clean(t).chars().take(MAX_TITLE_CHARS).collect::<String>())
        .filter(|t| !t.is_empty())
        .collect();
    let mut description = s.description.replace(['<', '>'], "");
    while description.len() > MAX_DESCRIPTION_BYTES {
        description.pop();
    }
    s.description = description;
    let mut tags: Vec<String> = Vec::new();
    for tag in &s.tags {
        let t: String = clean(&tag.replace(',', " "))
            .chars()
            .take(MAX_TAG_CHARS)
            .collect();
        let t = t.trim().to_owned();
        if !t.is_empty() && !tags.contains(&t) && tags.len() < MAX_TAGS {
            tags.push(t);
        }
    }
    while crate::publish::tags_length(&tags) > crate::publish::MAX_TAGS_CHARS {
        tags.pop();
    }
    s.tags = tags;
    s
}

impl Studio {
    /// Suggests YouTube metadata for a finished job's video through the creative model (the
    /// seed's 3 titles, a description and 10-15 tags), cut to the rules
    /// [`PublishMetadata::validate`] checks. `keywords` are worked in.
    pub async fn suggest_metadata(
        &self,
        user: &UserId,
        job: &JobId,
        keywords: Vec<String>,
    ) -> Result<MetadataSuggestion> {
        let inner = &self.inner;
        let model = inner
            .creative
            .as_ref()
            .ok_or_else(|| Error::invalid("creative_model", "the Studio has no creative model"))?;
        let job = inner.jobs.job(job).await?;
        if &job.user != user {
            return Err(Error::not_found("job", &job.id));
        }
        let brief = MetadataBrief {
            prompt: job.request.prompt.clone(),
            duration_secs: job.request.duration_secs,
            keywords,
        };
        Ok(fit_suggestion(model.suggest_metadata(&brief).await?))
    }

    /// Publishes a finished job's stored video to a channel the user connected, durably: a
    /// record per job and channel is written before the upload starts and holds the session
    /// and the bytes YouTube confirmed as it goes, so if this process dies the upload is
    /// resumed from the confirmed byte by the next [`Studio::resume_publications`] (or
    /// [`Studio::run`]). Publishing the same job to the same channel again returns the first
    /// record instead of uploading again (a failed one starts over; one another process is
    /// uploading, or that the platform asked to pause, is returned as it is, uploading: the
    /// worker resumes a paused one when the time is up).
    ///
    /// Metadata is checked before anything is written or sent. A quota, a revoked channel or
    /// refused metadata ends the record as failed and is returned; an outage or a cut
    /// connection leaves it uploading, to be resumed, and is returned.
    pub async fn publish(
        &self,
        user: &UserId,
        job: &JobId,
        channel_id: &str,
        metadata: PublishMetadata,
        progress: ProgressReporter,
    ) -> Result<Publication> {
        let inner = &self.inner;
        metadata.validate()?;
        let (publisher, media) = self.publishing_parts()?;
        let job = inner.jobs.job(job).await?;
        if &job.user != user {
            return Err(Error::not_found("job", &job.id));
        }
        let stored = match (&job.state, &job.output) {
            (JobState::Completed, Some(stored)) => stored.clone(),
            _ => {
                return Err(Error::not_allowed(format!(
                    "job {} has no stored video to publish ({})",
                    job.id,
                    job.state.as_str()
                )))
            }
        };
        let info = media.info(&stored.key).await?;
        let request = PublishRequest {
            user: user.clone(),
            job: job.id.clone(),
            channel_id: channel_id.to_owned(),
            media_key: stored.key.clone(),
            total_bytes: info.bytes,
            content_type: stored
                .content_type
                .clone()
                .or(info.content_type)
                .unwrap_or_else(|| "video/mp4".to_owned()),
            metadata,
            session: None,
        };
        let now = inner.clock.now();
        let record = inner
            .publications
            .begin_publication(&Publication::new(&request, now))
            .await?
            .publication;
        if record.state != PublicationState::Uploading {
            return Ok(record);
        }
        self.drive_publication(record, publisher, media, progress)
            .await
    }

    fn publishing_parts(&self) -> Result<(Arc<dyn Publisher>, Arc<dyn MediaStore>)> {
        let publisher = self
            .inner
            .publisher
            .clone()
            .ok_or_else(|| Error::invalid("publisher", "the Studio has no publisher"))?;
        let media =
            self.inner.media.clone().ok_or_else(|| {
                Error::invalid("media_store", "publishing reads from media storage")
            })?;
        Ok((publisher, media))
    }

    /// Takes the record's lease and uploads (or resumes). Returns the record as it ends, or
    /// as it is when another process holds it.
    async fn drive_publication(
        &self,
        record: Publication,
        publisher: Arc<dyn Publisher>,
        media: Arc<dyn MediaStore>,
        progress: ProgressReporter,
    ) -> Result<Publication> {
        let inner = &self.inner;
        let token = inner.lease_token();
        let now = inner.clock.now();
        let key = PublicationKey::of(&record);
        let held = HeldPublication {
            key: key.clone(),
            token: token.clone(),
        };
        let claim = PublicationClaim {
            key: key.clone(),
            lease: PublicationLease {
                token: token.clone(),
                until: now.plus(inner.policy.publish_lease),
            },
            now,
        };
        let Some(claimed) = inner.publications.claim_publication(&claim).await? else {
            // Another process is uploading it (or it just ended): the record as it is.
            return Ok(inner
                .publications
                .publication(&key)
                .await?
                .unwrap_or(record));
        };
        if claimed.attempts > inner.policy.publish_max_attempts {
            let reason = format!(
                "gave up after {} upload attempts",
                inner.policy.publish_max_attempts
            );
            tracing::warn!(job = %claimed.job, channel = %claimed.channel_id, "{reason}");
            return inner
                .publications
                .finish_publication(
                    &held,
                    &PublicationOutcome::Failed {
                        reason,
                        at: inner.clock.now(),
                    },
                )
                .await;
        }
        let journal = Arc::new(StoreJournal {
            inner: inner.clone(),
            held: held.clone(),
            session: std::sync::Mutex::new(claimed.session.clone()),
            uploaded: AtomicBool::new(false),
        });
        let request = claimed.request();
        tracing::info!(job = %claimed.job, channel = %claimed.channel_id, attempt = claimed.attempts, resumed = claimed.session.is_some(), "publishing");
        // The caller's reporter, and every watcher of this process's uploads.
        let progress = {
            let (updates, job, channel_id) = (
                inner.uploads.clone(),
                claimed.job.clone(),
                claimed.channel_id.clone(),
            );
            ProgressReporter::new(move |p| {
                progress.report(p);
                // No watcher is not an error.
                let _ = updates.send(UploadUpdate {
                    job: job.clone(),
                    channel_id: channel_id.clone(),
                    progress: p,
                });
            })
        };
        let upload = publisher.publish(&request, media, journal.clone(), progress);
        let renew_every = inner.policy.publish_lease / 3;
        let renewing = async {
            loop {
                tokio::time::sleep(renew_every).await;
                // Once the video exists the record holds no lease: the thumbnail and playlist
                // that follow must not be cut short by a renewal the ended record refuses.
                if journal.uploaded.load(Ordering::SeqCst) {
                    return std::future::pending().await;
                }
                match journal.renew().await {
                    Ok(()) => {}
                    Err(_) if journal.uploaded.load(Ordering::SeqCst) => {
                        return std::future::pending().await
                    }
                    Err(e @ Error::LostRace { .. }) | Err(e @ Error::NotFound { .. }) => {
                        // The record may have ended published a moment ago by this upload
                        // (its end and this renewal crossed): then the lease is simply over.
                        let ended = inner.publications.publication(&key).await;
                        if matches!(&ended, Ok(Some(p)) if p.state == PublicationState::Published) {
                            return std::future::pending().await;
                        }
                        // Another process took the upload over: stop sending to its session.
                        return e;
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing an upload's lease failed"),
                }
            }
        };
        let result = tokio::select! {
            r = upload => r,
            lost = renewing => Err(lost),
        };
        let job = &claimed.job;
        match result {
            Ok(video) => {
                let current = inner.publications.publication(&key).await?;
                let already = current
                    .as_ref()
                    .is_some_and(|p| p.state == PublicationState::Published);
                if already {
                    if !video.warnings.is_empty() {
                        inner
                            .publications
                            .note_publication(&key, &video.warnings)
                            .await?;
                    }
                } else {
                    // A publisher that did not journal the upload: end the record now.
                    inner
                        .publications
                        .finish_publication(
                            &held,
                            &PublicationOutcome::Published {
                                video: video.clone(),
                                at: inner.clock.now(),
                            },
                        )
                        .await?;
                }
                tracing::info!(job = %job, video = %video.video_id, "published");
                if !already {
                    crate::telemetry::uploaded(claimed.total_bytes);
                }
                inner
                    .publications
                    .publication(&key)
                    .await?
                    .ok_or_else(|| Error::not_found("publication", key.to_string()))
            }
            Err(e) if resumable(&e) => {
                match e.retry_after() {
                    // The platform asked for a pause: the lease is kept until then, so no
                    // resumption asks early (and spends an attempt) before the time is up.
                    Some(wait) => {
                        // At most a day: a session lives about a week, and an absurd answer
                        // must not lock the record away.
                        let wait = wait.min(MAX_PUBLISH_PAUSE);
                        tracing::warn!(job = %job, error = %e, wait_s = wait.as_secs(), "upload paused as the platform asked; it will be resumed");
                        let until = inner.clock.now().plus(wait);
                        if let Err(kept) = inner.publications.renew_publication(&held, until).await
                        {
                            tracing::warn!(error = %kept, "keeping a paused upload's lease failed");
                        }
                    }
                    None => {
                        tracing::warn!(job = %job, error = %e, "upload interrupted; it will be resumed");
                        inner.publications.release_publication(&held).await?;
                    }
                }
                Err(e)
            }
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "publishing failed");
                let ended = inner
                    .publications
                    .finish_publication(
                        &held,
                        &PublicationOutcome::Failed {
                            reason: e.to_string(),
                            at: inner.clock.now(),
                        },
                    )
                    .await;
                if let Err(store) = ended {
                    tracing::warn!(error = %store, "recording the failed publication failed");
                }
                Err(e)
            }
        }
    }

    /// Every upload's progress in this process from now on: those a host started with
    /// [`Studio::publish`] and those the worker resumed ([`Studio::resume_publications`]),
    /// for a progress page or SSE that outlives the request that began the upload. A watcher
    /// more than 256 updates behind skips the oldest (the next update says where it is).
    ///
    /// ```no_run
    /// # async fn watch(studio: jilo_core::Studio) {
    /// use futures::StreamExt;
    /// let mut uploads = studio.watch_uploads();
    /// while let Some(update) = uploads.next().await {
    ///     println!("{}: {}%", update.job, update.progress.percent());
    /// }
    /// # }
    /// ```
    pub fn watch_uploads(&self) -> futures::stream::BoxStream<'static, UploadUpdate> {
        use futures::StreamExt;
        let rx = self.inner.uploads.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(update) => return Some((update, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "an upload watcher fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    /// Resumes uploads a dead process left (their lease lapsed), each from the byte YouTube
    /// confirmed, one at a time. Returns how many ended published. [`Studio::run`] calls it
    /// every [`crate::Policy::publish_check_interval`]; one pass runs at a time per process.
    pub async fn resume_publications(&self) -> usize {
        let inner = &self.inner;
        let Ok((publisher, media)) = self.publishing_parts() else {
            return 0;
        };
        if inner.resuming_uploads.swap(true, Ordering::SeqCst) {
            return 0;
        }
        let mut published = 0;
        match inner
            .publications
            .stalled_publications(inner.clock.now(), 16)
            .await
        {
            Ok(stalled) => {
                for record in stalled {
                    let job = record.job.clone();
                    match self
                        .drive_publication(
                            record,
                            publisher.clone(),
                            media.clone(),
                            ProgressReporter::none(),
                        )
                        .await
                    {
                        Ok(p) if p.state == PublicationState::Published => published += 1,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(job = %job, error = %e, "resuming an upload failed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing stalled uploads failed"),
        }
        inner.resuming_uploads.store(false, Ordering::SeqCst);
        published
    }

    /// Reads the statistics (views, likes, comments) of published videos not read within
    /// [`crate::Policy::stats_interval`], 50 per call per channel, and keeps them on their
    /// records. Returns how many were updated. [`Studio::run`] calls it on that schedule.
    pub async fn sync_stats(&self) -> Result<usize> {
        let inner = &self.inner;
        let publisher = inner
            .publisher
            .clone()
            .ok_or_else(|| Error::invalid("publisher", "the Studio has no publisher"))?;
        let now = inner.clock.now();
        let before = crate::ids::Timestamp::from_millis(
            now.as_millis()
                - i64::try_from(inner.policy.stats_interval.as_millis()).unwrap_or(i64::MAX),
        );
        let due = inner
            .publications
            .publications_due_for_stats(before, 500)
            .await?;
        let mut by_channel: BTreeMap<(UserId, String), Vec<Publication>> = BTreeMap::new();
        for p in due {
            by_channel
                .entry((p.user.clone(), p.channel_id.clone()))
                .or_default()
                .push(p);
        }
        let mut updated = 0;
        for ((user, channel), records) in by_channel {
            for batch in records.chunks(50) {
                let ids: Vec<String> = batch.iter().filter_map(|p| p.video_id.clone()).collect();
                let stats = match publisher.stats(&user, &channel, &ids).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(channel = %channel, error = %e, "reading statistics failed");
                        continue;
                    }
                };
                for p in batch {
                    let Some(id) = p.video_id.as_deref() else {
                        continue;
                    };
                    // A video the platform no longer has keeps its last counts, read again
                    // next interval, so it does not stay first in line.
                    let counts = stats
                        .iter()
                        .find(|(v, _)| v == id)
                        .map(|(_, c)| *c)
                        .or_else(|| p.stats.map(|(c, _)| c))
                        .unwrap_or_default();
                    match inner
                        .publications
                        .record_stats(&StatsReading {
                            key: PublicationKey::of(p),
                            stats: counts,
                            at: now,
                        })
                        .await
                    {
                        Ok(()) => updated += 1,
                        Err(e) => {
                            tracing::warn!(job = %p.job, error = %e, "keeping statistics failed")
                        }
                    }
                }
            }
        }
        Ok(updated)
    }

    /// A job's publication on a channel, if it was published there or is being.
    pub async fn publication(&self, job: &JobId, channel_id: &str) -> Result<Option<Publication>> {
        self.inner
            .publications
            .publication(&PublicationKey::new(job.clone(), channel_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_cut_to_the_rules() {
        let s = fit_suggestion(MetadataSuggestion {
            titles: vec!["<b>".repeat(5), "x".repeat(120), "  ".into()],
            description: "é".repeat(3000),
            tags: (0..20)
                .map(|i| format!("tag, number {i} {}", "y".repeat(30)))
                .collect(),
        });
        assert_eq!(s.titles.len(), 2);
        assert_eq!(s.titles[0], "bbbbb");
        assert_eq!(s.titles[1].chars().count(), 100);
        assert!(s.description.len() <= 5000);
        assert_eq!(s.tags.len(), 15);
        let m = PublishMetadata {
            title: s.titles[1].clone(),
            description: s.description.clone(),
            tags: s.tags.clone(),
            category_id: None,
            privacy: crate::publish::Privacy::Public,
            publish_at: None,
            playlist_id: None,
            thumbnail_key: None,
        };
        assert!(m.validate().is_ok(), "{:?}", m.validate());
    }
}
