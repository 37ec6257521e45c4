//! The resumable upload protocol, as Google documents it: a session started with the video's
//! metadata and `X-Upload-Content-Length`, chunks of a multiple of 256 KiB with
//! `Content-Range`, a 308's `Range` (absent = nothing held) read after every chunk, an
//! empty-body status query (`bytes */TOTAL`) after any interruption, back-off on 5xx and cut
//! connections, and a new session when the old one expired (404/410).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jilo_core::{Error, MediaStore, MediaStream, Result};

use super::errors::SERVICE;

/// The chunk unit: every chunk but the last is a multiple of it.
pub const CHUNK_UNIT: usize = 256 * 1024;

/// What an upload request's answer says.
pub(crate) enum Step {
    /// 308: the server holds this many bytes, and asked to wait this long before more.
    Incomplete(u64, Option<std::time::Duration>),
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
    let span = range
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let mut ends = span.split('-');
    let first = ends.next().map(str::trim);
    let last = ends
        .next()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|_| first == Some("0"))
        .ok_or_else(|| Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!("the upload server's Range header `{range}` cannot be read"),
            response: None,
            source: None,
        })?;
    Ok(last + 1)
}

/// The bytes of one media object, fed chunk by chunk into upload requests as they are read
/// (a chunk is never held whole: the body streams while the file or object is read). Reading
/// goes on from the open stream while offsets follow each other; any other offset (a chunk
/// the server took only part of, a resumption) reopens the stream there, so a resumed upload
/// reads only from where it resumes.
pub(crate) struct ChunkReader<'a> {
    media: &'a dyn MediaStore,
    key: &'a str,
    total: u64,
    stream: Option<MediaStream>,
    /// The offset of the next byte the reader gives (`ahead` first, then the stream).
    position: u64,
    /// Bytes read past the last chunk.
    ahead: Option<Bytes>,
}

/// A chunk's body: the pieces as they are read.
pub(crate) type BodySender = tokio::sync::mpsc::Sender<std::result::Result<Bytes, std::io::Error>>;

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(media: &'a dyn MediaStore, key: &'a str, total: u64) -> Self {
        Self {
            media,
            key,
            total,
            stream: None,
            position: 0,
            ahead: None,
        }
    }

    /// The length of the chunk starting at `offset`: `len`, or less at the end.
    pub(crate) fn chunk_len(&self, offset: u64, len: usize) -> usize {
        usize::try_from((self.total - offset.min(self.total)).min(len as u64)).unwrap_or(len)
    }

    /// Sends the `want` bytes from `offset` into `body` as they are read. Stops early, without
    /// an error, when the request stops taking them (it failed or was answered); a read that
    /// fails is sent to the body too (cutting the request) and returned.
    pub(crate) async fn feed(&mut self, offset: u64, want: usize, body: BodySender) -> Result<()> {
        // The stream is held locally while feeding, so a feed dropped mid-chunk (its request
        // was answered early) leaves none behind: the next one reopens at the server's count.
        let mut stream = match self.stream.take() {
            Some(stream) if offset == self.position => stream,
            _ => {
                self.ahead = None;
                self.position = offset;
                match self.media.read_from(self.key, offset).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let _ = body
                            .send(Err(std::io::Error::other("media storage failed")))
                            .await;
                        return Err(e);
                    }
                }
            }
        };
        let mut sent = 0usize;
        while sent < want {
            let mut piece = match self.ahead.take() {
                Some(piece) => piece,
                None => match stream.next().await {
                    Some(Ok(piece)) => piece,
                    Some(Err(e)) => {
                        self.ahead = None;
                        let _ = body
                            .send(Err(std::io::Error::other("media storage failed")))
                            .await;
                        return Err(e);
                    }
                    None => {
                        let _ = body
                            .send(Err(std::io::Error::other("media storage ended early")))
                            .await;
                        return Err(Error::invalid(
                            "media",
                            format!(
                                "`{}` ended at byte {} but the upload declared {} bytes",
                                self.key,
                                offset + sent as u64,
                                self.total
                            ),
                        ));
                    }
                },
            };
            if piece.len() > want - sent {
                self.ahead = Some(piece.split_off(want - sent));
            }
            let n = piece.len();
            if body.send(Ok(piece)).await.is_err() {
                // The request is over: what it did not take is read again if needed.
                self.ahead = None;
                return Ok(());
            }
            sent += n;
            self.position += n as u64;
        }
        self.stream = Some(stream);
        Ok(())
    }
}

/// The back-off before retry `n` (1-based): full jitter under `base * 2^(n-1)`, capped, as
/// Google's own upload code waits (`rand() * 2^retry` seconds).
pub(crate) fn backoff(n: u32, base: Duration, cap: Duration, asked: Option<Duration>) -> Duration {
    let policy = crate::http::RetryPolicy {
        max_attempts: u32::MAX,
        max_elapsed: Duration::MAX,
        base,
        floor: Duration::ZERO,
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
        assert!(
            held_from_range(Some("bytes=5-9")).is_err(),
            "the server holds bytes from 0"
        );
    }
}
