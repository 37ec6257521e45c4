//! The resumable upload protocol, as Google documents it: a session started with the video's
//! metadata and `X-Upload-Content-Length`, chunks of a multiple of 256 KiB with
//! `Content-Range`, a 308's `Range` (absent = nothing held) read after every chunk, an
//! empty-body status query (`bytes */TOTAL`) after any interruption, back-off on 5xx and cut
//! connections, and a new session when the old one expired (404/410).

use std::time::Duration;

use std::collections::VecDeque;

use bytes::Bytes;
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

/// One chunk's bytes, as the pieces media storage gave (sent without copying them).
pub(crate) struct Chunk {
    pub(crate) pieces: Vec<Bytes>,
    pub(crate) len: usize,
}

/// Takes up to `want` bytes from the front of `pieces`, splitting a piece if needed.
fn take_front(pieces: &mut VecDeque<Bytes>, held: &mut usize, want: usize, out: &mut Chunk) {
    while out.len < want {
        let Some(mut piece) = pieces.pop_front() else {
            return;
        };
        let need = want - out.len;
        if piece.len() > need {
            let rest = piece.split_off(need);
            pieces.push_front(rest);
        }
        *held -= piece.len();
        out.len += piece.len();
        out.pieces.push(piece);
    }
}

/// The bytes of one media object, handed out chunk by chunk from any offset. Reading goes on
/// from the stream while offsets follow each other (and the next chunk can be read ahead
/// while one is sent); a chunk the server took only part of is resent from the part it holds
/// without reading again; any other jump reopens the stream at the new offset (so a resumed
/// upload reads only from where it resumes).
pub(crate) struct ChunkReader<'a> {
    media: &'a dyn MediaStore,
    key: &'a str,
    total: u64,
    stream: Option<MediaStream>,
    /// The last chunk handed out, and its offset.
    last: Vec<Bytes>,
    last_at: u64,
    last_len: usize,
    /// Bytes read past the last chunk.
    ahead: VecDeque<Bytes>,
    ahead_len: usize,
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(media: &'a dyn MediaStore, key: &'a str, total: u64) -> Self {
        Self {
            media,
            key,
            total,
            stream: None,
            last: Vec::new(),
            last_at: 0,
            last_len: 0,
            ahead: VecDeque::new(),
            ahead_len: 0,
        }
    }

    /// The chunk starting at `offset`: `len` bytes, or fewer at the end.
    pub(crate) async fn chunk(&mut self, offset: u64, len: usize) -> Result<Chunk> {
        let want =
            usize::try_from((self.total - offset.min(self.total)).min(len as u64)).unwrap_or(len);
        let last_end = self.last_at + self.last_len as u64;
        let mut out = Chunk {
            pieces: Vec::new(),
            len: 0,
        };
        if self.stream.is_some() && offset >= self.last_at && offset <= last_end {
            // Continue: the unsent part of the last chunk, then what was read ahead.
            let mut rest: VecDeque<Bytes> = self.last.iter().cloned().collect();
            let mut rest_len = self.last_len;
            let mut skipped = Chunk {
                pieces: Vec::new(),
                len: 0,
            };
            let skip = usize::try_from(offset - self.last_at).unwrap_or(0);
            take_front(&mut rest, &mut rest_len, skip, &mut skipped);
            take_front(&mut rest, &mut rest_len, want, &mut out);
            if out.len == want {
                // Within what was handed out already: nothing to read.
                return Ok(out);
            }
        } else {
            self.stream = Some(self.media.read_from(self.key, offset).await?);
            self.ahead.clear();
            self.ahead_len = 0;
        }
        take_front(&mut self.ahead, &mut self.ahead_len, want, &mut out);
        while out.len < want {
            let next = match self.stream.as_mut() {
                Some(stream) => stream.next().await,
                None => None,
            };
            let Some(piece) = next else {
                self.stream = None;
                return Err(Error::invalid(
                    "media",
                    format!(
                        "`{}` ended at byte {} but the upload declared {} bytes",
                        self.key,
                        offset + out.len as u64,
                        self.total
                    ),
                ));
            };
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    // The stream's place is lost: the next chunk reopens it.
                    self.stream = None;
                    return Err(e);
                }
            };
            self.ahead.push_back(piece);
            self.ahead_len += self.ahead.back().map_or(0, Bytes::len);
            take_front(&mut self.ahead, &mut self.ahead_len, want, &mut out);
        }
        self.last = out.pieces.clone();
        self.last_at = offset;
        self.last_len = out.len;
        Ok(out)
    }

    /// Reads up to `len` bytes ahead of the last chunk (while it is being sent), stopping
    /// at the end. A read that fails drops the stream: the next [`ChunkReader::chunk`]
    /// reopens it and reports the failure then.
    pub(crate) async fn read_ahead(&mut self, len: usize) {
        let end = self.last_at + self.last_len as u64 + self.ahead_len as u64;
        let mut left = self.total.saturating_sub(end);
        while self.ahead_len < len && left > 0 {
            let next = match self.stream.as_mut() {
                Some(stream) => stream.next().await,
                None => return,
            };
            match next {
                Some(Ok(piece)) => {
                    left = left.saturating_sub(piece.len() as u64);
                    self.ahead_len += piece.len();
                    self.ahead.push_back(piece);
                }
                Some(Err(_)) | None => {
                    self.stream = None;
                    self.last.clear();
                    self.last_len = 0;
                    return;
                }
            }
        }
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
        assert!(
            held_from_range(Some("bytes=5-9")).is_err(),
            "the server holds bytes from 0"
        );
    }
}
