//! Dynamic analysis: WAT-written plugins run in the scanner's Wasmtime sandbox, each caught
//! with its finding, and a memory bomb through the real confined `plugstore-scanner analyze`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

mod common;

use common::{assert_postable, manifest_text, wasm_manifest};
use plugstore_format::manifest::Capability;
use plugstore_format::package::PackageBuilder;
use plugstore_scanner::dynamic_wasm::{DynamicLimits, analyze_wasm_dynamic};
use plugstore_scanner::isolation::{AnalysisLimits, AnalysisOutcome, classify, run_confined};
use plugstore_scanner::rules::{self, Rule};
use plugstore_scanner::{ScanReport, Severity, StaticAnalysis, StaticLimits, analyze_wasm};

/// Every misbehaving plugin must be stopped well within this.
const FAST: Duration = Duration::from_secs(15);

/// A plugin with the ABI exports around `body` (the body of `plugstore_handle`, which must
/// leave an `i64`), with `imports` and extra `funcs` at module level.
fn plugin(imports: &str, funcs: &str, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 16) "config.toml")
  (func (export "plugstore_abi_version") (result i32) i32.const 1)
  (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
  {funcs}
  (func (export "plugstore_handle") (param $ptr i32) (param $len i32) (result i64)
    {body})
)"#
    );
    wat::parse_str(&text).unwrap()
}

/// The first ```wat block of the plugin ABI page: a clean plugin that logs.
fn echo_plugin() -> Vec<u8> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/plugin-abi.md");
    let text = std::fs::read_to_string(page).unwrap();
    let start = text.find("```wat\n").unwrap() + "```wat\n".len();
    let end = start + text[start..].find("```").unwrap();
    wat::parse_str(&text[start..end]).unwrap()
}

fn run(bytes: &[u8], declared: &[Capability]) -> StaticAnalysis {
    let started = Instant::now();
    let analysis = analyze_wasm_dynamic(bytes, declared, &DynamicLimits::default());
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    analysis
}

fn has(analysis: &StaticAnalysis, rule: &Rule) -> bool {
    analysis.findings.iter().any(|f| f.rule == rule.id)
}

/// A run refused for exceeding its resource limits: high, so the version waits for review.
fn assert_high_resource_limit(analysis: &StaticAnalysis) {
    assert!(
        analysis.max_severity() >= Some(Severity::High),
        "{analysis:#?}"
    );
    assert!(
        has(analysis, &rules::DYNAMIC_RESOURCE_LIMIT),
        "{analysis:#?}"
    );
}

#[test]
fn a_clean_plugin_runs_without_findings_and_with_metrics() {
    let analysis = run(&echo_plugin(), &[Capability::Log]);
    assert!(
        analysis.max_severity() < Some(Severity::Medium),
        "{analysis:#?}"
    );
    let metrics = &analysis.metrics;
    assert!(metrics["dynamic.fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(metrics["dynamic.peak_memory_bytes"], 65536);
    assert!(metrics.contains_key("dynamic.wall_time_ms"));
    assert_eq!(metrics["dynamic.traps"].as_array().unwrap().len(), 0);
    // The echo returns each canned input.
    let outputs: Vec<u64> = metrics["dynamic.output_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(outputs, [0, 17, 32]);
    let log = &metrics["dynamic.host_calls"]["plugstore:log.log"];
    assert_eq!(log["count"], 1);
    assert_eq!(log["first_args"], serde_json::json!([2, 16, 17]));
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let bytes = plugin("", "", "(loop $forever (br $forever)) i64.const 0");
    let analysis = run(&bytes, &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_FUEL_EXHAUSTED) || has(&analysis, &rules::DYNAMIC_TIMEOUT),
        "{analysis:#?}"
    );
}

#[test]
fn a_short_deadline_interrupts_a_loop() {
    let bytes = plugin("", "", "(loop $forever (br $forever)) i64.const 0");
    let limits = DynamicLimits {
        fuel_per_call: u64::MAX / 2,
        wall_deadline: Duration::from_millis(300),
        ..DynamicLimits::default()
    };
    let started = Instant::now();
    let analysis = analyze_wasm_dynamic(&bytes, &[], &limits);
    assert!(started.elapsed() < FAST);
    assert!(has(&analysis, &rules::DYNAMIC_TIMEOUT), "{analysis:#?}");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let bytes = memory_bomb();
    let analysis = run(&bytes, &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_MEMORY_LIMIT),
        "{analysis:#?}"
    );
    // Asking on after refusals traps: the bomb ends long before the deadline.
    assert!(!has(&analysis, &rules::DYNAMIC_TIMEOUT), "{analysis:#?}");
    let peak = analysis.metrics["dynamic.peak_memory_bytes"]
        .as_u64()
        .unwrap();
    assert!(peak <= 256 << 20, "{peak}");
}

fn memory_bomb() -> Vec<u8> {
    // Grows one MiB at a time until refused, then keeps asking.
    plugin(
        "",
        "",
        "(loop $more (drop (memory.grow (i32.const 16))) (br $more)) i64.const 0",
    )
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let bytes = plugin(
        "",
        "(func $deeper (param i32) (result i32)
           (call $deeper (i32.add (local.get 0) (i32.const 1))))",
        "(i64.extend_i32_u (call $deeper (i32.const 0)))",
    );
    let analysis = run(&bytes, &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_STACK_OVERFLOW),
        "{analysis:#?}"
    );
}

#[test]
fn a_host_call_outside_the_capabilities_is_reported() {
    let bytes = plugin(
        r#"(import "plugstore:log" "log" (func $log (param i32 i32 i32)))
           (import "plugstore:fs" "read_file" (func $read (param i32 i32 i32 i32) (result i64)))"#,
        "",
        "(drop (call $read (i32.const 16) (i32.const 11) (i32.const 2048) (i32.const 64)))
         (call $log (i32.const 2) (i32.const 16) (i32.const 11))
         i64.const 0",
    );
    let analysis = run(&bytes, &[Capability::Log]);
    let found: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.rule == rules::DYNAMIC_HOST_CALL_OUTSIDE_CAPABILITIES.id)
        .collect();
    // Called once per canned input, reported once.
    assert_eq!(found.len(), 1, "{analysis:#?}");
    assert_eq!(found[0].severity, Severity::High);
    assert_eq!(found[0].evidence.as_deref(), Some("plugstore:fs.read_file"));
    assert_eq!(
        analysis.metrics["dynamic.host_calls"]["plugstore:fs.read_file"]["count"],
        3
    );
}

#[test]
fn an_undeclared_network_import_is_caught_statically_and_dynamically() {
    let bytes = plugin(
        r#"(import "plugstore:http" "fetch" (func $fetch (param i32 i32 i32 i32) (result i64)))"#,
        "",
        "(drop (call $fetch (i32.const 16) (i32.const 11) (i32.const 2048) (i32.const 64)))
         i64.const 0",
    );
    let statics = analyze_wasm(&bytes, &wasm_manifest(&["log"]), &StaticLimits::default());
    assert!(
        has(&statics, &rules::WASM_UNDECLARED_CAPABILITY),
        "{statics:#?}"
    );
    let dynamic = run(&bytes, &[Capability::Log]);
    assert!(
        has(&dynamic, &rules::DYNAMIC_HOST_CALL_OUTSIDE_CAPABILITIES),
        "{dynamic:#?}"
    );
}

#[test]
fn a_called_unknown_import_traps_and_is_reported() {
    let bytes = plugin(
        r#"(import "env" "exfiltrate" (func $x (param i32)))"#,
        "",
        "(call $x (i32.const 7)) i64.const 0",
    );
    let analysis = run(&bytes, &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_UNKNOWN_IMPORT_CALLED),
        "{analysis:#?}"
    );
}

#[test]
fn a_wrong_abi_version_is_reported() {
    let text = r#"(module
      (memory (export "memory") 1)
      (func (export "plugstore_abi_version") (result i32) i32.const 7)
      (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0))"#;
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    assert!(has(&analysis, &rules::DYNAMIC_ABI_VERSION), "{analysis:#?}");
}

#[test]
fn a_trap_is_a_medium_finding_with_its_message() {
    let bytes = plugin("", "", "unreachable");
    let analysis = run(&bytes, &[]);
    let trap = analysis
        .findings
        .iter()
        .find(|f| f.rule == rules::DYNAMIC_TRAP.id)
        .unwrap_or_else(|| panic!("{analysis:#?}"));
    assert_eq!(trap.severity, Severity::Medium);
    assert!(trap.message.contains("unreachable"), "{trap:?}");
}

#[test]
fn wasi_stdout_is_captured_and_the_environment_is_empty() {
    let bytes = plugin(
        r#"(import "wasi_snapshot_preview1" "fd_write"
             (func $fd_write (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "environ_sizes_get"
             (func $env_sizes (param i32 i32) (result i32)))"#,
        "",
        ";; iovec at 256: (16, 11)
         (i32.store (i32.const 256) (i32.const 16))
         (i32.store (i32.const 260) (i32.const 11))
         (drop (call $fd_write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 300)))
         (i32.store (i32.const 400) (i32.const 99))
         (drop (call $env_sizes (i32.const 400) (i32.const 404)))
         (i64.extend_i32_u (i32.load (i32.const 400)))",
    );
    let analysis = run(&bytes, &[]);
    assert!(
        analysis.max_severity() < Some(Severity::Medium),
        "{analysis:#?}"
    );
    // Each call returned the environment's size as its output length: 0.
    assert_eq!(
        analysis.metrics["dynamic.output_bytes"],
        serde_json::json!([0, 0, 0])
    );
    assert_eq!(analysis.metrics["dynamic.stdio_bytes"], 33);
    assert_eq!(
        analysis.metrics["dynamic.stdio_head"],
        "config.tomlconfig.tomlconfig.toml"
    );
}

/// The report of the real analysis child on a package of `wasm`, under the worker's kind of
/// limits; panics unless the child ends with a report.
fn report_of_the_analysis_child(wasm: Vec<u8>) -> Box<ScanReport> {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_text("wasm", "plugin.wasm", &["any"], &[]);
    let package = PackageBuilder::from_files_with_modes([
        ("plugin.toml".to_owned(), manifest.into_bytes(), false),
        ("plugin.wasm".to_owned(), wasm, false),
    ])
    .unwrap()
    .to_vec()
    .unwrap();
    let path = dir.path().join("package.tar");
    std::fs::write(&path, package).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_plugstore-scanner"));
    command.arg("analyze").arg(&path);
    let limits = AnalysisLimits {
        cpu: Duration::from_secs(20),
        memory_bytes: 1 << 30,
        wall_timeout: Duration::from_secs(30),
    };
    let child = run_confined(command, &limits, &AtomicBool::new(false)).unwrap();
    let outcome = classify(&child, &limits);
    let AnalysisOutcome::Report(report) = outcome else {
        panic!("{outcome:?}: {}", String::from_utf8_lossy(&child.stderr));
    };
    report
}

/// The real analysis child, under the worker's kind of limits: the memory bomb becomes a
/// finding in a report, the child exits normally.
#[test]
fn a_memory_bomb_does_not_take_down_the_analysis_child() {
    let started = Instant::now();
    let report = report_of_the_analysis_child(memory_bomb());
    assert!(started.elapsed() < FAST);
    assert!(
        report
            .findings_of(&rules::DYNAMIC_MEMORY_LIMIT)
            .next()
            .is_some(),
        "{report:#?}"
    );
}

#[test]
fn a_start_function_runs_under_the_same_limits() {
    let text = r#"(module
      (memory (export "memory") 1)
      (func $start (loop $forever (br $forever)))
      (start $start)
      (func (export "plugstore_abi_version") (result i32) i32.const 1)
      (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0))"#;
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    let found = analysis
        .findings
        .iter()
        .find(|f| f.rule == rules::DYNAMIC_FUEL_EXHAUSTED.id)
        .unwrap_or_else(|| panic!("{analysis:#?}"));
    assert!(found.message.starts_with("instantiation"), "{found:?}");
}

#[test]
fn a_module_that_cannot_be_linked_is_not_run() {
    let text = r#"(module
      (import "env" "memory" (memory 1))
      (func (export "plugstore_abi_version") (result i32) i32.const 1))"#;
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    assert!(has(&analysis, &rules::DYNAMIC_NOT_RUN), "{analysis:#?}");
    assert!(
        analysis.max_severity() <= Some(Severity::Medium),
        "{analysis:#?}"
    );
}

#[test]
fn oversized_and_out_of_bounds_outputs_are_reported() {
    let text = r#"(module
      (memory (export "memory") 100)
      (func (export "plugstore_abi_version") (result i32) i32.const 1)
      (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
      (global $calls (mut i32) (i32.const 0))
      (func (export "plugstore_handle") (param i32 i32) (result i64)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        ;; First 5 MiB at 0 (in memory, too large), then 16 bytes past the end.
        (if (result i64) (i32.eq (global.get $calls) (i32.const 1))
          (then (i64.const 5242880))
          (else (i64.const 0x0064000000000010)))))"#;
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_OUTPUT_TOO_LARGE),
        "{analysis:#?}"
    );
    assert!(
        has(&analysis, &rules::DYNAMIC_OUTPUT_OUT_OF_BOUNDS),
        "{analysis:#?}"
    );
}

#[test]
fn the_abi_feature_set_compiles_funcref_tables_simd_and_bulk_memory() {
    let bytes = plugin(
        "",
        "(table $a 1 funcref) (table $b 2 funcref) (elem (table $b) (i32.const 0) func $one)
         (func $one (result i32) i32.const 1)",
        "(table.set $a (i32.const 0) (table.get $b (i32.const 0)))
         (memory.fill (i32.const 2048) (i32.const 0) (i32.const 64))
         (drop (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4)))
         (i64.extend_i32_u (i32.add (table.size $b) (call_indirect $a (result i32) (i32.const 0))))",
    );
    let analysis = run(&bytes, &[]);
    assert!(
        analysis.max_severity() < Some(Severity::Medium),
        "{analysis:#?}"
    );
    assert_eq!(
        analysis.metrics["dynamic.output_bytes"],
        serde_json::json!([3, 3, 3])
    );
}

/// 17 tables, one more than the run allows: Wasmtime refuses to instantiate the module, so
/// its endless `plugstore_init` never runs. Refusing to run it must not let it off more
/// lightly than running it would have.
#[test]
fn a_module_over_the_runs_table_count_gets_a_high_finding() {
    let tables = "(table 1 1 funcref) ".repeat(17);
    let text = format!(
        r#"(module
      {tables}
      (memory (export "memory") 1)
      (func (export "plugstore_abi_version") (result i32) i32.const 1)
      (func (export "plugstore_init") (result i32) (loop $forever (br $forever)) i32.const 0)
      (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0))"#
    );
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    assert_high_resource_limit(&analysis);
}

/// A table larger than an operator's `max_table_elements` cannot even be created.
#[test]
fn a_table_over_the_runs_element_limit_gets_a_high_finding() {
    let bytes = plugin("", "(table 64 funcref)", "i64.const 0");
    let limits = DynamicLimits {
        max_table_elements: 32,
        ..DynamicLimits::default()
    };
    let analysis = analyze_wasm_dynamic(&bytes, &[], &limits);
    assert_high_resource_limit(&analysis);
}

/// Memory the store refuses at instantiation was high before the tables were: the limiter
/// reports it. Kept here so that the two stay alike.
#[test]
fn initial_memory_over_the_runs_limit_gets_a_high_finding() {
    let bytes = plugin("", "", "i64.const 0");
    let limits = DynamicLimits {
        max_memory_bytes: 32 << 10,
        ..DynamicLimits::default()
    };
    let analysis = analyze_wasm_dynamic(&bytes, &[], &limits);
    assert!(
        has(&analysis, &rules::DYNAMIC_MEMORY_LIMIT),
        "{analysis:#?}"
    );
}

/// A module whose names blow up when escaped: an unknown import module of 1000 × U+0085
/// (six bytes each once escaped) and a called import of 100 000 × U+0001 (six bytes each in
/// JSON), whose trap is recorded once per canned input.
fn escape_bomb() -> Vec<u8> {
    let module = "\\u{85}".repeat(1000);
    let name = "\\u{1}".repeat(100_000);
    plugin(
        &format!(
            r#"(import "{module}" "f" (func))
               (import "env" "{name}" (func $x))"#
        ),
        "",
        "(call $x) i64.const 0",
    )
}

#[test]
fn a_trap_named_by_the_module_keeps_the_report_within_the_servers_limits() {
    let analysis = run(&escape_bomb(), &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_UNKNOWN_IMPORT_CALLED),
        "{analysis:#?}"
    );
    assert_postable(&analysis.findings, &analysis.metrics);
}

/// The whole path the worker posts: the analysis child's report on a package of the escape
/// bomb is one the server takes.
#[test]
fn the_analysis_childs_report_on_hostile_names_is_postable() {
    let report = report_of_the_analysis_child(escape_bomb());
    assert!(
        report
            .findings_of(&rules::WASM_UNKNOWN_IMPORT_NAMESPACE)
            .next()
            .is_some(),
        "{report:#?}"
    );
    assert_postable(&report.findings, &report.metrics);
}

const PROC_EXIT_IMPORT: &str =
    r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#;

/// The finding of `rule`, which must be the only one of it.
fn only<'a>(analysis: &'a StaticAnalysis, rule: &Rule) -> &'a plugstore_scanner::Finding {
    let found: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.rule == rule.id)
        .collect();
    assert_eq!(found.len(), 1, "{analysis:#?}");
    found[0]
}

/// A start function that exits before any entry point: the run sees nothing of the plugin,
/// which is how a plugin that notices the scanner would hide from it.
#[test]
fn a_proc_exit_in_the_start_function_is_a_finding_with_its_code() {
    let text = format!(
        r#"(module
      {PROC_EXIT_IMPORT}
      (memory (export "memory") 1)
      (func $start (call $exit (i32.const 3)))
      (start $start)
      (func (export "plugstore_abi_version") (result i32) i32.const 1)
      (func (export "plugstore_alloc") (param i32) (result i32) i32.const 1024)
      (func (export "plugstore_handle") (param i32 i32) (result i64) i64.const 0))"#
    );
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    let exited = only(&analysis, &rules::DYNAMIC_EXITED_EARLY);
    assert_eq!(exited.severity, Severity::Medium);
    assert!(
        exited.message.starts_with("instantiation exited") && exited.message.contains("code 3"),
        "{exited:?}"
    );
    assert!(
        exited.message.contains("0 of 3 canned requests"),
        "{exited:?}"
    );
    assert_eq!(exited.evidence.as_deref(), Some("proc_exit(3)"));
    assert_eq!(
        analysis.metrics["dynamic.output_bytes"],
        serde_json::json!([])
    );
}

/// Exiting part-way says how far the run got; the exit is not also a trap.
#[test]
fn a_proc_exit_in_plugstore_handle_says_how_many_requests_were_handled() {
    let bytes = plugin(
        PROC_EXIT_IMPORT,
        "(global $calls (mut i32) (i32.const 0))",
        "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
         (if (i32.eq (global.get $calls) (i32.const 2)) (then (call $exit (i32.const 0))))
         i64.const 0",
    );
    let analysis = run(&bytes, &[]);
    let exited = only(&analysis, &rules::DYNAMIC_EXITED_EARLY);
    assert!(
        exited.message.starts_with("plugstore_handle exited")
            && exited.message.contains("code 0")
            && exited.message.contains("1 of 3 canned requests"),
        "{exited:?}"
    );
    assert_eq!(exited.evidence.as_deref(), Some("proc_exit(0)"));
    assert!(!has(&analysis, &rules::DYNAMIC_TRAP), "{analysis:#?}");
    assert_eq!(
        analysis.metrics["dynamic.output_bytes"],
        serde_json::json!([0])
    );
}

/// `proc_exit` never returns, even to a module without the memory the other WASI stubs need:
/// the code after it must not run.
#[test]
fn a_proc_exit_without_an_exported_memory_still_ends_the_run() {
    let text = format!(
        r#"(module
      {PROC_EXIT_IMPORT}
      (func $start (call $exit (i32.const 1)) unreachable)
      (start $start))"#
    );
    let analysis = run(&wat::parse_str(text).unwrap(), &[]);
    assert!(
        has(&analysis, &rules::DYNAMIC_EXITED_EARLY),
        "{analysis:#?}"
    );
    assert!(!has(&analysis, &rules::DYNAMIC_TRAP), "{analysis:#?}");
}

/// A `plugstore_init` that refuses to load ends the run before any request, as an exit does.
#[test]
fn a_plugstore_init_that_refuses_to_load_is_a_finding() {
    let bytes = plugin(
        "",
        r#"(func (export "plugstore_init") (result i32) i32.const 2)"#,
        "i64.const 0",
    );
    let analysis = run(&bytes, &[]);
    let exited = only(&analysis, &rules::DYNAMIC_EXITED_EARLY);
    assert_eq!(exited.severity, Severity::Medium);
    assert!(
        exited.message.starts_with("plugstore_init returned 2")
            && exited.message.contains("0 of 3 canned requests"),
        "{exited:?}"
    );
    assert_eq!(exited.evidence.as_deref(), Some("status=2"));
}

/// Each `plugstore_handle` call answers with one reading, as its output length: the real
/// time in seconds, whether the real time moved between two reads, and the errno of a clock
/// WASI does not define.
#[test]
fn the_clock_tells_the_real_time_and_moves() {
    let bytes = plugin(
        r#"(import "wasi_snapshot_preview1" "clock_time_get"
             (func $now (param i32 i64 i32) (result i32)))"#,
        "(global $calls (mut i32) (i32.const 0))",
        "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
         (drop (call $now (i32.const 0) (i64.const 1) (i32.const 512)))
         (drop (call $now (i32.const 0) (i64.const 1) (i32.const 520)))
         (if (result i64) (i32.eq (global.get $calls) (i32.const 1))
           (then (i64.div_u (i64.load (i32.const 512)) (i64.const 1000000000)))
           (else (if (result i64) (i32.eq (global.get $calls) (i32.const 2))
             (then (i64.extend_i32_u
               (i64.gt_u (i64.load (i32.const 520)) (i64.load (i32.const 512)))))
             (else (i64.extend_i32_u
               (call $now (i32.const 7) (i64.const 1) (i32.const 512)))))))",
    );
    let analysis = run(&bytes, &[]);
    let outputs: Vec<u64> = analysis.metrics["dynamic.output_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        outputs[0].abs_diff(now) <= 60,
        "the plugin's time {} against {now}",
        outputs[0]
    );
    assert_eq!(outputs[1..], [1, 28], "{analysis:#?}");
}

/// A fixed sequence of "random" bytes would mark the scanner as plainly as a fixed clock.
#[test]
fn random_bytes_differ_between_runs() {
    let bytes = plugin(
        r#"(import "wasi_snapshot_preview1" "random_get"
             (func $random (param i32 i32) (result i32)))"#,
        "",
        "(drop (call $random (i32.const 512) (i32.const 8)))
         (i64.shr_u (i64.load (i32.const 512)) (i64.const 40))",
    );
    let first = run(&bytes, &[]).metrics["dynamic.output_bytes"].clone();
    let second = run(&bytes, &[]).metrics["dynamic.output_bytes"].clone();
    assert_ne!(first, second);
}
