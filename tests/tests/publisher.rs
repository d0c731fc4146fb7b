//! The publisher's side of the store, through the real `plugstore` CLI against a real
//! `plugstore-server`: registration to a verified download, actionable errors, private files,
//! and publishing from CI with an API token.

use std::path::Path;

use plugstore_e2e::{Cli, Store, binaries, plugin_dir};

const PASSWORD: &str = "correct horse battery staple";

/// A user who owns publisher `acme` and holds a signing key and certificate for it.
fn acme_owner(store: &Store) -> Cli {
    let alice = Cli::new(&binaries(), store);
    alice.register_and_login("alice", PASSWORD);
    alice
        .run(&["publisher", "create", "acme", "--display-name", "Acme Inc"])
        .ok();
    alice.run(&["keygen"]).ok();
    alice.run(&["cert", "request", "--publisher", "acme"]).ok();
    alice
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn publisher_flow_from_registration_to_verified_download() {
    let bins = binaries();
    let store = Store::start(&bins);
    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", PASSWORD);

    let publisher = alice
        .run(&[
            "--json",
            "publisher",
            "create",
            "acme",
            "--display-name",
            "Acme Inc",
        ])
        .json();
    assert_eq!(publisher["name"], "acme");
    let keygen = alice.run(&["keygen"]).ok().to_owned();
    assert!(keygen.contains("ECDSA P-256"), "{keygen}");
    let certificate = alice
        .run(&["--json", "cert", "request", "--publisher", "acme"])
        .json();
    let chain_file = certificate["chain_file"].as_str().unwrap().to_owned();
    assert!(
        std::fs::read_to_string(&chain_file)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2,
        "the chain holds the leaf and the store's CA"
    );
    assert!(
        certificate["subject"]
            .as_str()
            .unwrap()
            .contains("CN=alice")
    );

    let work = alice.work_dir();
    let dir = plugin_dir(&work, "hello", "acme/hello", "1.0.0");
    let published = alice.run(&["publish", path_arg(&dir)]).ok().to_owned();
    assert!(
        published.contains("published acme/hello 1.0.0 (state: published)"),
        "{published}"
    );
    assert!(
        published.contains(&format!(
            "{}/api/v1/plugins/acme/hello/versions/1.0.0",
            store.url
        )),
        "{published}"
    );
    let retried = alice.run(&["publish", path_arg(&dir)]).ok().to_owned();
    assert!(
        retried.contains("already published (same bytes)"),
        "{retried}"
    );

    // What the store has is exactly what `pack` makes of the directory.
    let packed = alice
        .run(&["--json", "pack", path_arg(&dir), "--out", "hello.tar"])
        .json();
    let version = store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0");
    assert_eq!(version["state"], "published");
    assert_eq!(version["package_digest"], packed["digest"]);
    assert_eq!(version["package_size"], packed["size"]);
    let package = std::fs::read(work.join("hello.tar")).unwrap();
    let downloaded = store.get_bytes(version["download_url"].as_str().unwrap());
    assert_eq!(downloaded, package, "the download is the packed package");

    let info = alice.run(&["info", "acme/hello"]).ok().to_owned();
    assert!(info.contains("latest: 1.0.0"), "{info}");
    assert!(info.contains("published"), "{info}");
    let info = alice.run(&["--json", "info", "acme/hello"]).json();
    assert_eq!(info["plugin"]["latest_version"], "1.0.0");
    assert_eq!(info["versions"][0]["package_digest"], packed["digest"]);

    let me = alice.run(&["--json", "whoami"]).json();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["credential"], "session");
    assert_eq!(me["registry"], store.url);

    // Offline verification with the store's CA, the same checks the store ran.
    let signed = alice.run(&["--json", "sign", "hello.tar"]).json();
    assert_eq!(signed["signature_file"], "hello.tar.sig.json");
    std::fs::write(
        work.join("ca.pem"),
        store.get_bytes(&format!("{}/ca.pem", store.url)),
    )
    .unwrap();
    let verify = [
        "verify",
        "hello.tar",
        "--signature",
        "hello.tar.sig.json",
        "--ca",
        "ca.pem",
    ];
    let verified = alice.run(&verify).ok().to_owned();
    assert!(verified.contains("verified acme/hello 1.0.0"), "{verified}");
    assert!(
        verified.contains(packed["digest"].as_str().unwrap()),
        "{verified}"
    );
    assert!(verified.contains("CN=alice"), "{verified}");
    let verify_against_store = [
        "verify",
        "hello.tar",
        "--signature",
        "hello.tar.sig.json",
        "--publisher-ca-from",
        &store.url,
    ];
    let report = alice
        .run(&[&["--json"], &verify_against_store[..]].concat())
        .json();
    assert_eq!(report["verified"], true);
    assert_eq!(
        report["signer"]["fingerprint"],
        format!("sha256:{}", certificate["fingerprint"].as_str().unwrap())
    );

    // One changed byte of plugin.wasm: still a well-formed package, but not the signed one.
    let mut tampered = package.clone();
    let at = tampered
        .windows(5)
        .position(|w| w == b"\0asm\x01")
        .expect("the WASM module in the package");
    tampered[at + 4] = 2;
    std::fs::write(work.join("tampered.tar"), &tampered).unwrap();
    let refused = alice
        .run(&[
            "verify",
            "tampered.tar",
            "--signature",
            "hello.tar.sig.json",
            "--ca",
            "ca.pem",
        ])
        .failed()
        .to_owned();
    assert!(
        refused.contains("does not match this plugin, version and package digest"),
        "{refused}"
    );
    assert!(refused.contains("hint:"), "{refused}");

    let yanked = alice
        .run(&["yank", "acme/hello@1.0.0", "--reason", "crashes on start"])
        .ok()
        .to_owned();
    assert!(
        yanked.contains("yanked acme/hello 1.0.0 (state: yanked)"),
        "{yanked}"
    );
    assert_eq!(
        store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0")["state"],
        "yanked"
    );
    alice
        .run(&["unyank", "acme/hello@1.0.0", "--reason", "false alarm"])
        .ok();
    assert_eq!(
        store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0")["state"],
        "published"
    );

    // A staged rollout, then a pause; `info` shows both.
    let rolled = alice
        .run(&["rollout", "acme/hello@1.0.0", "--percent", "25"])
        .ok()
        .to_owned();
    assert!(
        rolled.contains("acme/hello 1.0.0: the update is offered to 25% of hosts"),
        "{rolled}"
    );
    assert_eq!(
        store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0")["rollout"],
        serde_json::json!({"percent": 25, "paused": false})
    );
    assert!(
        alice
            .run(&["info", "acme/hello"])
            .ok()
            .contains("rollout 25%")
    );
    alice
        .run(&["rollout", "acme/hello@1.0.0", "--percent", "25", "--paused"])
        .ok();
    assert_eq!(
        store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0")["rollout"],
        serde_json::json!({"percent": 25, "paused": true})
    );
    assert!(
        alice
            .run(&["info", "acme/hello"])
            .ok()
            .contains("rollout paused at 25%")
    );
    let too_much = alice
        .run(&["rollout", "acme/hello@1.0.0", "--percent", "101"])
        .failed()
        .to_owned();
    assert!(too_much.contains("101 is not in 0..=100"), "{too_much}");

    // Once the owner revokes the certificate, verifying against the store refuses the
    // signature; the offline check with `--ca` alone cannot know.
    let token = alice
        .run(&[
            "--json",
            "token",
            "create",
            "security",
            "--scope",
            "manage-publisher",
            "--publisher",
            "acme",
        ])
        .json();
    let revoked = store
        .http()
        .post(format!(
            "{}/api/v1/publishers/acme/certificates/{}/revoke",
            store.url,
            certificate["fingerprint"].as_str().unwrap()
        ))
        .bearer_auth(token["secret"].as_str().unwrap())
        .json(&serde_json::json!({"reason": "laptop stolen"}))
        .send()
        .unwrap();
    assert_eq!(revoked.status(), 200, "{:?}", revoked.text());
    let refused = alice.run(&verify_against_store).failed().to_owned();
    assert!(refused.contains("revoked"), "{refused}");
    alice.run(&verify).ok();
}

#[test]
fn errors_say_what_went_wrong_and_what_to_do() {
    let bins = binaries();
    let store = Store::start(&bins);
    let _alice = acme_owner(&store);
    let bob = Cli::new(&bins, &store);

    let not_logged_in = bob.run(&["whoami"]).failed().to_owned();
    assert!(
        not_logged_in.contains(&format!("you are not logged in to {}", store.url)),
        "{not_logged_in}"
    );
    assert!(
        not_logged_in.contains("hint: run `plugstore login"),
        "{not_logged_in}"
    );

    bob.register_and_login("bob", PASSWORD);
    bob.run(&["publisher", "create", "bobco"]).ok();
    bob.run(&["keygen"]).ok();
    bob.run(&["cert", "request", "--publisher", "bobco"]).ok();
    let bob_chain = bob.config_dir().join("keys").join("bobco.chain.pem");

    // Bob is not a member of acme: the store's reason and a way out. The store refuses before
    // reading the upload; with a package this large the refusal arrives while the CLI is
    // still sending, and must still be what the user sees.
    let dir = plugin_dir(&bob.work_dir(), "hello", "acme/hello", "1.0.0");
    std::fs::write(dir.join("assets.bin"), vec![7u8; 24 << 20]).unwrap();
    let forbidden = bob
        .run(&["publish", path_arg(&dir), "--cert", path_arg(&bob_chain)])
        .failed()
        .to_owned();
    assert!(
        forbidden.contains("error: Not allowed: you are not a member of publisher `acme`"),
        "{forbidden}"
    );
    assert!(
        forbidden.contains("hint: ask an owner of `acme` to add you"),
        "{forbidden}"
    );

    // Publishing a directory whose plugin.toml names another publisher.
    let mismatch = bob
        .run(&["publish", path_arg(&dir), "--publisher", "bobco"])
        .failed()
        .to_owned();
    assert!(
        mismatch
            .contains("plugin.toml says id `acme/hello`, but this upload is for publisher `bobco`"),
        "{mismatch}"
    );
    assert!(mismatch.contains("id-mismatch"), "{mismatch}");
    assert!(
        mismatch.contains("hint: set `id = \"bobco/hello\"` in plugin.toml"),
        "{mismatch}"
    );

    // A certificate for another publisher is refused before anything is signed.
    let pack = bob
        .run(&["--json", "pack", path_arg(&dir), "--out", "hello.tar"])
        .json();
    assert_eq!(pack["plugin"], "acme/hello");
    let wrong_cert = bob
        .run(&["sign", "hello.tar", "--cert", path_arg(&bob_chain)])
        .failed()
        .to_owned();
    assert!(
        wrong_cert.contains("is for publisher bobco, not acme"),
        "{wrong_cert}"
    );

    // Nothing of the refused uploads reached the store.
    let missing = store
        .http()
        .get(format!("{}/api/v1/plugins/acme/hello", store.url))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
#[cfg(unix)]
fn credentials_and_keys_are_private_and_keys_are_never_overwritten() {
    use plugstore_e2e::mode;

    let bins = binaries();
    let store = Store::start(&bins);
    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", PASSWORD);
    let credentials = alice.config_dir().join("credentials.toml");
    assert_eq!(mode(&credentials), 0o600);
    assert_eq!(mode(&alice.config_dir()), 0o700);
    // Each authenticated command rotates the refresh token; the replaced file stays private.
    let before = std::fs::read_to_string(&credentials).unwrap();
    alice.run(&["whoami"]).ok();
    let after = std::fs::read_to_string(&credentials).unwrap();
    assert_ne!(before, after, "the refresh token was rotated");
    assert_eq!(mode(&credentials), 0o600);
    assert!(!after.contains(PASSWORD));

    let key = alice.config_dir().join("keys").join("signing.key");
    alice.run(&["keygen"]).ok();
    assert_eq!(mode(&key), 0o600);
    let original = std::fs::read(&key).unwrap();
    let refused = alice.run(&["keygen"]).failed().to_owned();
    assert!(refused.contains("refusing to overwrite"), "{refused}");
    assert!(refused.contains("--force"), "{refused}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        original,
        "the key is untouched"
    );

    let replaced = alice
        .run(&["keygen", "--algorithm", "ed25519", "--force"])
        .ok()
        .to_owned();
    assert!(replaced.contains("Ed25519"), "{replaced}");
    assert_ne!(std::fs::read(&key).unwrap(), original);
    assert_eq!(mode(&key), 0o600);

    let other = alice.work_dir().join("rsa.key");
    alice
        .run(&[
            "keygen",
            "--algorithm",
            "rsa2048",
            "--out",
            path_arg(&other),
        ])
        .ok();
    assert_eq!(mode(&other), 0o600);
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    alice.run(&["logout"]).ok();
    assert!(
        !std::fs::read_to_string(&credentials)
            .unwrap()
            .contains(&store.url)
    );
    alice.run(&["whoami"]).failed();
}

#[test]
fn an_api_token_publishes_from_ci() {
    let bins = binaries();
    let store = Store::start(&bins);
    let alice = acme_owner(&store);
    let dir = plugin_dir(&alice.work_dir(), "hello", "acme/hello", "1.0.0");
    alice.run(&["publish", path_arg(&dir)]).ok();

    let token = alice
        .run(&[
            "--json",
            "token",
            "create",
            "ci",
            "--scope",
            "publish",
            "--publisher",
            "acme",
        ])
        .json();
    assert_eq!(token["scopes"], serde_json::json!(["publish"]));
    assert_eq!(token["publisher"], "acme");
    let secret = token["secret"].as_str().unwrap().to_owned();

    // The CI machine: its own home, the token, and the signing key and chain as secrets.
    let ci = Cli::new(&bins, &store);
    ci.run_with_stdin(&["login", "--token", "-"], &format!("{secret}\n"))
        .ok();
    let me = ci.run(&["--json", "whoami"]).json();
    assert_eq!(me["credential"], "api-token");
    assert_eq!(me["user"]["username"], "alice");
    let key = alice.config_dir().join("keys").join("signing.key");
    let chain = alice.config_dir().join("keys").join("acme.chain.pem");
    let next = plugin_dir(&ci.work_dir(), "hello", "acme/hello", "1.1.0");
    let published = ci
        .run(&[
            "--json",
            "publish",
            path_arg(&next),
            "--key",
            path_arg(&key),
            "--cert",
            path_arg(&chain),
        ])
        .json();
    assert_eq!(published["created"], true);
    assert_eq!(published["state"], "published");
    let version = store.get_json("/api/v1/plugins/acme/hello/versions/1.1.0");
    assert_eq!(version["state"], "published");
    assert_eq!(version["package_digest"], published["package_digest"]);

    // A token cannot do what needs a login session, and says so before asking the store.
    let refused = ci
        .run(&["publisher", "create", "ci-corp"])
        .failed()
        .to_owned();
    assert!(refused.contains("needs a login session"), "{refused}");
    assert!(refused.contains("plugstore login --username"), "{refused}");

    // Its owner sees the token was used, and revokes it; the CI credential stops working.
    let tokens = alice.run(&["--json", "token", "list"]).json();
    let listed = &tokens[0];
    assert_eq!(listed["name"], "ci");
    assert!(listed["last_used_at"].is_string(), "{tokens}");
    let id = listed["id"].as_i64().unwrap().to_string();
    alice.run(&["token", "revoke", &id]).ok();
    let revoked = ci.run(&["whoami"]).failed().to_owned();
    assert!(revoked.contains("Authentication required"), "{revoked}");
}
