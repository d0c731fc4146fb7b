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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, Target};
use semver::{Version, VersionReq};
use tokio::sync::Notify;

use crate::db::{Database, Engine};
use crate::releases::{self, PluginKey, ReleasePatch, ReleaseState};

/// How often a replica reads the change feed when no notification arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long after it is written a change can still appear below a newer one (a transaction
/// that committed late). Changes are re-read for this long.
pub const SETTLE_SECS: i64 = 30;

/// What hosts can be offered of one plugin.
#[derive(Debug)]
pub struct PluginOffers {
    /// Its database id.
    pub plugin_db_id: i64,
    /// The plugin.
    pub id: PluginId,
    /// Newest version first.
    pub versions: Vec<OfferedVersion>,
}

/// One release, reduced to what an update check needs.
#[derive(Debug)]
pub struct OfferedVersion {
    /// The version.
    pub version: Version,
    /// Published, yanked or revoked.
    pub state: ReleaseState,
    /// The package.
    pub digest: PackageDigest,
    /// Its length.
    pub size: u64,
    /// Host versions it supports.
    pub host: VersionReq,
    /// Platforms it runs on.
    pub platforms: Vec<Target>,
    /// Percentage of install ids offered the version.
    pub rollout_percent: u8,
    /// Offered to nobody new.
    pub rollout_paused: bool,
    /// Patches to it, by base.
    pub patches: Vec<ReleasePatch>,
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
            && (self.platforms.contains(&Target::Any) || self.platforms.contains(&host.platform))
            && !self.rollout_paused
            && rollout_bucket(host.install_id, plugin, &self.version) < self.rollout_percent
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
#[derive(Debug, Default)]
pub struct Catalogue {
    entries: RwLock<CachedPlugins>,
    /// Bumped by every applied change, so a load that raced with one is not cached.
    generation: AtomicU64,
    feed: Mutex<FeedPosition>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct CachedPlugins {
    by_name: HashMap<PluginId, Arc<PluginOffers>>,
    /// Database id → name of the cached plugins, to apply the change feed.
    names: HashMap<i64, PluginId>,
    /// Names asked for that have no plugin; forgotten when a plugin the cache does not know
    /// changes (it may be one of them, just created).
    missing: HashSet<PluginId>,
}

#[derive(Debug, Default)]
struct FeedPosition {
    /// Every change at or below this is applied and settled.
    settled: i64,
    /// Changes above `settled` already applied.
    applied: BTreeSet<i64>,
}

/// Rows read from the change feed per query.
const FEED_PAGE: i64 = 10_000;

impl Catalogue {
    /// The plugin's offers, from the cache or loaded now; `None` when there is no such plugin.
    ///
    /// # Errors
    /// Database failures.
    pub async fn plugin(
        &self,
        db: &Database,
        id: &PluginId,
    ) -> anyhow::Result<Option<Arc<PluginOffers>>> {
        {
            let cached = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(offers) = cached.by_name.get(id) {
                return Ok(Some(offers.clone()));
            }
            if cached.missing.contains(id) {
                return Ok(None);
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = releases::load(&db.pool, PluginKey::Name(id))
            .await?
            .map(|plugin| {
                Arc::new(PluginOffers {
                    plugin_db_id: plugin.plugin_db_id,
                    id: plugin.id,
                    versions: plugin
                        .releases
                        .into_iter()
                        .map(|release| OfferedVersion {
                            host: release.manifest.host_compatibility().requirement().clone(),
                            platforms: release.manifest.targets().to_vec(),
                            version: release.version,
                            state: release.state,
                            digest: release.digest,
                            size: release.size,
                            rollout_percent: release.rollout_percent,
                            rollout_paused: release.rollout_paused,
                            patches: release.patches,
                        })
                        .collect(),
                })
            });
        let mut cached = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // A change applied while we read may be newer than what we read: serve it, don't keep it.
        if self.generation.load(Ordering::Acquire) == generation {
            match &loaded {
                Some(offers) => {
                    cached.names.insert(offers.plugin_db_id, id.clone());
                    cached.by_name.insert(id.clone(), offers.clone());
                }
                None => {
                    cached.missing.insert(id.clone());
                }
            }
        }
        Ok(loaded)
    }

    /// How many plugins are cached.
    pub fn cached(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_name
            .len()
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
        let fresh: HashSet<i64> = rows
            .iter()
            .filter(|(seq, ..)| !feed.applied.contains(seq))
            .map(|(_, _, plugin_id)| *plugin_id)
            .collect();
        let new_changes = rows
            .iter()
            .filter(|(seq, ..)| !feed.applied.contains(seq))
            .count();
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
