//! Publishing a stored video to a platform account.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// The longest description, in UTF-8 bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 5000;
/// The most characters all tags take together, counted as YouTube counts them.
pub const MAX_TAGS_CHARS: usize = 500;
/// The most tags (the seed's rule).
pub const MAX_TAGS: usize = 15;
/// The longest tag, in characters (the seed's rule).
pub const MAX_TAG_CHARS: usize = 30;

/// Who can see a published video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Anyone.
    Public,
    /// Anyone with the link.
    Unlisted,
    /// Only the owner.
    Private,
}

/// Title, description, tags and the rest of what a platform shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishMetadata {
    /// At most 100 characters.
    pub title: String,
    /// At most 5,000 bytes (UTF-8).
    pub description: String,
    /// At most 15 tags of at most 30 characters.
    pub tags: Vec<String>,
    /// The platform's category id (YouTube: `28` is Science & Technology).
    pub category_id: Option<String>,
    /// Who can see it.
    pub privacy: Privacy,
    /// Publish later at this time (the video stays private until then).
    pub publish_at: Option<Timestamp>,
    /// A playlist to add it to.
    pub playlist_id: Option<String>,
    /// A thumbnail image (JPEG or PNG, at most 2 MB): its key in media storage.
    pub thumbnail_key: Option<String>,
}

impl PublishMetadata {
    /// Checks the metadata before any call, with YouTube's rules and the seed's: a title of 1 to
    /// 100 characters without `<` or `>`; a description of at most 5,000 bytes without them;
    /// at most 15 tags of at most 30 characters, 500 characters in all counted as YouTube
    /// counts (commas between tags count, a tag with a space counts its quotes); a category, if
    /// given, a number; `publish_at` only with [`Privacy::Private`]. The first broken rule is
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let title = self.title.trim();
        let chars = title.chars().count();
        if chars == 0 || chars > MAX_TITLE_CHARS {
            return Err(Error::invalid(
                "title",
                format!("{chars} characters; 1 to {MAX_TITLE_CHARS} are allowed"),
            ));
        }
        if title.contains(['<', '>']) {
            return Err(Error::invalid("title", "`<` and `>` are not allowed"));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(Error::invalid(
                "description",
                format!(
                    "{} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
                    self.description.len()
                ),
            ));
        }
        if self.description.contains(['<', '>']) {
            return Err(Error::invalid("description", "`<` and `>` are not allowed"));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Error::invalid(
                "tags",
                format!("{} tags; at most {MAX_TAGS} are allowed", self.tags.len()),
            ));
        }
        if let Some(long) = self.tags.iter().find(|t| t.chars().count() > MAX_TAG_CHARS) {
            return Err(Error::invalid(
                "tags",
                format!("`{long}` is longer than {MAX_TAG_CHARS} characters"),
            ));
        }
        if self
            .tags
            .iter()
            .any(|t| t.trim().is_empty() || t.contains(['<', '>', ',']))
        {
            return Err(Error::invalid(
                "tags",
                "a tag is empty or holds `<`, `>` or `,`",
            ));
        }
        let counted = tags_length(&self.tags);
        if counted > MAX_TAGS_CHARS {
            return Err(Error::invalid(
                "tags",
                format!("{counted} characters as YouTube counts them; at most {MAX_TAGS_CHARS}"),
            ));
        }
        if let Some(category) = &self.category_id {
            if category.is_empty() || !category.chars().all(|c| c.is_ascii_digit()) {
                return Err(Error::invalid(
                    "category_id",
                    format!("`{category}` is not a category number"),
                ));
            }
        }
        if self.publish_at.is_some() && self.privacy != Privacy::Private {
            return Err(Error::invalid(
                "publish_at",
                "a scheduled video must be private until it is published",
            ));
        }
        Ok(())
    }
}

/// The length of a tag list as YouTube counts it: the tags' characters, a comma between each
/// two, and two quotes around a tag that holds a space (`Foo Baz` counts 9).
pub fn tags_length(tags: &[String]) -> usize {
    let each: usize = tags
        .iter()
        .map(|t| t.chars().count() + if t.contains(' ') { 2 } else { 0 })
        .sum();
    each + tags.len().saturating_sub(1)
}

/// A request to upload one stored video from media storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The user publishing.
    pub user: UserId,
    /// The job whose video is published.
    pub job: JobId,
    /// The connected channel (e.g. a YouTube channel id) to publish to.
    pub channel_id: String,
    /// The video's key in media storage ([`crate::MediaStore::read_from`]).
    pub media_key: String,
    /// Its size in bytes (more than 0).
    pub total_bytes: u64,
    /// Its MIME type, e.g. `video/mp4`.
    pub content_type: String,
    /// What to show.
    pub metadata: PublishMetadata,
    /// The upload session of an earlier, interrupted try: the upload resumes it.
    pub session: Option<UploadSession>,
}

/// A resumable upload session: the platform's session URI and the bytes it confirmed.
///
/// The URI lets anyone holding it send bytes into the upload, so `Debug` shows only its host
/// (or that it is sealed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// The session URI as the publisher journals it: opaque to the Studio and the stores.
    /// YouTube's publisher keeps the `Location` of the session start sealed with the channel
    /// tokens' cipher, bound to the job and channel, since the URI alone admits bytes.
    pub uri: String,
    /// Bytes the platform confirmed holding (the next byte to send).
    pub confirmed: u64,
}

impl fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.uri.starts_with("v1:") {
            "(sealed)"
        } else {
            self.uri
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', '?']).next())
                .unwrap_or("?")
        };
        f.debug_struct("UploadSession")
            .field("host", &host)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// One upload's progress, as [`crate::Studio::watch_uploads`] gives every upload of a process
/// (those a host started and those the worker resumed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadUpdate {
    /// The job whose video is uploading.
    pub job: JobId,
    /// The channel it goes to.
    pub channel_id: String,
    /// How far it is.
    pub progress: UploadProgress,
}

/// How far an upload is: bytes the platform confirmed, of all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// Bytes the platform confirmed holding.
    pub uploaded: u64,
    /// Bytes in all.
    pub total: u64,
}

impl UploadProgress {
    /// 0 to 100.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        u8::try_from((self.uploaded.min(self.total) * 100) / self.total).unwrap_or(100)
    }
}

/// A published video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedVideo {
    /// The platform's id.
    pub video_id: String,
    /// Its public page.
    pub url: String,
    /// The platform kept the video private although it was asked for public or unlisted
    /// (YouTube does this for API projects that have not passed its audit).
    pub locked_private: bool,
    /// What did not work after the upload (a thumbnail refused, a playlist full); the video
    /// is published all the same.
    pub warnings: Vec<String>,
}

/// A published video's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoStats {
    /// Views.
    pub views: u64,
    /// Likes.
    pub likes: u64,
    /// Comments.
    pub comments: u64,
}

/// A channel a user connected, with its OAuth tokens sealed by the host's key (see
/// `jilo_providers::tokens`): the store keeps them as opaque text and never sees them in the
/// clear. `Debug` leaves the tokens out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConnection {
    /// The user who connected it.
    pub user: UserId,
    /// The platform's channel id (YouTube: `UC…`).
    pub channel_id: String,
    /// Its name as the platform shows it.
    pub channel_name: String,
    /// The sealed access token.
    pub access_token: String,
    /// When the access token expires.
    pub access_expires_at: Timestamp,
    /// The sealed refresh token.
    pub refresh_token: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When it was first connected.
    pub connected_at: Timestamp,
    /// When the tokens were last written.
    pub updated_at: Timestamp,
}

impl fmt::Debug for ChannelConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConnection")
            .field("user", &self.user)
            .field("channel_id", &self.channel_id)
            .field("channel_name", &self.channel_name)
            .field("access_expires_at", &self.access_expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Where a publication is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicationState {
    /// Written before the upload; the upload is under way or was interrupted.
    Uploading,
    /// The platform holds the video.
    Published,
    /// The upload failed for a reason retrying the same request cannot fix (quota, metadata,
    /// a revoked channel); publishing again starts over.
    Failed,
}

impl PublicationState {
    /// The name stores keep.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicationState::Uploading => "uploading",
            PublicationState::Published => "published",
            PublicationState::Failed => "failed",
        }
    }

    /// Reads [`PublicationState::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uploading" => Some(PublicationState::Uploading),
            "published" => Some(PublicationState::Published),
            "failed" => Some(PublicationState::Failed),
            _ => None,
        }
    }
}

/// The durable record of one job published to one channel: written before the upload starts,
/// holding the session and the confirmed bytes as the upload goes, ending with the video.
///
/// Its serialized form (what stores keep) carries the upload session URI, which lets anyone
/// holding it send bytes into the upload: show users [`Publication::published`] or chosen
/// fields, not the record itself. `Debug` leaves the URI out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The job published.
    pub job: JobId,
    /// The channel published to.
    pub channel_id: String,
    /// The user publishing.
    pub user: UserId,
    /// Where it is.
    pub state: PublicationState,
    /// The metadata asked for.
    pub metadata: PublishMetadata,
    /// The video's key in media storage.
    pub media_key: String,
    /// Its size.
    pub total_bytes: u64,
    /// Its MIME type.
    pub content_type: String,
    /// The upload session, once the platform gave one.
    pub session: Option<UploadSession>,
    /// The platform's video id, once published.
    pub video_id: Option<String>,
    /// The video's page, once published.
    pub url: Option<String>,
    /// When it was published.
    pub published_at: Option<Timestamp>,
    /// The platform kept the video private although another privacy was asked (YouTube: an
    /// API project that has not passed its audit).
    #[serde(default)]
    pub locked_private: bool,
    /// Why it failed, or what did not work after the upload.
    pub notes: Vec<String>,
    /// Uploads started or resumed for it.
    pub attempts: u32,
    /// Who is uploading it, until when.
    pub lease: Option<PublicationLease>,
    /// The last statistics read, and when.
    pub stats: Option<(VideoStats, Timestamp)>,
    /// When the record was written.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl fmt::Debug for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publication")
            .field("job", &self.job)
            .field("channel_id", &self.channel_id)
            .field("state", &self.state)
            .field("total_bytes", &self.total_bytes)
            .field("session", &self.session)
            .field("video_id", &self.video_id)
            .field("locked_private", &self.locked_private)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Publication {
    /// A new record for `request`, uploading, with no session yet.
    pub fn new(request: &PublishRequest, now: Timestamp) -> Self {
        Self {
            job: request.job.clone(),
            channel_id: request.channel_id.clone(),
            user: request.user.clone(),
            state: PublicationState::Uploading,
            metadata: request.metadata.clone(),
            media_key: request.media_key.clone(),
            total_bytes: request.total_bytes,
            content_type: request.content_type.clone(),
            session: None,
            video_id: None,
            url: None,
            published_at: None,
            locked_private: false,
            notes: Vec::new(),
            attempts: 0,
            lease: None,
            stats: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The upload request that continues this record.
    pub fn request(&self) -> PublishRequest {
        PublishRequest {
            user: self.user.clone(),
            job: self.job.clone(),
            channel_id: self.channel_id.clone(),
            media_key: self.media_key.clone(),
            total_bytes: self.total_bytes,
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            session: self.session.clone(),
        }
    }

    /// Whether `token` holds the upload lease of this (uploading) record.
    pub fn held_by(&self, token: &str) -> bool {
        self.state == PublicationState::Uploading
            && self.lease.as_ref().is_some_and(|l| l.token == token)
    }

    /// Whether a process may take the upload lease at `now`: the record is uploading and its
    /// lease is free or lapsed.
    pub fn claimable_at(&self, now: Timestamp) -> bool {
        self.state == PublicationState::Uploading
            && self.lease.as_ref().is_none_or(|l| l.until <= now)
    }

    /// What a new begin makes of this failed record: `fresh` (its metadata, no session, no
    /// lease, its own count of attempts: [`crate::Policy::publish_max_attempts`] bounds each
    /// publish, so one that gave up can be asked for again), keeping the creation time.
    pub fn restarted_with(&self, fresh: &Publication) -> Publication {
        Publication {
            attempts: 0,
            created_at: self.created_at,
            updated_at: fresh.updated_at,
            ..fresh.clone()
        }
    }

    /// Keeps an upload's session and confirmed bytes: within one session the count never
    /// goes back; a new session replaces the old one and its count.
    pub fn keep_session(&mut self, session: &UploadSession) {
        let confirmed = match &self.session {
            Some(kept) if kept.uri == session.uri => kept.confirmed.max(session.confirmed),
            _ => session.confirmed,
        };
        self.session = Some(UploadSession {
            uri: session.uri.clone(),
            confirmed,
        });
    }

    /// Ends the record as `outcome` says and frees the lease.
    pub fn end(&mut self, outcome: &PublicationOutcome) {
        match outcome {
            PublicationOutcome::Published { video, at } => {
                self.state = PublicationState::Published;
                self.video_id = Some(video.video_id.clone());
                self.url = Some(video.url.clone());
                self.published_at = Some(*at);
                self.locked_private = video.locked_private;
                self.notes = video.warnings.clone();
                self.updated_at = *at;
            }
            PublicationOutcome::Failed { reason, at } => {
                self.state = PublicationState::Failed;
                self.notes = vec![reason.clone()];
                self.updated_at = *at;
            }
        }
        self.lease = None;
    }

    /// Adds the notes not there yet, in order.
    pub fn add_notes(&mut self, notes: &[String]) {
        for note in notes {
            if !self.notes.contains(note) {
                self.notes.push(note.clone());
            }
        }
    }

    /// The published video, once there is one.
    pub fn published(&self) -> Option<PublishedVideo> {
        match (&self.state, &self.video_id, &self.url) {
            (PublicationState::Published, Some(id), Some(url)) => Some(PublishedVideo {
                video_id: id.clone(),
                url: url.clone(),
                locked_private: self.locked_private,
                warnings: self.notes.clone(),
            }),
            _ => None,
        }
    }
}

/// Which publication record: a job's, on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicationKey {
    /// The job whose video it is.
    pub job: JobId,
    /// The channel it goes to.
    pub channel_id: String,
}

impl PublicationKey {
    /// The record of `job` on `channel_id`.
    pub fn new(job: JobId, channel_id: impl Into<String>) -> Self {
        Self {
            job,
            channel_id: channel_id.into(),
        }
    }

    /// The key of a record.
    pub fn of(publication: &Publication) -> Self {
        Self::new(publication.job.clone(), publication.channel_id.clone())
    }
}

impl std::fmt::Display for PublicationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.job, self.channel_id)
    }
}

/// A record as its upload lease's holder names it: which record, and the holder's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPublication {
    /// The record.
    pub key: PublicationKey,
    /// The token of the lease the caller holds.
    pub token: String,
}

/// What [`crate::PublicationStore::begin_publication`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicationBegun {
    /// The record as stored now.
    pub publication: Publication,
    /// Whether this call wrote it (a new record, or a failed one started over).
    pub written: bool,
}

/// A claim of a record's upload lease ([`crate::PublicationStore::claim_publication`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicationClaim {
    /// The record.
    pub key: PublicationKey,
    /// The lease asked for: the caller's token, and until when.
    pub lease: PublicationLease,
    /// Now, by the caller's clock: a lease lapsed by then is free.
    pub now: Timestamp,
}

/// Upload progress kept by the lease holder ([`crate::PublicationStore::save_upload`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadCheckpoint {
    /// The record, and the holder's token.
    pub held: HeldPublication,
    /// The session and the bytes the platform confirmed.
    pub session: UploadSession,
    /// The lease renewed until then.
    pub until: Timestamp,
}

/// A published video's statistics as read ([`crate::PublicationStore::record_stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsReading {
    /// The record.
    pub key: PublicationKey,
    /// The counts.
    pub stats: VideoStats,
    /// When they were read.
    pub at: Timestamp,
}

/// One process's hold on an upload: its token and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationLease {
    /// The holder's random token.
    pub token: String,
    /// When the hold lapses unless renewed.
    pub until: Timestamp,
}

/// How a publication ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicationOutcome {
    /// The platform holds the video.
    Published {
        /// The video.
        video: PublishedVideo,
        /// When.
        at: Timestamp,
    },
    /// The upload cannot go on.
    Failed {
        /// Why, for the page.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PublishMetadata {
        PublishMetadata {
            title: "A paper boat on a rainy street".into(),
            description: "Made with AI.".into(),
            tags: vec!["ai video".into(), "shorts".into()],
            category_id: Some("28".into()),
            privacy: Privacy::Public,
            publish_at: None,
            playlist_id: None,
            thumbnail_key: None,
        }
    }

    fn field(m: &PublishMetadata) -> Option<String> {
        match m.validate() {
            Err(Error::InvalidInput { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn youtubes_rules_and_the_seeds() {
        assert!(meta().validate().is_ok());
        let with = |f: &dyn Fn(&mut PublishMetadata)| {
            let mut m = meta();
            f(&mut m);
            field(&m)
        };
        assert_eq!(
            with(&|m| m.title = "字".repeat(100)),
            None,
            "100 characters, not bytes"
        );
        assert_eq!(
            with(&|m| m.title = "x".repeat(101)).as_deref(),
            Some("title")
        );
        assert_eq!(with(&|m| m.title = "  ".into()).as_deref(), Some("title"));
        assert_eq!(
            with(&|m| m.title = "a <b> title".into()).as_deref(),
            Some("title")
        );
        assert_eq!(
            with(&|m| m.description = "é".repeat(2500)),
            None,
            "5,000 bytes"
        );
        assert_eq!(
            with(&|m| m.description = "é".repeat(2501)).as_deref(),
            Some("description")
        );
        assert_eq!(
            with(&|m| m.tags = vec!["t".into(); 16]).as_deref(),
            Some("tags")
        );
        assert_eq!(
            with(&|m| m.tags = vec!["x".repeat(31)]).as_deref(),
            Some("tags")
        );
        assert_eq!(
            with(&|m| m.category_id = Some("science".into())).as_deref(),
            Some("category_id")
        );
        let later = Timestamp::from_millis(1_800_000_000_000);
        assert_eq!(
            with(&|m| m.publish_at = Some(later)).as_deref(),
            Some("publish_at")
        );
        assert_eq!(
            with(&|m| {
                m.publish_at = Some(later);
                m.privacy = Privacy::Private;
            }),
            None
        );
    }

    #[test]
    fn tags_are_counted_as_youtube_counts_them() {
        assert_eq!(tags_length(&["Foo Baz".into()]), 9);
        assert_eq!(tags_length(&["Foo-Baz".into()]), 7);
        assert_eq!(tags_length(&["a".into(), "b c".into()]), 1 + 1 + 5);
        // 15 tags of 30 characters with spaces: 15 * 32 + 14 = 494, within 500.
        let full: Vec<String> = (0..15).map(|i| format!("{:0>28} x", i)).collect();
        assert_eq!(tags_length(&full), 494);
        let m = PublishMetadata {
            tags: full,
            ..meta()
        };
        assert!(m.validate().is_ok());
    }
}
