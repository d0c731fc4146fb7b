//! One test per attack of TUF's threat list, each asserting the specific refusal. The
//! attacker controls the mirror (every file a client fetches) and, where a test says so,
//! some of the online keys.

mod common;

use common::{Repo, START, hours, minutes, package, package_bytes, published, top_level_keys};
use plugstore_tuf::client::{MAX_ROOT_BYTES, MAX_TIMESTAMP_BYTES, TrustedState};
use plugstore_tuf::custom::{IdentityMismatch, VersionState};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::error::{RoleName, VerificationError};
use plugstore_tuf::keys::{PublicKey, RoleKeys, SigningKey};
use plugstore_tuf::layout::{BinName, Shard};
use plugstore_tuf::root::{RootDraft, sign_root};
use plugstore_tuf::sign_metadata_json;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::{Value, json};

fn widget() -> plugstore_format::manifest::PluginId {
    "acme/widget".parse().unwrap()
}

fn widget_bin() -> BinName {
    Shard::of(&widget()).bin()
}

fn lookup(repo: &mut Repo, client: &mut TrustedState, now: UnixTime) -> VerificationError {
    client
        .target_info(&mut repo.server, &widget(), &Version::new(1, 0, 0), now)
        .unwrap_err()
}

/// The same P-256 key as JSON with the public point in hex instead of PEM: another key id.
fn alias(key: &SigningKey) -> (String, Value) {
    let json: Value = serde_json::from_str(&key.public_key().to_json()).unwrap();
    let pem = json["keyval"]["public"].as_str().unwrap();
    let der: Vec<u8> = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
        .as_bytes()
        .to_vec();
    let der = base64_decode(&der);
    // A P-256 SPKI ends with the 65-byte uncompressed point.
    let point = hex::encode(&der[der.len() - 65..]);
    let alias = json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256",
        "keyval": {"public": point}});
    let id = PublicKey::from_json(&alias.to_string())
        .unwrap()
        .id()
        .to_string();
    assert_ne!(id, key.id().to_string());
    (id, alias)
}

fn base64_decode(text: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Arbitrary package
// ---------------------------------------------------------------------------------------------

#[test]
fn an_arbitrary_package_is_refused() {
    let (mut repo, mut client) = published();
    let now = START.plus(minutes(3));
    let path = package("acme/widget", "1.0.0", VersionState::Published).path;
    let mut same_length = package_bytes("acme/widget", "1.0.0");
    same_length[3] ^= 0x20;
    let error = client
        .verify_target(&mut repo.server, &path, &same_length, now)
        .unwrap_err();
    assert!(
        matches!(&error, VerificationError::HashMismatch { file, .. } if *file == path.to_string()),
        "{error}"
    );
    let error = client
        .verify_target(&mut repo.server, &path, b"malware", now)
        .unwrap_err();
    assert!(
        matches!(error, VerificationError::LengthMismatch { actual: 7, .. }),
        "{error}"
    );
    let other = package("acme/widget", "6.6.6", VersionState::Published).path;
    let error = client
        .verify_target(&mut repo.server, &other, b"malware", now)
        .unwrap_err();
    assert!(
        matches!(error, VerificationError::UnknownTarget { .. }),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rolled_back_timestamp_is_refused() {
    let mut repo = Repo::new();
    let old_timestamp = repo.server.get("timestamp.json");
    repo.publish(
        &[package("acme/widget", "1.0.0", VersionState::Published)],
        START.plus(minutes(1)),
    );
    let mut client = repo.client();
    client
        .refresh(&mut repo.server, START.plus(minutes(2)))
        .unwrap();
    repo.server.put("timestamp.json", old_timestamp);
    let error = client
        .refresh(&mut repo.server, START.plus(minutes(3)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Rollback {
                role: RoleName::Timestamp,
                trusted: 2,
                offered: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn a_timestamp_naming_an_older_snapshot_is_refused() {
    // The attacker holds the timestamp key and points clients back at the first snapshot.
    let (mut repo, mut client) = published();
    let old = repo.server.get("1.snapshot.json");
    repo.serve_timestamp_naming(
        json!({"version": 1, "length": old.len(),
            "hashes": {"sha256": Sha256::of(&old).to_hex()}}),
        START.plus(minutes(3)),
    );
    let error = client
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Rollback {
                role: RoleName::Snapshot,
                trusted: 2,
                offered: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn a_snapshot_rolling_back_a_bin_is_refused() {
    // The attacker holds the snapshot and timestamp keys and lists the widget's bin at the
    // version from before the publication, or not at all.
    let (mut repo, mut client) = published();
    let bin = widget_bin();
    let mut snapshot = repo.signed_part("2.snapshot.json");
    snapshot["version"] = 3.into();
    let first = repo.signed_part("1.snapshot.json");
    snapshot["meta"][bin.meta_key()] = first["meta"][bin.meta_key()].clone();
    repo.serve_snapshot(&snapshot, START.plus(minutes(3)));
    let error = client
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Rollback {
                role: RoleName::Bin(rolled),
                trusted: 2,
                offered: 1
            } if rolled == bin
        ),
        "{error}"
    );

    snapshot["version"] = 4.into();
    snapshot["meta"]
        .as_object_mut()
        .unwrap()
        .remove(&bin.meta_key());
    repo.serve_snapshot(&snapshot, START.plus(minutes(5)));
    let error = client
        .refresh(&mut repo.server, START.plus(minutes(6)))
        .unwrap_err();
    assert!(
        matches!(error, VerificationError::RoleDropped { role: RoleName::Bin(dropped) } if dropped == bin),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Indefinite freeze
// ---------------------------------------------------------------------------------------------

#[test]
fn a_frozen_timestamp_expires() {
    // The mirror keeps serving the same, correctly signed files; time moves on.
    let (mut repo, mut client) = published();
    let day_later = START.plus(hours(25));
    let error = client.refresh(&mut repo.server, day_later).unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Expired { role: RoleName::Timestamp, expires }
                if expires == START.plus(minutes(1)).plus(hours(24))
        ),
        "{error}"
    );
    // A lookup from the state verified earlier is refused too: the state is frozen.
    let error = lookup(&mut repo, &mut client, day_later);
    assert!(
        matches!(
            error,
            VerificationError::Expired {
                role: RoleName::Timestamp,
                ..
            }
        ),
        "{error}"
    );
    // A new client fares no better.
    let error = repo
        .client()
        .refresh(&mut repo.server, day_later)
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Expired {
                role: RoleName::Timestamp,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_frozen_snapshot_expires_behind_fresh_timestamps() {
    // The attacker holds the timestamp key and keeps re-signing it over an old snapshot.
    let (mut repo, mut client) = published();
    let eight_days = START.plus(hours(8 * 24));
    repo.refresh_timestamp(eight_days);
    let error = client.refresh(&mut repo.server, eight_days).unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Expired {
                role: RoleName::Snapshot,
                ..
            }
        ),
        "{error}"
    );
    let error = repo
        .client()
        .refresh(&mut repo.server, eight_days)
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Expired {
                role: RoleName::Snapshot,
                ..
            }
        ),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mix-and-match
// ---------------------------------------------------------------------------------------------

#[test]
fn a_snapshot_other_than_the_one_the_timestamp_names_is_refused() {
    // The timestamp names snapshot 2 (with the length and hash of the file served as
    // 2.snapshot.json), but that file is snapshot 1.
    let mut repo = Repo::new();
    let old = repo.server.get("1.snapshot.json");
    repo.server.put("2.snapshot.json", old.clone());
    repo.serve_timestamp_naming(
        json!({"version": 2, "length": old.len(),
            "hashes": {"sha256": Sha256::of(&old).to_hex()}}),
        START.plus(minutes(1)),
    );
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(2)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::MixAndMatch {
                role: RoleName::Snapshot,
                named_by: RoleName::Timestamp,
                expected: 2,
                offered: 1
            }
        ),
        "{error}"
    );

    // Without the hash trick, the file is simply not the signed one.
    repo.server.put("3.snapshot.json", old.clone());
    repo.serve_timestamp_naming(
        json!({"version": 3, "length": old.len(),
            "hashes": {"sha256": Sha256::of(b"another file").to_hex()}}),
        START.plus(minutes(3)),
    );
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap_err();
    assert!(
        matches!(error, VerificationError::HashMismatch { ref file, .. } if file == "3.snapshot.json"),
        "{error}"
    );
}

#[test]
fn a_bin_other_than_the_one_the_snapshot_names_is_refused() {
    // The snapshot names the widget's bin at version 3 (without a length, which the spec
    // allows), and the mirror serves the empty version 1 of the bin under that name.
    let (mut repo, mut client) = published();
    let bin = widget_bin();
    let old_bin = repo.server.get(&format!("1.{bin}.json"));
    repo.server.put(format!("3.{bin}.json"), old_bin);
    let mut snapshot = repo.signed_part("2.snapshot.json");
    snapshot["version"] = 3.into();
    snapshot["meta"][bin.meta_key()] = json!({"version": 3});
    repo.serve_snapshot(&snapshot, START.plus(minutes(3)));
    let now = START.plus(minutes(4));
    client.refresh(&mut repo.server, now).unwrap();
    let error = lookup(&mut repo, &mut client, now);
    assert!(
        matches!(
            error,
            VerificationError::MixAndMatch {
                role: RoleName::Bin(mixed),
                named_by: RoleName::Snapshot,
                expected: 3,
                offered: 1
            } if mixed == bin
        ),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Endless data
// ---------------------------------------------------------------------------------------------

#[test]
fn endless_metadata_is_cut_at_the_limits() {
    let mut repo = Repo::new();
    repo.server.put(
        "timestamp.json",
        vec![b' '; MAX_TIMESTAMP_BYTES as usize + 1],
    );
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::TooLarge { ref file, limit, .. }
                if file == "timestamp.json" && limit == MAX_TIMESTAMP_BYTES
        ),
        "{error}"
    );

    let mut repo = Repo::new();
    repo.server
        .put("2.root.json", vec![b' '; MAX_ROOT_BYTES as usize + 1]);
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap_err();
    assert!(
        matches!(error, VerificationError::TooLarge { ref file, limit, .. }
            if file == "2.root.json" && limit == MAX_ROOT_BYTES),
        "{error}"
    );
}

#[test]
fn a_bin_longer_than_its_signed_length_is_refused() {
    let (mut repo, mut client) = published();
    let name = format!("2.{}.json", widget_bin());
    let mut padded = repo.server.get(&name);
    let signed_length = padded.len() as u64;
    // Still the same JSON, still validly signed: only the length gives it away.
    padded.extend(std::iter::repeat_n(b' ', 1 << 20));
    repo.server.put(name.clone(), padded);
    let error = lookup(&mut repo, &mut client, START.plus(minutes(3)));
    assert!(
        matches!(error, VerificationError::TooLarge { ref file, limit, .. }
            if *file == name && limit == signed_length),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Wrong plugin under a right name
// ---------------------------------------------------------------------------------------------

/// The widget's bin (current version) as a `signed` object.
fn widget_bin_signed(repo: &Repo) -> Value {
    repo.signed_part(&format!("2.{}.json", widget_bin()))
}

#[test]
fn a_target_placed_in_another_plugins_bin_is_refused() {
    // The attacker holds the bins key, which every bin shares, and lists the widget's
    // target in the gadget's bin.
    let (mut repo, _) = published();
    let gadget: plugstore_format::manifest::PluginId = "other/gadget".parse().unwrap();
    repo.publish(
        &[package("other/gadget", "2.0.0", VersionState::Published)],
        START.plus(minutes(3)),
    );
    let gadget_bin = Shard::of(&gadget).bin();
    let mut bin = repo.signed_part(&format!("2.{gadget_bin}.json"));
    let widget_targets = widget_bin_signed(&repo)["targets"].clone();
    for (path, target) in widget_targets.as_object().unwrap() {
        bin["targets"][path] = target.clone();
    }
    bin["version"] = 3.into();
    repo.serve_bin(gadget_bin, &bin, START.plus(minutes(4)));
    let now = START.plus(minutes(5));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let error = client
        .targets_for_plugin(&mut repo.server, &gadget, now)
        .unwrap_err();
    assert!(
        matches!(&error, VerificationError::WrongDelegation { bin, reason }
            if *bin == gadget_bin && reason.contains(&widget_bin().to_string())),
        "{error}"
    );
}

#[test]
fn a_target_outside_the_signed_delegation_is_refused() {
    // The targets key holder narrowed the widget's bin to patches only; a package path in
    // that bin is outside the delegation, even though the shard is right.
    let (mut repo, _) = published();
    let bin = widget_bin();
    let mut targets = repo.signed_part("1.targets.json");
    for role in targets["delegations"]["roles"].as_array_mut().unwrap() {
        if role["name"] == bin.to_string() {
            let patches = role["paths"][1].clone();
            role["paths"] = json!([patches]);
        }
    }
    targets["version"] = 2.into();
    let bytes = sign_metadata_json(&targets, &[&repo.keys.targets]).unwrap();
    let length = bytes.len();
    repo.server.put("2.targets.json", bytes);
    let mut snapshot = repo.signed_part("2.snapshot.json");
    snapshot["version"] = 3.into();
    snapshot["meta"]["targets.json"] = json!({"version": 2, "length": length});
    repo.serve_snapshot(&snapshot, START.plus(minutes(3)));

    let now = START.plus(minutes(4));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let error = lookup(&mut repo, &mut client, now);
    assert!(
        matches!(&error, VerificationError::WrongDelegation { bin: refused, reason }
            if *refused == bin && reason.contains("outside its delegated paths")),
        "{error}"
    );
}

#[test]
fn a_malformed_or_misplaced_path_in_a_bin_is_refused() {
    let (mut repo, _) = published();
    let bin = widget_bin();
    let shard = Shard::of(&widget()).to_string();
    let mut signed = widget_bin_signed(&repo);
    let entry = signed["targets"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    // Right bin prefix, wrong shard for the plugin named (the shard's last digit changed).
    let last = shard.chars().last().unwrap();
    let other_last = if last == '0' { '1' } else { '0' };
    let wrong_shard = format!("{}{other_last}", &shard[..3]);
    signed["targets"] = json!({
        format!("plugins/{wrong_shard}/acme/widget/1.0.0/package.tar"): entry
    });
    signed["version"] = 3.into();
    repo.serve_bin(bin, &signed, START.plus(minutes(3)));
    let now = START.plus(minutes(4));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let error = lookup(&mut repo, &mut client, now);
    assert!(
        matches!(&error, VerificationError::WrongDelegation { bin: refused, reason }
            if *refused == bin && reason.contains("not a plugin path")),
        "{error}"
    );
}

#[test]
fn custom_fields_naming_another_plugin_are_refused() {
    let (mut repo, _) = published();
    let bin = widget_bin();
    let mut signed = widget_bin_signed(&repo);
    let path = package("acme/widget", "1.0.0", VersionState::Published)
        .path
        .to_string();
    signed["targets"][&path]["custom"]["plugstore"]["plugin"] = "evil/widget".into();
    signed["version"] = 3.into();
    repo.serve_bin(bin, &signed, START.plus(minutes(3)));
    let now = START.plus(minutes(4));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let error = lookup(&mut repo, &mut client, now);
    assert!(
        matches!(&error, VerificationError::TargetIdentity {
                path: refused,
                mismatch: IdentityMismatch::Plugin { in_custom, .. },
            } if *refused == path && in_custom.to_string() == "evil/widget"),
        "{error}"
    );

    signed["targets"][&path]["custom"]["plugstore"]["plugin"] = "acme/widget".into();
    signed["targets"][&path]["custom"]["plugstore"]["version"] = "9.9.9".into();
    signed["version"] = 4.into();
    repo.serve_bin(bin, &signed, START.plus(minutes(5)));
    let now = START.plus(minutes(6));
    client.refresh(&mut repo.server, now).unwrap();
    let error = lookup(&mut repo, &mut client, now);
    assert!(
        matches!(
            &error,
            VerificationError::TargetIdentity {
                mismatch: IdentityMismatch::Version { .. },
                ..
            }
        ),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Compromised keys below threshold
// ---------------------------------------------------------------------------------------------

#[test]
fn one_compromised_root_key_of_two_cannot_rotate_the_root() {
    let root_keys: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
    let keys = common::online_keys();
    let root_role = RoleKeys::new(
        root_keys
            .iter()
            .map(|key| key.public_key().clone())
            .collect(),
        2,
    )
    .unwrap();
    let top = top_level_keys(root_role, &keys);
    let mut repo = Repo::from_top_level(root_keys, top, keys);

    // The attacker replaces every key with their own and signs with the one root key stolen.
    let attacker = SigningKey::generate().unwrap();
    let attacker_keys = common::online_keys();
    let hostile = top_level_keys(RoleKeys::single(attacker.public_key()), &attacker_keys);
    let mut draft = RootDraft::successor(&repo.state.root, &hostile, START).unwrap();
    sign_root(&mut draft, &repo.root_keys[0]).unwrap();
    sign_root(&mut draft, &attacker).unwrap();
    repo.server.put("2.root.json", draft.to_json().unwrap());
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::NotSignedByPreviousRoot {
                version: 2,
                valid: 1,
                threshold: 2
            }
        ),
        "{error}"
    );
}

/// Rotates `repo` to a root whose timestamp role is `timestamp` (the other roles unchanged),
/// and serves it.
fn rotate_timestamp_role(repo: &mut Repo, timestamp: RoleKeys) {
    let mut top = top_level_keys(RoleKeys::single(repo.root_keys[0].public_key()), &repo.keys);
    top.timestamp = timestamp;
    let mut draft = RootDraft::successor(&repo.state.root, &top, START).unwrap();
    sign_root(&mut draft, &repo.root_keys[0]).unwrap();
    let file = repo.state.install_root(&draft.to_json().unwrap()).unwrap();
    repo.server.publish(vec![file]);
}

/// A timestamp one version up over the current snapshot, signed by `keys`.
fn timestamp_signed_by(repo: &Repo, keys: &[&SigningKey]) -> Vec<u8> {
    let mut timestamp = repo.signed_part("timestamp.json");
    timestamp["version"] = (timestamp["version"].as_u64().unwrap() + 1).into();
    sign_metadata_json(&timestamp, keys).unwrap()
}

#[test]
fn one_compromised_timestamp_key_of_a_threshold_of_two_is_not_enough() {
    let mut repo = Repo::new();
    let second = SigningKey::generate().unwrap();
    let both = RoleKeys::new(
        vec![
            repo.keys.timestamp.public_key().clone(),
            second.public_key().clone(),
        ],
        2,
    )
    .unwrap();
    rotate_timestamp_role(&mut repo, both);
    let now = START.plus(minutes(1));

    let stolen = timestamp_signed_by(&repo, &[&repo.keys.timestamp]);
    repo.server.put("timestamp.json", stolen);
    let error = repo.client().refresh(&mut repo.server, now).unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::BadSignatures {
                role: RoleName::Timestamp,
                valid: 1,
                threshold: 2
            }
        ),
        "{error}"
    );

    // Signing twice with the stolen key adds a second signature entry, not a second signer.
    let doubled = timestamp_signed_by(&repo, &[&repo.keys.timestamp, &repo.keys.timestamp]);
    repo.server.put("timestamp.json", doubled);
    let error = repo.client().refresh(&mut repo.server, now).unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::BadSignatures {
                role: RoleName::Timestamp,
                valid: 1,
                threshold: 2
            }
        ),
        "{error}"
    );

    // A key of another role does not count either.
    let wrong = timestamp_signed_by(&repo, &[&repo.keys.timestamp, &repo.keys.snapshot]);
    repo.server.put("timestamp.json", wrong);
    let error = repo.client().refresh(&mut repo.server, now).unwrap_err();
    assert!(
        matches!(error, VerificationError::BadSignatures { valid: 1, .. }),
        "{error}"
    );

    let genuine = timestamp_signed_by(&repo, &[&repo.keys.timestamp, &second]);
    repo.server.put("timestamp.json", genuine);
    repo.client().refresh(&mut repo.server, now).unwrap();
}

// ---------------------------------------------------------------------------------------------
// One key counted twice
// ---------------------------------------------------------------------------------------------

#[test]
fn a_root_listing_one_key_under_two_ids_is_refused() {
    // A root (signed by the real root key) whose timestamp role lists the timestamp key twice,
    // PEM and hex, with threshold 2: one key would pass for two.
    let mut repo = Repo::new();
    let top = top_level_keys(RoleKeys::single(repo.root_keys[0].public_key()), &repo.keys);
    let draft = RootDraft::successor(&repo.state.root, &top, START).unwrap();
    let envelope: Value = serde_json::from_slice(&draft.to_json().unwrap()).unwrap();
    let mut root = envelope["signed"].clone();
    let (alias_id, alias_key) = alias(&repo.keys.timestamp);
    root["keys"][&alias_id] = alias_key;
    root["roles"]["timestamp"]["keyids"]
        .as_array_mut()
        .unwrap()
        .push(alias_id.into());
    root["roles"]["timestamp"]["threshold"] = 2.into();
    let bytes = sign_metadata_json(&root, &[&repo.root_keys[0]]).unwrap();
    repo.server.put("2.root.json", bytes);
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::DuplicatePublicKey {
                holder: RoleName::Root,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn delegations_listing_one_key_under_two_ids_are_refused() {
    let (mut repo, _) = published();
    let mut targets = repo.signed_part("1.targets.json");
    let (alias_id, alias_key) = alias(&repo.keys.bins);
    targets["delegations"]["keys"][&alias_id] = alias_key;
    for role in targets["delegations"]["roles"].as_array_mut().unwrap() {
        role["keyids"]
            .as_array_mut()
            .unwrap()
            .push(alias_id.clone().into());
        role["threshold"] = 2.into();
    }
    targets["version"] = 2.into();
    let bytes = sign_metadata_json(&targets, &[&repo.keys.targets]).unwrap();
    let length = bytes.len();
    repo.server.put("2.targets.json", bytes);
    let mut snapshot = repo.signed_part("2.snapshot.json");
    snapshot["version"] = 3.into();
    snapshot["meta"]["targets.json"] = json!({"version": 2, "length": length});
    repo.serve_snapshot(&snapshot, START.plus(minutes(3)));
    let error = repo
        .client()
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::DuplicatePublicKey {
                holder: RoleName::Targets,
                ..
            }
        ),
        "{error}"
    );
}
