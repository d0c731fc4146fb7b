//! Static analysis of a WebAssembly plugin.
//!
//! One pass of wasmparser's [`Parser`] over the module drives both the validator (with
//! exactly the feature set of [`plugstore_format::abi`]) and the inspection: imports are
//! classified against the ABI and the manifest's capabilities as they are read, data
//! segments are searched for strings and measured for entropy in place, and nothing larger
//! than a function type is copied. Function bodies, which the validator hands out one by
//! one, are validated after the pass on all cores, since they are most of the work. Findings
//! that summarise the whole module (inventory, capabilities, exports) are emitted at the end.
//!
//! [`analyze_wasm`] takes the module as a byte slice and does no I/O, so it is also what a
//! benchmark measures.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::ops::Range;

use plugstore_format::abi::{
    self, ENABLED_WASM_FEATURES, GUEST_EXPORTS, GuestExportKind, ImportClass, Signature,
    WasmFeature,
};
use plugstore_format::manifest::{Capability, Manifest};
use serde_json::json;
use wasmparser::{
    BinaryReaderError, Data, Export, ExternalKind, FuncToValidate, FuncType,
    FuncValidatorAllocations, FunctionBody, Import, MemoryType, Parser, Payload, TableType,
    TypeRef, ValType, ValidPayload, Validator, ValidatorResources, WasmFeatures,
};

use crate::entropy::{round3, shannon_entropy};
use crate::findings::{Finding, FindingCollector, Metrics, Severity, StaticAnalysis, bounded_text};
use crate::limits::StaticLimits;
use crate::rules::{self, Rule};
use crate::strings::{IndicatorKind, find_indicators};

/// Size of a WebAssembly page (custom page sizes are not enabled).
const PAGE_SIZE: u64 = 64 * 1024;

/// Most entries of a list-valued metric (import and export names, custom sections).
const MAX_METRIC_LIST: usize = 100;

/// Longest name in a list-valued metric, in bytes once escaped.
const MAX_METRIC_NAME_BYTES: usize = 128;

/// Most threads validating function bodies.
const MAX_VALIDATION_THREADS: usize = 8;

/// Code size from which function bodies are validated on several threads (256 KiB): below
/// it, starting threads costs more than it saves.
const PARALLEL_VALIDATION_BYTES: usize = 256 * 1024;

/// Most distinct strings remembered to report each only once.
const MAX_REMEMBERED_STRINGS: usize = 100_000;

/// The wasmparser feature set of [`ENABLED_WASM_FEATURES`]: WebAssembly 2.0 without
/// `externref`.
pub fn abi_features() -> WasmFeatures {
    ENABLED_WASM_FEATURES
        .iter()
        .fold(WasmFeatures::FLOATS, |features, feature| {
            features | wasmparser_features(*feature)
        })
}

/// The wasmparser flags of one ABI feature.
fn wasmparser_features(feature: WasmFeature) -> WasmFeatures {
    match feature {
        WasmFeature::MutableGlobal => WasmFeatures::MUTABLE_GLOBAL,
        WasmFeature::SaturatingFloatToInt => WasmFeatures::SATURATING_FLOAT_TO_INT,
        WasmFeature::SignExtension => WasmFeatures::SIGN_EXTENSION,
        WasmFeature::MultiValue => WasmFeatures::MULTI_VALUE,
        WasmFeature::BulkMemory => WasmFeatures::BULK_MEMORY,
        WasmFeature::ReferenceTypes => WasmFeatures::REFERENCE_TYPES,
        WasmFeature::Simd => WasmFeatures::SIMD,
        WasmFeature::GcTypes => WasmFeatures::GC_TYPES,
        WasmFeature::Threads => WasmFeatures::THREADS | WasmFeatures::SHARED_EVERYTHING_THREADS,
        WasmFeature::Memory64 => WasmFeatures::MEMORY64,
        WasmFeature::MultiMemory => WasmFeatures::MULTI_MEMORY,
        WasmFeature::Exceptions => WasmFeatures::EXCEPTIONS | WasmFeatures::LEGACY_EXCEPTIONS,
        WasmFeature::Gc => WasmFeatures::GC,
        WasmFeature::FunctionReferences => WasmFeatures::FUNCTION_REFERENCES,
        WasmFeature::TailCall => WasmFeatures::TAIL_CALL,
        WasmFeature::RelaxedSimd => WasmFeatures::RELAXED_SIMD,
        WasmFeature::ExtendedConst => WasmFeatures::EXTENDED_CONST,
        WasmFeature::ComponentModel => WasmFeatures::COMPONENT_MODEL,
        WasmFeature::CustomPageSizes => WasmFeatures::CUSTOM_PAGE_SIZES,
        WasmFeature::StackSwitching => WasmFeatures::STACK_SWITCHING,
        WasmFeature::WideArithmetic => WasmFeatures::WIDE_ARITHMETIC,
    }
}

/// Analyses a WebAssembly module against the plugin ABI and the manifest that ships it.
///
/// Never fails: an invalid module is a [`rules::WASM_INVALID`] finding, with whatever was
/// learned before the error. Locations are relative to the module (`import 3 …`, `data
/// segment 1 …`); callers that know the file prefix them with its path.
pub fn analyze_wasm(bytes: &[u8], manifest: &Manifest, limits: &StaticLimits) -> StaticAnalysis {
    StaticAnalysis::collect(|findings, metrics| {
        analyze_wasm_into(bytes, manifest.capabilities(), limits, findings, metrics);
    })
}

/// [`analyze_wasm`] adding to a caller's findings and metrics.
pub(crate) fn analyze_wasm_into(
    bytes: &[u8],
    declared: &[Capability],
    limits: &StaticLimits,
    findings: &mut FindingCollector,
    metrics: &mut Metrics,
) {
    metrics.insert("wasm.size_bytes".into(), json!(bytes.len()));
    if bytes.len() as u64 > limits.max_wasm_size {
        findings.push(Finding::new(
            &rules::WASM_MODULE_TOO_LARGE,
            format!(
                "the module is {} bytes; the limit is {} bytes",
                bytes.len(),
                limits.max_wasm_size
            ),
        ));
        return;
    }
    let mut scan = WasmScan {
        bytes,
        declared,
        limits,
        findings,
        metrics,
        valid: false,
        types: Vec::new(),
        function_types: Vec::new(),
        imports_by_module: BTreeMap::new(),
        import_count: 0,
        unknown_modules: BTreeMap::new(),
        used: BTreeSet::new(),
        undeclared: BTreeMap::new(),
        exports: Vec::new(),
        memory_count: 0,
        table_count: 0,
        data_segments: 0,
        data_bytes: 0,
        max_window_entropy: 0.0,
        custom_sections: Vec::new(),
        seen_strings: HashSet::new(),
        string_counts: BTreeMap::new(),
    };
    scan.run();
    scan.finish();
}

/// What one module import from a module the ABI does not know looked like.
struct UnknownModule<'a> {
    first_offset: usize,
    names: Vec<&'a str>,
}

struct WasmScan<'a, 'c> {
    bytes: &'a [u8],
    declared: &'c [Capability],
    limits: &'c StaticLimits,
    findings: &'c mut FindingCollector,
    metrics: &'c mut Metrics,
    /// Whether validation reached the end without error.
    valid: bool,
    /// Function types by type index (`None` for non-function types).
    types: Vec<Option<FuncType>>,
    /// Type index of every function, imports first.
    function_types: Vec<u32>,
    /// Import names by module, for the inventory.
    imports_by_module: BTreeMap<&'a str, Vec<&'a str>>,
    import_count: usize,
    unknown_modules: BTreeMap<&'a str, UnknownModule<'a>>,
    /// Capabilities claimed by imports.
    used: BTreeSet<Capability>,
    /// Undeclared capabilities with the imports that claim them.
    undeclared: BTreeMap<Capability, Vec<String>>,
    exports: Vec<Export<'a>>,
    memory_count: usize,
    table_count: usize,
    data_segments: usize,
    data_bytes: u64,
    max_window_entropy: f64,
    custom_sections: Vec<(&'a str, usize)>,
    /// Strings already reported, by kind, so that each is reported once.
    seen_strings: HashSet<(IndicatorKind, &'a [u8])>,
    /// Distinct strings found, by metric name.
    string_counts: BTreeMap<&'static str, u64>,
}

impl<'a> WasmScan<'a, '_> {
    fn run(&mut self) {
        let mut validator = Validator::new_with_features(abi_features());
        let mut functions = Vec::new();
        let mut module_error = None;
        for payload in Parser::new(0).parse_all(self.bytes) {
            let payload = match payload {
                Ok(payload) => payload,
                Err(error) => {
                    module_error = Some(error);
                    break;
                }
            };
            match validator.payload(&payload) {
                Ok(ValidPayload::Func(function, body)) => {
                    functions.push((function, body));
                    continue;
                }
                Ok(ValidPayload::End(_)) => self.valid = true,
                Ok(_) => {}
                Err(error) => {
                    module_error = Some(error);
                    break;
                }
            }
            if let Err(error) = self.inspect(payload) {
                module_error = Some(error);
                break;
            }
        }
        self.metrics
            .insert("wasm.functions.defined".into(), json!(functions.len()));
        let function_error = validate_functions(functions);
        // Report the error a sequential validator would have met first.
        let error = match (module_error, function_error) {
            (Some(module), Some(function)) if function.offset() < module.offset() => Some(function),
            (module, function) => module.or(function),
        };
        if let Some(error) = error {
            self.invalid(&error);
        }
    }

    fn invalid(&mut self, error: &BinaryReaderError) {
        self.valid = false;
        self.findings.push(
            Finding::new(
                &rules::WASM_INVALID,
                format!(
                    "the module is not valid WebAssembly with the features plugstore hosts \
                     enable: {}",
                    error.message()
                ),
            )
            .with_location(format!("module offset {:#x}", error.offset())),
        );
    }

    /// Looks at one validated payload.
    fn inspect(&mut self, payload: Payload<'a>) -> Result<(), BinaryReaderError> {
        match payload {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub_type in group?.into_types() {
                        self.types.push(match sub_type.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(function) => Some(function),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports_with_offsets() {
                    let (offset, import) = import?;
                    self.import(offset, import);
                }
            }
            Payload::FunctionSection(reader) => {
                for type_index in reader {
                    self.function_types.push(type_index?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let what = format!("table {}", self.table_count);
                    self.check_table(&table?.ty, &what, None);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let what = format!("memory {}", self.memory_count);
                    self.check_memory(&memory?, &what, None);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    self.exports.push(export?);
                }
            }
            Payload::StartSection { func, range } => {
                self.findings.push(
                    Finding::new(
                        &rules::WASM_START_SECTION,
                        format!(
                            "function {func} runs as the start function during instantiation, \
                             outside the host's metered entry points"
                        ),
                    )
                    .with_location(format!("start section at module offset {:#x}", range.start)),
                );
            }
            Payload::CodeSectionStart { range, .. } => {
                self.section_entropy("wasm.entropy.code", range);
            }
            Payload::DataSection(reader) => {
                self.section_entropy("wasm.entropy.data", reader.range());
                for data in reader {
                    let index = self.data_segments;
                    self.data_segments += 1;
                    self.data_segment(index, data?);
                }
            }
            Payload::CustomSection(reader) if self.custom_sections.len() < MAX_METRIC_LIST => {
                self.custom_sections
                    .push((reader.name(), reader.data().len()));
            }
            _ => {}
        }
        Ok(())
    }

    fn section_entropy(&mut self, metric: &str, range: Range<usize>) {
        if let Some(section) = self.bytes.get(range) {
            self.metrics
                .insert(metric.into(), json!(round3(shannon_entropy(section))));
            self.metrics
                .insert(format!("{metric}.bytes"), json!(section.len()));
        }
    }

    fn import(&mut self, offset: usize, import: Import<'a>) {
        let index = self.import_count;
        self.import_count += 1;
        self.imports_by_module
            .entry(import.module)
            .or_default()
            .push(import.name);
        let qualified = format!("{}.{}", import.module, import.name);
        let location = format!("import {index} at module offset {offset:#x}");
        let known_module = abi::host_module(import.module).is_some();
        match import.ty {
            TypeRef::Func(type_index) | TypeRef::FuncExact(type_index) => {
                self.function_types.push(type_index);
                self.function_import(offset, &import, type_index, &qualified, &location);
                return;
            }
            TypeRef::Memory(memory) => {
                self.check_memory(
                    &memory,
                    &format!("imported memory {qualified}"),
                    Some(&location),
                );
            }
            TypeRef::Table(table) => {
                self.check_table(
                    &table,
                    &format!("imported table {qualified}"),
                    Some(&location),
                );
            }
            TypeRef::Global(_) | TypeRef::Tag(_) => {}
        }
        if known_module {
            self.findings.push(
                Finding::new(
                    &rules::WASM_UNSUPPORTED_IMPORT_KIND,
                    format!(
                        "imports `{qualified}` as a {}; hosts provide only functions",
                        import_kind(&import.ty)
                    ),
                )
                .with_evidence(&qualified)
                .with_location(location),
            );
        } else {
            self.unknown_module(offset, &import);
        }
    }

    fn function_import(
        &mut self,
        offset: usize,
        import: &Import<'a>,
        type_index: u32,
        qualified: &str,
        location: &str,
    ) {
        let actual = self.types.get(type_index as usize).and_then(Option::as_ref);
        match abi::lookup_import(import.module, import.name) {
            ImportClass::UnknownModule => self.unknown_module(offset, import),
            ImportClass::UnknownFunction => self.findings.push(
                Finding::new(
                    &rules::WASM_UNKNOWN_IMPORT_FUNCTION,
                    format!(
                        "imports `{qualified}`, but `{}` has no function `{}` in ABI version {}",
                        import.module,
                        import.name,
                        abi::ABI_VERSION
                    ),
                )
                .with_evidence(qualified)
                .with_location(location),
            ),
            ImportClass::NotProvided { .. } => self.findings.push(
                Finding::new(
                    &rules::WASM_IMPORT_NOT_PROVIDED,
                    format!("imports `{qualified}`, which plugstore hosts never provide"),
                )
                .with_evidence(qualified)
                .with_location(location),
            ),
            ImportClass::Provided {
                capability,
                signature,
            } => {
                if !actual.is_some_and(|actual| signature_matches(&signature, actual)) {
                    self.findings.push(
                        Finding::new(
                            &rules::WASM_IMPORT_SIGNATURE_MISMATCH,
                            format!(
                                "imports `{qualified}` with type {}, but the ABI defines {signature}",
                                actual.map_or_else(|| "(not a function type)".into(), describe)
                            ),
                        )
                        .with_evidence(qualified)
                        .with_location(location),
                    );
                }
                if let Some(capability) = capability {
                    self.used.insert(capability);
                    if !self.declared.contains(&capability) {
                        self.undeclared
                            .entry(capability)
                            .or_default()
                            .push(qualified.to_owned());
                    }
                }
            }
        }
    }

    fn unknown_module(&mut self, offset: usize, import: &Import<'a>) {
        self.unknown_modules
            .entry(import.module)
            .or_insert_with(|| UnknownModule {
                first_offset: offset,
                names: Vec::new(),
            })
            .names
            .push(import.name);
    }

    fn check_memory(&mut self, memory: &MemoryType, what: &str, location: Option<&str>) {
        if self.memory_count == 0 {
            self.metrics
                .insert("wasm.memory.initial_pages".into(), json!(memory.initial));
            self.metrics
                .insert("wasm.memory.maximum_pages".into(), json!(memory.maximum));
        }
        self.memory_count += 1;
        let location = location.map_or_else(|| what.to_owned(), str::to_owned);
        let limits = self.limits;
        if memory.initial > limits.max_initial_memory_pages {
            self.findings.push(
                Finding::new(
                    &rules::WASM_MEMORY_INITIAL_OVER_LIMIT,
                    format!(
                        "{what} starts at {} pages ({}); the limit is {} pages",
                        memory.initial,
                        human_bytes(memory.initial.saturating_mul(PAGE_SIZE)),
                        limits.max_initial_memory_pages
                    ),
                )
                .with_location(&location),
            );
        }
        match memory.maximum {
            None => self.findings.push(
                Finding::new(
                    &rules::WASM_MEMORY_UNBOUNDED,
                    format!("{what} declares no maximum size"),
                )
                .with_location(&location),
            ),
            Some(maximum) if maximum > limits.max_memory_pages => self.findings.push(
                Finding::new(
                    &rules::WASM_MEMORY_MAXIMUM_OVER_LIMIT,
                    format!(
                        "{what} may grow to {maximum} pages ({}); hosts allow {} pages",
                        human_bytes(maximum.saturating_mul(PAGE_SIZE)),
                        limits.max_memory_pages
                    ),
                )
                .with_location(&location),
            ),
            Some(_) => {}
        }
    }

    fn check_table(&mut self, table: &TableType, what: &str, location: Option<&str>) {
        self.table_count += 1;
        let location = location.map_or_else(|| what.to_owned(), str::to_owned);
        let limits = self.limits;
        if table.initial > limits.max_initial_table_elements {
            self.findings.push(
                Finding::new(
                    &rules::WASM_TABLE_INITIAL_OVER_LIMIT,
                    format!(
                        "{what} starts with {} elements; the limit is {}",
                        table.initial, limits.max_initial_table_elements
                    ),
                )
                .with_location(&location),
            );
        }
        match table.maximum {
            None => self.findings.push(
                Finding::new(
                    &rules::WASM_TABLE_UNBOUNDED,
                    format!("{what} declares no maximum size"),
                )
                .with_location(&location),
            ),
            Some(maximum) if maximum > limits.max_table_elements => self.findings.push(
                Finding::new(
                    &rules::WASM_TABLE_MAXIMUM_OVER_LIMIT,
                    format!(
                        "{what} may grow to {maximum} elements; the limit is {}",
                        limits.max_table_elements
                    ),
                )
                .with_location(&location),
            ),
            Some(_) => {}
        }
    }

    fn data_segment(&mut self, index: usize, data: Data<'a>) {
        let contents = data.data;
        let module_offset = data.range.end - contents.len();
        self.data_bytes += contents.len() as u64;
        let location = |range: &Range<usize>| {
            format!(
                "data segment {index} +{:#x} (module offset {:#x})",
                range.start,
                module_offset + range.start
            )
        };

        let (regions, max_entropy) = high_entropy_regions(
            contents,
            self.limits.high_entropy_min_len,
            self.limits.high_entropy_bits,
        );
        self.max_window_entropy = self.max_window_entropy.max(max_entropy);
        for region in regions {
            let entropy = shannon_entropy(&contents[region.clone()]);
            self.findings.push(
                Finding::new(
                    &rules::WASM_HIGH_ENTROPY_DATA,
                    format!(
                        "{} of data with {:.2} bits of entropy per byte: compressed or \
                         encrypted content",
                        human_bytes(region.len() as u64),
                        entropy
                    ),
                )
                .with_evidence_bytes(&contents[region.start..region.end.min(region.start + 32)])
                .with_location(location(&region)),
            );
        }

        let mut found = Vec::new();
        find_indicators(contents, self.limits, |indicator| found.push(indicator));
        for indicator in found {
            let text = &contents[indicator.range.clone()];
            let remembered = self.seen_strings.len() < MAX_REMEMBERED_STRINGS;
            if remembered && !self.seen_strings.insert((indicator.kind, text)) {
                continue;
            }
            let (rule, severity, what) = indicator_rule(indicator.kind);
            *self.string_counts.entry(rule.id).or_default() += 1;
            if !self.findings.wants(rule, severity) {
                self.findings.count_omitted(rule);
                continue;
            }
            self.findings.push(
                Finding::new(rule, format!("{what} in a data segment"))
                    .with_severity(severity)
                    .with_evidence_bytes(text)
                    .with_location(location(&indicator.range)),
            );
        }
    }

    /// Findings and metrics about the module as a whole.
    fn finish(self) {
        let Self {
            declared,
            findings,
            metrics,
            valid,
            types,
            function_types,
            imports_by_module,
            import_count,
            unknown_modules,
            used,
            undeclared,
            exports,
            memory_count,
            table_count,
            data_segments,
            data_bytes,
            max_window_entropy,
            custom_sections,
            string_counts,
            ..
        } = self;

        if import_count > 0 {
            let summary = imports_by_module
                .iter()
                .map(|(module, names)| format!("{module} ({})", names.len()))
                .collect::<Vec<_>>()
                .join(", ");
            let listing = imports_by_module
                .iter()
                .map(|(module, names)| format!("{module}: {}", names.join(" ")))
                .collect::<Vec<_>>()
                .join("; ");
            findings.push(
                Finding::new(
                    &rules::WASM_IMPORTS,
                    format!("imports {import_count} items: {summary}"),
                )
                .with_evidence(listing),
            );
        }
        if !exports.is_empty() {
            let names = exports.iter().map(|e| e.name).collect::<Vec<_>>().join(" ");
            findings.push(
                Finding::new(
                    &rules::WASM_EXPORTS,
                    format!("exports {} items", exports.len()),
                )
                .with_evidence(names),
            );
        }

        for (module, unknown) in &unknown_modules {
            findings.push(
                Finding::new(
                    &rules::WASM_UNKNOWN_IMPORT_NAMESPACE,
                    format!(
                        "imports {} item(s) from `{module}`, which is not a module of the plugin \
                         ABI; the module was built for another host",
                        unknown.names.len()
                    ),
                )
                .with_evidence(
                    unknown
                        .names
                        .iter()
                        .map(|name| format!("{module}.{name}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                )
                .with_location(format!("module offset {:#x}", unknown.first_offset)),
            );
        }
        for (capability, imports) in &undeclared {
            findings.push(
                Finding::new(
                    &rules::WASM_UNDECLARED_CAPABILITY,
                    format!(
                        "imports host functions of capability `{capability}`, which the \
                         manifest does not declare"
                    ),
                )
                .with_evidence(imports.join(" ")),
            );
        }
        // Imports are only complete once the whole module has been read.
        let unused = declared.iter().filter(|c| valid && !used.contains(c));
        for capability in unused {
            findings.push(Finding::new(
                &rules::WASM_UNUSED_CAPABILITY,
                format!(
                    "the manifest declares `{capability}`, but no import of the module uses it"
                ),
            ));
        }
        if valid {
            check_exports(&exports, &types, &function_types, findings);
        }

        metrics.insert("wasm.valid".into(), json!(valid));
        metrics.insert("wasm.imports.count".into(), json!(import_count));
        let imports = imports_by_module
            .iter()
            .flat_map(|(module, names)| names.iter().map(move |name| format!("{module}.{name}")));
        metrics.insert("wasm.imports".into(), name_list(imports));
        metrics.insert("wasm.exports.count".into(), json!(exports.len()));
        metrics.insert(
            "wasm.exports".into(),
            name_list(exports.iter().map(|e| e.name)),
        );
        metrics.insert(
            "wasm.capabilities.used".into(),
            json!(used.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
        );
        metrics.insert("wasm.memories".into(), json!(memory_count));
        metrics.insert("wasm.tables".into(), json!(table_count));
        metrics.insert("wasm.data.segments".into(), json!(data_segments));
        metrics.insert("wasm.data.bytes".into(), json!(data_bytes));
        metrics.insert(
            "wasm.entropy.data.max_window".into(),
            json!(round3(max_window_entropy)),
        );
        metrics.insert(
            "wasm.custom_sections".into(),
            json!(
                custom_sections
                    .iter()
                    .map(|(name, size)| {
                        json!({ "name": bounded_text(name, MAX_METRIC_NAME_BYTES), "bytes": size })
                    })
                    .collect::<Vec<_>>()
            ),
        );
        for (rule, count) in string_counts {
            metrics.insert(format!("{rule}.distinct"), json!(count));
        }
    }
}

/// A function body waiting for validation.
type PendingFunction<'a> = (FuncToValidate<ValidatorResources>, FunctionBody<'a>);

/// Validates function bodies, in parallel when there are enough bytes of them, and returns
/// the error at the lowest offset.
///
/// Bodies are independent once the module's other sections are validated, which is why
/// wasmparser hands them out separately; validating them is most of the cost of a scan.
fn validate_functions(functions: Vec<PendingFunction<'_>>) -> Option<BinaryReaderError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_VALIDATION_THREADS);
    let total: usize = functions.iter().map(|(_, body)| body.range().len()).sum();
    if threads < 2 || total < PARALLEL_VALIDATION_BYTES {
        return validate_in_order(functions);
    }
    let target = total.div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut chunk = Vec::new();
    let mut size = 0;
    for function in functions {
        size += function.1.range().len();
        chunk.push(function);
        if size >= target {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || validate_in_order(chunk)))
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .min_by_key(BinaryReaderError::offset)
    })
}

/// Validates function bodies one after the other, stopping at the first error.
fn validate_in_order(functions: Vec<PendingFunction<'_>>) -> Option<BinaryReaderError> {
    let mut allocations = FuncValidatorAllocations::default();
    for (function, body) in functions {
        let mut validator = function.into_validator(allocations);
        if let Err(error) = validator.validate(&body) {
            return Some(error);
        }
        allocations = validator.into_allocations();
    }
    None
}

/// A list metric of names from the module: at most [`MAX_METRIC_LIST`] of them, each
/// bounded and sanitised like finding text.
fn name_list<S: AsRef<str>>(names: impl Iterator<Item = S>) -> serde_json::Value {
    json!(
        names
            .take(MAX_METRIC_LIST)
            .map(|name| bounded_text(name.as_ref(), MAX_METRIC_NAME_BYTES))
            .collect::<Vec<_>>()
    )
}

/// Checks the exports the ABI defines.
fn check_exports(
    exports: &[Export<'_>],
    types: &[Option<FuncType>],
    function_types: &[u32],
    findings: &mut FindingCollector,
) {
    for expected in GUEST_EXPORTS {
        let Some(export) = exports.iter().find(|e| e.name == expected.name) else {
            if expected.required {
                findings.push(
                    Finding::new(
                        &rules::ABI_MISSING_EXPORT,
                        format!(
                            "the module does not export `{}`, which the plugin ABI requires: {}",
                            expected.name, expected.summary
                        ),
                    )
                    .with_evidence(expected.name),
                );
            }
            continue;
        };
        let problem = match expected.kind {
            GuestExportKind::Memory if export.kind == ExternalKind::Memory => None,
            GuestExportKind::Memory => {
                Some(format!("is a {}, not a memory", external_kind(export.kind)))
            }
            GuestExportKind::Function(signature) => {
                if export.kind != ExternalKind::Func {
                    Some(format!(
                        "is a {}, not a function {signature}",
                        external_kind(export.kind)
                    ))
                } else {
                    let actual = function_types
                        .get(export.index as usize)
                        .and_then(|&type_index| types.get(type_index as usize))
                        .and_then(Option::as_ref);
                    match actual {
                        Some(actual) if signature_matches(&signature, actual) => None,
                        Some(actual) => Some(format!(
                            "has type {}, but the ABI defines {signature}",
                            describe(actual)
                        )),
                        None => Some("has no function type".to_owned()),
                    }
                }
            }
        };
        if let Some(problem) = problem {
            findings.push(
                Finding::new(
                    &rules::ABI_EXPORT_SIGNATURE_MISMATCH,
                    format!("the export `{}` {problem}", expected.name),
                )
                .with_evidence(expected.name),
            );
        }
    }
}

/// Maximal regions of `data` in which every `window`-byte window (stepping a quarter
/// window) has more than `threshold` bits of entropy per byte, and the highest window
/// entropy seen. Data shorter than a window has no regions and its own entropy as maximum.
fn high_entropy_regions(data: &[u8], window: usize, threshold: f64) -> (Vec<Range<usize>>, f64) {
    let window = window.max(1);
    if data.len() < window {
        return (Vec::new(), shannon_entropy(data));
    }
    let step = (window / 4).max(1);
    let mut counts = [0u32; 256];
    for &byte in &data[..window] {
        counts[usize::from(byte)] += 1;
    }
    let mut regions: Vec<Range<usize>> = Vec::new();
    let mut max_entropy: f64 = 0.0;
    let mut start = 0;
    loop {
        let entropy = entropy_of_counts(&counts, window);
        max_entropy = max_entropy.max(entropy);
        if entropy > threshold {
            let range = start..start + window;
            match regions.last_mut() {
                Some(last) if last.end >= range.start => last.end = range.end,
                _ => regions.push(range),
            }
        }
        let next = (start + step).min(data.len() - window);
        if next == start {
            break;
        }
        for &byte in &data[start..next] {
            counts[usize::from(byte)] -= 1;
        }
        for &byte in &data[start + window..next + window] {
            counts[usize::from(byte)] += 1;
        }
        start = next;
    }
    (regions, max_entropy)
}

fn entropy_of_counts(counts: &[u32; 256], total: usize) -> f64 {
    let total = total as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum()
}

fn indicator_rule(kind: IndicatorKind) -> (&'static Rule, Severity, &'static str) {
    match kind {
        IndicatorKind::Url => (&rules::WASM_STRINGS_URL, Severity::Low, "a URL"),
        IndicatorKind::Ipv4 { public: true } => (
            &rules::WASM_STRINGS_IPV4,
            Severity::Medium,
            "a public IPv4 address",
        ),
        IndicatorKind::Ipv4 { public: false } => (
            &rules::WASM_STRINGS_IPV4,
            Severity::Low,
            "a non-public IPv4 address",
        ),
        IndicatorKind::Domain => (&rules::WASM_STRINGS_DOMAIN, Severity::Low, "a domain name"),
        IndicatorKind::Base64 => (
            &rules::WASM_STRINGS_BASE64,
            Severity::Low,
            "a long base64 blob",
        ),
        IndicatorKind::Hex => (
            &rules::WASM_STRINGS_HEX_SECRET,
            Severity::Low,
            "a long hexadecimal string",
        ),
        IndicatorKind::PrivateKey => (
            &rules::WASM_STRINGS_PRIVATE_KEY,
            Severity::Medium,
            "a PEM private key",
        ),
        IndicatorKind::AccessKey => (
            &rules::WASM_STRINGS_ACCESS_KEY,
            Severity::Medium,
            "a service access key",
        ),
    }
}

fn signature_matches(expected: &Signature, actual: &FuncType) -> bool {
    types_match(expected.params, actual.params()) && types_match(expected.results, actual.results())
}

fn types_match(expected: &[abi::AbiType], actual: &[ValType]) -> bool {
    expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(expected, actual)| {
            matches!(
                (expected, actual),
                (abi::AbiType::I32, ValType::I32) | (abi::AbiType::I64, ValType::I64)
            )
        })
}

/// `(i32, f64) -> (i64)`, in the notation of [`Signature`]'s `Display`.
fn describe(function: &FuncType) -> String {
    let mut out = String::new();
    for (list, last) in [(function.params(), false), (function.results(), true)] {
        out.push('(');
        for (at, ty) in list.iter().enumerate() {
            if at > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{ty}");
        }
        out.push(')');
        if !last {
            out.push_str(" -> ");
        }
    }
    out
}

fn import_kind(ty: &TypeRef) -> &'static str {
    match ty {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => "function",
        TypeRef::Table(_) => "table",
        TypeRef::Memory(_) => "memory",
        TypeRef::Global(_) => "global",
        TypeRef::Tag(_) => "tag",
    }
}

fn external_kind(kind: ExternalKind) -> &'static str {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => "function",
        ExternalKind::Table => "table",
        ExternalKind::Memory => "memory",
        ExternalKind::Global => "global",
        ExternalKind::Tag => "tag",
    }
}

/// `1.5 MiB`-style sizes for messages.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use plugstore_format::abi::DISABLED_WASM_FEATURES;

    use super::*;

    #[test]
    fn features_are_webassembly_2_without_externref() {
        assert_eq!(
            abi_features(),
            WasmFeatures::WASM2.difference(WasmFeatures::GC_TYPES)
        );
        for (feature, _) in DISABLED_WASM_FEATURES {
            assert!(
                !abi_features().intersects(wasmparser_features(*feature)),
                "{feature}"
            );
        }
    }

    #[test]
    fn entropy_regions_merge_overlapping_windows() {
        let mut data = vec![b'a'; 16 * 1024];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for byte in &mut data[4096..12288] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let (regions, max) = high_entropy_regions(&data, 4096, 7.5);
        assert_eq!(regions.len(), 1);
        let region = &regions[0];
        assert!(region.start >= 3072 && region.end <= 13312, "{region:?}");
        assert!(region.len() >= 4096);
        assert!(max > 7.9);
        let (regions, max) = high_entropy_regions(b"short", 4096, 7.5);
        assert!(regions.is_empty() && max < 3.0);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(256 << 20), "256.0 MiB");
    }
}
