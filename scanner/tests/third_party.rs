//! Real WebAssembly nobody here wrote, fetched from the npm registry at test time: `sql-wasm.wasm`
//! (sql.js) and `esbuild.wasm` (esbuild-wasm). Each is packaged as a plugin and analysed by
//! the real confined `plugstore-scanner analyze` child under the worker's default limits:
//! static and dynamic analysis must reach a report, with no crash, timeout or resource-limit
//! kill. They are not plugstore plugins, so ABI findings are expected; what matters is that
//! the analysers cope with large real modules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use plugstore_format::manifest::Manifest;
use plugstore_format::package::PackageBuilder;
use plugstore_scanner::isolation::{AnalysisLimits, AnalysisOutcome, classify, run_confined};
use plugstore_scanner::limits::StaticLimits;
use plugstore_scanner::rules;
use plugstore_scanner::static_wasm::analyze_wasm;

/// Downloads `package@version` with `npm pack` and returns the bytes of `file` inside it, or
/// None (with a message) when npm is unavailable and services are not required.
fn npm_file(package: &str, version: &str, file: &str, dir: &Path) -> Option<Vec<u8>> {
    let packed = Command::new("npm")
        .args(["pack", "--silent", &format!("{package}@{version}")])
        .current_dir(dir)
        .output();
    let tarball = match packed {
        Ok(out) if out.status.success() => dir.join(String::from_utf8_lossy(&out.stdout).trim()),
        other => {
            let why = format!("npm pack {package}@{version} failed: {other:?}");
            if std::env::var("PLUGSTORE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            return None;
        }
    };
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(out.success(), "extracting {}", tarball.display());
    let path: PathBuf = dir.join("package").join(file);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

const MANIFEST: &str = "format = 1\n[plugin]\nid = \"npm/module\"\nversion = \"1.0.0\"\nkind = \"wasm\"\n\
    entry = \"m.wasm\"\ntargets = [\"any\"]\ndescription = \"third-party module\"\n\
    [host]\ncompatibility = \">=1.0.0\"\n";

fn scan(name: &str, bytes: &[u8]) {
    // In process, static only: the analyser itself must not choke on the module.
    let started = Instant::now();
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let static_pass = analyze_wasm(bytes, &manifest, &StaticLimits::default());
    let static_time = started.elapsed();
    assert!(
        !static_pass.findings.is_empty(),
        "{name}: a non-plugin module has ABI findings"
    );
    assert!(
        !static_pass
            .findings
            .iter()
            .any(|f| f.rule == "wasm.invalid"),
        "{name}: {:?}",
        static_pass.findings
    );

    // The whole analysis, as a worker runs it: packaged, in the confined child.
    let dir = tempfile::tempdir().unwrap();
    let package = PackageBuilder::from_files_with_modes([
        (
            "plugin.toml".to_owned(),
            MANIFEST.as_bytes().to_vec(),
            false,
        ),
        ("m.wasm".to_owned(), bytes.to_vec(), false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let path = dir.path().join("package.tar");
    std::fs::write(&path, package).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("analyze").arg(&path);
    let limits = AnalysisLimits::default();
    let started = Instant::now();
    let child = run_confined(command, &limits, &AtomicBool::new(false)).unwrap();
    let child_time = started.elapsed();
    let outcome = classify(&child, &limits);
    let AnalysisOutcome::Report(report) = outcome else {
        panic!(
            "{name}: the analysis child did not reach a report: {outcome:?}\n{}",
            String::from_utf8_lossy(&child.stderr)
        );
    };
    assert!(
        report.findings_of(&rules::WASM_INVALID).next().is_none(),
        "{name}: {:#?}",
        report.findings
    );
    // The dynamic pass ran: the module compiled and was instantiated (its metrics are
    // recorded either way, so the absence of `dynamic.not-run` is what shows it).
    assert!(
        report.findings_of(&rules::DYNAMIC_NOT_RUN).next().is_none(),
        "{name}: {:#?}",
        report.findings
    );
    eprintln!(
        "{name}: {} bytes; static in process {static_time:?}; whole analysis in the child \
         {child_time:?} ({} findings: {:?})",
        bytes.len(),
        report.findings.len(),
        report
            .findings
            .iter()
            .map(|f| f.rule.as_str())
            .collect::<Vec<_>>()
    );
}
#[test]
fn sql_js_and_esbuild_scan_to_findings_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(sql) = npm_file("sql.js", "1.11.0", "dist/sql-wasm.wasm", dir.path()) {
        scan("sql-wasm.wasm", &sql);
    }
    let dir = tempfile::tempdir().unwrap();
    if let Some(esbuild) = npm_file("esbuild-wasm", "0.24.2", "esbuild.wasm", dir.path()) {
        scan("esbuild.wasm", &esbuild);
    }
}
