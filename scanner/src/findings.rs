//! Findings and the scan report, as posted to the server in JSON.
//!
//! Everything in a report can come from a hostile package (names, strings, evidence), and a
//! report is shown to reviewers and stored: every text field is bounded and stripped of
//! control characters, and the number of findings is bounded per rule and per report. Counts
//! of what was left out are kept, so nothing disappears silently.
//!
//! Bounds are in bytes after escaping, as the server counts them: the server refuses a
//! report with a field or a body over its limits whole, which would lose every finding in
//! it, the critical ones included.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::{self, Rule};

/// Longest text field of a finding the server accepts, in bytes (`MAX_FINDING_TEXT` of its
/// scan-job API). A report with a longer field is refused whole, and with it every finding,
/// so each field's own limit below is at most this.
pub const MAX_FINDING_FIELD_BYTES: usize = 4096;
/// Longest rule id of a finding the server accepts, in bytes (its scan-job API refuses a
/// report with a longer one whole). The catalogue's ids are far shorter; `yara.<rule name>`
/// ids of an operator's rules are held to it when the rules are loaded
/// ([`crate::yara_rules::RuleSet`]).
pub const MAX_RULE_ID_BYTES: usize = 200;
/// Most bytes of a finding's evidence, escapes and the cut mark included.
pub const MAX_EVIDENCE_BYTES: usize = 256;
/// Most bytes of a finding's message, escapes and the cut mark included.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most bytes of a finding's location, escapes and the cut mark included.
pub const MAX_LOCATION_BYTES: usize = 256;
const _: () = assert!(
    MAX_EVIDENCE_BYTES <= MAX_FINDING_FIELD_BYTES
        && MAX_MESSAGE_BYTES <= MAX_FINDING_FIELD_BYTES
        && MAX_LOCATION_BYTES <= MAX_FINDING_FIELD_BYTES
);
/// Most bytes of a report's findings as JSON. The server refuses a request body above 1 MiB
/// (its default `http.max_json_body_bytes`); the metrics and the worker's fields have the
/// rest. Findings beyond it are counted like those beyond [`MAX_FINDINGS_PER_REPORT`].
pub const MAX_FINDINGS_JSON_BYTES: usize = 512 << 10;
/// Most bytes of one string in the metrics (a name, a trap, a path), escapes included.
pub const MAX_METRIC_TEXT_BYTES: usize = 1024;
/// Most bytes of a report's metrics as JSON; the largest metrics are left out beyond it.
pub const MAX_METRICS_JSON_BYTES: usize = 256 << 10;
/// Most findings of one rule in a report; the most severe are kept.
pub const MAX_FINDINGS_PER_RULE: usize = 20;
/// Most findings in a report (plus one note counting what was left out); the most severe
/// are kept.
pub const MAX_FINDINGS_PER_REPORT: usize = 500;

/// The scanner's name and version, recorded in every report.
pub const SCANNER_VERSION: &str = concat!("plugstore-scanner/", env!("CARGO_PKG_VERSION"));

/// How much a finding matters to the verdict. Ordered from `Info` to `Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Inventory and context; never affects the verdict.
    Info,
    /// Worth a look; common in benign plugins.
    Low,
    /// Unusual for a plugin; a reviewer should know.
    Medium,
    /// Likely dangerous or broken; sends the version to review.
    High,
    /// Malicious or unusable; rejects the version.
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One thing the scanner noticed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule id from [`rules`], such as `wasm.undeclared-capability`.
    pub rule: String,
    /// How much it matters.
    pub severity: Severity,
    /// What was found, in a sentence.
    pub message: String,
    /// The offending bytes or names, bounded to [`MAX_EVIDENCE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Where: file path and section, segment or offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Finding {
    /// A finding of `rule` at the rule's default severity.
    pub fn new(rule: &Rule, message: impl AsRef<str>) -> Self {
        Self {
            rule: rule.id.to_owned(),
            severity: rule.severity,
            message: bounded_text(message.as_ref(), MAX_MESSAGE_BYTES),
            evidence: None,
            location: None,
        }
    }

    /// Overrides the rule's default severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Attaches evidence, bounded and sanitised.
    pub fn with_evidence(mut self, evidence: impl AsRef<str>) -> Self {
        self.evidence = Some(bounded_text(evidence.as_ref(), MAX_EVIDENCE_BYTES));
        self
    }

    /// Attaches evidence from raw bytes: printable ASCII kept, everything else escaped.
    pub fn with_evidence_bytes(self, evidence: &[u8]) -> Self {
        // Bound before escaping, so a huge match costs no more than the evidence kept.
        let head = &evidence[..evidence.len().min(MAX_EVIDENCE_BYTES * 2)];
        let mut text = head.escape_ascii().to_string();
        if head.len() < evidence.len() {
            text.push('…');
        }
        self.with_evidence(text)
    }

    /// Attaches a location.
    pub fn with_location(mut self, location: impl AsRef<str>) -> Self {
        self.location = Some(bounded_text(location.as_ref(), MAX_LOCATION_BYTES));
        self
    }

    /// Prefixes the location with the file it is in (`plugin.wasm: data segment 2 …`).
    pub fn in_file(mut self, path: &str) -> Self {
        let location = match self.location.take() {
            Some(inner) => format!("{path}: {inner}"),
            None => path.to_owned(),
        };
        self.with_location(location)
    }
}

/// `text` with control characters escaped and cut to at most `max_bytes` bytes of UTF-8,
/// the cut marked with `…`, so that it is safe to store, log and show.
///
/// The bound is on what is kept, not on the input: one escaped character takes up to six
/// bytes (`\u{85}`), and the server's limits are on bytes. A cut falls between characters
/// and never inside an escape.
pub fn bounded_text(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    // The longest prefix of `out` after which the cut mark still fits.
    let mut cut_at = 0;
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max_bytes {
            out.truncate(cut_at);
            if cut_at + CUT_MARK.len_utf8() <= max_bytes {
                out.push(CUT_MARK);
            }
            return out;
        }
        if out.len() + CUT_MARK.len_utf8() <= max_bytes {
            cut_at = out.len();
        }
    }
    out
}

/// Room kept in [`MAX_FINDINGS_JSON_BYTES`] for the [`rules::SCANNER_FINDINGS_OMITTED`]
/// note: its fields are bounded, JSON at most doubles them (control characters are escaped
/// already, so only quotes and backslashes grow), and the field names take the rest.
const OMITTED_NOTE_JSON_BYTES: usize = 2 * (MAX_MESSAGE_BYTES + MAX_EVIDENCE_BYTES) + 256;

/// What ends a cut text.
const CUT_MARK: char = '…';

/// Bytes of `value` as compact JSON, as the worker posts it.
fn json_len(value: &impl Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and these values (strings, numbers, string-keyed
    // maps) always serialise.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Numbers, names and lists measured during a scan, by dotted name (`wasm.imports.count`).
pub type Metrics = BTreeMap<String, serde_json::Value>;

/// What a static analyzer returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaticAnalysis {
    /// Findings, bounded per rule.
    pub findings: Vec<Finding>,
    /// Metrics.
    pub metrics: Metrics,
}

impl StaticAnalysis {
    /// Runs an analyzer that adds to a collector and to metrics, and gathers what it found.
    pub(crate) fn collect(analyzer: impl FnOnce(&mut FindingCollector, &mut Metrics)) -> Self {
        let mut findings = FindingCollector::new();
        let mut metrics = Metrics::new();
        analyzer(&mut findings, &mut metrics);
        Self {
            findings: findings.into_findings(),
            metrics,
        }
    }

    /// The most severe finding's severity, if there is any finding.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether a finding of `rule` is present.
    pub fn has(&self, rule: &Rule) -> bool {
        self.findings.iter().any(|f| f.rule == rule.id)
    }
}

/// The result of scanning one package version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Findings, most severe first, bounded by [`MAX_FINDINGS_PER_RULE`] and
    /// [`MAX_FINDINGS_PER_REPORT`].
    pub findings: Vec<Finding>,
    /// Metrics of every analyzer that ran.
    pub metrics: Metrics,
    /// [`SCANNER_VERSION`] of the scanner that wrote the report.
    pub scanner_version: String,
    /// Wall time of the scan, in milliseconds.
    pub duration_ms: u64,
}

impl ScanReport {
    /// The most severe finding's severity, if there is any finding.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// The findings of `rule`.
    pub fn findings_of<'a>(&'a self, rule: &'a Rule) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.rule == rule.id)
    }

    /// Bounds what [`Finding`]'s builders and [`FindingCollector::into_findings`] cannot: the
    /// metrics (see [`bound_metrics`]) and finding fields set directly, as in a report read
    /// back from the analysis child. A report the server refuses loses every finding in it,
    /// so this runs wherever a report is completed and before it is posted.
    pub fn keep_within_server_limits(&mut self) {
        for finding in &mut self.findings {
            // Text that is already bounded comes back unchanged. A cut rule id names no rule,
            // but the rule set refuses names that need it, and a cut one still loses less
            // than a refused report.
            finding.rule = bounded_text(&finding.rule, MAX_RULE_ID_BYTES);
            finding.message = bounded_text(&finding.message, MAX_MESSAGE_BYTES);
            if let Some(evidence) = &mut finding.evidence {
                *evidence = bounded_text(evidence, MAX_EVIDENCE_BYTES);
            }
            if let Some(location) = &mut finding.location {
                *location = bounded_text(location, MAX_LOCATION_BYTES);
            }
        }
        bound_metrics(&mut self.metrics);
    }
}

/// Bounds metrics as finding text is bounded: every string and object key within
/// [`MAX_METRIC_TEXT_BYTES`] (escaped like [`bounded_text`]), then the whole within
/// [`MAX_METRICS_JSON_BYTES`], the largest metrics replaced by a note of their size until the
/// rest fits. The analyzers bound what they record; this is the net under all of them.
pub fn bound_metrics(metrics: &mut Metrics) {
    for value in metrics.values_mut() {
        bound_metric_value(value);
    }
    let mut json_bytes = json_len(metrics);
    if json_bytes <= MAX_METRICS_JSON_BYTES {
        return;
    }
    let mut by_size: Vec<(String, usize)> = metrics
        .iter()
        .map(|(name, value)| (name.clone(), json_len(value)))
        .collect();
    by_size.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    for (name, size) in by_size {
        if json_bytes <= MAX_METRICS_JSON_BYTES {
            break;
        }
        let note = serde_json::Value::String(format!(
            "left out: {size} bytes of JSON, beyond the report's size limit"
        ));
        let note_bytes = json_len(&note);
        if note_bytes < size {
            json_bytes -= size - note_bytes;
            metrics.insert(name, note);
        } else {
            // At least the name, its colon and the value go; the comma may not.
            json_bytes = json_bytes.saturating_sub(json_len(&name) + 1 + size);
            metrics.remove(&name);
        }
    }
}

fn bound_metric_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => *text = bounded_text(text, MAX_METRIC_TEXT_BYTES),
        Value::Array(items) => items.iter_mut().for_each(bound_metric_value),
        Value::Object(entries) => {
            *entries = std::mem::take(entries)
                .into_iter()
                .map(|(key, mut value)| {
                    bound_metric_value(&mut value);
                    (bounded_text(&key, MAX_METRIC_TEXT_BYTES), value)
                })
                .collect();
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Gathers findings while keeping at most `per_rule` of each rule, preferring the most
/// severe, and counting the rest.
#[derive(Debug)]
pub struct FindingCollector {
    per_rule: usize,
    next_sequence: u64,
    rules: BTreeMap<String, RuleBucket>,
}

#[derive(Debug, Default)]
struct RuleBucket {
    /// Kept findings with their arrival order.
    kept: Vec<(u64, Finding)>,
    omitted: u64,
}

impl Default for FindingCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl FindingCollector {
    /// A collector keeping [`MAX_FINDINGS_PER_RULE`] findings per rule.
    pub fn new() -> Self {
        Self::with_per_rule_limit(MAX_FINDINGS_PER_RULE)
    }

    /// A collector keeping `per_rule` findings per rule.
    pub fn with_per_rule_limit(per_rule: usize) -> Self {
        Self {
            per_rule,
            next_sequence: 0,
            rules: BTreeMap::new(),
        }
    }

    /// Whether a finding of `rule` at `severity` would be kept; lets a caller skip building
    /// evidence for findings that would only be counted.
    pub fn wants(&self, rule: &Rule, severity: Severity) -> bool {
        match self.rules.get(rule.id) {
            None => self.per_rule > 0,
            Some(bucket) => {
                bucket.kept.len() < self.per_rule
                    || bucket.kept.iter().any(|(_, kept)| kept.severity < severity)
            }
        }
    }

    /// Counts a finding of `rule` that was not built because [`Self::wants`] said no.
    pub fn count_omitted(&mut self, rule: &Rule) {
        self.rules.entry(rule.id.to_owned()).or_default().omitted += 1;
    }

    /// Adds a finding, evicting a less severe one of the same rule when the rule is full.
    pub fn push(&mut self, finding: Finding) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let bucket = self.rules.entry(finding.rule.clone()).or_default();
        if bucket.kept.len() < self.per_rule {
            bucket.kept.push((sequence, finding));
            return;
        }
        bucket.omitted += 1;
        let weakest = bucket
            .kept
            .iter()
            .enumerate()
            .min_by_key(|(_, (seq, kept))| (kept.severity, std::cmp::Reverse(*seq)))
            .map(|(at, (_, kept))| (at, kept.severity));
        if let Some((at, severity)) = weakest
            && severity < finding.severity
        {
            bucket.kept[at] = (sequence, finding);
        }
    }

    /// Adds findings in order.
    pub fn extend(&mut self, findings: impl IntoIterator<Item = Finding>) {
        for finding in findings {
            self.push(finding);
        }
    }

    /// Moves `other`'s findings and omission counts into this collector, passing each
    /// finding through `adjust` (to prefix its location with a file, say).
    pub fn merge(&mut self, other: FindingCollector, adjust: impl Fn(Finding) -> Finding) {
        let mut kept = Vec::new();
        for (rule, bucket) in other.rules {
            if bucket.omitted > 0 {
                self.rules.entry(rule).or_default().omitted += bucket.omitted;
            }
            kept.extend(bucket.kept);
        }
        kept.sort_by_key(|(sequence, _)| *sequence);
        for (_, finding) in kept {
            self.push(adjust(finding));
        }
    }

    /// Total findings left out so far.
    pub fn omitted(&self) -> u64 {
        self.rules.values().map(|bucket| bucket.omitted).sum()
    }

    /// The kept findings, most severe first and otherwise in arrival order, cut to
    /// [`MAX_FINDINGS_PER_REPORT`] and [`MAX_FINDINGS_JSON_BYTES`], followed by one
    /// [`rules::SCANNER_FINDINGS_OMITTED`] note when anything was left out.
    pub fn into_findings(self) -> Vec<Finding> {
        let mut omitted_by_rule: Vec<(String, u64)> = Vec::new();
        let mut kept: Vec<(u64, Finding)> = Vec::new();
        for (rule, bucket) in self.rules {
            if bucket.omitted > 0 {
                omitted_by_rule.push((rule, bucket.omitted));
            }
            kept.extend(bucket.kept);
        }
        kept.sort_by_key(|(sequence, finding)| (std::cmp::Reverse(finding.severity), *sequence));
        // The brackets of the list, then each finding and its comma.
        let mut json_bytes = 2;
        let fitting = kept
            .iter()
            .take_while(|(_, finding)| {
                json_bytes += json_len(finding) + 1;
                json_bytes <= MAX_FINDINGS_JSON_BYTES - OMITTED_NOTE_JSON_BYTES
            })
            .count();
        let keep = fitting.min(MAX_FINDINGS_PER_REPORT);
        if kept.len() > keep {
            for (_, dropped) in kept.drain(keep..) {
                match omitted_by_rule
                    .iter_mut()
                    .find(|(rule, _)| *rule == dropped.rule)
                {
                    Some((_, count)) => *count += 1,
                    None => omitted_by_rule.push((dropped.rule, 1)),
                }
            }
        }
        let mut findings: Vec<Finding> = kept.into_iter().map(|(_, finding)| finding).collect();
        if !omitted_by_rule.is_empty() {
            let total: u64 = omitted_by_rule.iter().map(|(_, count)| count).sum();
            let detail = omitted_by_rule
                .iter()
                .map(|(rule, count)| format!("{rule}: {count}"))
                .collect::<Vec<_>>()
                .join(", ");
            findings.push(
                Finding::new(
                    &rules::SCANNER_FINDINGS_OMITTED,
                    format!("{total} findings were left out of this report"),
                )
                .with_evidence(detail),
            );
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{WASM_STRINGS_IPV4, WASM_STRINGS_URL};

    #[test]
    fn text_is_bounded_and_sanitised() {
        assert_eq!(bounded_text("abc", 3), "abc");
        assert_eq!(bounded_text("abcdef", 5), "ab…");
        assert_eq!(bounded_text("a\nb\u{1b}", 10), "a\\nb\\u{1b}");
        // Cut between characters, and never inside an escape.
        assert_eq!(bounded_text("ééééé", 8), "éé…");
        assert_eq!(bounded_text("ab\u{1b}c", 8), "ab…");
        assert_eq!(bounded_text("abcd", 2), "");
        let finding = Finding::new(&WASM_STRINGS_URL, "x").with_evidence_bytes(b"http://a\x00\xff");
        assert_eq!(finding.evidence.as_deref(), Some("http://a\\x00\\xff"));
        let long = vec![b'a'; 10_000];
        let finding = Finding::new(&WASM_STRINGS_URL, "x").with_evidence_bytes(&long);
        assert_eq!(
            finding.evidence.as_deref().map(str::len),
            Some(MAX_EVIDENCE_BYTES)
        );
    }

    /// The server refuses a finding field above 4096 bytes (`MAX_FINDING_TEXT`), and
    /// escaping makes up to six bytes of one character.
    #[test]
    fn escaped_text_is_bounded_by_its_bytes() {
        let name = "\u{85}".repeat(1000);
        let finding = Finding::new(&WASM_STRINGS_URL, format!("imports from `{name}`"))
            .with_evidence(&name)
            .with_location(&name)
            .in_file(&name);
        let fields = [
            Some(&finding.message),
            finding.evidence.as_ref(),
            finding.location.as_ref(),
        ];
        for field in fields.into_iter().flatten() {
            assert!(field.len() <= 4096, "{} bytes", field.len());
            assert!(field.ends_with('…'), "{field}");
            assert!(field.contains("\\u{85}"), "{field}");
        }
    }

    /// A rule id the server would refuse (only the `yara.<rule name>` ids of an operator's
    /// rules could be one, and loading refuses those) is cut before the report is posted.
    #[test]
    fn a_reports_rule_ids_are_bounded() {
        let mut report = ScanReport {
            findings: vec![Finding::new(&WASM_STRINGS_URL, "x")],
            metrics: Metrics::new(),
            scanner_version: SCANNER_VERSION.to_owned(),
            duration_ms: 0,
        };
        report.findings[0].rule = format!("yara.{}", "x".repeat(1000));
        report.keep_within_server_limits();
        let rule = &report.findings[0].rule;
        assert!(rule.len() <= MAX_RULE_ID_BYTES, "{} bytes", rule.len());
        assert!(
            rule.starts_with("yara.xxx") && rule.ends_with('…'),
            "{rule}"
        );
    }

    /// Every finding within its field limits, and still more than the server's 1 MiB body
    /// limit together: the most severe are kept, the rest counted.
    #[test]
    fn the_findings_of_a_report_are_bounded_in_bytes() {
        let mut collector = FindingCollector::with_per_rule_limit(usize::MAX);
        // Quotes and backslashes take two bytes each in JSON.
        let text = "\"\\".repeat(4096);
        for _ in 0..MAX_FINDINGS_PER_REPORT {
            collector.push(
                Finding::new(&WASM_STRINGS_URL, &text)
                    .with_evidence(&text)
                    .with_location(&text),
            );
        }
        collector.push(Finding::new(&rules::WASM_INVALID, &text));
        let findings = collector.into_findings();
        let json = serde_json::to_vec(&findings).unwrap();
        assert!(json.len() < 1 << 20, "{} bytes", json.len());
        assert_eq!(findings[0].rule, rules::WASM_INVALID.id);
        let note = findings.last().unwrap();
        assert_eq!(note.rule, rules::SCANNER_FINDINGS_OMITTED.id);
        assert!(
            note.evidence
                .as_deref()
                .unwrap()
                .starts_with("wasm.strings.url: "),
            "{note:?}"
        );
    }

    #[test]
    fn metrics_are_bounded_in_bytes() {
        let name = "\u{1}".repeat(100_000);
        let mut metrics = Metrics::new();
        metrics.insert("dynamic.traps".into(), serde_json::json!([name]));
        metrics.insert("dynamic.host_calls".into(), serde_json::json!({ &name: 1 }));
        // Larger than the two above once those are bounded, so these are what is left out.
        let list = vec!["a".repeat(1000); 2];
        for n in 0..300 {
            metrics.insert(format!("big.{n}"), serde_json::json!(list));
        }
        metrics.insert("small".into(), serde_json::json!(7));
        bound_metrics(&mut metrics);
        assert!(json_len(&metrics) <= MAX_METRICS_JSON_BYTES);
        let trap = metrics["dynamic.traps"][0].as_str().unwrap();
        assert!(trap.len() <= MAX_METRIC_TEXT_BYTES && trap.ends_with('…'));
        let calls = metrics["dynamic.host_calls"].as_object().unwrap();
        assert!(calls.keys().all(|key| key.len() <= MAX_METRIC_TEXT_BYTES));
        assert_eq!(metrics["small"], 7);
        let left_out = metrics
            .values()
            .filter(|value| value.as_str().is_some_and(|v| v.starts_with("left out: ")))
            .count();
        assert!(left_out > 0 && metrics.len() == 303, "{left_out}");
    }

    #[test]
    fn severity_orders_and_serialises() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        assert_eq!(
            serde_json::to_string(&Severity::Critical).unwrap(),
            "\"critical\""
        );
        let finding = Finding::new(&WASM_STRINGS_URL, "a URL").with_location("data segment 0");
        let json = serde_json::to_value(&finding).unwrap();
        assert_eq!(json["rule"], "wasm.strings.url");
        assert_eq!(json["severity"], "low");
        assert!(json.get("evidence").is_none());
        assert_eq!(serde_json::from_value::<Finding>(json).unwrap(), finding);
    }

    #[test]
    fn collector_keeps_the_most_severe_per_rule_and_counts_the_rest() {
        let mut collector = FindingCollector::with_per_rule_limit(2);
        for n in 0..5 {
            collector.push(Finding::new(&WASM_STRINGS_IPV4, format!("low {n}")));
        }
        assert!(!collector.wants(&WASM_STRINGS_IPV4, Severity::Low));
        assert!(collector.wants(&WASM_STRINGS_IPV4, Severity::Medium));
        collector.push(Finding::new(&WASM_STRINGS_IPV4, "medium").with_severity(Severity::Medium));
        collector.push(Finding::new(&WASM_STRINGS_URL, "url"));
        assert_eq!(collector.omitted(), 4);
        let findings = collector.into_findings();
        let messages: Vec<_> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "medium",
                "low 0",
                "url",
                "4 findings were left out of this report"
            ]
        );
        assert_eq!(
            findings.last().and_then(|f| f.evidence.as_deref()),
            Some("wasm.strings.ipv4: 4")
        );
    }

    #[test]
    fn reports_are_bounded() {
        let mut collector = FindingCollector::with_per_rule_limit(usize::MAX);
        for n in 0..MAX_FINDINGS_PER_REPORT + 3 {
            collector.push(Finding::new(&WASM_STRINGS_URL, format!("{n}")));
        }
        let findings = collector.into_findings();
        assert_eq!(findings.len(), MAX_FINDINGS_PER_REPORT + 1);
        assert_eq!(
            findings.last().map(|f| f.rule.as_str()),
            Some("scanner.findings-omitted")
        );
    }
}
