//! The plugin ABI: what a WebAssembly plugin exports, what the host lets it import, and the
//! WebAssembly features it may use.
//!
//! This module is the single definition of the contract between a `kind = "wasm"` plugin and
//! the host application. The host client provides exactly these imports, the scanner checks
//! modules against them, and `docs/src/plugin-abi.md` explains them to plugin authors; a
//! change here is a change of the ABI.
//!
//! # Shape
//!
//! - **Small.** A plugin is a core WebAssembly module (not a component) that exports its
//!   linear memory, an allocator and one entry point that takes bytes and returns bytes
//!   ([`GUEST_EXPORTS`]). What the bytes mean is between the plugin and its host
//!   application.
//! - **Capability-scoped.** Every host import lives in a module named after the capability
//!   that grants it (`plugstore:fs`, `plugstore:http`, …; [`HOST_MODULES`]). Importing a
//!   function is therefore a static, checkable claim on a capability: the scanner compares the
//!   imports with `plugin.capabilities`, and a host refuses to instantiate a module that
//!   imports a function whose capability it did not grant. Calls are checked again at run
//!   time (scopes such as which directory or which host names are the host's policy).
//! - **Versioned.** A plugin states the ABI it was built for through
//!   `plugstore_abi_version`; the host refuses versions it does not implement. Within one
//!   version, functions are only ever added (never changed or removed), so a plugin built for
//!   version 1 keeps working with every host that implements version 1. An incompatible
//!   change bumps [`ABI_VERSION`], and hosts keep implementing older versions for as long as
//!   published plugins use them.
//!
//! # Conventions
//!
//! All pointers are offsets into the plugin's exported `memory`, as `i32`. Text is UTF-8,
//! passed as `(ptr, len)`. Host functions that produce data write into a buffer the plugin
//! provides and return an `i64`: a non-negative value is the *full* length of the result
//! (when it exceeds the buffer, only the first `buf_len` bytes were written, and the plugin
//! may call again with a larger buffer); a negative value is a [`HostErrorCode`]. Structured
//! requests and responses (HTTP, process, dialog) are JSON, described in the plugin ABI page.
//!
//! # WASI
//!
//! Toolchains targeting `wasm32-wasip1` import `wasi_snapshot_preview1` even for code that
//! never touches a file. The host provides a restricted subset of it to every plugin (stdout
//! and stderr, clocks, randomness, an empty environment and argument list, exit) and the rest
//! only under the capability that the same operation needs through the `plugstore:` modules:
//! file access under `fs.read`/`fs.write`, socket calls under `net.socket`. Nothing is
//! preopened unless the host grants a file capability, so the file functions fail cleanly
//! when called without one.

use std::fmt;

use crate::manifest::Capability;

/// The ABI version this crate describes, returned by a plugin's `plugstore_abi_version`.
pub const ABI_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Types and signatures
// ---------------------------------------------------------------------------------------------

/// A WebAssembly value type that appears in the ABI.
///
/// The ABI uses integers only: pointers and lengths are `i32`, results that combine a length
/// with an error code are `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbiType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

impl AbiType {
    /// The WebAssembly text-format name (`i32`, `i64`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
        }
    }
}

impl fmt::Display for AbiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exact WebAssembly function type of an import or export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Parameter types, in order.
    pub params: &'static [AbiType],
    /// Result types, in order.
    pub results: &'static [AbiType],
}

impl fmt::Display for Signature {
    /// Formats as `(i32, i32) -> i64`; no results is `-> ()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_types(f, self.params)?;
        f.write_str(" -> ")?;
        write_types(f, self.results)
    }
}

fn write_types(f: &mut fmt::Formatter<'_>, types: &[AbiType]) -> fmt::Result {
    f.write_str("(")?;
    for (at, ty) in types.iter().enumerate() {
        if at > 0 {
            f.write_str(", ")?;
        }
        f.write_str(ty.as_str())?;
    }
    f.write_str(")")
}

use AbiType::{I32, I64};

/// Shorthand for the signature tables below.
const fn sig(params: &'static [AbiType], results: &'static [AbiType]) -> Signature {
    Signature { params, results }
}

// ---------------------------------------------------------------------------------------------
// Guest exports
// ---------------------------------------------------------------------------------------------

/// Name of the plugin's exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// Name of the export returning the plugin's ABI version.
pub const EXPORT_ABI_VERSION: &str = "plugstore_abi_version";
/// Name of the plugin's allocator export.
pub const EXPORT_ALLOC: &str = "plugstore_alloc";
/// Name of the plugin's initialisation export.
pub const EXPORT_INIT: &str = "plugstore_init";
/// Name of the plugin's entry point.
pub const EXPORT_HANDLE: &str = "plugstore_handle";
/// Name of the WASI reactor initialiser that toolchains emit for libraries.
pub const EXPORT_WASI_INITIALIZE: &str = "_initialize";

/// What kind of item an export must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExportKind {
    /// A linear memory (32-bit, not shared).
    Memory,
    /// A function with exactly this signature.
    Function(Signature),
}

/// An export the host looks for in a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExport {
    /// Export name.
    pub name: &'static str,
    /// What it must be.
    pub kind: GuestExportKind,
    /// Whether a plugin without it is refused. An optional export, when present, must still
    /// have the stated kind and signature.
    pub required: bool,
    /// What the host does with it, for documentation and findings.
    pub summary: &'static str,
}

/// Every export with a meaning in the ABI, in the order the host uses them.
///
/// The host instantiates the module, calls `_initialize` if present, checks
/// `plugstore_abi_version`, calls `plugstore_init` if present, then calls `plugstore_handle`
/// once per request: it obtains an input buffer from `plugstore_alloc`, copies the input
/// there, and reads the output from the pointer and length packed in the result. Other
/// exports are allowed and ignored.
pub const GUEST_EXPORTS: &[GuestExport] = &[
    GuestExport {
        name: EXPORT_MEMORY,
        kind: GuestExportKind::Memory,
        required: true,
        summary: "the linear memory that every pointer of the ABI points into",
    },
    GuestExport {
        name: EXPORT_WASI_INITIALIZE,
        kind: GuestExportKind::Function(sig(&[], &[])),
        required: false,
        summary: "WASI reactor initialiser (static constructors); called first if present",
    },
    GuestExport {
        name: EXPORT_ABI_VERSION,
        kind: GuestExportKind::Function(sig(&[], &[I32])),
        required: true,
        summary: "returns the ABI version the plugin was built for (1)",
    },
    GuestExport {
        name: EXPORT_ALLOC,
        kind: GuestExportKind::Function(sig(&[I32], &[I32])),
        required: true,
        summary: "allocates `len` bytes of plugin memory for input and returns their address, \
                  or 0 when it cannot",
    },
    GuestExport {
        name: EXPORT_INIT,
        kind: GuestExportKind::Function(sig(&[], &[I32])),
        required: false,
        summary: "one-time initialisation after instantiation; returns 0 on success, \
                  anything else refuses to load",
    },
    GuestExport {
        name: EXPORT_HANDLE,
        kind: GuestExportKind::Function(sig(&[I32, I32], &[I64])),
        required: true,
        summary: "handles one request of `len` bytes at `ptr`; returns `(out_ptr << 32) | \
                  out_len`, read as an unsigned 64-bit value",
    },
];

/// The ABI's definition of the export `name`, if it has one.
pub fn guest_export(name: &str) -> Option<&'static GuestExport> {
    GUEST_EXPORTS.iter().find(|export| export.name == name)
}

/// Packs the result of `plugstore_handle` as a plugin returns it.
pub const fn pack_handle_result(out_ptr: u32, out_len: u32) -> i64 {
    (((out_ptr as u64) << 32) | out_len as u64) as i64
}

/// Unpacks the result of `plugstore_handle` into `(out_ptr, out_len)`.
pub const fn unpack_handle_result(result: i64) -> (u32, u32) {
    let bits = result as u64;
    ((bits >> 32) as u32, bits as u32)
}

// ---------------------------------------------------------------------------------------------
// Host imports
// ---------------------------------------------------------------------------------------------

/// Import module of `log` (capability `log`).
pub const MODULE_LOG: &str = "plugstore:log";
/// Import module of file access (capabilities `fs.read`, `fs.write`).
pub const MODULE_FS: &str = "plugstore:fs";
/// Import module of HTTP(S) requests (capability `net.http`).
pub const MODULE_HTTP: &str = "plugstore:http";
/// Import module of raw sockets (capability `net.socket`).
pub const MODULE_SOCKET: &str = "plugstore:socket";
/// Import module of the clipboard (capability `clipboard`).
pub const MODULE_CLIPBOARD: &str = "plugstore:clipboard";
/// Import module of process creation (capability `process.spawn`).
pub const MODULE_PROCESS: &str = "plugstore:process";
/// Import module of environment variables (capability `env.read`).
pub const MODULE_ENV: &str = "plugstore:env";
/// Import module of user dialogs (capability `ui.dialog`).
pub const MODULE_UI: &str = "plugstore:ui";
/// The WASI preview 1 module, of which hosts provide a restricted subset.
pub const MODULE_WASI: &str = "wasi_snapshot_preview1";

/// When a host provides an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// To every plugin; the function cannot reach anything outside the plugin's own sandbox.
    Always,
    /// Only to plugins granted this capability; importing the function claims it.
    Capability(Capability),
    /// Never: a module importing it cannot be instantiated.
    Never,
}

/// A function of a host import module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFunction {
    /// Import field name.
    pub name: &'static str,
    /// Exact WebAssembly type; a module importing it with another type is refused.
    pub signature: Signature,
    /// Who gets it.
    pub availability: Availability,
    /// What it does, for documentation and findings.
    pub summary: &'static str,
}

/// A host import module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostModule {
    /// Import module name.
    pub name: &'static str,
    /// Its functions. A function not listed is not provided.
    pub functions: &'static [HostFunction],
}

const fn host(
    name: &'static str,
    signature: Signature,
    availability: Availability,
    summary: &'static str,
) -> HostFunction {
    HostFunction {
        name,
        signature,
        availability,
        summary,
    }
}

use Availability::{Always, Never};

const LOG: Availability = Availability::Capability(Capability::Log);
const FS_READ: Availability = Availability::Capability(Capability::FsRead);
const FS_WRITE: Availability = Availability::Capability(Capability::FsWrite);
const NET_HTTP: Availability = Availability::Capability(Capability::NetHttp);
const NET_SOCKET: Availability = Availability::Capability(Capability::NetSocket);
const CLIPBOARD: Availability = Availability::Capability(Capability::Clipboard);
const PROCESS_SPAWN: Availability = Availability::Capability(Capability::ProcessSpawn);
const ENV_READ: Availability = Availability::Capability(Capability::EnvRead);
const UI_DIALOG: Availability = Availability::Capability(Capability::UiDialog);

/// `(ptr, len, buf_ptr, buf_len) -> i64`: a request in, a result written to a buffer.
const REQUEST_TO_BUFFER: Signature = sig(&[I32, I32, I32, I32], &[I64]);
/// `(ptr, len) -> i64`.
const BYTES_IN: Signature = sig(&[I32, I32], &[I64]);
/// A WASI call on `n` `i32` arguments returning an errno.
const WASI_ERRNO_1: Signature = sig(&[I32], &[I32]);
const WASI_ERRNO_2: Signature = sig(&[I32, I32], &[I32]);
const WASI_ERRNO_3: Signature = sig(&[I32, I32, I32], &[I32]);
const WASI_ERRNO_4: Signature = sig(&[I32, I32, I32, I32], &[I32]);
const WASI_ERRNO_5: Signature = sig(&[I32, I32, I32, I32, I32], &[I32]);
const WASI_ERRNO_6: Signature = sig(&[I32, I32, I32, I32, I32, I32], &[I32]);
const WASI_ERRNO_7: Signature = sig(&[I32, I32, I32, I32, I32, I32, I32], &[I32]);

/// Every host import module and function of ABI version 1.
pub const HOST_MODULES: &[HostModule] = &[
    HostModule {
        name: MODULE_LOG,
        functions: &[host(
            "log",
            sig(&[I32, I32, I32], &[]),
            LOG,
            "writes the UTF-8 message (ptr, len) to the host's log at `level` (see LogLevel)",
        )],
    },
    HostModule {
        name: MODULE_FS,
        functions: &[
            host(
                "read_file",
                REQUEST_TO_BUFFER,
                FS_READ,
                "reads the file at the UTF-8 path into the buffer; returns its full length",
            ),
            host(
                "write_file",
                REQUEST_TO_BUFFER,
                FS_WRITE,
                "creates or replaces the file at the UTF-8 path with the data; returns the \
                 number of bytes written",
            ),
        ],
    },
    HostModule {
        name: MODULE_HTTP,
        functions: &[host(
            "fetch",
            REQUEST_TO_BUFFER,
            NET_HTTP,
            "performs the JSON-described HTTP request and writes the JSON response into the \
             buffer; returns the response's full length",
        )],
    },
    HostModule {
        name: MODULE_SOCKET,
        functions: &[
            host(
                "connect",
                BYTES_IN,
                NET_SOCKET,
                "opens a connection to the UTF-8 address `tcp://host:port` or \
                 `udp://host:port`; returns a socket handle",
            ),
            host(
                "send",
                sig(&[I32, I32, I32], &[I64]),
                NET_SOCKET,
                "sends (ptr, len) on the socket handle; returns the bytes sent",
            ),
            host(
                "recv",
                sig(&[I32, I32, I32], &[I64]),
                NET_SOCKET,
                "receives into (buf_ptr, buf_len) from the socket handle; returns the bytes \
                 received, 0 at end of stream",
            ),
            host(
                "close",
                sig(&[I32], &[I64]),
                NET_SOCKET,
                "closes the socket handle",
            ),
        ],
    },
    HostModule {
        name: MODULE_CLIPBOARD,
        functions: &[
            host(
                "read",
                sig(&[I32, I32], &[I64]),
                CLIPBOARD,
                "writes the clipboard's text into (buf_ptr, buf_len); returns its full length",
            ),
            host(
                "write",
                BYTES_IN,
                CLIPBOARD,
                "replaces the clipboard's text with the UTF-8 (ptr, len)",
            ),
        ],
    },
    HostModule {
        name: MODULE_PROCESS,
        functions: &[host(
            "spawn",
            REQUEST_TO_BUFFER,
            PROCESS_SPAWN,
            "runs the JSON-described program to completion and writes the JSON result \
             (exit code, output) into the buffer; returns the result's full length",
        )],
    },
    HostModule {
        name: MODULE_ENV,
        functions: &[host(
            "get",
            REQUEST_TO_BUFFER,
            ENV_READ,
            "writes the value of the environment variable named by (ptr, len) into the \
             buffer; returns its full length",
        )],
    },
    HostModule {
        name: MODULE_UI,
        functions: &[host(
            "dialog",
            BYTES_IN,
            UI_DIALOG,
            "shows the JSON-described dialog and waits; returns the index of the button chosen",
        )],
    },
    HostModule {
        name: MODULE_WASI,
        functions: WASI_FUNCTIONS,
    },
];

/// `wasi_snapshot_preview1`, function by function.
///
/// The always-available subset is what language runtimes need to start and print: stdout and
/// stderr (other descriptors fail with `EBADF`), clocks, randomness, an empty argument list
/// and environment (real variables only through `plugstore:env` with `env.read`), sleeping
/// through clock subscriptions, and exit. Descriptor housekeeping that libc calls on stdio
/// (`fd_close`, `fd_seek`, `fd_fdstat_get`, `fd_prestat_*`) is also always there: without a
/// file capability nothing is preopened, so it only ever sees stdio.
///
/// Everything that reads files or directories needs `fs.read` (`path_open` too: opening for
/// writing additionally needs `fs.write`, checked on each call from its flags and rights);
/// everything that changes them needs `fs.write`; the preview 1 socket calls need
/// `net.socket`. `proc_raise` is never provided.
const WASI_FUNCTIONS: &[HostFunction] = &[
    host(
        "args_get",
        WASI_ERRNO_2,
        Always,
        "the argument list, always empty",
    ),
    host(
        "args_sizes_get",
        WASI_ERRNO_2,
        Always,
        "sizes of the argument list, always 0",
    ),
    host(
        "environ_get",
        WASI_ERRNO_2,
        Always,
        "the environment, always empty",
    ),
    host(
        "environ_sizes_get",
        WASI_ERRNO_2,
        Always,
        "sizes of the environment, always 0",
    ),
    host("clock_res_get", WASI_ERRNO_2, Always, "clock resolution"),
    host(
        "clock_time_get",
        sig(&[I32, I64, I32], &[I32]),
        Always,
        "current time",
    ),
    host("random_get", WASI_ERRNO_2, Always, "random bytes"),
    host(
        "proc_exit",
        sig(&[I32], &[]),
        Always,
        "ends the plugin instance (the host survives)",
    ),
    host("sched_yield", sig(&[], &[I32]), Always, "no-op"),
    host(
        "poll_oneoff",
        WASI_ERRNO_4,
        Always,
        "sleeps on clock subscriptions; descriptor subscriptions fail",
    ),
    host(
        "fd_write",
        WASI_ERRNO_4,
        Always,
        "writes to stdout or stderr (forwarded to the host's log, rate-limited); files need \
         fs.write",
    ),
    host(
        "fd_close",
        WASI_ERRNO_1,
        Always,
        "closes a descriptor the plugin holds",
    ),
    host(
        "fd_seek",
        sig(&[I32, I64, I32, I32], &[I32]),
        Always,
        "seeks a descriptor the plugin holds (stdio: ESPIPE)",
    ),
    host(
        "fd_fdstat_get",
        WASI_ERRNO_2,
        Always,
        "descriptor flags and rights",
    ),
    host(
        "fd_prestat_get",
        WASI_ERRNO_2,
        Always,
        "preopened directories (none without a file capability)",
    ),
    host(
        "fd_prestat_dir_name",
        WASI_ERRNO_3,
        Always,
        "name of a preopened directory",
    ),
    host(
        "fd_read",
        WASI_ERRNO_4,
        FS_READ,
        "reads an open file (stdin is empty)",
    ),
    host(
        "fd_pread",
        sig(&[I32, I32, I32, I64, I32], &[I32]),
        FS_READ,
        "reads an open file at an offset",
    ),
    host(
        "fd_readdir",
        sig(&[I32, I32, I32, I64, I32], &[I32]),
        FS_READ,
        "lists an open directory",
    ),
    host(
        "fd_filestat_get",
        WASI_ERRNO_2,
        FS_READ,
        "metadata of an open file",
    ),
    host("fd_tell", WASI_ERRNO_2, FS_READ, "offset of an open file"),
    host(
        "fd_advise",
        sig(&[I32, I64, I64, I32], &[I32]),
        FS_READ,
        "access-pattern advice for an open file",
    ),
    host(
        "fd_fdstat_set_flags",
        WASI_ERRNO_2,
        FS_READ,
        "changes the flags of an open file",
    ),
    host(
        "fd_fdstat_set_rights",
        sig(&[I32, I64, I64], &[I32]),
        FS_READ,
        "drops rights of an open file",
    ),
    host(
        "fd_renumber",
        WASI_ERRNO_2,
        FS_READ,
        "moves an open descriptor",
    ),
    host(
        "path_open",
        sig(&[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
        FS_READ,
        "opens a file below a preopened directory; write access also needs fs.write",
    ),
    host(
        "path_filestat_get",
        WASI_ERRNO_5,
        FS_READ,
        "metadata of a file by path",
    ),
    host(
        "path_readlink",
        WASI_ERRNO_6,
        FS_READ,
        "target of a symbolic link",
    ),
    host(
        "fd_pwrite",
        sig(&[I32, I32, I32, I64, I32], &[I32]),
        FS_WRITE,
        "writes an open file at an offset",
    ),
    host(
        "fd_allocate",
        sig(&[I32, I64, I64], &[I32]),
        FS_WRITE,
        "reserves space in an open file",
    ),
    host(
        "fd_datasync",
        WASI_ERRNO_1,
        FS_WRITE,
        "flushes an open file's data",
    ),
    host("fd_sync", WASI_ERRNO_1, FS_WRITE, "flushes an open file"),
    host(
        "fd_filestat_set_size",
        sig(&[I32, I64], &[I32]),
        FS_WRITE,
        "truncates or extends an open file",
    ),
    host(
        "fd_filestat_set_times",
        sig(&[I32, I64, I64, I32], &[I32]),
        FS_WRITE,
        "sets an open file's timestamps",
    ),
    host(
        "path_create_directory",
        WASI_ERRNO_3,
        FS_WRITE,
        "creates a directory",
    ),
    host(
        "path_filestat_set_times",
        sig(&[I32, I32, I32, I32, I64, I64, I32], &[I32]),
        FS_WRITE,
        "sets a file's timestamps by path",
    ),
    host("path_link", WASI_ERRNO_7, FS_WRITE, "creates a hard link"),
    host(
        "path_remove_directory",
        WASI_ERRNO_3,
        FS_WRITE,
        "removes an empty directory",
    ),
    host(
        "path_rename",
        WASI_ERRNO_6,
        FS_WRITE,
        "renames a file or directory",
    ),
    host(
        "path_symlink",
        WASI_ERRNO_5,
        FS_WRITE,
        "creates a symbolic link",
    ),
    host("path_unlink_file", WASI_ERRNO_3, FS_WRITE, "deletes a file"),
    host(
        "sock_accept",
        WASI_ERRNO_3,
        NET_SOCKET,
        "accepts a connection on a socket the host handed over",
    ),
    host(
        "sock_recv",
        WASI_ERRNO_6,
        NET_SOCKET,
        "receives from a socket",
    ),
    host("sock_send", WASI_ERRNO_5, NET_SOCKET, "sends on a socket"),
    host(
        "sock_shutdown",
        WASI_ERRNO_2,
        NET_SOCKET,
        "shuts a socket down",
    ),
    host(
        "proc_raise",
        WASI_ERRNO_1,
        Never,
        "signals do not exist in the sandbox",
    ),
];

/// How the host treats an import `(module, name)` of a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportClass {
    /// The host provides the function: to every plugin when `capability` is `None`, otherwise
    /// only to plugins granted `capability`. The import must have exactly `signature`.
    Provided {
        /// The capability the import claims, if any.
        capability: Option<Capability>,
        /// The required function type.
        signature: Signature,
    },
    /// A function of a known module that no host provides; the module cannot be instantiated.
    NotProvided {
        /// Its type in the module's specification.
        signature: Signature,
    },
    /// The module is one of [`HOST_MODULES`] but has no function of that name.
    UnknownFunction,
    /// The module is not one of [`HOST_MODULES`].
    UnknownModule,
}

/// Classifies a function import of a plugin by its module and field name.
///
/// Only function imports can be satisfied: the host provides no memories, tables, globals or
/// tags, so a non-function import of any module cannot be instantiated.
pub fn lookup_import(module: &str, name: &str) -> ImportClass {
    let Some(host_module) = host_module(module) else {
        return ImportClass::UnknownModule;
    };
    let Some(function) = host_module.functions.iter().find(|f| f.name == name) else {
        return ImportClass::UnknownFunction;
    };
    match function.availability {
        Availability::Always => ImportClass::Provided {
            capability: None,
            signature: function.signature,
        },
        Availability::Capability(capability) => ImportClass::Provided {
            capability: Some(capability),
            signature: function.signature,
        },
        Availability::Never => ImportClass::NotProvided {
            signature: function.signature,
        },
    }
}

/// The host module named `module`, if the ABI has one.
pub fn host_module(module: &str) -> Option<&'static HostModule> {
    HOST_MODULES.iter().find(|m| m.name == module)
}

/// The host functions a plugin granted `capability` may import (WASI functions included).
pub fn functions_for(
    capability: Capability,
) -> impl Iterator<Item = (&'static str, &'static HostFunction)> {
    HOST_MODULES.iter().flat_map(move |module| {
        module
            .functions
            .iter()
            .filter(move |f| f.availability == Availability::Capability(capability))
            .map(move |f| (module.name, f))
    })
}

// ---------------------------------------------------------------------------------------------
// Values passed through host calls
// ---------------------------------------------------------------------------------------------

/// Negative results of `plugstore:` host functions that return `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum HostErrorCode {
    /// The plugin was not granted the capability, or the host's policy refuses this use of
    /// it (a path outside the allowed directories, a host name not allowed, …).
    Denied = -1,
    /// An argument is invalid: a pointer or length outside memory, text that is not UTF-8,
    /// a malformed JSON request, an unknown handle.
    InvalidArgument = -2,
    /// The file, variable or resource does not exist.
    NotFound = -3,
    /// The request or result exceeds a host limit.
    TooLarge = -4,
    /// The operation failed in the host: an I/O error, a refused connection. An outcome of
    /// the operation itself (an HTTP 404, a non-zero exit status) is not an error; it is
    /// reported in the result.
    Failed = -5,
    /// The operation took longer than the host allows.
    TimedOut = -6,
    /// The host does not implement this operation on this platform.
    Unsupported = -7,
}

impl HostErrorCode {
    /// Every code, in numeric order from -1 down.
    pub const ALL: [HostErrorCode; 7] = [
        Self::Denied,
        Self::InvalidArgument,
        Self::NotFound,
        Self::TooLarge,
        Self::Failed,
        Self::TimedOut,
        Self::Unsupported,
    ];

    /// The value a host function returns.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The error a returned value stands for, if it is one.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|error| error.code() == code)
    }
}

/// The `level` argument of `plugstore:log.log`. Other values are logged as `Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum LogLevel {
    /// 0: something failed.
    Error = 0,
    /// 1: something looks wrong.
    Warn = 1,
    /// 2: normal operation.
    Info = 2,
    /// 3: detail for developers.
    Debug = 3,
    /// 4: very verbose detail.
    Trace = 4,
}

impl LogLevel {
    /// The level a plugin passed, with unknown values read as `Info`.
    pub const fn from_i32(level: i32) -> Self {
        match level {
            0 => Self::Error,
            1 => Self::Warn,
            3 => Self::Debug,
            4 => Self::Trace,
            _ => Self::Info,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebAssembly features
// ---------------------------------------------------------------------------------------------

/// A WebAssembly proposal that a host could enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WasmFeature {
    /// `mutable-global`: importing and exporting mutable globals.
    MutableGlobal,
    /// `nontrapping-float-to-int`: saturating float-to-int conversions.
    SaturatingFloatToInt,
    /// `sign-extension-ops`.
    SignExtension,
    /// `multi-value`: several results per function and block.
    MultiValue,
    /// `bulk-memory`: `memory.copy`, `memory.fill`, passive segments.
    BulkMemory,
    /// `reference-types`, restricted to `funcref`: several tables, `table.*` instructions.
    ReferenceTypes,
    /// `simd`: fixed-width 128-bit SIMD.
    Simd,
    /// `externref` and every other garbage-collected reference type.
    GcTypes,
    /// `threads`: shared memories and atomics.
    Threads,
    /// `memory64`: 64-bit memories and tables.
    Memory64,
    /// `multi-memory`: more than one memory.
    MultiMemory,
    /// `exception-handling` (and its legacy form).
    Exceptions,
    /// `gc`: structs, arrays and i31 references.
    Gc,
    /// `function-references`: typed function references.
    FunctionReferences,
    /// `tail-call`.
    TailCall,
    /// `relaxed-simd`.
    RelaxedSimd,
    /// `extended-const`.
    ExtendedConst,
    /// The component model (components rather than core modules).
    ComponentModel,
    /// `custom-page-sizes`.
    CustomPageSizes,
    /// `stack-switching`.
    StackSwitching,
    /// `wide-arithmetic`.
    WideArithmetic,
}

impl WasmFeature {
    /// The proposal's name, as the WebAssembly community group spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MutableGlobal => "mutable-global",
            Self::SaturatingFloatToInt => "nontrapping-float-to-int",
            Self::SignExtension => "sign-extension-ops",
            Self::MultiValue => "multi-value",
            Self::BulkMemory => "bulk-memory",
            Self::ReferenceTypes => "reference-types",
            Self::Simd => "simd",
            Self::GcTypes => "externref",
            Self::Threads => "threads",
            Self::Memory64 => "memory64",
            Self::MultiMemory => "multi-memory",
            Self::Exceptions => "exception-handling",
            Self::Gc => "gc",
            Self::FunctionReferences => "function-references",
            Self::TailCall => "tail-call",
            Self::RelaxedSimd => "relaxed-simd",
            Self::ExtendedConst => "extended-const",
            Self::ComponentModel => "component-model",
            Self::CustomPageSizes => "custom-page-sizes",
            Self::StackSwitching => "stack-switching",
            Self::WideArithmetic => "wide-arithmetic",
        }
    }

    /// Whether hosts enable it ([`ENABLED_WASM_FEATURES`]).
    pub fn is_enabled(self) -> bool {
        ENABLED_WASM_FEATURES.contains(&self)
    }
}

impl fmt::Display for WasmFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The features the host client enables on top of the WebAssembly MVP, and so the features the
/// scanner validates with: exactly WebAssembly 2.0, minus `externref`.
///
/// This is what current LLVM (and so Rust, C, C++, Zig) emits for `wasm32` by default, and
/// what Wasmtime compiles without runtime machinery beyond linear memory and tables.
pub const ENABLED_WASM_FEATURES: &[WasmFeature] = &[
    WasmFeature::MutableGlobal,
    WasmFeature::SaturatingFloatToInt,
    WasmFeature::SignExtension,
    WasmFeature::MultiValue,
    WasmFeature::BulkMemory,
    WasmFeature::ReferenceTypes,
    WasmFeature::Simd,
];

/// Features hosts leave disabled, each with the reason; a module that uses one is invalid.
pub const DISABLED_WASM_FEATURES: &[(WasmFeature, &str)] = &[
    (
        WasmFeature::GcTypes,
        "needs Wasmtime's garbage collector, a runtime component with its own attack surface \
         that no plugin needs; reference types are accepted with funcref only",
    ),
    (
        WasmFeature::Threads,
        "shared memory and atomics let a plugin run concurrently with itself, which defeats \
         per-call fuel and deadline accounting and brings timing side channels",
    ),
    (
        WasmFeature::Memory64,
        "a plugin never needs more than 4 GiB, and 64-bit memories need explicit bounds \
         checks instead of guard pages",
    ),
    (
        WasmFeature::MultiMemory,
        "the ABI passes pointers into one exported memory",
    ),
    (
        WasmFeature::Exceptions,
        "unwinding across the host boundary is not part of the ABI; errors are return values",
    ),
    (
        WasmFeature::Gc,
        "needs Wasmtime's garbage collector (see externref)",
    ),
    (
        WasmFeature::FunctionReferences,
        "typed references come with the GC proposals and are not needed by linear-memory \
         languages",
    ),
    (
        WasmFeature::TailCall,
        "not emitted by default by toolchains; kept out until a plugin needs it",
    ),
    (
        WasmFeature::RelaxedSimd,
        "results differ between hosts by design, so a scan would not predict a host's run",
    ),
    (
        WasmFeature::ExtendedConst,
        "not emitted by default by toolchains; kept out until a plugin needs it",
    ),
    (
        WasmFeature::ComponentModel,
        "plugins are core modules with this ABI, not components",
    ),
    (WasmFeature::CustomPageSizes, "still a proposal"),
    (WasmFeature::StackSwitching, "still a proposal"),
    (WasmFeature::WideArithmetic, "still a proposal"),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::manifest::KNOWN_CAPABILITIES;

    #[test]
    fn plugstore_imports_map_to_their_capabilities() {
        let cases = [
            (MODULE_LOG, "log", Capability::Log),
            (MODULE_FS, "read_file", Capability::FsRead),
            (MODULE_FS, "write_file", Capability::FsWrite),
            (MODULE_HTTP, "fetch", Capability::NetHttp),
            (MODULE_SOCKET, "connect", Capability::NetSocket),
            (MODULE_SOCKET, "send", Capability::NetSocket),
            (MODULE_SOCKET, "recv", Capability::NetSocket),
            (MODULE_CLIPBOARD, "read", Capability::Clipboard),
            (MODULE_CLIPBOARD, "write", Capability::Clipboard),
            (MODULE_PROCESS, "spawn", Capability::ProcessSpawn),
            (MODULE_ENV, "get", Capability::EnvRead),
            (MODULE_UI, "dialog", Capability::UiDialog),
        ];
        for (module, name, capability) in cases {
            assert!(
                matches!(lookup_import(module, name), ImportClass::Provided { capability: Some(c), .. } if c == capability),
                "{module}.{name}"
            );
        }
    }

    #[test]
    fn signatures_are_exact() {
        let ImportClass::Provided { signature, .. } = lookup_import(MODULE_LOG, "log") else {
            panic!("log is provided");
        };
        assert_eq!(signature.params, &[I32, I32, I32]);
        assert!(signature.results.is_empty());
        assert_eq!(signature.to_string(), "(i32, i32, i32) -> ()");
        let ImportClass::Provided { signature, .. } = lookup_import(MODULE_HTTP, "fetch") else {
            panic!("fetch is provided");
        };
        assert_eq!(signature.to_string(), "(i32, i32, i32, i32) -> (i64)");
        let ImportClass::Provided { signature, .. } = lookup_import(MODULE_WASI, "path_open")
        else {
            panic!("path_open is provided");
        };
        assert_eq!(signature.params.len(), 9);
        assert_eq!(signature.params[5], I64);
    }

    #[test]
    fn wasi_subset_needs_no_capability_and_the_rest_does() {
        for name in [
            "fd_write",
            "clock_time_get",
            "random_get",
            "proc_exit",
            "args_sizes_get",
            "args_get",
            "environ_sizes_get",
            "environ_get",
        ] {
            assert!(
                matches!(
                    lookup_import(MODULE_WASI, name),
                    ImportClass::Provided {
                        capability: None,
                        ..
                    }
                ),
                "{name}"
            );
        }
        for (name, capability) in [
            ("path_open", Capability::FsRead),
            ("fd_read", Capability::FsRead),
            ("fd_readdir", Capability::FsRead),
            ("path_unlink_file", Capability::FsWrite),
            ("fd_pwrite", Capability::FsWrite),
            ("sock_send", Capability::NetSocket),
            ("sock_accept", Capability::NetSocket),
        ] {
            assert!(
                matches!(lookup_import(MODULE_WASI, name), ImportClass::Provided { capability: Some(c), .. } if c == capability),
                "{name}"
            );
        }
        assert!(matches!(
            lookup_import(MODULE_WASI, "proc_raise"),
            ImportClass::NotProvided { .. }
        ));
    }

    #[test]
    fn wasi_preview1_is_covered_completely() {
        // The 46 functions of wasi_snapshot_preview1: each has a decision.
        assert_eq!(WASI_FUNCTIONS.len(), 46);
    }

    #[test]
    fn unknown_names_are_classified() {
        assert_eq!(
            lookup_import(MODULE_FS, "delete_file"),
            ImportClass::UnknownFunction
        );
        assert_eq!(
            lookup_import(MODULE_WASI, "sock_connect"),
            ImportClass::UnknownFunction
        );
        for module in [
            "env",
            "wasi_unstable",
            "wasi:sockets/tcp",
            "plugstore:net",
            "",
        ] {
            assert_eq!(
                lookup_import(module, "socket_connect"),
                ImportClass::UnknownModule,
                "{module}"
            );
        }
        // Names are case-sensitive, as in WebAssembly.
        assert_eq!(
            lookup_import("plugstore:LOG", "log"),
            ImportClass::UnknownModule
        );
    }

    #[test]
    fn table_is_well_formed() {
        let mut modules = HashSet::new();
        for module in HOST_MODULES {
            assert!(
                modules.insert(module.name),
                "duplicate module {}",
                module.name
            );
            assert!(!module.functions.is_empty(), "{}", module.name);
            let mut names = HashSet::new();
            for function in module.functions {
                assert!(
                    names.insert(function.name),
                    "duplicate {}.{}",
                    module.name,
                    function.name
                );
                assert!(!function.summary.is_empty());
                // Every host function returns at most one value.
                assert!(function.signature.results.len() <= 1);
            }
            if module.name != MODULE_WASI {
                // Each plugstore module belongs to capabilities, never to everyone.
                assert!(module.name.starts_with("plugstore:"));
                assert!(
                    module
                        .functions
                        .iter()
                        .all(|f| matches!(f.availability, Availability::Capability(_)))
                );
            }
        }
    }

    #[test]
    fn every_capability_has_an_import() {
        for capability in KNOWN_CAPABILITIES {
            assert!(
                functions_for(*capability).any(|(module, _)| module.starts_with("plugstore:")),
                "{capability}"
            );
        }
    }

    #[test]
    fn guest_exports() {
        let required: Vec<_> = GUEST_EXPORTS
            .iter()
            .filter(|e| e.required)
            .map(|e| e.name)
            .collect();
        assert_eq!(
            required,
            [
                EXPORT_MEMORY,
                EXPORT_ABI_VERSION,
                EXPORT_ALLOC,
                EXPORT_HANDLE
            ]
        );
        assert_eq!(
            guest_export(EXPORT_HANDLE).map(|e| e.kind),
            Some(GuestExportKind::Function(sig(&[I32, I32], &[I64])))
        );
        assert!(guest_export(EXPORT_INIT).is_some_and(|e| !e.required));
        assert_eq!(guest_export("main"), None);
    }

    #[test]
    fn handle_results_pack_and_unpack() {
        assert_eq!(pack_handle_result(0x10, 0x20), 0x10_0000_0020);
        for (ptr, len) in [(0, 0), (1, 2), (u32::MAX, u32::MAX), (0x8000_0000, 7)] {
            assert_eq!(
                unpack_handle_result(pack_handle_result(ptr, len)),
                (ptr, len)
            );
        }
    }

    #[test]
    fn error_codes_round_trip() {
        for error in HostErrorCode::ALL {
            assert!(error.code() < 0);
            assert_eq!(HostErrorCode::from_code(error.code()), Some(error));
        }
        assert_eq!(HostErrorCode::from_code(0), None);
        assert_eq!(LogLevel::from_i32(1), LogLevel::Warn);
        assert_eq!(LogLevel::from_i32(99), LogLevel::Info);
    }

    #[test]
    fn features_are_decided_once() {
        let enabled: HashSet<_> = ENABLED_WASM_FEATURES.iter().collect();
        let disabled: HashSet<_> = DISABLED_WASM_FEATURES.iter().map(|(f, _)| f).collect();
        assert!(enabled.is_disjoint(&disabled));
        assert_eq!(
            enabled.len() + disabled.len(),
            21,
            "every WasmFeature is decided"
        );
        assert!(WasmFeature::Simd.is_enabled());
        assert!(!WasmFeature::Threads.is_enabled());
    }
}
