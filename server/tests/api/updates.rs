//! The update check: the newest eligible version with its patch, channels, host ranges,
//! staged rollouts, revocations, and the change feed that keeps the catalogue current.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use plugstore_format::digest::PackageDigest;
use plugstore_server::controllers::updates::UpdateCheckResponse;

use crate::both_stacks;
use crate::deltas::{noise, payload, publish};
use crate::harness::{TestApp, TestUser};
use crate::publish::{StoreSigner, package, upload, upload_body};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn request(installed: &[(&str, &str, &[u8])], channel: &str, install_id: &str) -> Value {
    json!({
        "host": {"app_id": "org.example.editor", "version": "2.3.0", "platform": "linux-x86_64"},
        "channel": channel,
        "install_id": install_id,
        "installed": installed
            .iter()
            .map(|(id, version, package)| json!({"id": id, "version": version, "sha256": sha256_hex(package)}))
            .collect::<Vec<_>>(),
    })
}

async fn check(app: &TestApp, body: Value) -> Value {
    // Hosts call anonymously.
    let response = app.post("/api/v1/updates/check", None, body).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    // The rendered answer has exactly the documented shape.
    let typed: UpdateCheckResponse = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)));
    let value = response.json();
    assert_eq!(serde_json::to_value(&typed).unwrap(), value);
    value
}

/// Applies the change feed, as the replica's follower task does every half second, without
/// signing anything.
async fn follow_changes(app: &TestApp) {
    app.app
        .catalogue
        .apply_changes(&app.app.db)
        .await
        .expect("change feed");
}

/// The snapshot version that `/tuf/timestamp.json` names now.
async fn served_snapshot_version(app: &TestApp) -> u64 {
    let response = app.get("/tuf/timestamp.json", None).await;
    assert_eq!(response.status, StatusCode::OK);
    response.json()["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .expect("the timestamp names a snapshot version")
}

async fn reviewer(app: &TestApp) -> TestUser {
    let user = app.signup("rita").await;
    app.set_role(&user, "reviewer").await;
    app.login("rita").await
}

async fn moderate(app: &TestApp, user: &TestUser, path: &str) {
    let response = app
        .post(path, Some(&user.access), json!({"reason": "phones home"}))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// Sets 1.1.0's rollout as its owner, and lets the catalogue see it. Nothing is signed:
/// rollouts are not in the signed metadata, and reach hosts without waiting for a round.
async fn rollout(app: &TestApp, owner: &TestUser, percent: u8, paused: bool) {
    let response = app
        .call(
            Method::PUT,
            "/api/v1/plugins/acme/hello/versions/1.1.0/rollout",
            Some(&owner.access),
            Some(json!({"percent": percent, "paused": paused})),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    follow_changes(app).await;
}

/// Which of 100 installs on 1.0.0 (`install-0000` to `install-0099`) are offered the update.
async fn offered_installs(app: &TestApp, v1: &[u8]) -> Vec<bool> {
    let mut offered = Vec::with_capacity(100);
    for i in 0..100 {
        let body = request(
            &[("acme/hello", "1.0.0", v1)],
            "stable",
            &format!("install-{i:04}"),
        );
        offered.push(check(app, body).await["updates"].as_array().unwrap().len() == 1);
    }
    offered
}

/// How many of those 100 installs are offered the update.
async fn offered(app: &TestApp, v1: &[u8]) -> usize {
    offered_installs(app, v1)
        .await
        .into_iter()
        .filter(|got| *got)
        .count()
}

both_stacks! {
    async fn offers_the_newest_eligible_version_with_a_patch(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "release one")).await;
        let v11 = publish(&app, &owner, &signer, "1.1.0", &payload(1, "release two")).await;
        let beta = publish(&app, &owner, &signer, "2.0.0-beta.1", &noise(64 * 1024)).await;
        let settings = app.app.settings.deltas.clone();
        plugstore_server::deltas::run_once(&app.app, &settings).await.unwrap();
        app.sign_and_follow().await;

        // Stable: 1.1.0, with the patch from exactly the installed package.
        let answer = check(&app, request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;
        let updates = answer["updates"].as_array().unwrap();
        assert_eq!(updates.len(), 1, "{answer}");
        let update = &updates[0];
        assert_eq!(update["version"], "1.1.0");
        assert_eq!(update["installed_version"], "1.0.0");
        assert_eq!(update["package"]["sha256"], sha256_hex(&v11));
        assert_eq!(update["package"]["length"], v11.len());
        assert_eq!(
            update["package"]["url"],
            format!("http://store.test/blobs/sha256/{}", sha256_hex(&v11))
        );
        let target = update["package"]["target"].as_str().unwrap();
        assert!(target.starts_with("plugins/") && target.ends_with("/acme/hello/1.1.0/package.tar"), "{target}");
        let patch = &update["patch"];
        assert_eq!(patch["from_sha256"], sha256_hex(&v1));
        assert!(patch["length"].as_u64().unwrap() < v11.len() as u64 / 2, "{patch}");
        assert!(patch["target"].as_str().unwrap().ends_with(&format!("/1.1.0/patches/from-{}.patch", sha256_hex(&v1))));
        assert_eq!(answer["metadata_url"], "http://store.test/tuf/");
        assert_eq!(answer["revocations"], json!([]));

        // A host with different bytes under the same version gets the package but no patch.
        let other = check(&app, request(&[("acme/hello", "1.0.0", b"something else")], "stable", "install-0001")).await;
        assert_eq!(other["updates"][0]["version"], "1.1.0");
        assert_eq!(other["updates"][0]["patch"], Value::Null);

        // A plugin the store does not have is skipped, whether it is asked for the first time
        // (looked up) or again (remembered), beside one the catalogue has cached.
        for _ in 0..2 {
            let mixed = check(&app, request(&[("acme/nothing", "1.0.0", &v1), ("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;
            let updates = mixed["updates"].as_array().unwrap();
            assert_eq!(updates.len(), 1, "{mixed}");
            assert_eq!(updates[0]["id"], "acme/hello");
            assert_eq!(updates[0]["version"], "1.1.0");
        }

        // Beta also offers the pre-release; a host already on the newest gets nothing.
        let answer = check(&app, request(&[("acme/hello", "1.1.0", &v11)], "beta", "install-0001")).await;
        assert_eq!(answer["updates"][0]["version"], "2.0.0-beta.1");
        assert_eq!(answer["updates"][0]["package"]["sha256"], sha256_hex(&beta));
        let answer = check(&app, request(&[("acme/hello", "1.1.0", &v11)], "stable", "install-0001")).await;
        assert_eq!(answer["updates"], json!([]));

        // Yanking 1.1.0 reaches the cached catalogue through the change feed.
        let yank = app.post("/api/v1/plugins/acme/hello/versions/1.1.0/yank", Some(&owner.access), json!({"reason": "broken"})).await;
        assert_eq!(yank.status, StatusCode::OK);
        app.sign_and_follow().await;
        let answer = check(&app, request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;
        assert_eq!(answer["updates"], json!([]), "a yanked version is never offered");
        // Unknown plugins are simply not answered.
        let answer = check(&app, request(&[("acme/nothing", "1.0.0", &v1)], "stable", "install-0001")).await;
        assert_eq!(answer["updates"], json!([]));
    }

    async fn offers_wait_for_the_signed_metadata_and_name_its_snapshot(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "one")).await;
        publish(&app, &owner, &signer, "1.1.0", &payload(1, "two")).await;
        let ask = || request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001");
        // Published but not signed yet: no host could confirm an offer, so none is made.
        assert_eq!(check(&app, ask()).await["updates"], json!([]));

        app.sign_and_follow().await;
        let answer = check(&app, ask()).await;
        assert_eq!(answer["updates"][0]["version"], "1.1.0", "{answer}");
        let signed_in = answer["updates"][0]["signed_in_snapshot"].as_u64().unwrap();
        assert_eq!(signed_in, served_snapshot_version(&app).await, "the snapshot the timestamp names");

        // A newer version: while it waits for its round, nothing of the plugin is offered
        // (what was signed before is no longer what the store would offer)...
        publish(&app, &owner, &signer, "1.2.0", &payload(1, "three")).await;
        follow_changes(&app).await;
        assert_eq!(check(&app, ask()).await["updates"], json!([]));
        // ...and once signed, it is, under the newer snapshot.
        app.sign_and_follow().await;
        let answer = check(&app, ask()).await;
        assert_eq!(answer["updates"][0]["version"], "1.2.0", "{answer}");
        let newer = answer["updates"][0]["signed_in_snapshot"].as_u64().unwrap();
        assert!(newer > signed_in, "{newer} after {signed_in}");
        assert_eq!(newer, served_snapshot_version(&app).await);
    }

    async fn a_check_loads_every_plugin_not_cached_at_once(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        app.publisher(&owner, "zeta").await;
        let acme = StoreSigner::new(&app, &owner, "acme").await;
        let zeta = StoreSigner::new(&app, &owner, "zeta").await;
        // Three plugins of two publishers, each with its own bytes, so that an answer mixing
        // up their releases shows.
        let mut installed = Vec::new();
        let mut newest = Vec::new();
        for (signer, id) in [(&acme, "acme/hello"), (&acme, "acme/other"), (&zeta, "zeta/hello")] {
            let old = package(id, "1.0.0", &payload(1, id));
            let new = package(id, "1.1.0", &payload(2, id));
            for (version, pkg) in [("1.0.0", &old), ("1.1.0", &new)] {
                let uploaded = signer.upload(&app, &owner.access, id, version, pkg).await;
                assert_eq!(uploaded.status, StatusCode::CREATED);
            }
            installed.push((id, old));
            newest.push((id, sha256_hex(&new)));
        }
        app.sign_and_follow().await;
        // Beside them, names with no plugin: an unknown name, and a plugin's name under the
        // other publisher (found only if publisher and name were matched separately).
        let mut listed: Vec<(&str, &str, &[u8])> =
            installed.iter().map(|(id, old)| (*id, "1.0.0", old.as_slice())).collect();
        listed.insert(1, ("acme/nothing", "1.0.0", b"x"));
        listed.push(("zeta/other", "1.0.0", b"y"));
        // The first check finds none of them cached; the second finds them all.
        for _ in 0..2 {
            let answer = check(&app, request(&listed, "stable", "install-0001")).await;
            let offered: Vec<(String, String)> = answer["updates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|update| {
                    assert_eq!(update["version"], "1.1.0", "{update}");
                    (
                        update["id"].as_str().unwrap().to_owned(),
                        update["package"]["sha256"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let expected: Vec<(String, String)> = newest
                .iter()
                .map(|(id, digest)| ((*id).to_owned(), digest.clone()))
                .collect();
            assert_eq!(offered, expected, "{answer}");
        }
    }

    async fn host_range_and_platform_decide_eligibility(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "one")).await;
        publish(&app, &owner, &signer, "1.1.0", &payload(1, "two")).await;
        app.sign_and_follow().await;
        // The test manifests ask for host >=1.0.0 and run everywhere (`any`).
        let mut old_host = request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001");
        old_host["host"]["version"] = json!("0.9.0");
        assert_eq!(check(&app, old_host).await["updates"], json!([]));
        let mut windows = request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001");
        windows["host"]["platform"] = json!("windows-aarch64");
        assert_eq!(check(&app, windows).await["updates"][0]["version"], "1.1.0");
    }

    async fn staged_rollouts_reach_a_share_of_installs_and_pause(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "one")).await;
        publish(&app, &owner, &signer, "1.1.0", &payload(1, "two")).await;
        app.sign_and_follow().await;
        assert_eq!(offered(&app, &v1).await, 100);
        assert_eq!(app.get("/api/v1/plugins/acme/hello/versions/1.1.0", None).await.json()["rollout"], json!({"percent": 100, "paused": false}));
        rollout(&app, &owner, 30, false).await;
        assert_eq!(app.get("/api/v1/plugins/acme/hello/versions/1.1.0", None).await.json()["rollout"], json!({"percent": 30, "paused": false}));
        let share = offered(&app, &v1).await;
        assert!((15..=45).contains(&share), "30% rollout reached {share} of 100 installs");
        // Raising the percentage keeps everyone who already had it.
        let before = offered_installs(&app, &v1).await;
        rollout(&app, &owner, 60, false).await;
        let after = offered_installs(&app, &v1).await;
        for (i, (had, has)) in before.iter().zip(&after).enumerate() {
            assert!(!had || *has, "install {i} lost the update when the rollout grew");
        }
        rollout(&app, &owner, 60, true).await;
        assert_eq!(app.get("/api/v1/plugins/acme/hello/versions/1.1.0", None).await.json()["rollout"], json!({"percent": 60, "paused": true}));
        assert_eq!(offered(&app, &v1).await, 0, "a paused rollout is offered to nobody");
        rollout(&app, &owner, 0, false).await;
        assert_eq!(offered(&app, &v1).await, 0);
        rollout(&app, &owner, 100, false).await;
        assert_eq!(offered(&app, &v1).await, 100);

        // Out of range, and not the owner's to change.
        let bad = app
            .call(Method::PUT, "/api/v1/plugins/acme/hello/versions/1.1.0/rollout", Some(&owner.access), Some(json!({"percent": 101, "paused": false})))
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        let stranger = app.signup("stranger").await;
        let denied = app
            .call(Method::PUT, "/api/v1/plugins/acme/hello/versions/1.1.0/rollout", Some(&stranger.access), Some(json!({"percent": 10, "paused": false})))
            .await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
    }

    async fn revocations_of_the_installed_set_are_reported(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "one")).await;
        let v2 = publish(&app, &owner, &signer, "2.0.0", &payload(1, "two")).await;
        app.sign_and_follow().await;
        let rita = reviewer(&app).await;
        // Warm the cache, so the block must arrive through the change feed.
        check(&app, request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;

        moderate(&app, &rita, "/api/v1/review/versions/acme/hello/1.0.0/block").await;
        app.sign_and_follow().await;
        let answer = check(&app, request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;
        assert_eq!(answer["revocations"], json!([{
            "id": "acme/hello", "version": "1.0.0", "sha256": sha256_hex(&v1),
            "reason": "version-blocked", "detail": "phones home"
        }]));
        // The update away from a blocked version is still offered.
        assert_eq!(answer["updates"][0]["version"], "2.0.0");

        // Revoking the signing certificate revokes every version it signed.
        let revoke = app
            .post(&format!("/api/v1/publishers/acme/certificates/{}/revoke", signer.fingerprint), Some(&owner.access), json!({"reason": "key leaked"}))
            .await;
        assert_eq!(revoke.status, StatusCode::OK, "{}", String::from_utf8_lossy(&revoke.body));
        app.sign_and_follow().await;
        let answer = check(&app, request(&[("acme/hello", "2.0.0", &v2)], "stable", "install-0001")).await;
        assert_eq!(answer["revocations"][0]["reason"], "certificate-revoked", "{answer}");
        assert_eq!(answer["revocations"][0]["detail"], "key leaked");

        // A plugin block covers every version, and nothing is offered.
        moderate(&app, &rita, "/api/v1/review/plugins/acme/hello/block").await;
        app.sign_and_follow().await;
        let answer = check(&app, request(&[("acme/hello", "1.0.0", &v1)], "beta", "install-0001")).await;
        assert_eq!(answer["revocations"][0]["reason"], "plugin-blocked", "{answer}");
        assert_eq!(answer["updates"], json!([]));
    }

    async fn a_revoked_certificate_is_revoked_in_every_encoding(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        // Whoever holds a certificate can re-encode its issuer's ECDSA signature: another
        // fingerprint, equally valid, as the store taking an upload signed with it shows.
        let twin = signer.reencoded();
        assert_ne!(twin.fingerprint, signer.fingerprint);
        let v1 = publish(&app, &owner, &twin, "1.0.0", &payload(1, "one")).await;
        app.sign_and_follow().await;

        // Revoking the certificate as issued revokes what the twin signed ...
        let revoke = app
            .post(&format!("/api/v1/publishers/acme/certificates/{}/revoke", signer.fingerprint), Some(&owner.access), json!({"reason": "key leaked"}))
            .await;
        assert_eq!(revoke.status, StatusCode::OK, "{}", String::from_utf8_lossy(&revoke.body));
        app.sign_and_follow().await;
        let answer = check(&app, request(&[("acme/hello", "1.0.0", &v1)], "stable", "install-0001")).await;
        assert_eq!(answer["revocations"][0]["reason"], "certificate-revoked", "{answer}");
        let download = app.get(&format!("/blobs/sha256/{}", sha256_hex(&v1)), None).await;
        assert_eq!(download.status, StatusCode::NOT_FOUND, "the metadata and /blobs agree");
        assert_eq!(download.json()["code"], "blocked");
        let listed = app.get("/api/v1/publishers/acme/certificates", None).await.json();
        assert!(listed["items"].as_array().unwrap().iter().all(|certificate| certificate["revoked_at"].is_string()), "{listed}");

        // ... and neither encoding signs anything new, including the twin of a certificate
        // whose twin the store has never seen.
        let unseen = StoreSigner::new(&app, &owner, "acme").await;
        let revoke = app
            .post(&format!("/api/v1/publishers/acme/certificates/{}/revoke", unseen.fingerprint), Some(&owner.access), json!({"reason": "key leaked"}))
            .await;
        assert_eq!(revoke.status, StatusCode::OK);
        let pkg = package("acme/hello", "1.1.0", &payload(1, "two"));
        let digest = PackageDigest::of(&pkg);
        for (signer, who) in [(&signer, "as issued"), (&twin, "twin"), (&unseen.reencoded(), "twin first seen after the revocation")] {
            let envelope = signer.envelope("acme/hello", "1.1.0", digest);
            let refused = upload(&app, &owner.access, "acme/hello", "1.1.0", upload_body(&envelope, &pkg)).await;
            assert_eq!(refused.problem_type(), "/problems/untrusted-certificate", "{who}");
            assert_eq!(refused.json()["code"], "revoked", "{who}");
        }
        assert_eq!(app.get("/api/v1/plugins/acme/hello/versions/1.1.0", None).await.status, StatusCode::NOT_FOUND);
    }

    async fn a_revocation_and_an_upload_of_another_encoding_take_turns(app) {
        use plugstore_server::blob_gc;
        use plugstore_server::controllers::certificates::{SignerRecord, record_signer, revoke_every_encoding};
        use plugstore_server::error::ProblemKind;

        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let db = app.app.db.clone();
        // The last steps of an upload's final transaction, for the twin of `signer`: its turn
        // on the blob fence (every upload's first write), then recording its signer.
        let record_twin = |signer: &StoreSigner| {
            let twin = signer.reencoded().fingerprint;
            let (db, blobs, original) = (db.clone(), app.app.blobs.clone(), signer.fingerprint.clone());
            async move {
                let (publisher_id, serial, subject, issuer, not_before, not_after): (i64, String, String, String, i64, i64) =
                    sqlx::query_as("SELECT publisher_id, serial, subject, issuer, not_before, not_after FROM certificates WHERE fingerprint = $1")
                        .bind(&original)
                        .fetch_one(&db.pool)
                        .await
                        .unwrap();
                let mut tx = db.pool.begin().await.unwrap();
                blob_gc::confirm_stored(&mut tx, db.engine, blobs.as_ref(), []).await.unwrap();
                let record = SignerRecord { fingerprint: &twin, serial_hex: &serial, subject: &subject, issuer: &issuer, not_before, not_after };
                let recorded = record_signer(&mut tx, db.engine, publisher_id, record, 0).await;
                (tx, recorded)
            }
        };
        let revoke = |fingerprint: &str| {
            let (db, fingerprint, owner_id) = (db.clone(), fingerprint.to_owned(), owner.id);
            async move {
                let publisher_id: i64 = sqlx::query_scalar("SELECT id FROM publishers WHERE name = 'acme'").fetch_one(&db.pool).await.unwrap();
                let mut tx = db.pool.begin().await.unwrap();
                let revoked = revoke_every_encoding(&mut tx, db.engine, publisher_id, &fingerprint, owner_id, "key leaked").await.unwrap();
                (tx, revoked)
            }
        };
        let is_revoked = |fingerprint: String| {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, Option<i64>>("SELECT revoked_at FROM certificates WHERE fingerprint = $1")
                    .bind(fingerprint)
                    .fetch_optional(&db.pool)
                    .await
                    .unwrap()
                    .map(|revoked_at| revoked_at.is_some())
            }
        };

        // The upload records a new encoding first: the revocation waits for it to commit,
        // then revokes it with the certificate as issued.
        let first = StoreSigner::new(&app, &owner, "acme").await;
        let (upload, recorded) = record_twin(&first).await;
        recorded.unwrap();
        let revocation = tokio::spawn({
            let revoke = revoke(&first.fingerprint);
            async move {
                let (tx, revoked) = revoke.await;
                tx.commit().await.unwrap();
                revoked
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!revocation.is_finished(), "the revocation must wait for the upload's transaction");
        upload.commit().await.unwrap();
        assert_eq!(revocation.await.unwrap(), 2, "both encodings are revoked");
        assert_eq!(is_revoked(first.reencoded().fingerprint).await, Some(true));

        // The revocation goes first: the upload waits for it, then is refused, recording nothing.
        let second = StoreSigner::new(&app, &owner, "acme").await;
        let (revocation, revoked) = revoke(&second.fingerprint).await;
        assert_eq!(revoked, 1);
        let upload = tokio::spawn(record_twin(&second));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!upload.is_finished(), "the upload must wait for the revocation's transaction");
        revocation.commit().await.unwrap();
        let (upload, recorded) = upload.await.unwrap();
        let refused = recorded.unwrap_err();
        assert_eq!(refused.kind(), ProblemKind::UntrustedCertificate, "{refused:?}");
        assert!(refused.detail().unwrap().contains("was revoked while this upload was being recorded"), "{refused:?}");
        drop(upload);
        assert_eq!(is_revoked(second.reencoded().fingerprint).await, None, "no row for the refused encoding");
    }

    async fn bad_update_checks_say_what_to_fix(app) {
        let cases = [
            (json!({"host": {"app_id": "x", "version": "two", "platform": "linux-x86_64"}, "install_id": "install-0001", "installed": []}), "host.version"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "amiga"}, "install_id": "install-0001", "installed": []}), "host.platform"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "channel": "nightly", "install_id": "install-0001", "installed": []}), "channel"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "short", "installed": []}), "install_id"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/alpha", "version": "1.0.0", "sha256": "00"}]}), "installed[0].sha256"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme", "version": "1.0.0", "sha256": "00"}]}), "installed[0].id"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/Alpha", "version": "1.0.0", "sha256": "a".repeat(64)}]}), "installed[0].id"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/alpha", "version": "1.0", "sha256": "a".repeat(64)}]}), "installed[0].version"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/alpha", "version": "01.0.0", "sha256": "a".repeat(64)}]}), "installed[0].version"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/alpha", "version": "1.0.0"}]}), "missing field `sha256`"),
            (json!(["not", "an", "update", "check"]), "not an update check"),
            (json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001",
                    "installed": [{"id": "acme/alpha", "version": "1.0.0", "sha256": "a".repeat(64)}, {"id": "acme/alpha", "version": "1.0.0", "sha256": "a".repeat(64)}]}), "listed twice"),
        ];
        for (body, mention) in cases {
            let response = app.post("/api/v1/updates/check", None, body.clone()).await;
            assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(response.problem_type(), "/problems/invalid-input");
            let detail = response.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains(mention), "`{detail}` should mention `{mention}`");
        }
        let too_many: Vec<Value> = (0..1001)
            .map(|i| json!({"id": format!("acme/p{i}"), "version": "1.0.0", "sha256": "a".repeat(64)}))
            .collect();
        let response = app
            .post("/api/v1/updates/check", None, json!({"host": {"app_id": "x", "version": "2.0.0", "platform": "any"}, "install_id": "install-0001", "installed": too_many}))
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
