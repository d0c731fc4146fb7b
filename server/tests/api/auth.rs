//! Accounts, sessions, and the attacks on access and refresh tokens.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plugstore_server::auth::jwt::{AccessClaims, KeyRing};
use serde_json::json;

use crate::both_stacks;
use crate::harness::{PASSWORD, TestApp};

fn valid_claims(app: &TestApp, user_id: i64, sid: &str) -> AccessClaims {
    let now = plugstore_server::db::now();
    AccessClaims {
        iss: app.app.settings.auth.issuer.clone(),
        aud: app.app.settings.auth.audience.clone(),
        sub: user_id.to_string(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: "test".into(),
        sid: sid.into(),
    }
}

/// The session id (`sid` claim) of an access token, read without verification.
fn sid_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let response = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what} was accepted: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.problem_type(), "/problems/unauthorized", "{what}");
}

both_stacks! {
    async fn register_login_me_logout(app) {
        let alice = app.signup("alice").await;
        let me = app.get("/api/v1/me", Some(&alice.access)).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.json()["username"], "alice");
        assert_eq!(me.json()["role"], "developer");
        let dup = app.post("/api/v1/auth/register", None, json!({"username": "alice", "email": "other@example.org", "password": PASSWORD})).await;
        assert_eq!(dup.status, StatusCode::CONFLICT);
        assert_eq!(dup.problem_type(), "/problems/conflict");
        let wrong = app.post("/api/v1/auth/login", None, json!({"username": "alice", "password": "wrong password!"})).await;
        assert_eq!(wrong.problem_type(), "/problems/invalid-credentials");
        let nobody = app.post("/api/v1/auth/login", None, json!({"username": "nobody", "password": PASSWORD})).await;
        assert_eq!(nobody.problem_type(), "/problems/invalid-credentials");
        // Logout ends the session at once: its access token stops working before it expires.
        let out = app.post("/api/v1/auth/logout", Some(&alice.access), json!({})).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        assert_refused(&app, &alice.access, "access token after logout").await;
        let refresh = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
        assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    }

    async fn registration_validates_input(app) {
        let cases = [
            (json!({"username": "Bob", "email": "b@example.org", "password": PASSWORD}), "/problems/invalid-input"),
            (json!({"username": "admin", "email": "b@example.org", "password": PASSWORD}), "/problems/reserved-name"),
            (json!({"username": "bob", "email": "not-an-email", "password": PASSWORD}), "/problems/invalid-input"),
            (json!({"username": "bob", "email": "b@example.org", "password": "short"}), "/problems/invalid-input"),
            (json!({"username": "bob", "email": "b@example.org", "password": PASSWORD, "role": "admin"}), "/problems/invalid-input"),
        ];
        for (body, expected) in cases {
            let response = app.post("/api/v1/auth/register", None, body.clone()).await;
            assert_eq!(response.problem_type(), expected, "{body}");
        }
    }

    async fn refresh_rotates_and_reuse_revokes_the_family(app) {
        let alice = app.signup("alice").await;
        let first = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
        assert_eq!(first.status, StatusCode::OK, "{}", String::from_utf8_lossy(&first.body));
        let rotated = first.json();
        let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
        let new_access = rotated["access_token"].as_str().unwrap().to_owned();
        assert_ne!(new_refresh, alice.refresh);
        assert_eq!(app.get("/api/v1/me", Some(&new_access)).await.status, StatusCode::OK);

        // An attacker replays the spent token: refused, and the whole family dies with it.
        let replay = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
        assert_eq!(replay.problem_type(), "/problems/refresh-token-reused");
        let legit = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": new_refresh})).await;
        assert_eq!(legit.status, StatusCode::UNAUTHORIZED, "the rotated token must die with its family");
        assert_refused(&app, &new_access, "access token of a revoked family").await;
        // Other sessions of the same user are unaffected.
        let other = app.login("alice").await;
        assert_eq!(app.get("/api/v1/me", Some(&other.access)).await.status, StatusCode::OK);
    }

    async fn concurrent_refreshes_with_one_token_revoke_the_session(app) {
        let alice = app.signup("alice").await;
        let body = json!({"refresh_token": alice.refresh});
        let (a, b) = tokio::join!(
            app.post("/api/v1/auth/refresh", None, body.clone()),
            app.post("/api/v1/auth/refresh", None, body.clone())
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 401], "exactly one refresh wins");
        let winner = if a.status == StatusCode::OK { a } else { b };
        // The race itself is evidence of theft: the winner's successor dies with the family.
        let successor = winner.json()["refresh_token"].as_str().unwrap().to_owned();
        let after = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": successor})).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    }

    async fn jwt_attacks_are_refused(app) {
        let alice = app.signup("alice").await;
        let bob = app.signup("bob").await;
        let sid = sid_of(&alice.access);
        let kid = app.app.keys.kids()[0].clone();
        let claims = serde_json::to_value(valid_claims(&app, alice.id, &sid)).unwrap();
        // A correctly signed token built by the test is accepted: the attacks below differ only
        // in what they attack.
        let genuine = app.app.keys.sign(&valid_claims(&app, alice.id, &sid)).unwrap();
        assert_eq!(app.get("/api/v1/me", Some(&genuine)).await.status, StatusCode::OK);

        // alg: none, with and without a signature segment.
        let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})), b64(&claims));
        assert_refused(&app, &none, "alg none").await;
        let none_upper = format!("{}.{}.", b64(&json!({"alg": "NONE", "kid": kid})), b64(&claims));
        assert_refused(&app, &none_upper, "alg NONE").await;

        // HS256 "signed" with the public key (key confusion).
        let jwks = app.get("/.well-known/jwks.json", None).await.json();
        for secret in [jwks.to_string(), jwks["keys"][0].to_string(), jwks["keys"][0]["x"].as_str().unwrap().to_owned()] {
            let signing_input = format!("{}.{}", b64(&json!({"alg": "HS256", "typ": "JWT", "kid": kid})), b64(&claims));
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
            let tag = ring::hmac::sign(&key, signing_input.as_bytes());
            assert_refused(&app, &format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())), "HS256 with public key").await;
        }

        let leeway = app.app.settings.auth.leeway_secs as i64;
        let now = plugstore_server::db::now();
        let mut expired = valid_claims(&app, alice.id, &sid);
        expired.exp = now - leeway - 5;
        expired.iat = now - 1000;
        expired.nbf = now - 1000;
        assert_refused(&app, &app.app.keys.sign(&expired).unwrap(), "expired").await;
        let mut early = valid_claims(&app, alice.id, &sid);
        early.nbf = now + leeway + 60;
        assert_refused(&app, &app.app.keys.sign(&early).unwrap(), "not yet valid").await;
        let mut wrong_iss = valid_claims(&app, alice.id, &sid);
        wrong_iss.iss = "https://evil.example".into();
        assert_refused(&app, &app.app.keys.sign(&wrong_iss).unwrap(), "wrong iss").await;
        let mut wrong_aud = valid_claims(&app, alice.id, &sid);
        wrong_aud.aud = "some-other-service".into();
        assert_refused(&app, &app.app.keys.sign(&wrong_aud).unwrap(), "wrong aud").await;

        // A well-formed token from a key the store never had.
        let foreign = KeyRing::open(&app.dir.path().join("foreign-keys")).unwrap();
        assert_refused(&app, &foreign.sign(&valid_claims(&app, alice.id, &sid)).unwrap(), "unknown kid").await;
        // The store's own signature under a kid it does not know.
        let parts: Vec<&str> = genuine.split('.').collect();
        let renamed = format!("{}.{}.{}", b64(&json!({"alg": "ES256", "kid": "no-such-key"})), parts[1], parts[2]);
        assert_refused(&app, &renamed, "renamed kid").await;
        let kidless = format!("{}.{}.{}", b64(&json!({"alg": "ES256"})), parts[1], parts[2]);
        assert_refused(&app, &kidless, "missing kid").await;

        // Tampered payload: alice's signature on bob's id.
        let mut forged = claims.clone();
        forged["sub"] = json!(bob.id.to_string());
        assert_refused(&app, &format!("{}.{}.{}", parts[0], b64(&forged), parts[2]), "tampered payload").await;
        // Garbage and the wrong scheme.
        assert_refused(&app, "not.a.jwt", "garbage").await;
        let basic = app.send(axum::http::Request::get("/api/v1/me").header("authorization", "Basic YWxpY2U6cHc=").body(axum::body::Body::empty()).unwrap()).await;
        assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
        // A broken token is refused even on a public endpoint rather than silently ignored.
        assert_eq!(app.get("/api/v1/publishers", Some("not.a.jwt")).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn disabled_and_deleted_users_lose_access(app) {
        let root = app.signup("root-admin").await;
        app.set_role(&root, "admin").await;
        let alice = app.signup("alice").await;
        let bob = app.signup("bob").await;
        let token = app.post("/api/v1/tokens", Some(&bob.access), json!({"name": "ci", "scopes": ["publish"]})).await.json()["secret"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);

        let disabled = app.call(axum::http::Method::PATCH, "/api/v1/admin/users/alice", Some(&root.access), Some(json!({"disabled": true}))).await;
        assert_eq!(disabled.status, StatusCode::OK, "{}", String::from_utf8_lossy(&disabled.body));
        assert_refused(&app, &alice.access, "token of a disabled user").await;
        let login = app.post("/api/v1/auth/login", None, json!({"username": "alice", "password": PASSWORD})).await;
        assert_eq!(login.problem_type(), "/problems/invalid-credentials");
        let refresh = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
        assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
        // Re-enabled, the same session works again (disabling is reversible, deletion is not).
        app.call(axum::http::Method::PATCH, "/api/v1/admin/users/alice", Some(&root.access), Some(json!({"disabled": false}))).await;
        assert_eq!(app.get("/api/v1/me", Some(&alice.access)).await.status, StatusCode::OK);

        let deleted = app.call(axum::http::Method::DELETE, "/api/v1/admin/users/bob", Some(&root.access), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_refused(&app, &bob.access, "token of a deleted user").await;
        assert_refused(&app, &token, "API token of a deleted user").await;
        let again = app.post("/api/v1/auth/register", None, json!({"username": "bob", "email": "new@example.org", "password": PASSWORD})).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "a deleted username is never reused");

        // Each change is in the audit log, once: enabling an enabled user changes nothing.
        app.call(axum::http::Method::PATCH, "/api/v1/admin/users/alice", Some(&root.access), Some(json!({"role": "reviewer"}))).await;
        app.call(axum::http::Method::PATCH, "/api/v1/admin/users/alice", Some(&root.access), Some(json!({"disabled": false}))).await;
        let (app, root) = (&app, &root);
        let actions = |target: &'static str| async move {
            let log = app.get(&format!("/api/v1/admin/audit-log?target={target}"), Some(&root.access)).await.json();
            log["items"].as_array().unwrap().iter().map(|e| (e["actor"].as_str().unwrap().to_owned(), e["action"].as_str().unwrap().to_owned())).collect::<Vec<_>>()
        };
        let by_root = |actions: &[&str]| actions.iter().map(|a| ("root-admin".to_owned(), (*a).to_owned())).collect::<Vec<_>>();
        assert_eq!(actions("user:alice").await, by_root(&["user.role", "user.enable", "user.disable"]));
        // bob's own token is in his account's log, which outlives the account.
        assert_eq!(actions("user:bob").await, [by_root(&["user.delete"]), vec![("bob".to_owned(), "token.create".to_owned())]].concat());
    }

    async fn rotated_jwt_keys_keep_sessions_and_publish_both(app) {
        let alice = app.signup("alice").await;
        let new_kid = app.app.keys.rotate().unwrap();
        assert_eq!(app.get("/api/v1/me", Some(&alice.access)).await.status, StatusCode::OK);
        let jwks = app.get("/.well-known/jwks.json", None).await.json();
        let kids: Vec<_> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&new_kid));
        // The new key is published at once but signs only after the activation delay, so
        // replicas that have not reloaded yet never meet it (the switch is unit-tested in jwt.rs).
        let old_kid = jsonwebtoken::decode_header(&alice.access).unwrap().kid.unwrap();
        let fresh = app.login("alice").await;
        let header = jsonwebtoken::decode_header(&fresh.access).unwrap();
        assert_eq!(header.kid.as_deref(), Some(old_kid.as_str()));
        assert_ne!(old_kid, new_kid);
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    }
}

#[tokio::test]
async fn login_is_rate_limited_with_retry_after() {
    let app = TestApp::start_with(crate::harness::Stack::Embedded, |s| {
        s.rate_limits.login_per_minute = 3
    })
    .await
    .unwrap();
    let body = json!({"username": "nobody", "password": "whatever-password"});
    for _ in 0..3 {
        assert_eq!(
            app.post("/api/v1/auth/login", None, body.clone())
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app.post("/api/v1/auth/login", None, body).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem_type(), "/problems/rate-limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn behind_a_proxy_logins_are_limited_by_the_address_the_proxy_appended() {
    let app = TestApp::start_with(crate::harness::Stack::Embedded, |s| {
        s.rate_limits.login_per_minute = 1;
        s.http.trust_forwarded_for = true;
    })
    .await
    .unwrap();
    // The client forges a first line of its own each time; the proxy adds its line last,
    // as HAProxy's `option forwardfor` does, or appends to the client's line.
    let login = |forwarded: Vec<String>| {
        let app = &app;
        async move {
            let mut request = axum::http::Request::post("/api/v1/auth/login")
                .header("content-type", "application/json");
            for line in forwarded {
                request = request.header("x-forwarded-for", line);
            }
            let body = json!({"username": "nobody", "password": "whatever-password"}).to_string();
            app.send(request.body(axum::body::Body::from(body)).unwrap())
                .await
                .status
        }
    };
    let client = "192.0.2.1";
    assert_eq!(
        login(vec!["10.0.0.1".into(), client.into()]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(vec!["10.0.0.2".into(), client.into()]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(vec![format!("10.0.0.3, {client}")]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket.
    assert_eq!(
        login(vec!["10.0.0.1".into(), "192.0.2.2".into()]).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn registration_and_token_creation_are_rate_limited() {
    let app = TestApp::start_with(crate::harness::Stack::Embedded, |s| {
        s.rate_limits.register_per_hour = 2;
        s.rate_limits.token_create_per_hour = 1;
    })
    .await
    .unwrap();
    let alice = app.signup("alice").await;
    app.signup("bob").await;
    let third = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "carol", "email": "c@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.header("retry-after").is_some());
    let body = json!({"name": "ci", "scopes": ["publish"]});
    assert_eq!(
        app.post("/api/v1/tokens", Some(&alice.access), body.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/v1/tokens", Some(&alice.access), body)
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
