//! What the analysis child may not do once it holds the package in memory: which system
//! calls it may make, and which files it may open.
//!
//! The resource limits of [`crate::isolation`] bound how much an analysis can take; they do
//! not stop a package that gets code running inside the analyser (through a bug in the tar,
//! PE or wasm parsers, YARA or Wasmtime) from using the worker's account: reaching the
//! network, starting programs, rewriting or deleting the files that account owns, reading
//! its secrets (the store's database and keys, `/proc/<worker>/environ`), or signalling its
//! other processes (the worker, a store running beside it). So the child, after reading
//! everything it needs and before parsing anything, confines itself ([`forbid_escapes`]) in
//! two layers.
//!
//! **Files (Landlock).** A Landlock ruleset that handles every file-system access right and
//! allows none: from then on the child can open no file or directory at all, for reading
//! either, and keeps only the descriptors it holds. Where the kernel supports it (Linux
//! 6.12), the ruleset also scopes signals and abstract Unix sockets to the child. Landlock
//! is applied as far as the kernel supports it (Linux 5.13 and later, when enabled; every
//! version refuses all opens), and its absence is a warning, not a refusal: the system-call
//! filter still stands, and older kernels are common on long-term-support distributions.
//!
//! **System calls (seccomp).** A seccomp filter that refuses these with `EPERM`, for the
//! child and every thread it starts:
//!
//! - **network**: `socket`, `socketpair`, `connect`, `bind`, `listen`, `accept`, `accept4`;
//! - **new programs and processes**: `execve`, `execveat`, `fork`, `vfork`, and `clone`
//!   without `CLONE_THREAD` (threads stay allowed: Wasmtime and the Rust runtime start them);
//! - **files**: opening with write access, `O_CREAT` or `O_TRUNC` (`open`, `openat`, `creat`),
//!   and every call that changes a name or an attribute (`unlink`, `rename`, `mkdir`,
//!   `rmdir`, `link`, `symlink`, `mknod`, `chmod`, `chown`, `truncate`, `utimensat`, the
//!   `*xattr` setters, `file_setattr`), with the `ioctl`s that change a file's flags or make
//!   it read-only for good through a descriptor opened for reading (`FS_IOC_SETFLAGS`,
//!   `FS_IOC_FSSETXATTR`, `FS_IOC_ENABLE_VERITY`) and `fcntl(F_SETLEASE)`, which would make
//!   the store's own opens of a file wait. Writes to the descriptors the child was given
//!   (its standard output and error) still work;
//! - **other processes**: `kill`, `tgkill`, `rt_sigqueueinfo` and `rt_tgsigqueueinfo` aimed
//!   anywhere but the child itself, `tkill`, `pidfd_open`, `pidfd_send_signal`,
//!   `process_vm_readv`/`writev`, `ptrace`; `fcntl(F_SETOWN | F_SETOWN_EX | F_SETSIG)`, with
//!   which the kernel would signal another process when a pipe becomes readable;
//!   `prlimit64` and the `sched_set*` calls aimed at another process, `setpriority`,
//!   `ioprio_set`, `migrate_pages` and `move_pages`, which could starve the worker or the
//!   store; `prctl(PR_SET_PDEATHSIG)`, which would let the child outlive a killed worker;
//!   the `ioctl`s that type into a terminal (`TIOCSTI`, `TIOCLINUX`); System V IPC and POSIX
//!   message queues, which outlive the child;
//! - **ways around a filter or into the kernel**: `io_uring_*` (its operations are not
//!   seen by seccomp), `unshare`, `setns`, `mount` and the new mount API, `chroot`,
//!   `pivot_root`, `bpf`, `perf_event_open`, `userfaultfd`, `keyctl`, `add_key`,
//!   `request_key`, `open_by_handle_at`, module loading, `kexec_*`, `reboot`, `swapon`,
//!   `swapoff`, `acct`, `lsm_set_self_attr`.
//!
//! `clone3` and `openat2` answer `ENOSYS` instead: their flags sit behind a pointer, which a
//! filter cannot read, and the C library then falls back to `clone` and `openat`, whose
//! flags it can. Calls newer than the list (numbered from [`FIRST_UNLISTED`] on) answer
//! `ENOSYS` too, as on an older kernel, so that a call a later kernel adds cannot reopen
//! what the list closes: Linux 6.6 to 6.17 added `fchmodat2`, `setxattrat`,
//! `removexattrat`, `open_tree_attr` and `file_setattr`. The x32 system calls (numbers with
//! bit 30 set) are refused as a whole, and calls made through another architecture's entry
//! point (`int 0x80`) kill the child, so no second numbering gets around the list.
//!
//! The filter is a deny-list. An allow-list would be tighter, but the calls Wasmtime, YARA
//! and the C library make change between their releases, and a missing entry would fail
//! every scan. Unlike Landlock the filter is required: where the kernel refuses it, the child
//! refuses to analyse.
//!
//! Only Linux on x86-64 has the filter for now: the list names calls by the C library's
//! numbers for each architecture, and those of AArch64 and RISC-V are not built or tested
//! here. Elsewhere the child carries on under Landlock (on Linux) and its resource limits,
//! with a warning.

/// How far [`forbid_escapes`] confined this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The Landlock ruleset that closes the file system.
    pub files: Layer,
    /// The seccomp filter.
    pub system_calls: Layer,
}

/// One layer of the [`Confinement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// In force for this process, for good.
    Enforced,
    /// Missing or only partly in force on this platform or kernel; why, for the log.
    Unavailable(String),
}

impl Confinement {
    /// What is missing, one line per layer, for the child's standard error.
    pub fn warnings(&self) -> impl Iterator<Item = &str> {
        [&self.files, &self.system_calls]
            .into_iter()
            .filter_map(|layer| match layer {
                Layer::Enforced => None,
                Layer::Unavailable(reason) => Some(reason.as_str()),
            })
    }
}

/// Why the process could not be confined.
#[derive(Debug, thiserror::Error)]
#[error("cannot confine the analysis child: {0}")]
pub struct FilterError(String);

/// Confines this process as the [module](self) describes, for good: nothing removes a
/// Landlock ruleset or a seccomp filter. Call it after reading every file the process
/// needs, and before starting threads (Landlock binds the calling thread and the threads
/// and processes it starts later).
///
/// # Errors
/// When the kernel refuses the system-call filter (no seccomp support, or a container policy
/// that forbids installing one). The caller must not analyse unconfined.
pub fn forbid_escapes() -> Result<Confinement, FilterError> {
    let files = files::close();
    let system_calls = system_calls::forbid()?;
    Ok(Confinement {
        files,
        system_calls,
    })
}

#[cfg(target_os = "linux")]
mod files {
    use landlock::{ABI, Access as _, AccessFs, Ruleset, RulesetAttr as _, RulesetStatus, Scope};

    use super::Layer;

    /// The newest Landlock ABI the landlock crate knows; a kernel with an older one applies
    /// what it supports (best effort).
    const ABI: ABI = ABI::V10;

    pub(super) fn close() -> Layer {
        let restricted = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI))
            .and_then(|ruleset| ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket))
            .and_then(|ruleset| ruleset.create())
            // No rule added: every handled access is denied everywhere.
            .and_then(|ruleset| ruleset.restrict_self());
        match restricted {
            // Every Landlock ABI refuses opening any file once no path is allowed. What older
            // ABIs lack (truncation, device ioctls, signal and socket scoping) the
            // system-call filter refuses on its own, so partly enforced counts as enforced.
            Ok(status) => match status.ruleset {
                RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => {
                    Layer::Enforced
                }
                RulesetStatus::NotEnforced => Layer::Unavailable(
                    "Landlock is not enabled on this kernel: the analysis child can read what the worker's account can"
                        .to_owned(),
                ),
            },
            Err(error) => Layer::Unavailable(format!("Landlock: {error}")),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod files {
    use super::Layer;

    pub(super) fn close() -> Layer {
        Layer::Unavailable("closing the file system is implemented for Linux only".to_owned())
    }
}

/// The first system call number newer than the list: Linux 6.17's last is `file_setattr`
/// (469). Every architecture numbers new calls alike since 424.
pub const FIRST_UNLISTED: u32 = 470;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod system_calls {
    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, sock_filter,
    };

    use super::{FIRST_UNLISTED, FilterError, Layer};

    /// Refused system calls, with the conditions under which each is refused (none: always).
    type Refusals = BTreeMap<i64, Vec<SeccompRule>>;

    // System calls the libc crate does not name yet.
    const LSM_SET_SELF_ATTR: i64 = 460;
    const SETXATTRAT: i64 = 463;
    const REMOVEXATTRAT: i64 = 466;
    const OPEN_TREE_ATTR: i64 = 467;
    const FILE_SETATTR: i64 = 469;

    // `fcntl` commands (asm-generic/fcntl.h).
    const F_SETOWN: u64 = 8;
    const F_SETSIG: u64 = 10;
    const F_SETOWN_EX: u64 = 15;
    const F_SETLEASE: u64 = 1024;

    // `ioctl` requests (asm-generic/ioctls.h, linux/fs.h, linux/fsverity.h).
    const TIOCSTI: u64 = 0x5412;
    const TIOCLINUX: u64 = 0x541C;
    const FS_IOC_SETFLAGS: u64 = 0x4008_6602;
    const FS_IOC32_SETFLAGS: u64 = 0x4004_6602;
    const FS_IOC_SETVERSION: u64 = 0x4008_7602;
    const FS_IOC_FSSETXATTR: u64 = 0x401C_581F;
    const FS_IOC_ENABLE_VERITY: u64 = 0x4080_6685;

    fn error(context: &str, error: impl std::fmt::Display) -> FilterError {
        FilterError(format!("{context}: {error}"))
    }

    /// Argument `index` compares to `value` by `operator`. Its low 32 bits: every argument
    /// checked here is an `int`, a `pid_t`, or flags and commands the kernel reads as 32 bits.
    fn condition(
        index: u8,
        operator: SeccompCmpOp,
        value: u64,
    ) -> Result<SeccompCondition, FilterError> {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, operator, value)
            .map_err(|e| error("a condition", e))
    }

    /// A rule of the given conditions, which must all hold.
    fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, FilterError> {
        SeccompRule::new(conditions).map_err(|e| error("a rule", e))
    }

    /// A rule that holds when argument `index` compares to `value` by `operator`.
    fn compares(index: u8, operator: SeccompCmpOp, value: u64) -> Result<SeccompRule, FilterError> {
        rule(vec![condition(index, operator, value)?])
    }

    /// A rule that holds when argument `index`, masked by `mask`, equals `value`.
    fn masked(index: u8, mask: u64, value: u64) -> Result<SeccompRule, FilterError> {
        compares(index, SeccompCmpOp::MaskedEq(mask), value)
    }

    /// Rules that hold when argument `index` is one of `values`.
    fn one_of(index: u8, values: &[u64]) -> Result<Vec<SeccompRule>, FilterError> {
        values
            .iter()
            .map(|&value| compares(index, SeccompCmpOp::Eq, value))
            .collect()
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
        let always: &[i64] = &[
            // Network.
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            // New programs and processes.
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            // Names and attributes of files.
            libc::SYS_creat,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_mkdir,
            libc::SYS_mkdirat,
            libc::SYS_rmdir,
            libc::SYS_link,
            libc::SYS_linkat,
            libc::SYS_symlink,
            libc::SYS_symlinkat,
            libc::SYS_mknod,
            libc::SYS_mknodat,
            libc::SYS_chmod,
            libc::SYS_fchmod,
            libc::SYS_fchmodat,
            libc::SYS_fchmodat2,
            libc::SYS_chown,
            libc::SYS_lchown,
            libc::SYS_fchown,
            libc::SYS_fchownat,
            libc::SYS_truncate,
            libc::SYS_utime,
            libc::SYS_utimes,
            libc::SYS_futimesat,
            libc::SYS_utimensat,
            libc::SYS_setxattr,
            libc::SYS_lsetxattr,
            libc::SYS_fsetxattr,
            SETXATTRAT,
            libc::SYS_removexattr,
            libc::SYS_lremovexattr,
            libc::SYS_fremovexattr,
            REMOVEXATTRAT,
            FILE_SETATTR,
            libc::SYS_open_by_handle_at,
            // Other processes.
            libc::SYS_tkill,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_send_signal,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_ptrace,
            libc::SYS_setpriority,
            libc::SYS_ioprio_set,
            libc::SYS_migrate_pages,
            libc::SYS_move_pages,
            // System V IPC and POSIX message queues, which outlive the child.
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_shmctl,
            libc::SYS_shmdt,
            libc::SYS_msgget,
            libc::SYS_msgsnd,
            libc::SYS_msgrcv,
            libc::SYS_msgctl,
            libc::SYS_semget,
            libc::SYS_semop,
            libc::SYS_semtimedop,
            libc::SYS_semctl,
            libc::SYS_mq_open,
            libc::SYS_mq_unlink,
            libc::SYS_mq_timedsend,
            libc::SYS_mq_timedreceive,
            libc::SYS_mq_notify,
            libc::SYS_mq_getsetattr,
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
            OPEN_TREE_ATTR,
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
            LSM_SET_SELF_ATTR,
        ];
        let mut refusals: Refusals = always.iter().map(|&call| (call, Vec::new())).collect();
        refusals.insert(libc::SYS_open, opens_for_writing(1)?);
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
        // Limits and scheduling of any process but the child (pid 0 is the caller).
        for call in [
            libc::SYS_prlimit64,
            libc::SYS_sched_setscheduler,
            libc::SYS_sched_setparam,
            libc::SYS_sched_setattr,
            libc::SYS_sched_setaffinity,
        ] {
            let another_process = rule(vec![
                condition(0, SeccompCmpOp::Ne, 0)?,
                condition(0, SeccompCmpOp::Ne, own_pid)?,
            ])?;
            refusals.insert(call, vec![another_process]);
        }
        // Signals to another process when a descriptor is ready, and leases, which make
        // other processes' opens of a file wait.
        refusals.insert(
            libc::SYS_fcntl,
            one_of(1, &[F_SETOWN, F_SETSIG, F_SETOWN_EX, F_SETLEASE])?,
        );
        // Typing into a terminal; changing a file's flags, or making it read-only for good,
        // through a descriptor opened for reading.
        refusals.insert(
            libc::SYS_ioctl,
            one_of(
                1,
                &[
                    TIOCSTI,
                    TIOCLINUX,
                    FS_IOC_SETFLAGS,
                    FS_IOC32_SETFLAGS,
                    FS_IOC_SETVERSION,
                    FS_IOC_FSSETXATTR,
                    FS_IOC_ENABLE_VERITY,
                ],
            )?,
        );
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
        let filter = SeccompFilter::new(
            refusals,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            seccompiler::TargetArch::x86_64,
        )
        .map_err(|e| error("building the filter", e))?;
        filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| error("compiling the filter", e))
    }

    /// Checks made before the list. The x32 ABI numbers the same calls again with bit 30
    /// set, under the same audit architecture, so a deny-list by number must refuse that
    /// whole range; and calls numbered from [`FIRST_UNLISTED`] on answer `ENOSYS`.
    fn refuse_other_numberings(program: BpfProgram) -> BpfProgram {
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        // Offset of `nr` in `struct seccomp_data`.
        const NR_OFFSET: u32 = 0;
        let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        let jump_if_at_least = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        let errno = |errno: i32| libc::SECCOMP_RET_ERRNO | (errno as u32);
        // Jumps are relative: `jf: 1` skips the answer that follows when the number is below.
        let instruction = |code, jf, k| sock_filter { code, jt: 0, jf, k };
        let mut prefixed = vec![
            instruction(load, 0, NR_OFFSET),
            instruction(jump_if_at_least, 1, X32_SYSCALL_BIT),
            instruction(ret, 0, errno(libc::EPERM)),
            instruction(jump_if_at_least, 1, FIRST_UNLISTED),
            instruction(ret, 0, errno(libc::ENOSYS)),
        ];
        prefixed.extend(program);
        prefixed
    }

    pub(super) fn forbid() -> Result<Layer, FilterError> {
        let own_pid = u64::from(std::process::id());
        let refusals = refuse_other_numberings(compile(refused_with_eperm(own_pid)?, libc::EPERM)?);
        let unknown = compile(refused_as_unknown(), libc::ENOSYS)?;
        // Every thread, in case a library started one before this point. The kernel runs
        // every installed filter and answers with the most severe action; the two lists do
        // not overlap, so each call gets its own list's answer.
        for program in [&refusals, &unknown] {
            seccompiler::apply_filter_all_threads(program)
                .map_err(|e| error("installing the system-call filter", e))?;
        }
        Ok(Layer::Enforced)
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod system_calls {
    use super::{FilterError, Layer};

    pub(super) fn forbid() -> Result<Layer, FilterError> {
        Ok(Layer::Unavailable(
            "the system-call filter is implemented for Linux on x86-64 only".to_owned(),
        ))
    }
}
