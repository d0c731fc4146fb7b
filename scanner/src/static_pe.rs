//! Static analysis of native plugins: the binary format against the declared targets, and
//! for Windows PE files (the `object` crate's reader) the machine type, imports that
//! malware relies on, section permissions, packer signs and the Authenticode signature.
//!
//! Imports only show what a binary links statically; anything resolved at run time through
//! `GetProcAddress` is invisible here, which is why several signs are low or medium on their
//! own and why native plugins always get a human look before they are trusted widely.

use std::sync::LazyLock;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageThunkData, Import, PeFile, PeFile32, PeFile64};
use plugstore_format::manifest::{Manifest, Target};
use regex::bytes::Regex;
use serde_json::json;

use crate::entropy::{round3, shannon_entropy};
use crate::findings::{Finding, FindingCollector, Metrics, Severity, StaticAnalysis, bounded_text};
use crate::limits::StaticLimits;
use crate::rules::{self, Rule};

/// Most import table entries read from one file, imported functions and the descriptors of
/// the libraries they come from together; a well-formed DLL has a few hundred. Descriptors
/// count because each costs a read too, and a table can hold millions of them without one
/// import.
const MAX_IMPORTS: usize = 20_000;

/// Most bytes of import names (libraries and functions) read from one file (4 MiB); a
/// well-formed DLL's add up to a few kilobytes, those of a large C++ one to a few hundred.
///
/// The end of each name is found by searching for its NUL, up to the end of the section
/// without one: entries naming one long run without NUL, or all naming the same long name,
/// would otherwise cost entries times its length.
const MAX_IMPORT_NAME_BYTES: usize = 4 << 20;

/// Longest DLL name kept, in bytes.
const MAX_LIBRARY_NAME: usize = 256;

/// Most sections whose entropy is recorded in the metrics.
const MAX_SECTION_METRICS: usize = 32;

/// Longest section name in the metrics, in bytes once escaped: a raw name has 8 bytes, and
/// escaping makes up to six of each.
const MAX_SECTION_NAME_BYTES: usize = 48;

/// The binary format of a native entry point, from its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeFormat {
    /// Windows Portable Executable (`MZ`).
    Pe,
    /// Linux ELF.
    Elf,
    /// macOS Mach-O, thin or universal.
    MachO,
    /// None of these.
    Unknown,
}

impl NativeFormat {
    /// The format's usual name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pe => "PE",
            Self::Elf => "ELF",
            Self::MachO => "Mach-O",
            Self::Unknown => "unknown",
        }
    }

    /// Recognises a format by its first bytes.
    pub fn detect(bytes: &[u8]) -> Self {
        const MACHO_MAGICS: [[u8; 4]; 6] = [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
            [0xca, 0xfe, 0xba, 0xbe],
            [0xca, 0xfe, 0xba, 0xbf],
        ];
        if bytes.starts_with(b"MZ") {
            Self::Pe
        } else if bytes.starts_with(b"\x7fELF") {
            Self::Elf
        } else if MACHO_MAGICS.iter().any(|magic| bytes.starts_with(magic)) {
            Self::MachO
        } else {
            Self::Unknown
        }
    }

    /// The format binaries for `target` have; `None` for [`Target::Any`].
    pub const fn of_target(target: Target) -> Option<Self> {
        match target {
            Target::Any => None,
            Target::WindowsX86_64 | Target::WindowsAarch64 => Some(Self::Pe),
            Target::LinuxX86_64 | Target::LinuxAarch64 => Some(Self::Elf),
            Target::MacosX86_64 | Target::MacosAarch64 => Some(Self::MachO),
        }
    }
}

/// Analyses a native entry point against the manifest's targets: the format for every
/// target, and PE files in depth.
pub fn analyze_native(bytes: &[u8], manifest: &Manifest, limits: &StaticLimits) -> StaticAnalysis {
    StaticAnalysis::collect(|findings, metrics| {
        analyze_native_into(bytes, manifest.targets(), limits, findings, metrics);
    })
}

/// [`analyze_native`] adding to a caller's findings and metrics.
pub(crate) fn analyze_native_into(
    bytes: &[u8],
    targets: &[Target],
    limits: &StaticLimits,
    findings: &mut FindingCollector,
    metrics: &mut Metrics,
) {
    metrics.insert("native.size_bytes".into(), json!(bytes.len()));
    if bytes.len() as u64 > limits.max_native_size {
        findings.push(Finding::new(
            &rules::NATIVE_TOO_LARGE,
            format!(
                "the entry point is {} bytes; the limit is {} bytes",
                bytes.len(),
                limits.max_native_size
            ),
        ));
        return;
    }
    let format = NativeFormat::detect(bytes);
    metrics.insert("native.format".into(), json!(format.as_str()));
    for &target in targets {
        if let Some(expected) = NativeFormat::of_target(target)
            && expected != format
        {
            findings.push(
                Finding::new(
                    &rules::NATIVE_FORMAT_MISMATCH,
                    format!(
                        "the manifest declares target `{target}`, which needs a {} binary, but \
                         the entry point is {}",
                        expected.as_str(),
                        match format {
                            NativeFormat::Unknown => "not a PE, ELF or Mach-O file".to_owned(),
                            NativeFormat::Elf => "an ELF file".to_owned(),
                            known => format!("a {} file", known.as_str()),
                        }
                    ),
                )
                .with_evidence_bytes(&bytes[..bytes.len().min(4)]),
            );
        }
    }
    match format {
        NativeFormat::Pe => analyze_pe_into(bytes, targets, limits, findings, metrics),
        NativeFormat::Elf | NativeFormat::MachO => findings.push(Finding::new(
            &rules::NATIVE_NOT_ANALYSED,
            format!(
                "{} binaries have no static analyzer yet; only the format was checked",
                format.as_str()
            ),
        )),
        NativeFormat::Unknown => {}
    }
}

/// Analyses a PE file (without the format checks of [`analyze_native`]).
pub fn analyze_pe(bytes: &[u8], manifest: &Manifest, limits: &StaticLimits) -> StaticAnalysis {
    StaticAnalysis::collect(|findings, metrics| {
        analyze_pe_into(bytes, manifest.targets(), limits, findings, metrics);
    })
}

fn analyze_pe_into(
    bytes: &[u8],
    targets: &[Target],
    limits: &StaticLimits,
    findings: &mut FindingCollector,
    metrics: &mut Metrics,
) {
    let mut scan = PeScan {
        bytes,
        targets,
        limits,
        findings,
        metrics,
    };
    let result = match object::read::pe::optional_header_magic(bytes) {
        Ok(pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC) => PeFile64::parse(bytes).map(|file| scan.run(&file)),
        Ok(pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC) => PeFile32::parse(bytes).map(|file| scan.run(&file)),
        Ok(magic) => {
            scan.invalid(&format!("unknown optional header magic {magic:#x}"));
            return;
        }
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        scan.invalid(&error.to_string());
    }
}

/// An imported function that malware relies on.
struct SuspiciousImport {
    name: &'static str,
    rule: &'static Rule,
    severity: Severity,
    why: &'static str,
}

const fn suspicious(
    name: &'static str,
    rule: &'static Rule,
    severity: Severity,
    why: &'static str,
) -> SuspiciousImport {
    SuspiciousImport {
        name,
        rule,
        severity,
        why,
    }
}

const INJECTION: &str = "writes to or runs code in another process";
const UNMAP: &str = "hollows out another process (process hollowing)";
const APC: &str = "queues code to run in another thread";
const REGISTRY: &str = "writes the registry; Run keys are a classic persistence point";
const SERVICE: &str = "installs a Windows service, which survives reboots with high privilege";
const HOOK: &str = "installs a system-wide hook; with WH_KEYBOARD_LL it logs keystrokes";
const KEY_STATE: &str = "polls the keyboard state outside the plugin's own windows";
const DEBUGGER: &str = "detects a debugger, to behave differently under analysis";

/// Imports worth a finding, with the severity each earns on its own.
const SUSPICIOUS_IMPORTS: &[SuspiciousImport] = &[
    suspicious(
        "VirtualAllocEx",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "WriteProcessMemory",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "NtWriteVirtualMemory",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "CreateRemoteThread",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "CreateRemoteThreadEx",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "RtlCreateUserThread",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "NtUnmapViewOfSection",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        UNMAP,
    ),
    suspicious(
        "ZwUnmapViewOfSection",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        UNMAP,
    ),
    suspicious(
        "QueueUserAPC",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        APC,
    ),
    suspicious(
        "NtQueueApcThread",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        APC,
    ),
    suspicious(
        "SetThreadContext",
        &rules::PE_INJECTION_IMPORT,
        Severity::High,
        INJECTION,
    ),
    suspicious(
        "RegSetValueExA",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Low,
        REGISTRY,
    ),
    suspicious(
        "RegSetValueExW",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Low,
        REGISTRY,
    ),
    suspicious(
        "RegCreateKeyExA",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Low,
        REGISTRY,
    ),
    suspicious(
        "RegCreateKeyExW",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Low,
        REGISTRY,
    ),
    suspicious(
        "CreateServiceA",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Medium,
        SERVICE,
    ),
    suspicious(
        "CreateServiceW",
        &rules::PE_PERSISTENCE_IMPORT,
        Severity::Medium,
        SERVICE,
    ),
    suspicious(
        "SetWindowsHookExA",
        &rules::PE_KEYLOGGING_IMPORT,
        Severity::High,
        HOOK,
    ),
    suspicious(
        "SetWindowsHookExW",
        &rules::PE_KEYLOGGING_IMPORT,
        Severity::High,
        HOOK,
    ),
    suspicious(
        "GetAsyncKeyState",
        &rules::PE_KEYLOGGING_IMPORT,
        Severity::Medium,
        KEY_STATE,
    ),
    suspicious(
        "IsDebuggerPresent",
        &rules::PE_ANTI_DEBUG_IMPORT,
        Severity::Low,
        DEBUGGER,
    ),
    suspicious(
        "CheckRemoteDebuggerPresent",
        &rules::PE_ANTI_DEBUG_IMPORT,
        Severity::Medium,
        DEBUGGER,
    ),
    suspicious(
        "NtQueryInformationProcess",
        &rules::PE_ANTI_DEBUG_IMPORT,
        Severity::Medium,
        DEBUGGER,
    ),
    suspicious(
        "ZwQueryInformationProcess",
        &rules::PE_ANTI_DEBUG_IMPORT,
        Severity::Medium,
        DEBUGGER,
    ),
];

/// Section names that executable packers leave behind.
const PACKER_SECTIONS: &[&[u8]] = &[
    b"UPX0",
    b"UPX1",
    b"UPX2",
    b".aspack",
    b".adata",
    b".petite",
    b".MPRESS1",
    b".MPRESS2",
    b".nsp0",
    b".nsp1",
    b".themida",
    b".vmp0",
    b".vmp1",
    b"ASPack",
];

/// Strings of persistence mechanisms, matched in ASCII and UTF-16LE, ignoring case.
const PERSISTENCE_STRINGS: &[(&str, &str)] = &[
    ("schtasks", "creates scheduled tasks"),
    (
        r"CurrentVersion\Run",
        "names the registry Run keys that start programs at logon",
    ),
];

static PERSISTENCE_PATTERNS: LazyLock<Vec<(Regex, &'static str, &'static str)>> =
    LazyLock::new(|| {
        PERSISTENCE_STRINGS
            .iter()
            .flat_map(|&(text, why)| {
                let ascii = regex::escape(text);
                let utf16: String = text
                    .chars()
                    .map(|c| format!("{}\\x00", regex::escape(&c.to_string())))
                    .collect();
                [ascii, utf16].map(|pattern| {
                    let source = format!("(?i-u){pattern}");
                    match Regex::new(&source) {
                        Ok(regex) => (regex, text, why),
                        // Built from the constant table above, which the tests cover.
                        Err(error) => panic!("invalid built-in pattern {source:?}: {error}"),
                    }
                })
            })
            .collect()
    });

struct PeScan<'a, 'c> {
    bytes: &'a [u8],
    targets: &'c [Target],
    limits: &'c StaticLimits,
    findings: &'c mut FindingCollector,
    metrics: &'c mut Metrics,
}

impl PeScan<'_, '_> {
    fn invalid(&mut self, problem: &str) {
        self.findings.push(Finding::new(
            &rules::PE_INVALID,
            format!("the PE file is malformed: {problem}"),
        ));
    }

    fn run<Pe: ImageNtHeaders>(&mut self, file: &PeFile<'_, Pe>) {
        self.machine(file);
        if let Err(error) = self.imports(file) {
            self.invalid(&error.to_string());
        }
        self.sections(file);
        self.signature(file);
        self.persistence_strings();
    }

    fn machine<Pe: ImageNtHeaders>(&mut self, file: &PeFile<'_, Pe>) {
        let machine = file.nt_headers().file_header().machine.get(LE);
        self.metrics
            .insert("pe.machine".into(), json!(machine_name(machine)));
        for &target in self.targets {
            let expected = match target {
                Target::WindowsX86_64 => pe::IMAGE_FILE_MACHINE_AMD64,
                Target::WindowsAarch64 => pe::IMAGE_FILE_MACHINE_ARM64,
                _ => continue,
            };
            if machine != expected {
                self.findings.push(
                    Finding::new(
                        &rules::PE_MACHINE_MISMATCH,
                        format!(
                            "the manifest declares target `{target}`, which needs machine type \
                             {}, but the file is {}",
                            machine_name(expected),
                            machine_name(machine)
                        ),
                    )
                    .with_evidence(format!("{machine:#06x}"))
                    .with_location("COFF file header"),
                );
            }
        }
    }

    fn imports<Pe: ImageNtHeaders>(&mut self, file: &PeFile<'_, Pe>) -> Result<(), ImportsUnread> {
        let mut budget = ImportBudget::default();
        let mut count = 0usize;
        let mut libraries = Vec::new();
        if let Some(table) = file.import_table()? {
            let mut descriptors = table.descriptors()?;
            while let Some(descriptor) = descriptors.next()? {
                budget.entry()?;
                let library = library_name(budget.name(table.name(descriptor.name.get(LE))?)?);
                let first = match descriptor.original_first_thunk.get(LE) {
                    0 => descriptor.first_thunk.get(LE),
                    thunk => thunk,
                };
                let mut thunks = table.thunks(first)?;
                while let Some(thunk) = thunks.next::<Pe>()? {
                    budget.entry()?;
                    count += 1;
                    if let Import::Name(_, name) = table.import::<Pe>(thunk)? {
                        self.import(&library, budget.name(name)?, "import table");
                    }
                }
                libraries.push(library);
            }
        }
        let sections = file.section_table();
        if let Some(table) = file
            .data_directories()
            .delay_load_import_table(file.data(), &sections)?
        {
            let mut descriptors = table.descriptors()?;
            while let Some(descriptor) = descriptors.next()? {
                budget.entry()?;
                let name = table.name(descriptor.dll_name_rva.get(LE))?;
                let library = library_name(budget.name(name)?);
                let mut thunks = table.thunks(descriptor.import_name_table_rva.get(LE))?;
                while let Some(thunk) = thunks.next::<Pe>()? {
                    budget.entry()?;
                    count += 1;
                    if !thunk.is_ordinal() {
                        let (_, name) = table.hint_name(thunk.address())?;
                        self.import(&library, budget.name(name)?, "delay-load import table");
                    }
                }
                libraries.push(library);
            }
        }
        self.metrics.insert("pe.imports.count".into(), json!(count));
        libraries.truncate(100);
        // Names from the file: escaped and bounded like finding text.
        let libraries: Vec<String> = libraries
            .iter()
            .map(|library| bounded_text(library, MAX_LIBRARY_NAME))
            .collect();
        self.metrics
            .insert("pe.imports.libraries".into(), json!(libraries));
        Ok(())
    }

    fn import(&mut self, library: &str, name: &[u8], table: &str) {
        let Some(known) = SUSPICIOUS_IMPORTS
            .iter()
            .find(|s| s.name.as_bytes() == name)
        else {
            return;
        };
        self.findings.push(
            Finding::new(
                known.rule,
                format!("imports {}, which {}", known.name, known.why),
            )
            .with_severity(known.severity)
            .with_evidence(format!("{library}!{}", known.name))
            .with_location(table),
        );
    }

    fn sections<Pe: ImageNtHeaders>(&mut self, file: &PeFile<'_, Pe>) {
        let mut entropies = serde_json::Map::new();
        // Each entropy is a pass over the section's data. Sections of a well-formed file
        // hold distinct parts of it, so their data adds up to less than the file; a crafted
        // one can have 65 535 sections over the same megabytes, and measuring each would
        // cost sections times file size.
        let mut unmeasured_bytes = self.bytes.len();
        let mut unmeasured_sections = 0usize;
        for (index, section) in file.section_table().iter().enumerate() {
            let raw_name = section.raw_name();
            let name = String::from_utf8_lossy(raw_name).into_owned();
            let characteristics = section.characteristics.get(LE);
            let location = format!("section {index} {name:?}");
            let executable = characteristics & pe::IMAGE_SCN_MEM_EXECUTE != 0;
            if executable && characteristics & pe::IMAGE_SCN_MEM_WRITE != 0 {
                self.findings.push(
                    Finding::new(
                        &rules::PE_WRITABLE_EXECUTABLE_SECTION,
                        format!("section {name:?} is both writable and executable"),
                    )
                    .with_evidence(format!("characteristics {characteristics:#010x}"))
                    .with_location(&location),
                );
            }
            if PACKER_SECTIONS.contains(&raw_name) {
                self.findings.push(
                    Finding::new(
                        &rules::PE_PACKER_SECTION,
                        format!("section {name:?} is named like a packer's"),
                    )
                    .with_evidence(&name)
                    .with_location(&location),
                );
            }
            // A section whose raw data lies outside the file is the loader's problem, and
            // would have failed the import checks already if it mattered.
            let Ok(data) = section.pe_data(self.bytes) else {
                continue;
            };
            let Some(left) = unmeasured_bytes.checked_sub(data.len()) else {
                unmeasured_sections += 1;
                continue;
            };
            unmeasured_bytes = left;
            let entropy = shannon_entropy(data);
            if entropies.len() < MAX_SECTION_METRICS {
                entropies.insert(
                    bounded_text(&name, MAX_SECTION_NAME_BYTES),
                    json!(round3(entropy)),
                );
            }
            if executable
                && data.len() >= self.limits.high_entropy_min_len
                && entropy > self.limits.packed_code_bits
            {
                self.findings.push(
                    Finding::new(
                        &rules::PE_HIGH_ENTROPY_CODE,
                        format!(
                            "executable section {name:?} has {entropy:.2} bits of entropy per \
                             byte; compiled code has less than 7"
                        ),
                    )
                    .with_location(&location),
                );
            }
        }
        self.metrics.insert(
            "pe.entropy.sections".into(),
            serde_json::Value::Object(entropies),
        );
        if unmeasured_sections > 0 {
            // Not measuring a section could hide packed code in it, hence a high finding.
            self.invalid(&format!(
                "the data of its {} sections adds up to more than the file's {} bytes, so \
                 sections overlap; the entropy of {unmeasured_sections} of them was not measured",
                file.section_table().len(),
                self.bytes.len()
            ));
        }
    }

    fn signature<Pe: ImageNtHeaders>(&mut self, file: &PeFile<'_, Pe>) {
        let security = file
            .data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
            .filter(|directory| directory.size.get(LE) > 0);
        self.metrics
            .insert("pe.authenticode".into(), json!(security.is_some()));
        match security {
            None => self.findings.push(
                Finding::new(
                    &rules::PE_UNSIGNED,
                    "the file has no Authenticode signature (its security directory is empty)",
                )
                .with_location("optional header, security directory"),
            ),
            Some(directory) => self.findings.push(
                Finding::new(
                    &rules::PE_AUTHENTICODE_PRESENT,
                    format!(
                        "the file carries {} bytes of Authenticode certificates; the static \
                         scan does not verify them",
                        directory.size.get(LE)
                    ),
                )
                .with_location(format!(
                    "file offset {:#x}",
                    directory.virtual_address.get(LE)
                )),
            ),
        }
    }

    fn persistence_strings(&mut self) {
        for (regex, text, why) in PERSISTENCE_PATTERNS.iter() {
            if let Some(found) = regex.find(self.bytes) {
                self.findings.push(
                    Finding::new(
                        &rules::PE_PERSISTENCE_STRING,
                        format!("contains the string {text:?}, which {why}"),
                    )
                    .with_evidence_bytes(found.as_bytes())
                    .with_location(format!("file offset {:#x}", found.start())),
                );
            }
        }
    }
}

/// Why the import tables were not read to their end.
#[derive(Debug, thiserror::Error)]
enum ImportsUnread {
    /// A table or a name does not parse.
    #[error("import table: {0}")]
    Malformed(#[from] object::read::Error),
    /// Over [`MAX_IMPORTS`].
    #[error("more than {MAX_IMPORTS} imports and imported libraries")]
    TooManyEntries,
    /// Over [`MAX_IMPORT_NAME_BYTES`].
    #[error("its import names add up to more than {MAX_IMPORT_NAME_BYTES} bytes")]
    NamesTooLong,
}

/// What [`PeScan::imports`] has read so far, against [`MAX_IMPORTS`] and
/// [`MAX_IMPORT_NAME_BYTES`].
#[derive(Default)]
struct ImportBudget {
    entries: usize,
    name_bytes: usize,
}

impl ImportBudget {
    /// Counts one descriptor or import.
    fn entry(&mut self) -> Result<(), ImportsUnread> {
        self.entries += 1;
        if self.entries > MAX_IMPORTS {
            return Err(ImportsUnread::TooManyEntries);
        }
        Ok(())
    }

    /// Counts a name that was read, which cost a search through its bytes and its NUL.
    fn name<'data>(&mut self, name: &'data [u8]) -> Result<&'data [u8], ImportsUnread> {
        self.name_bytes += name.len() + 1;
        if self.name_bytes > MAX_IMPORT_NAME_BYTES {
            return Err(ImportsUnread::NamesTooLong);
        }
        Ok(name)
    }
}

/// A DLL name from the file, bounded (real ones are short; a hostile one need not be).
fn library_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(MAX_LIBRARY_NAME)]).into_owned()
}

fn machine_name(machine: u16) -> String {
    match machine {
        pe::IMAGE_FILE_MACHINE_AMD64 => "AMD64".into(),
        pe::IMAGE_FILE_MACHINE_ARM64 => "ARM64".into(),
        pe::IMAGE_FILE_MACHINE_ARM64EC => "ARM64EC".into(),
        pe::IMAGE_FILE_MACHINE_I386 => "I386".into(),
        pe::IMAGE_FILE_MACHINE_ARMNT => "ARMNT".into(),
        other => format!("unknown machine {other:#06x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised() {
        assert_eq!(NativeFormat::detect(b"MZ\x90\0"), NativeFormat::Pe);
        assert_eq!(NativeFormat::detect(b"\x7fELF\x02"), NativeFormat::Elf);
        assert_eq!(
            NativeFormat::detect(&[0xcf, 0xfa, 0xed, 0xfe, 7]),
            NativeFormat::MachO
        );
        assert_eq!(NativeFormat::detect(b"\0asm"), NativeFormat::Unknown);
        assert_eq!(NativeFormat::of_target(Target::Any), None);
    }

    #[test]
    fn persistence_patterns_match_ascii_and_utf16() {
        let utf16: Vec<u8> = "x SchTasks /create"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(
            PERSISTENCE_PATTERNS
                .iter()
                .any(|(regex, ..)| regex.is_match(&utf16))
        );
        assert!(
            PERSISTENCE_PATTERNS.iter().any(
                |(regex, ..)| regex.is_match(br"Software\Microsoft\Windows\CurrentVersion\Run")
            )
        );
        assert!(
            !PERSISTENCE_PATTERNS
                .iter()
                .any(|(regex, ..)| regex.is_match(b"tasks"))
        );
    }
}
