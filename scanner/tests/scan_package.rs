//! `scan_package_static` on real packages, and the plugin ABI page's example.

use std::collections::HashMap;
use std::io;
use std::path::Path;

mod common;

use common::manifest_text;
use plugstore_format::limits::PackageLimits;
use plugstore_format::package::{PackageBuilder, PackageContents, read_package};
use plugstore_scanner::rules;
use plugstore_scanner::{ScanError, ScanReport, Severity, StaticLimits, scan_package_static};

/// Builds a package from `files` and reads it back as the worker would.
fn package(files: &[(&str, Vec<u8>, bool)]) -> (PackageContents, HashMap<String, Vec<u8>>) {
    let bytes = PackageBuilder::from_files_with_modes(
        files
            .iter()
            .map(|(path, contents, executable)| (path.to_string(), contents.clone(), *executable)),
    )
    .unwrap()
    .to_vec()
    .unwrap();
    let contents = read_package(&bytes[..], &PackageLimits::default()).unwrap();
    let files = files
        .iter()
        .map(|(path, contents, _)| (path.to_string(), contents.clone()))
        .collect();
    (contents, files)
}

fn scan(contents: &PackageContents, files: &HashMap<String, Vec<u8>>) -> ScanReport {
    scan_package_static(
        contents,
        |path| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        },
        &StaticLimits::default(),
    )
    .unwrap()
}

/// The first ```wat block of the plugin ABI page.
fn documented_plugin() -> String {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/plugin-abi.md");
    let text = std::fs::read_to_string(page).unwrap();
    let start = text.find("```wat\n").expect("the page has a wat block") + "```wat\n".len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_owned()
}

#[test]
fn the_documented_plugin_scans_clean() {
    let wasm = wat::parse_str(documented_plugin()).unwrap();
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &["log"]);
    let (contents, files) = package(&[
        ("plugin.toml", manifest.into_bytes(), false),
        ("plugin.wasm", wasm, false),
    ]);
    let report = scan(&contents, &files);
    let above_info: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .collect();
    assert!(above_info.is_empty(), "{above_info:#?}");
    assert_eq!(report.metrics["wasm.valid"], true);
    assert_eq!(
        report.metrics["wasm.exports"],
        serde_json::json!([
            "memory",
            "plugstore_abi_version",
            "plugstore_alloc",
            "plugstore_init",
            "plugstore_handle"
        ])
    );
}

#[test]
fn a_report_covers_package_and_entry_point() {
    let wasm = wat::parse_str(
        r#"(module
             (import "plugstore:http" "fetch" (func (param i32 i32 i32 i32) (result i64)))
             (memory (export "memory") 1)
             (data (i32.const 0) "https://exfil.example.com/upload"))"#,
    )
    .unwrap();
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &[]);
    let (contents, files) = package(&[
        ("plugin.toml", manifest.into_bytes(), false),
        ("plugin.wasm", wasm, false),
        ("tools/helper.exe", b"MZ".to_vec(), false),
        ("tools/run", b"#!/bin/sh\n".to_vec(), true),
    ]);
    let report = scan(&contents, &files);

    // Most severe first.
    let severities: Vec<_> = report.findings.iter().map(|f| f.severity).collect();
    let mut sorted = severities.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(severities, sorted);
    assert_eq!(report.max_severity(), Some(Severity::High));

    let undeclared: Vec<_> = report
        .findings_of(&rules::WASM_UNDECLARED_CAPABILITY)
        .collect();
    assert_eq!(undeclared.len(), 1);
    assert_eq!(undeclared[0].location.as_deref(), Some("plugin.wasm"));
    let url: Vec<_> = report.findings_of(&rules::WASM_STRINGS_URL).collect();
    assert!(
        url[0]
            .location
            .as_deref()
            .unwrap()
            .starts_with("plugin.wasm: data segment 0 +0x0"),
        "{url:#?}"
    );
    assert_eq!(report.findings_of(&rules::ABI_MISSING_EXPORT).count(), 3);
    let executables: Vec<_> = report
        .findings_of(&rules::PACKAGE_UNEXPECTED_EXECUTABLE)
        .filter_map(|f| f.location.as_deref())
        .collect();
    assert_eq!(executables, ["tools/helper.exe", "tools/run"]);

    assert_eq!(report.metrics["package.files"], 4);
    assert_eq!(report.metrics["plugin.kind"], "wasm");
    assert_eq!(report.metrics["package.sha256"], contents.digest.to_hex());
    assert!(report.scanner_version.starts_with("plugstore-scanner/"));

    // The report is what the worker posts: it round-trips through JSON.
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<ScanReport>(&json).unwrap(), report);
}

#[test]
fn native_packages_go_to_the_native_analyzer() {
    let manifest = manifest_text("native", "bin/echo.dll", &["windows-x86_64"], &[]);
    let (contents, files) = package(&[
        ("bin/echo.dll", b"\x7fELF\x02\x01\x01\0".to_vec(), true),
        ("plugin.toml", manifest.into_bytes(), false),
    ]);
    let report = scan(&contents, &files);
    let mismatch: Vec<_> = report.findings_of(&rules::NATIVE_FORMAT_MISMATCH).collect();
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0].location.as_deref(), Some("bin/echo.dll"));
    // Executables are expected in native packages.
    assert_eq!(
        report
            .findings_of(&rules::PACKAGE_UNEXPECTED_EXECUTABLE)
            .count(),
        0
    );
}

#[test]
fn oversized_entries_are_not_read() {
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &[]);
    let (contents, _) = package(&[
        ("plugin.toml", manifest.into_bytes(), false),
        ("plugin.wasm", vec![0; 2048], false),
    ]);
    let limits = StaticLimits {
        max_wasm_size: 1024,
        ..StaticLimits::default()
    };
    let report = scan_package_static(
        &contents,
        |_| panic!("an oversized entry point must not be read"),
        &limits,
    )
    .unwrap();
    let found: Vec<_> = report.findings_of(&rules::WASM_MODULE_TOO_LARGE).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].location.as_deref(), Some("plugin.wasm"));
}

#[test]
fn reading_failures_are_errors_not_findings() {
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &[]);
    let (contents, _) = package(&[
        ("plugin.toml", manifest.into_bytes(), false),
        ("plugin.wasm", b"\0asm\x01\0\0\0".to_vec(), false),
    ]);
    let error = scan_package_static(
        &contents,
        |_| Err(io::Error::other("disk on fire")),
        &StaticLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(error, ScanError::ReadEntry { .. }), "{error}");
    let error =
        scan_package_static(&contents, |_| Ok(vec![0; 3]), &StaticLimits::default()).unwrap_err();
    assert!(matches!(
        error,
        ScanError::EntrySizeChanged {
            expected: 8,
            actual: 3,
            ..
        }
    ));
}
