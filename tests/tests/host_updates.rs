//! The whole update cycle with the real store and the real client: a host pinned to the store's
//! first root installs a plugin, is offered the next version by the update check, installs it
//! by delta patch after verifying it against the TUF metadata the store signed and the
//! developer's signature, rolls back, and disables the plugin when a reviewer blocks it.

use std::time::{Duration, Instant};

use plugstore_client::delta::Fetched;
use plugstore_client::{Client, ClientBuilder};
use plugstore_e2e::{Cli, Store, binaries, plugin_dir, reviewer_token};
use plugstore_format::manifest::{PluginId, Target};
use semver::Version;

const PASSWORD: &str = "correct horse battery staple";

/// Polls `ready` until it holds, for at most 60 s (the store signs metadata in the background).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn client(store: &Store, install_dir: &std::path::Path) -> Client {
    let http = store.http();
    let root = http
        .get(format!("{}/tuf/1.root.json", store.url))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let ca = store.get_bytes(&format!("{}/ca.pem", store.url));
    ClientBuilder::new(&store.url)
        .trusted_root(root.to_vec())
        .store_ca_pem(ca)
        .install_dir(install_dir)
        .host(
            "org.example.editor",
            Version::new(2, 3, 0),
            Target::LinuxX86_64,
        )
        .build()
        .unwrap()
}

#[test]
fn a_host_updates_by_patch_rolls_back_and_disables_a_blocked_plugin() {
    let bins = binaries();
    let store = Store::start_with_env(
        &bins,
        &[
            ("PLUGSTORE_DELTAS_INTERVAL_SECS", "1"),
            ("PLUGSTORE_TUF_INTERVAL_SECS", "1"),
        ],
    );
    let http = store.http();
    wait_until("the first signed metadata", || {
        http.get(format!("{}/tuf/timestamp.json", store.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });

    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", PASSWORD);
    alice.run(&["publisher", "create", "acme"]).ok();
    alice.run(&["keygen"]).ok();
    alice.run(&["cert", "request", "--publisher", "acme"]).ok();
    let work = alice.work_dir();
    let v1 = plugin_dir(&work, "hello-1", "acme/hello", "1.0.0");
    alice.run(&["publish", v1.to_str().unwrap()]).ok();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let install_dir = tempfile::tempdir().unwrap();
    let host = client(&store, install_dir.path());
    let id = PluginId::new("acme", "hello").unwrap();
    let first = Version::new(1, 0, 0);
    wait_until("1.0.0 in the signed metadata", || {
        runtime
            .block_on(host.latest_version(&id))
            .is_ok_and(|latest| latest.as_ref() == Some(&first))
    });
    let installed = runtime
        .block_on(host.install(&id, &first, |_, _| {}))
        .unwrap();
    assert_eq!(installed.version, first);
    assert!(installed.path.join("plugin.toml").is_file());

    // The next version: the store makes a patch from 1.0.0 and signs both.
    let v2 = plugin_dir(&work, "hello-2", "acme/hello", "1.1.0");
    alice.run(&["publish", v2.to_str().unwrap()]).ok();
    let mut check = None;
    wait_until("an update to 1.1.0 with a patch", || {
        let answer = runtime.block_on(host.check_updates()).unwrap();
        // The store offers only what it has signed: a host checking while the release, and
        // then its patch, wait for a signing round is offered less, never refused.
        assert!(answer.refusals.is_empty(), "{:?}", answer.refusals);
        assert!(answer.awaiting.is_empty(), "{:?}", answer.awaiting);
        let ready = answer.updates.iter().any(|update| {
            update.package.version == Version::new(1, 1, 0) && update.package.patch.is_some()
        });
        if ready {
            check = Some(answer);
        }
        ready
    });
    let check = check.unwrap();
    let mut progress_seen = false;
    let updated = runtime
        .block_on(host.install_update(&check.updates[0], |_, _| progress_seen = true))
        .unwrap();
    assert_eq!(updated.version, Version::new(1, 1, 0));
    assert!(
        matches!(updated.fetched, Fetched::Patched),
        "the update arrived as {:?}",
        updated.fetched
    );
    assert!(progress_seen);
    let manifest = std::fs::read_to_string(updated.path.join("plugin.toml")).unwrap();
    assert!(manifest.contains("version = \"1.1.0\""), "{manifest}");
    assert_eq!(host.loadable_path(&id).unwrap(), Some(updated.path.clone()));

    // Rollback makes 1.0.0 current again.
    let state = runtime.block_on(host.rollback(&id)).unwrap();
    assert_eq!(state.current.version, first);

    // A reviewer blocks 1.0.0: the next check reports it, the client confirms it in the signed
    // metadata and disables the plugin.
    let rita = reviewer_token(&bins, &store, PASSWORD);
    let blocked = http
        .post(format!(
            "{}/api/v1/review/versions/acme/hello/1.0.0/block",
            store.url
        ))
        .bearer_auth(&rita)
        .json(&serde_json::json!({"reason": "phones home"}))
        .send()
        .unwrap();
    assert!(blocked.status().is_success(), "{}", blocked.text().unwrap());
    let mut revoked = Vec::new();
    wait_until("the block in the signed metadata", || {
        revoked = runtime.block_on(host.check_updates()).unwrap().revocations;
        !revoked.is_empty()
    });
    assert_eq!(revoked[0].id, id);
    assert_eq!(revoked[0].version, first);
    assert_eq!(revoked[0].reason.as_deref(), Some("version-blocked"));
    assert_eq!(
        host.loadable_path(&id).unwrap(),
        None,
        "a revoked plugin is not loadable"
    );
    let listed = runtime.block_on(host.list()).unwrap();
    let hello = listed.iter().find(|plugin| plugin.id == id).unwrap();
    assert!(hello.state.disabled.is_some(), "{hello:?}");
}
