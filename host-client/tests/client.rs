//! The update cycle against a loopback store: first install, update check, update by patch
//! and in full, list, rollback, revocation, the install id, and a restart.

mod common;

use common::{Store, Trick, id};
use plugstore_client::delta::Fetched;
use plugstore_client::{ClientBuilder, ClientError, RefusalReason};
use plugstore_tuf::custom::VersionState;
use plugstore_tuf::error::VerificationError;
use semver::Version;

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

// On a current-thread runtime: TUF runs on a blocking thread that waits on the runtime the
// caller's `block_on` drives.
#[tokio::test]
async fn a_first_install_unpacks_the_verified_package() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let mut last = (0, 0);
    let installed = client
        .install(&id("acme/hello"), &v("1.0.0"), |got, total| {
            last = (got, total)
        })
        .await
        .unwrap();
    assert_eq!(installed.version, v("1.0.0"));
    assert_eq!(last.0, last.1);
    assert!(installed.path.join("plugin.toml").is_file());
    assert!(installed.path.join("data.bin").is_file());
    assert!(installed.signer.subject.contains("acme developer"));
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state.current.version, v("1.0.0"));
    assert!(listed[0].state.previous.is_none());
    assert_eq!(
        client.loadable_path(&id("acme/hello")).unwrap(),
        Some(installed.path)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_id_is_generated_once_and_sent_with_each_check() {
    let store = Store::new().await;
    let dir = tempfile::tempdir().unwrap();
    let first = store.client(dir.path());
    let again = store.client(dir.path());
    assert_eq!(first.install_id(), again.install_id());
    assert!(first.install_id().len() >= 8);
    first.check_updates().await.unwrap();
    let request = store.served.lock().unwrap().checks[0].clone();
    assert_eq!(request["install_id"], first.install_id());
    assert_eq!(request["host"]["app_id"], "org.example.editor");
    assert_eq!(request["host"]["version"], "2.3.0");
    assert_eq!(request["host"]["platform"], "linux-x86_64");
    assert_eq!(request["channel"], "stable");
    assert_eq!(request["installed"], serde_json::json!([]));

    let error = store
        .client_builder(dir.path())
        .install_id("no spaces allowed")
        .build()
        .unwrap_err();
    assert!(matches!(error, ClientError::Config(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_by_patch_is_verified_installed_and_can_be_rolled_back() {
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();

    let new = store.publish("acme/hello", "1.2.0");
    let patch = store.publish_patch(&old, &new);
    store.answer(vec![store.offer(&old, &new, Some(&patch))], vec![]);
    let check = client.check_updates().await.unwrap();
    assert!(check.refusals.is_empty(), "{:?}", check.refusals);
    assert!(check.revocations.is_empty());
    assert_eq!(check.updates.len(), 1);
    let update = &check.updates[0];
    assert_eq!(update.installed_version, v("1.0.0"));
    assert_eq!(update.package.version, v("1.2.0"));
    assert_eq!(update.package.package.sha256, new.sha256);
    assert!(update.package.patch.is_some());
    let request = store.served.lock().unwrap().checks[0].clone();
    assert_eq!(request["installed"][0]["id"], "acme/hello");
    assert_eq!(request["installed"][0]["version"], "1.0.0");
    assert_eq!(request["installed"][0]["sha256"], old.sha256.to_hex());

    store.take_log();
    let installed = client.install_update(update, |_, _| {}).await.unwrap();
    assert_eq!(installed.fetched, Fetched::Patched);
    let log = store.take_log();
    assert!(
        !log.iter().any(|line| line.contains(&new.sha256.to_hex())),
        "the full package was not needed: {log:?}"
    );
    let state = client
        .install_dir()
        .state(&id("acme/hello"))
        .unwrap()
        .unwrap();
    assert_eq!(state.current.version, v("1.2.0"));
    assert_eq!(state.previous.as_ref().unwrap().version, v("1.0.0"));

    let rolled = client.rollback(&id("acme/hello")).await.unwrap();
    assert_eq!(rolled.current.version, v("1.0.0"));
    assert_eq!(rolled.previous.unwrap().version, v("1.2.0"));
    let path = client.loadable_path(&id("acme/hello")).unwrap().unwrap();
    let manifest = std::fs::read_to_string(path.join("plugin.toml")).unwrap();
    assert!(manifest.contains("version = \"1.0.0\""));
}

/// An update checked before a newer version was installed is no longer an update: installing
/// it would be a silent downgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_older_than_the_version_installed_since_is_refused() {
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let hello = id("acme/hello");
    client
        .install(&hello, &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let middle = store.publish("acme/hello", "1.1.0");
    store.answer(vec![store.offer(&old, &middle, None)], vec![]);
    let stale = client.check_updates().await.unwrap().updates.remove(0);
    store.publish("acme/hello", "1.2.0");
    client
        .install(&hello, &v("1.2.0"), |_, _| {})
        .await
        .unwrap();

    let error = client.install_update(&stale, |_, _| {}).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(refusal)
            if matches!(&refusal.reason, RefusalReason::NotNewer { installed, offered }
                if *installed == v("1.2.0") && *offered == v("1.1.0"))),
        "{error}"
    );
    let state = client.install_dir().state(&hello).unwrap().unwrap();
    assert_eq!(state.current.version, v("1.2.0"));
    assert_eq!(state.previous.unwrap().version, v("1.0.0"));
}

/// A CDN in front of the store may serve the previous `timestamp.json` for its `max-age`. An
/// offer the store signed in a newer snapshot is then awaited, not refused, and becomes an
/// update once the newer timestamp arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_signed_after_the_cached_timestamp_is_awaited_not_refused() {
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();

    let cached = store.metadata("timestamp.json");
    let new = store.publish("acme/hello", "1.2.0");
    let current = store.metadata("timestamp.json");
    store.put_metadata("timestamp.json", cached);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let check = client.check_updates().await.unwrap();
    assert!(
        check.updates.is_empty() && check.refusals.is_empty(),
        "{check:?}"
    );
    assert_eq!(check.awaiting.len(), 1, "{check:?}");
    let awaiting = &check.awaiting[0];
    assert_eq!(
        (awaiting.id.as_str(), awaiting.version.as_str()),
        ("acme/hello", "1.2.0")
    );
    assert_eq!(awaiting.signed_in_snapshot, awaiting.verified_snapshot + 1);
    assert!(
        matches!(
            awaiting.reason,
            RefusalReason::Unverified(VerificationError::UnknownTarget { .. })
        ),
        "{}",
        awaiting.reason
    );

    // The cache catches up: the same offer is an update.
    store.put_metadata("timestamp.json", current);
    let check = client.check_updates().await.unwrap();
    assert!(
        check.awaiting.is_empty() && check.refusals.is_empty(),
        "{check:?}"
    );
    assert_eq!(check.updates.len(), 1);
    assert_eq!(check.updates[0].package.version, v("1.2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_patch_falls_back_to_the_full_package() {
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let new = store.publish("acme/hello", "1.2.0");
    let patch = store.publish_patch(&old, &new);
    let mut corrupted = patch.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 1;
    store.trick(
        plugstore_tuf::digest::Sha256::of(&patch),
        Trick::Replace(corrupted),
    );
    store.answer(vec![store.offer(&old, &new, Some(&patch))], vec![]);
    let check = client.check_updates().await.unwrap();
    let installed = client
        .install_update(&check.updates[0], |_, _| {})
        .await
        .unwrap();
    let Fetched::Full {
        patch_error: Some(why),
    } = installed.fetched
    else {
        panic!("{:?}", installed.fetched)
    };
    assert!(why.contains("SHA-256"), "{why}");
    assert_eq!(installed.version, v("1.2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes() {
    let mut store = Store::new().await;
    let published = store.publish("acme/hello", "1.0.0");
    store.trick(published.sha256, Trick::CutOnce(30_000));
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let hex = published.sha256.to_hex();
    let requests: Vec<String> = store
        .take_log()
        .into_iter()
        .filter(|line| line.contains(&hex))
        .collect();
    assert_eq!(
        requests,
        vec![
            format!("GET /blobs/sha256/{hex}"),
            format!("GET /blobs/sha256/{hex} from 30000")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_installed_version_is_disabled_and_reported() {
    let mut store = Store::new().await;
    let published = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let installed = client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();

    // The API says nothing; the signed metadata is what counts.
    store.set_state(&published, VersionState::Blocked);
    let check = client.check_updates().await.unwrap();
    assert_eq!(check.revocations.len(), 1);
    assert_eq!(check.revocations[0].id, id("acme/hello"));
    assert_eq!(check.revocations[0].reason, None);
    let state = client
        .install_dir()
        .state(&id("acme/hello"))
        .unwrap()
        .unwrap();
    let disabled = state.disabled.unwrap();
    assert_eq!(disabled.version, v("1.0.0"));
    assert_eq!(client.loadable_path(&id("acme/hello")).unwrap(), None);
    // Disabled, not deleted.
    assert!(installed.path.join("plugin.toml").is_file());
}

/// Rolling back away from a revoked version and back again does not make it loadable: the
/// client remembers which version it saw revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_version_stays_disabled_across_rollbacks() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let revoked = store.publish("acme/hello", "1.1.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let hello = id("acme/hello");
    for version in ["1.0.0", "1.1.0"] {
        client
            .install(&hello, &v(version), |_, _| {})
            .await
            .unwrap();
    }
    store.set_state(&revoked, VersionState::Blocked);
    let check = client.check_updates().await.unwrap();
    assert_eq!(check.revocations.len(), 1);
    assert_eq!(client.loadable_path(&hello).unwrap(), None);

    let back = client.rollback(&hello).await.unwrap();
    assert_eq!(back.current.version, v("1.0.0"));
    assert!(back.disabled.is_none(), "{back:?}");
    assert!(client.loadable_path(&hello).unwrap().is_some());

    let again = client.rollback(&hello).await.unwrap();
    assert_eq!(again.current.version, v("1.1.0"));
    assert_eq!(client.loadable_path(&hello).unwrap(), None);
    let disabled = again.disabled.expect("the revocation is remembered");
    assert_eq!(disabled.version, v("1.1.0"));
    assert_eq!(disabled.reason, "blocked by the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reason_of_a_confirmed_revocation_is_kept() {
    let mut store = Store::new().await;
    let published = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    store.set_state(&published, VersionState::Blocked);
    store.answer(
        vec![],
        vec![serde_json::json!({"id": "acme/hello", "version": "1.0.0",
            "sha256": published.sha256.to_hex(), "reason": "certificate-revoked",
            "detail": "the signing key leaked"})],
    );
    let check = client.check_updates().await.unwrap();
    assert_eq!(
        check.revocations[0].reason.as_deref(),
        Some("certificate-revoked")
    );
    let state = client
        .install_dir()
        .state(&id("acme/hello"))
        .unwrap()
        .unwrap();
    assert!(
        state
            .disabled
            .unwrap()
            .reason
            .contains("the signing key leaked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_is_reported_with_its_problem_details() {
    let store = Store::new().await;
    store.served.lock().unwrap().answer = Some((
        429,
        serde_json::json!({"type": "https://plugstore.dev/problems/rate-limited",
            "title": "Too many requests", "detail": "try again in 60 s"}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let error = store.client(dir.path()).check_updates().await.unwrap_err();
    let ClientError::Api {
        status,
        problem_type,
        detail,
        ..
    } = error
    else {
        panic!("{error}")
    };
    assert_eq!(status, 429);
    assert_eq!(
        problem_type.as_deref(),
        Some("https://plugstore.dev/problems/rate-limited")
    );
    assert_eq!(detail.as_deref(), Some("try again in 60 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_refuses_a_missing_store_ca() {
    let store = Store::new().await;
    let dir = tempfile::tempdir().unwrap();
    let error = ClientBuilder::new(&store.url)
        .trusted_root(store.pinned_root.clone())
        .install_dir(dir.path())
        .host(
            "org.example.editor",
            v("2.3.0"),
            plugstore_format::manifest::Target::Any,
        )
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("store_ca_pem"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_redirected_to_a_cdn_are_followed() {
    let mut store = Store::new().await;
    let published = store.publish("acme/hello", "1.0.0");
    store.trick(published.sha256, Trick::Redirect);
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let log = store.take_log();
    assert!(
        log.contains(&format!("GET /cdn/{}", published.sha256.to_hex())),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_private_pki_is_reached_over_https_with_its_root() {
    let mut store = Store::new_tls().await;
    assert!(store.url.starts_with("https://"), "{}", store.url);
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();

    // Without the store's TLS root, the connection is refused.
    let tls_root = store.tls_root_pem.take();
    let untrusting = store.client(dir.path());
    store.tls_root_pem = tls_root;
    let error = untrusting.check_updates().await.unwrap_err();
    assert!(
        store.take_log().is_empty(),
        "no request got through: {error}"
    );

    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    assert!(client.loadable_path(&id("acme/hello")).unwrap().is_some());

    let not_pem = store
        .client_builder(dir.path())
        .tls_root_pem(b"not a certificate".to_vec())
        .build()
        .unwrap_err();
    assert!(not_pem.to_string().contains("TLS root"), "{not_pem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_redirected_from_https_to_plain_http_is_not_followed() {
    let mut store = Store::new_tls().await;
    let published = store.publish("acme/hello", "1.0.0");
    let plain = store.plain_url.clone();
    store.trick(published.sha256, Trick::RedirectTo(plain));
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let error = client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap_err();
    let log = store.take_log();
    assert!(
        !log.iter().any(|line| line.starts_with("GET /cdn/")),
        "the plain-HTTP copy was fetched: {log:?} ({error})"
    );
    assert_eq!(client.loadable_path(&id("acme/hello")).unwrap(), None);

    // The same redirect within https is followed.
    store.trick(published.sha256, Trick::Redirect);
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_root_is_followed_and_kept_across_a_restart() {
    use plugstore_tuf::root::{RootDraft, sign_root};
    use plugstore_tuf::time::UnixTime;

    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client.check_updates().await.unwrap();

    // Root 2: a new root key, signed by the old and the new one.
    let new_root_key = plugstore_tuf::keys::SigningKey::generate().unwrap();
    let top = common::top_level_keys(
        plugstore_tuf::keys::RoleKeys::single(new_root_key.public_key()),
        &store.keys,
    );
    let mut draft = RootDraft::successor(&store.state.root, &top, UnixTime::now()).unwrap();
    sign_root(&mut draft, &store.root_keys[0]).unwrap();
    sign_root(&mut draft, &new_root_key).unwrap();
    let file = store.state.install_root(&draft.to_json().unwrap()).unwrap();
    store.serve_files(vec![file]);
    client.check_updates().await.unwrap();
    assert!(dir.path().join("tuf/2.root.json").is_file());
    drop(client);

    // The mirror stops serving root 2; a restarted client still starts from it (it follows
    // the saved chain from the pinned root 1).
    store.served.lock().unwrap().metadata.remove("2.root.json");
    store.take_log();
    let restarted = store.client(dir.path());
    restarted.check_updates().await.unwrap();
    let log = store.take_log();
    assert!(log.contains(&"GET /tuf/3.root.json".to_owned()), "{log:?}");
    assert!(!log.contains(&"GET /tuf/2.root.json".to_owned()), "{log:?}");
}

/// One refresh may follow several rotations. Every root of the chain is saved: a restarted
/// client verifies the saved timestamp under the root that signed it, not under the last
/// root it could reach from the pinned one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_rotations_followed_in_one_refresh_are_kept_across_a_restart() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client.check_updates().await.unwrap();

    // Root 2 rotates the timestamp key; root 3 follows before the client checks again.
    store.keys.timestamp = plugstore_tuf::keys::SigningKey::generate().unwrap();
    store.publish_next_root();
    store.publish_next_root();
    store.refresh_timestamp();
    client.check_updates().await.unwrap();
    for root in ["2.root.json", "3.root.json"] {
        assert!(dir.path().join("tuf").join(root).is_file(), "{root}");
    }
    drop(client);

    let restarted = store
        .client_builder(dir.path())
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    restarted.check_updates().await.unwrap();
}

/// The application ships a newer pinned root (as the guide recommends) after the store
/// rotated an online key, and the client did not run in between: the state saved under the
/// older root is restored and moved to the pinned root, keeping the roles whose keys did not
/// change, instead of failing every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_pinned_root_takes_over_the_state_saved_under_an_older_root() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    store.publish_next_root();
    let dir = tempfile::tempdir().unwrap();
    store.client(dir.path()).check_updates().await.unwrap();
    assert!(dir.path().join("tuf/2.root.json").is_file());

    store.keys.timestamp = plugstore_tuf::keys::SigningKey::generate().unwrap();
    let pinned = store.publish_next_root();
    store.refresh_timestamp();
    store.take_log();
    let restarted = store
        .client_builder(dir.path())
        .trusted_root(pinned)
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    restarted.check_updates().await.unwrap();
    let log = store.take_log();
    assert!(
        log.contains(&"GET /tuf/timestamp.json".to_owned()),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|line| line.ends_with(".targets.json")),
        "the saved targets role (its key did not rotate) was restored, not fetched again: \
         {log:?}"
    );
}

/// A reinstall moves the version's directory aside, then renames the new one into place; a
/// crash in between leaves `state.json` naming a directory that is not there. The next start
/// puts it back, and removes a moved-aside copy whose version is in place again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_moved_aside_by_an_interrupted_reinstall_is_put_back_at_start() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let installed = store
        .client(dir.path())
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let versions = installed.path.parent().unwrap().to_owned();
    std::fs::rename(&installed.path, versions.join(".replaced-1.0.0")).unwrap();

    let restarted = store.client(dir.path());
    let path = restarted.loadable_path(&id("acme/hello")).unwrap().unwrap();
    assert!(path.join("plugin.toml").is_file(), "{}", path.display());

    let stale = versions.join(".replaced-1.0.0");
    std::fs::create_dir(&stale).unwrap();
    drop(restarted);
    store.client(dir.path());
    assert!(!stale.exists());
    assert!(path.join("plugin.toml").is_file());
}

/// The files under `{dir}/tuf/`, by name.
fn saved_metadata(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("tuf"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// A new install directory whose `tuf/` holds `files`.
fn install_dir_with_metadata<'a>(
    files: impl IntoIterator<Item = (&'a String, &'a Vec<u8>)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tuf")).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join("tuf").join(name), bytes).unwrap();
    }
    dir
}

/// A host that crashes part-way through saving the metadata of a refresh starts again and
/// catches up, at every point of the save, even when that refresh followed a rotation of the
/// timestamp and targets keys: the new root is on disk beside roles signed with the keys it
/// replaced. Saving writes the roots, then the targets, snapshot and timestamp (each file
/// atomically), and removes the old files last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_part_way_through_saving_metadata_leaves_a_state_that_starts() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let before_dir = tempfile::tempdir().unwrap();
    store
        .client(before_dir.path())
        .check_updates()
        .await
        .unwrap();
    let before = saved_metadata(before_dir.path());

    store.keys.timestamp = plugstore_tuf::keys::SigningKey::generate().unwrap();
    store.keys.targets = plugstore_tuf::keys::SigningKey::generate().unwrap();
    store.publish_next_root();
    let files = store
        .state
        .resign_targets(&store.keys, plugstore_tuf::time::UnixTime::now())
        .unwrap();
    store.serve_files(files);
    store.publish("acme/hello", "1.1.0");
    let after_dir = install_dir_with_metadata(&before);
    store
        .client(after_dir.path())
        .check_updates()
        .await
        .unwrap();
    let after = saved_metadata(after_dir.path());

    // The files the refresh wrote, in the order it writes them.
    let order = |name: &str| {
        [
            "root.json",
            "targets.json",
            "snapshot.json",
            "timestamp.json",
        ]
        .iter()
        .position(|suffix| name.ends_with(suffix))
        .unwrap()
    };
    let mut written: Vec<&String> = after
        .iter()
        .filter(|(name, bytes)| before.get(*name) != Some(*bytes))
        .map(|(name, _)| name)
        .collect();
    written.sort_by_key(|name| order(name));
    assert_eq!(
        written.iter().map(|name| order(name)).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "one file of each kind: {written:?}"
    );
    for crashed_after in 0..=written.len() {
        let dir = install_dir_with_metadata(
            before.iter().chain(
                written[..crashed_after]
                    .iter()
                    .map(|name| (*name, &after[*name])),
            ),
        );
        let restarted = store
            .client_builder(dir.path())
            .build()
            .unwrap_or_else(|error| panic!("crashed after {crashed_after} files: {error}"));
        restarted
            .check_updates()
            .await
            .unwrap_or_else(|error| panic!("crashed after {crashed_after} files: {error}"));
        assert_eq!(
            saved_metadata(dir.path()),
            after,
            "crashed after {crashed_after} files"
        );
    }
}

/// The first save after an application upgrade that pinned a newer root writes that root
/// first: a crash before the roles follow leaves it saved beside roles verified under the
/// root before it, which the next start still restores (under that root, then moved on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_first_save_under_a_newer_pinned_root_leaves_a_state_that_starts() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    store.publish_next_root();
    let dir = tempfile::tempdir().unwrap();
    store.client(dir.path()).check_updates().await.unwrap();
    let before = saved_metadata(dir.path());

    store.keys.timestamp = plugstore_tuf::keys::SigningKey::generate().unwrap();
    let pinned = store.publish_next_root();
    store.refresh_timestamp();
    // What the first save under the pinned root writes first: the pinned root itself.
    std::fs::write(dir.path().join("tuf/3.root.json"), &pinned).unwrap();
    assert!(!before.contains_key("3.root.json"));
    let restarted = store
        .client_builder(dir.path())
        .trusted_root(pinned)
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    restarted.check_updates().await.unwrap();
    assert_ne!(
        saved_metadata(dir.path())["timestamp.json"],
        before["timestamp.json"]
    );
}

/// Moving saved state to a newer pinned root is no reason to skip its checks: a damaged
/// saved file is still an error, not a first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_saved_timestamp_is_an_error_under_a_newer_pinned_root_too() {
    let mut store = Store::new().await;
    store.publish_next_root();
    let dir = tempfile::tempdir().unwrap();
    store.client(dir.path()).check_updates().await.unwrap();
    store.keys.timestamp = plugstore_tuf::keys::SigningKey::generate().unwrap();
    let pinned = store.publish_next_root();
    store.refresh_timestamp();

    let saved = dir.path().join("tuf/timestamp.json");
    let mut bytes = std::fs::read(&saved).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&saved, bytes).unwrap();
    let error = store
        .client_builder(dir.path())
        .trusted_root(pinned)
        .build()
        .unwrap_err();
    assert!(matches!(error, ClientError::Restore(_)), "{error}");
    // The error says what failed under each root tried, not only under the newest. The
    // store started at root 1; the client saved root 2; root 3 is pinned.
    let message = error.to_string();
    assert!(message.contains("; under root 2: "), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_for_another_platform_or_host_is_refused() {
    use plugstore_client::{ClientError, RefusalReason};
    use plugstore_format::manifest::Target;
    use plugstore_tuf::custom::TargetDetail;

    let mut store = Store::new().await;
    let bytes = common::package_bytes("acme/native", "1.0.0");
    let acme = store.acme.clone();
    let mut entry = store.package_entry(
        "acme/native",
        "1.0.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    let TargetDetail::Package(package) = &mut entry.custom.detail else {
        unreachable!()
    };
    package.platforms = vec![Target::WindowsX86_64];
    store.publish_entry(entry, bytes);

    let bytes = common::package_bytes("acme/future", "1.0.0");
    let mut entry = store.package_entry(
        "acme/future",
        "1.0.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    let TargetDetail::Package(package) = &mut entry.custom.detail else {
        unreachable!()
    };
    package.host = ">=3.0.0".parse().unwrap();
    store.publish_entry(entry, bytes);

    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let error = client
        .install(&id("acme/native"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(refusal)
            if matches!(refusal.reason, RefusalReason::WrongPlatform { .. })),
        "{error}"
    );
    let error = client
        .install(&id("acme/future"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(refusal)
            if matches!(refusal.reason, RefusalReason::IncompatibleHost { .. })),
        "{error}"
    );
    assert!(client.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yanked_version_installs_when_pinned_but_a_blocked_one_does_not() {
    use plugstore_client::RefusalReason;

    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    store.publish_as("acme/hello", "1.1.0", VersionState::Yanked);
    store.publish_as("acme/hello", "1.2.0", VersionState::Blocked);
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());

    let installed = client
        .install(&id("acme/hello"), &v("1.1.0"), |_, _| {})
        .await
        .unwrap();
    assert_eq!(installed.version, v("1.1.0"));
    assert!(installed.path.join("plugin.toml").is_file());

    let error = client
        .install(&id("acme/hello"), &v("1.2.0"), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(refusal)
            if matches!(&refusal.reason, RefusalReason::Blocked(version) if *version == v("1.2.0"))),
        "{error}"
    );
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state.current.version,
        v("1.1.0"),
        "the yanked install stays in place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_without_a_previous_version_is_an_error() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let error = client.rollback(&id("acme/hello")).await.unwrap_err();
    assert!(error.to_string().contains("not installed"), "{error}");
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let error = client.rollback(&id("acme/hello")).await.unwrap_err();
    assert!(error.to_string().contains("no previous version"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_the_current_and_previous_packages_only() {
    let mut store = Store::new().await;
    let first = store.publish("acme/hello", "1.0.0");
    let second = store.publish("acme/hello", "1.1.0");
    let third = store.publish("acme/hello", "1.2.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        client
            .install(&id("acme/hello"), &v(version), |_, _| {})
            .await
            .unwrap();
    }
    let cached = |published: &common::Published| client.install_dir().cached(&published.sha256);
    assert!(!cached(&first).exists());
    assert!(cached(&second).is_file());
    assert!(cached(&third).is_file());
    let versions = dir.path().join("plugins/acme/hello/versions");
    let mut kept: Vec<String> = std::fs::read_dir(versions)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["1.1.0", "1.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_version_is_the_newest_published_one_for_this_host() {
    let mut store = Store::new().await;
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    assert_eq!(
        client.latest_version(&id("acme/hello")).await.unwrap(),
        None
    );
    store.publish("acme/hello", "1.0.0");
    store.publish("acme/hello", "1.1.0");
    store.publish_as("acme/hello", "1.2.0", VersionState::Yanked);
    store.publish_as("acme/hello", "1.3.0", VersionState::Blocked);
    store.publish("acme/hello", "2.0.0-beta.1");
    assert_eq!(
        client.latest_version(&id("acme/hello")).await.unwrap(),
        Some(v("1.1.0"))
    );
    let beta_dir = tempfile::tempdir().unwrap();
    let beta = store
        .client_builder(beta_dir.path())
        .channel(plugstore_client::Channel::Beta)
        .build()
        .unwrap();
    assert_eq!(
        beta.latest_version(&id("acme/hello")).await.unwrap(),
        Some(v("2.0.0-beta.1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_found_without_the_api() {
    let mut store = Store::new().await;
    let published = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    store.set_state(&published, VersionState::Blocked);
    store.served.lock().unwrap().answer = Some((503, serde_json::json!({"title": "down"})));
    assert!(client.check_updates().await.is_err());
    let revoked = client.check_revocations().await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(client.loadable_path(&id("acme/hello")).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_saved_metadata_is_an_error_not_a_reset() {
    let store = Store::new().await;
    let dir = tempfile::tempdir().unwrap();
    store.client(dir.path()).check_updates().await.unwrap();
    let saved = dir.path().join("tuf/timestamp.json");
    let mut bytes = std::fs::read(&saved).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&saved, bytes).unwrap();
    let error = store.client_builder(dir.path()).build().unwrap_err();
    assert!(matches!(error, ClientError::Restore(_)), "{error}");
    assert!(error.metadata_error().is_some(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_installs_do_not_prune_each_others_packages() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    store.publish("acme/world", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let (hello, world, version) = (id("acme/hello"), id("acme/world"), v("1.0.0"));
    let (first, second) = tokio::join!(
        client.install(&hello, &version, |_, _| {}),
        client.install(&world, &version, |_, _| {}),
    );
    first.unwrap();
    second.unwrap();
    assert_eq!(client.list().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_installed_plugins_are_checked_in_batches() {
    let store = Store::new().await;
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    let state = serde_json::json!({"current": {"version": "1.0.0",
        "sha256": "ab".repeat(32), "installed_at": 0}, "previous": null, "disabled": null});
    for index in 0..1001 {
        let plugin = dir.path().join(format!("plugins/acme/plugin-{index}"));
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::write(plugin.join("state.json"), state.to_string()).unwrap();
    }
    client.check_updates().await.unwrap();
    let checks = store.served.lock().unwrap().checks.clone();
    let sizes: Vec<usize> = checks
        .iter()
        .map(|check| check["installed"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![1000, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_one_directory_keep_each_others_changes() {
    let mut store = Store::new().await;
    store.publish("acme/hello", "1.0.0");
    store.publish("acme/world", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let first = store.client(dir.path());
    let second = store.client(dir.path());
    let (hello, world, version) = (id("acme/hello"), id("acme/world"), v("1.0.0"));
    let (a, b) = tokio::join!(
        first.install(&hello, &version, |_, _| {}),
        second.install(&world, &version, |_, _| {}),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(first.list().await.unwrap().len(), 2);
    assert!(dir.path().join("lock").is_file());
}
