//! The store (or a network attacker in front of it) lies, and the client refuses, each time
//! with its own error, leaving the installed plugin exactly as it was.
//!
//! The loopback store serves metadata signed with `plugstore_tuf::repository` and test keys;
//! each test tampers with what it serves: the API's answer, the blobs, or the metadata.

mod common;

use std::time::Duration;

use common::{Store, Trick, id, package_bytes};
use plugstore_client::developer::DeveloperError;
use plugstore_client::download::DownloadError;
use plugstore_client::install::PluginState;
use plugstore_client::{Client, ClientError, RefusalReason, UpdateCheck};
use plugstore_format::certs::CertError;
use plugstore_format::signing::SignatureError;
use plugstore_tuf::custom::VersionState;
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::error::{RoleName, VerificationError};
use plugstore_tuf::keys::{RoleKeys, SigningKey};
use plugstore_tuf::layout::Shard;
use plugstore_tuf::root::{RootDraft, sign_root};
use plugstore_tuf::sign_metadata_json;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::{Value, json};

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

/// A store with acme/hello 1.0.0 installed by a client; returns the client, its directory
/// and the installed state.
async fn installed() -> (
    Store,
    Client,
    tempfile::TempDir,
    common::Published,
    PluginState,
) {
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let state = current_state(&client);
    (store, client, dir, old, state)
}

fn current_state(client: &Client) -> PluginState {
    client
        .install_dir()
        .state(&id("acme/hello"))
        .unwrap()
        .unwrap()
}

/// The installed plugin is exactly as before: same state, same files, loadable.
fn assert_untouched(client: &Client, before: &PluginState) {
    let after = current_state(client);
    assert_eq!(&after, before);
    let path = client.loadable_path(&id("acme/hello")).unwrap().unwrap();
    let manifest = std::fs::read_to_string(path.join("plugin.toml")).unwrap();
    assert!(manifest.contains(&format!("version = \"{}\"", before.current.version)));
}

/// Checks for updates and expects exactly one refusal; returns its reason.
async fn refused(client: &Client) -> RefusalReason {
    let UpdateCheck {
        updates,
        mut refusals,
        ..
    } = client.check_updates().await.unwrap();
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    refusals.remove(0).reason
}

/// Checks for updates, expects one verified update, and installs it.
async fn update(client: &Client) -> Result<plugstore_client::Installed, ClientError> {
    let check = client.check_updates().await.unwrap();
    assert!(check.refusals.is_empty(), "{:?}", check.refusals);
    assert_eq!(check.updates.len(), 1);
    client.install_update(&check.updates[0], |_, _| {}).await
}

// ---------------------------------------------------------------------------------------------
// Packages
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arbitrary_package_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let mut evil = new.bytes.clone();
    evil[1000] ^= 0x20;
    store.trick(new.sha256, Trick::Replace(evil));
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Download(DownloadError::HashMismatch)),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_url_for_other_bytes_is_not_used() {
    // The API points at a blob of its choosing and gives that blob's hash; the client takes
    // the hash from TUF and downloads the signed package from the store instead.
    let (mut store, client, _dir, old, _) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let evil = store.put_blob(b"malware");
    let mut offer = store.offer(&old, &new, None);
    offer["package"]["url"] = format!("{}/blobs/sha256/{}", store.url, evil.to_hex()).into();
    offer["package"]["sha256"] = evil.to_hex().into();
    offer["package"]["length"] = 7.into();
    store.answer(vec![offer], vec![]);
    store.take_log();
    let installed = update(&client).await.unwrap();
    assert_eq!(installed.version, v("1.2.0"));
    let log = store.take_log();
    assert!(
        !log.iter().any(|line| line.contains(&evil.to_hex())),
        "{log:?}"
    );
    assert!(
        log.iter().any(|line| line.contains(&new.sha256.to_hex())),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_package_data_is_cut_off() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.trick(new.sha256, Trick::Overlong(1 << 20));
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Download(DownloadError::EndlessData { length }) if length == new.bytes.len() as u64),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_retrieval_is_given_up_on() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.trick(new.sha256, Trick::Trickle);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let started = std::time::Instant::now();
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Download(DownloadError::SlowRetrieval { .. })
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_plugin_under_a_right_name_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let evil = store.publish("acme/evil", "1.2.0");
    // An offer for acme/hello 1.2.0 that points at acme/evil's package.
    let mut offer = store.offer(&old, &evil, None);
    offer["id"] = "acme/hello".into();
    store.answer(vec![offer], vec![]);
    let reason = refused(&client).await;
    assert!(
        matches!(&reason, RefusalReason::WrongPlugin { target, .. } if target.contains("/acme/evil/")),
        "{reason}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_whose_manifest_names_another_plugin_is_not_installed() {
    // Signed by the store and by the developer as acme/hello 1.2.0, but the package inside
    // says it is acme/evil: the strict reader's manifest must match the signed identity.
    let (mut store, client, _dir, old, before) = installed().await;
    let bytes = package_bytes("acme/evil", "1.2.0");
    let acme = store.acme.clone();
    let entry = store.package_entry(
        "acme/hello",
        "1.2.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    let new = store.publish_entry(entry, bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Install(plugstore_client::install::InstallError::PackageMismatch { .. })
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_metadata_does_not_list_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let mut offer = store.offer(&old, &new, None);
    offer["version"] = "6.6.6".into();
    offer["package"]["target"] = new
        .entry
        .path
        .to_string()
        .replace("/1.2.0/", "/6.6.6/")
        .into();
    store.answer(vec![offer], vec![]);
    let reason = refused(&client).await;
    assert!(
        matches!(
            reason,
            RefusalReason::Unverified(VerificationError::UnknownTarget { .. })
        ),
        "{reason}"
    );
    assert_untouched(&client, &before);
}

/// An API that invents an offer and claims a snapshot newer than the client's, so that the
/// refusal reads as "not signed yet": the offer is only awaited, never installable, and
/// nothing changes on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invented_offer_claiming_newer_metadata_is_never_installed() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let mut offer = store.offer(&old, &new, None);
    offer["version"] = "6.6.6".into();
    offer["package"]["target"] = new
        .entry
        .path
        .to_string()
        .replace("/1.2.0/", "/6.6.6/")
        .into();
    offer["signed_in_snapshot"] = json!(u64::MAX);
    store.answer(vec![offer], vec![]);
    let check = client.check_updates().await.unwrap();
    assert!(
        check.updates.is_empty() && check.refusals.is_empty(),
        "{check:?}"
    );
    assert_eq!(check.awaiting.len(), 1, "{check:?}");
    assert!(matches!(
        check.awaiting[0].reason,
        RefusalReason::Unverified(VerificationError::UnknownTarget { .. })
    ));
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_is_not_an_update() {
    let (mut store, client, _dir, _old, before) = installed().await;
    let older = store.publish("acme/hello", "0.9.0");
    let current = store.publish("acme/hello", "1.0.0");
    store.answer(vec![store.offer(&current, &older, None)], vec![]);
    let reason = refused(&client).await;
    assert!(
        matches!(&reason, RefusalReason::NotNewer { installed, offered }
            if *installed == v("1.0.0") && *offered == v("0.9.0")),
        "{reason}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yanked_version_offered_anyway_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish_as("acme/hello", "1.2.0", VersionState::Yanked);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let reason = refused(&client).await;
    assert!(
        matches!(&reason, RefusalReason::Yanked(version) if *version == v("1.2.0")),
        "{reason}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_version_offered_anyway_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish_as("acme/hello", "1.2.0", VersionState::Blocked);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let reason = refused(&client).await;
    assert!(
        matches!(&reason, RefusalReason::Blocked(version) if *version == v("1.2.0")),
        "{reason}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_signed_by_a_revoked_certificate_is_refused() {
    // The store revokes the developer certificate after 1.2.0 was published: every version
    // it signed becomes blocked in the signed metadata. An API that still offers it is
    // refused; the API cannot un-revoke by leaving the revocation out.
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.set_state(&new, VersionState::Blocked);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let reason = refused(&client).await;
    assert!(matches!(reason, RefusalReason::Blocked(_)), "{reason}");
    assert_untouched(&client, &before);

    // And when it is the installed version that the certificate signed, it is disabled.
    store.set_state(&old, VersionState::Blocked);
    store.answer(vec![], vec![]);
    let check = client.check_updates().await.unwrap();
    assert_eq!(check.revocations.len(), 1);
    assert!(current_state(&client).disabled.is_some());
    assert_eq!(client.loadable_path(&id("acme/hello")).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_blocked_after_the_check_is_not_installed() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let check = client.check_updates().await.unwrap();
    assert_eq!(check.updates.len(), 1);
    store.set_state(&new, VersionState::Blocked);
    let error = client
        .install_update(&check.updates[0], |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(refusal) if matches!(refusal.reason, RefusalReason::Blocked(_))),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_developer_signature_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let bytes = package_bytes("acme/hello", "1.2.0");
    let acme = store.acme.clone();
    let mut entry = store.package_entry(
        "acme/hello",
        "1.2.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    // A valid signature by the right key, over another version's payload.
    let other = store.package_entry(
        "acme/hello",
        "1.3.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    let (
        plugstore_tuf::custom::TargetDetail::Package(package),
        plugstore_tuf::custom::TargetDetail::Package(replayed),
    ) = (&mut entry.custom.detail, &other.custom.detail)
    else {
        unreachable!()
    };
    package.developer.signature = replayed.developer.signature.clone();
    let new = store.publish_entry(entry, bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Developer(DeveloperError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_publisher_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let mallory = store
        .openssl
        .leaf("/CN=mallory", "mallory", &store.ca.clone());
    let bytes = package_bytes("acme/hello", "1.2.0");
    let entry = store.package_entry(
        "acme/hello",
        "1.2.0",
        &bytes,
        VersionState::Published,
        &mallory,
    );
    let new = store.publish_entry(entry, bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Developer(DeveloperError::Signature(SignatureError::Signer(
                CertError::NotBoundToPublisher { .. }
            )))
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_trusted_ca_cannot_bind_a_publisher_by_uri() {
    // A company CA the host also trusts issues a certificate claiming
    // urn:plugstore:publisher:acme; only the store's CA may bind publishers that way.
    let mut store = Store::new().await;
    let old = store.publish("acme/hello", "1.0.0");
    let company = store.openssl.root_ca("/CN=company CA");
    let dir = tempfile::tempdir().unwrap();
    let client = store
        .client_builder(dir.path())
        .trust_anchor_pem(company.cert_pem.clone())
        .build()
        .unwrap();
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let before = current_state(&client);
    let impostor = store.openssl.leaf("/CN=acme impostor", "acme", &company);
    let bytes = package_bytes("acme/hello", "1.2.0");
    let entry = store.package_entry(
        "acme/hello",
        "1.2.0",
        &bytes,
        VersionState::Published,
        &impostor,
    );
    let new = store.publish_entry(entry, bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Developer(DeveloperError::Signature(SignatureError::Signer(
                CertError::NotBoundToPublisher { .. }
            )))
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_blob_replaced_in_transit_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let plugstore_tuf::custom::TargetDetail::Package(package) = &new.entry.custom.detail else {
        unreachable!()
    };
    // Same length, one character of the base64 changed.
    let mut tampered = store.acme.cert_pem.clone();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    store.trick(package.developer.chain.sha256, Trick::Replace(tampered));
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Download(DownloadError::HashMismatch)),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_release_offered_to_a_stable_host_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "2.0.0-beta.1");
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let reason = refused(&client).await;
    assert!(matches!(reason, RefusalReason::PreRelease(_)), "{reason}");
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_is_not_the_signed_leaf_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let bytes = package_bytes("acme/hello", "1.2.0");
    let acme = store.acme.clone();
    let mut entry = store.package_entry(
        "acme/hello",
        "1.2.0",
        &bytes,
        VersionState::Published,
        &acme,
    );
    let plugstore_tuf::custom::TargetDetail::Package(package) = &mut entry.custom.detail else {
        unreachable!()
    };
    package.developer.leaf_sha256 = plugstore_format::certs::CertFingerprint([7; 32]);
    let new = store.publish_entry(entry, bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = update(&client).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Developer(DeveloperError::LeafMismatch { .. })
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_metadata_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let stale = store.metadata("timestamp.json");
    let new = store.publish("acme/hello", "1.2.0");
    client.check_updates().await.unwrap();
    // The mirror goes back to the timestamp from before 1.2.0, hiding it.
    store.put_metadata("timestamp.json", stale);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::Rollback {
                role: RoleName::Timestamp,
                ..
            })
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_rollback_protection() {
    let (mut store, client, dir, _old, before) = installed().await;
    let stale = store.metadata("timestamp.json");
    store.publish("acme/hello", "1.2.0");
    client.check_updates().await.unwrap();
    drop(client);

    store.put_metadata("timestamp.json", stale);
    let restarted = store.client(dir.path());
    let error = restarted.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::Rollback {
                role: RoleName::Timestamp,
                ..
            })
        ),
        "{error}"
    );
    assert_untouched(&restarted, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_metadata_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    // A timestamp signed two days ago (one version up): expired, whatever it names.
    let frozen = store
        .state
        .refresh_timestamp(
            &store.keys,
            UnixTime::now().minus(Duration::from_secs(2 * 86_400)),
        )
        .unwrap();
    store.serve_files(vec![frozen]);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::Expired {
                role: RoleName::Timestamp,
                ..
            })
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_and_matched_metadata_is_refused() {
    // The snapshot names the plugin's bin at a new version (without a length or hash, which
    // TUF allows), and the mirror serves an old version of the bin under that name.
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    let bin = Shard::of(&id("acme/hello")).bin();
    let old_bin = store.metadata(&format!("1.{bin}.json"));
    let snapshot_name = format!("{}.snapshot.json", store.state.snapshot.record.version);
    let mut snapshot: Value = serde_json::from_slice(&store.metadata(&snapshot_name)).unwrap();
    let mut snapshot = snapshot["signed"].take();
    let bin_version = snapshot["meta"][bin.meta_key()]["version"]
        .as_u64()
        .unwrap()
        + 1;
    store.put_metadata(&format!("{bin_version}.{bin}.json"), old_bin);
    let snapshot_version = snapshot["version"].as_u64().unwrap() + 1;
    snapshot["version"] = snapshot_version.into();
    snapshot["meta"][bin.meta_key()] = json!({"version": bin_version});
    let snapshot_bytes = sign_metadata_json(&snapshot, &[&store.keys.snapshot]).unwrap();
    let mut timestamp: Value = serde_json::from_slice(&store.metadata("timestamp.json")).unwrap();
    let mut timestamp = timestamp["signed"].take();
    timestamp["version"] = (timestamp["version"].as_u64().unwrap() + 1).into();
    timestamp["meta"]["snapshot.json"] = json!({"version": snapshot_version,
        "length": snapshot_bytes.len(), "hashes": {"sha256": Sha256::of(&snapshot_bytes).to_hex()}});
    let timestamp_bytes = sign_metadata_json(&timestamp, &[&store.keys.timestamp]).unwrap();
    store.put_metadata(&format!("{snapshot_version}.snapshot.json"), snapshot_bytes);
    store.put_metadata("timestamp.json", timestamp_bytes);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);

    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::MixAndMatch {
                role: RoleName::Bin(mixed),
                ..
            }) if *mixed == bin
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_metadata_is_refused() {
    let (mut store, client, _dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.put_metadata("timestamp.json", vec![b' '; 10 << 20]);
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::TooLarge { file, .. }) if file == "timestamp.json"
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_metadata_retrieval_is_given_up_on() {
    let (mut store, _client, dir, old, before) = installed().await;
    let new = store.publish("acme/hello", "1.2.0");
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    store
        .served
        .lock()
        .unwrap()
        .trickled_metadata
        .push("timestamp.json".to_owned());
    // The whole request may take a minute; the minimum rate (1 KiB/s over 1 s windows, see
    // `common::fast_policy`) is what ends the trickle.
    let client = store
        .client_builder(dir.path())
        .request_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::Fetch { file, .. }) if file == "timestamp.json"
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("slow retrieval"),
        "cut off by the rate floor, not the request timeout: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_untouched(&client, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_compromised_root_key_below_the_threshold_cannot_rotate_the_root() {
    let mut store = Store::with_root_keys(2, Duration::from_secs(60)).await;
    let old = store.publish("acme/hello", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let client = store.client(dir.path());
    client
        .install(&id("acme/hello"), &v("1.0.0"), |_, _| {})
        .await
        .unwrap();
    let before = current_state(&client);

    // The attacker replaces every key with their own and signs with the one root key stolen.
    let attacker = SigningKey::generate().unwrap();
    let attacker_keys = common::online_keys();
    let hostile = common::top_level_keys(RoleKeys::single(attacker.public_key()), &attacker_keys);
    let mut draft = RootDraft::successor(&store.state.root, &hostile, UnixTime::now()).unwrap();
    sign_root(&mut draft, &store.root_keys[0]).unwrap();
    sign_root(&mut draft, &attacker).unwrap();
    store.put_metadata("2.root.json", draft.to_json().unwrap());
    let new = store.publish("acme/hello", "1.2.0");
    store.answer(vec![store.offer(&old, &new, None)], vec![]);
    let error = client.check_updates().await.unwrap_err();
    assert!(
        matches!(
            error.metadata_error(),
            Some(VerificationError::NotSignedByPreviousRoot {
                version: 2,
                valid: 1,
                threshold: 2
            })
        ),
        "{error}"
    );
    assert_untouched(&client, &before);
}
