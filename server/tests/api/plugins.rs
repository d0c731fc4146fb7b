//! Plugin and version read endpoints: search, pagination, visibility by state.

use axum::http::StatusCode;

use crate::both_stacks;

both_stacks! {
    async fn search_and_read_plugins(app) {
        let alice = app.signup("alice").await;
        app.publisher(&alice, "acme").await;
        app.publisher(&alice, "zeta").await;
        app.seed_plugin("acme", "widget", &[("1.0.0", "published"), ("1.10.0", "published"), ("1.9.0", "published"), ("2.0.0-rc.1", "published"), ("3.0.0", "pending_review")]).await;
        app.seed_plugin("acme", "gadget", &[("0.1.0", "yanked")]).await;
        app.seed_plugin("zeta", "wid_get", &[]).await;

        let all = app.get("/api/v1/plugins", None).await.json();
        assert_eq!(all["items"].as_array().unwrap().len(), 3);
        // A page reads its latest versions in one query; each plugin still gets its own.
        let latest: Vec<(&str, &serde_json::Value)> = all["items"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), &p["latest_version"])).collect();
        assert_eq!(latest, [("acme/widget", &serde_json::json!("2.0.0-rc.1")), ("acme/gadget", &serde_json::Value::Null), ("zeta/wid_get", &serde_json::Value::Null)]);
        let widget = app.get("/api/v1/plugins/acme/widget", None).await.json();
        assert_eq!(widget["id"], "acme/widget");
        // Semver precedence, not string order (1.10.0 > 1.9.0, and 2.0.0-rc.1 above both);
        // versions not published are ignored.
        assert_eq!(widget["latest_version"], "2.0.0-rc.1");
        assert_eq!(app.get("/api/v1/plugins/acme/gadget", None).await.json()["latest_version"], serde_json::Value::Null);

        // Search is case-insensitive and treats LIKE wildcards literally.
        let hits = |q: &str| {
            let app = &app;
            let path = format!("/api/v1/plugins?q={q}");
            async move {
                let page = app.get(&path, None).await.json();
                page["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
            }
        };
        assert_eq!(hits("WIDGET").await, vec!["acme/widget"]);
        assert_eq!(hits("wid_").await, vec!["zeta/wid_get"]);
        assert_eq!(hits("%25").await, Vec::<String>::new());
        assert_eq!(hits("gadget%20plugin").await, vec!["acme/gadget"]);
        let by_publisher = app.get("/api/v1/plugins?publisher=zeta", None).await.json();
        assert_eq!(by_publisher["items"][0]["id"], "zeta/wid_get");
        assert_eq!(app.get("/api/v1/plugins/acme/nope", None).await.problem_type(), "/problems/not-found");
    }

    async fn version_visibility_depends_on_the_caller(app) {
        let alice = app.signup("alice").await;
        let stranger = app.signup("stranger").await;
        let rita = app.signup("rita").await;
        app.set_role(&rita, "reviewer").await;
        app.publisher(&alice, "acme").await;
        app.seed_plugin("acme", "widget", &[("1.0.0", "published"), ("1.1.0", "yanked"), ("1.2.0", "pending_review"), ("1.3.0", "rejected"), ("1.4.0", "blocked")]).await;
        let versions = |token: Option<String>| {
            let app = &app;
            async move {
                let page = app.get("/api/v1/plugins/acme/widget/versions", token.as_deref()).await.json();
                page["items"].as_array().unwrap().iter().map(|v| format!("{}={}", v["version"].as_str().unwrap(), v["state"].as_str().unwrap())).collect::<Vec<_>>()
            }
        };
        let public = vec!["1.0.0=published".to_owned(), "1.1.0=yanked".to_owned()];
        assert_eq!(versions(None).await, public);
        assert_eq!(versions(Some(stranger.access.clone())).await, public);
        assert_eq!(versions(Some(alice.access.clone())).await.len(), 5);
        assert_eq!(versions(Some(rita.access.clone())).await.len(), 5);
        // Store-wide roles act only through a session: the reviewer's API token sees what the
        // public sees.
        let rita_token = app.post("/api/v1/tokens", Some(&rita.access), serde_json::json!({"name": "t", "scopes": ["publish"]})).await.json()["secret"].as_str().unwrap().to_owned();
        assert_eq!(versions(Some(rita_token)).await, public);
        // A member's token limited to another publisher does not see this one's hidden versions.
        app.publisher(&alice, "other").await;
        let elsewhere = app.post("/api/v1/tokens", Some(&alice.access), serde_json::json!({"name": "t", "scopes": ["publish"], "publisher": "other"})).await.json()["secret"].as_str().unwrap().to_owned();
        assert_eq!(versions(Some(elsewhere)).await, public);
        assert_eq!(app.get("/api/v1/plugins/acme/widget/versions/1.4.0", None).await.status, StatusCode::NOT_FOUND);
        let one = app.get("/api/v1/plugins/acme/widget/versions/1.0.0", None).await.json();
        assert_eq!(one["package_digest"], format!("sha256:{}", "0".repeat(64)));
        assert_eq!(one["download_url"], format!("http://store.test/blobs/sha256/{}", "0".repeat(64)));
    }
}

#[tokio::test]
async fn text_searches_are_rate_limited_but_listing_is_not() {
    let app = crate::harness::TestApp::start_with(crate::harness::Stack::Embedded, |s| {
        s.rate_limits.search_per_minute = 2
    })
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            app.get("/api/v1/plugins?q=widget", None).await.status,
            StatusCode::OK
        );
    }
    let limited = app.get("/api/v1/plugins?q=gadget", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem_type(), "/problems/rate-limited");
    assert!(limited.header("retry-after").is_some());
    // Paging through the catalogue reads the primary key in order, whatever the rate.
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/v1/plugins?limit=100", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.get("/api/v1/plugins?q=%20", None).await.status,
            StatusCode::OK
        );
    }
}
