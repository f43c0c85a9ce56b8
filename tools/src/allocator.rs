//! The process's memory allocator and its settings. The benchmarks include
//! this file as it is, so they measure with what the binary ships.

// The writer's per-record allocations spent a third of its time in glibc's
// malloc (perf, append benchmark); mimalloc removes most of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's setting for how long freed memory stays mapped before it is
/// handed back to the operating system, in milliseconds (`-1`: never).
pub const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// What the binary sets [`PURGE_DELAY`] to when the environment does not:
/// keep freed memory for reuse.
///
/// mimalloc's own default (1 s, and a purge then takes every free range,
/// however recently freed) returned and faulted back in the memory of
/// each rebuild commit and ingest batch: without the purge a rebuild
/// took 4 to 18% less CPU per event (six interleaved pairs of runs,
/// 2026-11-24). The price is that the resident size stays near its peak
/// (ARCHITECTURE.md, "Memory").
pub const KEEP_FREED_MEMORY: &str = "-1";

/// Runs the process again, once, with [`PURGE_DELAY`] set to
/// [`KEEP_FREED_MEMORY`], unless the environment already sets it (an
/// operator's setting wins, and the second run finds it set).
///
/// mimalloc reads its options from the environment when the process
/// starts and has no safe way to change them later, hence the `exec`: it
/// keeps the process id, arguments and open files, and happens before any
/// thread starts. Where it fails, the process goes on with mimalloc's
/// defaults.
#[cfg(unix)]
pub fn keep_freed_memory() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // `exec` returns only when it failed.
    let _failed = command
        .args(args)
        .env(PURGE_DELAY, KEEP_FREED_MEMORY)
        .exec();
}

/// Elsewhere the process runs with mimalloc's defaults.
#[cfg(not(unix))]
pub fn keep_freed_memory() {}
