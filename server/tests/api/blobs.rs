//! Blob downloads over HTTP: caching headers, ETag, Range, redirects.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::both_stacks;
use crate::harness::{Stack, TestApp};

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

both_stacks! {
    async fn blobs_are_served_immutable_with_etag_and_ranges(app) {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let stored = app.app.blobs.put(&mut &bytes[..], None, None).await.unwrap();
        let path = format!("/blobs/sha256/{}", stored.digest.to_hex());
        let etag = format!("\"sha256:{}\"", stored.digest.to_hex());

        let full = app.get(&path, None).await;
        assert_eq!(full.status, StatusCode::OK);
        assert_eq!(full.body.as_ref(), &bytes[..]);
        assert_eq!(full.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(full.header("etag"), Some(etag.as_str()));
        assert_eq!(full.header("accept-ranges"), Some("bytes"));
        assert_eq!(full.header("content-length"), Some("300000"));
        assert!(full.header("content-encoding").is_none(), "blobs are never re-encoded");

        let head = app.call(Method::HEAD, &path, None, None).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), Some("300000"));
        assert!(head.body.is_empty());

        let not_modified = app.send(get_with(&path, &[("if-none-match", &etag)])).await;
        assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
        assert!(not_modified.body.is_empty());

        let part = app.send(get_with(&path, &[("range", "bytes=1000-1999")])).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.header("content-range"), Some("bytes 1000-1999/300000"));
        assert_eq!(part.body.as_ref(), &bytes[1000..2000]);
        let tail = app.send(get_with(&path, &[("range", "bytes=-100")])).await;
        assert_eq!(tail.body.as_ref(), &bytes[299_900..]);
        let open_ended = app.send(get_with(&path, &[("range", "bytes=299000-")])).await;
        assert_eq!(open_ended.body.as_ref(), &bytes[299_000..]);
        // A stale If-Range validator gets the whole object instead of a mismatched piece.
        let stale = app.send(get_with(&path, &[("range", "bytes=0-9"), ("if-range", "\"sha256:other\"")])).await;
        assert_eq!(stale.status, StatusCode::OK);
        assert_eq!(stale.body.len(), 300_000);

        let beyond = app.send(get_with(&path, &[("range", "bytes=300000-")])).await;
        assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(beyond.header("content-range"), Some("bytes */300000"));
        assert_eq!(beyond.problem_type(), "/problems/range-not-satisfiable");

        let missing = app.get(&format!("/blobs/sha256/{}", "a".repeat(64)), None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.problem_type(), "/problems/not-found");
        for bad in ["ABC", "../../etc/passwd", &"A".repeat(64), &"g".repeat(64)] {
            let response = app.get(&format!("/blobs/sha256/{bad}"), None).await;
            assert!(response.status.is_client_error(), "{bad}: {}", response.status);
            assert_ne!(response.status, StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn blobs_redirect_to_the_cdn_when_configured() {
    let app = TestApp::start_with(Stack::Embedded, |s| {
        s.blobs.cdn_base_url = "https://cdn.example.net/store/".into()
    })
    .await
    .unwrap();
    let hex = "b".repeat(64);
    let response = app.get(&format!("/blobs/sha256/{hex}"), None).await;
    assert_eq!(response.status, StatusCode::FOUND);
    assert_eq!(
        response.header("location"),
        Some(format!("https://cdn.example.net/store/blobs/sha256/{hex}").as_str())
    );
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
}

#[tokio::test]
async fn blobs_redirect_to_presigned_s3_urls_when_configured() {
    let Some(app) =
        TestApp::start_with(Stack::Scaled, |s| s.blobs.s3.presign_downloads = true).await
    else {
        return;
    };
    let stored = app
        .app
        .blobs
        .put(&mut &b"presigned bytes"[..], None, None)
        .await
        .unwrap();
    let response = app
        .get(&format!("/blobs/sha256/{}", stored.digest.to_hex()), None)
        .await;
    assert_eq!(response.status, StatusCode::FOUND);
    assert_eq!(response.header("cache-control"), Some("private, no-store"));
    let location = response.header("location").unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let fetched = reqwest::get(&location).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"presigned bytes");
}
