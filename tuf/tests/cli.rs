//! `plugstore-server keys …`, run in-process through `cli::main` as the server dispatches it:
//! the setup, an online key rotation, thresholds, and a root key rotation.
#![cfg(feature = "cli")]

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

use plugstore_tuf::cli;
use plugstore_tuf::keys::SigningKey;
use plugstore_tuf::keys_dir::{KeysDir, OnlineRole};
use plugstore_tuf::root::{TopLevelRole, VerifiedRoot};

fn keys(args: &[&dyn AsRef<std::ffi::OsStr>]) -> ExitCode {
    let args = std::iter::once(OsString::from("plugstore-server keys"))
        .chain(args.iter().map(|arg| arg.as_ref().to_owned()));
    cli::main(args)
}

fn key_id(path: &Path) -> String {
    SigningKey::read_file(path).unwrap().id().to_string()
}

#[test]
fn a_timestamp_key_rotation_end_to_end() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let draft = temp.path().join("draft.json");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    let store = KeysDir::open(&dir).unwrap();
    let old_timestamp = key_id(&store.key_path(OnlineRole::Timestamp));
    assert_eq!(keys(&[&"show", &"--keys-dir", &dir]), ExitCode::SUCCESS);

    assert_eq!(
        keys(&[
            &"rotate",
            &"--keys-dir",
            &dir,
            &"--role",
            &"timestamp",
            &"--out",
            &draft
        ]),
        ExitCode::SUCCESS
    );
    let new_timestamp = key_id(&store.next_key_path(OnlineRole::Timestamp));
    // Unsigned, it is refused and nothing moves.
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::FAILURE
    );
    assert!(!store.root_path(2).exists());

    assert_eq!(
        keys(&[
            &"sign-root",
            &"--draft",
            &draft,
            &"--key",
            &dir.join("root-1.pk8")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::SUCCESS
    );

    let loaded = store.load().unwrap();
    assert_eq!(loaded.online.timestamp.id().to_string(), new_timestamp);
    assert_eq!(loaded.roots.len(), 2);
    let first = VerifiedRoot::from_pinned(&loaded.roots[0]).unwrap();
    assert_eq!(first.version(), 1);
    assert_eq!(
        first.verify_successor(&loaded.roots[1]).unwrap().version(),
        2
    );
    assert_eq!(
        key_id(&dir.join("timestamp.pk8.old-1")),
        old_timestamp,
        "the old key is kept"
    );
    assert_eq!(keys(&[&"show", &"--keys-dir", &dir]), ExitCode::SUCCESS);
}

#[test]
fn two_of_three_root_keys_must_sign() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let offline = temp.path().join("usb");
    let draft = temp.path().join("draft.json");
    assert_eq!(
        keys(&[
            &"generate",
            &"--keys-dir",
            &dir,
            &"--root-keys",
            &"3",
            &"--threshold",
            &"2",
            &"--root-key-dir",
            &offline
        ]),
        ExitCode::SUCCESS
    );
    let store = KeysDir::open(&dir).unwrap();
    assert!(store.root_key_files().unwrap().is_empty());
    let root = store.load().unwrap().current_root;
    assert_eq!(root.role_key_ids(TopLevelRole::Root).0.len(), 3);
    assert_eq!(root.role_key_ids(TopLevelRole::Root).1, 2);

    assert_eq!(
        keys(&[
            &"rotate",
            &"--keys-dir",
            &dir,
            &"--role",
            &"snapshot",
            &"--out",
            &draft
        ]),
        ExitCode::SUCCESS
    );
    let sign = |n: usize| {
        keys(&[
            &"sign-root",
            &"--draft",
            &draft,
            &"--key",
            &offline.join(format!("root-{n}.pk8")),
        ])
    };
    assert_eq!(sign(1), ExitCode::SUCCESS);
    // Signing twice with one key still counts once.
    assert_eq!(sign(1), ExitCode::SUCCESS);
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::FAILURE
    );
    assert!(!store.root_path(2).exists());
    assert!(store.next_key_path(OnlineRole::Snapshot).exists());

    assert_eq!(sign(3), ExitCode::SUCCESS);
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::SUCCESS
    );
    assert_eq!(store.load().unwrap().current_root.version(), 2);
}

#[test]
fn a_root_key_rotation_needs_the_old_and_the_new_key() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let offline = temp.path().join("usb");
    let new_key = temp.path().join("new-holder").join("root.pk8");
    fs::create_dir(temp.path().join("new-holder")).unwrap();
    assert_eq!(
        keys(&[
            &"generate",
            &"--keys-dir",
            &dir,
            &"--root-key-dir",
            &offline
        ]),
        ExitCode::SUCCESS
    );
    let old_key = offline.join("root-1.pk8");
    let store = KeysDir::open(&dir).unwrap();
    let finish = |draft: &Path| keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]);
    let sign = |draft: &Path, key: &Path| keys(&[&"sign-root", &"--draft", &draft, &"--key", &key]);

    let draft = temp.path().join("draft.json");
    assert_eq!(
        keys(&[
            &"rotate",
            &"--keys-dir",
            &dir,
            &"--role",
            &"root",
            &"--new-key",
            &new_key,
            &"--out",
            &draft
        ]),
        ExitCode::SUCCESS
    );
    let pristine = fs::read(&draft).unwrap();

    // Only the new key: the old root never approved it.
    assert_eq!(sign(&draft, &new_key), ExitCode::SUCCESS);
    assert_eq!(finish(&draft), ExitCode::FAILURE);
    assert!(!store.root_path(2).exists());

    // Only the old key: the new root is not signed by its own keys.
    let only_old = temp.path().join("only-old.json");
    fs::write(&only_old, &pristine).unwrap();
    assert_eq!(sign(&only_old, &old_key), ExitCode::SUCCESS);
    assert_eq!(finish(&only_old), ExitCode::FAILURE);
    assert!(!store.root_path(2).exists());

    // Both.
    assert_eq!(sign(&draft, &old_key), ExitCode::SUCCESS);
    assert_eq!(finish(&draft), ExitCode::SUCCESS);
    let root = store.load().unwrap().current_root;
    assert_eq!(root.version(), 2);
    let new_id = SigningKey::read_file(&new_key).unwrap().id();
    let old_id = SigningKey::read_file(&old_key).unwrap().id();
    assert!(root.authorizes(TopLevelRole::Root, new_id));
    assert!(!root.authorizes(TopLevelRole::Root, old_id));
}

#[test]
fn generate_never_overwrites_a_store() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    let before = fs::read(dir.join("root-1.pk8")).unwrap();
    let root_before = fs::read(dir.join("root").join("1.root.json")).unwrap();
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::FAILURE);
    assert_eq!(fs::read(dir.join("root-1.pk8")).unwrap(), before);
    assert_eq!(
        fs::read(dir.join("root").join("1.root.json")).unwrap(),
        root_before
    );
    // An impossible threshold is refused, not written.
    let other = temp.path().join("other");
    assert_eq!(
        keys(&[
            &"generate",
            &"--keys-dir",
            &other,
            &"--root-keys",
            &"2",
            &"--threshold",
            &"3"
        ]),
        ExitCode::FAILURE
    );
    assert!(!other.join("root-1.pk8").exists());
}

#[test]
fn a_bins_rotation_needs_no_root() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    let rotate_bins = || keys(&[&"rotate", &"--keys-dir", &dir, &"--role", &"bins"]);
    assert_eq!(rotate_bins(), ExitCode::SUCCESS);
    let store = KeysDir::open(&dir).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(
        loaded.next_bins.map(|key| key.id().to_string()),
        Some(key_id(&store.next_key_path(OnlineRole::Bins)))
    );
    assert_eq!(loaded.roots.len(), 1);
    // One rotation at a time.
    assert_eq!(rotate_bins(), ExitCode::FAILURE);
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(keys(&[&"rotate", &"--role", &"nobody"]), ExitCode::from(2));
    assert_eq!(keys(&[&"--help"]), ExitCode::SUCCESS);
}

#[test]
fn renewing_the_root_keeps_every_key() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let draft = temp.path().join("renew.json");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    let store = KeysDir::open(&dir).unwrap();
    let before = store.load().unwrap().current_root;
    assert_eq!(
        keys(&[&"renew-root", &"--keys-dir", &dir, &"--out", &draft]),
        ExitCode::SUCCESS
    );
    // Never over a draft that may hold signatures.
    assert_eq!(
        keys(&[&"renew-root", &"--keys-dir", &dir, &"--out", &draft]),
        ExitCode::FAILURE
    );
    assert_eq!(
        keys(&[
            &"sign-root",
            &"--draft",
            &draft,
            &"--key",
            &dir.join("root-1.pk8")
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::SUCCESS
    );
    let after = store.load().unwrap().current_root;
    assert_eq!(after.version(), 2);
    assert!(after.expires() >= before.expires());
    for role in [
        TopLevelRole::Root,
        TopLevelRole::Targets,
        TopLevelRole::Snapshot,
        TopLevelRole::Timestamp,
    ] {
        assert_eq!(
            after.role_key_ids(role),
            before.role_key_ids(role),
            "{role}"
        );
    }
}

#[test]
fn a_new_root_holder_drafts_from_a_copy_of_the_roots_alone() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    // The new holder's offline machine: the published roots, no online key.
    let copy = temp.path().join("copy");
    fs::create_dir_all(copy.join("root")).unwrap();
    fs::copy(dir.join("root/1.root.json"), copy.join("root/1.root.json")).unwrap();
    let new_key = temp.path().join("new-root.pk8");
    let draft = temp.path().join("draft.json");
    assert_eq!(
        keys(&[
            &"rotate",
            &"--keys-dir",
            &copy,
            &"--role",
            &"root",
            &"--new-key",
            &new_key,
            &"--out",
            &draft
        ]),
        ExitCode::SUCCESS
    );
    for key in [dir.join("root-1.pk8"), new_key] {
        assert_eq!(
            keys(&[&"sign-root", &"--draft", &draft, &"--key", &key]),
            ExitCode::SUCCESS
        );
    }
    assert_eq!(
        keys(&[&"finish-root", &"--keys-dir", &dir, &"--draft", &draft]),
        ExitCode::SUCCESS
    );
}

#[cfg(unix)]
#[test]
fn sign_root_refuses_a_key_others_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let draft = temp.path().join("draft.json");
    assert_eq!(keys(&[&"generate", &"--keys-dir", &dir]), ExitCode::SUCCESS);
    assert_eq!(
        keys(&[&"renew-root", &"--keys-dir", &dir, &"--out", &draft]),
        ExitCode::SUCCESS
    );
    let root_key = dir.join("root-1.pk8");
    fs::set_permissions(&root_key, fs::Permissions::from_mode(0o644)).unwrap();
    let unsigned = fs::read(&draft).unwrap();
    assert_eq!(
        keys(&[&"sign-root", &"--draft", &draft, &"--key", &root_key]),
        ExitCode::FAILURE
    );
    assert_eq!(fs::read(&draft).unwrap(), unsigned);
}
