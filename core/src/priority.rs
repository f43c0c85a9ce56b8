//! Thread CPU priorities: background work yields the CPU to requests.

/// Lowers the calling thread's CPU priority to the nice value `nice`
/// (0 is the default, 19 the lowest), best effort: where the system does
/// not allow it, the thread keeps its priority and a warning is logged.
/// On Linux a nice value is per thread, and threads it starts inherit it.
pub fn lower_thread_priority(nice: i32, what: &str) {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::warn!(error = %e, what, "cannot lower a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (nice, what);
}
