//! Moderation end to end: scanned versions wait in the review queue ordered by risk, reviewers
//! claim, approve, reject, block and unblock them, the kill switch stops a whole plugin, abuse
//! reports are filed and resolved, and every action lands in the audit log.

use axum::http::StatusCode;
use plugstore_format::digest::PackageDigest;
use plugstore_format::package::PackageBuilder;
use serde_json::{Value, json};

use crate::harness::{Stack, TestApp, TestResponse, TestUser};
use crate::publish::{StoreSigner, manifest, package};

const WORKER_TOKEN: &str = "psw_test-worker-token";

struct Cast {
    app: TestApp,
    owner: TestUser,
    stranger: TestUser,
    reviewer: TestUser,
    other_reviewer: TestUser,
    admin: TestUser,
    signer: StoreSigner,
}

async fn moderated_store(
    stack: Stack,
    adjust: impl FnOnce(&mut plugstore_server::config::Settings),
) -> Option<Cast> {
    let app = TestApp::start_with(stack, |s| {
        s.scan.policy = plugstore_server::config::ScanPolicy::Scan;
        s.scan.worker_token = WORKER_TOKEN.into();
        s.scan.first_version_review = true;
        adjust(s);
    })
    .await?;
    let owner = app.signup("owner").await;
    app.publisher(&owner, "acme").await;
    let signer = StoreSigner::new(&app, &owner, "acme").await;
    let stranger = app.signup("stranger").await;
    let reviewer = app.signup("rita").await;
    app.set_role(&reviewer, "reviewer").await;
    let other_reviewer = app.signup("rolf").await;
    app.set_role(&other_reviewer, "reviewer").await;
    let admin = app.signup("ada").await;
    app.set_role(&admin, "admin").await;
    Some(Cast {
        app,
        owner,
        stranger,
        reviewer,
        other_reviewer,
        admin,
        signer,
    })
}

impl Cast {
    async fn publish_package(&self, version: &str, pkg: Vec<u8>) -> TestResponse {
        self.signer
            .upload(&self.app, &self.owner.access, "acme/hello", version, &pkg)
            .await
    }

    /// Publishes `version` and has a worker report one finding of `severity` on it.
    async fn publish_scanned(&self, version: &str, pkg: Vec<u8>, severity: &str) {
        let published = self.publish_package(version, pkg).await;
        assert_eq!(
            published.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&published.body)
        );
        self.scan_next(version, severity).await;
    }

    /// A worker claims the next scan job (of `version`) and reports one finding.
    async fn scan_next(&self, version: &str, severity: &str) {
        let job = self
            .app
            .post(
                "/internal/v1/scan-jobs/claim",
                Some(WORKER_TOKEN),
                json!({"worker": "w"}),
            )
            .await
            .json();
        assert_eq!(job["version"], version);
        let report = json!({
            "worker": "w",
            "findings": [{"rule": "test.rule", "severity": severity, "message": "found something"}],
            "scanner_version": "test",
            "duration_ms": 5
        });
        let done = self
            .app
            .post(
                &format!("/internal/v1/scan-jobs/{}/report", job["job_id"]),
                Some(WORKER_TOKEN),
                report,
            )
            .await;
        assert_eq!(done.status, StatusCode::OK);
    }

    async fn act(&self, who: &TestUser, path: &str, reason: &str) -> TestResponse {
        self.app
            .post(path, Some(&who.access), json!({"reason": reason}))
            .await
    }

    /// `version`'s state, as its owner sees it.
    async fn state_of(&self, version: &str) -> String {
        let view = self.version(Some(&self.owner), version).await.json();
        view["state"].as_str().unwrap().to_owned()
    }

    async fn version(&self, who: Option<&TestUser>, version: &str) -> TestResponse {
        self.app
            .get(
                &format!("/api/v1/plugins/acme/hello/versions/{version}"),
                who.map(|u| u.access.as_str()),
            )
            .await
    }
}

fn versions_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version"].as_str().unwrap().to_owned())
        .collect()
}

/// A package of `acme/hello` requesting `capabilities`, with one extra file.
fn package_with(version: &str, capabilities: &str, extra: &str) -> Vec<u8> {
    let manifest = manifest("acme/hello", version).replace(
        r#"capabilities = ["log"]"#,
        &format!("capabilities = {capabilities}"),
    );
    PackageBuilder::from_files([
        ("plugin.toml", manifest.into_bytes()),
        ("plugin.wasm", version.as_bytes().to_vec()),
        (extra, b"more".to_vec()),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

const V: &str = "/api/v1/review/versions/acme/hello";

async fn scenario(stack: Stack) {
    let Some(cast) = moderated_store(stack, |_| {}).await else {
        return;
    };
    let app = &cast.app;
    let (rita, rolf, ada) = (&cast.reviewer, &cast.other_reviewer, &cast.admin);

    // Three versions waiting for review: a clean first version, a high finding, a medium one.
    cast.publish_scanned("1.0.0", package("acme/hello", "1.0.0", b"one"), "info")
        .await;
    cast.publish_scanned("1.1.0", package("acme/hello", "1.1.0", b"eleven"), "high")
        .await;
    cast.publish_scanned(
        "1.2.0",
        package_with("1.2.0", r#"["log", "net.http"]"#, "data/extra.bin"),
        "medium",
    )
    .await;

    // The queue: worst first, or oldest first; filtered by severity; paged.
    let queue = app.get("/api/v1/review/queue", Some(&rita.access)).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert_eq!(versions_of(&queue.json()), ["1.1.0", "1.2.0", "1.0.0"]);
    assert_eq!(queue.json()["items"][0]["max_severity"], "high");
    assert_eq!(queue.json()["items"][0]["plugin"], "acme/hello");
    let by_age = app
        .get("/api/v1/review/queue?order=age", Some(&rita.access))
        .await
        .json();
    assert_eq!(versions_of(&by_age), ["1.0.0", "1.1.0", "1.2.0"]);
    let risky = app
        .get("/api/v1/review/queue?severity=medium", Some(&rita.access))
        .await
        .json();
    assert_eq!(versions_of(&risky), ["1.1.0", "1.2.0"]);
    let first = app
        .get("/api/v1/review/queue?limit=1", Some(&rita.access))
        .await
        .json();
    assert_eq!(versions_of(&first), ["1.1.0"]);
    let second = app
        .get(
            &format!(
                "/api/v1/review/queue?limit=1&cursor={}",
                first["next_cursor"].as_str().unwrap()
            ),
            Some(&rita.access),
        )
        .await
        .json();
    assert_eq!(versions_of(&second), ["1.2.0"]);
    assert_eq!(
        versions_of(
            &app.get("/api/v1/review/queue?publisher=other", Some(&rita.access))
                .await
                .json()
        ),
        Vec::<String>::new()
    );
    // Roles act only through sessions: a reviewer's API token is refused.
    let token = app
        .post(
            "/api/v1/tokens",
            Some(&rita.access),
            json!({"name": "ci", "scopes": ["publish"]}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/api/v1/review/queue", Some(&token)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&format!("{V}/1.0.0/claim"), Some(&token), json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Detail of the first version: manifest, signer, report, nothing to compare with.
    let detail = app
        .get(&format!("{V}/1.0.0"), Some(&rita.access))
        .await
        .json();
    assert!(detail["manifest"].as_str().unwrap().contains("acme/hello"));
    assert_eq!(detail["signer"]["fingerprint"], cast.signer.fingerprint);
    assert_eq!(detail["signer"]["origin"], "store-ca");
    assert_eq!(detail["signer"]["revoked"], false);
    assert_eq!(detail["scan_report"]["max_severity"], "info");
    assert_eq!(
        detail["scan_report"]["report"]["findings"][0]["rule"],
        "test.rule"
    );
    assert_eq!(detail["uploaded_by"], "owner");
    assert!(detail["changes"].is_null());

    // Claims: one reviewer at a time until the claim lapses.
    let claimed = app
        .post(&format!("{V}/1.0.0/claim"), Some(&rita.access), json!({}))
        .await;
    assert_eq!(claimed.status, StatusCode::OK);
    assert_eq!(claimed.json()["claimed_by"], "rita");
    assert_eq!(
        app.post(&format!("{V}/1.0.0/claim"), Some(&rolf.access), json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        cast.act(rolf, &format!("{V}/1.0.0/approve"), "looks fine")
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&format!("{V}/1.0.0/claim"), Some(&rita.access), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let queue = app
        .get("/api/v1/review/queue?order=age", Some(&rolf.access))
        .await
        .json();
    assert_eq!(queue["items"][0]["claimed_by"], "rita");
    sqlx::query(
        "UPDATE plugin_versions SET claimed_at = claimed_at - 7200 WHERE version = '1.0.0'",
    )
    .execute(&app.app.db.pool)
    .await
    .unwrap();
    let taken = app
        .post(&format!("{V}/1.0.0/claim"), Some(&rolf.access), json!({}))
        .await;
    assert_eq!(taken.status, StatusCode::OK);
    assert_eq!(taken.json()["claimed_by"], "rolf");

    // Approve: published and public; the claim is gone.
    assert_eq!(
        cast.version(None, "1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    let approved = cast
        .act(rolf, &format!("{V}/1.0.0/approve"), "reviewed the imports")
        .await;
    assert_eq!(approved.status, StatusCode::OK);
    assert_eq!(approved.json()["state"], "published");
    assert!(approved.json()["claimed_by"].is_null());
    assert_eq!(
        cast.version(None, "1.0.0").await.json()["state"],
        "published"
    );
    assert_eq!(
        cast.act(rolf, &format!("{V}/1.0.0/approve"), "again")
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        cast.act(rolf, &format!("{V}/1.0.0/reject"), "")
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // What changed from 1.0.0 (now published) to 1.2.0: a capability, a file, the size.
    let changes = app
        .get(&format!("{V}/1.2.0"), Some(&rita.access))
        .await
        .json()["changes"]
        .clone();
    assert_eq!(changes["previous_version"], "1.0.0");
    assert_eq!(changes["capabilities_added"], json!(["net.http"]));
    assert_eq!(changes["capabilities_removed"], json!([]));
    assert_eq!(changes["files"]["added"], json!(["data/extra.bin"]));
    assert_eq!(changes["files"]["removed"], json!([]));
    assert_eq!(
        changes["files"]["changed"],
        json!(["plugin.toml", "plugin.wasm"])
    );
    let size_of = |v: &Value| v["package_size"].as_i64().unwrap();
    let new_size = size_of(
        &app.get(&format!("{V}/1.2.0"), Some(&rita.access))
            .await
            .json(),
    );
    let old_size = size_of(
        &app.get(&format!("{V}/1.0.0"), Some(&rita.access))
            .await
            .json(),
    );
    assert_eq!(changes["package_size_change"], new_size - old_size);

    // Reject: the publisher reads the reason; strangers do not see the version at all.
    let rejected = cast
        .act(rita, &format!("{V}/1.1.0/reject"), "bundles a crypto miner")
        .await;
    assert_eq!(rejected.json()["state"], "rejected");
    let seen = cast.version(Some(&cast.owner), "1.1.0").await.json();
    assert_eq!(
        (seen["state"].as_str(), seen["state_reason"].as_str()),
        (Some("rejected"), Some("bundles a crypto miner"))
    );
    assert_eq!(
        cast.version(Some(&cast.stranger), "1.1.0").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cast.version(None, "1.1.0").await.status,
        StatusCode::NOT_FOUND
    );

    // Block a published version: gone for the public, listed as blocked to members; unblock
    // restores it.
    let blocked = cast
        .act(rita, &format!("{V}/1.0.0/block"), "phones home")
        .await;
    assert_eq!(blocked.json()["state"], "blocked");
    assert_eq!(
        cast.version(None, "1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    let download = format!(
        "/blobs/sha256/{}",
        PackageDigest::of(&package("acme/hello", "1.0.0", b"one")).to_hex()
    );
    assert_eq!(app.get(&download, None).await.status, StatusCode::NOT_FOUND);
    let listed = app
        .get(
            "/api/v1/plugins/acme/hello/versions",
            Some(&cast.owner.access),
        )
        .await
        .json();
    assert_eq!(listed["items"][0]["state"], "blocked");
    assert_eq!(listed["items"][0]["state_reason"], "phones home");
    assert_eq!(
        app.get("/api/v1/plugins/acme/hello", None).await.json()["latest_version"],
        Value::Null
    );
    let unblocked = cast
        .act(ada, &format!("{V}/1.0.0/unblock"), "false alarm")
        .await;
    assert_eq!(unblocked.json()["state"], "published");
    assert_eq!(cast.version(None, "1.0.0").await.status, StatusCode::OK);
    assert_eq!(app.get(&download, None).await.status, StatusCode::OK);
    assert_eq!(
        cast.act(ada, &format!("{V}/1.0.0/unblock"), "again")
            .await
            .status,
        StatusCode::CONFLICT
    );

    // The kill switch: every version blocked, uploads refused; a version blocked on its own
    // stays blocked when the plugin is unblocked.
    assert_eq!(
        cast.act(rita, &format!("{V}/1.2.0/block"), "separately")
            .await
            .status,
        StatusCode::OK
    );
    let killed = cast
        .act(
            rita,
            "/api/v1/review/plugins/acme/hello/block",
            "malware campaign",
        )
        .await;
    assert_eq!(killed.status, StatusCode::OK);
    assert_eq!(killed.json()["versions_changed"], 2);
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        assert_eq!(
            cast.version(Some(&cast.owner), version).await.json()["state"],
            "blocked"
        );
    }
    let refused = cast
        .publish_package("1.3.0", package("acme/hello", "1.3.0", b"new"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "plugin-blocked");
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("malware campaign")
    );
    assert_eq!(
        cast.act(rita, &format!("{V}/1.0.0/unblock"), "one only")
            .await
            .status,
        StatusCode::CONFLICT
    );
    let revived = cast
        .act(ada, "/api/v1/review/plugins/acme/hello/unblock", "cleared")
        .await;
    assert_eq!(revived.json()["versions_changed"], 2);
    let states: Vec<String> = {
        let mut states = Vec::new();
        for version in ["1.0.0", "1.1.0", "1.2.0"] {
            states.push(
                cast.version(Some(&cast.owner), version).await.json()["state"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        states
    };
    assert_eq!(states, ["published", "rejected", "blocked"]);
    assert_eq!(
        cast.publish_package("1.3.0", package("acme/hello", "1.3.0", b"new"))
            .await
            .status,
        StatusCode::CREATED
    );
    // Blocked while scanning, the verdict is not applied; unblocked, it goes to review.
    assert_eq!(
        cast.act(ada, &format!("{V}/1.3.0/block"), "hold")
            .await
            .json()["state"],
        "blocked"
    );
    cast.scan_next("1.3.0", "info").await;
    assert_eq!(
        cast.version(Some(&cast.owner), "1.3.0").await.json()["state"],
        "blocked"
    );
    assert_eq!(
        cast.act(ada, &format!("{V}/1.3.0/unblock"), "release")
            .await
            .json()["state"],
        "pending_review"
    );

    // Abuse reports: any signed-in user files one; reviewers list and resolve them.
    let path = "/api/v1/plugins/acme/hello/reports";
    assert_eq!(
        app.post(path, None, json!({"reason": "steals tokens"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            path,
            Some(&cast.stranger.access),
            json!({"reason": "steals tokens", "version": "1.1.0"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND,
        "a rejected version is not public, so it cannot be reported"
    );
    let filed = app
        .post(
            path,
            Some(&cast.stranger.access),
            json!({"reason": "steals tokens", "version": "1.0.0"}),
        )
        .await;
    assert_eq!(filed.status, StatusCode::CREATED);
    let report = filed.json();
    assert_eq!(
        (report["plugin"].as_str(), report["state"].as_str()),
        (Some("acme/hello"), Some("open"))
    );
    assert_eq!(
        app.get("/api/v1/review/reports", Some(&cast.stranger.access))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let open = app
        .get("/api/v1/review/reports?state=open", Some(&rita.access))
        .await
        .json();
    assert_eq!(open["items"][0]["reporter"], "stranger");
    assert_eq!(open["items"][0]["version"], "1.0.0");
    let resolve = format!("/api/v1/review/reports/{}/resolve", report["id"]);
    let resolved = app
        .post(
            &resolve,
            Some(&rita.access),
            json!({"resolution": "no evidence"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK);
    assert_eq!(resolved.json()["resolved_by"], "rita");
    assert_eq!(
        app.post(&resolve, Some(&rita.access), json!({"resolution": "again"}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.get("/api/v1/review/reports", Some(&rita.access))
            .await
            .json()["items"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/review/reports?state=resolved", Some(&rita.access))
            .await
            .json()["items"][0]["resolution"],
        "no evidence"
    );

    // The audit log: every action with actor and reason, newest first, for admins only.
    let log = app
        .get(
            "/api/v1/admin/audit-log?target=version:acme/hello@1.0.0",
            Some(&ada.access),
        )
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let entries: Vec<(String, String, String)> = log.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap_or("-").to_owned(),
                e["reason"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("version.unblock", "ada", "false alarm"),
        ("version.block", "rita", "phones home"),
        ("version.approve", "rolf", "reviewed the imports"),
        ("review.claim", "rolf", "-"),
        ("review.claim", "rita", "-"),
        ("review.claim", "rita", "-"),
        ("version.upload", "owner", "-"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(entries, expected);
    let by_rita = app
        .get(
            "/api/v1/admin/audit-log?actor=rita&limit=2",
            Some(&ada.access),
        )
        .await
        .json();
    assert_eq!(by_rita["items"][0]["action"], "report.resolve");
    assert_eq!(by_rita["items"][1]["action"], "plugin.block");
    assert_eq!(by_rita["items"][1]["target"], "plugin:acme/hello");
    assert!(by_rita["next_cursor"].is_string());
    for who in [rita, &cast.owner, &cast.stranger] {
        assert_eq!(
            app.get("/api/v1/admin/audit-log", Some(&who.access))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
}

#[tokio::test]
async fn moderation_embedded() {
    scenario(Stack::Embedded).await;
}

#[tokio::test]
async fn moderation_scaled() {
    scenario(Stack::Scaled).await;
}

#[tokio::test]
async fn abuse_reports_are_rate_limited_per_user() {
    let Some(cast) = moderated_store(Stack::Embedded, |s| {
        s.rate_limits.abuse_reports_per_hour = 2;
    })
    .await
    else {
        return;
    };
    let app = &cast.app;
    app.seed_plugin("acme", "spam", &[("1.0.0", "published")])
        .await;
    let path = "/api/v1/plugins/acme/spam/reports";
    for _ in 0..2 {
        assert_eq!(
            app.post(path, Some(&cast.stranger.access), json!({"reason": "bad"}))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let limited = app
        .post(path, Some(&cast.stranger.access), json!({"reason": "bad"}))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    // Another user has an allowance of their own.
    assert_eq!(
        app.post(path, Some(&cast.owner.access), json!({"reason": "bad"}))
            .await
            .status,
        StatusCode::CREATED
    );
}

/// Makes every insert into the audit log fail, as a database error between a change and its
/// entry would; `false` lifts it.
async fn refuse_audit_entries(app: &TestApp, refuse: bool) {
    use plugstore_server::db::Engine;
    let statements: &[&str] = match (app.app.db.engine, refuse) {
        (Engine::Sqlite, true) => &[
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        ],
        (Engine::Sqlite, false) => &["DROP TRIGGER refuse_audit"],
        (Engine::Postgres, true) => &[
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
        (Engine::Postgres, false) => &["DROP TRIGGER refuse_audit ON audit_log"],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&app.app.db.pool)
            .await
            .unwrap();
    }
}

/// A change and its audit entry are one transaction: when the entry cannot be written, the
/// change is not made either, for moderation and for a scan that failed for good.
async fn changes_without_their_audit_entry_are_not_made(stack: Stack) {
    let Some(cast) = moderated_store(stack, |s| s.scan.max_attempts = 1).await else {
        return;
    };
    let app = &cast.app;
    app.seed_plugin("acme", "hello", &[("1.0.0", "published")])
        .await;
    let published = cast
        .publish_package("1.1.0", package("acme/hello", "1.1.0", b"v1.1"))
        .await;
    assert_eq!(published.status, StatusCode::CREATED);
    let job = app
        .post(
            "/internal/v1/scan-jobs/claim",
            Some(WORKER_TOKEN),
            json!({"worker": "w"}),
        )
        .await
        .json();
    let fail = format!("/internal/v1/scan-jobs/{}/fail", job["job_id"]);
    let fail = || {
        app.post(
            &fail,
            Some(WORKER_TOKEN),
            json!({"worker": "w", "error": "crashed"}),
        )
    };
    let state = |version| cast.state_of(version);

    refuse_audit_entries(app, true).await;
    let block = cast
        .act(&cast.reviewer, &format!("{V}/1.0.0/block"), "malware")
        .await;
    assert_eq!(block.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state("1.0.0").await, "published");
    let kill = cast
        .act(
            &cast.reviewer,
            "/api/v1/review/plugins/acme/hello/block",
            "malware",
        )
        .await;
    assert_eq!(kill.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state("1.0.0").await, "published");
    // The worker's last attempt: its job stays leased and the version scanning, so the
    // worker's retry (or the lease running out) gets the version to review.
    assert_eq!(fail().await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state("1.1.0").await, "scanning");

    refuse_audit_entries(app, false).await;
    let block = cast
        .act(&cast.reviewer, &format!("{V}/1.0.0/block"), "malware")
        .await;
    assert_eq!(block.status, StatusCode::OK);
    assert_eq!(state("1.0.0").await, "blocked");
    assert_eq!(fail().await.status, StatusCode::NO_CONTENT);
    assert_eq!(state("1.1.0").await, "pending_review");
    let entries = app
        .get("/api/v1/admin/audit-log", Some(&cast.admin.access))
        .await
        .json();
    let actions: Vec<&str> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    // The refused attempts left nothing; before them, the store issued the signer's
    // certificate and took the upload, after the owner created the publisher.
    assert_eq!(
        actions,
        [
            "scan.failed",
            "version.block",
            "version.upload",
            "certificate.issue",
            "publisher.create"
        ]
    );
}

#[tokio::test]
async fn changes_without_their_audit_entry_are_not_made_embedded() {
    changes_without_their_audit_entry_are_not_made(Stack::Embedded).await;
}

#[tokio::test]
async fn changes_without_their_audit_entry_are_not_made_scaled() {
    changes_without_their_audit_entry_are_not_made(Stack::Scaled).await;
}

fn described(version: &str, description: &str) -> Vec<u8> {
    let manifest = manifest("acme/hello", version).replace("Says hello", description);
    PackageBuilder::from_files([
        ("plugin.toml", manifest.into_bytes()),
        ("plugin.wasm", version.as_bytes().to_vec()),
    ])
    .unwrap()
    .to_vec()
    .unwrap()
}

/// The plugin's page and search show the description of a published version, never text
/// still waiting for review or rejected.
async fn descriptions_show_once_published(stack: Stack) {
    let Some(cast) = moderated_store(stack, |_| {}).await else {
        return;
    };
    let app = &cast.app;
    let shown = || async {
        app.get("/api/v1/plugins/acme/hello", None).await.json()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let found = |q: &'static str| async move {
        app.get(&format!("/api/v1/plugins?q={q}"), None)
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    // A first version waits for review (`first_version_review`).
    cast.publish_scanned("1.0.0", described("1.0.0", "Greets politely"), "low")
        .await;
    assert_eq!(cast.state_of("1.0.0").await, "pending_review");
    assert_eq!(shown().await, "");
    assert_eq!(found("politely").await, 0);
    let reviewer = &cast.reviewer;
    let claim = |version: &'static str| async move {
        let claimed = app
            .post(
                &format!("{V}/{version}/claim"),
                Some(&reviewer.access),
                json!({}),
            )
            .await;
        assert_eq!(claimed.status, StatusCode::OK);
    };
    claim("1.0.0").await;
    let approved = cast
        .act(&cast.reviewer, &format!("{V}/1.0.0/approve"), "fine")
        .await;
    assert_eq!(approved.status, StatusCode::OK);
    assert_eq!(shown().await, "Greets politely");
    assert_eq!(found("politely").await, 1);

    // A later version held for review, then rejected, never replaces it.
    cast.publish_scanned(
        "1.1.0",
        described("1.1.0", "Log in at evil.example"),
        "high",
    )
    .await;
    assert_eq!(cast.state_of("1.1.0").await, "pending_review");
    assert_eq!(shown().await, "Greets politely");
    assert_eq!(found("evil").await, 0);
    claim("1.1.0").await;
    let rejected = cast
        .act(&cast.reviewer, &format!("{V}/1.1.0/reject"), "phishing")
        .await;
    assert_eq!(rejected.status, StatusCode::OK);
    assert_eq!(shown().await, "Greets politely");
    // Nor is the rejected package served from the store's domain.
    let blob = |package: Vec<u8>| format!("/blobs/sha256/{}", PackageDigest::of(&package).to_hex());
    let refused = app
        .get(&blob(described("1.1.0", "Log in at evil.example")), None)
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.json()["code"], "rejected");
    let approved = app
        .get(&blob(described("1.0.0", "Greets politely")), None)
        .await;
    assert_eq!(approved.status, StatusCode::OK);

    // A clean later version is published at once, and its description with it.
    cast.publish_scanned("1.2.0", described("1.2.0", "Greets warmly"), "low")
        .await;
    assert_eq!(cast.state_of("1.2.0").await, "published");
    assert_eq!(shown().await, "Greets warmly");
}

#[tokio::test]
async fn descriptions_show_once_published_embedded() {
    descriptions_show_once_published(Stack::Embedded).await;
}

#[tokio::test]
async fn descriptions_show_once_published_scaled() {
    descriptions_show_once_published(Stack::Scaled).await;
}
