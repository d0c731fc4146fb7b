//! Getting a package by patch when the host has a base for it, and in full otherwise.
//!
//! A patch is only a way to make the package's bytes: the result must still have the package
//! target's signed length and SHA-256. Anything wrong on the way (the patch's own download or
//! hash, a base that is not the one the patch starts from, a patch that does not apply, a
//! result with the wrong hash) falls back to downloading the full package, and says why.

use std::io::{self, BufWriter, Write as _};
use std::path::Path;

use plugstore_format::digest::{DigestingWriter, PackageDigest};

use crate::download::{DownloadError, DownloadPolicy, ExpectedTarget, download, partial_path};

/// A patch to the package, as signed metadata describes it, and the local base it starts from.
#[derive(Clone, Debug)]
pub struct PatchSource<'a> {
    /// Where to download the patch.
    pub url: &'a str,
    /// The patch target's signed length and SHA-256.
    pub expected: ExpectedTarget,
    /// SHA-256 of the package the patch starts from.
    pub base_sha256: [u8; 32],
    /// That package in the host's content-addressed cache.
    pub base: &'a Path,
}

/// How the package arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Made from the base and the patch.
    Patched,
    /// Downloaded in full; `patch_error` says why the patch was not used, when there was one.
    Full {
        /// The reason the patch path failed.
        patch_error: Option<String>,
    },
}

/// Puts the package at `dest`: by `patch` when given and it works, else from `full_url`.
///
/// # Errors
/// Only the full download's errors: a failing patch is a fallback, not an error.
pub async fn fetch_package(
    http: &reqwest::Client,
    full_url: &str,
    full: ExpectedTarget,
    patch: Option<PatchSource<'_>>,
    dest: &Path,
    policy: &DownloadPolicy,
) -> Result<Fetched, DownloadError> {
    fetch_package_with_progress(http, full_url, full, patch, dest, policy, |_, _| {}).await
}

/// [`fetch_package`], calling `progress(received, total)` as bytes arrive: the patch's (its
/// length as the total), and the full package's if it comes to that.
///
/// # Errors
/// Only the full download's errors: a failing patch is a fallback, not an error.
pub async fn fetch_package_with_progress(
    http: &reqwest::Client,
    full_url: &str,
    full: ExpectedTarget,
    patch: Option<PatchSource<'_>>,
    dest: &Path,
    policy: &DownloadPolicy,
    mut progress: impl FnMut(u64, u64),
) -> Result<Fetched, DownloadError> {
    let patch_error = match patch {
        Some(patch) => match apply_from(http, &patch, full, dest, policy, &mut progress).await {
            Ok(()) => return Ok(Fetched::Patched),
            Err(error) => Some(error.to_string()),
        },
        None => None,
    };
    download(http, full_url, full, dest, policy, &mut progress).await?;
    Ok(Fetched::Full { patch_error })
}

/// Why the patch path failed.
#[derive(Debug, thiserror::Error)]
enum PatchPathError {
    #[error("downloading the patch: {0}")]
    Download(#[from] DownloadError),
    #[error("the local base is not the package the patch starts from")]
    WrongBase,
    #[error("the patch does not apply: {0}")]
    Apply(#[from] plugstore_format::delta::DeltaError),
    #[error("the patched package does not match the signed SHA-256")]
    ResultMismatch,
    #[error("local file: {0}")]
    Io(#[from] io::Error),
    #[error("the patch ({patch} bytes) is not smaller than the package ({package} bytes)")]
    NotSmaller { patch: u64, package: u64 },
}

async fn apply_from(
    http: &reqwest::Client,
    patch: &PatchSource<'_>,
    full: ExpectedTarget,
    dest: &Path,
    policy: &DownloadPolicy,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), PatchPathError> {
    // A patch is read whole to be applied. The store only signs patches smaller than their
    // package, so a larger one is not worth fetching, and refusing it bounds the memory a
    // patch takes by the package's own signed length, whoever signed it.
    if patch.expected.length >= full.length {
        return Err(PatchPathError::NotSmaller {
            patch: patch.expected.length,
            package: full.length,
        });
    }
    let mut patch_file = dest.as_os_str().to_owned();
    patch_file.push(".patch");
    let patch_file = std::path::PathBuf::from(patch_file);
    let result = async {
        download(
            http,
            patch.url,
            patch.expected,
            &patch_file,
            policy,
            &mut *progress,
        )
        .await?;
        let base = tokio::fs::read(patch.base).await?;
        if PackageDigest::of(&base).as_bytes() != &patch.base_sha256 {
            return Err(PatchPathError::WrongBase);
        }
        let bytes = tokio::fs::read(&patch_file).await?;
        let staging = partial_path(dest);
        let made = staging.clone();
        // Patching is CPU work on whole files; off the async workers.
        // The result is hashed as it is written, not read back.
        tokio::task::spawn_blocking(move || -> Result<(), PatchPathError> {
            let mut out = DigestingWriter::new(BufWriter::new(std::fs::File::create(&made)?));
            plugstore_format::delta::apply_patch(&base, &bytes, full.length, &mut out)?;
            out.flush()?;
            let (digest, length) = out.finish();
            if length != full.length || digest.as_bytes() != &full.sha256 {
                return Err(PatchPathError::ResultMismatch);
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        tokio::fs::rename(&staging, dest).await?;
        Ok(())
    }
    .await;
    let _ = tokio::fs::remove_file(&patch_file).await;
    if result.is_err() {
        // Nothing of a failed patch may be resumed by the full download.
        let _ = tokio::fs::remove_file(partial_path(dest)).await;
    }
    result
}
