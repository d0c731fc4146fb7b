//! The store's CA: certificates issued from CSRs made with the openssl CLI, listed, revoked.

use std::process::Command;

use axum::http::StatusCode;
use serde_json::json;

use crate::both_stacks;

/// A private key and CSR made by `openssl req`; `key_spec` is e.g. `ec:P-256` or `rsa:1024`.
pub fn openssl_csr(dir: &std::path::Path, name: &str, key_spec: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-new",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
    ])
    .arg(&key)
    .arg("-out")
    .arg(&csr);
    match key_spec.split_once(':') {
        Some(("ec", curve)) => cmd.args([
            "-newkey",
            "ec",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
        ]),
        Some(("rsa", bits)) => cmd.args(["-newkey", &format!("rsa:{bits}")]),
        _ => cmd.args(["-newkey", key_spec]),
    };
    let out = cmd
        .output()
        .expect("openssl must be installed (scripts/install-tools.sh)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(csr).unwrap()
}

fn openssl_text(dir: &std::path::Path, pem: &str) -> String {
    let path = dir.join("inspect.pem");
    std::fs::write(&path, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

both_stacks! {
    async fn certificates_are_issued_bound_to_the_publisher(app) {
        let owner = app.signup("owner").await;
        let maintainer = app.signup("maintainer").await;
        app.publisher(&owner, "acme").await;
        app.call(axum::http::Method::PUT, "/api/v1/publishers/acme/members/maintainer", Some(&owner.access), Some(json!({"role": "maintainer"}))).await;
        let dir = app.dir.path();
        let csr = openssl_csr(dir, "alice-laptop", "ec:prime256v1");

        let issued = app.post("/api/v1/publishers/acme/certificates", Some(&maintainer.access), json!({"csr": csr, "lifetime_days": 7})).await;
        assert_eq!(issued.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&issued.body));
        let body = issued.json();
        let text = openssl_text(dir, body["certificate_pem"].as_str().unwrap());
        assert!(text.contains("URI:urn:plugstore:publisher:acme"), "{text}");
        assert!(text.contains("Code Signing"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(text.contains("CN = alice-laptop") || text.contains("CN=alice-laptop"), "{text}");

        // openssl agrees that the chain holds together and the purpose is code signing.
        let ca_pem = String::from_utf8(app.get("/ca.pem", None).await.body.to_vec()).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.join("leaf.pem"), body["certificate_pem"].as_str().unwrap()).unwrap();
        let verify = Command::new("openssl").args(["verify", "-CAfile"]).arg(dir.join("ca.pem")).arg(dir.join("leaf.pem")).output().unwrap();
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
        assert!(body["chain_pem"].as_str().unwrap().ends_with(&ca_pem));

        let listed = app.get("/api/v1/publishers/acme/certificates", None).await.json();
        assert_eq!(listed["items"][0]["fingerprint"], body["fingerprint"]);
        assert_eq!(listed["items"][0]["origin"], "store-ca");

        // Only owners revoke; revocation is recorded with its reason.
        let path = format!("/api/v1/publishers/acme/certificates/{}/revoke", body["fingerprint"].as_str().unwrap());
        assert_eq!(app.post(&path, Some(&maintainer.access), json!({"reason": "laptop stolen"})).await.status, StatusCode::FORBIDDEN);
        let revoked = app.post(&path, Some(&owner.access), json!({"reason": "laptop stolen"})).await;
        assert_eq!(revoked.status, StatusCode::OK);
        assert_eq!(revoked.json()["revoked_reason"], "laptop stolen");
        let audit: Vec<(String, Option<String>)> = sqlx::query_as("SELECT action, reason FROM audit_log ORDER BY id").fetch_all(&app.app.db.pool).await.unwrap();
        assert_eq!(audit, vec![("publisher.create".into(), None), ("member.set".into(), Some("maintainer: maintainer".into())), ("certificate.issue".into(), None), ("certificate.revoke".into(), Some("laptop stolen".into()))]);
    }

    async fn certificates_are_listed_in_pages_and_by_revocation(app) {
        let owner = app.signup("owner").await;
        app.publisher(&owner, "acme").await;
        let csr = openssl_csr(app.dir.path(), "ci-runner", "ec:prime256v1");
        let mut issued = Vec::new();
        for _ in 0..5 {
            let certificate = app.post("/api/v1/publishers/acme/certificates", Some(&owner.access), json!({"csr": csr})).await.json();
            issued.push(certificate["fingerprint"].as_str().unwrap().to_owned());
        }
        for fingerprint in [&issued[1], &issued[3]] {
            let revoked = app.post(&format!("/api/v1/publishers/acme/certificates/{fingerprint}/revoke"), Some(&owner.access), json!({"reason": "rotated"})).await;
            assert_eq!(revoked.status, StatusCode::OK);
        }
        let list = |query: &'static str| {
            let app = &app;
            async move {
                let mut fingerprints = Vec::new();
                let mut cursor = String::new();
                loop {
                    let page = app.get(&format!("/api/v1/publishers/acme/certificates?limit=2{query}{cursor}"), None).await;
                    assert_eq!(page.status, StatusCode::OK, "{}", String::from_utf8_lossy(&page.body));
                    let page = page.json();
                    let items = page["items"].as_array().unwrap();
                    assert!(items.len() <= 2, "{page}");
                    fingerprints.extend(items.iter().map(|c| c["fingerprint"].as_str().unwrap().to_owned()));
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = format!("&cursor={next}"),
                        None => return fingerprints,
                    }
                }
            }
        };
        assert_eq!(list("").await, issued, "every certificate, in the order they were recorded");
        assert_eq!(list("&revoked=true").await, [issued[1].clone(), issued[3].clone()]);
        assert_eq!(list("&revoked=false").await, [issued[0].clone(), issued[2].clone(), issued[4].clone()]);

        let bad_cursor = app.get("/api/v1/publishers/acme/certificates?cursor=nonsense", None).await;
        assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY);
        let unknown = app.get("/api/v1/publishers/nobody/certificates?revoked=true", None).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }

    async fn weak_or_malformed_requests_are_refused(app) {
        let owner = app.signup("owner").await;
        let stranger = app.signup("stranger").await;
        app.publisher(&owner, "acme").await;
        let dir = app.dir.path();
        let weak = openssl_csr(dir, "weak", "rsa:1024");
        let refused = app.post("/api/v1/publishers/acme/certificates", Some(&owner.access), json!({"csr": weak})).await;
        assert_eq!(refused.problem_type(), "/problems/invalid-input");
        assert!(refused.json()["detail"].as_str().unwrap().contains("2048"), "{}", refused.json());
        let garbage = app.post("/api/v1/publishers/acme/certificates", Some(&owner.access), json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})).await;
        assert_eq!(garbage.problem_type(), "/problems/invalid-input");
        let good = openssl_csr(dir, "good", "rsa:2048");
        let too_long = app.post("/api/v1/publishers/acme/certificates", Some(&owner.access), json!({"csr": good, "lifetime_days": 5000})).await;
        assert_eq!(too_long.problem_type(), "/problems/invalid-input");
        let foreign = app.post("/api/v1/publishers/acme/certificates", Some(&stranger.access), json!({"csr": good})).await;
        assert_eq!(foreign.status, StatusCode::FORBIDDEN);
        let ok = app.post("/api/v1/publishers/acme/certificates", Some(&owner.access), json!({"csr": good})).await;
        assert_eq!(ok.status, StatusCode::CREATED);
    }
}
