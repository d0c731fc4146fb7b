//! Downloads against a scripted HTTP server on loopback: a clean transfer, a connection cut
//! midway that resumes with a Range request, a server that sends more than the signed length,
//! one that trickles, and bytes that do not match the signed hash. After every failure the
//! final file does not exist.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugstore_client::download::{
    DownloadError, DownloadPolicy, ExpectedTarget, download, partial_path,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// How the server answers one request, given the `Range` start it was asked for.
#[derive(Clone, Copy)]
enum Behaviour {
    /// The asked bytes, all of them.
    Honest,
    /// Announces everything but sends only this many bytes, then closes.
    CutAfter(usize),
    /// Sends this many bytes more than the body.
    Overlong(usize),
    /// Sends one byte, then nothing for a long time.
    Trickle,
}

/// Serves `body`; the n-th request gets `script[n]` (the last one repeats). Returns the URL
/// and the `Range` start of every request.
async fn serve(body: Vec<u8>, script: Vec<Behaviour>) -> (String, Arc<Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blobs/x", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let start = text
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim().trim_end_matches('-').parse::<u64>().ok());
            seen.lock().unwrap().push(start);
            let behaviour = script[served.min(script.len() - 1)];
            served += 1;
            let body = body.clone();
            // Each answer on its own task, so that a trickling one does not hold the next.
            tokio::spawn(async move {
                let from = start.unwrap_or(0) as usize;
                let rest = &body[from..];
                let head = match start {
                    Some(s) => format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{}\r\nConnection: close\r\n\r\n",
                        rest.len(),
                        body.len() - 1,
                        body.len()
                    ),
                    None => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        match behaviour {
                            Behaviour::Overlong(extra) => rest.len() + extra,
                            _ => rest.len(),
                        }
                    ),
                };
                drop(socket.write_all(head.as_bytes()).await);
                match behaviour {
                    // The client may hang up first; that is not the server's failure.
                    Behaviour::Honest => drop(socket.write_all(rest).await),
                    Behaviour::CutAfter(n) => drop(socket.write_all(&rest[..n]).await),
                    Behaviour::Overlong(extra) => {
                        drop(socket.write_all(rest).await);
                        drop(socket.write_all(&vec![0u8; extra]).await);
                    }
                    Behaviour::Trickle => {
                        drop(socket.write_all(&rest[..1]).await);
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, ranges)
}

fn body() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn expected(bytes: &[u8]) -> ExpectedTarget {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    ExpectedTarget {
        length: bytes.len() as u64,
        sha256: digest.as_ref().try_into().unwrap(),
    }
}

fn policy() -> DownloadPolicy {
    DownloadPolicy {
        connect_timeout: Duration::from_secs(5),
        rate_window: Duration::from_secs(1),
        min_bytes_per_sec: 1024,
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn a_clean_download_reports_progress_and_lands_verified() {
    let body = body();
    let (url, _) = serve(body.clone(), vec![Behaviour::Honest]).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugin.tar");
    let mut last = (0, 0);
    download(
        &reqwest::Client::new(),
        &url,
        expected(&body),
        &dest,
        &policy(),
        |got, total| {
            last = (got, total);
        },
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(last, (body.len() as u64, body.len() as u64));
    assert!(!partial_path(&dest).exists());
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_a_range_request() {
    let body = body();
    let (url, ranges) = serve(
        body.clone(),
        vec![Behaviour::CutAfter(70_000), Behaviour::Honest],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugin.tar");
    download(
        &reqwest::Client::new(),
        &url,
        expected(&body),
        &dest,
        &policy(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(*ranges.lock().unwrap(), vec![None, Some(70_000)]);
}

#[tokio::test]
async fn more_than_the_signed_length_is_cut_off() {
    let body = body();
    let (url, _) = serve(body.clone(), vec![Behaviour::Overlong(10_000)]).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugin.tar");
    let error = download(
        &reqwest::Client::new(),
        &url,
        expected(&body),
        &dest,
        &policy(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DownloadError::EndlessData { length } if length == body.len() as u64),
        "{error}"
    );
    assert!(!dest.exists());
    assert!(std::fs::metadata(partial_path(&dest)).unwrap().len() <= body.len() as u64);
}

#[tokio::test]
async fn a_trickling_server_is_given_up_on() {
    let body = body();
    let (url, ranges) = serve(body.clone(), vec![Behaviour::Trickle]).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugin.tar");
    let started = std::time::Instant::now();
    let error = download(
        &reqwest::Client::new(),
        &url,
        expected(&body),
        &dest,
        &policy(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DownloadError::SlowRetrieval { .. }),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Each attempt resumed after the byte it got.
    assert_eq!(*ranges.lock().unwrap(), vec![None, Some(1), Some(2)]);
    assert!(!dest.exists());
}

#[tokio::test]
async fn bytes_that_do_not_match_the_signed_hash_are_discarded() {
    let body = body();
    let (url, _) = serve(body.clone(), vec![Behaviour::Honest]).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugin.tar");
    let mut wrong = expected(&body);
    wrong.sha256[0] ^= 1;
    let error = download(
        &reqwest::Client::new(),
        &url,
        wrong,
        &dest,
        &policy(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DownloadError::HashMismatch), "{error}");
    assert!(!dest.exists());
    assert!(!partial_path(&dest).exists());
}

mod by_patch {
    use plugstore_client::delta::{Fetched, PatchSource, fetch_package};
    use plugstore_format::delta::make_patch;

    use super::*;

    fn versions() -> (Vec<u8>, Vec<u8>) {
        let old = body();
        let mut new = old.clone();
        new.splice(100_000..100_000, b"a new feature".iter().copied());
        new[5] ^= 0xff;
        (old, new)
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        expected(bytes).sha256
    }

    async fn fetch(
        patch_served: Vec<u8>,
        patch_signed: &[u8],
        base_on_disk: &[u8],
        old: &[u8],
        new: &[u8],
    ) -> (Fetched, Vec<u8>) {
        let (fetched, bytes, _) =
            fetch_counting(patch_served, patch_signed, base_on_disk, old, new).await;
        (fetched, bytes)
    }

    /// As `fetch`, with the requests the patch's server received.
    async fn fetch_counting(
        patch_served: Vec<u8>,
        patch_signed: &[u8],
        base_on_disk: &[u8],
        old: &[u8],
        new: &[u8],
    ) -> (Fetched, Vec<u8>, usize) {
        let (patch_url, patch_requests) = serve(patch_served, vec![Behaviour::Honest]).await;
        let (full_url, _) = serve(new.to_vec(), vec![Behaviour::Honest]).await;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.tar");
        std::fs::write(&base, base_on_disk).unwrap();
        let dest = dir.path().join("plugin.tar");
        let fetched = fetch_package(
            &reqwest::Client::new(),
            &full_url,
            expected(new),
            Some(PatchSource {
                url: &patch_url,
                expected: expected(patch_signed),
                base_sha256: sha(old),
                base: &base,
            }),
            &dest,
            &policy(),
        )
        .await
        .unwrap();
        assert!(!partial_path(&dest).exists());
        let requests = patch_requests.lock().unwrap().len();
        (fetched, std::fs::read(&dest).unwrap(), requests)
    }

    #[tokio::test]
    async fn a_patch_not_smaller_than_its_package_is_not_fetched() {
        let (old, new) = versions();
        // Signed, and it would even apply: but a patch is read whole, and one as large as the
        // package could be as large as the signer liked.
        let mut padded = make_patch(&old, &new).unwrap();
        padded.resize(new.len(), 0);
        let (fetched, bytes, requests) =
            fetch_counting(padded.clone(), &padded, &old, &old, &new).await;
        let Fetched::Full {
            patch_error: Some(why),
        } = fetched
        else {
            panic!("{fetched:?}")
        };
        assert!(why.contains("not smaller"), "{why}");
        assert_eq!(requests, 0, "the patch must not be downloaded");
        assert!(bytes == new);
    }

    #[tokio::test]
    async fn a_good_patch_makes_the_package() {
        let (old, new) = versions();
        let patch = make_patch(&old, &new).unwrap();
        assert!(patch.len() * 10 < new.len());
        let (fetched, bytes) = fetch(patch.clone(), &patch, &old, &old, &new).await;
        assert_eq!(fetched, Fetched::Patched);
        assert!(bytes == new);
    }

    #[tokio::test]
    async fn a_patch_corrupted_in_transit_falls_back_to_the_full_package() {
        let (old, new) = versions();
        let patch = make_patch(&old, &new).unwrap();
        let mut corrupted = patch.clone();
        let middle = corrupted.len() / 2;
        corrupted[middle] ^= 1;
        let (fetched, bytes) = fetch(corrupted, &patch, &old, &old, &new).await;
        let Fetched::Full {
            patch_error: Some(why),
        } = fetched
        else {
            panic!("{fetched:?}")
        };
        assert!(why.contains("SHA-256"), "{why}");
        assert!(bytes == new);
    }

    #[tokio::test]
    async fn a_signed_patch_that_makes_wrong_bytes_falls_back_to_the_full_package() {
        let (old, new) = versions();
        // Signed as served, but made for other contents: the result's hash decides.
        let mut other = new.clone();
        other[150_000] ^= 0x55;
        let wrong = make_patch(&old, &other).unwrap();
        let (fetched, bytes) = fetch(wrong.clone(), &wrong, &old, &old, &new).await;
        let Fetched::Full {
            patch_error: Some(why),
        } = fetched
        else {
            panic!("{fetched:?}")
        };
        assert!(why.contains("does not match"), "{why}");
        assert!(bytes == new);
    }

    #[tokio::test]
    async fn a_base_that_is_not_the_patches_base_falls_back_to_the_full_package() {
        let (old, new) = versions();
        let patch = make_patch(&old, &new).unwrap();
        let mut damaged_base = old.clone();
        damaged_base[0] ^= 1;
        let (fetched, bytes) = fetch(patch.clone(), &patch, &damaged_base, &old, &new).await;
        let Fetched::Full {
            patch_error: Some(why),
        } = fetched
        else {
            panic!("{fetched:?}")
        };
        assert!(why.contains("base"), "{why}");
        assert!(bytes == new);
    }
}
