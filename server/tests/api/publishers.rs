//! Publishers: names, ownership, members, the last-owner rule.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::both_stacks;

both_stacks! {
    async fn publisher_names_are_checked_and_unique(app) {
        let alice = app.signup("alice").await;
        let bob = app.signup("bob").await;
        for (name, expected) in [("Acme", "/problems/invalid-input"), ("a", "/problems/invalid-input"), ("ac_me", "/problems/invalid-input"), ("plugstore", "/problems/reserved-name"), ("official", "/problems/reserved-name")] {
            let response = app.post("/api/v1/publishers", Some(&alice.access), json!({"name": name})).await;
            assert_eq!(response.problem_type(), expected, "{name}");
        }
        let created = app.post("/api/v1/publishers", Some(&alice.access), json!({"name": "acme", "display_name": "ACME Corp"})).await;
        assert_eq!(created.status, StatusCode::CREATED);
        assert_eq!(created.json()["display_name"], "ACME Corp");
        let taken = app.post("/api/v1/publishers", Some(&bob.access), json!({"name": "acme"})).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        let members = app.get("/api/v1/publishers/acme/members", None).await.json();
        assert_eq!(members, json!([{"username": "alice", "role": "owner", "added_at": members[0]["added_at"]}]));
        assert_eq!(app.get("/api/v1/publishers/nope", None).await.problem_type(), "/problems/not-found");
    }

    async fn members_are_managed_by_owners_and_one_owner_always_remains(app) {
        let alice = app.signup("alice").await;
        let bob = app.signup("bob").await;
        app.signup("carol").await;
        app.publisher(&alice, "acme").await;
        let put = |who: &str, role: &str, token: String| {
            let path = format!("/api/v1/publishers/acme/members/{who}");
            let body = json!({"role": role});
            let app = &app;
            async move { app.call(Method::PUT, &path, Some(&token), Some(body)).await }
        };
        assert_eq!(put("bob", "maintainer", alice.access.clone()).await.status, StatusCode::OK);
        // A maintainer cannot promote anyone, including themselves.
        assert_eq!(put("bob", "owner", bob.access.clone()).await.status, StatusCode::FORBIDDEN);
        assert_eq!(put("carol", "maintainer", bob.access.clone()).await.status, StatusCode::FORBIDDEN);
        assert_eq!(put("nobody-here", "maintainer", alice.access.clone()).await.status, StatusCode::NOT_FOUND);

        // The only owner can neither demote nor remove themselves.
        let demote = put("alice", "maintainer", alice.access.clone()).await;
        assert_eq!(demote.status, StatusCode::CONFLICT);
        assert!(demote.json()["detail"].as_str().unwrap().contains("at least one owner"));
        let leave = app.call(Method::DELETE, "/api/v1/publishers/acme/members/alice", Some(&alice.access), None).await;
        assert_eq!(leave.status, StatusCode::CONFLICT);

        // With a second owner, the first may step down.
        assert_eq!(put("bob", "owner", alice.access.clone()).await.status, StatusCode::OK);
        assert_eq!(put("alice", "maintainer", alice.access.clone()).await.status, StatusCode::OK);
        let members = app.get("/api/v1/publishers/acme/members", None).await.json();
        let roles: Vec<_> = members.as_array().unwrap().iter().map(|m| (m["username"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned())).collect();
        assert_eq!(roles, vec![("bob".into(), "owner".into()), ("alice".into(), "maintainer".into())]);
        // A maintainer may leave on their own.
        let left = app.call(Method::DELETE, "/api/v1/publishers/acme/members/alice", Some(&alice.access), None).await;
        assert_eq!(left.status, StatusCode::NO_CONTENT);
        let gone = app.call(Method::DELETE, "/api/v1/publishers/acme/members/alice", Some(&bob.access), None).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);

        // Every change that was made is in the audit log, newest first; the refused ones are not.
        let admin = app.signup("root-admin").await;
        app.set_role(&admin, "admin").await;
        let log = app.get("/api/v1/admin/audit-log?target=publisher:acme", Some(&admin.access)).await.json();
        let entries: Vec<_> = log["items"].as_array().unwrap().iter().map(|e| [&e["actor"], &e["action"], &e["reason"]].map(|v| v.as_str().unwrap_or_default().to_owned())).collect();
        assert_eq!(entries, [
            ["alice", "member.remove", "alice"],
            ["alice", "member.set", "alice: maintainer"],
            ["alice", "member.set", "bob: owner"],
            ["alice", "member.set", "bob: maintainer"],
            ["alice", "publisher.create", ""],
        ].map(|entry| entry.map(str::to_owned)));
    }

    async fn publishers_list_with_cursor_pagination(app) {
        let alice = app.signup("alice").await;
        for i in 0..5 {
            app.publisher(&alice, &format!("pub{i}")).await;
        }
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/publishers?limit=2&cursor={c}"),
                None => "/api/v1/publishers?limit=2".into(),
            };
            let page = app.get(&path, None).await.json();
            pages += 1;
            names.extend(page["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names, vec!["pub0", "pub1", "pub2", "pub3", "pub4"]);
        assert_eq!(app.get("/api/v1/publishers?cursor=garbage", None).await.problem_type(), "/problems/invalid-input");
        assert_eq!(app.get("/api/v1/publishers?limit=1000", None).await.problem_type(), "/problems/invalid-input");
    }
}
