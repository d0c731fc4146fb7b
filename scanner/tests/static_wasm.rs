//! The WebAssembly analyzer on plugins written in WAT at test time.

mod common;

use common::{assert_postable, noise, of, wasm_manifest as manifest};
use plugstore_scanner::rules;
use plugstore_scanner::{Severity, StaticAnalysis, StaticLimits, analyze_wasm};

/// The ABI exports, around `imports` (which WAT wants first) and `extra` definitions.
fn plugin(imports: &str, memory: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  {imports}
  {memory}
  (global $heap (mut i32) (i32.const 1024))
  (func (export "plugstore_abi_version") (result i32) i32.const 1)
  (func (export "plugstore_alloc") (param $len i32) (result i32)
    (local $ptr i32)
    global.get $heap
    local.set $ptr
    global.get $heap
    local.get $len
    i32.add
    global.set $heap
    local.get $ptr)
  (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0)
  {extra}
)"#
    ))
    .unwrap()
}

const MEMORY: &str = r#"(memory (export "memory") 1 16)"#;
const LOG_IMPORT: &str = r#"(import "plugstore:log" "log" (func $log (param i32 i32 i32)))"#;

fn analyze(bytes: &[u8], capabilities: &[&str]) -> StaticAnalysis {
    analyze_wasm(bytes, &manifest(capabilities), &StaticLimits::default())
}

fn assert_no_finding_above(analysis: &StaticAnalysis, severity: Severity) {
    let above: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.severity > severity)
        .collect();
    assert!(above.is_empty(), "{above:#?}");
}

#[test]
fn a_clean_plugin_has_nothing_above_info() {
    let bytes = plugin(
        LOG_IMPORT,
        MEMORY,
        r#"(data (i32.const 16) "hello from a plugin")
           (func (export "plugstore_init") (result i32)
             (call $log (i32.const 2) (i32.const 16) (i32.const 19))
             i32.const 0)"#,
    );
    let analysis = analyze(&bytes, &["log"]);
    assert_no_finding_above(&analysis, Severity::Info);
    assert_eq!(analysis.metrics["wasm.valid"], true);
    assert_eq!(analysis.metrics["wasm.imports.count"], 1);
    assert_eq!(
        analysis.metrics["wasm.imports"],
        serde_json::json!(["plugstore:log.log"])
    );
    assert_eq!(
        analysis.metrics["wasm.capabilities.used"],
        serde_json::json!(["log"])
    );
    assert_eq!(analysis.metrics["wasm.memory.maximum_pages"], 16);
    assert!(analysis.metrics["wasm.entropy.code"].as_f64().is_some());
    let inventory = of(&analysis, &rules::WASM_IMPORTS);
    assert_eq!(inventory.len(), 1);
    assert!(inventory[0].message.contains("plugstore:log (1)"));
    assert_eq!(of(&analysis, &rules::WASM_EXPORTS).len(), 1);
}

#[test]
fn an_undeclared_network_import_is_high() {
    let imports = format!(
        r#"{LOG_IMPORT}
           (import "plugstore:http" "fetch" (func (param i32 i32 i32 i32) (result i64)))"#
    );
    let bytes = plugin(&imports, MEMORY, "");
    let analysis = analyze(&bytes, &["log"]);
    let found = of(&analysis, &rules::WASM_UNDECLARED_CAPABILITY);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert_eq!(found[0].severity, Severity::High);
    assert!(
        found[0].message.contains("`net.http`"),
        "{}",
        found[0].message
    );
    assert_eq!(found[0].evidence.as_deref(), Some("plugstore:http.fetch"));

    // Declared, the same module is fine.
    let analysis = analyze(&bytes, &["log", "net.http"]);
    assert_no_finding_above(&analysis, Severity::Info);
}

#[test]
fn a_declared_but_unused_capability_is_noted() {
    let bytes = plugin(LOG_IMPORT, MEMORY, "");
    let analysis = analyze(&bytes, &["log", "clipboard"]);
    let found = of(&analysis, &rules::WASM_UNUSED_CAPABILITY);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("`clipboard`"));
}

#[test]
fn imports_from_other_hosts_are_unknown_namespaces() {
    let imports = r#"(import "env" "socket_connect" (func (param i32 i32) (result i32)))
                     (import "env" "socket_send" (func (param i32 i32) (result i32)))
                     (import "wasi:sockets/tcp@0.2.0" "connect" (func))"#;
    let bytes = plugin(imports, MEMORY, "");
    let analysis = analyze(&bytes, &[]);
    let found = of(&analysis, &rules::WASM_UNKNOWN_IMPORT_NAMESPACE);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|f| f.severity == Severity::High));
    let env = found.iter().find(|f| f.message.contains("`env`")).unwrap();
    assert_eq!(
        env.evidence.as_deref(),
        Some("env.socket_connect env.socket_send")
    );
    assert!(
        env.location
            .as_deref()
            .unwrap()
            .starts_with("module offset 0x")
    );
}

#[test]
fn unknown_functions_and_wrong_signatures() {
    let imports = r#"(import "plugstore:fs" "delete_file" (func (param i32 i32) (result i64)))
                     (import "plugstore:log" "log" (func (param i32)))
                     (import "wasi_snapshot_preview1" "proc_raise" (func (param i32) (result i32)))"#;
    let bytes = plugin(imports, MEMORY, "");
    let analysis = analyze(&bytes, &["log"]);
    let unknown = of(&analysis, &rules::WASM_UNKNOWN_IMPORT_FUNCTION);
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].severity, Severity::Medium);
    assert_eq!(
        unknown[0].evidence.as_deref(),
        Some("plugstore:fs.delete_file")
    );
    let mismatch = of(&analysis, &rules::WASM_IMPORT_SIGNATURE_MISMATCH);
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0].severity, Severity::High);
    assert!(
        mismatch[0]
            .message
            .contains("with type (i32) -> (), but the ABI defines (i32, i32, i32) -> ()"),
        "{}",
        mismatch[0].message
    );
    assert_eq!(of(&analysis, &rules::WASM_IMPORT_NOT_PROVIDED).len(), 1);
}

#[test]
fn the_wasi_subset_is_free_and_file_access_is_not() {
    let imports = r#"
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#;
    let analysis = analyze(&plugin(imports, MEMORY, ""), &[]);
    assert_no_finding_above(&analysis, Severity::Info);

    let imports = r#"
        (import "wasi_snapshot_preview1" "path_open"
          (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))"#;
    let analysis = analyze(&plugin(imports, MEMORY, ""), &[]);
    let found = of(&analysis, &rules::WASM_UNDECLARED_CAPABILITY);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("`fs.read`"));
    assert_eq!(
        found[0].evidence.as_deref(),
        Some("wasi_snapshot_preview1.path_open wasi_snapshot_preview1.fd_read")
    );
}

#[test]
fn missing_and_mistyped_exports() {
    let bytes = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
    let analysis = analyze(&bytes, &[]);
    let missing: Vec<_> = of(&analysis, &rules::ABI_MISSING_EXPORT)
        .iter()
        .filter_map(|f| f.evidence.clone())
        .collect();
    assert_eq!(
        missing,
        [
            "memory",
            "plugstore_abi_version",
            "plugstore_alloc",
            "plugstore_handle"
        ]
    );

    let bytes = plugin(
        "",
        MEMORY,
        r#"(func (export "plugstore_init") (param i32))"#,
    );
    let analysis = analyze(&bytes, &[]);
    let mismatch = of(&analysis, &rules::ABI_EXPORT_SIGNATURE_MISMATCH);
    assert_eq!(mismatch.len(), 1);
    assert!(
        mismatch[0]
            .message
            .contains("`plugstore_init` has type (i32) -> (), but the ABI defines () -> (i32)"),
        "{}",
        mismatch[0].message
    );
    assert!(of(&analysis, &rules::ABI_MISSING_EXPORT).is_empty());
}

#[test]
fn a_start_section_is_medium() {
    let bytes = plugin("", MEMORY, "(func $boot) (start $boot)");
    let analysis = analyze(&bytes, &[]);
    let found = of(&analysis, &rules::WASM_START_SECTION);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::Medium);
}

#[test]
fn memory_limits() {
    let analysis = analyze(&plugin("", r#"(memory (export "memory") 1)"#, ""), &[]);
    assert_eq!(of(&analysis, &rules::WASM_MEMORY_UNBOUNDED).len(), 1);
    assert_eq!(
        of(&analysis, &rules::WASM_MEMORY_UNBOUNDED)[0].severity,
        Severity::Low
    );
    assert_eq!(
        analysis.metrics["wasm.memory.maximum_pages"],
        serde_json::Value::Null
    );

    let analysis = analyze(
        &plugin("", r#"(memory (export "memory") 1 65536)"#, ""),
        &[],
    );
    assert_eq!(
        of(&analysis, &rules::WASM_MEMORY_MAXIMUM_OVER_LIMIT).len(),
        1
    );

    let analysis = analyze(
        &plugin("", r#"(memory (export "memory") 5000 5000)"#, ""),
        &[],
    );
    let found = of(&analysis, &rules::WASM_MEMORY_INITIAL_OVER_LIMIT);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::High);
    assert!(
        found[0].message.contains("5000 pages (312.5 MiB)"),
        "{}",
        found[0].message
    );
}

#[test]
fn table_limits() {
    let analysis = analyze(&plugin("", MEMORY, "(table 200000 funcref)"), &[]);
    assert_eq!(
        of(&analysis, &rules::WASM_TABLE_INITIAL_OVER_LIMIT).len(),
        1
    );
    assert_eq!(of(&analysis, &rules::WASM_TABLE_UNBOUNDED).len(), 1);
    let analysis = analyze(&plugin("", MEMORY, "(table 1 2000000 funcref)"), &[]);
    assert_eq!(
        of(&analysis, &rules::WASM_TABLE_MAXIMUM_OVER_LIMIT).len(),
        1
    );
    let analysis = analyze(&plugin("", MEMORY, "(table 1 1 funcref)"), &[]);
    assert_no_finding_above(&analysis, Severity::Info);
}

#[test]
fn strings_in_data_segments() {
    let data = r#"(data (i32.const 64)
        "\00\01beacon to https://c2.evil-example.ru/gate.php?id=7\00"
        "fallback 45.33.32.156 or 192.168.1.20\00"
        "-----BEGIN PRIVATE KEY-----\0aMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\00"
        "aws AKIAIOSFODNN7EXAMPLE\00"
        "exfil.badguy.xyz\00")"#;
    let bytes = plugin("", MEMORY, data);
    let analysis = analyze(&bytes, &[]);

    let url = of(&analysis, &rules::WASM_STRINGS_URL);
    assert_eq!(url.len(), 1);
    assert_eq!(
        url[0].evidence.as_deref(),
        Some("https://c2.evil-example.ru/gate.php?id=7")
    );
    let location = url[0].location.as_deref().unwrap();
    assert!(
        location.starts_with("data segment 0 +0xc (module offset 0x"),
        "{location}"
    );

    let ips = of(&analysis, &rules::WASM_STRINGS_IPV4);
    let mut ips: Vec<_> = ips
        .iter()
        .map(|f| (f.evidence.as_deref().unwrap(), f.severity))
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        [
            ("192.168.1.20", Severity::Low),
            ("45.33.32.156", Severity::Medium)
        ]
    );

    let key = of(&analysis, &rules::WASM_STRINGS_PRIVATE_KEY);
    assert_eq!(key.len(), 1);
    assert_eq!(key[0].severity, Severity::Medium);
    assert_eq!(
        key[0].evidence.as_deref(),
        Some("-----BEGIN PRIVATE KEY-----")
    );
    let aws = of(&analysis, &rules::WASM_STRINGS_ACCESS_KEY);
    assert_eq!(aws[0].evidence.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
    let domains = of(&analysis, &rules::WASM_STRINGS_DOMAIN);
    assert_eq!(domains.len(), 1, "the host inside the URL is not repeated");
    assert_eq!(domains[0].evidence.as_deref(), Some("exfil.badguy.xyz"));
    assert_eq!(analysis.metrics["wasm.strings.ipv4.distinct"], 2);
}

#[test]
fn repeated_strings_are_reported_once() {
    let data = r#"(data (i32.const 64) "https://a.example.com/x\00https://a.example.com/x\00")
                  (data (i32.const 512) "https://a.example.com/x\00")"#;
    let analysis = analyze(&plugin("", MEMORY, data), &[]);
    assert_eq!(of(&analysis, &rules::WASM_STRINGS_URL).len(), 1);
    assert_eq!(analysis.metrics["wasm.data.segments"], 2);
}

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

#[test]
fn a_high_entropy_payload_is_medium() {
    let payload = wat_bytes(&noise(8192));
    let data = format!(r#"(data (i32.const 4096) "{payload}")"#);
    let analysis = analyze(&plugin("", MEMORY, &data), &[]);
    let found = of(&analysis, &rules::WASM_HIGH_ENTROPY_DATA);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert_eq!(found[0].severity, Severity::Medium);
    assert!(
        found[0].message.starts_with("8.0 KiB of data with 7.9"),
        "{}",
        found[0].message
    );
    assert!(
        analysis.metrics["wasm.entropy.data.max_window"]
            .as_f64()
            .unwrap()
            > 7.9
    );

    // The same amount of text is not.
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let data = format!(r#"(data (i32.const 4096) "{text}")"#);
    let analysis = analyze(&plugin("", MEMORY, &data), &[]);
    assert!(of(&analysis, &rules::WASM_HIGH_ENTROPY_DATA).is_empty());
}

#[test]
fn an_invalid_module_is_critical() {
    let analysis = analyze(b"\0asm\x01\0\0\0\x01\xff", &[]);
    let found = of(&analysis, &rules::WASM_INVALID);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(analysis.metrics["wasm.valid"], false);

    let analysis = analyze(b"MZ\x90\0 not wasm", &[]);
    assert_eq!(of(&analysis, &rules::WASM_INVALID).len(), 1);

    // Well-formed but ill-typed: only validation catches it.
    let bytes = plugin("", MEMORY, "(func (result i32) i64.const 0)");
    let analysis = analyze(&bytes, &[]);
    let found = of(&analysis, &rules::WASM_INVALID);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.contains("type mismatch"),
        "{}",
        found[0].message
    );
    // Exports are not judged on a module that did not validate.
    assert!(of(&analysis, &rules::ABI_MISSING_EXPORT).is_empty());
}

#[test]
fn threads_are_not_enabled() {
    let bytes = wat::parse_str(
        r#"(module
             (memory (export "memory") 1 1 shared)
             (func (export "plugstore_abi_version") (result i32)
               i32.const 0
               i32.atomic.load))"#,
    )
    .unwrap();
    let analysis = analyze(&bytes, &[]);
    let found = of(&analysis, &rules::WASM_INVALID);
    assert_eq!(found.len(), 1, "{:#?}", analysis.findings);
    assert!(found[0].message.contains("threads"), "{}", found[0].message);

    let bytes = plugin(
        "",
        MEMORY,
        "(func (result i32) i32.const 0 i32.atomic.load)",
    );
    let found = of(&analyze(&bytes, &[]), &rules::WASM_INVALID).len();
    assert_eq!(found, 1);
}

#[test]
fn the_feature_set_is_webassembly_2_without_externref() {
    // SIMD, bulk memory, multi-value, sign extension, saturating conversions: accepted.
    let extra = r#"
        (func (result i32 i32)
          v128.const i32x4 1 2 3 4
          i32x4.extract_lane 0
          i32.extend8_s
          f32.const 1.5
          i32.trunc_sat_f32_s)
        (func
          i32.const 0 i32.const 0 i32.const 0 memory.copy)"#;
    let analysis = analyze(&plugin("", MEMORY, extra), &[]);
    assert!(
        of(&analysis, &rules::WASM_INVALID).is_empty(),
        "{:#?}",
        analysis.findings
    );

    // externref needs the garbage collector: refused.
    let analysis = analyze(&plugin("", MEMORY, "(func (param externref))"), &[]);
    assert_eq!(of(&analysis, &rules::WASM_INVALID).len(), 1);
    // So are tail calls and 64-bit memories.
    let analysis = analyze(&plugin("", MEMORY, "(func $f return_call $f)"), &[]);
    assert_eq!(of(&analysis, &rules::WASM_INVALID).len(), 1);
    let bytes = wat::parse_str(r#"(module (memory (export "memory") i64 1 2))"#).unwrap();
    assert_eq!(of(&analyze(&bytes, &[]), &rules::WASM_INVALID).len(), 1);
}

#[test]
fn oversized_modules_are_not_analysed() {
    let bytes = plugin(LOG_IMPORT, MEMORY, "");
    let limits = StaticLimits {
        max_wasm_size: 16,
        ..StaticLimits::default()
    };
    let analysis = analyze_wasm(&bytes, &manifest(&[]), &limits);
    assert_eq!(analysis.findings.len(), 1);
    assert_eq!(analysis.findings[0].rule, rules::WASM_MODULE_TOO_LARGE.id);
    assert!(!analysis.metrics.contains_key("wasm.valid"));
}

#[test]
fn errors_in_large_modules_are_reported_at_the_first_offset() {
    // Enough code to be validated on several threads, with two broken functions: the
    // report names the first, as a sequential validator would.
    let mut functions = String::new();
    for n in 0..4000 {
        let body = if n == 1500 || n == 3500 {
            "i64.const 0".to_owned()
        } else {
            "local.get 0 i32.const 1 i32.add local.set 0 ".repeat(20) + "local.get 0"
        };
        functions.push_str(&format!("(func (param i32) (result i32) {body})\n"));
    }
    let bytes = plugin("", MEMORY, &functions);
    assert!(bytes.len() > 300 * 1024);
    let analysis = analyze(&bytes, &[]);
    let found = of(&analysis, &rules::WASM_INVALID);
    assert_eq!(found.len(), 1);
    let mut bodies = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
            bodies.push(body.range());
        }
    }
    let location = found[0].location.as_deref().unwrap();
    let reported =
        usize::from_str_radix(location.trim_start_matches("module offset 0x"), 16).unwrap();
    // Function 1500 of the module is its 1503rd body (after the three ABI functions).
    assert!(
        bodies[1503].contains(&reported),
        "{location} not in {:?}",
        bodies[1503]
    );
    assert_eq!(analysis.metrics["wasm.valid"], false);
}

/// A control character is escaped to up to six bytes (`\u{85}`), so a name of a thousand of
/// them would make a message of 6 KB out of 1024 characters, which the server refuses.
#[test]
fn names_of_escaped_characters_keep_every_field_within_the_servers_limit() {
    let module = "\\u{85}".repeat(1000);
    let name = "\\u{1}".repeat(1000);
    let bytes = plugin(
        &format!(
            r#"(import "{module}" "{name}" (func))
               (import "{module}" "{name}{name}" (table 1 funcref))
               (import "plugstore:log" "{name}" (func))
               (import "plugstore:log" "{name}" (memory 1))"#
        ),
        "",
        &format!(r#"(export "{name}" (func 0))"#),
    );
    let analysis = analyze(&bytes, &[]);
    assert!(
        !of(&analysis, &rules::WASM_UNKNOWN_IMPORT_NAMESPACE).is_empty(),
        "{analysis:#?}"
    );
    assert_postable(&analysis.findings, &analysis.metrics);
}
