//! The signed release metadata: created on first start, served under `/tuf/` with the right
//! cache lifetimes, and kept in step with publications, patches, blocks and certificate
//! revocations. Verified here with the client side of `plugstore-tuf` from the pinned root,
//! and the developer signature with the format crate, as a host does.

use std::collections::HashMap;

use axum::http::StatusCode;
use plugstore_format::certs::{NoRevocations, SignerPolicy, TrustAnchors, UnixTime as CertTime};
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::PluginId;
use plugstore_format::signing::{
    ENVELOPE_FORMAT, SignatureEnvelope, SigningPayload, verify_package_signature,
};
use plugstore_tuf::client::{Fetch, FetchError, TrustedState};
use plugstore_tuf::custom::VersionState;
use plugstore_tuf::keys_dir::{KeysDir, OnlineRole};
use plugstore_tuf::layout::TargetPath;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde_json::json;

use crate::both_stacks;
use crate::deltas::{payload, publish};
use crate::harness::TestApp;
use crate::publish::StoreSigner;

/// Every metadata file the store has, fetched through `/tuf/` by its public name.
struct ServedMetadata(HashMap<String, Vec<u8>>);

impl Fetch for ServedMetadata {
    fn fetch(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        let bytes = self.0.get(name).ok_or(FetchError::NotFound)?;
        Ok(bytes[..bytes.len().min(max_len as usize)].to_vec())
    }
}

async fn served_metadata(app: &TestApp) -> ServedMetadata {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tuf_files WHERE role <> 'timestamp'")
            .fetch_all(&app.app.db.pool)
            .await
            .unwrap();
    let mut files = HashMap::new();
    for name in names.into_iter().chain(["timestamp.json".to_owned()]) {
        let response = app.get(&format!("/tuf/{name}"), None).await;
        assert_eq!(response.status, StatusCode::OK, "/tuf/{name}");
        files.insert(name, response.body.to_vec());
    }
    ServedMetadata(files)
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap()
}

async fn first_root(app: &TestApp) -> Vec<u8> {
    let response = app.get("/tuf/1.root.json", None).await;
    assert_eq!(response.status, StatusCode::OK);
    response.body.to_vec()
}

fn hello() -> PluginId {
    PluginId::new("acme", "hello").unwrap()
}

both_stacks! {
    async fn metadata_is_served_with_cache_lifetimes_that_suit_a_cdn(app) {
        assert_eq!(app.get("/tuf/timestamp.json", None).await.status, StatusCode::NOT_FOUND, "nothing before the first start");
        plugstore_server::release_metadata::ensure_repository(&app.app).await.unwrap();
        // A second start (or a second replica) finds it and changes nothing.
        plugstore_server::release_metadata::ensure_repository(&app.app).await.unwrap();

        let root = app.get("/tuf/1.root.json", None).await;
        assert_eq!(root.status, StatusCode::OK);
        assert_eq!(root.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(root.header("content-type"), Some("application/json"));
        let etag = root.header("etag").unwrap().to_owned();
        let timestamp = app.get("/tuf/timestamp.json", None).await;
        assert_eq!(timestamp.status, StatusCode::OK);
        assert_eq!(timestamp.header("cache-control"), Some("public, max-age=30"));
        for name in ["1.snapshot.json", "1.targets.json", "1.bin-000.json", "1.bin-fff.json"] {
            let file = app.get(&format!("/tuf/{name}"), None).await;
            assert_eq!(file.status, StatusCode::OK, "{name}");
            assert_eq!(file.header("cache-control"), Some("public, max-age=31536000, immutable"), "{name}");
        }
        // Revalidation by ETag.
        let request = axum::http::Request::get("/tuf/1.root.json")
            .header("if-none-match", &etag)
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.send(request).await.status, StatusCode::NOT_MODIFIED);
        // Timestamps are only served as timestamp.json; nothing else is reachable.
        for name in ["1.timestamp.json", "2.root.json", "..%2Fplugstore.db", "x.json", "root.json"] {
            let response = app.get(&format!("/tuf/{name}"), None).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{name}");
            assert_eq!(response.problem_type(), "/problems/not-found", "{name}");
        }

        // A client pinned to the first root verifies the whole chain.
        let mut state = TrustedState::new(&first_root(&app).await).unwrap();
        state.refresh(&mut served_metadata(&app).await, UnixTime::now()).unwrap();
        assert!(state.targets_for_plugin(&mut served_metadata(&app).await, &hello(), UnixTime::now()).unwrap().is_empty());
    }

    async fn a_new_bins_key_re_signs_every_bin_with_its_plugins(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        publish(&app, &owner, &signer, "1.0.0", &payload(1, "one")).await;
        publish(&app, &owner, &signer, "1.1.0", &payload(1, "two")).await;
        app.sign_and_follow().await;
        let root = first_root(&app).await;
        let mut before = served_metadata(&app).await;

        // `plugstore-server keys rotate --role bins`, then a restart.
        let keys = KeysDir::open(&app.app.release_keys.dir).unwrap();
        keys.generate_next_key(OnlineRole::Bins).unwrap();
        let app = app.restarted().await;
        plugstore_server::release_metadata::ensure_repository(&app.app).await.unwrap();
        assert!(!keys.next_key_path(OnlineRole::Bins).exists(), "the new key became the bins key");

        // A client that followed the old bins key follows the new one, and still finds both
        // versions in their bin.
        let now = UnixTime::now();
        let mut state = TrustedState::new(&root).unwrap();
        state.refresh(&mut before, now).unwrap();
        let mut fetch = served_metadata(&app).await;
        state.refresh(&mut fetch, now).unwrap();
        let targets = state.targets_for_plugin(&mut fetch, &hello(), now).unwrap();
        let mut versions: Vec<String> = targets.iter().map(|t| t.info().version.to_string()).collect();
        versions.sort();
        assert_eq!(versions, ["1.0.0", "1.1.0"]);
    }

    async fn releases_are_signed_with_the_developer_signature_and_revocations(app) {
        plugstore_server::release_metadata::ensure_repository(&app.app).await.unwrap();
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "release one")).await;
        let v2 = publish(&app, &owner, &signer, "1.1.0", &payload(1, "release two")).await;
        let settings = app.app.settings.deltas.clone();
        plugstore_server::deltas::run_once(&app.app, &settings).await.unwrap();
        app.sign_and_follow().await;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tuf_pending").fetch_one(&app.app.db.pool).await.unwrap();
        assert_eq!(pending, 0, "a round deletes exactly what it signed");

        let root = first_root(&app).await;
        let now = UnixTime::now();
        let mut state = TrustedState::new(&root).unwrap();
        let mut fetch = served_metadata(&app).await;
        state.refresh(&mut fetch, now).unwrap();
        let targets = state.targets_for_plugin(&mut fetch, &hello(), now).unwrap();
        // Two packages and the patch 1.0.0 → 1.1.0.
        assert_eq!(targets.len(), 3, "{:?}", targets.iter().map(|t| t.path().to_string()).collect::<Vec<_>>());
        let v2_digest = PackageDigest::of(&v2);
        let package = state.target_info(&mut fetch, &hello(), &Version::new(1, 1, 0), now).unwrap();
        assert_eq!(package.length(), v2.len() as u64);
        assert_eq!(package.sha256().as_bytes(), v2_digest.as_bytes());
        assert_eq!(package.state(), Some(VersionState::Published));
        package.check(&v2).unwrap();
        let patch_path = TargetPath::patch(hello(), Version::new(1, 1, 0), PackageDigest::of(&v1));
        let patch = state.target(&mut fetch, &patch_path, now).unwrap();
        let patch_info = patch.info().patch().unwrap();
        assert_eq!(patch_info.to, v2_digest);
        assert_eq!(patch_info.format, "bsdiff4z");
        let patch_bytes = app.get(&format!("/blobs/sha256/{}", patch.sha256().to_hex()), None).await;
        patch.check(&patch_bytes.body).unwrap();

        // The developer signature and its chain verify as a host checks them: at the time
        // the store accepted the upload, against the store's CA.
        let developer = &package.info().package().unwrap().developer;
        let chain_blob = app.get(&format!("/blobs/sha256/{}", developer.chain.sha256.to_hex()), None).await;
        assert_eq!(chain_blob.status, StatusCode::OK);
        assert_eq!(chain_blob.body.len() as u64, developer.chain.length);
        let chain_pem = String::from_utf8(chain_blob.body.to_vec()).unwrap();
        assert!(chain_pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{chain_pem}");
        let chain: Vec<Vec<u8>> = pem::parse_many(&chain_pem).unwrap().into_iter().map(|p| p.into_contents()).collect();
        assert_eq!(chain, signer.chain);
        let envelope = SignatureEnvelope {
            format: ENVELOPE_FORMAT,
            algorithm: developer.algorithm,
            signature: developer.signature.clone(),
            certificate_chain: chain,
        };
        let ca = app.get("/ca.pem", None).await;
        let mut anchors = TrustAnchors::new();
        anchors.add_pem(&ca.body).unwrap();
        let published_at = package.info().package().unwrap().published_at;
        // The payload names the plugin, so this also checks the chain binds it to `acme`.
        verify_package_signature(
            &envelope,
            &SigningPayload::new("acme/hello", "1.1.0", v2_digest).unwrap(),
            &anchors,
            &SignerPolicy::default(),
            CertTime::since_unix_epoch(std::time::Duration::from_secs(published_at.as_seconds() as u64)),
            &NoRevocations,
        )
        .unwrap();

        // A block reaches the signed metadata as a new bin version; the client sees it.
        let rita = app.signup("rita").await;
        app.set_role(&rita, "reviewer").await;
        let rita = app.login("rita").await;
        let block = app.post("/api/v1/review/versions/acme/hello/1.0.0/block", Some(&rita.access), json!({"reason": "phones home"})).await;
        assert_eq!(block.status, StatusCode::OK);
        app.sign_and_follow().await;
        let mut fetch = served_metadata(&app).await;
        state.refresh(&mut fetch, now).unwrap();
        let v1_target = state.target_info(&mut fetch, &hello(), &Version::new(1, 0, 0), now).unwrap();
        assert_eq!(v1_target.state(), Some(VersionState::Blocked));
        assert_eq!(state.target_info(&mut fetch, &hello(), &Version::new(1, 1, 0), now).unwrap().state(), Some(VersionState::Published));

        // Revoking the signing certificate blocks every version it signed.
        let revoke = app
            .post(&format!("/api/v1/publishers/acme/certificates/{}/revoke", signer.fingerprint), Some(&owner.access), json!({"reason": "key leaked"}))
            .await;
        assert_eq!(revoke.status, StatusCode::OK);
        app.sign_and_follow().await;
        let mut fetch = served_metadata(&app).await;
        state.refresh(&mut fetch, now).unwrap();
        assert_eq!(state.target_info(&mut fetch, &hello(), &Version::new(1, 1, 0), now).unwrap().state(), Some(VersionState::Blocked));
        // The patch to a version hosts must not install is no longer listed.
        assert!(state.target(&mut fetch, &patch_path, now).is_err());

        // Superseded files older than the retention go; what the current metadata names, and
        // every root, stays, and a newly pinned client still verifies everything.
        let before = count(&app, "SELECT COUNT(*) FROM tuf_files").await;
        let in_future = plugstore_server::db::now() + 10;
        assert_eq!(plugstore_server::release_metadata::prune_metadata(&app.app, 0).await.unwrap(), 0, "nothing is old enough yet");
        let pruned = plugstore_server::release_metadata::prune_metadata(&app.app, in_future).await.unwrap();
        assert!(pruned > 0, "rounds superseded bins, snapshots and timestamps");
        assert_eq!(count(&app, "SELECT COUNT(*) FROM tuf_files").await, before - pruned as i64);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM tuf_files WHERE role = 'root'").await, 1);
        // Every bin, and targets, snapshot and timestamp: exactly the current files remain.
        assert_eq!(count(&app, "SELECT COUNT(*) FROM tuf_files WHERE role <> 'root'").await, 4096 + 3);
        let mut fresh = TrustedState::new(&root).unwrap();
        let mut fetch = served_metadata(&app).await;
        fresh.refresh(&mut fetch, now).unwrap();
        assert_eq!(fresh.target_info(&mut fetch, &hello(), &Version::new(1, 0, 0), now).unwrap().state(), Some(VersionState::Blocked));
        // The client that followed along all the time keeps going too.
        state.refresh(&mut fetch, now).unwrap();
    }
}
