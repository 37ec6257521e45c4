//! What goes over the wire to YouTube and back: the `video` resource a session starts with,
//! and the finished upload's resource read as a [`PublishedVideo`].

use jilo_core::{Error, Privacy, PublishRequest, PublishedVideo, Result, Timestamp};
use serde_json::{json, Value};

use super::errors::protocol;

fn privacy_str(p: Privacy) -> &'static str {
    match p {
        Privacy::Public => "public",
        Privacy::Unlisted => "unlisted",
        Privacy::Private => "private",
    }
}

/// An RFC 3339 UTC time (`2026-12-01T15:00:00Z`).
fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system()).to_string()
}

/// The `video` resource sent to start the session. jilo's videos are AI-generated, so the
/// altered-or-synthetic disclosure is set.
pub fn video_resource(request: &PublishRequest) -> Value {
    let m = &request.metadata;
    let mut snippet = json!({
        "title": m.title.trim(),
        "description": m.description,
        "tags": m.tags,
    });
    if let Some(category) = &m.category_id {
        snippet["categoryId"] = json!(category);
    }
    let mut status = json!({
        "privacyStatus": privacy_str(m.privacy),
        "selfDeclaredMadeForKids": false,
        "containsSyntheticMedia": true,
    });
    if let Some(at) = m.publish_at {
        status["publishAt"] = json!(rfc3339(at));
    }
    json!({ "snippet": snippet, "status": status })
}

pub(super) fn video_from(resource: &Value, request: &PublishRequest) -> Result<PublishedVideo> {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| protocol("the finished upload names no video id"))?;
    let upload_status = resource
        .pointer("/status/uploadStatus")
        .and_then(Value::as_str)
        .unwrap_or("uploaded");
    if matches!(upload_status, "failed" | "rejected" | "deleted") {
        let why = resource
            .pointer("/status/failureReason")
            .or_else(|| resource.pointer("/status/rejectionReason"))
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(Error::NotAllowed {
            reason: format!("YouTube {upload_status} the video {id}: {why}"),
        });
    }
    let kept_private = resource
        .pointer("/status/privacyStatus")
        .and_then(Value::as_str)
        == Some("private");
    let locked_private = kept_private
        && request.metadata.privacy != Privacy::Private
        && request.metadata.publish_at.is_none();
    let mut warnings = Vec::new();
    if locked_private {
        warnings.push(
            "YouTube kept the video private: uploads from API projects that have not passed \
             YouTube's audit are locked private"
                .to_owned(),
        );
    }
    Ok(PublishedVideo {
        video_id: id.to_owned(),
        url: format!("https://www.youtube.com/watch?v={id}"),
        locked_private,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_796_137_200_000)),
            "2026-12-01T15:00:00Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_999)),
            "2000-02-29T00:00:00Z",
            "whole seconds"
        );
    }
}
