//! Metadata signed once by the first release, committed under `tests/data/frozen/`, must keep
//! verifying: a tough upgrade or a serializer change that would make published metadata
//! unreadable fails here first.
//!
//! The set is what a client fetches to look up one plugin: the root, the timestamp, a
//! snapshot and top-level targets reduced to that plugin's bin (the full ones list 4096 bins,
//! about 1 MB), and the bin as the producer wrote it. Never regenerate it to make this test
//! pass; regenerate it only when the format changes on purpose, with the ignored
//! `generate_frozen_metadata` test.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{Repo, START, minutes, package, package_bytes, patch};
use plugstore_tuf::client::{Fetch, FetchError, TrustedState};
use plugstore_tuf::custom::VersionState;
use plugstore_tuf::layout::Shard;
use plugstore_tuf::sign_metadata_json;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::{Value, json};

/// When the frozen set was generated is `START`; it is verified a little later, well before
/// its timestamp (one day) expires.
const VERIFIED_AT: UnixTime = UnixTime::from_seconds(1_767_225_600 + 10 * 60);

fn frozen_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/frozen")
}

struct Directory(HashMap<String, Vec<u8>>);

impl Fetch for Directory {
    fn fetch(&mut self, name: &str, _max_len: u64) -> Result<Vec<u8>, FetchError> {
        self.0.get(name).cloned().ok_or(FetchError::NotFound)
    }
}

fn read_frozen() -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(frozen_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn frozen_metadata_still_verifies() {
    let files = read_frozen();
    let mut client = TrustedState::new(&files["1.root.json"]).unwrap();
    let mut directory = Directory(files);
    client.refresh(&mut directory, VERIFIED_AT).unwrap();

    let plugin = "acme/widget".parse().unwrap();
    let found = client
        .targets_for_plugin(&mut directory, &plugin, VERIFIED_AT)
        .unwrap();
    assert_eq!(found.len(), 3);
    let newest = client
        .target_info(&mut directory, &plugin, &Version::new(1, 1, 0), VERIFIED_AT)
        .unwrap();
    assert_eq!(
        newest.sha256().to_hex(),
        plugstore_tuf::digest::Sha256::of(&package_bytes("acme/widget", "1.1.0")).to_hex()
    );
    assert_eq!(newest.state(), Some(VersionState::Published));
    newest
        .check(&package_bytes("acme/widget", "1.1.0"))
        .unwrap();
    let yanked = client
        .target_info(&mut directory, &plugin, &Version::new(1, 0, 0), VERIFIED_AT)
        .unwrap();
    assert_eq!(yanked.state(), Some(VersionState::Yanked));
}

/// tough itself (its schema types and its own signature check, which verifies over its
/// re-serialization) accepts what we wrote: the interoperability the ADR promises.
#[test]
fn tough_reads_and_verifies_the_frozen_metadata() {
    use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

    let files = read_frozen();
    let root: Signed<Root> = serde_json::from_slice(&files["1.root.json"]).unwrap();
    root.signed.verify_role(&root).unwrap();
    let timestamp: Signed<Timestamp> = serde_json::from_slice(&files["timestamp.json"]).unwrap();
    root.signed.verify_role(&timestamp).unwrap();
    let snapshot_name = format!(
        "{}.snapshot.json",
        timestamp.signed.meta["snapshot.json"].version
    );
    let snapshot: Signed<Snapshot> = serde_json::from_slice(&files[&snapshot_name]).unwrap();
    root.signed.verify_role(&snapshot).unwrap();
    let targets_name = format!(
        "{}.targets.json",
        snapshot.signed.meta["targets.json"].version
    );
    let targets: Signed<Targets> = serde_json::from_slice(&files[&targets_name]).unwrap();
    root.signed.verify_role(&targets).unwrap();

    let bin = Shard::of(&"acme/widget".parse().unwrap()).bin();
    let bin_name = format!(
        "{}.{bin}.json",
        snapshot.signed.meta[&bin.meta_key()].version
    );
    let bin_targets: Signed<Targets> = serde_json::from_slice(&files[&bin_name]).unwrap();
    targets
        .signed
        .delegations
        .as_ref()
        .unwrap()
        .verify_role(&bin_targets, &bin.to_string())
        .unwrap();
}

/// Writes the frozen set. Run by hand, only when the format changes on purpose:
/// `cargo test -p plugstore-tuf --test frozen_format -- --ignored generate_frozen_metadata`
#[test]
#[ignore = "writes tests/data/frozen; run only when the metadata format changes on purpose"]
fn generate_frozen_metadata() {
    let mut repo = Repo::new();
    repo.publish(
        &[
            package("acme/widget", "1.0.0", VersionState::Yanked),
            package("acme/widget", "1.1.0", VersionState::Published),
            patch("acme/widget", "1.0.0", "1.1.0"),
        ],
        START.plus(minutes(1)),
    );
    let bin = Shard::of(&"acme/widget".parse().unwrap()).bin();
    let snapshot_version = repo.state.snapshot.record.version.get();
    let bin_version = repo.state.bins[&bin].version.get();
    let bin_name = format!("{bin_version}.{bin}.json");

    let mut targets = repo.signed_part("1.targets.json");
    targets["delegations"]["roles"]
        .as_array_mut()
        .unwrap()
        .retain(|role| role["name"] == bin.to_string());
    let targets_bytes = sign_metadata_json(&targets, &[&repo.keys.targets]).unwrap();

    let mut snapshot = repo.signed_part(&format!("{snapshot_version}.snapshot.json"));
    let kept: serde_json::Map<String, Value> = snapshot["meta"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name == "targets.json" || **name == bin.meta_key())
        .map(|(name, listing)| (name.clone(), listing.clone()))
        .collect();
    snapshot["meta"] = Value::Object(kept);
    snapshot["meta"]["targets.json"]["length"] = targets_bytes.len().into();
    let snapshot_bytes = sign_metadata_json(&snapshot, &[&repo.keys.snapshot]).unwrap();

    let mut timestamp = repo.signed_part("timestamp.json");
    timestamp["meta"]["snapshot.json"] = json!({
        "version": snapshot_version,
        "length": snapshot_bytes.len(),
        "hashes": {"sha256": plugstore_tuf::digest::Sha256::of(&snapshot_bytes).to_hex()},
    });
    let timestamp_bytes = sign_metadata_json(&timestamp, &[&repo.keys.timestamp]).unwrap();

    let dir = frozen_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in [
        ("1.root.json".to_owned(), repo.server.get("1.root.json")),
        ("timestamp.json".to_owned(), timestamp_bytes),
        (format!("{snapshot_version}.snapshot.json"), snapshot_bytes),
        ("1.targets.json".to_owned(), targets_bytes),
        (bin_name.clone(), repo.server.get(&bin_name)),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
