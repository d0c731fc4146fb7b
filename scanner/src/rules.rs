//! The catalogue of finding rules: a stable id, a default severity and a one-line summary
//! for each thing the scanner can report.
//!
//! Ids are part of the scanner's interface (verdict policy, reviewer filters, the findings
//! catalogue in the docs): they are never renamed or reused. A few rules report at another
//! severity than their default when the evidence is stronger or weaker (a public IP address
//! versus a private one); the analyzer says so where it does.

use crate::findings::Severity;

/// One kind of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, `area.what`, lowercase with dots and hyphens.
    pub id: &'static str,
    /// Severity findings of this rule have unless the analyzer states otherwise.
    pub severity: Severity,
    /// What the rule means, for the catalogue.
    pub summary: &'static str,
}

const fn rule(id: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        id,
        severity,
        summary,
    }
}

use Severity::{Critical, High, Info, Low, Medium};

// --- package -------------------------------------------------------------------------------

/// The manifest's entry point is not in the package.
pub const PACKAGE_ENTRY_MISSING: Rule = rule(
    "package.entry-missing",
    Critical,
    "the entry point named by plugin.entry is not in the package",
);
/// A wasm package ships native executables or scripts.
pub const PACKAGE_UNEXPECTED_EXECUTABLE: Rule = rule(
    "package.unexpected-executable",
    Medium,
    "a wasm plugin ships a native binary, a script or an executable file, which the sandbox \
     would never run but a user or another program might",
);

// --- wasm ----------------------------------------------------------------------------------

/// The module does not validate with the ABI's feature set.
pub const WASM_INVALID: Rule = rule(
    "wasm.invalid",
    Critical,
    "the module is not valid WebAssembly with the features hosts enable",
);
/// The module exceeds the size limit and was not analysed.
pub const WASM_MODULE_TOO_LARGE: Rule = rule(
    "wasm.module-too-large",
    High,
    "the module is larger than the scanner's limit and was not analysed",
);
/// Inventory of imports.
pub const WASM_IMPORTS: Rule = rule("wasm.imports", Info, "what the module imports, by module");
/// Inventory of exports.
pub const WASM_EXPORTS: Rule = rule("wasm.exports", Info, "what the module exports");
/// An import claims a capability the manifest does not declare.
pub const WASM_UNDECLARED_CAPABILITY: Rule = rule(
    "wasm.undeclared-capability",
    High,
    "the module imports host functions of a capability the manifest does not declare",
);
/// Imports from a module the ABI does not define.
pub const WASM_UNKNOWN_IMPORT_NAMESPACE: Rule = rule(
    "wasm.unknown-import-namespace",
    High,
    "the module imports from a module that is not part of the plugin ABI (for example \
     `env` or `wasi:sockets/…`), expecting a host other than plugstore's",
);
/// An import of a known module that the module does not define.
pub const WASM_UNKNOWN_IMPORT_FUNCTION: Rule = rule(
    "wasm.unknown-import-function",
    Medium,
    "the module imports a function that its ABI module does not have",
);
/// An import of a known function that no host provides.
pub const WASM_IMPORT_NOT_PROVIDED: Rule = rule(
    "wasm.import-not-provided",
    Medium,
    "the module imports a WASI function that hosts never provide",
);
/// An import with another type than the ABI's.
pub const WASM_IMPORT_SIGNATURE_MISMATCH: Rule = rule(
    "wasm.import-signature-mismatch",
    High,
    "the module imports an ABI function with a different type than the ABI defines",
);
/// A memory, table, global or tag import from an ABI module.
pub const WASM_UNSUPPORTED_IMPORT_KIND: Rule = rule(
    "wasm.unsupported-import-kind",
    Medium,
    "the module imports a memory, table, global or tag; hosts provide functions only",
);
/// A declared capability that no import uses.
pub const WASM_UNUSED_CAPABILITY: Rule = rule(
    "wasm.unused-capability",
    Info,
    "the manifest declares a capability that no import of the module uses",
);
/// A start function.
pub const WASM_START_SECTION: Rule = rule(
    "wasm.start-section",
    Medium,
    "the module has a start function, which runs during instantiation, before the host \
     checks the ABI version or calls any entry point",
);
/// Initial memory above the limit.
pub const WASM_MEMORY_INITIAL_OVER_LIMIT: Rule = rule(
    "wasm.memory-initial-over-limit",
    High,
    "a memory's initial size exceeds the limit: the plugin reserves that much on every \
     instantiation",
);
/// Declared maximum memory above the limit.
pub const WASM_MEMORY_MAXIMUM_OVER_LIMIT: Rule = rule(
    "wasm.memory-maximum-over-limit",
    Medium,
    "a memory's declared maximum exceeds the limit hosts enforce",
);
/// Memory without a declared maximum.
pub const WASM_MEMORY_UNBOUNDED: Rule = rule(
    "wasm.memory-unbounded",
    Low,
    "a memory declares no maximum (common toolchain output; hosts cap growth themselves)",
);
/// Initial table size above the limit.
pub const WASM_TABLE_INITIAL_OVER_LIMIT: Rule = rule(
    "wasm.table-initial-over-limit",
    High,
    "a table's initial size exceeds the limit",
);
/// Declared maximum table size above the limit.
pub const WASM_TABLE_MAXIMUM_OVER_LIMIT: Rule = rule(
    "wasm.table-maximum-over-limit",
    Medium,
    "a table's declared maximum exceeds the limit",
);
/// Table without a declared maximum.
pub const WASM_TABLE_UNBOUNDED: Rule =
    rule("wasm.table-unbounded", Low, "a table declares no maximum");
/// A required ABI export is missing.
pub const ABI_MISSING_EXPORT: Rule = rule(
    "abi.missing-export",
    High,
    "the module lacks an export the plugin ABI requires, so no host can run it",
);
/// An ABI export has the wrong kind or type.
pub const ABI_EXPORT_SIGNATURE_MISMATCH: Rule = rule(
    "abi.export-signature-mismatch",
    High,
    "an export the plugin ABI defines has another kind or type than the ABI's",
);
/// A URL in a data segment.
pub const WASM_STRINGS_URL: Rule = rule("wasm.strings.url", Low, "a URL in a data segment");
/// An IPv4 address in a data segment.
pub const WASM_STRINGS_IPV4: Rule = rule(
    "wasm.strings.ipv4",
    Low,
    "an IPv4 address in a data segment (medium when publicly routable)",
);
/// A domain name in a data segment.
pub const WASM_STRINGS_DOMAIN: Rule = rule(
    "wasm.strings.domain",
    Low,
    "a domain name with a common top-level domain in a data segment, outside any URL",
);
/// A long base64 run in a data segment.
pub const WASM_STRINGS_BASE64: Rule = rule(
    "wasm.strings.base64",
    Low,
    "a long base64 blob in a data segment (an embedded payload or key)",
);
/// A long hexadecimal run in a data segment.
pub const WASM_STRINGS_HEX_SECRET: Rule = rule(
    "wasm.strings.hex-secret",
    Low,
    "a long hexadecimal string in a data segment (a key or an embedded payload)",
);
/// A PEM private key header in a data segment.
pub const WASM_STRINGS_PRIVATE_KEY: Rule = rule(
    "wasm.strings.private-key",
    Medium,
    "a PEM private key in a data segment",
);
/// A cloud or service access key in a data segment.
pub const WASM_STRINGS_ACCESS_KEY: Rule = rule(
    "wasm.strings.access-key",
    Medium,
    "an access key of a known service (AWS, GitHub, Slack, Google, Stripe) in a data segment",
);
/// High-entropy data in a data segment.
pub const WASM_HIGH_ENTROPY_DATA: Rule = rule(
    "wasm.high-entropy-data",
    Medium,
    "a large high-entropy region in a data segment: compressed or encrypted payload",
);

// --- native --------------------------------------------------------------------------------

/// A native entry point larger than the limit.
pub const NATIVE_TOO_LARGE: Rule = rule(
    "native.too-large",
    High,
    "the native entry point is larger than the scanner's limit and was not analysed",
);
/// A native entry point whose format does not fit the declared targets.
pub const NATIVE_FORMAT_MISMATCH: Rule = rule(
    "native.format-mismatch",
    High,
    "the entry point's binary format does not match a declared target (PE for Windows, ELF \
     for Linux, Mach-O for macOS)",
);
/// A native format the scanner does not analyse yet.
pub const NATIVE_NOT_ANALYSED: Rule = rule(
    "native.not-analysed",
    Info,
    "the entry point's binary format has no static analyzer yet (only PE has)",
);
/// An unparseable PE file.
pub const PE_INVALID: Rule = rule(
    "pe.invalid",
    High,
    "the PE file or one of its tables is malformed",
);
/// PE machine type against declared targets.
pub const PE_MACHINE_MISMATCH: Rule = rule(
    "pe.machine-mismatch",
    High,
    "the PE machine type does not match a declared Windows target",
);
/// Imports used for process injection.
pub const PE_INJECTION_IMPORT: Rule = rule(
    "pe.injection-import",
    High,
    "imports an API used to inject code into other processes",
);
/// Imports used for persistence.
pub const PE_PERSISTENCE_IMPORT: Rule = rule(
    "pe.persistence-import",
    Low,
    "imports an API used for persistence (registry writes low, service creation medium)",
);
/// Strings used for persistence.
pub const PE_PERSISTENCE_STRING: Rule = rule(
    "pe.persistence-string",
    Medium,
    "contains a string used for persistence (scheduled tasks, Run keys)",
);
/// Imports used for keylogging.
pub const PE_KEYLOGGING_IMPORT: Rule = rule(
    "pe.keylogging-import",
    High,
    "imports an API used for keylogging (hooks high, key-state polling medium)",
);
/// Imports used for anti-debugging.
pub const PE_ANTI_DEBUG_IMPORT: Rule = rule(
    "pe.anti-debug-import",
    Low,
    "imports an API used to detect debuggers (medium for the less common ones)",
);
/// A writable and executable section.
pub const PE_WRITABLE_EXECUTABLE_SECTION: Rule = rule(
    "pe.writable-executable-section",
    High,
    "a section is both writable and executable (self-modifying or unpacking code)",
);
/// A section name of a known packer.
pub const PE_PACKER_SECTION: Rule = rule(
    "pe.packer-section",
    Medium,
    "a section name left by an executable packer (UPX, ASPack, PEtite, MPRESS, …)",
);
/// High-entropy code.
pub const PE_HIGH_ENTROPY_CODE: Rule = rule(
    "pe.high-entropy-code",
    Medium,
    "an executable section has the entropy of compressed or encrypted data (packed code)",
);
/// No Authenticode signature.
pub const PE_UNSIGNED: Rule = rule(
    "pe.unsigned",
    Low,
    "the PE file has no Authenticode signature",
);
/// An Authenticode signature is present (not verified by the static scan).
pub const PE_AUTHENTICODE_PRESENT: Rule = rule(
    "pe.authenticode-present",
    Info,
    "the PE file carries an Authenticode signature (presence only; not verified here)",
);

// --- dynamic (wasm run in the scanner's sandbox) --------------------------------------------

/// The module could not be compiled or instantiated for the dynamic run. Medium when an
/// import no host provides explains it (no host can run the module either); high otherwise,
/// since then nothing says hosts would refuse what the scanner did not run.
pub const DYNAMIC_NOT_RUN: Rule = rule(
    "dynamic.not-run",
    Medium,
    "the module passed validation but could not be compiled or instantiated for the dynamic \
     run (high unless an import no host provides explains it)",
);
/// The module needs more than the dynamic run's store allows, and was not run.
pub const DYNAMIC_RESOURCE_LIMIT: Rule = rule(
    "dynamic.resource-limit",
    High,
    "the module needs more tables, memories or table elements than the dynamic run allows, \
     so none of its code ran",
);
/// A call used up its fuel.
pub const DYNAMIC_FUEL_EXHAUSTED: Rule = rule(
    "dynamic.fuel-exhausted",
    High,
    "a call into the plugin ran out of fuel: an endless or extremely long loop",
);
/// A call was still running at the wall-clock deadline.
pub const DYNAMIC_TIMEOUT: Rule = rule(
    "dynamic.timeout",
    High,
    "a call into the plugin was still running at the dynamic run's wall-clock deadline",
);
/// Memory growth beyond the limit was refused.
pub const DYNAMIC_MEMORY_LIMIT: Rule = rule(
    "dynamic.memory-limit",
    High,
    "the plugin tried to grow its memory beyond the host limit",
);
/// The wasm stack overflowed.
pub const DYNAMIC_STACK_OVERFLOW: Rule = rule(
    "dynamic.stack-overflow",
    High,
    "a call into the plugin overflowed the wasm stack: deep or endless recursion",
);
/// Any other trap.
pub const DYNAMIC_TRAP: Rule = rule(
    "dynamic.trap",
    Medium,
    "a call into the plugin trapped (unreachable, out-of-bounds access, division by zero, …) \
     or returned an unusable buffer",
);
/// The plugin ended the run itself. Medium like [`DYNAMIC_TRAP`], which ends a run as much:
/// hosts allow both, and Go's runtime exits through `proc_exit` on a panic where Rust traps;
/// but the run saw nothing after it, and ending it is how a plugin that notices the scanner
/// would hide from it.
pub const DYNAMIC_EXITED_EARLY: Rule = rule(
    "dynamic.exited-early",
    Medium,
    "the plugin ended the dynamic run itself, through WASI proc_exit or a plugstore_init that \
     refused to load, so what it would have done next was not observed",
);
/// `plugstore_abi_version` returned another version.
pub const DYNAMIC_ABI_VERSION: Rule = rule(
    "dynamic.abi-version",
    High,
    "plugstore_abi_version returned a version the host does not implement",
);
/// A host function of an undeclared capability was called.
pub const DYNAMIC_HOST_CALL_OUTSIDE_CAPABILITIES: Rule = rule(
    "dynamic.host-call-outside-capabilities",
    High,
    "the plugin called a host function of a capability the manifest does not declare",
);
/// An import no host provides was called.
pub const DYNAMIC_UNKNOWN_IMPORT_CALLED: Rule = rule(
    "dynamic.unknown-import-called",
    High,
    "the plugin called an import that no host provides (built for another host, or probing)",
);
/// The output of a call exceeds the limit.
pub const DYNAMIC_OUTPUT_TOO_LARGE: Rule = rule(
    "dynamic.output-too-large",
    Medium,
    "plugstore_handle returned more bytes than the host accepts",
);
/// The output of a call is outside the plugin's memory.
pub const DYNAMIC_OUTPUT_OUT_OF_BOUNDS: Rule = rule(
    "dynamic.output-out-of-bounds",
    Medium,
    "plugstore_handle returned a pointer and length outside the plugin's memory",
);

// --- yara (rules over every file, see `yara_rules`) ------------------------------------------

/// A YARA rule matched. Findings carry the id `yara.<rule name>` and the severity in the
/// rule's metadata; this entry stands for all of them in the catalogue.
pub const YARA_RULE_MATCH: Rule = rule(
    "yara.rule",
    Medium,
    "a YARA rule of the default set or the operator's matched a file (reported as \
     yara.<rule name>, at the severity the rule states)",
);
/// The rules could not scan a file to the end.
pub const YARA_SCAN_FAILED: Rule = rule(
    "yara.scan-failed",
    High,
    "scanning a file with the YARA rules timed out or failed, so it may hide a match",
);
/// Files left out of the rule scan by its size budget.
pub const YARA_NOT_SCANNED: Rule = rule(
    "yara.not-scanned",
    Medium,
    "files beyond the rule scan's size budget were not scanned with the YARA rules",
);

// --- scanner -------------------------------------------------------------------------------

/// Findings left out to keep the report bounded.
pub const SCANNER_FINDINGS_OMITTED: Rule = rule(
    "scanner.findings-omitted",
    Info,
    "findings beyond the per-rule or per-report limit were counted but left out",
);

/// The analysis child was killed by a signal or its memory limit, or panicked. The worker
/// reports this rather than retrying: a package that reliably crashes the analyzer is
/// suspicious in itself (a decompression bomb, a parser attack), and a reviewer decides.
pub const SCANNER_ANALYSIS_CRASHED: Rule = rule(
    "scanner.analysis-crashed",
    High,
    "the analysis of the package crashed or exceeded its memory limit",
);
/// The analysis child used up its CPU-time limit or ran past the wall-clock timeout.
pub const SCANNER_ANALYSIS_TIMEOUT: Rule = rule(
    "scanner.analysis-timeout",
    High,
    "the analysis of the package exceeded its CPU-time limit or wall-clock timeout",
);

/// Every rule, in catalogue order.
pub const ALL: &[Rule] = &[
    PACKAGE_ENTRY_MISSING,
    PACKAGE_UNEXPECTED_EXECUTABLE,
    WASM_INVALID,
    WASM_MODULE_TOO_LARGE,
    WASM_IMPORTS,
    WASM_EXPORTS,
    WASM_UNDECLARED_CAPABILITY,
    WASM_UNKNOWN_IMPORT_NAMESPACE,
    WASM_UNKNOWN_IMPORT_FUNCTION,
    WASM_IMPORT_NOT_PROVIDED,
    WASM_IMPORT_SIGNATURE_MISMATCH,
    WASM_UNSUPPORTED_IMPORT_KIND,
    WASM_UNUSED_CAPABILITY,
    WASM_START_SECTION,
    WASM_MEMORY_INITIAL_OVER_LIMIT,
    WASM_MEMORY_MAXIMUM_OVER_LIMIT,
    WASM_MEMORY_UNBOUNDED,
    WASM_TABLE_INITIAL_OVER_LIMIT,
    WASM_TABLE_MAXIMUM_OVER_LIMIT,
    WASM_TABLE_UNBOUNDED,
    ABI_MISSING_EXPORT,
    ABI_EXPORT_SIGNATURE_MISMATCH,
    WASM_STRINGS_URL,
    WASM_STRINGS_IPV4,
    WASM_STRINGS_DOMAIN,
    WASM_STRINGS_BASE64,
    WASM_STRINGS_HEX_SECRET,
    WASM_STRINGS_PRIVATE_KEY,
    WASM_STRINGS_ACCESS_KEY,
    WASM_HIGH_ENTROPY_DATA,
    NATIVE_TOO_LARGE,
    NATIVE_FORMAT_MISMATCH,
    NATIVE_NOT_ANALYSED,
    PE_INVALID,
    PE_MACHINE_MISMATCH,
    PE_INJECTION_IMPORT,
    PE_PERSISTENCE_IMPORT,
    PE_PERSISTENCE_STRING,
    PE_KEYLOGGING_IMPORT,
    PE_ANTI_DEBUG_IMPORT,
    PE_WRITABLE_EXECUTABLE_SECTION,
    PE_PACKER_SECTION,
    PE_HIGH_ENTROPY_CODE,
    PE_UNSIGNED,
    PE_AUTHENTICODE_PRESENT,
    DYNAMIC_NOT_RUN,
    DYNAMIC_RESOURCE_LIMIT,
    DYNAMIC_FUEL_EXHAUSTED,
    DYNAMIC_TIMEOUT,
    DYNAMIC_MEMORY_LIMIT,
    DYNAMIC_STACK_OVERFLOW,
    DYNAMIC_TRAP,
    DYNAMIC_EXITED_EARLY,
    DYNAMIC_ABI_VERSION,
    DYNAMIC_HOST_CALL_OUTSIDE_CAPABILITIES,
    DYNAMIC_UNKNOWN_IMPORT_CALLED,
    DYNAMIC_OUTPUT_TOO_LARGE,
    DYNAMIC_OUTPUT_OUT_OF_BOUNDS,
    YARA_RULE_MATCH,
    YARA_SCAN_FAILED,
    YARA_NOT_SCANNED,
    SCANNER_FINDINGS_OMITTED,
    SCANNER_ANALYSIS_CRASHED,
    SCANNER_ANALYSIS_TIMEOUT,
];

/// The rule with this id, if the catalogue has it.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().find(|rule| rule.id == id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for rule in ALL {
            assert!(seen.insert(rule.id), "duplicate {}", rule.id);
            assert!(
                rule.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'),
                "{}",
                rule.id
            );
            assert!(rule.id.contains('.'), "{}", rule.id);
            assert!(!rule.summary.is_empty());
        }
        assert_eq!(by_id("wasm.invalid"), Some(&WASM_INVALID));
        assert_eq!(by_id("nope"), None);
    }
}
