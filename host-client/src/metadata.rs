//! TUF metadata over HTTP, and the verified metadata kept in the install directory.
//!
//! `plugstore-tuf`'s client is synchronous: it asks a [`Fetch`] for one file at a time, in
//! the order its checks need them. [`HttpFetch`] answers from the store with the async HTTP
//! client, blocking on the runtime's handle, so it must be used from a blocking thread
//! (`tokio::task::spawn_blocking`), never from an async task.
//!
//! After every successful refresh the verified root chain, timestamp, snapshot and top-level
//! targets are written to `{install_dir}/tuf/` ([`save`]), and [`restore`] reads them back at
//! start, so a restarted host still refuses metadata older than what it has seen (rollback)
//! and root rotations it followed stay followed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugstore_tuf::client::{Fetch, FetchError, MAX_ROOT_BYTES, TrustedState};
use plugstore_tuf::error::VerificationError;
use plugstore_tuf::root::VerifiedRoot;
use reqwest::StatusCode;
use tokio::runtime::Handle;

use crate::download::{DownloadPolicy, RateFloor};
use crate::install::write_atomically;

/// Most root versions followed when reading the saved chain back (as in the TUF client).
const MAX_SAVED_ROOTS: u64 = 1024;

/// Fetches metadata files from `{metadata_base}{name}` over HTTP.
#[derive(Debug)]
pub(crate) struct HttpFetch {
    pub(crate) http: reqwest::Client,
    /// Ends with `/`.
    pub(crate) metadata_base: String,
    pub(crate) handle: Handle,
    /// Longest a whole metadata request may take.
    pub(crate) timeout: Duration,
    /// The minimum transfer rate, as for packages (slow retrieval of metadata).
    pub(crate) rate: DownloadPolicy,
}

impl Fetch for HttpFetch {
    fn fetch(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{name}", self.metadata_base);
        self.handle.block_on(fetch_capped(
            &self.http,
            &url,
            max_len,
            self.timeout,
            &self.rate,
        ))
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> FetchError {
    FetchError::Failed(Box::new(error))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

/// GETs `url`, reading at most `max_len + 1` bytes: one byte over the cap is enough for the
/// TUF client to refuse the file as too large (endless data) without reading the rest. A
/// body slower than the policy's minimum rate is given up on before the whole request's
/// `timeout` (slow retrieval).
async fn fetch_capped(
    http: &reqwest::Client,
    url: &str,
    max_len: u64,
    timeout: Duration,
    rate: &DownloadPolicy,
) -> Result<Vec<u8>, FetchError> {
    let response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(failed)?;
    match response.status() {
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE => {
            return Err(FetchError::NotFound);
        }
        status if !status.is_success() => {
            return Err(failed(Message(format!("{url}: HTTP {status}"))));
        }
        _ => {}
    }
    let cap = usize::try_from(max_len.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    let mut body = response.bytes_stream();
    let mut rate = RateFloor::new(rate);
    while let Some(chunk) = rate.next_chunk(&mut body).await {
        let chunk = chunk.map_err(failed)?;
        let room = cap - bytes.len();
        if chunk.len() >= room {
            bytes.extend_from_slice(&chunk[..room]);
            break;
        }
        bytes.extend_from_slice(&chunk);
        rate.received(chunk.len()).map_err(failed)?;
    }
    Ok(bytes)
}

/// Serves the saved files of `{install_dir}/tuf/` to [`TrustedState::restore`].
struct SavedFiles<'a> {
    dir: &'a Path,
}

impl Fetch for SavedFiles<'_> {
    fn fetch(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        read_saved(self.dir, name, max_len)
    }
}

fn read_saved(dir: &Path, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > max_len => {
            return Err(failed(Message(format!(
                "{} is larger than {max_len} bytes",
                path.display()
            ))));
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(FetchError::NotFound),
        Err(error) => return Err(failed(error)),
    }
    std::fs::read(&path).map_err(failed)
}

/// Why the saved metadata could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The pinned root, a saved root or a saved role failed verification.
    #[error("saved TUF metadata in {dir}: {source}{}", older_root_failures(.under_older_roots))]
    Verification {
        /// The directory of the saved files.
        dir: PathBuf,
        /// What failed (under the newest root, when the saved roles failed under every root).
        source: Box<VerificationError>,
        /// When the saved roles failed under every root of the chain, what failed under each
        /// older root, newest first: the damage is often easier to see there (a timestamp
        /// signed with a key the newest root rotated away fails there only as "0 valid
        /// signatures").
        under_older_roots: Vec<(u64, VerificationError)>,
    },
    /// A saved root could not be read.
    #[error("reading saved TUF metadata in {dir}: {source}")]
    Io {
        /// The directory of the saved files.
        dir: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

fn older_root_failures(errors: &[(u64, VerificationError)]) -> String {
    errors
        .iter()
        .map(|(version, error)| format!("; under root {version}: {error}"))
        .collect()
}

/// Starts from the pinned root, follows the saved root chain (each saved root verified as
/// the successor of the one before, exactly as when it was fetched), then restores the saved
/// timestamp, snapshot and targets under the newest root.
///
/// The saved roles may have been verified under an earlier root of the chain: [`save`]
/// writes the roots first, so a crash part-way through leaves a newer root beside the roles
/// of the refresh before. Likewise, when the application ships a pinned root newer than the
/// client had reached, the roles were verified under the newest saved root below the pinned
/// one (until the first save after the upgrade completes). So when the roles fail under the newest root, they are
/// restored under the newest earlier root they verify under, and the state then moves root
/// by root to the newest ([`TrustedState::adopt_root`]), dropping the roles whose keys a
/// root rotated, as following the rotation in a refresh would have. A saved role that fails
/// under every root is an error, never a first run.
pub(crate) fn restore(dir: &Path, pinned_root: &[u8]) -> Result<TrustedState, RestoreError> {
    let verification = |source| RestoreError::Verification {
        dir: dir.to_owned(),
        source: Box::new(source),
        under_older_roots: Vec::new(),
    };
    let io = |source| RestoreError::Io {
        dir: dir.to_owned(),
        source,
    };
    let pinned = VerifiedRoot::from_pinned(pinned_root).map_err(verification)?;
    // Oldest first; the last is the root the restored state trusts.
    let mut roots = vec![pinned.clone()];
    for _ in 0..MAX_SAVED_ROOTS {
        let newest = roots.last().expect("starts with the pinned root");
        let name = format!("{}.root.json", newest.version() + 1);
        match read_saved(dir, &name, MAX_ROOT_BYTES) {
            Ok(bytes) => {
                let next = newest.verify_successor(&bytes).map_err(verification)?;
                roots.push(next);
            }
            Err(FetchError::NotFound) => break,
            Err(FetchError::Failed(source)) => return Err(io(io::Error::other(source))),
        }
    }
    // The newest saved root below the pinned one (an application upgrade that pinned a newer
    // root than the client had reached) may be the root the saved roles were verified under:
    // also when a save after the upgrade was cut short, leaving the pinned root saved beside
    // roles it has not verified yet.
    if let Some(older) = newest_saved_root_below(dir, pinned.version()).map_err(io)? {
        let bytes = read_saved(dir, &format!("{older}.root.json"), MAX_ROOT_BYTES)
            .map_err(|error| io(io::Error::other(error)))?;
        // Nothing links this root to the pinned one when versions in between were never
        // saved, so it is checked on its own (signed by its own root keys). That is enough: a
        // role the pinned root keeps was verified with exactly the keys and threshold it
        // assigns.
        let older_root = VerifiedRoot::from_pinned(&bytes).map_err(verification)?;
        if older_root.version() != older {
            return Err(verification(VerificationError::RootVersion {
                expected: older,
                offered: older_root.version(),
            }));
        }
        roots.insert(0, older_root);
    }
    let saved = &mut SavedFiles { dir };
    // Newest root first.
    let mut failures = Vec::new();
    for (at, root) in roots.iter().enumerate().rev() {
        match TrustedState::restore(root.bytes(), saved) {
            Ok(mut state) => {
                for newer in &roots[at + 1..] {
                    state.adopt_root(newer.clone()).map_err(verification)?;
                }
                return Ok(state);
            }
            Err(error) => failures.push((root.version(), error)),
        }
    }
    let mut failures = failures.into_iter();
    let (_, newest) = failures
        .next()
        .expect("the chain holds at least the pinned root");
    Err(RestoreError::Verification {
        dir: dir.to_owned(),
        source: Box::new(newest),
        under_older_roots: failures.collect(),
    })
}

/// The highest `N` below `limit` of the saved `N.root.json` files, `None` when none is saved.
fn newest_saved_root_below(dir: &Path, limit: u64) -> io::Result<Option<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut newest = None;
    for entry in entries {
        let name = entry?.file_name();
        let version = name
            .to_str()
            .and_then(|name| name.strip_suffix(".root.json"))
            .and_then(|version| version.parse::<u64>().ok())
            .filter(|&version| version < limit);
        newest = newest.max(version);
    }
    Ok(newest)
}

/// Writes the state's verified files to `dir` (each atomically), in the order
/// [`TrustedState::saved_files`] gives, and then removes saved snapshot and targets files it
/// no longer names. Roots are all kept: they are the chain [`restore`] follows from the
/// pinned root.
///
/// A crash part-way leaves a state [`restore`] accepts with its checks intact: roots go
/// first (restore falls back to the root the old roles were verified under), the timestamp
/// last (until it is replaced, the old timestamp names the old snapshot, and the old
/// snapshot the old targets, which are still on disk), and nothing the old files name is
/// removed before the new ones are in place.
pub(crate) fn save(dir: &Path, state: &TrustedState) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let files = state.saved_files();
    for (name, bytes) in &files {
        let path = dir.join(name);
        let unchanged = std::fs::read(&path).is_ok_and(|saved| saved == *bytes);
        if !unchanged {
            write_atomically(&path, bytes)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = (name.ends_with(".snapshot.json") || name.ends_with(".targets.json"))
            && !files.iter().any(|(kept, _)| kept == name);
        if stale {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
