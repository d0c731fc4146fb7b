//! The endpoint × caller matrix: every operation in the OpenAPI document is driven as
//! anonymous, an unrelated developer, a publisher maintainer, a publisher owner, a reviewer and
//! an admin, and each answer's status is checked. A new endpoint without a row fails the test.

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::Value;

use crate::both_stacks;
use crate::harness::PASSWORD;

const CALLERS: [&str; 6] = [
    "anonymous",
    "stranger",
    "maintainer",
    "owner",
    "reviewer",
    "admin",
];

struct Row {
    method: Method,
    /// The path as the OpenAPI document names it.
    template: &'static str,
    /// The concrete path; `{i}` is the caller's index, `{token}` the caller's own token id,
    /// `{blob}` a stored blob's digest, `{report}` an open abuse report, one per caller.
    path: &'static str,
    /// JSON body; `{i}` and `{refresh}` (a fresh refresh token) are substituted.
    body: Option<&'static str>,
    /// Expected status per caller, in the order of `CALLERS`.
    expect: [u16; 6],
}

fn row(
    method: Method,
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: [u16; 6],
) -> Row {
    Row {
        method,
        template,
        path,
        body,
        expect,
    }
}

fn rows() -> Vec<Row> {
    use Method as M;
    let public = [200; 6];
    vec![
        row(
            M::POST,
            "/api/v1/auth/register",
            "/api/v1/auth/register",
            Some(r#"{"username":"new{i}","email":"new{i}@example.org","password":"{password}"}"#),
            [201; 6],
        ),
        row(
            M::POST,
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            Some(r#"{"username":"stranger","password":"{password}"}"#),
            public,
        ),
        row(
            M::POST,
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            Some(r#"{"refresh_token":"{refresh}"}"#),
            public,
        ),
        row(
            M::GET,
            "/api/v1/me",
            "/api/v1/me",
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/tokens",
            "/api/v1/tokens",
            Some(r#"{"name":"ci","scopes":["publish"]}"#),
            [401, 201, 201, 201, 201, 201],
        ),
        row(
            M::GET,
            "/api/v1/tokens",
            "/api/v1/tokens",
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/tokens/{id}",
            "/api/v1/tokens/{token}",
            None,
            [401, 204, 204, 204, 204, 204],
        ),
        row(
            M::POST,
            "/api/v1/publishers",
            "/api/v1/publishers",
            Some(r#"{"name":"pub{i}"}"#),
            [401, 201, 201, 201, 201, 201],
        ),
        row(
            M::GET,
            "/api/v1/publishers",
            "/api/v1/publishers",
            None,
            public,
        ),
        row(
            M::GET,
            "/api/v1/publishers/{publisher}",
            "/api/v1/publishers/acme",
            None,
            public,
        ),
        row(
            M::GET,
            "/api/v1/publishers/{publisher}/members",
            "/api/v1/publishers/acme/members",
            None,
            public,
        ),
        row(
            M::PUT,
            "/api/v1/publishers/{publisher}/members/{username}",
            "/api/v1/publishers/acme/members/target{i}",
            Some(r#"{"role":"maintainer"}"#),
            [401, 403, 403, 200, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/publishers/{publisher}/members/{username}",
            "/api/v1/publishers/acme/members/target{i}",
            None,
            [401, 403, 403, 204, 403, 204],
        ),
        row(
            M::POST,
            "/api/v1/publishers/{publisher}/certificates",
            "/api/v1/publishers/acme/certificates",
            Some(r#"{"csr":"{csr}"}"#),
            [401, 403, 201, 201, 403, 201],
        ),
        row(
            M::GET,
            "/api/v1/publishers/{publisher}/certificates",
            "/api/v1/publishers/acme/certificates",
            None,
            public,
        ),
        row(
            M::POST,
            "/api/v1/publishers/{publisher}/certificates/{fingerprint}/revoke",
            "/api/v1/publishers/acme/certificates/{cert}/revoke",
            Some(r#"{"reason":"test"}"#),
            [401, 403, 403, 200, 403, 200],
        ),
        row(M::GET, "/ca.pem", "/ca.pem", None, public),
        row(
            M::GET,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}/scan-report",
            "/api/v1/plugins/acme/widget/versions/1.0.0/scan-report",
            None,
            [404, 404, 200, 200, 200, 200],
        ),
        // The scan queue takes the worker token only; no user credential opens it.
        row(
            M::POST,
            "/internal/v1/scan-jobs/claim",
            "/internal/v1/scan-jobs/claim",
            Some(r#"{"worker":"w"}"#),
            [401; 6],
        ),
        row(
            M::POST,
            "/internal/v1/scan-jobs/{id}/heartbeat",
            "/internal/v1/scan-jobs/1/heartbeat",
            Some(r#"{"worker":"w"}"#),
            [401; 6],
        ),
        row(
            M::POST,
            "/internal/v1/scan-jobs/{id}/report",
            "/internal/v1/scan-jobs/1/report",
            Some(r#"{"worker":"w","findings":[],"scanner_version":"x","duration_ms":1}"#),
            [401; 6],
        ),
        row(
            M::POST,
            "/internal/v1/scan-jobs/{id}/fail",
            "/internal/v1/scan-jobs/1/fail",
            Some(r#"{"worker":"w","error":"x"}"#),
            [401; 6],
        ),
        // Authorization is decided before the body is read: members get as far as being told
        // the JSON body is not an upload (422), everyone else is stopped at 401/403.
        row(
            M::PUT,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}",
            "/api/v1/plugins/acme/widget/versions/9.0.{i}",
            Some(r#"{"not":"an upload"}"#),
            [401, 403, 422, 422, 403, 422],
        ),
        row(
            M::POST,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}/yank",
            "/api/v1/plugins/acme/widget/versions/1.0.0/yank",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 200, 200, 403, 200],
        ),
        row(
            M::POST,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}/unyank",
            "/api/v1/plugins/acme/widget/versions/1.0.0/unyank",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 200, 200, 403, 200],
        ),
        row(
            M::GET,
            "/api/v1/plugins",
            "/api/v1/plugins?q=widget",
            None,
            public,
        ),
        row(
            M::GET,
            "/api/v1/plugins/{publisher}/{name}",
            "/api/v1/plugins/acme/widget",
            None,
            public,
        ),
        row(
            M::GET,
            "/api/v1/plugins/{publisher}/{name}/versions",
            "/api/v1/plugins/acme/widget/versions",
            None,
            public,
        ),
        // A version waiting for review is visible to its publisher and to moderators only.
        row(
            M::GET,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}",
            "/api/v1/plugins/acme/widget/versions/1.1.0",
            None,
            [404, 404, 200, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/plugins/{publisher}/{name}/reports",
            "/api/v1/plugins/acme/widget/reports",
            Some(r#"{"reason":"matrix report","version":"1.0.0"}"#),
            [401, 201, 201, 201, 201, 201],
        ),
        // Moderation takes the reviewer role (or admin) through a login session. Each caller
        // acts on its own version (`{i}`) so one caller's success does not change the next's.
        row(
            M::GET,
            "/api/v1/review/queue",
            "/api/v1/review/queue?order=risk",
            None,
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/review/versions/{publisher}/{name}/{version}",
            "/api/v1/review/versions/acme/widget/1.1.0",
            None,
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/versions/{publisher}/{name}/{version}/claim",
            "/api/v1/review/versions/acme/queued/1.0.{i}/claim",
            None,
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/versions/{publisher}/{name}/{version}/approve",
            "/api/v1/review/versions/acme/queued/2.0.{i}/approve",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/versions/{publisher}/{name}/{version}/reject",
            "/api/v1/review/versions/acme/queued/3.0.{i}/reject",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/versions/{publisher}/{name}/{version}/block",
            "/api/v1/review/versions/acme/queued/4.0.{i}/block",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/versions/{publisher}/{name}/{version}/unblock",
            "/api/v1/review/versions/acme/queued/5.0.{i}/unblock",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/plugins/{publisher}/{name}/block",
            "/api/v1/review/plugins/acme/killed{i}/block",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/plugins/{publisher}/{name}/unblock",
            "/api/v1/review/plugins/acme/revived{i}/unblock",
            Some(r#"{"reason":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/review/reports",
            "/api/v1/review/reports?state=open",
            None,
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/review/reports/{id}/resolve",
            "/api/v1/review/reports/{report}/resolve",
            Some(r#"{"resolution":"matrix"}"#),
            [401, 403, 403, 403, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/admin/audit-log",
            "/api/v1/admin/audit-log?target=plugin:acme/killed4",
            None,
            [401, 403, 403, 403, 403, 200],
        ),
        row(
            M::GET,
            "/api/v1/admin/users",
            "/api/v1/admin/users",
            None,
            [401, 403, 403, 403, 403, 200],
        ),
        row(
            M::PATCH,
            "/api/v1/admin/users/{username}",
            "/api/v1/admin/users/target{i}",
            Some(r#"{"role":"reviewer"}"#),
            [401, 403, 403, 403, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/admin/users/{username}",
            "/api/v1/admin/users/victim{i}",
            None,
            [401, 403, 403, 403, 403, 204],
        ),
        row(
            M::GET,
            "/blobs/sha256/{hex}",
            "/blobs/sha256/{blob}",
            None,
            public,
        ),
        row(M::GET, "/tuf/{file}", "/tuf/timestamp.json", None, public),
        // Hosts check anonymously; a signed-in caller is answered the same.
        row(
            M::POST,
            "/api/v1/updates/check",
            "/api/v1/updates/check",
            Some(
                r#"{"host":{"app_id":"org.example","version":"1.0.0","platform":"any"},"install_id":"matrix-{i}-install","installed":[]}"#,
            ),
            public,
        ),
        row(
            M::PUT,
            "/api/v1/plugins/{publisher}/{name}/versions/{version}/rollout",
            "/api/v1/plugins/acme/widget/versions/1.0.0/rollout",
            Some(r#"{"percent":50,"paused":false}"#),
            [401, 403, 200, 200, 403, 200],
        ),
        row(M::GET, "/healthz", "/healthz", None, public),
        row(M::GET, "/readyz", "/readyz", None, public),
        row(M::GET, "/metrics", "/metrics", None, public),
        row(
            M::GET,
            "/.well-known/jwks.json",
            "/.well-known/jwks.json",
            None,
            public,
        ),
        // Last: it ends the caller's session.
        row(
            M::POST,
            "/api/v1/auth/logout",
            "/api/v1/auth/logout",
            None,
            [401, 204, 204, 204, 204, 204],
        ),
    ]
}

#[test]
fn every_documented_operation_has_a_matrix_row() {
    let doc = serde_json::to_value(plugstore_server::router::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let covered: BTreeSet<_> = rows()
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "endpoints without a row in the authorization matrix: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "matrix rows for endpoints that do not exist: {stale:?}"
    );
}

both_stacks! {
    async fn endpoint_role_matrix(app) {
        // The cast.
        let stranger = app.signup("stranger").await;
        let maintainer = app.signup("maintainer").await;
        let owner = app.signup("owner").await;
        let reviewer = app.signup("rita").await;
        app.set_role(&reviewer, "reviewer").await;
        let admin = app.signup("admin-user").await;
        app.set_role(&admin, "admin").await;
        app.publisher(&owner, "acme").await;
        plugstore_server::release_metadata::ensure_repository(&app.app).await.unwrap();
        let added = app.call(Method::PUT, "/api/v1/publishers/acme/members/maintainer", Some(&owner.access), Some(serde_json::json!({"role": "maintainer"}))).await;
        assert_eq!(added.status, 200);
        app.seed_plugin("acme", "widget", &[("1.0.0", "published"), ("1.1.0", "pending_review")]).await;
        // A scan report on 1.0.0, readable by members and moderators only.
        let widget_version: i64 = sqlx::query_scalar("SELECT id FROM plugin_versions WHERE version = '1.0.0'").fetch_one(&app.app.db.pool).await.unwrap();
        let job: i64 = sqlx::query_scalar("INSERT INTO scan_jobs (version_id, state, created_at, updated_at) VALUES ($1, 'done', 0, 0) RETURNING id").bind(widget_version).fetch_one(&app.app.db.pool).await.unwrap();
        sqlx::query("INSERT INTO scan_reports (version_id, job_id, verdict, max_severity, report, scanner_version, worker, created_at) VALUES ($1, $2, 'published', 'info', '{\"findings\":[]}', 't', 'w', 0)").bind(widget_version).bind(job).execute(&app.app.db.pool).await.unwrap();
        // Moderation targets, one per caller: `queued` versions by major (claim, approve,
        // reject, block, unblock), plugins for the kill switch, open abuse reports.
        let queued: Vec<(String, &str)> = (0..CALLERS.len())
            .flat_map(|i| {
                [(1, "pending_review"), (2, "pending_review"), (3, "pending_review"), (4, "published"), (5, "blocked")]
                    .map(|(major, state)| (format!("{major}.0.{i}"), state))
            })
            .collect();
        let queued: Vec<(&str, &str)> = queued.iter().map(|(v, s)| (v.as_str(), *s)).collect();
        let queued_id = app.seed_plugin("acme", "queued", &queued).await;
        let mut report_ids = Vec::new();
        for i in 0..CALLERS.len() {
            app.seed_plugin("acme", &format!("killed{i}"), &[("1.0.0", "published")]).await;
            let revived = app.seed_plugin("acme", &format!("revived{i}"), &[("1.0.0", "published")]).await;
            sqlx::query("UPDATE plugins SET blocked_at = 1, blocked_reason = 'seeded' WHERE id = $1").bind(revived).execute(&app.app.db.pool).await.unwrap();
            let id: i64 = sqlx::query_scalar("INSERT INTO abuse_reports (plugin_id, reporter_id, reason, state, created_at) SELECT $1, id, 'seeded', 'open', 1 FROM users WHERE username = 'stranger' RETURNING id")
                .bind(queued_id).fetch_one(&app.app.db.pool).await.unwrap();
            report_ids.push(id.to_string());
        }
        let tokens: [Option<String>; 6] = [None, Some(stranger.access), Some(maintainer.access), Some(owner.access), Some(reviewer.access), Some(admin.access)];
        for i in 0..CALLERS.len() {
            app.signup(&format!("target{i}")).await;
            app.signup(&format!("victim{i}")).await;
        }
        let blob = app.app.blobs.put(&mut &b"matrix blob"[..], None, None).await.unwrap();
        let csr = crate::certificates::openssl_csr(app.dir.path(), "matrix", "ec:prime256v1");
        let cert = app.post("/api/v1/publishers/acme/certificates", tokens[3].as_deref(), serde_json::json!({"csr": csr})).await.json()["fingerprint"].as_str().unwrap().to_owned();
        let csr_json = serde_json::to_string(&csr).unwrap();
        let csr_json = &csr_json[1..csr_json.len() - 1];

        let mut failures = Vec::new();
        for row in rows() {
            for (i, caller) in CALLERS.iter().enumerate() {
                let token = tokens[i].as_deref();
                let mut path = row.path.replace("{i}", &i.to_string()).replace("{blob}", &blob.digest.to_hex()).replace("{cert}", &cert).replace("{report}", &report_ids[i]);
                if path.contains("{token}") {
                    // The caller's own token; anonymous gets someone else's to try.
                    let creator = token.unwrap_or(tokens[1].as_deref().unwrap());
                    let made = app.post("/api/v1/tokens", Some(creator), serde_json::json!({"name": "victim", "scopes": ["yank"]})).await;
                    path = path.replace("{token}", &made.json()["id"].to_string());
                }
                let body = match row.body {
                    Some(template) => {
                        let mut text = template.replace("{i}", &i.to_string()).replace("{password}", PASSWORD).replace("{csr}", csr_json);
                        if text.contains("{refresh}") {
                            text = text.replace("{refresh}", &app.login("stranger").await.refresh);
                        }
                        Some(serde_json::from_str::<Value>(&text).unwrap())
                    }
                    None => None,
                };
                let response = app.call(row.method.clone(), &path, token, body).await;
                if response.status.as_u16() != row.expect[i] {
                    failures.push(format!(
                        "{} {} as {caller}: expected {}, got {} {}",
                        row.method, path, row.expect[i], response.status, String::from_utf8_lossy(&response.body)
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "authorization matrix mismatches:\n{}", failures.join("\n"));
    }
}
