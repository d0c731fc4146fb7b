//! The client against a repository the producer made: the happy path, lazy bins, target
//! checks, and root rotation.

mod common;

use std::collections::HashMap;
use std::io::{self, Read};

use common::{Repo, START, minutes, package, package_bytes, patch, published, top_level_keys};
use plugstore_tuf::client::TrustedState;
use plugstore_tuf::custom::VersionState;
use plugstore_tuf::error::{RoleName, VerificationError};
use plugstore_tuf::keys::{RoleKeys, SigningKey};
use plugstore_tuf::layout::{Shard, TargetFile};
use plugstore_tuf::root::{RootDraft, RootDraftError, VerifiedRoot, sign_root};
use semver::Version;

#[test]
fn a_host_loads_only_the_bins_of_the_plugins_it_asks_about() {
    let mut repo = Repo::new();
    let widget = package("acme/widget", "1.0.0", VersionState::Published);
    let gadget = package("other/gadget", "2.0.0", VersionState::Published);
    let (widget_bin, gadget_bin) = (widget.path.bin(), gadget.path.bin());
    assert_ne!(widget_bin, gadget_bin, "the test needs two bins");
    repo.publish(std::slice::from_ref(&widget), START.plus(minutes(1)));
    repo.publish(std::slice::from_ref(&gadget), START.plus(minutes(2)));

    let now = START.plus(minutes(3));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    assert_eq!(
        repo.server.take_log(),
        [
            "2.root.json",
            "timestamp.json",
            "3.snapshot.json",
            "1.targets.json"
        ]
    );

    let plugin = "acme/widget".parse().unwrap();
    let found = client
        .target_info(&mut repo.server, &plugin, &Version::new(1, 0, 0), now)
        .unwrap();
    // Only the widget's bin: never the gadget's, nor any other.
    assert_eq!(repo.server.take_log(), [format!("2.{widget_bin}.json")]);
    assert_eq!(found.path(), &widget.path);
    assert_eq!(found.length(), widget.length);
    assert_eq!(found.sha256(), widget.sha256);
    assert_eq!(found.info(), &widget.custom);
    assert_eq!(found.state(), Some(VersionState::Published));

    // The bin is kept while the snapshot names the same version.
    let bytes = package_bytes("acme/widget", "1.0.0");
    client
        .verify_target(&mut repo.server, &widget.path, &bytes, now)
        .unwrap();
    assert!(repo.server.take_log().is_empty());
}

#[test]
fn a_host_learns_every_version_of_a_plugin_from_its_bin() {
    let mut repo = Repo::new();
    repo.publish(
        &[package("acme/widget", "1.0.0", VersionState::Published)],
        START.plus(minutes(1)),
    );
    let mut client = repo.client();
    let plugin = "acme/widget".parse().unwrap();
    client
        .refresh(&mut repo.server, START.plus(minutes(2)))
        .unwrap();
    let before = client
        .targets_for_plugin(&mut repo.server, &plugin, START.plus(minutes(2)))
        .unwrap();
    assert_eq!(before.len(), 1);

    repo.publish(
        &[
            package("acme/widget", "1.1.0", VersionState::Published),
            patch("acme/widget", "1.0.0", "1.1.0"),
        ],
        START.plus(minutes(3)),
    );
    let now = START.plus(minutes(4));
    repo.server.take_log();
    client.refresh(&mut repo.server, now).unwrap();
    let after = client
        .targets_for_plugin(&mut repo.server, &plugin, now)
        .unwrap();
    let bin = Shard::of(&plugin).bin();
    assert_eq!(
        repo.server.take_log(),
        [
            "2.root.json",
            "timestamp.json",
            "3.snapshot.json",
            format!("3.{bin}.json").as_str()
        ],
        "the targets role did not change, so it is not fetched again"
    );
    let listed: Vec<(String, bool)> = after
        .iter()
        .map(|target| {
            (
                target.path().version().to_string(),
                matches!(target.path().file(), TargetFile::Patch { .. }),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("1.0.0".to_owned(), false),
            ("1.1.0".to_owned(), false),
            ("1.1.0".to_owned(), true)
        ]
    );
    let patch_target = &after[2];
    assert!(patch_target.state().is_none());
    assert_eq!(patch_target.info().patch().unwrap().format, "bsdiff-v1");
}

#[test]
fn a_downloader_streams_through_the_signed_length_and_hash() {
    let mut repo = Repo::new();
    let widget = package("acme/widget", "1.0.0", VersionState::Published);
    repo.publish(std::slice::from_ref(&widget), START.plus(minutes(1)));
    let now = START.plus(minutes(2));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let target = client.target(&mut repo.server, &widget.path, now).unwrap();

    let good = package_bytes("acme/widget", "1.0.0");
    let mut copied = Vec::new();
    target
        .reader(good.as_slice())
        .read_to_end(&mut copied)
        .unwrap();
    assert_eq!(copied, good);

    let inner = |error: io::Error| {
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        *error
            .into_inner()
            .unwrap()
            .downcast::<VerificationError>()
            .unwrap()
    };
    let mut tampered = good.clone();
    tampered[0] ^= 1;
    let error = target
        .reader(tampered.as_slice())
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(
        inner(error),
        VerificationError::HashMismatch { .. }
    ));

    let mut longer = good.clone();
    longer.extend_from_slice(b"and more");
    let error = target
        .reader(longer.as_slice())
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(inner(error), VerificationError::TooLarge { .. }));

    let error = target
        .reader(&good[..good.len() - 1])
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(
        inner(error),
        VerificationError::LengthMismatch { .. }
    ));
}

#[test]
fn yanked_and_blocked_versions_are_reported_with_their_state() {
    let mut repo = Repo::new();
    repo.publish(
        &[
            package("acme/widget", "1.0.0", VersionState::Yanked),
            package("acme/widget", "1.1.0", VersionState::Blocked),
            package("acme/widget", "1.2.0", VersionState::Published),
        ],
        START.plus(minutes(1)),
    );
    let now = START.plus(minutes(2));
    let mut client = repo.client();
    client.refresh(&mut repo.server, now).unwrap();
    let plugin = "acme/widget".parse().unwrap();
    let states: Vec<_> = client
        .targets_for_plugin(&mut repo.server, &plugin, now)
        .unwrap()
        .iter()
        .map(|target| (target.path().version().to_string(), target.state()))
        .collect();
    assert_eq!(
        states,
        [
            ("1.0.0".to_owned(), Some(VersionState::Yanked)),
            ("1.1.0".to_owned(), Some(VersionState::Blocked)),
            ("1.2.0".to_owned(), Some(VersionState::Published)),
        ]
    );
}

#[test]
fn a_rotated_root_signed_by_the_old_and_new_keys_is_followed() {
    let (mut repo, mut client) = published();

    // New root keys (2 of 3) and a new timestamp key, signed offline one holder at a time.
    let new_root_keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let mut new_online = common::online_keys();
    std::mem::swap(&mut new_online.targets, &mut repo.keys.targets);
    std::mem::swap(&mut new_online.bins, &mut repo.keys.bins);
    std::mem::swap(&mut new_online.snapshot, &mut repo.keys.snapshot);
    let new_root_role = RoleKeys::new(
        new_root_keys
            .iter()
            .map(|key| key.public_key().clone())
            .collect(),
        2,
    )
    .unwrap();
    let top = top_level_keys(new_root_role, &new_online);
    let mut draft = RootDraft::successor(&repo.state.root, &top, START.plus(minutes(3))).unwrap();
    sign_root(&mut draft, &repo.root_keys[0]).unwrap();
    sign_root(&mut draft, &new_root_keys[0]).unwrap();
    assert!(matches!(
        draft.finish(Some(&repo.state.root)),
        Err(RootDraftError::NotYetValid(
            VerificationError::BadSignatures {
                role: RoleName::Root,
                valid: 1,
                threshold: 2
            }
        ))
    ));
    sign_root(&mut draft, &new_root_keys[2]).unwrap();
    let file = repo.state.install_root(&draft.to_json().unwrap()).unwrap();
    assert_eq!(file.name, "2.root.json");
    repo.server.publish(vec![file]);
    repo.keys = new_online;
    repo.refresh_timestamp(START.plus(minutes(4)));

    let now = START.plus(minutes(5));
    repo.server.take_log();
    client.refresh(&mut repo.server, now).unwrap();
    assert_eq!(client.root().version(), 2);
    assert_eq!(
        repo.server.take_log(),
        [
            "2.root.json",
            "3.root.json",
            "timestamp.json",
            "2.snapshot.json"
        ],
        "the timestamp key rotated, so the trusted timestamp and snapshot were dropped; the \
         targets key did not, so the trusted targets role was kept"
    );
    let plugin = "acme/widget".parse().unwrap();
    client
        .target_info(&mut repo.server, &plugin, &Version::new(1, 0, 0), now)
        .unwrap();
}

#[test]
fn every_root_followed_in_one_refresh_is_saved() {
    let mut repo = Repo::new();
    let mut client = repo.client();
    client
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap();
    repo.keys.timestamp = SigningKey::generate().unwrap();
    repo.publish_next_root(START.plus(minutes(2)));
    repo.publish_next_root(START.plus(minutes(2)));
    repo.refresh_timestamp(START.plus(minutes(3)));
    client
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap();
    let mut roots: Vec<String> = client
        .saved_files()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.ends_with(".root.json"))
        .collect();
    roots.sort();
    // Root 2 is the link between the pinned root and root 3 that a restart must follow; the
    // timestamp saved with root 3 does not verify under root 1.
    assert_eq!(roots, ["1.root.json", "2.root.json", "3.root.json"]);
}

/// A root the application trusts out of band (a newer pinned root) replaces the trusted one
/// as a rotation would: the roles whose keys it changed are dropped, the others kept.
#[test]
fn a_newer_trusted_root_is_adopted_dropping_the_roles_it_rotated() {
    let (mut repo, mut client) = published();
    let first = client.root().clone();
    repo.keys.timestamp = SigningKey::generate().unwrap();
    let second =
        VerifiedRoot::from_pinned(&repo.publish_next_root(START.plus(minutes(3)))).unwrap();
    repo.refresh_timestamp(START.plus(minutes(3)));

    client.adopt_root(second).unwrap();
    assert_eq!(client.root().version(), 2);
    let mut saved: Vec<String> = client
        .saved_files()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    saved.sort();
    assert_eq!(saved, ["1.targets.json", "2.root.json"]);
    repo.server.take_log();
    client
        .refresh(&mut repo.server, START.plus(minutes(4)))
        .unwrap();
    assert_eq!(
        repo.server.take_log(),
        ["3.root.json", "timestamp.json", "2.snapshot.json"]
    );

    let error = client.adopt_root(first).unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::Rollback {
                role: RoleName::Root,
                trusted: 2,
                offered: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn a_rotated_root_signed_only_by_the_new_keys_is_refused() {
    let mut repo = Repo::new();
    let new_root_key = SigningKey::generate().unwrap();
    let top = top_level_keys(RoleKeys::single(new_root_key.public_key()), &repo.keys);
    let mut draft = RootDraft::successor(&repo.state.root, &top, START).unwrap();
    sign_root(&mut draft, &new_root_key).unwrap();
    repo.server.put("2.root.json", draft.to_json().unwrap());

    let mut client = repo.client();
    let error = client
        .refresh(&mut repo.server, START.plus(minutes(1)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerificationError::NotSignedByPreviousRoot {
                version: 2,
                valid: 0,
                threshold: 1
            }
        ),
        "{error}"
    );
    assert_eq!(client.root().version(), 1);
}

#[test]
fn a_restarted_host_keeps_its_rollback_protection() {
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
    let files = client.saved_files();
    // In the order to write them, the timestamp last: until it is replaced, the old one names
    // files still on disk.
    assert_eq!(
        files
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            "1.root.json",
            "1.targets.json",
            "2.snapshot.json",
            "timestamp.json"
        ]
    );
    let saved: HashMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(name, bytes)| (name, bytes.to_vec()))
        .collect();
    let root = saved["1.root.json"].clone();
    let mut disk = common::Server {
        files: saved,
        log: Vec::new(),
    };

    let mut restarted = TrustedState::restore(&root, &mut disk).unwrap();
    repo.server.put("timestamp.json", old_timestamp);
    let error = restarted
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

    // Saved metadata that has expired still restores, but answers no lookup.
    let week_later = START.plus(minutes(8 * 24 * 60));
    let mut stale = TrustedState::restore(&root, &mut disk).unwrap();
    let plugin = "acme/widget".parse().unwrap();
    let error = stale
        .target_info(
            &mut repo.server,
            &plugin,
            &Version::new(1, 0, 0),
            week_later,
        )
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

    // A damaged saved file is an error, not a silent start from scratch.
    disk.files.get_mut("2.snapshot.json").unwrap()[20] ^= 1;
    let error = TrustedState::restore(&root, &mut disk).unwrap_err();
    assert!(
        matches!(error, VerificationError::HashMismatch { .. }),
        "{error}"
    );
}
