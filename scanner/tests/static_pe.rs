//! The native analyzer on PE files built at test time with `object`'s PE writer.

use object::pe;
use object::write::pe::{NtHeaders, Writer};
use object::{LittleEndian as LE, U16, U32};
mod common;

use common::{native_manifest as manifest, noise, of};
use plugstore_scanner::rules;
use plugstore_scanner::{Finding, Severity, StaticAnalysis, StaticLimits, analyze_native};

/// What goes into a test DLL.
struct PeSpec<'a> {
    machine: u16,
    /// `(dll, functions)` for the import table.
    imports: &'a [(&'a str, &'a [&'a str])],
    /// Contents of `.text`.
    code: Vec<u8>,
    /// Other sections: name, characteristics, contents.
    sections: Vec<([u8; 8], u32, Vec<u8>)>,
    /// Whether to append a (dummy) Authenticode certificate table.
    signed: bool,
}

impl Default for PeSpec<'_> {
    fn default() -> Self {
        Self {
            machine: pe::IMAGE_FILE_MACHINE_AMD64,
            imports: &[("KERNEL32.dll", &["GetLastError"])],
            // xor eax, eax; ret
            code: vec![0x31, 0xc0, 0xc3],
            sections: Vec::new(),
            signed: false,
        }
    }
}

/// The `.idata` contents for `imports`, laid out at `rva`: descriptors, then per DLL its
/// lookup and address tables, then hint/name entries and DLL names.
fn idata(imports: &[(&str, &[&str])], rva: u32) -> Vec<u8> {
    let descriptors = (imports.len() + 1) * 20;
    let mut tables = Vec::new();
    let mut at = descriptors;
    for (_, functions) in imports {
        let size = (functions.len() + 1) * 8;
        tables.push((at, at + size));
        at += 2 * size;
    }
    let mut names = Vec::new();
    for (_, functions) in imports {
        let mut offsets = Vec::new();
        for function in *functions {
            offsets.push(at);
            at += (2 + function.len() + 1).next_multiple_of(2);
        }
        names.push(offsets);
    }
    let mut dll_names = Vec::new();
    for (dll, _) in imports {
        dll_names.push(at);
        at += dll.len() + 1;
    }

    let mut out = vec![0u8; at];
    let rva_of = |offset: usize| rva + offset as u32;
    let put32 = |out: &mut Vec<u8>, at: usize, value: u32| {
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    };
    for (index, (dll, functions)) in imports.iter().enumerate() {
        let descriptor = index * 20;
        let (lookup, address) = tables[index];
        put32(&mut out, descriptor, rva_of(lookup));
        put32(&mut out, descriptor + 12, rva_of(dll_names[index]));
        put32(&mut out, descriptor + 16, rva_of(address));
        for (n, function) in functions.iter().enumerate() {
            let hint_name = names[index][n];
            let thunk = u64::from(rva_of(hint_name)).to_le_bytes();
            out[lookup + n * 8..lookup + n * 8 + 8].copy_from_slice(&thunk);
            out[address + n * 8..address + n * 8 + 8].copy_from_slice(&thunk);
            out[hint_name + 2..hint_name + 2 + function.len()].copy_from_slice(function.as_bytes());
        }
        out[dll_names[index]..dll_names[index] + dll.len()].copy_from_slice(dll.as_bytes());
    }
    out
}

fn build_pe(spec: &PeSpec<'_>) -> Vec<u8> {
    let idata_len = idata(spec.imports, 0).len() as u32;
    let certificate = [
        &24u32.to_le_bytes()[..],
        &0x0200u16.to_le_bytes(),
        &0x0002u16.to_le_bytes(),
        &[0x30, 0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    let mut out = Vec::new();
    {
        let mut writer = Writer::new(true, 0x1000, 0x200, &mut out);
        writer.reserve_dos_header_and_stub();
        writer.reserve_nt_headers(pe::IMAGE_NUMBEROF_DIRECTORY_ENTRIES);
        writer.reserve_section_headers(2 + spec.sections.len() as u16);
        let text = writer.reserve_text_section(spec.code.len() as u32);
        let sections: Vec<_> = spec
            .sections
            .iter()
            .map(|(name, characteristics, data)| {
                writer.reserve_section(
                    *name,
                    *characteristics,
                    data.len() as u32,
                    data.len() as u32,
                )
            })
            .collect();
        let imports = writer.reserve_idata_section(idata_len);
        if spec.signed {
            writer.reserve_certificate_table(certificate.len() as u32);
        }

        writer.write_dos_header_and_stub().unwrap();
        writer.write_nt_headers(NtHeaders {
            machine: spec.machine,
            time_date_stamp: 0,
            characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE
                | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE
                | pe::IMAGE_FILE_DLL,
            major_linker_version: 14,
            minor_linker_version: 0,
            address_of_entry_point: text.virtual_address,
            image_base: 0x1_8000_0000,
            major_operating_system_version: 6,
            minor_operating_system_version: 0,
            major_image_version: 0,
            minor_image_version: 0,
            major_subsystem_version: 6,
            minor_subsystem_version: 0,
            subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_GUI,
            dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
                | pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT
                | pe::IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA,
            size_of_stack_reserve: 0x10_0000,
            size_of_stack_commit: 0x1000,
            size_of_heap_reserve: 0x10_0000,
            size_of_heap_commit: 0x1000,
        });
        writer.write_section_headers();
        writer.write_section(text.file_offset, &spec.code);
        for (range, (_, _, data)) in sections.iter().zip(&spec.sections) {
            writer.write_section(range.file_offset, data);
        }
        writer.write_section(
            imports.file_offset,
            &idata(spec.imports, imports.virtual_address),
        );
        if spec.signed {
            writer.write_certificate_table(&certificate);
        }
    }
    out
}

/// A section header for [`crafted_pe`]: `offset` counts from the start of its `data`.
fn section_header(
    characteristics: u32,
    virtual_address: u32,
    offset: u32,
    size: u32,
) -> pe::ImageSectionHeader {
    pe::ImageSectionHeader {
        name: *b".data\0\0\0",
        virtual_size: U32::new(LE, size),
        virtual_address: U32::new(LE, virtual_address),
        size_of_raw_data: U32::new(LE, size),
        pointer_to_raw_data: U32::new(LE, offset),
        pointer_to_relocations: U32::new(LE, 0),
        pointer_to_linenumbers: U32::new(LE, 0),
        number_of_relocations: U16::new(LE, 0),
        number_of_linenumbers: U16::new(LE, 0),
        characteristics: U32::new(LE, characteristics),
    }
}

/// A PE file with [`build_pe`]'s headers and a section table the writer would not make
/// (overlapping sections, tens of thousands of them): `sections`, then `data`, and
/// `import_directory` as the import directory's address (0 for none).
fn crafted_pe(sections: &[pe::ImageSectionHeader], import_directory: u32, data: &[u8]) -> Vec<u8> {
    let mut bytes = build_pe(&PeSpec::default());
    let nt = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    let (headers, _) =
        object::pod::from_bytes_mut::<pe::ImageNtHeaders64>(&mut bytes[nt..]).unwrap();
    headers
        .file_header
        .number_of_sections
        .set(LE, u16::try_from(sections.len()).unwrap());
    let table = nt + 4 + 20 + usize::from(headers.file_header.size_of_optional_header.get(LE));
    // The data directories follow the optional header's 112 bytes; the import one is the
    // second.
    let import = nt + 4 + 20 + 112 + 8;
    bytes[import..import + 4].copy_from_slice(&import_directory.to_le_bytes());
    bytes[import + 4..import + 8].copy_from_slice(&20u32.to_le_bytes());
    bytes.truncate(table);
    let data_offset = u32::try_from(table + size_of_val(sections)).unwrap();
    for section in sections {
        let mut section = *section;
        let offset = section.pointer_to_raw_data.get(LE);
        section.pointer_to_raw_data.set(LE, offset + data_offset);
        bytes.extend_from_slice(object::pod::bytes_of(&section));
    }
    bytes.extend_from_slice(data);
    bytes
}

/// A PE whose one section, read-only data at RVA 0x1000, is its import table:
/// `descriptors` libraries named `a.dll`, each with the same list of `thunks` imports of
/// `function`.
fn pe_with_imports(descriptors: usize, thunks: usize, function: &[u8]) -> Vec<u8> {
    const RVA: u32 = 0x1000;
    let rdata = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
    let idata = crafted_imports(RVA, descriptors, thunks, function);
    let size = u32::try_from(idata.len()).unwrap();
    crafted_pe(&[section_header(rdata, RVA, 0, size)], RVA, &idata)
}

/// An import section at `rva` for [`crafted_pe`]: `descriptors` libraries named `a.dll`,
/// each with the same list of `thunks` imports of `function`.
fn crafted_imports(rva: u32, descriptors: usize, thunks: usize, function: &[u8]) -> Vec<u8> {
    const LIBRARY: &[u8] = b"a.dll\0";
    let thunk_list = (descriptors + 1) * 20;
    let library = thunk_list + (thunks + 1) * 8;
    let hint_name = library + LIBRARY.len();
    let rva_of = |offset: usize| rva + u32::try_from(offset).unwrap();
    let mut out = Vec::new();
    for _ in 0..descriptors {
        out.extend_from_slice(&rva_of(thunk_list).to_le_bytes()); // lookup table
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&rva_of(library).to_le_bytes());
        out.extend_from_slice(&rva_of(thunk_list).to_le_bytes()); // address table
    }
    out.extend_from_slice(&[0; 20]);
    for _ in 0..thunks {
        out.extend_from_slice(&u64::from(rva_of(hint_name)).to_le_bytes());
    }
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(LIBRARY);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(function);
    out.push(0);
    out
}

fn analyze(bytes: &[u8], targets: &[&str]) -> StaticAnalysis {
    analyze_native(bytes, &manifest(targets), &StaticLimits::default())
}

fn evidence(findings: &[&Finding]) -> Vec<(String, Severity)> {
    let mut out: Vec<_> = findings
        .iter()
        .map(|f| (f.evidence.clone().unwrap_or_default(), f.severity))
        .collect();
    out.sort();
    out
}

#[test]
fn a_plain_unsigned_dll_is_only_low() {
    let bytes = build_pe(&PeSpec::default());
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let above_low: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Low)
        .collect();
    assert!(above_low.is_empty(), "{above_low:#?}");
    let unsigned = of(&analysis, &rules::PE_UNSIGNED);
    assert_eq!(unsigned.len(), 1);
    assert_eq!(analysis.metrics["pe.machine"], "AMD64");
    assert_eq!(analysis.metrics["pe.imports.count"], 1);
    assert_eq!(
        analysis.metrics["pe.imports.libraries"],
        serde_json::json!(["KERNEL32.dll"])
    );
    assert_eq!(analysis.metrics["native.format"], "PE");
}

#[test]
fn a_signed_dll_is_noted_not_flagged() {
    let bytes = build_pe(&PeSpec {
        signed: true,
        ..PeSpec::default()
    });
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    assert!(of(&analysis, &rules::PE_UNSIGNED).is_empty());
    assert_eq!(of(&analysis, &rules::PE_AUTHENTICODE_PRESENT).len(), 1);
}

#[test]
fn machine_type_must_match_every_windows_target() {
    let bytes = build_pe(&PeSpec::default());
    let analysis = analyze(&bytes, &["windows-x86_64", "windows-aarch64"]);
    let found = of(&analysis, &rules::PE_MACHINE_MISMATCH);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::High);
    assert!(found[0].message.contains("`windows-aarch64`"));
    assert!(
        found[0]
            .message
            .contains("needs machine type ARM64, but the file is AMD64")
    );

    let bytes = build_pe(&PeSpec {
        machine: pe::IMAGE_FILE_MACHINE_ARM64,
        ..PeSpec::default()
    });
    let analysis = analyze(&bytes, &["windows-aarch64"]);
    assert!(of(&analysis, &rules::PE_MACHINE_MISMATCH).is_empty());
}

#[test]
fn suspicious_imports_by_purpose() {
    let imports: &[(&str, &[&str])] = &[
        (
            "KERNEL32.dll",
            &[
                "GetLastError",
                "VirtualAllocEx",
                "WriteProcessMemory",
                "CreateRemoteThread",
                "QueueUserAPC",
                "IsDebuggerPresent",
                "CheckRemoteDebuggerPresent",
            ],
        ),
        (
            "ntdll.dll",
            &["NtUnmapViewOfSection", "NtQueryInformationProcess"],
        ),
        ("USER32.dll", &["SetWindowsHookExW", "GetAsyncKeyState"]),
        (
            "ADVAPI32.dll",
            &["RegSetValueExW", "RegCreateKeyExW", "CreateServiceW"],
        ),
    ];
    let bytes = build_pe(&PeSpec {
        imports,
        ..PeSpec::default()
    });
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let high = Severity::High;
    let medium = Severity::Medium;
    let low = Severity::Low;
    assert_eq!(
        evidence(&of(&analysis, &rules::PE_INJECTION_IMPORT)),
        [
            ("KERNEL32.dll!CreateRemoteThread".into(), high),
            ("KERNEL32.dll!QueueUserAPC".into(), high),
            ("KERNEL32.dll!VirtualAllocEx".into(), high),
            ("KERNEL32.dll!WriteProcessMemory".into(), high),
            ("ntdll.dll!NtUnmapViewOfSection".into(), high),
        ]
    );
    assert_eq!(
        evidence(&of(&analysis, &rules::PE_KEYLOGGING_IMPORT)),
        [
            ("USER32.dll!GetAsyncKeyState".into(), medium),
            ("USER32.dll!SetWindowsHookExW".into(), high),
        ]
    );
    assert_eq!(
        evidence(&of(&analysis, &rules::PE_PERSISTENCE_IMPORT)),
        [
            ("ADVAPI32.dll!CreateServiceW".into(), medium),
            ("ADVAPI32.dll!RegCreateKeyExW".into(), low),
            ("ADVAPI32.dll!RegSetValueExW".into(), low),
        ]
    );
    assert_eq!(
        evidence(&of(&analysis, &rules::PE_ANTI_DEBUG_IMPORT)),
        [
            ("KERNEL32.dll!CheckRemoteDebuggerPresent".into(), medium),
            ("KERNEL32.dll!IsDebuggerPresent".into(), low),
            ("ntdll.dll!NtQueryInformationProcess".into(), medium),
        ]
    );
    assert_eq!(analysis.metrics["pe.imports.count"], 14);
}

#[test]
fn packed_and_self_modifying_code() {
    let rwx = pe::IMAGE_SCN_CNT_CODE
        | pe::IMAGE_SCN_MEM_EXECUTE
        | pe::IMAGE_SCN_MEM_READ
        | pe::IMAGE_SCN_MEM_WRITE;
    let bytes = build_pe(&PeSpec {
        code: noise(16 * 1024),
        sections: vec![
            (*b"UPX0\0\0\0\0", rwx, vec![0; 512]),
            (*b"UPX1\0\0\0\0", rwx, noise(4096)),
        ],
        ..PeSpec::default()
    });
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let wx = of(&analysis, &rules::PE_WRITABLE_EXECUTABLE_SECTION);
    assert_eq!(wx.len(), 2);
    assert_eq!(wx[0].severity, Severity::High);
    assert_eq!(
        evidence(&of(&analysis, &rules::PE_PACKER_SECTION)),
        [
            ("UPX0".into(), Severity::Medium),
            ("UPX1".into(), Severity::Medium)
        ]
    );
    let entropy = of(&analysis, &rules::PE_HIGH_ENTROPY_CODE);
    let locations: Vec<_> = entropy
        .iter()
        .filter_map(|f| f.location.as_deref())
        .collect();
    assert_eq!(locations, ["section 0 \".text\"", "section 2 \"UPX1\""]);
    assert!(
        analysis.metrics["pe.entropy.sections"][".text"]
            .as_f64()
            .unwrap()
            > 7.9
    );
}

#[test]
fn persistence_strings() {
    let rdata = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
    let mut strings = b"cmd /c SCHTASKS /Create /SC ONLOGON\0".to_vec();
    strings.extend(
        r"Software\Microsoft\Windows\CurrentVersion\Run"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let bytes = build_pe(&PeSpec {
        sections: vec![(*b".rdata\0\0", rdata, strings)],
        ..PeSpec::default()
    });
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let found = of(&analysis, &rules::PE_PERSISTENCE_STRING);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|f| f.severity == Severity::Medium));
    assert!(
        found
            .iter()
            .any(|f| f.evidence.as_deref() == Some("SCHTASKS"))
    );
}

#[test]
fn malformed_files() {
    let mut bytes = build_pe(&PeSpec::default());
    bytes.truncate(100);
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let found = of(&analysis, &rules::PE_INVALID);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::High);

    // An import directory pointing outside every section.
    let mut bytes = build_pe(&PeSpec::default());
    let nt = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    // Signature, file header, then the PE32+ optional header's data directories at +112;
    // the import directory is the second.
    let import_rva = nt + 4 + 20 + 112 + 8;
    bytes[import_rva..import_rva + 4].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let found = of(&analysis, &rules::PE_INVALID);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert!(
        found[0].message.contains("import table"),
        "{}",
        found[0].message
    );
}

#[test]
fn the_format_must_fit_the_targets() {
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    let analysis = analyze(&elf, &["windows-x86_64"]);
    let found = of(&analysis, &rules::NATIVE_FORMAT_MISMATCH);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::High);
    assert!(
        found[0]
            .message
            .contains("needs a PE binary, but the entry point is an ELF file")
    );
    assert!(of(&analysis, &rules::PE_UNSIGNED).is_empty());

    let analysis = analyze(&elf, &["linux-x86_64"]);
    assert!(of(&analysis, &rules::NATIVE_FORMAT_MISMATCH).is_empty());
    assert_eq!(of(&analysis, &rules::NATIVE_NOT_ANALYSED).len(), 1);

    let pe = build_pe(&PeSpec::default());
    let analysis = analyze(&pe, &["windows-x86_64", "linux-x86_64"]);
    assert_eq!(of(&analysis, &rules::NATIVE_FORMAT_MISMATCH).len(), 1);

    let analysis = analyze(b"#!/bin/sh\necho hi\n", &["linux-x86_64"]);
    let found = of(&analysis, &rules::NATIVE_FORMAT_MISMATCH);
    assert!(found[0].message.contains("not a PE, ELF or Mach-O file"));
}

#[test]
fn sections_over_the_same_bytes_are_measured_once() {
    // The most sections a PE can have, all over the same 64 KiB: measuring the entropy of
    // each would read 4 GiB for a 2.6 MB file.
    let data = noise(64 << 10);
    let size = u32::try_from(data.len()).unwrap();
    let rdata = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
    let sections = vec![section_header(rdata, 0x1000, 0, size); usize::from(u16::MAX)];
    let bytes = crafted_pe(&sections, 0, &data);
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let measured = bytes.len() / data.len();
    let found = of(&analysis, &rules::PE_INVALID);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert_eq!(found[0].severity, Severity::High);
    assert!(
        found[0].message.contains(&format!(
            "its 65535 sections adds up to more than the file's {} bytes",
            bytes.len()
        )),
        "{}",
        found[0].message
    );
    assert!(
        found[0]
            .message
            .contains(&format!("the entropy of {} of them", 65535 - measured)),
        "{}",
        found[0].message
    );
    assert!(
        analysis.metrics["pe.entropy.sections"][".data"]
            .as_f64()
            .unwrap()
            > 7.9
    );
}

#[test]
fn import_descriptors_count_against_the_import_limit() {
    // 30 000 libraries without one import: each descriptor is read, so each counts.
    let bytes = pe_with_imports(30_000, 0, b"GetLastError");
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let found = of(&analysis, &rules::PE_INVALID);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert!(
        found[0]
            .message
            .contains("more than 20000 imports and imported libraries"),
        "{}",
        found[0].message
    );

    // Under the limit, the same layout is read whole.
    let bytes = pe_with_imports(100, 2, b"VirtualAllocEx");
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    assert!(of(&analysis, &rules::PE_INVALID).is_empty());
    assert_eq!(analysis.metrics["pe.imports.count"], 200);
    assert_eq!(of(&analysis, &rules::PE_INJECTION_IMPORT).len(), 20);
}

#[test]
fn import_names_are_read_within_a_budget() {
    // 10 000 imports of one 2 MiB name: finding the end of each would read 20 GB.
    let bytes = pe_with_imports(1, 10_000, &vec![b'A'; 2 << 20]);
    let analysis = analyze(&bytes, &["windows-x86_64"]);
    let found = of(&analysis, &rules::PE_INVALID);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert!(
        found[0]
            .message
            .contains("import names add up to more than 4194304 bytes"),
        "{}",
        found[0].message
    );
}
