//! Dynamic analysis of a wasm plugin: the module runs in Wasmtime, configured for untrusted
//! code, against instrumented host functions that record every call.
//!
//! The engine enables exactly the ABI's WebAssembly features, meters fuel, interrupts at a
//! wall-clock deadline (an epoch bumped by a timer thread), caps memory and tables through a
//! [`ResourceLimiter`] and keeps the wasm stack small. Nothing of the outside world is
//! reachable: the `plugstore:` imports answer like a host that grants nothing beyond the
//! manifest's capabilities and has nothing to give for those (no files, no network), and the
//! always-available WASI subset is implemented here as stubs (stdout/stderr into a bounded
//! buffer, the real time advancing with the run, random bytes, empty arguments and
//! environment), so no WASI context with preopens or environment exists at all. The clock and
//! the random bytes are real because fixed ones would tell a plugin that it is being scanned.
//!
//! The run follows the host's order ([`plugstore_format::abi::GUEST_EXPORTS`]): instantiate
//! (a start function runs here, under the same limits), `_initialize`, check
//! `plugstore_abi_version`, `plugstore_init`, then `plugstore_handle` with a few canned
//! inputs. Traps, exhausted fuel, the deadline, refused memory growth, host calls beyond the
//! declared capabilities and a plugin ending the run itself (`proc_exit`, a refusing
//! `plugstore_init`) become findings; fuel, peak memory, wall time, output sizes and host
//! calls per import become metrics.
//!
//! This runs only in the confined analysis child ([`crate::isolation`]): compiling untrusted
//! code never happens in the worker.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plugstore_format::abi::{
    self, ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_ALLOC, EXPORT_HANDLE, EXPORT_INIT, EXPORT_MEMORY,
    EXPORT_WASI_INITIALIZE, HostErrorCode, ImportClass, MODULE_WASI, WasmFeature,
};
use plugstore_format::manifest::Capability;
use serde_json::json;
use wasmtime::{
    Caller, Config, Engine, Extern, ExternType, Linker, Memory, Module, OptLevel, ResourceLimiter,
    Store, StoreLimits, StoreLimitsBuilder, Trap, Val, ValType,
};

use crate::findings::{
    Finding, FindingCollector, MAX_EVIDENCE_BYTES, MAX_LOCATION_BYTES, Metrics, Severity,
    StaticAnalysis, bounded_text,
};
use crate::rules;

/// Fuel (roughly: wasm instructions) for each call into the plugin, instantiation included.
pub const DEFAULT_FUEL_PER_CALL: u64 = 200_000_000;
/// Wall-clock time for the whole run, all calls together.
pub const DEFAULT_WALL_DEADLINE: Duration = Duration::from_secs(10);
/// Most linear memory the plugin may have (the host clients' cap as well).
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 256 << 20;
/// Most elements of one table.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most tables of the instance.
pub const DEFAULT_MAX_TABLES: usize = 16;
/// Most memories of the instance: multi-memory is off, so a valid module has at most one.
const MAX_MEMORIES: usize = 1;
/// Most instances in the store: the plugin's own.
const MAX_INSTANCES: usize = 1;
/// Most bytes of wasm stack; deep recursion traps well before the native stack is at risk.
pub const DEFAULT_MAX_WASM_STACK: usize = 512 << 10;
/// Largest output of one `plugstore_handle` call that is not a finding.
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 4 << 20;
/// Most bytes of stdout and stderr kept from the plugin.
pub const MAX_CAPTURED_STDIO_BYTES: usize = 64 << 10;
/// How the instantiation step (and a start function in it) is named in traps and findings.
const INSTANTIATION: &str = "instantiation";
/// Refused `memory.grow` requests after which the next one traps instead of returning -1.
const MAX_MEMORY_REFUSALS: u32 = 64;
/// How many arguments of the first call of each import are recorded.
const RECORDED_ARGS: usize = 6;

/// The requests `plugstore_handle` gets, in order.
pub const CANNED_INPUTS: &[&[u8]] = &[
    b"",
    b"{\"action\":\"ping\"}",
    b"hello from the plugstore scanner",
];

/// WASI errno `EBADF`.
const WASI_EBADF: i32 = 8;
/// WASI errno `EFAULT`.
const WASI_EFAULT: i32 = 21;
/// WASI errno `ENOTSUP`.
const WASI_ENOTSUP: i32 = 58;
/// WASI errno `EINVAL`.
const WASI_EINVAL: i32 = 28;
/// WASI errno `ENOTCAPABLE`.
const WASI_ENOTCAPABLE: i32 = 76;
/// WASI clock id of the real time.
const WASI_CLOCK_REALTIME: i64 = 0;
/// WASI clock id of the monotonic clock; the process' CPU time (2) follows.
const WASI_CLOCK_MONOTONIC: i64 = 1;
/// WASI clock id of the thread's CPU time, the last clock WASI defines.
const WASI_CLOCK_THREAD_CPUTIME: i64 = 3;
/// What `clock_res_get` answers for every clock: nanoseconds, as Linux hosts report.
const CLOCK_RESOLUTION_NS: u64 = 1;

/// The limits of one dynamic run; an operator's limits file sets them under `[dynamic]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicLimits {
    /// Fuel for each call.
    pub fuel_per_call: u64,
    /// Wall-clock deadline of the whole run (`wall_deadline_ms` in a limits file).
    #[serde(rename = "wall_deadline_ms", with = "duration_ms")]
    pub wall_deadline: Duration,
    /// Most linear memory, in bytes.
    pub max_memory_bytes: usize,
    /// Most elements of one table.
    pub max_table_elements: usize,
    /// Most wasm stack, in bytes.
    pub max_wasm_stack: usize,
    /// Largest output of one call that is not a finding.
    pub max_output_bytes: u32,
}

impl Default for DynamicLimits {
    fn default() -> Self {
        Self {
            fuel_per_call: DEFAULT_FUEL_PER_CALL,
            wall_deadline: DEFAULT_WALL_DEADLINE,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// A [`Duration`] as whole milliseconds, the unit operators write.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// Runs the module and reports what it did. `bytes` must have passed the static validation
/// (no `wasm.invalid`). A module that still cannot be run gets a `dynamic.not-run` finding,
/// high unless an import no host provides explains it, and one that needs more than the
/// store's limits a `dynamic.resource-limit` finding: a module must not escape the run by
/// being refused it.
pub fn analyze_wasm_dynamic(
    bytes: &[u8],
    declared: &[Capability],
    limits: &DynamicLimits,
) -> StaticAnalysis {
    StaticAnalysis::collect(|findings, metrics| {
        analyze_wasm_dynamic_into(bytes, declared, limits, findings, metrics);
    })
}

/// [`analyze_wasm_dynamic`] adding to a caller's findings and metrics.
pub fn analyze_wasm_dynamic_into(
    bytes: &[u8],
    declared: &[Capability],
    limits: &DynamicLimits,
    findings: &mut FindingCollector,
    metrics: &mut Metrics,
) {
    let started = Instant::now();
    let mut run = PluginRun {
        findings,
        fuel_used: 0,
        traps: Vec::new(),
        outputs: Vec::new(),
        limits,
        memory_limit_reported: false,
        handled_requests: 0,
        unlinked_imports: Vec::new(),
    };
    let state = match run.execute(bytes, declared) {
        Ok(state) => Some(state),
        Err(not_run) => {
            run.findings.push(not_run);
            None
        }
    };
    metrics.insert(
        "dynamic.wall_time_ms".into(),
        json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
    );
    metrics.insert("dynamic.fuel_used".into(), json!(run.fuel_used));
    metrics.insert("dynamic.traps".into(), json!(run.traps));
    metrics.insert("dynamic.output_bytes".into(), json!(run.outputs));
    if let Some(state) = state {
        metrics.insert(
            "dynamic.peak_memory_bytes".into(),
            json!(state.limiter.peak_memory_bytes),
        );
        metrics.insert("dynamic.stdio_bytes".into(), json!(state.stdio_bytes_total));
        metrics.insert(
            "dynamic.stdio_head".into(),
            json!(bounded_text(
                &String::from_utf8_lossy(&state.stdio),
                MAX_EVIDENCE_BYTES
            )),
        );
        let calls: serde_json::Map<String, serde_json::Value> = state
            .calls
            .iter()
            .map(|((module, name), record)| {
                (
                    // Names of unknown imports come from the module.
                    bounded_text(&format!("{module}.{name}"), MAX_LOCATION_BYTES),
                    json!({"count": record.count, "first_args": record.first_args}),
                )
            })
            .collect();
        metrics.insert(
            "dynamic.host_calls".into(),
            serde_json::Value::Object(calls),
        );
    }
}

/// The store's data: the limiter and everything the host functions record.
struct HostState {
    limiter: RecordingLimiter,
    declared: Vec<Capability>,
    calls: BTreeMap<(String, String), CallRecord>,
    /// Findings raised inside host functions, moved to the collector after each call.
    pending: Vec<Finding>,
    stdio: Vec<u8>,
    stdio_bytes_total: u64,
    clock: RunClock,
}

/// The clocks the plugin reads. A clock that stands still (this one once answered a fixed
/// instant) or starts at a made-up date tells a plugin that it is being scanned, and a
/// plugin that wants to hide what it does behaves only when it is not. So the real time runs
/// here as in a host, never backwards within the run, and the monotonic and CPU-time clocks
/// count from the run's start, as Wasmtime's WASI does from the instance's.
struct RunClock {
    started: Instant,
    started_unix_ns: u64,
}

impl RunClock {
    fn start() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            started: Instant::now(),
            started_unix_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds on the WASI clock `id`, or `None` for an id WASI does not define.
    fn now_ns(&self, id: i64) -> Option<u64> {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match id {
            WASI_CLOCK_REALTIME => Some(self.started_unix_ns.saturating_add(elapsed)),
            WASI_CLOCK_MONOTONIC..=WASI_CLOCK_THREAD_CPUTIME => Some(elapsed),
            _ => None,
        }
    }
}

/// Calls of one import.
#[derive(Debug, Default)]
struct CallRecord {
    count: u64,
    first_args: Vec<i64>,
}

/// [`StoreLimits`] that also remembers the peak memory and whether growth was refused.
struct RecordingLimiter {
    inner: StoreLimits,
    max_memory_bytes: usize,
    peak_memory_bytes: usize,
    memory_refused: bool,
    memory_refusals: u32,
}

impl ResourceLimiter for RecordingLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory_bytes
            && self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        } else {
            self.memory_refused = true;
            self.memory_refusals += 1;
            // A plugin may handle one refusal; asking on and on is a memory bomb, which would
            // otherwise spin until the deadline.
            if self.memory_refusals > MAX_MEMORY_REFUSALS {
                return Err(wasmtime::Error::msg(format!(
                    "memory growth to {desired} bytes refused {} times",
                    self.memory_refusals
                )));
            }
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Raised by `proc_exit`: ends the instance like a trap, but is not a fault. Holds the exit
/// code.
#[derive(Debug)]
struct ProcExit(i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// Raised by the stubs of imports the ABI does not provide.
#[derive(Debug)]
struct UnknownImportCalled(String);

impl std::fmt::Display for UnknownImportCalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the import {} is not provided by any host", self.0)
    }
}

impl std::error::Error for UnknownImportCalled {}

/// How a call into the plugin ended, when not normally.
enum CallFailure {
    /// A fault that ends the run (fuel, deadline, memory, stack): reported, nothing more is
    /// called.
    Fatal,
    /// A trap or an unusable result; the run goes on with the next call where that makes
    /// sense.
    Recoverable,
}

/// One dynamic run in progress.
struct PluginRun<'a> {
    findings: &'a mut FindingCollector,
    fuel_used: u64,
    traps: Vec<String>,
    outputs: Vec<u64>,
    limits: &'a DynamicLimits,
    memory_limit_reported: bool,
    /// `plugstore_handle` calls that returned, to say how far a run the plugin ended got.
    handled_requests: usize,
    /// Imports the linker leaves undefined (memories, tables, globals), which make
    /// instantiation fail in every host, not only here.
    unlinked_imports: Vec<String>,
}

impl PluginRun<'_> {
    /// Compiles, instantiates and calls the plugin. `Err` with the finding when it cannot
    /// even be compiled or set up.
    fn execute(&mut self, bytes: &[u8], declared: &[Capability]) -> Result<HostState, Finding> {
        // The module validated with the features this engine enables, so a failure to compile
        // it is the scanner's, and the plugin may well compile in a host: nothing vouches
        // for it.
        let not_compiled = |error: wasmtime::Error| {
            Finding::new(
                &rules::DYNAMIC_NOT_RUN,
                "the module passed validation but could not be compiled or linked for the \
                 dynamic run",
            )
            .with_severity(Severity::High)
            .with_evidence(format!("{error:#}"))
        };
        let engine = Engine::new(&untrusted_config(self.limits)).map_err(not_compiled)?;
        let module = Module::new(&engine, bytes).map_err(not_compiled)?;
        self.check_store_limits(&module)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        self.unlinked_imports = define_imports(&mut linker, &module).map_err(not_compiled)?;

        let limiter = RecordingLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .table_elements(self.limits.max_table_elements)
                .instances(MAX_INSTANCES)
                .memories(MAX_MEMORIES)
                .tables(DEFAULT_MAX_TABLES)
                .build(),
            max_memory_bytes: self.limits.max_memory_bytes,
            peak_memory_bytes: 0,
            memory_refused: false,
            memory_refusals: 0,
        };
        let mut store = Store::new(
            &engine,
            HostState {
                limiter,
                declared: declared.to_vec(),
                calls: BTreeMap::new(),
                pending: Vec::new(),
                stdio: Vec::new(),
                stdio_bytes_total: 0,
                clock: RunClock::start(),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        let _deadline = Deadline::start(&engine, self.limits.wall_deadline);

        self.run_calls(&mut store, &linker, &module);
        self.flush_pending(&mut store);
        if store.data().limiter.memory_refused && !self.memory_limit_reported {
            self.report_memory_limit(None);
        }
        Ok(store.into_data())
    }

    /// What the store refuses at instantiation, checked before: Wasmtime reports it as a
    /// plain error, like a missing import, but unlike a missing import it says nothing about
    /// whether hosts can run the plugin, and the plugin's code would not run here at all.
    /// Memory is left to the limiter, which reports an initial size above the limit as
    /// `dynamic.memory-limit`.
    fn check_store_limits(&self, module: &Module) -> Result<(), Finding> {
        let required = module.resources_required();
        let mut over = Vec::new();
        if required.num_tables as usize > DEFAULT_MAX_TABLES {
            over.push(format!(
                "{} tables (the run allows {DEFAULT_MAX_TABLES})",
                required.num_tables
            ));
        }
        if required.num_memories as usize > MAX_MEMORIES {
            over.push(format!(
                "{} memories (the run allows {MAX_MEMORIES})",
                required.num_memories
            ));
        }
        if let Some(elements) = required.max_initial_table_size
            && elements > self.limits.max_table_elements as u64
        {
            over.push(format!(
                "a table of {elements} elements (the run allows {})",
                self.limits.max_table_elements
            ));
        }
        if over.is_empty() {
            return Ok(());
        }
        let over = over.join(", ");
        Err(Finding::new(
            &rules::DYNAMIC_RESOURCE_LIMIT,
            format!("the module was not run: it needs {over}"),
        )
        .with_evidence(over))
    }

    /// The host's sequence of calls; stops at the first fatal fault.
    fn run_calls(
        &mut self,
        store: &mut Store<HostState>,
        linker: &Linker<HostState>,
        module: &Module,
    ) {
        let instance = match self.metered(store, INSTANTIATION, |store| {
            linker.instantiate(&mut *store, module)
        }) {
            Ok(instance) => instance,
            Err(_) => return,
        };
        if let Ok(initialize) =
            instance.get_typed_func::<(), ()>(&mut *store, EXPORT_WASI_INITIALIZE)
            && let Err(CallFailure::Fatal) = self.metered(store, EXPORT_WASI_INITIALIZE, |store| {
                initialize.call(store, ())
            })
        {
            return;
        }
        match instance.get_typed_func::<(), i32>(&mut *store, EXPORT_ABI_VERSION) {
            Ok(version) => {
                match self.metered(store, EXPORT_ABI_VERSION, |store| version.call(store, ())) {
                    Ok(version) if version == ABI_VERSION as i32 => {}
                    Ok(version) => {
                        self.findings.push(
                            Finding::new(
                                &rules::DYNAMIC_ABI_VERSION,
                                format!(
                                    "plugstore_abi_version returned {version}; this host \
                                     implements version {ABI_VERSION}"
                                ),
                            )
                            .with_evidence(version.to_string()),
                        );
                        return;
                    }
                    Err(_) => return,
                }
            }
            // A missing or mistyped export is the static analysis' finding.
            Err(_) => return,
        }
        if let Ok(init) = instance.get_typed_func::<(), i32>(&mut *store, EXPORT_INIT) {
            match self.metered(store, EXPORT_INIT, |store| init.call(store, ())) {
                Ok(0) => {}
                Ok(status) => {
                    let refusal = format!("{EXPORT_INIT} returned {status} (refuses to load)");
                    self.record_trap(&refusal);
                    self.report_exited_early(&refusal, format!("status={status}"));
                    return;
                }
                Err(_) => return,
            }
        }
        let (Ok(alloc), Ok(handle), Some(memory)) = (
            instance.get_typed_func::<i32, i32>(&mut *store, EXPORT_ALLOC),
            instance.get_typed_func::<(i32, i32), i64>(&mut *store, EXPORT_HANDLE),
            instance.get_memory(&mut *store, EXPORT_MEMORY),
        ) else {
            return;
        };
        for input in CANNED_INPUTS {
            let len = input.len() as i32;
            let ptr = match self.metered(store, EXPORT_ALLOC, |store| alloc.call(store, len)) {
                Ok(ptr) => ptr,
                Err(CallFailure::Fatal) => return,
                Err(CallFailure::Recoverable) => continue,
            };
            if ptr == 0 && len > 0 {
                self.record_trap(&format!("{EXPORT_ALLOC}({len}) returned 0"));
                continue;
            }
            if memory
                .write(&mut *store, ptr as u32 as usize, input)
                .is_err()
            {
                self.findings.push(
                    Finding::new(
                        &rules::DYNAMIC_TRAP,
                        format!("{EXPORT_ALLOC}({len}) returned a buffer outside memory"),
                    )
                    .with_evidence(format!("ptr={}", ptr as u32)),
                );
                continue;
            }
            let packed =
                match self.metered(store, EXPORT_HANDLE, |store| handle.call(store, (ptr, len))) {
                    Ok(packed) => packed,
                    Err(CallFailure::Fatal) => return,
                    Err(CallFailure::Recoverable) => continue,
                };
            self.handled_requests += 1;
            self.check_output(store, memory, packed);
        }
    }

    /// Records the output of one `plugstore_handle` call and checks it is within bounds.
    fn check_output(&mut self, store: &mut Store<HostState>, memory: Memory, packed: i64) {
        let (out_ptr, out_len) = abi::unpack_handle_result(packed);
        self.outputs.push(u64::from(out_len));
        let end = u64::from(out_ptr) + u64::from(out_len);
        if end > memory.data_size(&*store) as u64 {
            self.findings.push(
                Finding::new(
                    &rules::DYNAMIC_OUTPUT_OUT_OF_BOUNDS,
                    "plugstore_handle returned an output outside the plugin's memory",
                )
                .with_evidence(format!("ptr={out_ptr} len={out_len}")),
            );
        } else if out_len > self.limits.max_output_bytes {
            self.findings.push(
                Finding::new(
                    &rules::DYNAMIC_OUTPUT_TOO_LARGE,
                    format!(
                        "plugstore_handle returned {out_len} bytes; the limit is {} bytes",
                        self.limits.max_output_bytes
                    ),
                )
                .with_evidence(format!("len={out_len}")),
            );
        }
    }

    /// Runs one call with a fresh fuel budget, accounts the fuel, and turns a failure into
    /// findings.
    fn metered<R>(
        &mut self,
        store: &mut Store<HostState>,
        what: &str,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        // Setting fuel only fails when fuel is not enabled, which the config guarantees.
        let _ = store.set_fuel(self.limits.fuel_per_call);
        let result = call(&mut *store);
        let left = store.get_fuel().unwrap_or(0);
        self.fuel_used = self
            .fuel_used
            .saturating_add(self.limits.fuel_per_call.saturating_sub(left));
        self.flush_pending(store);
        result.map_err(|error| self.classify_failure(store, what, &error))
    }

    fn flush_pending(&mut self, store: &mut Store<HostState>) {
        for finding in std::mem::take(&mut store.data_mut().pending) {
            self.findings.push(finding);
        }
    }

    fn classify_failure(
        &mut self,
        store: &Store<HostState>,
        what: &str,
        error: &wasmtime::Error,
    ) -> CallFailure {
        // The trap itself, not the context ("error while executing at wasm backtrace").
        let message = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        self.record_trap(&format!("{what}: {}", first_line(&message)));
        if let Some(ProcExit(code)) = error.downcast_ref::<ProcExit>() {
            self.report_exited_early(
                &format!("{what} exited through WASI proc_exit with code {code}"),
                format!("proc_exit({code})"),
            );
            return CallFailure::Fatal;
        }
        if error.downcast_ref::<UnknownImportCalled>().is_some() {
            // Already reported by the stub (a start function may call one, too).
            return CallFailure::Recoverable;
        }
        if what == INSTANTIATION
            && error.downcast_ref::<Trap>().is_none()
            && !store.data().limiter.memory_refused
        {
            let finding = not_instantiated(&self.unlinked_imports);
            self.findings
                .push(finding.with_evidence(first_line(&message)));
            return CallFailure::Fatal;
        }
        let evidence = first_line(&message).to_owned();
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                self.findings.push(
                    Finding::new(
                        &rules::DYNAMIC_FUEL_EXHAUSTED,
                        format!(
                            "{what} used up its fuel of {} units without returning (an endless \
                             or extremely long loop)",
                            self.limits.fuel_per_call
                        ),
                    )
                    .with_evidence(evidence),
                );
                CallFailure::Fatal
            }
            Some(Trap::Interrupt) => {
                self.findings.push(
                    Finding::new(
                        &rules::DYNAMIC_TIMEOUT,
                        format!(
                            "{what} was still running at the wall-clock deadline of {} ms",
                            self.limits.wall_deadline.as_millis()
                        ),
                    )
                    .with_evidence(evidence),
                );
                CallFailure::Fatal
            }
            Some(Trap::StackOverflow) => {
                self.findings.push(
                    Finding::new(
                        &rules::DYNAMIC_STACK_OVERFLOW,
                        format!(
                            "{what} overflowed the wasm stack of {} KiB (deep or endless \
                             recursion)",
                            self.limits.max_wasm_stack >> 10
                        ),
                    )
                    .with_evidence(evidence),
                );
                CallFailure::Fatal
            }
            _ if store.data().limiter.memory_refused => {
                self.report_memory_limit(Some((what, evidence)));
                CallFailure::Fatal
            }
            _ => {
                self.findings.push(
                    Finding::new(&rules::DYNAMIC_TRAP, format!("{what} trapped: {evidence}"))
                        .with_evidence(evidence),
                );
                if what == INSTANTIATION {
                    CallFailure::Fatal
                } else {
                    CallFailure::Recoverable
                }
            }
        }
    }

    /// Keeps how a call ended early for the `dynamic.traps` metric. The text can name the
    /// module's imports, which can be any length.
    fn record_trap(&mut self, text: &str) {
        self.traps.push(bounded_text(text, MAX_EVIDENCE_BYTES));
    }

    /// Reports a run the plugin ended itself, `how` saying in which call and how. Hosts let a
    /// plugin end its instance or refuse to load, so it is not a fault; but nothing after it
    /// was observed, and a plugin that notices the scanner can end the run before it does
    /// what it does in hosts. A trap ends a run no less, and is medium for the same reasons.
    fn report_exited_early(&mut self, how: &str, evidence: String) {
        let (handled, total) = (self.handled_requests, CANNED_INPUTS.len());
        self.findings.push(
            Finding::new(
                &rules::DYNAMIC_EXITED_EARLY,
                format!(
                    "{how}; the run ended there, with {handled} of {total} canned requests \
                     handled"
                ),
            )
            .with_evidence(evidence),
        );
    }

    fn report_memory_limit(&mut self, failed: Option<(&str, String)>) {
        self.memory_limit_reported = true;
        let limit = self.limits.max_memory_bytes >> 20;
        let finding = match failed {
            Some((what, evidence)) => Finding::new(
                &rules::DYNAMIC_MEMORY_LIMIT,
                format!("{what} failed after its memory growth beyond {limit} MiB was refused"),
            )
            .with_evidence(evidence),
            None => Finding::new(
                &rules::DYNAMIC_MEMORY_LIMIT,
                format!("the plugin tried to grow its memory beyond {limit} MiB and was refused"),
            )
            .with_evidence("memory.grow refused by the store limiter"),
        };
        self.findings.push(finding);
    }
}

/// The finding for an instantiation that failed without a trap or a refused memory, before
/// any of the plugin's code ran.
fn not_instantiated(unlinked_imports: &[String]) -> Finding {
    if unlinked_imports.is_empty() {
        // Every import was defined, so the store refused the instance: a limit
        // `check_store_limits` does not know. Nothing ran, and nothing says hosts would refuse
        // it too.
        Finding::new(
            &rules::DYNAMIC_NOT_RUN,
            "the module could not be instantiated for the dynamic run, though every import was \
             provided",
        )
        .with_severity(Severity::High)
    } else {
        // Linking failed (a memory, table or global import no host provides), which the
        // static analysis reports; no host can instantiate it either.
        Finding::new(
            &rules::DYNAMIC_NOT_RUN,
            format!(
                "the module could not be instantiated for the dynamic run: no host provides {}",
                unlinked_imports.join(", ")
            ),
        )
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Wasmtime for untrusted code: the ABI's features and nothing else, fuel, epochs, a small
/// stack, and memories that fit in the analysis child's address-space limit.
fn untrusted_config(limits: &DynamicLimits) -> Config {
    let enabled = |feature: WasmFeature| feature.is_enabled();
    // Reference types with funcref only, function references and exceptions have no switch
    // here: without Wasmtime's `gc` feature (not compiled in) they are fixed at exactly the
    // ABI's choice, funcref tables on and externref, typed function references and
    // exception handling off; likewise threads without the `threads` feature.
    let mut config = Config::new();
    config
        .wasm_multi_value(enabled(WasmFeature::MultiValue))
        .wasm_bulk_memory(enabled(WasmFeature::BulkMemory))
        .wasm_simd(enabled(WasmFeature::Simd))
        .wasm_relaxed_simd(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_gc(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_stack_switching(false)
        // The run is bounded by fuel, not time, so code quality does not matter; Cranelift's
        // optimisations cost more time than the run itself on large real modules (esbuild,
        // Go-compiled, has functions of tens of thousands of instructions).
        .cranelift_opt_level(OptLevel::None)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits.max_wasm_stack)
        // The child runs under an address-space limit: reserve only the memory limit (the
        // single memory never moves as it grows up to it) instead of 4 GiB plus guard pages,
        // at the price of explicit bounds checks.
        .memory_reservation(limits.max_memory_bytes as u64)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        // Copy-on-write images live in a memfd, which the child's file-size limit of 0
        // forbids (SIGXFSZ); data segments are copied in instead.
        .memory_init_cow(false);
    config
}

/// Bumps the engine's epoch once when the deadline passes, which traps the running call;
/// dropping it stops the timer thread.
struct Deadline {
    _stop: mpsc::Sender<()>,
}

impl Deadline {
    fn start(engine: &Engine, after: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.clone();
        let timer = std::thread::Builder::new()
            .name("plugstore-wasm-deadline".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(after) {
                    engine.increment_epoch();
                }
            });
        if let Err(error) = timer {
            // Fuel still bounds every call; only the wall-clock bound is lost.
            tracing::warn!("cannot start the wasm deadline timer: {error}");
        }
        Self { _stop: stop }
    }
}

/// Satisfies every function import of the module: ABI functions with their exact type get
/// instrumented host functions, everything else a stub that traps when called. Non-function
/// imports are left undefined, so instantiation fails (the static analysis reports them);
/// returns their names.
fn define_imports(
    linker: &mut Linker<HostState>,
    module: &Module,
) -> wasmtime::Result<Vec<String>> {
    let mut unlinked = Vec::new();
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            unlinked.push(format!("{}.{}", import.module(), import.name()));
            continue;
        };
        let (module_name, name) = (import.module().to_owned(), import.name().to_owned());
        let class = abi::lookup_import(&module_name, &name);
        let provided = match class {
            ImportClass::Provided {
                capability,
                signature,
            } => {
                let matches = ty
                    .params()
                    .map(|t| abi_type(&t))
                    .eq(signature.params.iter().map(|t| Some(*t)))
                    && ty
                        .results()
                        .map(|t| abi_type(&t))
                        .eq(signature.results.iter().map(|t| Some(*t)));
                matches.then_some(capability)
            }
            _ => None,
        };
        match provided {
            Some(capability) => {
                let (m, n) = (module_name.clone(), name.clone());
                linker.func_new(&module_name, &name, ty, move |caller, params, results| {
                    host_call(caller, &m, &n, capability, params, results)
                })?;
            }
            None => {
                let label = format!("{module_name}.{name}");
                linker.func_new(&module_name, &name, ty, move |mut caller, params, _| {
                    record_call(caller.data_mut(), &label, params);
                    caller.data_mut().pending.push(
                        Finding::new(
                            &rules::DYNAMIC_UNKNOWN_IMPORT_CALLED,
                            format!("the plugin called {label}, which no host provides"),
                        )
                        .with_evidence(label.clone()),
                    );
                    Err(wasmtime::Error::new(UnknownImportCalled(label.clone())))
                })?;
            }
        }
    }
    Ok(unlinked)
}

fn abi_type(ty: &ValType) -> Option<abi::AbiType> {
    match ty {
        ValType::I32 => Some(abi::AbiType::I32),
        ValType::I64 => Some(abi::AbiType::I64),
        _ => None,
    }
}

fn val_as_i64(value: &Val) -> i64 {
    match value {
        Val::I32(v) => i64::from(*v),
        Val::I64(v) => *v,
        _ => 0,
    }
}

/// Counts a call of `label` and keeps the arguments of the first.
fn record_call(state: &mut HostState, label: &str, params: &[Val]) {
    let (module, name) = label.split_once('.').unwrap_or((label, ""));
    let record = state
        .calls
        .entry((module.to_owned(), name.to_owned()))
        .or_default();
    if record.count == 0 {
        record.first_args = params.iter().take(RECORDED_ARGS).map(val_as_i64).collect();
    }
    record.count += 1;
}

/// An instrumented ABI host function: records the call, reports calls outside the declared
/// capabilities, and answers like a host that has nothing to give.
fn host_call(
    mut caller: Caller<'_, HostState>,
    module: &str,
    name: &str,
    capability: Option<Capability>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    let first_call = !state
        .calls
        .contains_key(&(module.to_owned(), name.to_owned()));
    let label = format!("{module}.{name}");
    record_call(state, &label, params);
    let granted = capability.is_none_or(|c| state.declared.contains(&c));
    if !granted && first_call {
        let capability = capability.map(|c| c.as_str()).unwrap_or_default();
        state.pending.push(
            Finding::new(
                &rules::DYNAMIC_HOST_CALL_OUTSIDE_CAPABILITIES,
                format!(
                    "the plugin called {label}, which needs the capability {capability:?} that \
                     the manifest does not declare"
                ),
            )
            .with_evidence(label.clone()),
        );
    }
    let arg = |at: usize| params.get(at).map(val_as_i64).unwrap_or(0);
    let answer: i64 = if module == MODULE_WASI {
        if granted {
            wasi_call(&mut caller, name, &arg)?
        } else {
            i64::from(WASI_ENOTCAPABLE)
        }
    } else if !granted {
        HostErrorCode::Denied.code()
    } else {
        match (module, name) {
            (abi::MODULE_LOG, _) => 0,
            (abi::MODULE_FS, "read_file") | (abi::MODULE_ENV, _) => HostErrorCode::NotFound.code(),
            // The clipboard is empty; writes and dialogs succeed without doing anything.
            (abi::MODULE_CLIPBOARD, _) | (abi::MODULE_UI, _) => 0,
            // No file system, network or processes behind the scanner's host.
            _ => HostErrorCode::Denied.code(),
        }
    };
    if let Some(result) = results.first_mut() {
        // WASI returns an i32 errno, the plugstore: modules an i64 (the signatures were
        // checked when the import was defined).
        *result = if module == MODULE_WASI {
            Val::I32(answer as i32)
        } else {
            Val::I64(answer)
        };
    }
    Ok(())
}

/// The always-available WASI subset, with nothing behind it. Returns the errno.
fn wasi_call(
    caller: &mut Caller<'_, HostState>,
    name: &str,
    arg: &dyn Fn(usize) -> i64,
) -> wasmtime::Result<i64> {
    if name == "proc_exit" {
        // Never returns, memory or not: the plugin must not go on past its own exit.
        return Err(wasmtime::Error::new(ProcExit(arg(0) as i32)));
    }
    let Some(Extern::Memory(memory)) = caller.get_export(EXPORT_MEMORY) else {
        return Ok(i64::from(WASI_EFAULT));
    };
    let ptr = |at: usize| arg(at) as u32 as usize;
    let errno = match name {
        "args_sizes_get" | "environ_sizes_get" => {
            let zero = 0u32.to_le_bytes();
            if memory.write(&mut *caller, ptr(0), &zero).is_err()
                || memory.write(&mut *caller, ptr(1), &zero).is_err()
            {
                WASI_EFAULT
            } else {
                0
            }
        }
        "args_get" | "environ_get" | "sched_yield" => 0,
        "clock_time_get" | "clock_res_get" => {
            let (value, at) = if name == "clock_time_get" {
                (caller.data().clock.now_ns(arg(0)), 2)
            } else {
                let defined = caller.data().clock.now_ns(arg(0)).is_some();
                (defined.then_some(CLOCK_RESOLUTION_NS), 1)
            };
            match value {
                Some(value) => match memory.write(&mut *caller, ptr(at), &value.to_le_bytes()) {
                    Ok(()) => 0,
                    Err(_) => WASI_EFAULT,
                },
                None => WASI_EINVAL,
            }
        }
        "random_get" => {
            let len = ptr(1).min(1 << 20);
            let mut bytes = vec![0u8; len];
            // A fixed sequence would be as plain a sign of the scanner as a fixed clock.
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            match memory.write(&mut *caller, ptr(0), &bytes) {
                Ok(()) => 0,
                Err(_) => WASI_EFAULT,
            }
        }
        "fd_write" => fd_write(caller, memory, arg),
        "poll_oneoff" => WASI_ENOTSUP,
        _ => WASI_EBADF,
    };
    Ok(i64::from(errno))
}

/// `fd_write(fd, iovs, iovs_len, nwritten)` to stdout or stderr, kept in a bounded buffer.
fn fd_write(caller: &mut Caller<'_, HostState>, memory: Memory, arg: &dyn Fn(usize) -> i64) -> i32 {
    let fd = arg(0);
    if fd != 1 && fd != 2 {
        return WASI_EBADF;
    }
    let (iovs, count) = (arg(1) as u32 as usize, arg(2) as u32 as usize);
    let mut written: u32 = 0;
    for at in 0..count.min(1024) {
        let mut iov = [0u8; 8];
        if memory.read(&*caller, iovs + at * 8, &mut iov).is_err() {
            return WASI_EFAULT;
        }
        let base = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]) as usize;
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]) as usize;
        let Some(end) = base.checked_add(len) else {
            return WASI_EFAULT;
        };
        let data = memory.data(&*caller);
        let Some(bytes) = data.get(base..end) else {
            return WASI_EFAULT;
        };
        let room = MAX_CAPTURED_STDIO_BYTES.saturating_sub(caller.data().stdio.len());
        let kept = bytes[..len.min(room)].to_vec();
        let state = caller.data_mut();
        state.stdio.extend_from_slice(&kept);
        state.stdio_bytes_total += len as u64;
        written = written.saturating_add(len as u32);
    }
    match memory.write(&mut *caller, arg(3) as u32 as usize, &written.to_le_bytes()) {
        Ok(()) => 0,
        Err(_) => WASI_EFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused instance that no missing import explains is not the benign "not run": the
    /// store refused it for a limit of the scanner's, and hosts may well run it.
    #[test]
    fn only_a_missing_import_makes_a_refused_instance_medium() {
        let refused = not_instantiated(&[]);
        assert_eq!(refused.rule, rules::DYNAMIC_NOT_RUN.id);
        assert_eq!(refused.severity, Severity::High);
        let unlinked = not_instantiated(&["env.memory".to_owned()]);
        assert_eq!(unlinked.severity, Severity::Medium);
        assert!(unlinked.message.ends_with("env.memory"), "{unlinked:?}");
    }
}
