//! Static-scan throughput on a real WebAssembly module against `wasm-tools validate` on the
//! same file, in the same run (these machines are noisy: the ratio is the figure).
//!
//! Run through `scripts/bench-scan`, which fetches `esbuild.wasm` (esbuild-wasm 0.24.2, 12 MB)
//! from npm and installs wasm-tools; or directly:
//!
//! ```sh
//! PLUGSTORE_BENCH_WASM=path/to/module.wasm cargo bench -p plugstore-scanner --bench static_scan
//! ```
//!
//! Measured, best of several rounds each:
//! - `wasm-tools validate FILE` (a process: read, parse, validate; its start-up is included,
//!   about a millisecond);
//! - the WebAssembly analyser alone (`analyze_wasm`: validation with the ABI's features,
//!   inventory, limits, strings, entropy);
//! - the whole static scan of the module packaged as a plugin, as the analysis child runs it
//!   (package reader, manifest policy, the WebAssembly analyser and the YARA rules over every
//!   file).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use plugstore_format::limits::PackageLimits;
use plugstore_format::manifest::Manifest;
use plugstore_format::package::{PackageBuilder, read_package};
use plugstore_scanner::{RuleSet, StaticLimits, analyze_wasm, scan_package_static_with_rules};

const ROUNDS: usize = 5;

const MANIFEST: &str = "format = 1\n[plugin]\nid = \"bench/module\"\nversion = \"1.0.0\"\n\
    kind = \"wasm\"\nentry = \"m.wasm\"\ntargets = [\"any\"]\ndescription = \"benchmark\"\n\
    [host]\ncompatibility = \"*\"\n";

fn best(rounds: usize, mut run: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() {
    let Some(path) = std::env::var_os("PLUGSTORE_BENCH_WASM").map(PathBuf::from) else {
        eprintln!("set PLUGSTORE_BENCH_WASM to a .wasm file (scripts/bench-scan does)");
        std::process::exit(2);
    };
    let module = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let size = module.len();
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let package = PackageBuilder::from_files_with_modes([
        (
            "plugin.toml".to_owned(),
            MANIFEST.as_bytes().to_vec(),
            false,
        ),
        ("m.wasm".to_owned(), module.clone(), false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let rules = RuleSet::shared_default();

    let wasm_tools = best(ROUNDS, || {
        let status = Command::new("wasm-tools")
            .arg("validate")
            .arg(&path)
            .status()
            .expect("wasm-tools (cargo install wasm-tools --locked)");
        assert!(status.success(), "wasm-tools validate failed");
    });
    let analyser = best(ROUNDS, || {
        let analysis = analyze_wasm(&module, &manifest, &StaticLimits::default());
        assert!(analysis.findings.iter().all(|f| f.rule != "wasm.invalid"));
    });
    let whole = best(ROUNDS, || {
        let contents = read_package(&package[..], &PackageLimits::default()).unwrap();
        let report = scan_package_static_with_rules(
            &contents,
            |_| Ok(module.clone()),
            &StaticLimits::default(),
            rules,
        )
        .unwrap();
        assert!(!report.findings.is_empty());
    });

    println!(
        "static scan of {} ({size} bytes), best of {ROUNDS}",
        path.display()
    );
    println!(
        "  wasm-tools validate         {:>8.1} ms  {:>7.1} MB/s  (baseline)",
        wasm_tools.as_secs_f64() * 1e3,
        mb_per_s(size, wasm_tools)
    );
    for (name, time) in [
        ("wasm analyser (analyze_wasm)", analyser),
        ("whole static scan (+ YARA)  ", whole),
    ] {
        println!(
            "  {name}{:>8.1} ms  {:>7.1} MB/s  ratio {:.2}x the baseline's throughput",
            time.as_secs_f64() * 1e3,
            mb_per_s(size, time),
            wasm_tools.as_secs_f64() / time.as_secs_f64()
        );
    }
}
