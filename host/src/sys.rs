//! The host's unsafe system calls: process and thread set-up that the standard library and tokio do
//! not offer (Chromium's parent-death signal, the plugin workers' lower priority, the open-files
//! limit). Kept in this one
//! module so that every such `unsafe` block is here, next to the reason it is sound. (NUMA pinning of
//! shard processes will join it.) The only other `unsafe` in the host is loading compiled plugin
//! code, in `plugin/artifact.rs`.
#![allow(unsafe_code)]

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
