//! Blobs as files on the local filesystem.
//!
//! Layout under the store's directory:
//! - `sha256/<first 2 hex>/<hex>`: finished blobs, immutable;
//! - `tmp/<uuid>`: blobs being written (same filesystem, so the final rename is atomic).
//!
//! A blob is written to `tmp/`, fsynced, renamed into place and the parent directory fsynced,
//! so once `put` returns the blob survives a crash and a database row may refer to it.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use ring::digest::{Context, SHA256};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};

use super::{
    BlobDigest, BlobError, BlobObject, BlobRange, BlobStore, IO_CHUNK_SIZE, ListedBlob,
    STALE_TEMP_AGE, StoredBlob,
};

/// Blob store in a local directory.
pub(crate) struct DiskBlobStore {
    /// `<dir>/sha256`: finished blobs, sharded by the first two hex characters.
    blobs_dir: PathBuf,
    /// `<dir>/tmp`: blobs being written.
    temp_dir: PathBuf,
}

impl DiskBlobStore {
    /// Creates the layout under `dir` if needed and removes stale temporary files.
    pub(crate) async fn open(dir: &Path) -> Result<Self, BlobError> {
        let store = Self {
            blobs_dir: dir.join("sha256"),
            temp_dir: dir.join("tmp"),
        };
        fs::create_dir_all(&store.blobs_dir).await?;
        fs::create_dir_all(&store.temp_dir).await?;
        sync_dir(dir).await?;
        remove_stale_temp_files(&store.temp_dir, STALE_TEMP_AGE).await;
        Ok(store)
    }

    fn shard_dir(&self, digest: &BlobDigest) -> PathBuf {
        self.blobs_dir.join(hex::encode(&digest.as_bytes()[..1]))
    }

    fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        self.shard_dir(digest).join(digest.to_hex())
    }

    /// Copies `body` into the temporary file while hashing it; returns digest and size once
    /// the bytes are on stable storage.
    async fn write_temp(
        &self,
        temp_path: &Path,
        body: &mut (dyn AsyncRead + Send + Unpin),
        max_size: Option<u64>,
    ) -> Result<StoredBlob, BlobError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp_path)
            .await?;
        let mut writer = BufWriter::with_capacity(IO_CHUNK_SIZE, file);
        let mut hasher = Context::new(&SHA256);
        let mut chunk = vec![0u8; IO_CHUNK_SIZE];
        let mut size = 0u64;
        loop {
            let n = body.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if let Some(limit) = max_size
                && size > limit
            {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk[..n]);
            writer.write_all(&chunk[..n]).await?;
        }
        writer.flush().await?;
        writer.into_inner().sync_all().await?;
        Ok(StoredBlob {
            digest: BlobDigest::from_ring(hasher.finish()),
            size,
        })
    }

    /// Moves a complete, fsynced temporary file to its final name and makes the rename
    /// durable. Keeps an existing blob of the right size instead (same content by
    /// construction); one of another size is a leftover of outside damage and is replaced.
    async fn publish(&self, temp_path: &Path, stored: &StoredBlob) -> Result<(), BlobError> {
        let shard_dir = self.shard_dir(&stored.digest);
        match fs::create_dir(&shard_dir).await {
            Ok(()) => sync_dir(&self.blobs_dir).await?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let final_path = self.blob_path(&stored.digest);
        match fs::metadata(&final_path).await {
            Ok(existing) if existing.len() == stored.size => return Ok(()),
            Ok(_) => tracing::warn!(
                digest = %stored.digest,
                "replacing stored blob whose size does not match its digest"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs::rename(temp_path, &final_path).await?;
        sync_dir(&shard_dir).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for DiskBlobStore {
    async fn put(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        expected: Option<&BlobDigest>,
        max_size: Option<u64>,
    ) -> Result<StoredBlob, BlobError> {
        // Removes the temporary file on every exit, also when this future is dropped midway
        // (a client that disconnects); after a successful rename there is nothing to remove.
        let temp = TempFileGuard(self.temp_dir.join(uuid::Uuid::new_v4().to_string()));
        let stored = self.write_temp(&temp.0, body, max_size).await?;
        if let Some(expected) = expected
            && *expected != stored.digest
        {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual: stored.digest,
            });
        }
        self.publish(&temp.0, &stored).await?;
        Ok(stored)
    }

    async fn size_of(&self, digest: &BlobDigest) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(
        &self,
        digest: &BlobDigest,
        range: Option<BlobRange>,
    ) -> Result<BlobObject, BlobError> {
        let path = self.blob_path(digest);
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(file)) => file,
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Ok(Err(e)) => return Err(e.into()),
            Err(join) => return Err(io::Error::other(join).into()),
        };
        let size = file.metadata()?.len();
        let (start, len) = match range {
            None => (0, size),
            Some(range) => {
                if range.start > range.end_inclusive || range.end_inclusive >= size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("range {range:?} outside a blob of {size} bytes"),
                    )
                    .into());
                }
                (range.start, range.len())
            }
        };
        let body = stream_file(file, start, len);
        Ok(BlobObject { size, body })
    }

    async fn delete(&self, digest: &BlobDigest) -> Result<(), BlobError> {
        match fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(
        &self,
        after: Option<&BlobDigest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, BlobError> {
        let mut listed = Vec::new();
        let first_shard = after.map_or(0, |digest| digest.as_bytes()[0]);
        for shard in first_shard..=u8::MAX {
            if listed.len() >= limit {
                break;
            }
            let mut entries = match fs::read_dir(self.blobs_dir.join(hex::encode([shard]))).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let mut in_shard = Vec::new();
            while let Some(entry) = entries.next_entry().await? {
                // Only blobs: anything else in the tree is not this store's to report.
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<BlobDigest>().ok())
                else {
                    continue;
                };
                if after.is_some_and(|after| digest <= *after) {
                    continue;
                }
                let metadata = match entry.metadata().await {
                    Ok(metadata) => metadata,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                in_shard.push(ListedBlob {
                    digest,
                    size: metadata.len(),
                    modified: metadata.modified()?,
                });
            }
            in_shard.sort_unstable_by_key(|blob| blob.digest);
            listed.extend(in_shard);
        }
        listed.truncate(limit);
        Ok(listed)
    }

    async fn presigned_get_url(
        &self,
        _digest: &BlobDigest,
        _ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        Ok(None)
    }

    async fn check_ready(&self) -> Result<(), BlobError> {
        for dir in [&self.blobs_dir, &self.temp_dir] {
            if !fs::metadata(dir).await?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                )
                .into());
            }
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "disk"
    }
}

/// Deletes the temporary file it names when dropped (if it still exists).
struct TempFileGuard(PathBuf);

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and unlinking one file is quick.
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.0.display(),
                error = %e,
                "could not remove temporary blob file"
            ),
        }
    }
}

/// Makes changes to a directory's entries (a create or rename inside it) durable.
#[cfg(unix)]
async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

/// Directory entries cannot be fsynced on this platform; renames are as durable as it makes
/// them.
#[cfg(not(unix))]
async fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Removes temporary files not modified for `max_age`: a crashed writer left them behind.
/// Failures are logged, not returned: they must not keep the store from opening.
async fn remove_stale_temp_files(temp_dir: &Path, max_age: Duration) {
    let mut entries = match fs::read_dir(temp_dir).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %temp_dir.display(), error = %e, "cannot list temporary blob files");
            return;
        }
    };
    let now = SystemTime::now();
    let mut removed = 0usize;
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(dir = %temp_dir.display(), error = %e, "cannot list temporary blob files");
                break;
            }
        };
        let path = entry.path();
        let is_stale = match entry.metadata().await.and_then(|meta| meta.modified()) {
            Ok(modified) => now.duration_since(modified).unwrap_or_default() > max_age,
            Err(_) => false,
        };
        if !is_stale {
            continue;
        }
        match fs::remove_file(&path).await {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary blob file");
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %temp_dir.display(), removed, "removed stale temporary blob files");
    }
}

/// Streams `len` bytes of `file` from `start`. One blocking thread reads the whole range and
/// hands chunks over a small bounded channel: far fewer thread hops than an async file (one per
/// chunk), and memory per download stays at a few chunks whatever the client's speed.
fn stream_file(
    mut file: std::fs::File,
    start: u64,
    len: u64,
) -> futures_util::stream::BoxStream<'static, io::Result<bytes::Bytes>> {
    use std::io::{Read, Seek};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(IO_CHUNK_SIZE as u64) as usize;
            let mut chunk = bytes::BytesMut::zeroed(want);
            let read = match file.read(&mut chunk) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob file shorter than its recorded size",
                )),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            match read {
                Ok(n) => {
                    chunk.truncate(n);
                    remaining -= n as u64;
                    // The receiver is gone when the client disconnected: stop reading.
                    if tx.blocking_send(Ok(chunk.freeze())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_removes_only_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let temp_dir = dir.path().join("tmp");
        std::fs::create_dir_all(&temp_dir).unwrap();
        let stale = temp_dir.join("stale");
        let fresh = temp_dir.join("fresh");
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        let long_ago = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();

        DiskBlobStore::open(dir.path()).await.unwrap();

        assert!(!stale.exists());
        assert!(fresh.exists());
    }

    #[tokio::test]
    async fn layout_is_sharded_by_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlobStore::open(dir.path()).await.unwrap();
        let stored = store.put(&mut &b"hello"[..], None, None).await.unwrap();
        let hex = stored.digest.to_hex();
        assert!(
            dir.path()
                .join("sha256")
                .join(&hex[..2])
                .join(&hex)
                .is_file()
        );
    }
}
