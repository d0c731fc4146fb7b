//! The in-memory catalogue behind `POST /api/v1/updates/check`.
//!
//! An update check touches only the plugins the host has installed, so the catalogue is a
//! cache of plugins filled on first request and kept in step with the database through the
//! change feed (`catalogue_changes`, written by triggers): the cost of a check grows with the
//! installed set, never with the catalogue. A replica drops the entries the feed names; on
//! PostgreSQL it is woken by `NOTIFY plugstore_catalogue`, and it polls the feed as well, so a
//! lost notification only delays a change by [`POLL_INTERVAL`].
//!
//! The feed's sequence numbers come from a PostgreSQL identity, and concurrent transactions
//! may commit them out of order. A reader therefore re-reads the last [`SETTLE_SECS`] of the
//! feed and remembers what it has applied, rather than trusting a single high-water mark.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, Target};
use semver::Version;
use tokio::sync::Notify;

use crate::db::{Database, Engine};
use crate::host_range::HostRange;
use plugstore_tuf::layout::TargetPath;

use crate::releases::{self, PluginKeys, ReleasePatch, ReleaseState, Signatures};

/// How often a replica reads the change feed when no notification arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long after it is written a change can still appear below a newer one (a transaction
/// that committed late). Changes are re-read for this long.
pub const SETTLE_SECS: i64 = 30;

/// What hosts can be offered of one plugin.
///
/// A check reads 50 plugins out of a catalogue far larger than the processor's caches, so
/// its cost is mostly memory reads that miss them. The layout keeps those few: digests and
/// platforms are inline, and the prepared JSON of every version and patch sits in one
/// buffer, so a plugin is a handful of allocations rather than one per string.
#[derive(Debug)]
pub struct PluginOffers {
    /// Its database id.
    pub plugin_db_id: i64,
    /// The plugin.
    pub id: PluginId,
    /// Newest version first.
    pub versions: Vec<OfferedVersion>,
    /// Whether any version is revoked. Only then does a check look past the version it
    /// offers for the installed one: each version further is another read from memory.
    pub any_revoked: bool,
    /// The snapshot whose metadata signs the plugin as loaded; `None` while a change to it
    /// waits to be signed, and then nothing of it is offered (revocations still are), so
    /// what the check offers is what a host can verify.
    pub signed_in_snapshot: Option<u64>,
    /// The prepared JSON of the versions and patches, one after another (see [`JsonSpan`]).
    /// Bytes, not a `str`: slicing a `str` reads the bytes at both ends to check they are
    /// character boundaries, two more reads that miss the processor's caches per copy.
    json: Box<[u8]>,
}

impl PluginOffers {
    /// The prepared JSON at `span`.
    pub fn json(&self, span: JsonSpan) -> &[u8] {
        self.json
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }
}

/// Where one prepared JSON text lies in its plugin's buffer.
#[derive(Debug, Clone, Copy)]
pub struct JsonSpan {
    start: u32,
    end: u32,
}

/// One release, reduced to what an update check needs, with the parts of the answer that do
/// not depend on the host already rendered: a check of 50 plugins then copies text instead of
/// formatting target names, URLs and hex digests 50 times.
#[derive(Debug)]
pub struct OfferedVersion {
    /// The version.
    pub version: Version,
    /// The package digest (what hosts send, as hex).
    pub digest: PackageDigest,
    /// The answer's `"version":…,"signed_in_snapshot":…,"package":{…}` members of an update
    /// (`OfferedUpdate`), as JSON.
    pub version_and_package: JsonSpan,
    /// Published, yanked or revoked.
    pub state: ReleaseState,
    /// Its length.
    pub size: u64,
    /// Host versions it supports.
    pub host: HostRange,
    /// Platforms it runs on.
    platforms: PlatformSet,
    /// Percentage of install ids offered the version.
    pub rollout_percent: u8,
    /// Offered to nobody new.
    pub rollout_paused: bool,
    /// Patches to it, by base.
    pub patches: Vec<OfferedPatch>,
}

/// A patch to an offered version.
#[derive(Debug)]
pub struct OfferedPatch {
    /// The package it applies to.
    pub from: PackageDigest,
    /// Its length.
    pub size: u64,
    /// The answer's `patch` object (`PatchDownload`), as JSON.
    pub json: JsonSpan,
}

/// A set of platforms, one bit per [`Target`] (in the order of [`Target::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlatformSet(u16);

impl PlatformSet {
    fn bit(target: Target) -> u16 {
        let index = Target::ALL.iter().position(|t| *t == target).unwrap_or(0);
        1 << index
    }

    fn of(targets: &[Target]) -> Self {
        Self(targets.iter().fold(0, |set, t| set | Self::bit(*t)))
    }

    /// Whether a plugin for these platforms runs on `platform`.
    fn runs_on(self, platform: Target) -> bool {
        self.0 & (Self::bit(Target::Any) | Self::bit(platform)) != 0
    }
}

/// What a host tells about itself.
#[derive(Debug, Clone)]
pub struct HostContext<'a> {
    /// The host application's version.
    pub version: &'a Version,
    /// Its platform.
    pub platform: Target,
    /// Whether it takes pre-releases (the beta channel).
    pub beta: bool,
    /// Its install id, for staged rollouts.
    pub install_id: &'a str,
}

impl OfferedVersion {
    /// Whether a host may be offered this version.
    pub fn eligible_for(&self, plugin: &PluginId, host: &HostContext<'_>) -> bool {
        self.state == ReleaseState::Published
            && (host.beta || self.version.pre.is_empty())
            && self.host.matches(host.version)
            && self.platforms.runs_on(host.platform)
            && !self.rollout_paused
            && (self.rollout_percent >= 100
                || rollout_bucket(host.install_id, plugin, &self.version) < self.rollout_percent)
    }
}

/// An install id's bucket (0–99) for one version's rollout. Hashing the version in means each
/// release reaches a different first slice of the installs, so no host is always first.
pub fn rollout_bucket(install_id: &str, plugin: &PluginId, version: &Version) -> u8 {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (i, part) in [install_id, &plugin.to_string(), &version.to_string()]
        .iter()
        .enumerate()
    {
        if i > 0 {
            context.update(&[0]);
        }
        context.update(part.as_bytes());
    }
    let hash = context.finish();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hash.as_ref()[..8]);
    let prefix = u64::from_be_bytes(prefix);
    // Modulo bias of 2^64 mod 100 is far below anything a rollout percentage can show.
    (prefix % 100) as u8
}

/// The cache and its position in the change feed.
#[derive(Debug)]
pub struct Catalogue {
    /// Where answers point hosts for downloads (see [`crate::app::App::download_base`]).
    download_base: String,
    /// See [`Catalogue::answer_tail`].
    answer_tail: String,
    entries: RwLock<CachedPlugins>,
    /// Bumped by every applied change, so a load that raced with one is not cached.
    generation: AtomicU64,
    feed: Mutex<FeedPosition>,
    wake: Notify,
}

/// Hashing for maps whose keys the store chose or whose size a request bounds: foldhash, seeded
/// per map, costs a fraction of SipHash on the 50 lookups of every check. It resists only
/// simple collision attacks (its README), so the set of names anyone may ask for, which grows
/// with what strangers send, keeps the standard library's SipHash.
pub type FastHash = foldhash::fast::RandomState;

/// Cached plugins by `publisher/name`, so a lookup borrows the host's text.
#[derive(Debug, Default)]
struct CachedPlugins {
    /// Filled only with plugins that exist, from the database.
    by_name: HashMap<Box<str>, Arc<PluginOffers>, FastHash>,
    /// Database id → name of the cached plugins, to apply the change feed.
    names: HashMap<i64, Box<str>, FastHash>,
    /// Names asked for that have no plugin; forgotten when a plugin the cache does not know
    /// changes (it may be one of them, just created).
    missing: HashSet<Box<str>>,
}

/// What the cache knows of one `publisher/name`.
#[derive(Debug, Clone, Copy)]
pub enum Cached<'a> {
    /// The plugin's offers.
    Offers(&'a PluginOffers),
    /// There is no such plugin.
    Missing,
    /// Not cached: [`Catalogue::plugin`] loads it.
    Unknown,
}

/// The cache under a read lock, for the length of one check's rendering (no `await` while it
/// is held: a change waits for the few microseconds a check takes).
pub struct CacheView<'a>(RwLockReadGuard<'a, CachedPlugins>);

impl CacheView<'_> {
    /// What the cache knows of `id` (`publisher/name`).
    pub fn get(&self, id: &str) -> Cached<'_> {
        match self.0.by_name.get(id) {
            Some(offers) => Cached::Offers(offers),
            None if self.0.missing.contains(id) => Cached::Missing,
            None => Cached::Unknown,
        }
    }
}

impl CachedPlugins {
    /// Remembers that `name` has no plugin, keeping at most `limit` such names: anyone may ask
    /// for names that do not exist, and the set must not grow with them. When it is full it
    /// is emptied; forgetting costs a query per name asked for again.
    fn remember_missing(&mut self, name: Box<str>, limit: usize) {
        if self.missing.len() >= limit {
            self.missing.clear();
        }
        self.missing.insert(name);
    }
}

#[derive(Debug, Default)]
struct FeedPosition {
    /// Every change at or below this is applied and settled.
    settled: i64,
    /// Changes above `settled` already applied.
    applied: BTreeSet<i64>,
}

/// Most names of plugins that do not exist the cache remembers.
const MAX_MISSING_NAMES: usize = 100_000;

/// Rows read from the change feed per query.
const FEED_PAGE: i64 = 10_000;

impl Catalogue {
    /// An empty catalogue whose answers point at `download_base`.
    pub fn new(download_base: impl Into<String>) -> Self {
        let download_base = download_base.into();
        Self {
            answer_tail: format!(
                ",{}}}",
                json_members(&[("metadata_url", Json::Owned(format!("{download_base}/tuf/")))])
            ),
            download_base,
            entries: RwLock::default(),
            generation: AtomicU64::default(),
            feed: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// The cache, read-locked.
    pub fn view(&self) -> CacheView<'_> {
        CacheView(self.entries.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The end of every update check's answer: `,"metadata_url":"…"}`.
    pub fn answer_tail(&self) -> &str {
        &self.answer_tail
    }

    /// The offers of each plugin in `ids`, in order: from the cache, or loaded now (all that
    /// are not cached, in one round of queries); `None` where there is no such plugin.
    ///
    /// # Errors
    /// Database failures.
    pub async fn plugins(
        &self,
        db: &Database,
        ids: &[PluginId],
    ) -> anyhow::Result<Vec<Option<Arc<PluginOffers>>>> {
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let cached: Vec<Option<Arc<PluginOffers>>> = {
            let view = self.view();
            names
                .iter()
                .map(|name| view.0.by_name.get(name.as_str()).cloned())
                .collect()
        };
        let not_cached: Vec<PluginId> = ids
            .iter()
            .zip(&cached)
            .filter(|(_, hit)| hit.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if not_cached.is_empty() {
            return Ok(cached);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded: HashMap<String, Arc<PluginOffers>> =
            releases::load_many(&db.pool, PluginKeys::Names(&not_cached), Signatures::Skip)
                .await?
                .into_iter()
                .map(|plugin| (plugin.id.to_string(), Arc::new(self.offers(plugin))))
                .collect();
        // A change applied while we read may be newer than what we read: serve it, don't keep it.
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let keep = self.generation.load(Ordering::Acquire) == generation;
        Ok(cached
            .into_iter()
            .zip(names)
            .map(|(hit, name)| {
                hit.or_else(|| {
                    let offers = loaded.get(&name).cloned();
                    if keep {
                        let name: Box<str> = name.into();
                        match &offers {
                            Some(offers) => {
                                entries.names.insert(offers.plugin_db_id, name.clone());
                                entries.by_name.insert(name, offers.clone());
                            }
                            None => entries.remember_missing(name, MAX_MISSING_NAMES),
                        }
                    }
                    offers
                })
            })
            .collect())
    }

    /// Reduces a plugin's releases to its offers, rendering the host-independent JSON.
    fn offers(&self, plugin: releases::PluginReleases) -> PluginOffers {
        let id = plugin.id;
        let signed_in_snapshot = plugin.signed_in_snapshot;
        let mut json = Vec::new();
        let mut append = |fields: &[(&str, Json<'_>)], object: bool| {
            let start = json.len();
            if object {
                write_json_object(&mut json, fields);
            } else {
                write_json_members(&mut json, fields);
            }
            // A plugin's few versions are far below 4 GiB of JSON.
            let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
            JsonSpan {
                start: offset(start),
                end: offset(json.len()),
            }
        };
        let versions = plugin
            .releases
            .into_iter()
            .map(|release| {
                let digest_hex = release.digest.to_hex();
                let package = json_object(&[
                    (
                        "target",
                        Json::Text(
                            &TargetPath::package(id.clone(), release.version.clone()).to_string(),
                        ),
                    ),
                    ("url", Json::Text(&self.blob_url(&digest_hex))),
                    ("sha256", Json::Text(&digest_hex)),
                    ("length", Json::Number(release.size)),
                ]);
                let version_and_package = append(
                    &[
                        ("version", Json::Text(&release.version.to_string())),
                        // Only offered once signed; the zero is never sent.
                        (
                            "signed_in_snapshot",
                            Json::Number(signed_in_snapshot.unwrap_or(0)),
                        ),
                        ("package", Json::Rendered(package.as_bytes())),
                    ],
                    false,
                );
                let patches = release
                    .patches
                    .iter()
                    .map(|patch| OfferedPatch {
                        from: patch.from,
                        size: patch.size,
                        json: append(&self.patch_fields(&id, &release.version, patch), true),
                    })
                    .collect();
                OfferedVersion {
                    host: HostRange::new(
                        release.manifest.host_compatibility().requirement().clone(),
                    ),
                    platforms: PlatformSet::of(release.manifest.targets()),
                    version: release.version,
                    version_and_package,
                    digest: release.digest,
                    state: release.state,
                    size: release.size,
                    rollout_percent: release.rollout_percent,
                    rollout_paused: release.rollout_paused,
                    patches,
                }
            })
            .collect::<Vec<_>>();
        PluginOffers {
            plugin_db_id: plugin.plugin_db_id,
            id,
            any_revoked: versions
                .iter()
                .any(|offered| matches!(offered.state, ReleaseState::Revoked { .. })),
            versions,
            signed_in_snapshot,
            json: json.into_boxed_slice(),
        }
    }

    /// The fields of a patch's `PatchDownload` object.
    fn patch_fields(
        &self,
        id: &PluginId,
        version: &Version,
        patch: &ReleasePatch,
    ) -> [(&'static str, Json<'static>); 5] {
        let digest_hex = patch.digest.to_hex();
        [
            (
                "target",
                Json::Owned(TargetPath::patch(id.clone(), version.clone(), patch.from).to_string()),
            ),
            ("url", Json::Owned(self.blob_url(&digest_hex))),
            ("sha256", Json::Owned(digest_hex)),
            ("length", Json::Number(patch.size)),
            ("from_sha256", Json::Owned(patch.from.to_hex())),
        ]
    }

    fn blob_url(&self, hex: &str) -> String {
        format!("{}/blobs/sha256/{hex}", self.download_base)
    }

    /// Reads the change feed and drops the entries it names; returns how many changes were new.
    ///
    /// # Errors
    /// Database failures.
    pub async fn apply_changes(&self, db: &Database) -> anyhow::Result<usize> {
        let settled = self
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settled;
        let mut rows: Vec<(i64, i64, i64)> = Vec::new();
        let mut after = settled;
        loop {
            let page: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT seq, created_at, plugin_id FROM catalogue_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(FEED_PAGE)
            .fetch_all(&db.pool)
            .await?;
            let full = page.len() as i64 == FEED_PAGE;
            after = page.last().map_or(after, |(seq, ..)| *seq);
            rows.extend(page);
            if !full {
                break;
            }
        }
        let now = crate::db::now();
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        let new_rows: Vec<&(i64, i64, i64)> = rows
            .iter()
            .filter(|(seq, ..)| !feed.applied.contains(seq))
            .collect();
        let new_changes = new_rows.len();
        let fresh: HashSet<i64> = new_rows
            .iter()
            .map(|(_, _, plugin_id)| *plugin_id)
            .collect();
        if !fresh.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            let mut cached = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            for plugin_id in &fresh {
                match cached.names.remove(plugin_id) {
                    Some(name) => {
                        cached.by_name.remove(&name);
                    }
                    None => cached.missing.clear(),
                }
            }
        }
        feed.applied.extend(rows.iter().map(|(seq, ..)| *seq));
        // Everything read is applied now; the mark moves over the changes old enough that
        // nothing can still commit below them.
        for (seq, created_at, _) in &rows {
            if *created_at > now - SETTLE_SECS {
                break;
            }
            feed.settled = *seq;
        }
        let settled = feed.settled;
        feed.applied.retain(|seq| *seq > settled);
        Ok(new_changes)
    }

    /// Wakes the change reader (a notification arrived, or this replica made a change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Follows the change feed until the process ends.
pub fn spawn(catalogue: Arc<Catalogue>, db: Database, database_url: String) {
    if db.engine == Engine::Postgres {
        let catalogue = catalogue.clone();
        tokio::spawn(async move { listen(catalogue, &database_url).await });
    }
    tokio::spawn(async move {
        loop {
            if let Err(error) = catalogue.apply_changes(&db).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reading the catalogue change feed failed; retrying"
                );
            }
            let _ = tokio::time::timeout(POLL_INTERVAL, catalogue.wake.notified()).await;
        }
    });
}

/// Wakes the reader on `NOTIFY plugstore_catalogue` (sent by the change triggers), reconnecting
/// with backoff when the connection drops.
async fn listen(catalogue: Arc<Catalogue>, url: &str) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match sqlx::postgres::PgListener::connect(url).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen("plugstore_catalogue").await {
                    tracing::warn!(%error, "LISTEN plugstore_catalogue failed");
                } else {
                    backoff = Duration::from_millis(500);
                    while listener.recv().await.is_ok() {
                        catalogue.wake();
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot connect to listen for catalogue changes"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// A JSON value of a rendered object.
pub enum Json<'a> {
    /// A string, escaped by serde_json.
    Text(&'a str),
    /// A string, escaped by serde_json, that the caller built for it.
    Owned(String),
    /// A number.
    Number(u64),
    /// Already rendered JSON, copied as it is.
    Rendered(&'a [u8]),
    /// Already rendered members of the enclosing object (`"a":1,"b":2`), spliced in; the
    /// field's own name is not written.
    Members(&'a [u8]),
    /// `null`.
    Null,
}

/// Renders a JSON object with its fields in the given order.
pub fn json_object(fields: &[(&str, Json<'_>)]) -> String {
    let mut out = Vec::with_capacity(64 * fields.len());
    write_json_object(&mut out, fields);
    // Only UTF-8 went in: JSON punctuation, serde_json's output and rendered JSON.
    String::from_utf8(out).unwrap_or_default()
}

/// Renders the members of a JSON object (`"a":1,"b":2`), to be spliced into one.
pub fn json_members(fields: &[(&str, Json<'_>)]) -> String {
    let mut out = Vec::with_capacity(64 * fields.len());
    write_json_members(&mut out, fields);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a JSON object with its fields in the given order to `out`.
pub fn write_json_object(out: &mut Vec<u8>, fields: &[(&str, Json<'_>)]) {
    out.push(b'{');
    write_json_members(out, fields);
    out.push(b'}');
}

/// Appends the members of a JSON object, without its braces.
pub fn write_json_members(out: &mut Vec<u8>, fields: &[(&str, Json<'_>)]) {
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Json::Members(members) = value {
            out.extend_from_slice(members);
            continue;
        }
        write_json_string(out, name);
        out.push(b':');
        match value {
            Json::Text(text) => write_json_string(out, text),
            Json::Owned(text) => write_json_string(out, text),
            Json::Number(number) => {
                let _ = write!(out, "{number}");
            }
            Json::Rendered(json) | Json::Members(json) => out.extend_from_slice(json),
            Json::Null => out.extend_from_slice(b"null"),
        }
    }
}

/// Whether `text` has a character that a JSON string must escape (or that we escape: every
/// byte outside printable ASCII).
pub fn needs_json_escaping(text: &str) -> bool {
    // Every byte is looked at, without stopping at the first that needs escaping, so that
    // the compiler checks 16 at a time.
    text.bytes().fold(false, |needs, b| {
        needs | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\')
    })
}

/// Appends `text` as a JSON string.
pub fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Ids, versions and digests, the usual text, need no escaping: copy them as they are.
    if !needs_json_escaping(text) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_a_plugin_are_remembered_up_to_the_limit() {
        let mut cached = CachedPlugins::default();
        for i in 0..3 {
            cached.remember_missing(format!("nobody/p{i}").into(), 3);
        }
        assert_eq!(cached.missing.len(), 3);
        // The fourth name finds the set full: the old names go, the new one stays.
        cached.remember_missing("nobody/p3".into(), 3);
        assert_eq!(cached.missing.len(), 1);
        assert!(cached.missing.contains("nobody/p3"));
        for i in 4..1000 {
            cached.remember_missing(format!("nobody/p{i}").into(), 3);
            assert!(cached.missing.len() <= 3);
        }
    }

    #[test]
    fn rendered_json_parses_back_to_the_same_values() {
        let mut out = Vec::new();
        write_json_object(
            &mut out,
            &[
                ("plain", Json::Text("acme/hello")),
                (
                    "tricky",
                    Json::Text(
                        "quote \" backslash \\ newline \n tab \t bell \u{7} delete \u{7f} é",
                    ),
                ),
                ("number", Json::Number(u64::MAX)),
                ("inner", Json::Rendered(b"{\"a\":[1,2]}")),
                ("ignored", Json::Members(b"\"spliced\":true,\"also\":2")),
                ("nothing", Json::Null),
            ],
        );
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "plain": "acme/hello",
                "tricky": "quote \" backslash \\ newline \n tab \t bell \u{7} delete \u{7f} é",
                "number": u64::MAX,
                "inner": {"a": [1, 2]},
                "spliced": true,
                "also": 2,
                "nothing": null,
            })
        );
    }

    #[test]
    fn rollout_buckets_spread_installs_and_differ_per_release() {
        let plugin = PluginId::new("acme", "hello").unwrap();
        let one = Version::new(1, 0, 0);
        let two = Version::new(2, 0, 0);
        let buckets: Vec<u8> = (0..1000)
            .map(|i| rollout_bucket(&format!("install-{i}"), &plugin, &one))
            .collect();
        let below_half = buckets.iter().filter(|b| **b < 50).count();
        assert!(
            (400..=600).contains(&below_half),
            "{below_half} of 1000 below 50"
        );
        let same = (0..1000)
            .filter(|i| {
                let id = format!("install-{i}");
                rollout_bucket(&id, &plugin, &one) == rollout_bucket(&id, &plugin, &two)
            })
            .count();
        assert!(
            same < 50,
            "{same} of 1000 installs kept their bucket across releases"
        );
    }
}
