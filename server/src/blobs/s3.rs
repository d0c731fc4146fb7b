//! Blobs as objects in an S3-compatible bucket (AWS S3, Garage, MinIO, ...).
//!
//! Keys: `<prefix>sha256/<hex>` for finished blobs, `<prefix>tmp/<uuid>` while a blob whose
//! digest is not known in advance is being uploaded.
//!
//! An upload is read one part (`multipart_part_size_mib`) at a time, hashed as it is read:
//! - a body that fits in one part is hashed completely before anything is sent, so it is
//!   written with a single PutObject straight to its final key;
//! - a larger body with an `expected` digest goes to its final key by multipart upload, which
//!   S3 makes visible only at CompleteMultipartUpload, issued only after the digest matched;
//! - a larger body without `expected` goes to a temporary key by multipart upload and is then
//!   copied server-side to its final key.
//!
//! On any failure the multipart upload is aborted or the temporary object deleted, also when
//! the `put` future is dropped midway (the cleanup is then spawned onto the runtime).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use ring::digest::{Context, SHA256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::ReaderStream;

use super::{
    BlobDigest, BlobError, BlobObject, BlobRange, BlobStore, IO_CHUNK_SIZE, ListedBlob, S3Settings,
    STALE_TEMP_AGE, StoredBlob,
};

const MIB: u64 = 1024 * 1024;
/// S3's smallest allowed part (except the last one).
const MIN_PART_SIZE_MIB: u64 = 5;
/// S3's largest allowed part.
const MAX_PART_SIZE_MIB: u64 = 5 * 1024;
/// S3's limit on the number of parts of one multipart upload.
const MAX_PARTS: i32 = 10_000;
/// The largest object a single CopyObject may copy; larger ones are copied part by part.
const MAX_SINGLE_COPY_SIZE: u64 = 5 * 1024 * MIB;
/// Part size for server-side multipart copies (no data passes through this process).
const COPY_PART_SIZE: u64 = 1024 * MIB;
/// How long the readiness probe may take before the bucket counts as unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Blob store in an S3 bucket.
pub(crate) struct S3BlobStore {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    presign_downloads: bool,
}

impl S3BlobStore {
    /// Builds the client from `settings` (no network traffic) and starts a background sweep
    /// of abandoned temporary objects and unfinished multipart uploads.
    pub(crate) fn open(settings: &S3Settings) -> Result<Self, BlobError> {
        let invalid = |what: &str| BlobError::Backend(format!("invalid S3 settings: {what}"));
        if settings.bucket.is_empty() {
            return Err(invalid("bucket is empty"));
        }
        if settings.access_key_id.is_empty() || settings.secret_access_key.is_empty() {
            return Err(invalid("access_key_id and secret_access_key are required"));
        }
        if !(MIN_PART_SIZE_MIB..=MAX_PART_SIZE_MIB).contains(&settings.multipart_part_size_mib) {
            return Err(invalid(&format!(
                "multipart_part_size_mib must be between {MIN_PART_SIZE_MIB} and \
                 {MAX_PART_SIZE_MIB}, got {}",
                settings.multipart_part_size_mib
            )));
        }
        let part_size = usize::try_from(settings.multipart_part_size_mib * MIB)
            .map_err(|_| invalid("multipart_part_size_mib does not fit in memory"))?;

        let credentials = Credentials::new(
            &settings.access_key_id,
            &settings.secret_access_key,
            None,
            None,
            "plugstore-settings",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            // Only send and check the checksums S3 requires: several S3-compatible services
            // reject or mishandle the newer default ones. Integrity of the content is checked
            // by our own SHA-256, and payloads are signed.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if !settings.endpoint.is_empty() {
            config = config.endpoint_url(&settings.endpoint);
        }

        let store = Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            part_size,
            presign_downloads: settings.presign_downloads,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let sweeper = Sweeper {
                client: store.client.clone(),
                bucket: store.bucket.clone(),
                prefix: store.prefix.clone(),
            };
            runtime.spawn(async move { sweeper.run(STALE_TEMP_AGE).await });
        }
        Ok(store)
    }

    fn blob_key(&self, digest: &BlobDigest) -> String {
        format!("{}{}", self.prefix, digest.storage_key())
    }

    fn temp_key(&self) -> String {
        format!("{}tmp/{}", self.prefix, uuid::Uuid::new_v4())
    }

    /// Size of the object at `key`, or `None` if there is none.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(content_length(
                head.content_length(),
                "HeadObject",
                key,
            )?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend_error("HeadObject", key, &e)),
        }
    }

    /// Stores a body that fits in one part; its digest is already known.
    async fn put_single(&self, part: Bytes, stored: &StoredBlob) -> Result<(), BlobError> {
        let key = self.blob_key(&stored.digest);
        if self.object_size(&key).await? == Some(stored.size) {
            return Ok(());
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| backend_error("PutObject", &key, &e))?;
        Ok(())
    }

    /// Uploads `first_part` and the rest of the body as a multipart upload to `key` and
    /// completes it only if the digest check passes.
    async fn put_multipart(
        &self,
        key: &str,
        first_part: Bytes,
        body: &mut PartReader<'_>,
        expected: Option<&BlobDigest>,
    ) -> Result<BlobDigest, BlobError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend_error("CreateMultipartUpload", key, &e))?;
        let upload_id = created.upload_id().ok_or_else(|| {
            BlobError::Backend(format!(
                "CreateMultipartUpload of {key} returned no upload id"
            ))
        })?;
        let cleanup = self.cleanup(Cleanup::AbortUpload {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        });

        let result = async {
            let mut parts = Vec::new();
            let mut part = first_part;
            loop {
                let part_number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                if part_number > MAX_PARTS {
                    return Err(BlobError::Backend(format!(
                        "blob exceeds {MAX_PARTS} parts of {} bytes",
                        self.part_size
                    )));
                }
                parts.push(self.upload_part(key, upload_id, part_number, part).await?);
                part = body.next_part().await?;
                if part.is_empty() {
                    break;
                }
            }
            let digest = body.digest();
            check_expected(expected, digest)?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| backend_error("CompleteMultipartUpload", key, &e))?;
            Ok(digest)
        }
        .await;

        match result {
            Ok(digest) => {
                cleanup.dismiss();
                Ok(digest)
            }
            Err(e) => {
                cleanup.run().await;
                Err(e)
            }
        }
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        part: Bytes,
    ) -> Result<CompletedPart, BlobError> {
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| backend_error("UploadPart", key, &e))?;
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(uploaded.e_tag().map(str::to_owned))
            .build())
    }

    /// Server-side copy of `size` bytes from `source_key` to `target_key`; objects larger
    /// than `single_copy_limit` are copied part by part (CopyObject stops at 5 GiB).
    async fn copy(
        &self,
        source_key: &str,
        target_key: &str,
        size: u64,
        single_copy_limit: u64,
    ) -> Result<(), BlobError> {
        let copy_source = encode_copy_source(&self.bucket, source_key);
        if size <= single_copy_limit {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(target_key)
                .copy_source(copy_source)
                .send()
                .await
                .map_err(|e| backend_error("CopyObject", target_key, &e))?;
            return Ok(());
        }

        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(target_key)
            .send()
            .await
            .map_err(|e| backend_error("CreateMultipartUpload", target_key, &e))?;
        let upload_id = created.upload_id().ok_or_else(|| {
            BlobError::Backend(format!(
                "CreateMultipartUpload of {target_key} returned no upload id"
            ))
        })?;
        let cleanup = self.cleanup(Cleanup::AbortUpload {
            key: target_key.to_owned(),
            upload_id: upload_id.to_owned(),
        });
        let copy_part_size = COPY_PART_SIZE
            .min(single_copy_limit.max(MIN_PART_SIZE_MIB * MIB))
            .max(size.div_ceil(MAX_PARTS as u64));
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < size {
                let end_inclusive = (start + copy_part_size).min(size) - 1;
                let part_number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let copied = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(target_key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .copy_source(&copy_source)
                    .copy_source_range(format!("bytes={start}-{end_inclusive}"))
                    .send()
                    .await
                    .map_err(|e| backend_error("UploadPartCopy", target_key, &e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(
                            copied
                                .copy_part_result()
                                .and_then(|result| result.e_tag())
                                .map(str::to_owned),
                        )
                        .build(),
                );
                start = end_inclusive + 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(target_key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| backend_error("CompleteMultipartUpload", target_key, &e))?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                cleanup.dismiss();
                Ok(())
            }
            Err(e) => {
                cleanup.run().await;
                Err(e)
            }
        }
    }

    /// Copies the completed temporary object to the blob's final key (unless a blob of that
    /// digest is already stored), then deletes the temporary object.
    async fn publish_temp(&self, temp_key: &str, stored: &StoredBlob) -> Result<(), BlobError> {
        let cleanup = self.cleanup(Cleanup::DeleteObject {
            key: temp_key.to_owned(),
        });
        let key = self.blob_key(&stored.digest);
        let result = async {
            if self.object_size(&key).await? != Some(stored.size) {
                self.copy(temp_key, &key, stored.size, MAX_SINGLE_COPY_SIZE)
                    .await?;
            }
            Ok(())
        }
        .await;
        cleanup.run().await;
        result
    }

    fn cleanup(&self, action: Cleanup) -> CleanupGuard {
        CleanupGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            action: Some(action),
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        expected: Option<&BlobDigest>,
        max_size: Option<u64>,
    ) -> Result<StoredBlob, BlobError> {
        let mut body = PartReader {
            body,
            part_size: self.part_size,
            hasher: Context::new(&SHA256),
            size: 0,
            max_size,
        };
        let first_part = body.next_part().await?;

        if first_part.len() < self.part_size {
            // The whole body is in hand (it ended before filling a part).
            let stored = StoredBlob {
                digest: body.digest(),
                size: body.size,
            };
            check_expected(expected, stored.digest)?;
            self.put_single(first_part, &stored).await?;
            return Ok(stored);
        }

        if let Some(expected) = expected {
            let key = self.blob_key(expected);
            let digest = self
                .put_multipart(&key, first_part, &mut body, Some(expected))
                .await?;
            return Ok(StoredBlob {
                digest,
                size: body.size,
            });
        }

        let temp_key = self.temp_key();
        let digest = self
            .put_multipart(&temp_key, first_part, &mut body, None)
            .await?;
        let stored = StoredBlob {
            digest,
            size: body.size,
        };
        self.publish_temp(&temp_key, &stored).await?;
        Ok(stored)
    }

    async fn size_of(&self, digest: &BlobDigest) -> Result<Option<u64>, BlobError> {
        self.object_size(&self.blob_key(digest)).await
    }

    async fn get(
        &self,
        digest: &BlobDigest,
        range: Option<BlobRange>,
    ) -> Result<BlobObject, BlobError> {
        let key = self.blob_key(digest);
        let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
        if let Some(range) = range {
            if range.start > range.end_inclusive {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid range {range:?}"),
                )
                .into());
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end_inclusive));
        }
        let object = match request.send().await {
            Ok(object) => object,
            Err(e) if is_not_found(&e) => return Err(BlobError::NotFound),
            Err(e) => return Err(backend_error("GetObject", &key, &e)),
        };
        let size = match range {
            None => content_length(object.content_length(), "GetObject", &key)?,
            Some(_) => object
                .content_range()
                .and_then(|header| header.rsplit_once('/'))
                .and_then(|(_, total)| total.parse::<u64>().ok())
                .ok_or_else(|| {
                    BlobError::Backend(format!(
                        "GetObject of {key} with a range returned no usable Content-Range"
                    ))
                })?,
        };
        let body = ReaderStream::with_capacity(object.body.into_async_read(), IO_CHUNK_SIZE);
        Ok(BlobObject {
            size,
            body: body.boxed(),
        })
    }

    async fn delete(&self, digest: &BlobDigest) -> Result<(), BlobError> {
        let key = self.blob_key(digest);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend_error("DeleteObject", &key, &e)),
        }
    }

    async fn list(
        &self,
        after: Option<&BlobDigest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, BlobError> {
        let blobs_prefix = format!("{}sha256/", self.prefix);
        let mut start_after = after.map(|digest| self.blob_key(digest));
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&blobs_prefix)
                .set_start_after(start_after.take())
                .max_keys(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| backend_error("ListObjectsV2", &blobs_prefix, &e))?;
            // Keys are listed in byte order, which for lowercase hex is digest order.
            let listed: Vec<ListedBlob> = page
                .contents()
                .iter()
                .filter_map(|object| {
                    let digest = object
                        .key()?
                        .strip_prefix(&blobs_prefix)?
                        .parse::<BlobDigest>()
                        .ok()?;
                    let modified = u64::try_from(object.last_modified()?.secs()).unwrap_or(0);
                    Some(ListedBlob {
                        digest,
                        size: u64::try_from(object.size()?).ok()?,
                        modified: UNIX_EPOCH + Duration::from_secs(modified),
                    })
                })
                .take(limit)
                .collect();
            // A page of keys that name no blob (put there by hand) is not the end.
            let last_key = page.contents().last().and_then(|object| object.key());
            match (listed.is_empty(), page.is_truncated(), last_key) {
                (true, Some(true), Some(key)) => start_after = Some(key.to_owned()),
                _ => return Ok(listed),
            }
        }
    }

    async fn presigned_get_url(
        &self,
        digest: &BlobDigest,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        if !self.presign_downloads {
            return Ok(None);
        }
        let key = self.blob_key(digest);
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| BlobError::Backend(format!("cannot presign {key} for {ttl:?}: {e}")))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .presigned(config)
            .await
            .map_err(|e| backend_error("presigning GetObject", &key, &e))?;
        Ok(Some(presigned.uri().to_owned()))
    }

    async fn check_ready(&self) -> Result<(), BlobError> {
        let probe = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(backend_error("HeadBucket", &self.bucket, &e)),
            Err(_) => Err(BlobError::Backend(format!(
                "HeadBucket of {} did not answer within {READY_TIMEOUT:?}",
                self.bucket
            ))),
        }
    }

    fn backend_name(&self) -> &'static str {
        "s3"
    }
}

/// Reads an upload body one part at a time, hashing and counting the bytes.
struct PartReader<'a> {
    body: &'a mut (dyn AsyncRead + Send + Unpin),
    part_size: usize,
    hasher: Context,
    /// Bytes read so far.
    size: u64,
    max_size: Option<u64>,
}

impl PartReader<'_> {
    /// The next `part_size` bytes, fewer only at the end of the body (empty after it).
    async fn next_part(&mut self) -> Result<Bytes, BlobError> {
        let mut part = BytesMut::with_capacity(self.part_size);
        while part.len() < self.part_size {
            let before = part.len();
            let remaining = (self.part_size - before) as u64;
            let n = (&mut *self.body)
                .take(remaining)
                .read_buf(&mut part)
                .await?;
            if n == 0 {
                break;
            }
            self.size += n as u64;
            if let Some(limit) = self.max_size
                && self.size > limit
            {
                return Err(BlobError::TooLarge { limit });
            }
            self.hasher.update(&part[before..]);
        }
        Ok(part.freeze())
    }

    /// SHA-256 of the bytes read so far.
    fn digest(&self) -> BlobDigest {
        BlobDigest::from_ring(self.hasher.clone().finish())
    }
}

fn check_expected(expected: Option<&BlobDigest>, actual: BlobDigest) -> Result<(), BlobError> {
    match expected {
        Some(expected) if *expected != actual => Err(BlobError::DigestMismatch {
            expected: *expected,
            actual,
        }),
        _ => Ok(()),
    }
}

fn content_length(length: Option<i64>, operation: &str, key: &str) -> Result<u64, BlobError> {
    length
        .and_then(|length| u64::try_from(length).ok())
        .ok_or_else(|| BlobError::Backend(format!("{operation} of {key} returned no size")))
}

fn is_not_found<E>(error: &SdkError<E, HttpResponse>) -> bool {
    error
        .raw_response()
        .is_some_and(|response| response.status().as_u16() == 404)
}

/// Describes a failed S3 call with the SDK's whole error chain. Neither the SDK's errors nor
/// the key contain credentials.
fn backend_error<E, R>(operation: &str, key: &str, error: &SdkError<E, R>) -> BlobError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    BlobError::Backend(format!(
        "S3 {operation} of {key} failed: {}",
        DisplayErrorContext(error)
    ))
}

/// The `x-amz-copy-source` value for `bucket`/`key`, percent-encoded as S3 requires.
fn encode_copy_source(bucket: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(bucket.len() + key.len() + 1);
    for byte in bucket
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(key.bytes())
    {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Something to undo when an upload does not complete.
enum Cleanup {
    AbortUpload { key: String, upload_id: String },
    DeleteObject { key: String },
}

/// Undoes an unfinished upload: explicitly with [`CleanupGuard::run`], or when dropped (the
/// `put` future was cancelled) by spawning the cleanup onto the current runtime.
struct CleanupGuard {
    client: Client,
    bucket: String,
    action: Option<Cleanup>,
}

impl CleanupGuard {
    /// The upload completed: nothing to undo.
    fn dismiss(mut self) {
        self.action = None;
    }

    /// Undoes the upload now. Failures are logged: the sweep at the next start retries.
    async fn run(mut self) {
        if let Some(action) = self.action.take() {
            perform_cleanup(&self.client, &self.bucket, action).await;
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let Some(action) = self.action.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let client = self.client.clone();
                let bucket = std::mem::take(&mut self.bucket);
                runtime.spawn(async move { perform_cleanup(&client, &bucket, action).await });
            }
            Err(_) => tracing::warn!(
                "no runtime to clean up an interrupted S3 upload; the next start sweeps it"
            ),
        }
    }
}

async fn perform_cleanup(client: &Client, bucket: &str, action: Cleanup) {
    match action {
        Cleanup::AbortUpload { key, upload_id } => {
            if let Err(e) = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(upload_id)
                .send()
                .await
            {
                tracing::warn!(
                    error = %DisplayErrorContext(&e),
                    key,
                    "could not abort an unfinished S3 multipart upload"
                );
            }
        }
        Cleanup::DeleteObject { key } => {
            if let Err(e) = client.delete_object().bucket(bucket).key(&key).send().await {
                tracing::warn!(
                    error = %DisplayErrorContext(&e),
                    key,
                    "could not delete a temporary S3 object"
                );
            }
        }
    }
}

/// Removes what crashed writers left behind under the store's prefix: temporary objects and
/// multipart uploads older than a given age.
struct Sweeper {
    client: Client,
    bucket: String,
    prefix: String,
}

impl Sweeper {
    async fn run(self, max_age: Duration) {
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since_epoch| since_epoch.as_secs());
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        if let Err(e) = self.remove_temp_objects(cutoff).await {
            tracing::warn!(error = %e, "sweeping temporary S3 objects failed");
        }
        if let Err(e) = self.abort_uploads(cutoff).await {
            tracing::warn!(error = %e, "sweeping unfinished S3 multipart uploads failed");
        }
    }

    async fn remove_temp_objects(&self, cutoff_secs: i64) -> Result<(), BlobError> {
        let temp_prefix = format!("{}tmp/", self.prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&temp_prefix)
            .into_paginator()
            .send();
        let mut removed = 0usize;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend_error("ListObjectsV2", &temp_prefix, &e))?;
            for object in page.contents() {
                let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                    continue;
                };
                if modified.secs() < cutoff_secs {
                    perform_cleanup(
                        &self.client,
                        &self.bucket,
                        Cleanup::DeleteObject {
                            key: key.to_owned(),
                        },
                    )
                    .await;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                prefix = temp_prefix,
                "removed stale temporary S3 objects"
            );
        }
        Ok(())
    }

    async fn abort_uploads(&self, cutoff_secs: i64) -> Result<(), BlobError> {
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        let mut aborted = 0usize;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(|e| backend_error("ListMultipartUploads", &self.prefix, &e))?;
            for upload in page.uploads() {
                let (Some(key), Some(upload_id), Some(initiated)) =
                    (upload.key(), upload.upload_id(), upload.initiated())
                else {
                    continue;
                };
                // Only uploads this store starts: never another application's under a shared
                // (or empty) prefix.
                let ours = key.starts_with(&format!("{}tmp/", self.prefix))
                    || key.starts_with(&format!("{}sha256/", self.prefix));
                if ours && initiated.secs() < cutoff_secs {
                    perform_cleanup(
                        &self.client,
                        &self.bucket,
                        Cleanup::AbortUpload {
                            key: key.to_owned(),
                            upload_id: upload_id.to_owned(),
                        },
                    )
                    .await;
                    aborted += 1;
                }
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        if aborted > 0 {
            tracing::info!(aborted, "aborted stale S3 multipart uploads");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(
            encode_copy_source("bucket", "a b/tmp/ü+x"),
            "bucket/a%20b/tmp/%C3%BC%2Bx"
        );
    }

    /// Settings for the Garage from `scripts/garage.sh` with a fresh prefix, or `None` when
    /// no S3 server is configured.
    fn test_settings() -> Option<S3Settings> {
        let Ok(endpoint) = std::env::var("PLUGSTORE_TEST_S3_ENDPOINT") else {
            assert!(
                std::env::var("PLUGSTORE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "PLUGSTORE_REQUIRE_SERVICES=1 but PLUGSTORE_TEST_S3_ENDPOINT is not set"
            );
            eprintln!("skipped: PLUGSTORE_TEST_S3_ENDPOINT not set");
            return None;
        };
        let env = |name: &str| std::env::var(name).unwrap_or_default();
        Some(S3Settings {
            endpoint,
            bucket: env("PLUGSTORE_TEST_S3_BUCKET"),
            region: env("PLUGSTORE_TEST_S3_REGION"),
            access_key_id: env("PLUGSTORE_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: env("PLUGSTORE_TEST_S3_SECRET_ACCESS_KEY"),
            prefix: format!("unit-{}/", uuid::Uuid::new_v4()),
            multipart_part_size_mib: 5,
            ..S3Settings::default()
        })
    }

    /// The part-by-part copy is only needed above 5 GiB; exercise it on a small object by
    /// lowering the limit.
    #[tokio::test]
    async fn multipart_copy_preserves_bytes() {
        let Some(settings) = test_settings() else {
            return;
        };
        let store = S3BlobStore::open(&settings).unwrap();
        let data: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
        let stored = store.put(&mut &data[..], None, None).await.unwrap();

        let source = store.blob_key(&stored.digest);
        let target = format!("{}copy", settings.prefix);
        store.copy(&source, &target, stored.size, 0).await.unwrap();

        let copied = store
            .client
            .get_object()
            .bucket(&store.bucket)
            .key(&target)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(copied == data[..], "copied bytes differ");

        for key in [source, target] {
            store
                .client
                .delete_object()
                .bucket(&store.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn sweeper_removes_abandoned_temp_objects_and_uploads() {
        let Some(settings) = test_settings() else {
            return;
        };
        let store = S3BlobStore::open(&settings).unwrap();
        let client = &store.client;
        let temp_key = store.temp_key();
        client
            .put_object()
            .bucket(&store.bucket)
            .key(&temp_key)
            .body(ByteStream::from_static(b"abandoned"))
            .send()
            .await
            .unwrap();
        client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(format!("{}sha256/abandoned", settings.prefix))
            .send()
            .await
            .unwrap();
        // Timestamps have one-second resolution.
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let sweeper = Sweeper {
            client: client.clone(),
            bucket: store.bucket.clone(),
            prefix: store.prefix.clone(),
        };
        sweeper.run(Duration::ZERO).await;

        let objects = client
            .list_objects_v2()
            .bucket(&store.bucket)
            .prefix(&settings.prefix)
            .send()
            .await
            .unwrap();
        assert!(objects.contents().is_empty(), "{:?}", objects.contents());
        let uploads = client
            .list_multipart_uploads()
            .bucket(&store.bucket)
            .prefix(&settings.prefix)
            .send()
            .await
            .unwrap();
        assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    }
}
