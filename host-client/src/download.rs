//! Downloading one target: resumable, capped at its signed length, guarded against slow
//! retrieval, and checked against its signed SHA-256 before it exists under its final name.
//!
//! The bytes go to `<dest>.partial`. An interrupted download resumes from the partial file's
//! length with a `Range` request; a server that ignores the range (200) starts it over. The
//! partial file becomes `dest` (an atomic rename) only when it has exactly the signed length
//! and its SHA-256 matches, so no caller ever sees unverified bytes under the final name, and
//! a mirror that sends more than the signed length (endless data) or trickles (slow
//! retrieval) is cut off.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the signed metadata says the target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedTarget {
    /// Exact length in bytes.
    pub length: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// Limits of one download.
#[derive(Clone, Debug)]
pub struct DownloadPolicy {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// The transfer is measured over windows of this length…
    pub rate_window: Duration,
    /// …and cut off when a window brings fewer than this many bytes per second (slow
    /// retrieval: a mirror cannot hold the host forever by trickling).
    pub min_bytes_per_sec: u64,
    /// Requests before giving up; each one resumes where the last stopped.
    pub max_attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    pub initial_backoff: Duration,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            rate_window: Duration::from_secs(10),
            // A 10 MB package at this rate takes under 11 minutes; anything slower is an
            // attack or a network not worth waiting on.
            min_bytes_per_sec: 16 * 1024,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// Why a download failed. After any of them `dest` does not exist (or is the previous,
/// verified file untouched); a `.partial` file may remain for a later resume, except after
/// [`DownloadError::HashMismatch`], which removes it.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server sent more bytes than the signed length.
    #[error("the server sent more than the signed length of {length} bytes")]
    EndlessData {
        /// The signed length.
        length: u64,
    },
    /// A window of the transfer was slower than the policy's minimum rate.
    #[error("slow retrieval: {received} bytes in {window:?}, below {min_bytes_per_sec} bytes/s")]
    SlowRetrieval {
        /// Bytes received in the window.
        received: u64,
        /// The window.
        window: Duration,
        /// The policy's minimum.
        min_bytes_per_sec: u64,
    },
    /// The connection ended before the signed length; the next attempt resumes.
    #[error("the transfer stopped at {received} of {length} bytes")]
    Interrupted {
        /// Bytes in the partial file.
        received: u64,
        /// The signed length.
        length: u64,
    },
    /// The complete bytes do not hash to the signed SHA-256; the partial file is removed.
    #[error("the downloaded bytes do not match the signed SHA-256")]
    HashMismatch,
    /// The server answered with an unexpected status or a range other than the one asked.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The connection or request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Reading or writing the local files failed.
    #[error("local file: {0}")]
    Io(#[from] io::Error),
}

impl DownloadError {
    /// Whether another attempt may succeed (network trouble, not a lying server).
    fn is_retryable(&self) -> bool {
        match self {
            Self::SlowRetrieval { .. } | Self::Interrupted { .. } | Self::Http(_) => true,
            Self::Protocol(_) | Self::EndlessData { .. } | Self::HashMismatch | Self::Io(_) => {
                false
            }
        }
    }
}

/// The staging file of `dest`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Downloads `url` to `dest`, calling `progress(received, total)` as bytes arrive.
///
/// # Errors
/// See [`DownloadError`]; retryable failures are retried up to `policy.max_attempts`.
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    expected: ExpectedTarget,
    dest: &Path,
    policy: &DownloadPolicy,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), DownloadError> {
    let partial = partial_path(dest);
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        match fetch_into(http, url, expected.length, &partial, policy, &mut progress).await {
            Ok(()) => break,
            Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                attempt += 1;
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Err(error) => return Err(error),
        }
    }
    if sha256_of(&partial).await? != expected.sha256 {
        // Resuming from these bytes would only reproduce the mismatch.
        tokio::fs::remove_file(&partial).await?;
        return Err(DownloadError::HashMismatch);
    }
    tokio::fs::rename(&partial, dest).await?;
    Ok(())
}

/// One request: appends to `partial` until it holds `length` bytes.
async fn fetch_into(
    http: &reqwest::Client,
    url: &str,
    length: u64,
    partial: &Path,
    policy: &DownloadPolicy,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), DownloadError> {
    let mut have = match tokio::fs::metadata(partial).await {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
        Err(error) => return Err(error.into()),
    };
    if have > length {
        // Not ours to trust: more than the signed length is never right.
        tokio::fs::remove_file(partial).await?;
        have = 0;
    }
    if have == length {
        return Ok(());
    }
    let mut request = http.get(url).timeout(Duration::from_secs(24 * 3600));
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = tokio::time::timeout(policy.connect_timeout, request.send())
        .await
        .map_err(|_| DownloadError::SlowRetrieval {
            received: 0,
            window: policy.connect_timeout,
            min_bytes_per_sec: policy.min_bytes_per_sec,
        })??;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await?;
    match response.status() {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !range.starts_with(&format!("bytes {have}-")) {
                return Err(DownloadError::Protocol(format!(
                    "asked for bytes {have}-, got Content-Range {range:?}"
                )));
            }
        }
        StatusCode::OK => {
            // The whole body again: start over.
            file.set_len(0).await?;
            have = 0;
        }
        status if status.is_server_error() => {
            return Err(DownloadError::Http(
                response.error_for_status().expect_err("a 5xx"),
            ));
        }
        status => return Err(DownloadError::Protocol(format!("HTTP {status}"))),
    }
    progress(have, length);
    let mut body = response.bytes_stream();
    let mut rate = RateFloor::new(policy);
    while let Some(chunk) = rate.next_chunk(&mut body).await {
        let chunk = chunk?;
        if have + chunk.len() as u64 > length {
            // Keep what fits: it may be right, and the hash decides.
            let fits = usize::try_from(length - have).unwrap_or(0);
            file.write_all(&chunk[..fits]).await?;
            file.flush().await?;
            return Err(DownloadError::EndlessData { length });
        }
        file.write_all(&chunk).await?;
        have += chunk.len() as u64;
        progress(have, length);
        if let Err(slow) = rate.received(chunk.len()) {
            file.flush().await?;
            return Err(slow);
        }
    }
    file.flush().await?;
    if have < length {
        // The connection ended early: a retry resumes from here.
        return Err(DownloadError::Interrupted {
            received: have,
            length,
        });
    }
    Ok(())
}

/// The minimum transfer rate of one response body (slow retrieval): its bytes are counted in
/// windows of the policy's `rate_window`, and a window that brings fewer than
/// `min_bytes_per_sec` per second ends the transfer. A window in which nothing arrives at all
/// ends when the window does, not when the next byte comes.
pub(crate) struct RateFloor {
    window: Duration,
    min_bytes_per_sec: u64,
    /// Bytes one window must bring.
    minimum: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl RateFloor {
    pub(crate) fn new(policy: &DownloadPolicy) -> Self {
        Self {
            window: policy.rate_window,
            min_bytes_per_sec: policy.min_bytes_per_sec,
            minimum: policy.min_bytes_per_sec * policy.rate_window.as_secs().max(1),
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }

    /// The body's next chunk; an empty one when the window ran out waiting (pass it to
    /// [`RateFloor::received`], which then decides); `None` at the end of the body.
    pub(crate) async fn next_chunk<S>(
        &self,
        body: &mut S,
    ) -> Option<Result<bytes::Bytes, reqwest::Error>>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Unpin,
    {
        let remaining = self.window.saturating_sub(self.window_start.elapsed());
        match tokio::time::timeout(remaining, body.next()).await {
            Ok(next) => next,
            Err(_) => Some(Ok(bytes::Bytes::new())),
        }
    }

    /// Counts `len` bytes; fails when a window closed below the minimum.
    pub(crate) fn received(&mut self, len: usize) -> Result<(), DownloadError> {
        self.window_bytes += len as u64;
        if self.window_start.elapsed() < self.window {
            return Ok(());
        }
        if self.window_bytes < self.minimum {
            return Err(DownloadError::SlowRetrieval {
                received: self.window_bytes,
                window: self.window,
                min_bytes_per_sec: self.min_bytes_per_sec,
            });
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }
}

/// SHA-256 of a file, read in chunks.
async fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    Ok(context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes"))
}
