//! The keys directory the server loads at start: setting it up, loading it, and every way a
//! broken one is refused with the file named.

use std::fs;
use std::path::Path;

use plugstore_tuf::keys::{KeyError, SigningKey};
use plugstore_tuf::keys_dir::{KeysDir, KeysDirError, OnlineRole, rotation_draft};
use plugstore_tuf::repository::RepositoryState;
use plugstore_tuf::root::{RootDraftError, TopLevelRole, VerifiedRoot};
use plugstore_tuf::time::UnixTime;

/// 2026-01-01T00:00:00Z.
const NOW: UnixTime = UnixTime::from_seconds(1_767_225_600);

fn embedded() -> (tempfile::TempDir, KeysDir) {
    let temp = tempfile::tempdir().unwrap();
    let dir = KeysDir::create_embedded(temp.path().join("keys"), NOW).unwrap();
    (temp, dir)
}

fn root_key(dir: &KeysDir) -> SigningKey {
    SigningKey::read_file(&dir.path().join("root-1.pk8")).unwrap()
}

/// Starts a rotation of `role` and signs the draft with the embedded root key.
fn rotate(dir: &KeysDir, role: OnlineRole) -> (SigningKey, plugstore_tuf::root::RootDraft) {
    let next = dir.generate_next_key(role).unwrap();
    let current = dir.root_chain().unwrap().current;
    let top_level = role.top_level().unwrap();
    let mut draft = rotation_draft(&current, top_level, None, next.public_key(), NOW).unwrap();
    draft.sign(&root_key(dir)).unwrap();
    (next, draft)
}

#[test]
fn an_embedded_store_loads_and_can_sign() {
    let (_temp, dir) = embedded();
    let keys = dir.load().unwrap();
    assert_eq!(keys.roots.len(), 1);
    assert_eq!(keys.current_root.version(), 1);
    assert_eq!(keys.roots[0], keys.current_root.bytes());
    assert!(keys.next_bins.is_none());
    let root = &keys.current_root;
    assert!(root.authorizes(TopLevelRole::Targets, keys.online.targets.id()));
    assert!(root.authorizes(TopLevelRole::Snapshot, keys.online.snapshot.id()));
    assert!(root.authorizes(TopLevelRole::Timestamp, keys.online.timestamp.id()));
    assert!(root.authorizes(TopLevelRole::Root, root_key(&dir).id()));
    assert_eq!(
        dir.root_key_files().unwrap(),
        vec![dir.path().join("root-1.pk8")]
    );
    // What the server does next: the producer accepts these keys.
    RepositoryState::create(keys.current_root, &keys.online, NOW).unwrap();
}

#[cfg(unix)]
#[test]
fn every_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_temp, dir) = embedded();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    for role in OnlineRole::ALL {
        assert_eq!(mode(&dir.key_path(role)), 0o600, "{role}");
    }
    assert_eq!(mode(&dir.path().join("root-1.pk8")), 0o600);

    fs::set_permissions(
        dir.key_path(OnlineRole::Timestamp),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    match dir.load() {
        Err(KeysDirError::Key {
            path,
            source: KeyError::FileTooOpen { mode: 0o640, .. },
        }) => assert_eq!(path, dir.key_path(OnlineRole::Timestamp)),
        other => panic!("expected a refusal of the open key file, got {other:?}"),
    }
}

#[test]
fn setting_up_a_directory_that_holds_keys_is_refused() {
    let (_temp, dir) = embedded();
    let before = fs::read(dir.key_path(OnlineRole::Targets)).unwrap();
    assert!(matches!(
        KeysDir::create_embedded(dir.path(), NOW),
        Err(KeysDirError::HoldsKeys { .. })
    ));
    assert_eq!(fs::read(dir.key_path(OnlineRole::Targets)).unwrap(), before);
    assert_eq!(dir.load().unwrap().current_root.version(), 1);

    // One stray key is enough to refuse.
    let other = tempfile::tempdir().unwrap();
    SigningKey::generate()
        .unwrap()
        .write_new_file(&other.path().join("timestamp.pk8"))
        .unwrap();
    match KeysDir::create_embedded(other.path(), NOW) {
        Err(KeysDirError::HoldsKeys { file, .. }) => {
            assert_eq!(file, other.path().join("timestamp.pk8"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_missing_or_foreign_online_key_is_refused() {
    let (_temp, dir) = embedded();
    let snapshot = dir.key_path(OnlineRole::Snapshot);
    fs::remove_file(&snapshot).unwrap();
    match dir.load() {
        Err(KeysDirError::MissingKey { role, path }) => {
            assert_eq!((role, path), (OnlineRole::Snapshot, snapshot.clone()))
        }
        other => panic!("expected a missing key, got {other:?}"),
    }
    SigningKey::generate()
        .unwrap()
        .write_new_file(&snapshot)
        .unwrap();
    let error = dir.load().unwrap_err();
    assert!(matches!(
        error,
        KeysDirError::KeyNotInRoot {
            role: OnlineRole::Snapshot,
            root_version: 1,
            next_is_listed: false,
            ..
        }
    ));
    assert!(error.to_string().contains("snapshot.pk8"), "{error}");
}

#[test]
fn a_timestamp_rotation_switches_keys_only_when_the_root_is_written() {
    let (_temp, dir) = embedded();
    let old = dir.load().unwrap();
    let (next, draft) = rotate(&dir, OnlineRole::Timestamp);
    // While the draft travels, the server keeps starting with the old key.
    assert_eq!(
        dir.load().unwrap().online.timestamp.id(),
        old.online.timestamp.id()
    );

    let installed = dir.install_root(&draft).unwrap();
    assert_eq!(installed.root.version(), 2);
    assert_eq!(installed.promoted, vec![OnlineRole::Timestamp]);
    assert!(!installed.already_written);

    let keys = dir.load().unwrap();
    assert_eq!(keys.online.timestamp.id(), next.id());
    assert_eq!(keys.online.snapshot.id(), old.online.snapshot.id());
    assert_eq!(keys.roots.len(), 2);
    VerifiedRoot::from_pinned(&keys.roots[0])
        .unwrap()
        .verify_successor(&keys.roots[1])
        .unwrap();
    assert!(!dir.next_key_path(OnlineRole::Timestamp).exists());
    let kept = SigningKey::read_file(&dir.path().join("timestamp.pk8.old-1")).unwrap();
    assert_eq!(kept.id(), old.online.timestamp.id());

    // The server installs the new root and re-signs the timestamp with the new key.
    let (mut state, _) = RepositoryState::create(old.current_root, &old.online, NOW).unwrap();
    state.install_root(&keys.roots[1]).unwrap();
    state.refresh_timestamp(&keys.online, NOW).unwrap();

    // Running finish-root again is harmless.
    let again = dir.install_root(&draft).unwrap();
    assert!(again.already_written);
    assert!(again.promoted.is_empty());
}

#[test]
fn an_interrupted_finish_is_reported_and_completed_by_running_it_again() {
    let (_temp, dir) = embedded();
    let (next, draft) = rotate(&dir, OnlineRole::Targets);
    // As if the process died after writing the root and before moving the key.
    let root = draft
        .finish(Some(&dir.root_chain().unwrap().current))
        .unwrap();
    fs::write(dir.root_path(2), root.bytes()).unwrap();
    let error = dir.load().unwrap_err();
    assert!(
        matches!(
            error,
            KeysDirError::KeyNotInRoot {
                role: OnlineRole::Targets,
                next_is_listed: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("finish-root"), "{error}");

    let installed = dir.install_root(&draft).unwrap();
    assert!(installed.already_written);
    assert_eq!(installed.promoted, vec![OnlineRole::Targets]);
    assert_eq!(dir.load().unwrap().online.targets.id(), next.id());
}

#[test]
fn a_root_that_would_leave_the_server_without_a_key_is_refused() {
    let (_temp, dir) = embedded();
    let current = dir.root_chain().unwrap().current;
    // A new snapshot key whose private half the server does not have.
    let elsewhere = SigningKey::generate().unwrap();
    let mut draft = rotation_draft(
        &current,
        TopLevelRole::Snapshot,
        None,
        elsewhere.public_key(),
        NOW,
    )
    .unwrap();
    draft.sign(&root_key(&dir)).unwrap();
    assert!(matches!(
        dir.install_root(&draft),
        Err(KeysDirError::KeyNotInNewRoot {
            role: OnlineRole::Snapshot,
            root_version: 2,
            ..
        })
    ));
    assert!(!dir.root_path(2).exists());
}

#[test]
fn an_unsigned_or_stale_draft_is_refused() {
    let (_temp, dir) = embedded();
    let next = dir.generate_next_key(OnlineRole::Timestamp).unwrap();
    let current = dir.root_chain().unwrap().current;
    let draft = rotation_draft(
        &current,
        TopLevelRole::Timestamp,
        None,
        next.public_key(),
        NOW,
    )
    .unwrap();
    assert!(matches!(
        dir.install_root(&draft),
        Err(KeysDirError::Draft(RootDraftError::NotYetValid(_)))
    ));
    assert!(!dir.root_path(2).exists());
    assert!(dir.next_key_path(OnlineRole::Timestamp).exists());

    // A second rotation of the same role waits for the first.
    assert!(matches!(
        dir.generate_next_key(OnlineRole::Timestamp),
        Err(KeysDirError::RotationUnderWay { .. })
    ));

    let mut signed = draft.clone();
    signed.sign(&root_key(&dir)).unwrap();
    dir.install_root(&signed).unwrap();
    // The same change drafted from root 1 again is not root 3.
    let mut stale = rotation_draft(
        &current,
        TopLevelRole::Timestamp,
        None,
        next.public_key(),
        NOW,
    )
    .unwrap();
    stale.sign(&root_key(&dir)).unwrap();
    assert!(matches!(
        dir.install_root(&stale),
        Err(KeysDirError::DraftVersion {
            current: 2,
            draft: 2
        })
    ));
}

#[test]
fn a_gap_in_the_roots_is_refused() {
    let (_temp, dir) = embedded();
    let (_, draft) = rotate(&dir, OnlineRole::Timestamp);
    dir.install_root(&draft).unwrap();
    fs::rename(dir.root_path(2), dir.root_path(3)).unwrap();
    match dir.load() {
        Err(KeysDirError::RootGap { missing, found: 3 }) => {
            assert_eq!(missing, dir.root_path(2))
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    fs::remove_file(dir.root_path(1)).unwrap();
    assert!(matches!(dir.load(), Err(KeysDirError::NoRoot(path)) if path == dir.root_path(1)));
}

#[test]
fn a_tampered_root_is_refused() {
    let (_temp, dir) = embedded();
    let (_, draft) = rotate(&dir, OnlineRole::Timestamp);
    dir.install_root(&draft).unwrap();
    for version in [2, 1] {
        let path = dir.root_path(version);
        let original = fs::read(&path).unwrap();
        let tampered = String::from_utf8(original.clone()).unwrap().replacen(
            "\"consistent_snapshot\":true",
            "\"consistent_snapshot\":false",
            1,
        );
        assert_ne!(tampered.as_bytes(), original);
        fs::write(&path, tampered).unwrap();
        match dir.load() {
            Err(KeysDirError::RootFile { path: refused, .. }) => assert_eq!(refused, path),
            other => panic!("expected root {version} refused, got {other:?}"),
        }
        fs::write(&path, original).unwrap();
    }
    dir.load().unwrap();
}

#[test]
fn a_new_bins_key_waits_for_the_server_to_move_the_bins() {
    let (_temp, dir) = embedded();
    let old = dir.load().unwrap().online.bins.id();
    let next = dir.generate_next_key(OnlineRole::Bins).unwrap();
    let keys = dir.load().unwrap();
    assert_eq!(keys.online.bins.id(), old);
    assert_eq!(keys.next_bins.map(|key| key.id()), Some(next.id()));

    assert!(dir.promote_next_bins_key(NOW).unwrap());
    let keys = dir.load().unwrap();
    assert_eq!(keys.online.bins.id(), next.id());
    assert!(keys.next_bins.is_none());
    let kept = dir
        .path()
        .join(format!("bins.pk8.old-{}", NOW.as_seconds()));
    assert_eq!(SigningKey::read_file(&kept).unwrap().id(), old);
    assert!(!dir.promote_next_bins_key(NOW).unwrap());
}
