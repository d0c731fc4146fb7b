//! YARA rules (with yara-x) over every file of a package.
//!
//! The default rule set (`scanner/rules/default.yar`) is written for plugstore: the EICAR
//! test file, crypto-currency miners, credential and wallet stealers, remote access trojans,
//! reverse shells and exfiltration channels. An operator adds rules with a directory of
//! `*.yar` / `*.yara` files. Every public rule must state its weight in the verdict with
//! `meta: severity = "critical" | "high" | "medium" | "low"`; a match becomes a finding
//! `yara.<rule name>` at that severity, with the matched bytes as evidence and the file and
//! offset as location. That id must fit the server's limit ([`MAX_RULE_NAME_BYTES`]).
//!
//! Rules are compiled once per process ([`RuleSet`]); each scan gets its own
//! [`yara_x::Scanner`], bounded in time ([`YARA_SCAN_TIMEOUT`]) and in matches
//! ([`MAX_MATCHES_PER_PATTERN`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use plugstore_format::manifest::MANIFEST_FILE_NAME;
use plugstore_format::package::PackageContents;
use serde_json::json;

use crate::findings::{
    Finding, FindingCollector, MAX_RULE_ID_BYTES, Metrics, Severity, bounded_text,
};
use crate::rules;

/// The default rule set's source.
pub const DEFAULT_RULES_SOURCE: &str = include_str!("../rules/default.yar");

/// Longest a scan of one file may take (10 s): the default rules scan tens of MB per second
/// even unoptimised; an operator rule slow enough to hit this is a finding, not a hang.
pub const YARA_SCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Most matches recorded per pattern and file (16): one is enough for a finding, a few show
/// whether it is an accident.
pub const MAX_MATCHES_PER_PATTERN: usize = 16;

/// Most bytes of a package scanned with the rules (256 MiB, in package order); what is left
/// is reported as `yara.not-scanned`, so padding a package cannot hide a file silently.
pub const MAX_RULE_SCAN_BYTES: u64 = 256 << 20;

/// What a rule's name is prefixed with to make its findings' rule id.
const RULE_ID_PREFIX: &str = "yara.";

/// Longest name of a public rule (195 bytes): its findings' id `yara.<rule name>` must fit
/// the server's [`MAX_RULE_ID_BYTES`], or the server would refuse every report the rule
/// matches in, whole. Checked when the rules are loaded, where the operator sees it.
pub const MAX_RULE_NAME_BYTES: usize = MAX_RULE_ID_BYTES - RULE_ID_PREFIX.len();

/// How much of an overlong rule name an error shows: enough to find it in its file.
const SHOWN_RULE_NAME_BYTES: usize = 64;

/// File name endings of rule files in an operator rule directory.
pub const RULE_FILE_EXTENSIONS: &[&str] = &["yar", "yara"];

/// Why a rule set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuleSetError {
    /// The operator rule directory could not be listed.
    #[error("cannot read the rule directory {}: {source}", path.display())]
    ReadDirectory {
        /// The directory.
        path: PathBuf,
        /// The error of the listing.
        source: io::Error,
    },
    /// A rule file could not be read.
    #[error("cannot read the rule file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The error of the reader.
        source: io::Error,
    },
    /// A rule file does not compile; `message` is yara-x's, with the line and column.
    #[error("the rule file {origin} does not compile: {message}")]
    Compile {
        /// The file (or `default.yar` for the built-in set).
        origin: String,
        /// yara-x's error, naming the file, line and column.
        message: String,
    },
    /// A public rule has no `severity` metadata, or one that is not a known severity.
    #[error(
        "rule {rule} in {origin} has no valid severity: it needs meta: severity = \
         \"critical\", \"high\", \"medium\" or \"low\" (found {found})"
    )]
    Severity {
        /// The file the rule is in.
        origin: String,
        /// The rule's name.
        rule: String,
        /// What the metadata held, or `nothing`.
        found: String,
    },
    /// A public rule's name is too long for the rule id of its findings.
    #[error(
        "rule {rule} in {origin} has a name of {name_bytes} bytes; its findings are reported \
         as yara.<rule name>, which the server accepts up to {MAX_RULE_ID_BYTES} bytes, so \
         a rule name may have at most {MAX_RULE_NAME_BYTES} bytes"
    )]
    NameTooLong {
        /// The file the rule is in.
        origin: String,
        /// The start of the rule's name, cut to 64 bytes.
        rule: String,
        /// The length of the rule's name.
        name_bytes: usize,
    },
}

/// Compiled rules, ready to scan any number of files.
pub struct RuleSet {
    rules: yara_x::Rules,
    sources: Vec<String>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.iter().len())
            .field("sources", &self.sources)
            .finish()
    }
}

impl RuleSet {
    /// The default rule set alone.
    pub fn default_rules() -> Result<Self, RuleSetError> {
        Self::compile(&[("default.yar".to_owned(), DEFAULT_RULES_SOURCE.to_owned())])
    }

    /// The default rule set, compiled on first use and shared by the process.
    ///
    /// # Panics
    /// If the built-in rules do not compile, which their tests rule out.
    pub fn shared_default() -> &'static Self {
        static DEFAULT: OnceLock<RuleSet> = OnceLock::new();
        DEFAULT.get_or_init(|| Self::default_rules().expect("the default rules compile"))
    }

    /// The default rule set plus every `*.yar` / `*.yara` file of `directory` (not its
    /// subdirectories), in name order. Each file must compile on its own, and every public
    /// rule must carry a severity.
    pub fn with_directory(directory: &Path) -> Result<Self, RuleSetError> {
        let listing =
            std::fs::read_dir(directory).map_err(|source| RuleSetError::ReadDirectory {
                path: directory.to_owned(),
                source,
            })?;
        let mut paths = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|source| RuleSetError::ReadDirectory {
                path: directory.to_owned(),
                source,
            })?;
            let path = entry.path();
            let is_rule_file = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| RULE_FILE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_rule_file && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = vec![("default.yar".to_owned(), DEFAULT_RULES_SOURCE.to_owned())];
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| RuleSetError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            // Alone first, so that errors and rules without a severity name their file.
            Self::compile(&[(origin.clone(), text.clone())])?;
            sources.push((origin, text));
        }
        Self::compile(&sources)
    }

    fn compile(sources: &[(String, String)]) -> Result<Self, RuleSetError> {
        let mut compiler = yara_x::Compiler::new();
        compiler.colorize_errors(false);
        for (origin, text) in sources {
            compiler
                .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str()))
                .map_err(|error| RuleSetError::Compile {
                    origin: origin.clone(),
                    message: error.to_string(),
                })?;
        }
        let rules = compiler.build();
        let origin = match sources {
            [(origin, _)] => origin.clone(),
            _ => "the rule set".to_owned(),
        };
        // Private rules make no findings, so they need neither.
        for rule in rules.iter().filter(|rule| !rule.is_private()) {
            let name = rule.identifier();
            if name.len() > MAX_RULE_NAME_BYTES {
                return Err(RuleSetError::NameTooLong {
                    origin,
                    rule: bounded_text(name, SHOWN_RULE_NAME_BYTES),
                    name_bytes: name.len(),
                });
            }
            if let Err(found) = rule_severity(&rule) {
                return Err(RuleSetError::Severity {
                    origin,
                    rule: name.to_owned(),
                    found,
                });
            }
        }
        Ok(Self {
            rules,
            sources: sources.iter().map(|(origin, _)| origin.clone()).collect(),
        })
    }

    /// Number of rules, private ones included.
    pub fn len(&self) -> usize {
        self.rules.iter().len()
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rule files the set was compiled from (`default.yar` first).
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The findings of the rules on one file's bytes.
    pub fn scan_bytes(&self, file_path: &str, bytes: &[u8]) -> Vec<Finding> {
        let mut scanner = self.scanner();
        scan_with(&mut scanner, file_path, bytes)
    }

    fn scanner(&self) -> yara_x::Scanner<'_> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner
            .set_timeout(YARA_SCAN_TIMEOUT)
            .max_matches_per_pattern(MAX_MATCHES_PER_PATTERN);
        scanner
    }

    /// Scans every file of a package but those in `skip` (an entry point already reported
    /// as too large), up to [`MAX_RULE_SCAN_BYTES`] in all, adding findings and the metrics
    /// `yara.*`. `read_file` returns a file's contents by path.
    pub fn scan_package(
        &self,
        contents: &PackageContents,
        skip: &[&str],
        read_file: &mut dyn FnMut(&str) -> io::Result<Vec<u8>>,
        findings: &mut FindingCollector,
        metrics: &mut Metrics,
    ) -> Result<(), (String, io::Error)> {
        self.scan_package_within(
            MAX_RULE_SCAN_BYTES,
            contents,
            skip,
            read_file,
            findings,
            metrics,
        )
    }

    /// [`RuleSet::scan_package`] with a budget of `budget` bytes.
    ///
    /// The entry point is scanned first, then the other files in path order: a package must
    /// not spend the budget on padding to keep its code from the rules. Files the budget
    /// leaves out make a medium finding, high when one of them looks like code (a module or
    /// a library the entry point could load).
    fn scan_package_within(
        &self,
        budget: u64,
        contents: &PackageContents,
        skip: &[&str],
        read_file: &mut dyn FnMut(&str) -> io::Result<Vec<u8>>,
        findings: &mut FindingCollector,
        metrics: &mut Metrics,
    ) -> Result<(), (String, io::Error)> {
        let mut scanner = self.scanner();
        let mut scanned_files = 0u64;
        let mut scanned_bytes = 0u64;
        let mut skipped = Vec::new();
        let entry = contents.manifest.entry();
        let in_order = contents
            .files
            .iter()
            .filter(|file| file.path == entry)
            .chain(contents.files.iter().filter(|file| file.path != entry));
        for file in in_order {
            if skip.contains(&file.path.as_str()) {
                continue;
            }
            if scanned_bytes.saturating_add(file.size) > budget {
                skipped.push(file.path.as_str());
                continue;
            }
            // The manifest's text is at hand already.
            let bytes = if file.path == MANIFEST_FILE_NAME {
                contents.manifest_text.as_bytes().to_vec()
            } else {
                read_file(&file.path).map_err(|error| (file.path.clone(), error))?
            };
            if bytes.len() as u64 != file.size {
                let error = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} bytes read, the package lists {}",
                        bytes.len(),
                        file.size
                    ),
                );
                return Err((file.path.clone(), error));
            }
            scanned_bytes = scanned_bytes.saturating_add(bytes.len() as u64);
            scanned_files += 1;
            for finding in scan_with(&mut scanner, &file.path, &bytes) {
                findings.push(finding);
            }
        }
        if let Some(first) = skipped.first() {
            let code = skipped.iter().find(|path| looks_like_code(path));
            let mut finding = Finding::new(
                &rules::YARA_NOT_SCANNED,
                format!(
                    "{} files were not scanned with the rules: the package has more than \
                     {budget} bytes of files",
                    skipped.len()
                ),
            )
            .with_location(code.unwrap_or(first));
            if code.is_some() {
                finding = finding.with_severity(Severity::High);
            }
            findings.push(finding);
        }
        metrics.insert("yara.rules".into(), json!(self.len()));
        metrics.insert("yara.rule_files".into(), json!(self.sources));
        metrics.insert("yara.files_scanned".into(), json!(scanned_files));
        metrics.insert("yara.bytes_scanned".into(), json!(scanned_bytes));
        Ok(())
    }
}

/// Whether a file's name says it holds code a plugin could run or load.
fn looks_like_code(path: &str) -> bool {
    const CODE: [&str; 9] = [
        "wasm", "dll", "exe", "so", "dylib", "node", "js", "sys", "bin",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(_, extension)| CODE.iter().any(|code| extension.eq_ignore_ascii_case(code)))
        || name.to_ascii_lowercase().contains(".so.")
}

/// The severity in a rule's metadata, or what was found instead.
fn rule_severity(rule: &yara_x::Rule<'_, '_>) -> Result<Severity, String> {
    let value = rule
        .metadata()
        .find(|(name, _)| *name == "severity")
        .map(|(_, value)| value);
    match value {
        Some(yara_x::MetaValue::String(text)) => match text.to_ascii_lowercase().as_str() {
            "critical" => Ok(Severity::Critical),
            "high" => Ok(Severity::High),
            "medium" => Ok(Severity::Medium),
            "low" => Ok(Severity::Low),
            _ => Err(format!("{text:?}")),
        },
        Some(other) => Err(format!("{other:?}")),
        None => Err("nothing".to_owned()),
    }
}

fn rule_description(rule: &yara_x::Rule<'_, '_>) -> Option<String> {
    rule.metadata()
        .find(|(name, _)| *name == "description")
        .and_then(|(_, value)| match value {
            yara_x::MetaValue::String(text) => Some(text.to_owned()),
            _ => None,
        })
}

fn scan_with(scanner: &mut yara_x::Scanner<'_>, file_path: &str, bytes: &[u8]) -> Vec<Finding> {
    let results = match scanner.scan(bytes) {
        Ok(results) => results,
        Err(yara_x::ScanError::Timeout) => {
            return vec![
                Finding::new(
                    &rules::YARA_SCAN_FAILED,
                    format!(
                        "scanning the file with the rules took longer than {} s",
                        YARA_SCAN_TIMEOUT.as_secs()
                    ),
                )
                .with_location(file_path),
            ];
        }
        Err(error) => {
            return vec![
                Finding::new(
                    &rules::YARA_SCAN_FAILED,
                    format!("scanning the file with the rules failed: {error}"),
                )
                .with_location(file_path),
            ];
        }
    };
    let mut findings = Vec::new();
    for rule in results.matching_rules() {
        // Every public rule has one: `RuleSet::compile` checked.
        let Ok(severity) = rule_severity(&rule) else {
            continue;
        };
        let name = rule.identifier();
        let first = rule
            .patterns()
            .flat_map(|pattern| pattern.matches())
            .min_by_key(|m| m.range().start);
        let count: usize = rule.patterns().map(|pattern| pattern.matches().len()).sum();
        let description = rule_description(&rule).unwrap_or_else(|| format!("rule {name}"));
        let mut finding = Finding::new(
            &rules::YARA_RULE_MATCH,
            format!("{description} (YARA rule {name}, {count} matches)"),
        )
        .with_severity(severity);
        finding.rule = format!("{RULE_ID_PREFIX}{name}");
        finding = match first {
            Some(m) => finding
                .with_evidence_bytes(m.data())
                .with_location(format!("{file_path}: offset {}", m.range().start)),
            None => finding.with_location(file_path),
        };
        findings.push(finding);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_compile_with_severities() {
        let rules = RuleSet::default_rules().unwrap();
        assert!(rules.len() >= 10, "{rules:?}");
    }

    #[test]
    fn padding_cannot_keep_the_entry_point_from_the_rules() {
        use plugstore_format::limits::PackageLimits;
        use plugstore_format::package::{PackageBuilder, read_package};

        let manifest = "format = 1\n[plugin]\nid = \"acme/miner\"\nversion = \"1.0.0\"\nkind = \"wasm\"\n\
                        entry = \"plugin.wasm\"\ntargets = [\"any\"]\ndescription = \"Mines\"\n\
                        [host]\ncompatibility = \">=1.0.0\"\n";
        let mut files: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| (format!("a{i:03}.dat"), vec![0u8; 256 << 10]))
            .collect();
        files.push(("plugin.toml".into(), manifest.as_bytes().to_vec()));
        files.push((
            "plugin.wasm".into(),
            b"\0asm connect to stratum+tcp://pool.example:3333".to_vec(),
        ));
        files.push(("z/helper.dll".into(), vec![1u8; 300 << 10]));
        let package = PackageBuilder::from_files(files.clone())
            .unwrap()
            .to_vec()
            .unwrap();
        let contents = read_package(&package[..], &PackageLimits::default()).unwrap();
        let mut read = |path: &str| {
            files
                .iter()
                .find(|(name, _)| name == path)
                .map(|(_, bytes)| bytes.clone())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        let mut findings = FindingCollector::new();
        let mut metrics = Metrics::new();
        // A budget the padding fills to the byte: in path order, nothing after it is scanned.
        RuleSet::shared_default()
            .scan_package_within(
                1 << 20,
                &contents,
                &[],
                &mut read,
                &mut findings,
                &mut metrics,
            )
            .unwrap();
        let findings = findings.into_findings();
        let miner = findings
            .iter()
            .find(|f| f.rule == "yara.cryptominer_stratum_url")
            .expect("the entry point is scanned first");
        assert_eq!(miner.severity, Severity::High);
        let not_scanned = findings
            .iter()
            .find(|f| f.rule == rules::YARA_NOT_SCANNED.id)
            .expect("the padding went over the budget");
        assert_eq!(not_scanned.severity, Severity::High, "{not_scanned:?}");
        assert_eq!(not_scanned.location.as_deref(), Some("z/helper.dll"));
    }

    #[test]
    fn plain_text_matches_at_its_offset() {
        let findings = RuleSet::shared_default().scan_bytes(
            "data/pools.txt",
            b"connect to stratum+tcp://pool.example:3333 now",
        );
        let finding = findings
            .iter()
            .find(|f| f.rule == "yara.cryptominer_stratum_url")
            .unwrap();
        assert_eq!(finding.severity, Severity::High);
        assert_eq!(finding.evidence.as_deref(), Some("stratum+tcp://"));
        assert_eq!(
            finding.location.as_deref(),
            Some("data/pools.txt: offset 11")
        );
    }
}
