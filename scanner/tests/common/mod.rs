//! Helpers shared by the scanner's integration tests.

#![allow(dead_code, reason = "each test file uses a different subset")]

use plugstore_format::manifest::Manifest;
use plugstore_scanner::rules::Rule;
use plugstore_scanner::{Finding, Metrics, StaticAnalysis};

/// Longest text field of a finding the server accepts, in bytes (`MAX_FINDING_TEXT` of
/// `server/src/controllers/scan_jobs.rs`).
pub const SERVER_MAX_FINDING_TEXT: usize = 4096;
/// Longest rule id the server accepts, in bytes.
pub const SERVER_MAX_RULE_ID: usize = 200;
/// Largest request body the server accepts by default (`http.max_json_body_bytes`).
pub const SERVER_MAX_BODY_BYTES: usize = 1 << 20;

/// Panics unless the server would take `findings` and `metrics` as a report: a report it
/// refuses loses every finding in it, the critical ones included.
pub fn assert_postable(findings: &[Finding], metrics: &Metrics) {
    for finding in findings {
        let fields = [
            Some(&finding.message),
            finding.evidence.as_ref(),
            finding.location.as_ref(),
        ];
        for field in fields.into_iter().flatten() {
            assert!(
                field.len() <= SERVER_MAX_FINDING_TEXT,
                "a field of {} bytes in {}",
                field.len(),
                finding.rule
            );
        }
        assert!(finding.rule.len() <= SERVER_MAX_RULE_ID, "{}", finding.rule);
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "worker": "scanner-test",
        "findings": findings,
        "metrics": metrics,
        "scanner_version": plugstore_scanner::SCANNER_VERSION,
        "duration_ms": 0,
    }))
    .unwrap();
    assert!(
        body.len() < SERVER_MAX_BODY_BYTES,
        "a report of {} bytes",
        body.len()
    );
}

/// The text of a `plugin.toml` for `acme/echo` with the given kind, entry, targets and
/// capabilities.
pub fn manifest_text(kind: &str, entry: &str, targets: &[&str], capabilities: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|item| format!("{item:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"format = 1

[plugin]
id = "acme/echo"
version = "1.0.0"
kind = "{kind}"
entry = "{entry}"
targets = [{targets}]
description = "Echoes requests"
capabilities = [{capabilities}]

[host]
compatibility = "*"
"#,
        targets = list(targets),
        capabilities = list(capabilities),
    )
}

/// A wasm plugin manifest declaring `capabilities`.
pub fn wasm_manifest(capabilities: &[&str]) -> Manifest {
    Manifest::parse(&manifest_text(
        "wasm",
        "plugin.wasm",
        &["any"],
        capabilities,
    ))
    .unwrap()
}

/// A native plugin manifest for `targets`.
pub fn native_manifest(targets: &[&str]) -> Manifest {
    Manifest::parse(&manifest_text("native", "bin/echo.dll", targets, &[])).unwrap()
}

/// The findings of `rule`.
pub fn of<'a>(analysis: &'a StaticAnalysis, rule: &Rule) -> Vec<&'a Finding> {
    analysis
        .findings
        .iter()
        .filter(|f| f.rule == rule.id)
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64), for high-entropy payloads.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
