//! The resumable upload protocol, as Google documents it: a session started with the video's
//! metadata and `X-Upload-Content-Length`, chunks of a multiple of 256 KiB with
//! `Content-Range`, a 308's `Range` (absent = nothing held) read after every chunk, an
//! empty-body status query (`bytes */TOTAL`) after any interruption, back-off on 5xx and cut
//! connections, and a new session when the old one expired (404/410).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use jilo_core::{Error, MediaStore, MediaStream, Result};

use super::errors::SERVICE;

/// The chunk unit: every chunk but the last is a multiple of it.
pub const CHUNK_UNIT: usize = 256 * 1024;

/// What an upload request's answer says.
pub(crate) enum Step {
    /// 308: the server holds this many bytes.
    Incomplete(u64),
    /// 200/201: the video resource.
    Done(serde_json::Value),
    /// 404/410: the session is gone.
    Expired,
}

/// Reads `bytes=0-N` (tolerating `bytes 0-N`): the count held is N+1; no header, nothing.
pub(crate) fn held_from_range(range: Option<&str>) -> Result<u64> {
    let Some(range) = range else {
        return Ok(0);
    };
    let last = range
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' '])
        .split('-')
        .nth(1)
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!("the upload server's Range header `{range}` cannot be read"),
            response: None,
            source: None,
        })?;
    Ok(last + 1)
}

/// The bytes of one media object, handed out chunk by chunk from any offset. Reading goes on
/// from the stream while offsets follow each other; a chunk the server took only part of is
/// resent from the part it holds without reading again; any other jump reopens the stream at
/// the new offset (so a resumed upload reads only from where it resumes).
pub(crate) struct ChunkReader<'a> {
    media: &'a dyn MediaStore,
    key: &'a str,
    total: u64,
    stream: Option<MediaStream>,
    /// The stream's position: the offset of the next byte it gives.
    stream_at: u64,
    /// The last chunk handed out, and its offset.
    last: Bytes,
    last_at: u64,
    /// Bytes read past the last chunk.
    ahead: BytesMut,
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(media: &'a dyn MediaStore, key: &'a str, total: u64) -> Self {
        Self {
            media,
            key,
            total,
            stream: None,
            stream_at: 0,
            last: Bytes::new(),
            last_at: 0,
            ahead: BytesMut::new(),
        }
    }

    /// The chunk starting at `offset`: `len` bytes, or fewer at the end.
    pub(crate) async fn chunk(&mut self, offset: u64, len: usize) -> Result<Bytes> {
        let want =
            usize::try_from((self.total - offset.min(self.total)).min(len as u64)).unwrap_or(len);
        let last_end = self.last_at + self.last.len() as u64;
        let mut out = BytesMut::with_capacity(want);
        if self.stream.is_some() && offset >= self.last_at && offset <= last_end {
            // Continue: the unsent part of the last chunk, then what was read ahead.
            let skip = usize::try_from(offset - self.last_at).unwrap_or(0);
            let rest = self.last.slice(skip..);
            if rest.len() >= want {
                // Within what was handed out already: nothing to read.
                return Ok(rest.slice(..want));
            }
            out.extend_from_slice(&rest);
        } else {
            self.stream = Some(self.media.read_from(self.key, offset).await?);
            self.stream_at = offset;
            self.ahead.clear();
        }
        let from_ahead = self.ahead.len().min(want - out.len());
        out.extend_from_slice(&self.ahead.split_to(from_ahead));
        while out.len() < want {
            let next = match self.stream.as_mut() {
                Some(stream) => stream.next().await,
                None => None,
            };
            let Some(piece) = next else {
                return Err(Error::invalid(
                    "media",
                    format!(
                        "`{}` ended at byte {} but the upload declared {} bytes",
                        self.key,
                        offset + out.len() as u64,
                        self.total
                    ),
                ));
            };
            let piece = piece?;
            self.stream_at += piece.len() as u64;
            let take = piece.len().min(want - out.len());
            out.extend_from_slice(&piece[..take]);
            self.ahead.extend_from_slice(&piece[take..]);
        }
        let chunk = out.freeze();
        self.remember(offset, chunk.clone());
        Ok(chunk)
    }

    fn remember(&mut self, offset: u64, chunk: Bytes) {
        self.last_at = offset;
        self.last = chunk;
    }
}

/// The back-off before retry `n` (1-based): full jitter under `base * 2^(n-1)`, capped.
pub(crate) fn backoff(n: u32, base: Duration, cap: Duration, asked: Option<Duration>) -> Duration {
    let policy = crate::http::RetryPolicy {
        max_attempts: u32::MAX,
        max_elapsed: Duration::MAX,
        base,
        max_delay: cap,
    };
    policy.delay(n, asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_are_read_as_google_sends_them() {
        assert_eq!(held_from_range(None).ok(), Some(0));
        assert_eq!(
            held_from_range(Some("bytes=0-999999")).ok(),
            Some(1_000_000)
        );
        assert_eq!(held_from_range(Some("bytes 0-262143")).ok(), Some(262_144));
        assert_eq!(held_from_range(Some("bytes=0-0")).ok(), Some(1));
        assert!(held_from_range(Some("garbage")).is_err());
    }
}
