//! Content-addressed blob storage: every blob is stored under the SHA-256 of its bytes
//! (`sha256/<hex>`).
//!
//! Two backends implement [`BlobStore`]: the local filesystem ([`open_disk`]) and any
//! S3-compatible service ([`open_s3`]). Both stream: a blob is never held whole in memory
//! (the S3 backend buffers at most one multipart part). A blob becomes visible under its
//! digest only once all of its bytes are durable and checked, so a database row may refer to
//! a digest as soon as [`BlobStore::put`] has returned.

mod disk;
mod s3;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// Size of the chunks blobs are read, hashed, written and streamed in.
pub(crate) const IO_CHUNK_SIZE: usize = 256 * 1024;

/// Temporary data (half-written files, unfinished uploads) older than this is considered
/// abandoned by a crashed process and removed when a store is opened. A day is far longer
/// than any upload takes, so a replica never sweeps away another replica's upload in progress.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// SHA-256 of a blob's bytes; parses from exactly 64 lowercase hex chars. Orders as its hex
/// does, which is the order stores list blobs in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BlobDigest([u8; 32]);

impl BlobDigest {
    /// Wraps a raw SHA-256 value.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw SHA-256 value.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The backend-independent key the blob is stored under: `sha256/<hex>`.
    pub fn storage_key(&self) -> String {
        format!("sha256/{}", self.to_hex())
    }

    /// Hashes an in-memory byte slice (for small data and tests; stores hash while streaming).
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_ring(ring::digest::digest(&ring::digest::SHA256, bytes))
    }

    /// Converts a finished ring SHA-256 digest.
    pub(crate) fn from_ring(digest: ring::digest::Digest) -> Self {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }
}

impl FromStr for BlobDigest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(DigestParseError::WrongLength(s.len()));
        }
        if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestParseError::NotLowercaseHex);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| DigestParseError::NotLowercaseHex)?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a string is not a valid [`BlobDigest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The string does not have exactly 64 characters.
    #[error("a SHA-256 digest has 64 hex characters, got {0}")]
    WrongLength(usize),
    /// The string contains something other than `0-9` and `a-f`.
    #[error("a SHA-256 digest consists of lowercase hex characters only")]
    NotLowercaseHex,
}

/// What [`BlobStore::put`] stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoredBlob {
    /// SHA-256 of the stored bytes.
    pub digest: BlobDigest,
    /// Number of bytes stored.
    pub size: u64,
}

/// An inclusive byte range of a blob, already validated by the caller against the blob's size
/// (`start <= end_inclusive < size`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlobRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte.
    pub end_inclusive: u64,
}

impl BlobRange {
    /// Number of bytes in the range.
    pub(crate) fn len(&self) -> u64 {
        self.end_inclusive - self.start + 1
    }
}

/// A blob being read: its total size and a stream of its bytes (the requested range only).
pub struct BlobObject {
    /// Size of the whole blob, also when only a range is streamed.
    pub size: u64,
    /// The bytes, in chunks; an `Err` item means the read failed midway.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl fmt::Debug for BlobObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobObject")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Failures of blob storage operations.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob is stored under the digest.
    #[error("blob not found")]
    NotFound,
    /// The bytes received do not hash to the digest the caller expected.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: BlobDigest,
        /// The digest of the bytes actually received.
        actual: BlobDigest,
    },
    /// The body is longer than the caller's limit; reading stopped there.
    #[error("blob larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: u64,
    },
    /// Local I/O failed, including a body reader that failed midway.
    #[error("blob I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The storage service failed or is misconfigured; the message never contains secrets.
    #[error("blob storage backend error: {0}")]
    Backend(String),
    /// A digest string could not be parsed.
    #[error("invalid blob digest: {0}")]
    InvalidDigest(#[from] DigestParseError),
}

/// A stored blob as [`BlobStore::list`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedBlob {
    /// Its name.
    pub digest: BlobDigest,
    /// Its length in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// A content-addressed blob store. Implementations are cheap to share behind an `Arc`.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` in; the blob becomes visible under its digest only after all bytes are
    /// written durably and (if given) `expected` matched. On any error (reader error midway,
    /// mismatch, too large) nothing is visible and temp data is removed. Storing a blob that
    /// already exists succeeds and leaves the existing blob in place.
    async fn put(
        &self,
        body: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
        expected: Option<&BlobDigest>,
        max_size: Option<u64>,
    ) -> Result<StoredBlob, BlobError>;

    /// The size of the blob, or `None` when it is not stored.
    async fn size_of(&self, digest: &BlobDigest) -> Result<Option<u64>, BlobError>;

    /// Opens the blob (or one range of it) for streaming; [`BlobError::NotFound`] if absent.
    async fn get(
        &self,
        digest: &BlobDigest,
        range: Option<BlobRange>,
    ) -> Result<BlobObject, BlobError>;

    /// Removes the blob; removing an absent blob succeeds.
    async fn delete(&self, digest: &BlobDigest) -> Result<(), BlobError>;

    /// Up to `limit` stored blobs in digest order, those after `after` when given: one page
    /// of what the collector of unreferenced blobs walks (`blob_gc`).
    async fn list(
        &self,
        after: Option<&BlobDigest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, BlobError>;

    /// A time-limited URL a client can GET directly, when the backend supports and is
    /// configured for it.
    async fn presigned_get_url(
        &self,
        digest: &BlobDigest,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError>;

    /// Cheap reachability probe for /readyz.
    async fn check_ready(&self) -> Result<(), BlobError>;

    /// "disk" or "s3", for logs and metrics.
    fn backend_name(&self) -> &'static str;
}

/// Where and how to reach an S3-compatible blob store (AWS S3, Garage, MinIO, ...).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Endpoint URL such as `http://127.0.0.1:3900`; empty means the AWS default for `region`.
    pub endpoint: String,
    /// Bucket holding the blobs; must exist.
    pub bucket: String,
    /// Region used for request signing (Garage's default is `garage`).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key; never printed by `Debug`.
    pub secret_access_key: String,
    /// Address the bucket as `endpoint/bucket` instead of `bucket.endpoint` (needed by Garage
    /// and MinIO unless virtual-host style is set up).
    pub force_path_style: bool,
    /// Prepended verbatim to every key; end it with `/` to get a folder (`plugstore/`).
    pub prefix: String,
    /// Whether [`BlobStore::presigned_get_url`] hands out presigned URLs.
    pub presign_downloads: bool,
    /// Size of multipart upload parts in MiB (5..=5120); at most one part is held in memory
    /// per upload.
    pub multipart_part_size_mib: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            force_path_style: true,
            prefix: String::new(),
            presign_downloads: false,
            multipart_part_size_mib: 16,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret_access_key.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret)
            .field("force_path_style", &self.force_path_style)
            .field("prefix", &self.prefix)
            .field("presign_downloads", &self.presign_downloads)
            .field("multipart_part_size_mib", &self.multipart_part_size_mib)
            .finish()
    }
}

/// Opens (creating it if needed) a blob store in the directory `dir`, and removes temporary
/// files left behind by crashed writers.
pub async fn open_disk(dir: &Path) -> Result<Arc<dyn BlobStore>, BlobError> {
    Ok(Arc::new(disk::DiskBlobStore::open(dir).await?))
}

/// Opens a blob store in an S3 bucket. Does not contact the service (use
/// [`BlobStore::check_ready`] for that) apart from a background sweep that removes
/// temporary objects and unfinished uploads abandoned by crashed writers.
pub async fn open_s3(settings: &S3Settings) -> Result<Arc<dyn BlobStore>, BlobError> {
    Ok(Arc::new(s3::S3BlobStore::open(settings)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parses_lowercase_hex_only() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let digest: BlobDigest = hex.parse().unwrap();
        assert_eq!(digest, BlobDigest::of(b""));
        assert_eq!(digest.to_string(), hex);
        assert_eq!(digest.storage_key(), format!("sha256/{hex}"));
        assert_eq!(
            hex.to_uppercase().parse::<BlobDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
        assert_eq!(
            hex[1..].parse::<BlobDigest>(),
            Err(DigestParseError::WrongLength(63))
        );
        assert_eq!(
            format!("{}g", &hex[1..]).parse::<BlobDigest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
    }

    #[test]
    fn settings_debug_hides_secret() {
        let settings = S3Settings {
            secret_access_key: "very-secret-value".into(),
            ..S3Settings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn settings_defaults() {
        let settings: S3Settings = toml::from_str("bucket = \"b\"").unwrap();
        assert_eq!(settings.bucket, "b");
        assert_eq!(settings.region, "us-east-1");
        assert!(settings.force_path_style);
        assert_eq!(settings.multipart_part_size_mib, 16);
        assert!(!settings.presign_downloads);
    }
}
