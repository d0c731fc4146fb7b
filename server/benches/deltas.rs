//! Delta patches against the `bsdiff` 4.3 CLI on real modules, in the same run: patch size,
//! generation time and peak memory, and the host's apply time (target: size ≤ the CLI's,
//! time ≤ 0.5× the CLI's).
//!
//! Run through `scripts/bench-deltas`, which fetches esbuild.wasm 0.24.0 and 0.24.2 (npm
//! esbuild-wasm) and sql-wasm.wasm 1.10.3 and 1.11.0 (npm sql.js) and installs `bsdiff` and
//! GNU `time`; or `cargo bench -p plugstore-server --bench deltas -- OLD NEW [OLD NEW ...]`.
//!
//! Each measurement is its own process under `/usr/bin/time`, so peak RSS is per variant;
//! times are the best of [`ROUNDS`], CLI and ours alternating.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use plugstore_format::delta::apply_patch;
use plugstore_format::delta::make_patch;

const ROUNDS: usize = 3;

/// Runs `program args` under GNU time; returns (seconds, peak RSS in KiB).
fn timed(program: &Path, args: &[&str]) -> (f64, u64) {
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(program)
        .args(args)
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let mut fields = last.split_whitespace();
    let seconds = fields
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let rss = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (seconds, rss)
}

/// The child mode: `deltas --make OLD NEW PATCH` writes our patch; the parent times it.
fn child(args: &[String]) -> bool {
    if args.first().map(String::as_str) != Some("--make") {
        return false;
    }
    let old = std::fs::read(&args[1]).unwrap();
    let new = std::fs::read(&args[2]).unwrap();
    std::fs::write(&args[3], make_patch(&old, &new).unwrap()).unwrap();
    true
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if child(&args) {
        return;
    }
    assert!(
        !args.is_empty() && args.len().is_multiple_of(2),
        "usage: deltas OLD NEW [OLD NEW ...] (scripts/bench-deltas passes the npm files)"
    );
    let me = std::env::current_exe().unwrap();
    let bsdiff = Path::new("/usr/bin/bsdiff");
    let dir = tempfile::tempdir().unwrap();
    for pair in args.chunks(2) {
        let (old_path, new_path) = (&pair[0], &pair[1]);
        let old = std::fs::read(old_path).unwrap();
        let new = std::fs::read(new_path).unwrap();
        let cli_patch = dir.path().join("cli.patch");
        let our_patch = dir.path().join("our.patch");
        let (mut cli_best, mut our_best) = ((f64::MAX, 0), (f64::MAX, 0));
        for _ in 0..ROUNDS {
            let cli = timed(bsdiff, &[old_path, new_path, cli_patch.to_str().unwrap()]);
            let ours = timed(
                &me,
                &["--make", old_path, new_path, our_patch.to_str().unwrap()],
            );
            if cli.0 < cli_best.0 {
                cli_best = cli;
            }
            if ours.0 < our_best.0 {
                our_best = ours;
            }
        }
        let cli_size = std::fs::metadata(&cli_patch).unwrap().len();
        let patch = std::fs::read(&our_patch).unwrap();
        let mut rebuilt = Vec::with_capacity(new.len());
        let apply = (0..ROUNDS)
            .map(|_| {
                rebuilt.clear();
                let started = Instant::now();
                apply_patch(&old, &patch, new.len() as u64, &mut rebuilt).unwrap();
                started.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        assert!(rebuilt == new, "the patch does not rebuild {new_path}");
        let cli_apply = timed(
            Path::new("/usr/bin/bspatch"),
            &[
                old_path,
                dir.path().join("cli.out").to_str().unwrap(),
                cli_patch.to_str().unwrap(),
            ],
        );
        let name = |p: &str| Path::new(p).display().to_string();
        println!(
            "{} -> {} ({} -> {} bytes)",
            name(old_path),
            name(new_path),
            old.len(),
            new.len()
        );
        println!(
            "  bsdiff 4.3 CLI    patch {cli_size:>9} bytes  diff {:>6.2} s  peak {:>5} MiB  bspatch {:.3} s (baseline)",
            cli_best.0,
            cli_best.1 / 1024,
            cli_apply.0
        );
        println!(
            "  plugstore bsdiff4z patch {:>9} bytes  diff {:>6.2} s  peak {:>5} MiB  apply {apply:.3} s  size {:.3}x  time {:.2}x the CLI's",
            patch.len(),
            our_best.0,
            our_best.1 / 1024,
            patch.len() as f64 / cli_size as f64,
            our_best.0 / cli_best.0
        );
    }
}
