//! The delta job: patches from the last published versions to each new one, stored by digest,
//! applied by the format crate to exactly the new package; not-worth-it pairs are recorded as
//! skipped; a second run changes nothing.

use axum::http::StatusCode;
use plugstore_format::delta::apply_patch;

use crate::both_stacks;
use crate::harness::{TestApp, TestUser};
use crate::publish::{StoreSigner, package};

/// A module-like payload: shared "code" with a version-specific change in the middle, so that
/// consecutive versions differ a little, as real releases do.
pub fn payload(seed: u32, change: &str) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    let mut bytes: Vec<u8> = (0..256 * 1024)
        .map(|i| {
            // Deterministic, compressible, and not trivially repetitive.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 7 == 0 {
                (state & 0xff) as u8
            } else {
                b"abcdefgh"[i % 8]
            }
        })
        .collect();
    let middle = bytes.len() / 2;
    bytes.splice(middle..middle, change.bytes());
    bytes
}

/// (base version, target version, state, patch digest, patch size)
type DeltaRow = (String, String, String, Option<String>, Option<i64>);

pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

pub async fn publish(
    app: &TestApp,
    owner: &TestUser,
    signer: &StoreSigner,
    version: &str,
    payload: &[u8],
) -> Vec<u8> {
    let pkg = package("acme/hello", version, payload);
    let response = signer
        .upload(app, &owner.access, "acme/hello", version, &pkg)
        .await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    pkg
}

both_stacks! {
    async fn patches_from_recent_versions_rebuild_the_new_package(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        let v1 = publish(&app, &owner, &signer, "1.0.0", &payload(1, "release one")).await;
        let v2 = publish(&app, &owner, &signer, "1.1.0", &payload(1, "release two, a little longer")).await;
        // Unrelated, incompressible bytes: a patch would be as large as the package.
        let v3 = publish(&app, &owner, &signer, "2.0.0", &noise(256 * 1024)).await;

        let settings = app.app.settings.deltas.clone();
        let recorded = plugstore_server::deltas::run_once(&app.app, &settings).await.unwrap();
        // 1.1.0 from 1.0.0; 2.0.0 from 1.1.0 and 1.0.0.
        assert_eq!(recorded, 3);
        let rows: Vec<DeltaRow> = sqlx::query_as(
            "SELECT b.version, t.version, d.state, d.patch_digest, d.patch_size FROM deltas d \
             JOIN plugin_versions b ON b.id = d.base_version_id \
             JOIN plugin_versions t ON t.id = d.target_version_id ORDER BY d.id",
        )
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let (base, target, state, digest, size) = &rows[0];
        assert_eq!((base.as_str(), target.as_str(), state.as_str()), ("1.0.0", "1.1.0", "ready"));
        let size = size.unwrap() as usize;
        assert!(size * 10 < v2.len(), "a patch of {size} bytes for a {}-byte package", v2.len());
        for (base, target, state, ..) in &rows[1..] {
            assert_eq!((target.as_str(), state.as_str()), ("2.0.0", "skipped"), "from {base}");
        }

        // The patch is served by digest like any blob, and rebuilds 1.1.0 exactly.
        let hex = digest.clone().unwrap();
        let served = app.get(&format!("/blobs/sha256/{hex}"), None).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(served.body.len(), size);
        let mut rebuilt = Vec::new();
        apply_patch(&v1, &served.body, v2.len() as u64, &mut rebuilt).unwrap();
        assert!(rebuilt == v2, "the patched package differs from 1.1.0");
        // Applied for another target length, it is refused.
        assert!(apply_patch(&v1, &served.body, v3.len() as u64, std::io::sink()).is_err());

        // Idempotent: nothing left to do.
        assert_eq!(plugstore_server::deltas::run_once(&app.app, &settings).await.unwrap(), 0);

        // A patch to a blocked version is not served, like its package.
        sqlx::query("UPDATE plugin_versions SET state = 'blocked' WHERE version = '1.1.0'")
            .execute(&app.app.db.pool)
            .await
            .unwrap();
        let refused = app.get(&format!("/blobs/sha256/{hex}"), None).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND);
        assert_eq!(refused.json()["code"], "blocked", "{:?}", refused.json());
    }
}
