//! The scan queue as workers see it: claim with a lease, report, give up; verdict policy;
//! a dead worker's job is claimed again; after the last attempt the version goes to review.

use axum::http::StatusCode;
use serde_json::json;

use crate::both_stacks;
use crate::harness::{Stack, TestApp, TestUser};
use crate::publish::{StoreSigner, package};

async fn scanning_store(
    stack: Stack,
    first_version_review: bool,
) -> Option<(TestApp, TestUser, StoreSigner, String)> {
    let app = TestApp::start_with(stack, |s| {
        s.scan.policy = plugstore_server::config::ScanPolicy::Scan;
        s.scan.worker_token = "psw_test-worker-token".into();
        s.scan.max_attempts = 2;
        s.scan.first_version_review = first_version_review;
    })
    .await?;
    let owner = app.signup("owner").await;
    app.publisher(&owner, "acme").await;
    let signer = StoreSigner::new(&app, &owner, "acme").await;
    Some((app, owner, signer, "psw_test-worker-token".into()))
}

async fn publish(app: &TestApp, owner: &TestUser, signer: &StoreSigner, version: &str) {
    let pkg = package("acme/hello", version, version.as_bytes());
    let response = signer
        .upload(app, &owner.access, "acme/hello", version, &pkg)
        .await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["state"], "scanning");
}

async fn state(app: &TestApp, owner: &TestUser, version: &str) -> String {
    let v = app
        .get(
            &format!("/api/v1/plugins/acme/hello/versions/{version}"),
            Some(&owner.access),
        )
        .await
        .json();
    v["state"].as_str().unwrap().to_owned()
}

fn report(worker: &str, severity: &str) -> serde_json::Value {
    json!({
        "worker": worker,
        "findings": [{"rule": "test.rule", "severity": severity, "message": "found something", "evidence": "x", "location": "plugin.wasm"}],
        "metrics": {"fuel_used": 1234},
        "scanner_version": "test",
        "duration_ms": 5
    })
}

async fn scenario(stack: Stack) {
    let Some((app, owner, signer, token)) = scanning_store(stack, true).await else {
        return;
    };
    // Workers, not users, talk to the queue.
    assert_eq!(
        app.post(
            "/internal/v1/scan-jobs/claim",
            Some(&owner.access),
            json!({"worker": "w"})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "w1"})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );

    publish(&app, &owner, &signer, "1.0.0").await;
    let job = app
        .post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "w1"}),
        )
        .await
        .json();
    assert_eq!(
        (
            job["plugin"].as_str(),
            job["version"].as_str(),
            job["attempt"].as_i64()
        ),
        (Some("acme/hello"), Some("1.0.0"), Some(1))
    );
    assert!(job["manifest"].as_str().unwrap().contains("acme/hello"));
    let id = job["job_id"].as_i64().unwrap();
    // Nothing else to claim while the lease runs; someone else's report is refused.
    assert_eq!(
        app.post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "w2"})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post(
            &format!("/internal/v1/scan-jobs/{id}/report"),
            Some(&token),
            report("w2", "info")
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(
            &format!("/internal/v1/scan-jobs/{id}/heartbeat"),
            Some(&token),
            json!({"worker": "w1"})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    // A clean scan of the first version still waits for a reviewer.
    let outcome = app
        .post(
            &format!("/internal/v1/scan-jobs/{id}/report"),
            Some(&token),
            report("w1", "low"),
        )
        .await;
    assert_eq!(
        outcome.json()["state"],
        "pending_review",
        "{}",
        String::from_utf8_lossy(&outcome.body)
    );
    assert_eq!(state(&app, &owner, "1.0.0").await, "pending_review");
    // Approving is the reviewers' job (issue 4); publish it directly to test later versions.
    sqlx::query("UPDATE plugin_versions SET state = 'published' WHERE version = '1.0.0'")
        .execute(&app.app.db.pool)
        .await
        .unwrap();

    // Later versions: clean → published, high → review, critical → rejected.
    for (version, severity, expected) in [
        ("1.0.1", "medium", "published"),
        ("1.0.2", "high", "pending_review"),
        ("1.0.3", "critical", "rejected"),
    ] {
        publish(&app, &owner, &signer, version).await;
        let job = app
            .post(
                "/internal/v1/scan-jobs/claim",
                Some(&token),
                json!({"worker": "w1"}),
            )
            .await
            .json();
        assert_eq!(job["version"], version);
        let outcome = app
            .post(
                &format!("/internal/v1/scan-jobs/{}/report", job["job_id"]),
                Some(&token),
                report("w1", severity),
            )
            .await
            .json();
        assert_eq!(outcome["state"], expected, "{version}");
        assert_eq!(state(&app, &owner, version).await, expected);
    }
    // The publisher reads the reports of their own versions; strangers do not.
    let seen = app
        .get(
            "/api/v1/plugins/acme/hello/versions/1.0.3/scan-report",
            Some(&owner.access),
        )
        .await
        .json();
    assert_eq!(
        (seen["verdict"].as_str(), seen["max_severity"].as_str()),
        (Some("rejected"), Some("critical"))
    );
    assert_eq!(seen["report"]["findings"][0]["rule"], "test.rule");
    let stranger = app.signup("stranger").await;
    assert_eq!(
        app.get(
            "/api/v1/plugins/acme/hello/versions/1.0.3/scan-report",
            Some(&stranger.access)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let reports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scan_reports")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(reports, 4);

    // A worker that dies: its lease expires and the job is claimed again; after the last
    // attempt the version goes to review as scan_failed.
    publish(&app, &owner, &signer, "1.0.4").await;
    let first = app
        .post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "doomed"}),
        )
        .await
        .json();
    sqlx::query("UPDATE scan_jobs SET lease_expires_at = 0 WHERE id = $1")
        .bind(first["job_id"].as_i64().unwrap())
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    // Its lease is over even before another worker claims the job: what it reports now
    // might be another's work, or a worker's with the same name.
    let late_report =
        json!({"worker": "doomed", "findings": [], "scanner_version": "test", "duration_ms": 5});
    for (action, body) in [
        ("report", late_report),
        ("fail", json!({"worker": "doomed", "error": "late"})),
    ] {
        let late = app
            .post(
                &format!("/internal/v1/scan-jobs/{}/{action}", first["job_id"]),
                Some(&token),
                body,
            )
            .await;
        assert_eq!(late.status, StatusCode::CONFLICT, "{action}");
    }
    let again = app
        .post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "w1"}),
        )
        .await
        .json();
    assert_eq!(
        (again["job_id"].clone(), again["attempt"].as_i64()),
        (first["job_id"].clone(), Some(2))
    );
    assert_eq!(
        app.post(
            &format!("/internal/v1/scan-jobs/{}/heartbeat", first["job_id"]),
            Some(&token),
            json!({"worker": "doomed"})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let failed = app
        .post(
            &format!("/internal/v1/scan-jobs/{}/fail", again["job_id"]),
            Some(&token),
            json!({"worker": "w1", "error": "analysis crashed"}),
        )
        .await;
    assert_eq!(failed.status, StatusCode::NO_CONTENT);
    assert_eq!(state(&app, &owner, "1.0.4").await, "pending_review");
    let reason: String =
        sqlx::query_scalar("SELECT state_reason FROM plugin_versions WHERE version = '1.0.4'")
            .fetch_one(&app.app.db.pool)
            .await
            .unwrap();
    assert!(reason.starts_with("scan_failed"), "{reason}");
    // A version whose every lease ran out gets there too.
    publish(&app, &owner, &signer, "1.0.5").await;
    for _ in 0..2 {
        let job = app
            .post(
                "/internal/v1/scan-jobs/claim",
                Some(&token),
                json!({"worker": "crashy"}),
            )
            .await
            .json();
        sqlx::query("UPDATE scan_jobs SET lease_expires_at = 0 WHERE id = $1")
            .bind(job["job_id"].as_i64().unwrap())
            .execute(&app.app.db.pool)
            .await
            .unwrap();
    }
    assert_eq!(
        app.post(
            "/internal/v1/scan-jobs/claim",
            Some(&token),
            json!({"worker": "w1"})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(state(&app, &owner, "1.0.5").await, "pending_review");
}

both_stacks! {
    async fn workers_claim_report_and_fail(app) {
        // The scenario needs its own settings; `app` only tells which stack this run is on.
        let stack = if app.app.db.engine == plugstore_server::db::Engine::Postgres { Stack::Scaled } else { Stack::Embedded };
        drop(app);
        scenario(stack).await;
    }
}

#[tokio::test]
async fn concurrent_claims_get_different_jobs() {
    for stack in [Stack::Embedded, Stack::Scaled] {
        let Some((app, owner, signer, token)) = scanning_store(stack, false).await else {
            continue;
        };
        for version in ["2.0.0", "2.0.1", "2.0.2", "2.0.3"] {
            publish(&app, &owner, &signer, version).await;
        }
        let claim = |n: usize| {
            let app = &app;
            let token = token.clone();
            async move {
                app.post(
                    "/internal/v1/scan-jobs/claim",
                    Some(&token),
                    json!({"worker": format!("w{n}")}),
                )
                .await
                .json()["job_id"]
                    .as_i64()
                    .unwrap()
            }
        };
        let (a, b, c, d) = tokio::join!(claim(1), claim(2), claim(3), claim(4));
        let mut ids = vec![a, b, c, d];
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "two workers got the same job: {ids:?}");
    }
}
