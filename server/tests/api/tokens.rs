//! API tokens: shown once, hashed at rest, scoped, limited to a publisher, revocable, expiring.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::both_stacks;

both_stacks! {
    async fn tokens_are_shown_once_and_stored_hashed(app) {
        let alice = app.signup("alice").await;
        let created = app.post("/api/v1/tokens", Some(&alice.access), json!({"name": "ci", "scopes": ["publish", "yank"]})).await;
        assert_eq!(created.status, StatusCode::CREATED);
        let body = created.json();
        let secret = body["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("pst_") && secret.len() > 40, "{secret}");
        assert_eq!(body["scopes"], json!(["publish", "yank"]));
        // Default lifetime: 90 days.
        let listed = app.get("/api/v1/tokens", Some(&alice.access)).await;
        assert!(!String::from_utf8_lossy(&listed.body).contains(&secret[4..]), "a list must never show secrets");
        assert_eq!(listed.json()["items"][0]["name"], "ci");
        let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_all(&app.app.db.pool).await.unwrap();
        assert_eq!(stored, vec![plugstore_server::secrets::sha256_hex(&secret)]);
        let (created_at, expires_at): (i64, i64) = sqlx::query_as("SELECT created_at, expires_at FROM api_tokens").fetch_one(&app.app.db.pool).await.unwrap();
        assert_eq!(expires_at - created_at, 90 * 86_400);

        // The token works as a Bearer credential ...
        let me = app.get("/api/v1/me", Some(&secret)).await;
        assert_eq!(me.json()["username"], "alice");
        // ... but cannot mint tokens, manage tokens, or act as a session.
        assert_eq!(app.post("/api/v1/tokens", Some(&secret), json!({"name": "x", "scopes": ["publish"]})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/api/v1/tokens", Some(&secret)).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.post("/api/v1/publishers", Some(&secret), json!({"name": "acme"})).await.status, StatusCode::FORBIDDEN);

        let id = body["id"].as_i64().unwrap();
        assert_eq!(app.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&alice.access), None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get("/api/v1/me", Some(&secret)).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/api/v1/tokens", Some(&alice.access)).await.json()["items"][0]["revoked"], true);
        assert_eq!(app.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&alice.access), None).await.status, StatusCode::NO_CONTENT);

        // The account's log says which tokens it made and revoked (once), never their secrets;
        // refused attempts leave nothing.
        let limited = app.post("/api/v1/tokens", Some(&alice.access), json!({"name": "deploy", "scopes": ["publish"], "publisher": "acme"})).await;
        assert_eq!(limited.status, StatusCode::NOT_FOUND);
        app.publisher(&alice, "acme").await;
        let limited = app.post("/api/v1/tokens", Some(&alice.access), json!({"name": "deploy", "scopes": ["publish"], "publisher": "acme", "plugin": "hello", "expires_in_days": 7})).await.json();
        let root = app.signup("root-admin").await;
        app.set_role(&root, "admin").await;
        let log = app.get("/api/v1/admin/audit-log?target=user:alice", Some(&root.access)).await.json();
        let entries: Vec<_> = log["items"].as_array().unwrap().iter().map(|e| [&e["actor"], &e["action"], &e["reason"]].map(|v| v.as_str().unwrap().to_owned())).collect();
        let limited_id = limited["id"].as_i64().unwrap();
        assert_eq!(entries, [
            ["alice".to_owned(), "token.create".to_owned(), format!("#{limited_id} deploy: publish for acme/hello, 7 days")],
            ["alice".to_owned(), "token.revoke".to_owned(), format!("#{id} ci")],
            ["alice".to_owned(), "token.create".to_owned(), format!("#{id} ci: publish yank, 90 days")],
        ]);
        assert!(!String::from_utf8_lossy(&app.get("/api/v1/admin/audit-log", Some(&root.access)).await.body).contains(&secret[4..]));
    }

    async fn token_scopes_and_publisher_limits_are_enforced(app) {
        let alice = app.signup("alice").await;
        let bob = app.signup("bob").await;
        app.publisher(&alice, "acme").await;
        app.publisher(&alice, "other").await;
        let make = |body: serde_json::Value| {
            let app = &app;
            let access = alice.access.clone();
            async move { app.post("/api/v1/tokens", Some(&access), body).await }
        };
        let publish_only = make(json!({"name": "p", "scopes": ["publish"]})).await.json()["secret"].as_str().unwrap().to_owned();
        let manage_acme = make(json!({"name": "m", "scopes": ["manage-publisher"], "publisher": "acme"})).await.json()["secret"].as_str().unwrap().to_owned();
        let add_bob = |publisher: &str, token: String| {
            let path = format!("/api/v1/publishers/{publisher}/members/bob");
            let app = &app;
            async move { app.call(Method::PUT, &path, Some(&token), Some(json!({"role": "maintainer"}))).await }
        };
        let denied = add_bob("acme", publish_only).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert!(denied.json()["detail"].as_str().unwrap().contains("manage-publisher"));
        assert_eq!(add_bob("other", manage_acme.clone()).await.status, StatusCode::FORBIDDEN, "limited to acme");
        assert_eq!(add_bob("acme", manage_acme).await.status, StatusCode::OK);

        // Limits are validated at creation.
        assert_eq!(make(json!({"name": "x", "scopes": []})).await.problem_type(), "/problems/invalid-input");
        assert_eq!(make(json!({"name": "x", "scopes": ["root"]})).await.problem_type(), "/problems/invalid-input");
        assert_eq!(make(json!({"name": "x", "scopes": ["publish"], "expires_in_days": 0})).await.problem_type(), "/problems/invalid-input");
        assert_eq!(make(json!({"name": "x", "scopes": ["publish"], "expires_in_days": 5000})).await.problem_type(), "/problems/invalid-input");
        assert_eq!(make(json!({"name": "x", "scopes": ["publish"], "plugin": "widget"})).await.problem_type(), "/problems/invalid-input");
        let scoped = make(json!({"name": "x", "scopes": ["publish"], "publisher": "acme", "plugin": "widget"})).await.json();
        assert_eq!((scoped["publisher"].as_str(), scoped["plugin"].as_str()), (Some("acme"), Some("widget")));
        // Members and certificates belong to the whole publisher, out of a plugin token's reach:
        // refused at creation, and refused at use for a token made before that was checked.
        let refused = make(json!({"name": "x", "scopes": ["publish", "manage-publisher"], "publisher": "acme", "plugin": "widget"})).await;
        assert_eq!(refused.problem_type(), "/problems/invalid-input");
        assert!(refused.json()["detail"].as_str().unwrap().contains("whole publisher"));
        let widget_only = make(json!({"name": "w", "scopes": ["publish"], "publisher": "acme", "plugin": "widget"})).await.json();
        sqlx::query("UPDATE api_tokens SET scopes = 'publish manage-publisher' WHERE id = $1")
            .bind(widget_only["id"].as_i64().unwrap())
            .execute(&app.app.db.pool)
            .await
            .unwrap();
        let widget_secret = widget_only["secret"].as_str().unwrap().to_owned();
        let escalated = app.call(Method::PUT, "/api/v1/publishers/acme/members/bob", Some(&widget_secret), Some(json!({"role": "owner"}))).await;
        assert_eq!(escalated.status, StatusCode::FORBIDDEN);
        assert!(escalated.json()["detail"].as_str().unwrap().contains("limited to plugin `widget`"));
        let certificate = app.post("/api/v1/publishers/acme/certificates", Some(&widget_secret), json!({"csr": "not reached"})).await;
        assert_eq!(certificate.status, StatusCode::FORBIDDEN);
        // Nobody can limit a token to a publisher they cannot act for.
        let foreign = app.post("/api/v1/tokens", Some(&bob.access), json!({"name": "x", "scopes": ["publish"], "publisher": "other"})).await;
        assert_eq!(foreign.status, StatusCode::FORBIDDEN);
        // Revoking someone else's token is indistinguishable from revoking a missing one.
        let id = scoped["id"].as_i64().unwrap();
        assert_eq!(app.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&bob.access), None).await.status, StatusCode::NOT_FOUND);
    }

    async fn expired_tokens_are_refused(app) {
        let alice = app.signup("alice").await;
        let secret = app.post("/api/v1/tokens", Some(&alice.access), json!({"name": "old", "scopes": ["publish"], "expires_in_days": 1})).await.json()["secret"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/api/v1/me", Some(&secret)).await.status, StatusCode::OK);
        sqlx::query("UPDATE api_tokens SET expires_at = $1").bind(plugstore_server::db::now() - 1).execute(&app.app.db.pool).await.unwrap();
        let refused = app.get("/api/v1/me", Some(&secret)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/api/v1/me", Some("pst_made-up-token")).await.status, StatusCode::UNAUTHORIZED);
    }
}
