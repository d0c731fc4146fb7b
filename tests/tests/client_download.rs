//! The host client's download against the real store: a package whose download was cut off
//! resumes with a Range request to `/blobs/sha256/…` and lands verified; a partial file that
//! holds wrong bytes is caught by the signed hash and discarded, and the next try succeeds.

use plugstore_client::download::{
    DownloadError, DownloadPolicy, ExpectedTarget, download, partial_path,
};
use plugstore_e2e::{Cli, Store, binaries, plugin_dir};

const PASSWORD: &str = "correct horse battery staple";

fn expected(bytes: &[u8]) -> ExpectedTarget {
    ExpectedTarget {
        length: bytes.len() as u64,
        sha256: ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .try_into()
            .unwrap(),
    }
}

#[test]
fn a_cut_off_download_resumes_from_the_store_and_bad_partial_bytes_are_discarded() {
    let bins = binaries();
    let store = Store::start(&bins);
    let alice = Cli::new(&bins, &store);
    alice.register_and_login("alice", PASSWORD);
    alice.run(&["publisher", "create", "acme"]).ok();
    alice.run(&["keygen"]).ok();
    alice.run(&["cert", "request", "--publisher", "acme"]).ok();
    let work = alice.work_dir();
    let dir = plugin_dir(&work, "hello", "acme/hello", "1.0.0");
    alice.run(&["publish", dir.to_str().unwrap()]).ok();
    let version = store.get_json("/api/v1/plugins/acme/hello/versions/1.0.0");
    let url = version["download_url"].as_str().unwrap().to_owned();
    let package = store.get_bytes(&url);
    assert!(package.len() > 2048, "{} bytes", package.len());
    let target = expected(&package);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let policy = DownloadPolicy::default();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("hello.tar");

    // The first 1000 bytes arrived before the connection dropped.
    std::fs::write(partial_path(&dest), &package[..1000]).unwrap();
    let mut first_report = None;
    runtime
        .block_on(download(&http, &url, target, &dest, &policy, |got, _| {
            first_report.get_or_insert(got);
        }))
        .unwrap();
    assert_eq!(
        first_report,
        Some(1000),
        "the transfer resumed at byte 1000"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), package);

    // A partial file with wrong bytes: completed by the server, refused by the hash, removed.
    let dest = local.path().join("again.tar");
    std::fs::write(partial_path(&dest), vec![0u8; 1000]).unwrap();
    let error = runtime
        .block_on(download(&http, &url, target, &dest, &policy, |_, _| {}))
        .unwrap_err();
    assert!(matches!(error, DownloadError::HashMismatch), "{error}");
    assert!(!dest.exists() && !partial_path(&dest).exists());
    runtime
        .block_on(download(&http, &url, target, &dest, &policy, |_, _| {}))
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), package);
}
