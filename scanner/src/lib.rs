//! Analysis of plugin packages for the plugstore scan pipeline.
//!
//! This crate holds the analyzers; the scan-worker binary (job leases, isolation in a child
//! process, posting reports) is built on top of it. Everything here is a pure function of a
//! package's bytes and manifest, so the same package always gets the same findings.
//!
//! - [`scan_package_static`]: package and manifest policy plus the analyzer of the entry
//!   point's kind, as one [`ScanReport`];
//! - [`static_wasm`]: WebAssembly validation with the ABI's feature set, imports against the
//!   declared capabilities, ABI exports, limits, embedded strings and entropy;
//! - [`static_pe`]: native binaries against their targets, and Windows PE files in depth;
//! - [`isolation`]: the analysis child process, its resource limits and how its end is
//!   classified; the `plugstore-scanner` binary's `worker` and `analyze` commands use it;
//! - [`findings`]: findings, severities and the bounded report; [`rules`]: the catalogue of
//!   rule ids; [`limits`]: the thresholds;
//! - [`yara_rules`]: the default YARA rule set and an operator's rule directory, over every
//!   file of a package.

pub mod cli;
pub mod confinement;
pub mod dynamic_wasm;
pub mod entropy;
pub mod findings;
pub mod isolation;
pub mod limits;
pub mod rules;
pub mod static_pe;
pub mod static_wasm;
pub mod strings;
pub mod yara_rules;

use std::io;
use std::time::Instant;

use plugstore_format::manifest::PluginKind;
use plugstore_format::package::PackageContents;
use serde_json::json;

pub use crate::findings::{
    Finding, FindingCollector, Metrics, SCANNER_VERSION, ScanReport, Severity, StaticAnalysis,
};
pub use crate::limits::StaticLimits;
pub use crate::static_pe::{analyze_native, analyze_pe};
pub use crate::static_wasm::analyze_wasm;
pub use crate::yara_rules::RuleSet;

/// File name endings of programs and scripts that have no business in a wasm plugin.
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    ".exe", ".dll", ".sys", ".scr", ".cpl", ".msi", ".so", ".dylib", ".bat", ".cmd", ".ps1",
    ".vbs", ".sh", ".jar",
];

/// Why a scan could not be completed. The package itself is never the reason: whatever it
/// contains becomes findings. These are failures of the environment, to be retried.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The entry point could not be read.
    #[error("cannot read the entry point {path:?}: {source}")]
    ReadEntry {
        /// The entry point's path in the package.
        path: String,
        /// The error of the reader.
        source: io::Error,
    },
    /// A file other than the entry point could not be read for the rule scan.
    #[error("cannot read the file {path:?}: {source}")]
    ReadFile {
        /// The file's path in the package.
        path: String,
        /// The error of the reader.
        source: io::Error,
    },
    /// The bytes read are not those the package reader saw.
    #[error("the entry point {path:?} has {actual} bytes, but the package lists {expected}")]
    EntrySizeChanged {
        /// The entry point's path in the package.
        path: String,
        /// Size recorded by the package reader.
        expected: u64,
        /// Size of the bytes read.
        actual: u64,
    },
}

/// Runs every static check on a package that [`plugstore_format::package::read_package`]
/// accepted.
///
/// `read_file` returns the contents of a file of the package by path (from an extracted copy,
/// or from memory); every file but `plugin.toml` (its text is in `contents`) is read for the
/// rule scan, except an entry point above the size limit of its kind, which is never read.
/// Every file is scanned with the default YARA rules
/// ([`RuleSet::shared_default`]); [`scan_package_static_with_rules`] takes another set.
pub fn scan_package_static(
    contents: &PackageContents,
    read_file: impl FnMut(&str) -> io::Result<Vec<u8>>,
    limits: &StaticLimits,
) -> Result<ScanReport, ScanError> {
    scan_package_static_with_rules(contents, read_file, limits, RuleSet::shared_default())
}

/// [`scan_package_static`] with the YARA rules `yara` (the defaults plus an operator's
/// directory, say), run over every file of the package within
/// [`yara_rules::MAX_RULE_SCAN_BYTES`].
pub fn scan_package_static_with_rules(
    contents: &PackageContents,
    mut read_file: impl FnMut(&str) -> io::Result<Vec<u8>>,
    limits: &StaticLimits,
    yara: &RuleSet,
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let manifest = &contents.manifest;
    let mut findings = FindingCollector::new();
    let mut metrics = Metrics::new();
    metrics.insert("package.sha256".into(), json!(contents.digest.to_hex()));
    metrics.insert("package.length".into(), json!(contents.length));
    metrics.insert("package.files".into(), json!(contents.files.len()));
    metrics.insert(
        "package.unpacked_size".into(),
        json!(contents.unpacked_size),
    );
    metrics.insert("plugin.kind".into(), json!(manifest.kind().as_str()));
    metrics.insert(
        "plugin.capabilities".into(),
        json!(
            manifest
                .capabilities()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
        ),
    );

    let entry = manifest.entry();
    // Not read again for the rules: it is already reported as too large.
    let mut oversized_entry = None;
    if manifest.kind() == PluginKind::Wasm {
        unexpected_executables(contents, &mut findings);
    }
    match contents.file(entry) {
        None => findings.push(
            Finding::new(
                &rules::PACKAGE_ENTRY_MISSING,
                format!("plugin.entry names {entry:?}, which is not in the package"),
            )
            .with_evidence(entry),
        ),
        Some(file) => {
            let (limit, too_large) = match manifest.kind() {
                PluginKind::Wasm => (limits.max_wasm_size, &rules::WASM_MODULE_TOO_LARGE),
                PluginKind::Native => (limits.max_native_size, &rules::NATIVE_TOO_LARGE),
            };
            if file.size > limit {
                oversized_entry = Some(entry);
                findings.push(
                    Finding::new(
                        too_large,
                        format!(
                            "the entry point is {} bytes; the limit is {limit} bytes",
                            file.size
                        ),
                    )
                    .in_file(entry),
                );
            } else {
                let bytes = read_file(entry).map_err(|source| ScanError::ReadEntry {
                    path: entry.to_owned(),
                    source,
                })?;
                if bytes.len() as u64 != file.size {
                    return Err(ScanError::EntrySizeChanged {
                        path: entry.to_owned(),
                        expected: file.size,
                        actual: bytes.len() as u64,
                    });
                }
                let mut entry_findings = FindingCollector::new();
                match manifest.kind() {
                    PluginKind::Wasm => static_wasm::analyze_wasm_into(
                        &bytes,
                        manifest.capabilities(),
                        limits,
                        &mut entry_findings,
                        &mut metrics,
                    ),
                    PluginKind::Native => static_pe::analyze_native_into(
                        &bytes,
                        manifest.targets(),
                        limits,
                        &mut entry_findings,
                        &mut metrics,
                    ),
                }
                findings.merge(entry_findings, |finding| finding.in_file(entry));
            }
        }
    }

    let skip: Vec<&str> = oversized_entry.into_iter().collect();
    yara.scan_package(contents, &skip, &mut read_file, &mut findings, &mut metrics)
        .map_err(|(path, source)| ScanError::ReadFile { path, source })?;

    let mut report = ScanReport {
        findings: findings.into_findings(),
        metrics,
        scanner_version: SCANNER_VERSION.to_owned(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    report.keep_within_server_limits();
    Ok(report)
}

/// Native programs and scripts inside a wasm package: the sandbox never runs them, so they
/// are there for someone else to run.
fn unexpected_executables(contents: &PackageContents, findings: &mut FindingCollector) {
    for file in &contents.files {
        let lowercase = file.path.to_ascii_lowercase();
        let extension = EXECUTABLE_EXTENSIONS
            .iter()
            .find(|extension| lowercase.ends_with(*extension));
        if file.executable || extension.is_some() {
            let why = match extension {
                Some(extension) => format!("has the extension {extension}"),
                None => "is marked executable".to_owned(),
            };
            findings.push(
                Finding::new(
                    &rules::PACKAGE_UNEXPECTED_EXECUTABLE,
                    format!("a wasm plugin ships {:?}, which {why}", file.path),
                )
                .with_location(&file.path),
            );
        }
    }
}
