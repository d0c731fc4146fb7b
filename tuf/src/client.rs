//! The client's side: fetching metadata through the caller's transport and verifying it in
//! the named steps of TUF 1.0 §5.3–5.6.

/// The caller's transport for metadata files.
///
/// `name` is a file name relative to the repository's metadata base (`3.root.json`,
/// `timestamp.json`, `12.bin-3f2.json`). The implementation enforces timeouts and a minimum
/// transfer rate (slow retrieval) and should stop reading after `max_len` bytes; the client
/// refuses anything longer in any case (endless data).
pub trait Fetch {
    /// Fetches `name`, returning at most `max_len` bytes.
    fn fetch(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError>;
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file does not exist (HTTP 403, 404 or 410). For `N.root.json` this ends the root
    /// chain; for any other file it fails the update.
    #[error("not found")]
    NotFound,
    /// Anything else (network, timeout, transfer too slow): fails the update.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}
