//! What the analysis child may not ask the kernel for, once it holds the package in memory.
//!
//! The resource limits of [`crate::isolation`] bound how much an analysis can take; they do
//! not stop a package that gets code running inside the analyser (through a bug in the tar,
//! PE or wasm parsers, YARA or Wasmtime) from using the worker's account: reaching the
//! network, starting programs, rewriting or deleting the files that account owns, or
//! signalling its other processes (the worker, a store running beside it). So the child,
//! after reading everything it needs and before parsing anything, installs a seccomp filter
//! that refuses those system calls with `EPERM`, for itself and every thread it starts:
//!
//! - **network**: `socket`, `socketpair`, `connect`, `bind`, `listen`, `accept`, `accept4`;
//! - **new programs and processes**: `execve`, `execveat`, `fork`, `vfork`, and `clone`
//!   without `CLONE_THREAD` (threads stay allowed: Wasmtime and the Rust runtime start them);
//! - **files**: opening with write access, `O_CREAT` or `O_TRUNC` (`open`, `openat`, `creat`),
//!   and every call that changes a name or an attribute (`unlink`, `rename`, `mkdir`,
//!   `rmdir`, `link`, `symlink`, `mknod`, `chmod`, `chown`, `truncate`, `utimensat`, the
//!   `*xattr` setters). Writes to the descriptors the child was given (its standard output
//!   and error) and to `memfd`s (Wasmtime's copy-on-write images) still work;
//! - **other processes**: `kill`, `tgkill`, `rt_sigqueueinfo` and `rt_tgsigqueueinfo` aimed
//!   anywhere but the child itself, `tkill`, `pidfd_open`, `pidfd_send_signal`,
//!   `process_vm_readv`/`writev`, `ptrace`, and `prctl(PR_SET_PDEATHSIG)` (which would let
//!   the child outlive a killed worker);
//! - **ways around a filter or into the kernel**: `io_uring_*` (its operations are not
//!   seen by seccomp), `unshare`, `setns`, `mount` and the new mount API, `chroot`,
//!   `pivot_root`, `bpf`, `perf_event_open`, `userfaultfd`, `keyctl`, `add_key`,
//!   `request_key`, `open_by_handle_at`, module loading, `kexec_*`, `reboot`, `swapon`,
//!   `swapoff`, `acct`.
//!
//! `clone3` and `openat2` answer `ENOSYS` instead: their flags sit behind a pointer, which a
//! filter cannot read, and the C library then falls back to `clone` and `openat`, whose
//! flags it can. On x86-64 the x32 system calls (numbers with bit 30 set) are refused as a
//! whole, and calls made through another architecture's entry point (`int 0x80`) kill the
//! child, so no second numbering gets around the list.
//!
//! The filter is a deny-list. An allow-list would be tighter, but the calls Wasmtime, YARA
//! and the C library make change between their releases, and a missing entry would fail
//! every scan; what a deny-list leaves open (reading files the account may read, using CPU
//! and memory within the limits) gives a package nothing it could send anywhere, because the
//! only way out is the report on standard output, which the worker parses and bounds.
//!
//! Only Linux on x86-64, AArch64 and RISC-V 64 has the filter; elsewhere
//! [`forbid_escapes`] reports [`Confinement::Unavailable`] and the child carries on under
//! its resource limits alone (the operator guide says so).

/// Whether [`forbid_escapes`] installed the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// The filter is installed for this process and every thread it starts.
    Filtered,
    /// This platform has no such filter; the reason, for the log.
    Unavailable(&'static str),
}

/// Why the filter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the analysis child's system-call filter: {0}")]
pub struct FilterError(String);

/// Installs the filter described in the [module](self) on this process, for good: nothing
/// removes a seccomp filter. Call it after reading every file the process needs.
///
/// # Errors
/// When the kernel refuses the filter (no seccomp support, or a container policy that
/// forbids installing one). The caller must not analyse unconfined.
pub fn forbid_escapes() -> Result<Confinement, FilterError> {
    platform::forbid_escapes()
}

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
))]
mod platform {
    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, sock_filter,
    };

    use super::{Confinement, FilterError};

    /// Refused system calls, with the conditions under which each is refused (none: always).
    type Refusals = BTreeMap<i64, Vec<SeccompRule>>;

    fn error(context: &str, error: impl std::fmt::Display) -> FilterError {
        FilterError(format!("{context}: {error}"))
    }

    /// A rule that holds when argument `index`, masked by `mask`, equals `value`.
    fn masked(index: u8, mask: u64, value: u64) -> Result<SeccompRule, FilterError> {
        compares(index, SeccompCmpOp::MaskedEq(mask), value)
    }

    /// A rule that holds when argument `index` compares to `value` by `operator`.
    fn compares(index: u8, operator: SeccompCmpOp, value: u64) -> Result<SeccompRule, FilterError> {
        let condition = SeccompCondition::new(index, SeccompCmpArgLen::Dword, operator, value)
            .map_err(|e| error("a condition", e))?;
        SeccompRule::new(vec![condition]).map_err(|e| error("a rule", e))
    }

    /// Rules that hold when `open` flags in argument `index` ask to write, create or truncate.
    fn opens_for_writing(index: u8) -> Result<Vec<SeccompRule>, FilterError> {
        let access = libc::O_ACCMODE as u64;
        Ok(vec![
            masked(index, access, libc::O_WRONLY as u64)?,
            masked(index, access, libc::O_RDWR as u64)?,
            // Neither read nor write: Linux then checks for both.
            masked(index, access, access)?,
            masked(index, libc::O_CREAT as u64, libc::O_CREAT as u64)?,
            masked(index, libc::O_TRUNC as u64, libc::O_TRUNC as u64)?,
        ])
    }

    fn refused_with_eperm(own_pid: u64) -> Result<Refusals, FilterError> {
        let mut refusals = Refusals::new();
        let always: &[i64] = &[
            // Network.
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            // New programs.
            libc::SYS_execve,
            libc::SYS_execveat,
            // Names and attributes of files.
            libc::SYS_unlinkat,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_mkdirat,
            libc::SYS_linkat,
            libc::SYS_symlinkat,
            libc::SYS_mknodat,
            libc::SYS_fchmod,
            libc::SYS_fchmodat,
            libc::SYS_fchown,
            libc::SYS_fchownat,
            libc::SYS_truncate,
            libc::SYS_utimensat,
            libc::SYS_setxattr,
            libc::SYS_lsetxattr,
            libc::SYS_fsetxattr,
            libc::SYS_removexattr,
            libc::SYS_lremovexattr,
            libc::SYS_fremovexattr,
            libc::SYS_open_by_handle_at,
            // Other processes.
            libc::SYS_tkill,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_send_signal,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_ptrace,
            // Ways around the filter, or into the kernel.
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_chroot,
            libc::SYS_pivot_root,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_acct,
        ];
        for &call in always {
            refusals.insert(call, Vec::new());
        }
        // The calls that only x86-64 still numbers (AArch64 and RISC-V have the `*at` forms
        // above, and no `fork`).
        #[cfg(target_arch = "x86_64")]
        {
            for call in [
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_creat,
                libc::SYS_unlink,
                libc::SYS_rename,
                libc::SYS_mkdir,
                libc::SYS_rmdir,
                libc::SYS_link,
                libc::SYS_symlink,
                libc::SYS_mknod,
                libc::SYS_chmod,
                libc::SYS_chown,
                libc::SYS_lchown,
                libc::SYS_utime,
                libc::SYS_utimes,
                libc::SYS_futimesat,
            ] {
                refusals.insert(call, Vec::new());
            }
            refusals.insert(libc::SYS_open, opens_for_writing(1)?);
        }
        refusals.insert(libc::SYS_openat, opens_for_writing(2)?);
        // A new process, not a thread: `clone(flags, …)` without CLONE_THREAD.
        refusals.insert(
            libc::SYS_clone,
            vec![masked(0, libc::CLONE_THREAD as u64, 0)?],
        );
        // Signals for anyone but the child itself (pid 0 and negative pids are groups).
        for call in [
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
        ] {
            refusals.insert(call, vec![compares(0, SeccompCmpOp::Ne, own_pid)?]);
        }
        refusals.insert(
            libc::SYS_prctl,
            vec![compares(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_PDEATHSIG as u64,
            )?],
        );
        Ok(refusals)
    }

    /// Calls refused with `ENOSYS`, so that the C library falls back to a call the first
    /// filter can read the flags of.
    fn refused_as_unknown() -> Refusals {
        [libc::SYS_clone3, libc::SYS_openat2]
            .into_iter()
            .map(|call| (call, Vec::new()))
            .collect()
    }

    fn compile(refusals: Refusals, errno: i32) -> Result<BpfProgram, FilterError> {
        let arch = std::env::consts::ARCH
            .try_into()
            .map_err(|e| error("this architecture", e))?;
        let filter = SeccompFilter::new(
            refusals,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| error("building the filter", e))?;
        filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| error("compiling the filter", e))
    }

    /// On x86-64, the x32 ABI numbers the same calls again with bit 30 set, under the same
    /// audit architecture: a deny-list by number must refuse that whole range first.
    #[cfg(target_arch = "x86_64")]
    fn refuse_x32(program: BpfProgram) -> BpfProgram {
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        // Offsets in `struct seccomp_data`: `nr` first.
        const NR_OFFSET: u32 = 0;
        let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        let jump_if_at_least = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        let mut prefixed = vec![
            sock_filter {
                code: load,
                jt: 0,
                jf: 0,
                k: NR_OFFSET,
            },
            // At least the x32 bit: fall through to the refusal; otherwise skip it.
            sock_filter {
                code: jump_if_at_least,
                jt: 0,
                jf: 1,
                k: X32_SYSCALL_BIT,
            },
            sock_filter {
                code: ret,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32),
            },
        ];
        prefixed.extend(program);
        prefixed
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn refuse_x32(program: BpfProgram) -> BpfProgram {
        program
    }

    pub(super) fn forbid_escapes() -> Result<Confinement, FilterError> {
        let own_pid = u64::from(std::process::id());
        let refusals = refuse_x32(compile(refused_with_eperm(own_pid)?, libc::EPERM)?);
        let unknown = compile(refused_as_unknown(), libc::ENOSYS)?;
        // Every thread, in case a library started one before this point. The kernel runs
        // every installed filter and takes the strictest answer, so the two stack.
        for program in [&refusals, &unknown] {
            seccompiler::apply_filter_all_threads(program)
                .map_err(|e| error("installing the filter", e))?;
        }
        Ok(Confinement::Filtered)
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
)))]
mod platform {
    use super::{Confinement, FilterError};

    pub(super) fn forbid_escapes() -> Result<Confinement, FilterError> {
        Ok(Confinement::Unavailable(
            "system-call filters are implemented for Linux on x86-64, AArch64 and RISC-V 64 only",
        ))
    }
}
