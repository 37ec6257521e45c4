//! Publishing a stored video to a platform account.

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
    /// At most 5000 characters.
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
    /// A thumbnail image on disk.
    pub thumbnail_path: Option<String>,
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

/// A request to upload one stored video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The user publishing.
    pub user: UserId,
    /// The job whose video is published.
    pub job: JobId,
    /// The connected platform account (e.g. a YouTube channel) to publish to.
    pub account: String,
    /// The video on disk.
    pub video_path: String,
    /// What to show.
    pub metadata: PublishMetadata,
    /// A resumable upload session from an earlier, interrupted try.
    pub resume_session: Option<String>,
}

/// How far an upload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// Bytes sent.
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
            thumbnail_path: None,
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
