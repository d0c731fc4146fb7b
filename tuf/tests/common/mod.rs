//! A test repository: keys, the producer's state, the catalogue, and an in-memory server
//! that records what a client fetched and lets a test swap files like a compromised mirror.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use plugstore_format::certs::CertFingerprint;
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{Capability, PluginId, PluginKind, Target as Platform};
use plugstore_format::signing::SignatureAlgorithm;
use plugstore_tuf::client::{Fetch, FetchError, TrustedState};
use plugstore_tuf::custom::{
    ChainReference, DeveloperSignature, PackageTarget, PatchTarget, PluginTarget, TargetDetail,
    VersionState,
};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::keys::{RoleKeys, SigningKey, TopLevelKeys};
use plugstore_tuf::layout::{BinName, TargetPath};
use plugstore_tuf::repository::{MetadataFile, OnlineKeys, RepositoryState, TargetEntry};
use plugstore_tuf::root::{RootDraft, VerifiedRoot, sign_root};
use plugstore_tuf::sign_metadata_json;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z, when every test repository is created.
pub const START: UnixTime = UnixTime::from_seconds(1_767_225_600);

pub fn minutes(count: u64) -> Duration {
    Duration::from_secs(count * 60)
}

pub fn hours(count: u64) -> Duration {
    Duration::from_secs(count * 60 * 60)
}

/// The repository's files as a mirror serves them, and a log of what was asked for.
#[derive(Default)]
pub struct Server {
    pub files: HashMap<String, Vec<u8>>,
    pub log: Vec<String>,
}

impl Server {
    pub fn put(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), bytes);
    }

    pub fn publish(&mut self, files: Vec<MetadataFile>) {
        for file in files {
            self.put(file.name, file.bytes);
        }
    }

    pub fn get(&self, name: &str) -> Vec<u8> {
        self.files
            .get(name)
            .unwrap_or_else(|| panic!("the server has no {name}"))
            .clone()
    }

    /// The names fetched since the last call.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

impl Fetch for Server {
    /// Deliberately ignores `max_len`, like a hostile mirror: the client must cap by itself.
    fn fetch(&mut self, name: &str, _max_len: u64) -> Result<Vec<u8>, FetchError> {
        self.log.push(name.to_owned());
        self.files.get(name).cloned().ok_or(FetchError::NotFound)
    }
}

/// A repository with one root key (threshold 1) unless built otherwise.
pub struct Repo {
    pub root_keys: Vec<SigningKey>,
    pub keys: OnlineKeys,
    pub state: RepositoryState,
    pub catalogue: BTreeMap<BinName, Vec<TargetEntry>>,
    pub server: Server,
    /// The first root, which clients pin.
    pub pinned_root: Vec<u8>,
}

pub fn online_keys() -> OnlineKeys {
    OnlineKeys {
        targets: SigningKey::generate().unwrap(),
        bins: SigningKey::generate().unwrap(),
        snapshot: SigningKey::generate().unwrap(),
        timestamp: SigningKey::generate().unwrap(),
    }
}

/// The top-level keys of a root whose root role is `root` and whose online roles use `keys`.
pub fn top_level_keys(root: RoleKeys, keys: &OnlineKeys) -> TopLevelKeys {
    TopLevelKeys {
        root,
        targets: RoleKeys::single(keys.targets.public_key()),
        snapshot: RoleKeys::single(keys.snapshot.public_key()),
        timestamp: RoleKeys::single(keys.timestamp.public_key()),
    }
}

impl Repo {
    pub fn new() -> Self {
        let root_key = SigningKey::generate().unwrap();
        let keys = online_keys();
        let top = top_level_keys(RoleKeys::single(root_key.public_key()), &keys);
        Self::from_top_level(vec![root_key], top, keys)
    }

    /// A repository whose first root lists `top` and is signed by every key of `root_keys`.
    pub fn from_top_level(root_keys: Vec<SigningKey>, top: TopLevelKeys, keys: OnlineKeys) -> Self {
        let mut draft = RootDraft::first(&top, START).unwrap();
        for key in &root_keys {
            sign_root(&mut draft, key).unwrap();
        }
        let root = draft.finish(None).unwrap();
        Self::from_root(root_keys, root, keys)
    }

    pub fn from_root(root_keys: Vec<SigningKey>, root: VerifiedRoot, keys: OnlineKeys) -> Self {
        let mut server = Server::default();
        server.put(root.file_name(), root.bytes().to_vec());
        let pinned_root = root.bytes().to_vec();
        let (state, files) = RepositoryState::create(root, &keys, START).unwrap();
        server.publish(files);
        Self {
            root_keys,
            keys,
            state,
            catalogue: BTreeMap::new(),
            server,
            pinned_root,
        }
    }

    /// A client that pins the first root.
    pub fn client(&self) -> TrustedState {
        TrustedState::new(&self.pinned_root).unwrap()
    }

    /// Adds targets to their bins, re-signs those bins, and serves the new files.
    pub fn publish(&mut self, entries: &[TargetEntry], now: UnixTime) {
        let mut changed = BTreeMap::new();
        for entry in entries {
            let bin = entry.path.bin();
            let listed = self.catalogue.entry(bin).or_default();
            listed.retain(|existing| existing.path != entry.path);
            listed.push(entry.clone());
            changed.insert(bin, listed.clone());
        }
        let files = self.state.update_bins(&self.keys, &changed, now).unwrap();
        self.server.publish(files);
    }

    pub fn refresh_timestamp(&mut self, now: UnixTime) {
        let file = self.state.refresh_timestamp(&self.keys, now).unwrap();
        self.server.publish(vec![file]);
    }

    /// Installs and serves the next root, signed by every root key and listing the online
    /// keys of `self.keys` (a test that rotates an online key replaces it there first, then
    /// re-signs that role). Returns the root file.
    pub fn publish_next_root(&mut self, now: UnixTime) -> Vec<u8> {
        let role = RoleKeys::new(
            self.root_keys
                .iter()
                .map(|key| key.public_key().clone())
                .collect(),
            self.root_keys.len() as u64,
        )
        .unwrap();
        let top = top_level_keys(role, &self.keys);
        let mut draft = RootDraft::successor(&self.state.root, &top, now).unwrap();
        for key in &self.root_keys {
            sign_root(&mut draft, key).unwrap();
        }
        let file = self.state.install_root(&draft.to_json().unwrap()).unwrap();
        let bytes = file.bytes.clone();
        self.server.publish(vec![file]);
        bytes
    }

    /// The `signed` part of the file `name` as the server has it.
    pub fn signed_part(&self, name: &str) -> Value {
        let envelope: Value = serde_json::from_slice(&self.server.get(name)).unwrap();
        envelope["signed"].clone()
    }

    /// Serves `snapshot` (a `signed` object) under its version, signed with the snapshot key,
    /// and a new timestamp (one version up) that names it with its real length and hash.
    pub fn serve_snapshot(&mut self, snapshot: &Value, now: UnixTime) {
        let bytes = sign_metadata_json(snapshot, &[&self.keys.snapshot]).unwrap();
        let version = snapshot["version"].as_u64().unwrap();
        let claim = json!({"version": version, "length": bytes.len(),
            "hashes": {"sha256": Sha256::of(&bytes).to_hex()}});
        self.server.put(format!("{version}.snapshot.json"), bytes);
        self.serve_timestamp_naming(claim, now);
    }

    /// Serves a timestamp, one version above the current one, whose snapshot entry is
    /// `claim`, signed with the timestamp key.
    pub fn serve_timestamp_naming(&mut self, claim: Value, now: UnixTime) {
        let mut timestamp = self.signed_part("timestamp.json");
        let version = timestamp["version"].as_u64().unwrap() + 1;
        timestamp["version"] = version.into();
        timestamp["expires"] = now.plus(hours(24)).to_string().into();
        timestamp["meta"]["snapshot.json"] = claim;
        let bytes = sign_metadata_json(&timestamp, &[&self.keys.timestamp]).unwrap();
        self.server.put("timestamp.json", bytes);
    }

    /// Serves `bin` (a `signed` object) under its version, signed with the bins key, and a
    /// snapshot and timestamp that name it.
    pub fn serve_bin(&mut self, bin: BinName, signed: &Value, now: UnixTime) {
        let bytes = sign_metadata_json(signed, &[&self.keys.bins]).unwrap();
        let version = signed["version"].as_u64().unwrap();
        let length = bytes.len();
        self.server.put(format!("{version}.{bin}.json"), bytes);
        let current = self.signed_part("timestamp.json")["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        let mut snapshot = self.signed_part(&format!("{current}.snapshot.json"));
        snapshot["version"] = (current + 1).into();
        snapshot["meta"][format!("{bin}.json")] = json!({"version": version, "length": length});
        self.serve_snapshot(&snapshot, now);
    }
}

/// Bytes that stand for a package of `plugin` at `version`.
pub fn package_bytes(plugin: &str, version: &str) -> Vec<u8> {
    format!("package tar of {plugin} {version}").into_bytes()
}

/// A package target of `plugin` at `version` in `state`, whose content is `package_bytes`.
pub fn package(plugin: &str, version: &str, state: VersionState) -> TargetEntry {
    let plugin_id: PluginId = plugin.parse().unwrap();
    let parsed: Version = version.parse().unwrap();
    let bytes = package_bytes(plugin, version);
    TargetEntry {
        path: TargetPath::package(plugin_id.clone(), parsed.clone()),
        length: bytes.len() as u64,
        sha256: Sha256::of(&bytes),
        custom: PluginTarget {
            plugin: plugin_id,
            version: parsed,
            detail: TargetDetail::Package(PackageTarget {
                state,
                plugin_kind: PluginKind::Wasm,
                platforms: vec![Platform::Any],
                host: ">=2.1, <3".parse().unwrap(),
                capabilities: vec![Capability::NetHttp],
                developer: DeveloperSignature {
                    algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                    signature: vec![0x30, 0x44, 0x02, 0x20],
                    leaf_sha256: CertFingerprint([0xab; 32]),
                    chain: ChainReference {
                        sha256: Sha256::of(b"chain"),
                        length: 1834,
                    },
                },
                published_at: START,
            }),
        },
    }
}

/// A patch target from `from_version` to `version` of `plugin`.
pub fn patch(plugin: &str, from_version: &str, version: &str) -> TargetEntry {
    let plugin_id: PluginId = plugin.parse().unwrap();
    let parsed: Version = version.parse().unwrap();
    let base = PackageDigest::of(&package_bytes(plugin, from_version));
    let bytes = format!("patch {from_version} -> {version}").into_bytes();
    TargetEntry {
        path: TargetPath::patch(plugin_id.clone(), parsed.clone(), base),
        length: bytes.len() as u64,
        sha256: Sha256::of(&bytes),
        custom: PluginTarget {
            plugin: plugin_id,
            version: parsed,
            detail: TargetDetail::Patch(PatchTarget {
                from: base,
                to: PackageDigest::of(&package_bytes(plugin, version)),
                format: "bsdiff-v1".to_owned(),
            }),
        },
    }
}

/// A repository with acme/widget 1.0.0 published, and a client that has refreshed once.
pub fn published() -> (Repo, TrustedState) {
    let mut repo = Repo::new();
    repo.publish(
        &[package("acme/widget", "1.0.0", VersionState::Published)],
        START.plus(minutes(1)),
    );
    let mut client = repo.client();
    client
        .refresh(&mut repo.server, START.plus(minutes(2)))
        .unwrap();
    (repo, client)
}
