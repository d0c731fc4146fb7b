//! Collecting unreferenced blobs: what nothing names goes, everything a row or signed
//! metadata names stays, and a writer racing a collection never commits a reference to a
//! deleted blob.

use std::time::Duration;

use plugstore_server::blob_gc::{self, CollectionReport, ConfirmError, Turn};
use plugstore_server::blobs::BlobDigest;

use crate::both_stacks;
use crate::deltas::{payload, publish};
use crate::harness::{Stack, TestApp};
use crate::publish::StoreSigner;

/// A store with a blob prefix of its own: a collection deletes every unnamed blob it can
/// list, and the test bucket is shared with tests running at the same time.
async fn start(stack: Stack) -> Option<TestApp> {
    TestApp::start_with(stack, |settings| {
        settings.blobs.s3.prefix = format!("gc-{}/", uuid::Uuid::new_v4());
    })
    .await
}

async fn store_orphan(app: &TestApp, text: &str) -> BlobDigest {
    app.app
        .blobs
        .put(&mut text.as_bytes(), None, None)
        .await
        .expect("an orphan blob")
        .digest
}

async fn collect(app: &TestApp, min_age: Duration, dry_run: bool) -> CollectionReport {
    blob_gc::collect_unreferenced(&app.app.db, app.app.blobs.as_ref(), min_age, dry_run)
        .await
        .expect("a collection")
}

async fn is_stored(app: &TestApp, digest: &BlobDigest) -> bool {
    app.app.blobs.size_of(digest).await.unwrap().is_some()
}

/// Every blob the database names: packages, patches and recorded chains.
async fn named_blobs(app: &TestApp) -> Vec<BlobDigest> {
    let hex: Vec<String> = sqlx::query_scalar(
        "SELECT package_digest FROM plugin_versions \
         UNION SELECT patch_digest FROM deltas WHERE patch_digest IS NOT NULL \
         UNION SELECT digest FROM chain_blobs",
    )
    .fetch_all(&app.app.db.pool)
    .await
    .unwrap();
    hex.iter().map(|hex| hex.parse().unwrap()).collect()
}

both_stacks! {
    start = start;

    async fn unnamed_blobs_go_and_named_ones_stay(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        publish(&app, &owner, &signer, "1.0.0", &payload(1, "release one")).await;
        publish(&app, &owner, &signer, "1.1.0", &payload(1, "release two")).await;
        let deltas = app.app.settings.deltas.clone();
        plugstore_server::deltas::run_once(&app.app, &deltas).await.unwrap();
        app.sign_and_follow().await;
        let named = named_blobs(&app).await;
        // Two packages, a patch and the certificate chain the signed metadata names.
        assert_eq!(named.len(), 4, "{named:?}");
        let orphan = store_orphan(&app, "left behind by an upload that failed").await;

        let dry = collect(&app, Duration::ZERO, true).await;
        assert_eq!((dry.examined, dry.referenced, dry.young, dry.collected), (5, 4, 0, 1), "{dry:?}");
        assert!(is_stored(&app, &orphan).await, "a dry run deletes nothing");

        let report = collect(&app, Duration::ZERO, false).await;
        assert_eq!(report.collected, 1, "{report:?}");
        assert_eq!(report.collected_bytes, "left behind by an upload that failed".len() as u64);
        assert!(!is_stored(&app, &orphan).await);
        for digest in &named {
            assert!(is_stored(&app, digest).await, "{digest} is named and must stay");
        }
        assert_eq!(collect(&app, Duration::ZERO, false).await.collected, 0);

        // Metadata signed before chains were recorded (a database from before migration 0008)
        // names them only through the versions' signatures; those chains stay too.
        let pool = &app.app.db.pool;
        sqlx::query("DELETE FROM chain_blobs").execute(pool).await.unwrap();
        sqlx::query("UPDATE blob_fence SET signature_chains_recorded = 0").execute(pool).await.unwrap();
        let chains = || async { sqlx::query_scalar::<_, String>("SELECT digest FROM chain_blobs").fetch_all(pool).await.unwrap() };
        let dry = collect(&app, Duration::ZERO, true).await;
        assert_eq!((dry.referenced, dry.collected), (4, 0), "{dry:?}");
        assert!(chains().await.is_empty(), "a dry run records nothing");
        let report = collect(&app, Duration::ZERO, false).await;
        assert_eq!((report.referenced, report.collected), (4, 0), "{report:?}");
        for digest in &named {
            assert!(is_stored(&app, digest).await, "{digest} is named and must stay");
        }
        // That collection recorded the chains it derived, so the next reads no signature: one
        // that would stop a walk over them does not stop it, and the chain still stays.
        assert_eq!(chains().await.len(), 1);
        sqlx::query("UPDATE plugin_versions SET signature = '{not an envelope'").execute(pool).await.unwrap();
        let report = collect(&app, Duration::ZERO, false).await;
        assert_eq!((report.referenced, report.collected), (4, 0), "{report:?}");
        for digest in &named {
            assert!(is_stored(&app, digest).await, "{digest} is named and must stay");
        }
    }

    async fn a_signature_that_does_not_parse_stops_the_first_collection(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let signer = StoreSigner::new(&app, &owner, "acme").await;
        publish(&app, &owner, &signer, "1.0.0", &payload(1, "release one")).await;
        app.sign_and_follow().await;
        let pool = &app.app.db.pool;
        sqlx::query("DELETE FROM chain_blobs").execute(pool).await.unwrap();
        sqlx::query("UPDATE plugin_versions SET signature = '{not an envelope'").execute(pool).await.unwrap();
        let orphan = store_orphan(&app, "left behind").await;
        let error = blob_gc::collect_unreferenced(&app.app.db, app.app.blobs.as_ref(), Duration::ZERO, false)
            .await
            .expect_err("a chain it cannot derive could be a blob's only name");
        assert!(format!("{error:#}").contains("does not parse"), "{error:#}");
        assert!(is_stored(&app, &orphan).await, "nothing is deleted");
        let recorded: i64 = sqlx::query_scalar("SELECT signature_chains_recorded FROM blob_fence").fetch_one(pool).await.unwrap();
        assert_eq!(recorded, 0, "the walk is still to be made");
    }

    async fn blobs_younger_than_the_minimum_age_stay(app) {
        let orphan = store_orphan(&app, "an upload still being recorded").await;
        let report = collect(&app, Duration::from_secs(3600), false).await;
        assert_eq!((report.examined, report.young, report.collected), (1, 1, 0), "{report:?}");
        assert!(is_stored(&app, &orphan).await);
    }

    async fn a_writer_waits_for_a_collection_and_then_finds_its_blob_gone(app) {
        let blob = store_orphan(&app, "about to be named").await;
        // A collection's turn on the fence, held while it deletes the blob.
        let mut collection = app.app.db.pool.begin().await.unwrap();
        blob_gc::take_turn(&mut collection, app.app.db.engine, Turn::Collection).await.unwrap();

        let writer_app = app.app.clone();
        let writer = tokio::spawn(async move {
            let mut tx = writer_app.db.pool.begin().await.unwrap();
            blob_gc::confirm_stored(&mut tx, writer_app.db.engine, writer_app.blobs.as_ref(), [&blob]).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!writer.is_finished(), "the writer must wait for the collection's turn");
        app.app.blobs.delete(&blob).await.unwrap();
        collection.commit().await.unwrap();

        match writer.await.unwrap() {
            Err(ConfirmError::Collected(digest)) => assert_eq!(digest, blob),
            other => panic!("the writer must find its blob gone, not {other:?}"),
        }

        // Had the writer gone first, its blob is still there to name.
        let kept = store_orphan(&app, "named first").await;
        let mut tx = app.app.db.pool.begin().await.unwrap();
        blob_gc::confirm_stored(&mut tx, app.app.db.engine, app.app.blobs.as_ref(), [&kept]).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn a_collection_waits_for_a_writer_and_then_keeps_what_it_named(app) {
        let blob = store_orphan(&app, "being named").await;
        let mut writer = app.app.db.pool.begin().await.unwrap();
        blob_gc::confirm_stored(&mut writer, app.app.db.engine, app.app.blobs.as_ref(), [&blob]).await.unwrap();

        let collector_app = app.app.clone();
        let collection = tokio::spawn(async move {
            blob_gc::collect_unreferenced(&collector_app.db, collector_app.blobs.as_ref(), Duration::ZERO, false).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!collection.is_finished(), "the collection must wait for the writer's turn");
        sqlx::query("INSERT INTO chain_blobs (digest) VALUES ($1)")
            .bind(blob.to_hex())
            .execute(&mut *writer)
            .await
            .unwrap();
        writer.commit().await.unwrap();

        let report = collection.await.unwrap().expect("a collection");
        assert_eq!((report.collected, report.referenced), (0, 1), "{report:?}");
        assert!(is_stored(&app, &blob).await, "a blob named while the collection waited stays");
    }
}

/// PostgreSQL runs writers side by side, so the fence must not queue them: every upload's
/// final transaction takes a turn and holds it while it asks storage about its blobs. (SQLite
/// runs one writing transaction at a time whatever the fence does.)
#[tokio::test]
async fn writers_share_the_fence_on_postgres() {
    let Some(app) = start(Stack::Scaled).await else {
        return;
    };
    let first_blob = store_orphan(&app, "first writer's").await;
    let second_blob = store_orphan(&app, "second writer's").await;
    let mut first = app.app.db.pool.begin().await.unwrap();
    blob_gc::confirm_stored(
        &mut first,
        app.app.db.engine,
        app.app.blobs.as_ref(),
        [&first_blob],
    )
    .await
    .unwrap();

    let mut second = app.app.db.pool.begin().await.unwrap();
    let confirmed = tokio::time::timeout(
        Duration::from_secs(5),
        blob_gc::confirm_stored(
            &mut second,
            app.app.db.engine,
            app.app.blobs.as_ref(),
            [&second_blob],
        ),
    )
    .await
    .expect("a writer must not wait for another writer's turn");
    confirmed.unwrap();
    second.commit().await.unwrap();
    first.commit().await.unwrap();
}
