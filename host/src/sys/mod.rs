//! The host's unsafe system calls: process and thread set-up that the standard library and tokio do
//! not offer (Chromium's parent-death signal, the plugin workers' lower priority, the open-files
//! limit, and a NUMA shard's CPU affinity and memory policy, for its threads and its Chromium).
//! Kept in this one module so that every such `unsafe` block is here, next to the reason it is
//! sound. The only other `unsafe` in the host is loading compiled plugin code, in
//! `plugin/artifact.rs`. Also here: what the machine has (cores; memory, in `memory.rs`, the
//! container's limit where there is one), read from the kernel.
#![allow(unsafe_code)]

mod memory;

pub use memory::{Memory, total_memory_bytes};

use std::collections::BTreeSet;
use std::io;

/// Makes the child started by `command` receive SIGKILL when its parent (this process) dies, however
/// it dies. Without this a pagewright killed with SIGKILL, by the OOM killer or by an orchestrator,
/// leaves its Chromium running, and every restart leaks a whole browser.
///
/// Linux delivers the signal when the *thread* that forked the child exits. The browser is spawned from
/// a tokio worker thread, and worker threads live as long as the runtime, which is as long as the
/// process.
pub(crate) fn kill_with_parent(command: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe calls are
    // allowed; `prctl` and `getppid` are plain system calls, and nothing here allocates or locks.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl, before the signal was armed.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other(
                    "the parent died while the browser was starting",
                ));
            }
            Ok(())
        });
    }
}

/// How much lower than the server's the plugin workers' scheduling priority is (a nice value, 0-19).
/// At 10 the kernel gives a normal-priority thread about ten times a plugin thread's share of a busy
/// core: page work and the HTTP server stay responsive while plugins spin.
const PLUGIN_THREAD_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (Linux applies `setpriority` to one thread when given
/// its thread id). Best effort: if it fails, plugins still time-slice by fuel, only without the
/// kernel's help against other work.
pub(crate) fn lower_thread_priority() {
    // SAFETY: `gettid` and `setpriority` are plain system calls with integer arguments; neither touches
    // memory we own.
    let result = unsafe {
        let thread = libc::gettid();
        libc::setpriority(
            libc::PRIO_PROCESS,
            thread as libc::id_t,
            PLUGIN_THREAD_NICENESS,
        )
    };
    if result == -1 {
        tracing::warn!(error = %io::Error::last_os_error(), "could not lower a plugin worker's priority");
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns the new soft limit.
/// Every in-flight request holds a socket, and the default soft limit (often 1024) would cap a
/// server meant to hold 12,800 jobs in flight far below that; the hard limit is the operator's.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` and `setrlimit` read and write the `rlimit` struct we pass, which lives on
    // this stack frame for the length of the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == -1 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// CPUs a `cpu_set_t` can name: the most a topology may use.
pub(crate) const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// `MPOL_PREFERRED` from `<linux/mempolicy.h>` (the libc crate does not define the memory policy
/// constants): allocate on the given node while it has free memory, elsewhere after that. A shard
/// that prefers its node's memory never fails an allocation because that node is full.
const MPOL_PREFERRED: libc::c_int = 1;

/// The CPUs the calling thread may run on; every CPU the machine reports if that cannot be read.
pub(crate) fn allowed_cpus() -> BTreeSet<usize> {
    // SAFETY: `cpu_set_t` is plain bits, valid zeroed; `sched_getaffinity` writes at most
    // `size_of::<cpu_set_t>()` bytes into the set on this stack frame, and `CPU_ISSET` reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (0..MAX_CPUS)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect();
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..cores).collect()
}

/// A CPU set and memory policy to apply to a thread or a child process. Built before any fork, so
/// that applying it in a child between fork and exec neither allocates nor locks.
#[derive(Clone, Copy)]
pub(crate) struct Pinning {
    cpus: libc::cpu_set_t,
    /// One bit per kernel node; zero for no preference.
    memory_nodes: libc::c_ulong,
}

impl Pinning {
    /// Pins to `cpus` (each below [`MAX_CPUS`]) and prefers the memory of kernel node
    /// `memory_node` (below 64, which every machine's node count is), if given.
    pub fn new(cpus: &[usize], memory_node: Option<usize>) -> Self {
        // SAFETY: `cpu_set_t` is plain bits, valid zeroed; `CPU_SET` writes the bit of a CPU that
        // the topology already checked to be below `CPU_SETSIZE`.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            set
        };
        let memory_nodes = memory_node
            .filter(|&node| node < libc::c_ulong::BITS as usize)
            .map_or(0, |node| 1 << node);
        Self {
            cpus: set,
            memory_nodes,
        }
    }

    /// Applies the CPU set and memory policy to the calling thread (`0` names it to both calls),
    /// and so to every thread and process it starts from now on. Async-signal-safe: two plain
    /// system calls on data the struct already holds.
    fn apply(&self) -> io::Result<()> {
        // SAFETY: `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes of `self.cpus`;
        // `set_mempolicy` reads one `c_ulong` of node mask, whose width in bits it is given.
        unsafe {
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.cpus) == -1 {
                return Err(io::Error::last_os_error());
            }
            if self.memory_nodes != 0
                && libc::syscall(
                    libc::SYS_set_mempolicy,
                    MPOL_PREFERRED,
                    &self.memory_nodes as *const libc::c_ulong,
                    libc::c_ulong::BITS as libc::c_ulong,
                ) == -1
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Pins the calling thread (a shard's plugin worker as it starts).
    pub fn apply_to_current_thread(&self) -> io::Result<()> {
        self.apply()
    }

    /// Pins the child `command` starts, before it execs: Chromium's every process inherits it.
    pub fn apply_to_child(self, command: &mut tokio::process::Command) {
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: `apply` makes two system calls on the copied struct and allocates
        // nothing (`io::Error::last_os_error` reads errno into an integer).
        unsafe {
            command.pre_exec(move || self.apply());
        }
    }
}

/// CPU cores this process may use; 2 when the kernel does not say.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Is this process running with root's effective user id?
pub fn running_as_root() -> bool {
    // SAFETY: `geteuid` is a plain system call that cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user and group ids of the account `name`, from the system's user database (`/etc/passwd`,
/// NSS); `None` if there is no such account.
pub fn user_ids(name: &str) -> io::Result<Option<(u32, u32)>> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a user name with a NUL byte"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `passwd` is plain data, valid zeroed. `getpwnam_r` writes the entry into `entry` and
    // its strings into `buffer` (whose length we pass), sets `found` to `&entry` or null, and keeps
    // no pointer to any of them after it returns; all of them outlive the call.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let error = libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        if found.is_null() {
            return Ok(None);
        }
        Ok(Some((entry.pw_uid, entry.pw_gid)))
    }
}

/// Gives the child started by `command` `reads` as its file descriptor 3 and `writes` as 4, the
/// pair Chromium's `--remote-debugging-pipe` talks over. The descriptors stay open in the parent
/// until it drops them; the child's copies are its own.
pub(crate) fn pass_devtools_pipe(
    command: &mut tokio::process::Command,
    reads: std::os::fd::RawFd,
    writes: std::os::fd::RawFd,
) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe calls
    // are allowed; `fcntl` and `dup2` are plain system calls, and nothing here allocates or locks.
    // Both descriptors are first copied above 9, so that placing one at 3 or 4 can never close the
    // other; `dup2` leaves the copies at 3 and 4 without close-on-exec, the originals keep it.
    unsafe {
        command.pre_exec(move || {
            let reads = libc::fcntl(reads, libc::F_DUPFD_CLOEXEC, 10);
            let writes = libc::fcntl(writes, libc::F_DUPFD_CLOEXEC, 10);
            if reads == -1
                || writes == -1
                || libc::dup2(reads, 3) == -1
                || libc::dup2(writes, 4) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
