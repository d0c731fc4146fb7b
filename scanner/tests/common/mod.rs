//! Helpers shared by the scanner's integration tests.

#![allow(dead_code, reason = "each test file uses a different subset")]

use plugstore_format::manifest::Manifest;
use plugstore_scanner::rules::Rule;
use plugstore_scanner::{Finding, StaticAnalysis};

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
