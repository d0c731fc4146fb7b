//! Real WebAssembly nobody here wrote, fetched from the npm registry at test time: `sql-wasm.wasm`
//! (sql.js) and `esbuild.wasm` (esbuild-wasm). Both must pass the static analysis to findings
//! without a crash, a hang or a panic. They are not plugstore plugins, so ABI findings are
//! expected; what matters is that the analyser copes with large real modules. (The dynamic
//! pass compiles them with Cranelift, which in an unoptimised test build takes minutes for
//! esbuild; it is exercised on real modules by the release-mode benchmark instead.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plugstore_format::manifest::Manifest;
use plugstore_scanner::limits::StaticLimits;
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

fn manifest() -> Manifest {
    Manifest::parse(
        "format = 1\n[plugin]\nid = \"npm/module\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nentry = \"m.wasm\"\n\
         targets = [\"any\"]\ndescription = \"third-party module\"\n[host]\ncompatibility = \">=1.0.0\"\n",
    )
    .unwrap()
}

fn scan(name: &str, bytes: &[u8]) {
    let started = Instant::now();
    let static_pass = analyze_wasm(bytes, &manifest(), &StaticLimits::default());
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
    eprintln!(
        "{name}: {} bytes, static {static_time:?} ({} findings)",
        bytes.len(),
        static_pass.findings.len()
    );
    assert!(
        static_time < Duration::from_secs(60),
        "{name}: static analysis took {static_time:?}"
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
