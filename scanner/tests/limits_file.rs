//! The operator's analysis-limits file (`--limits`): its thresholds replace the defaults in
//! the analysis child, and a file with a typo is refused with the file's name and the key.

use std::path::Path;
use std::process::{Command, Output};

use plugstore_format::package::PackageBuilder;
use plugstore_scanner::ScanReport;
use plugstore_scanner::rules;

mod common;
use common::manifest_text;

/// A package whose module starts with 16 pages (1 MiB) of memory.
fn package(dir: &Path) -> std::path::PathBuf {
    let module = wat::parse_str(r#"(module (memory (export "memory") 16 16))"#).unwrap();
    let package = PackageBuilder::from_files_with_modes([
        (
            "plugin.toml".to_owned(),
            manifest_text("wasm", "plugin.wasm", &["any"], &[]).into_bytes(),
            false,
        ),
        ("plugin.wasm".to_owned(), module, false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let path = dir.join("package.tar");
    std::fs::write(&path, package).unwrap();
    path
}

fn analyze(package: &Path, limits: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("analyze").arg(package);
    if let Some(limits) = limits {
        command.arg("--limits").arg(limits);
    }
    command.output().unwrap()
}

fn report(output: &Output) -> ScanReport {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_limits_file_tightens_a_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let package = package(dir.path());
    let defaults = report(&analyze(&package, None));
    assert!(
        defaults
            .findings_of(&rules::WASM_MEMORY_INITIAL_OVER_LIMIT)
            .next()
            .is_none()
    );

    let limits = dir.path().join("limits.toml");
    std::fs::write(
        &limits,
        "[static]\nmax_initial_memory_pages = 8\n\n[dynamic]\nwall_deadline_ms = 5000\n",
    )
    .unwrap();
    let tightened = report(&analyze(&package, Some(&limits)));
    assert!(
        tightened
            .findings_of(&rules::WASM_MEMORY_INITIAL_OVER_LIMIT)
            .next()
            .is_some(),
        "{:#?}",
        tightened.findings
    );
}

#[test]
fn a_limits_file_with_an_unknown_key_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let package = package(dir.path());
    let limits = dir.path().join("limits.toml");
    std::fs::write(&limits, "[dynamic]\nfuel_per_cal = 10\n").unwrap();
    let output = analyze(&package, Some(&limits));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(plugstore_scanner::isolation::EXIT_ANALYSIS_ERROR),
        "{stderr}"
    );
    assert!(
        stderr.contains("limits.toml") && stderr.contains("fuel_per_cal"),
        "{stderr}"
    );
}
