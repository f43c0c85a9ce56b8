//! The server's thread policy: the one place the process sets thread
//! priorities. Off unless configured (`mailledger serve
//! --thread-priorities`, `MAILLEDGER_THREAD_PRIORITIES=true`); the
//! libraries set none themselves, they run the hook given here.
//!
//! Why it pays: with both cores busy with ingest, a query's thread that
//! wakes waits for a core until a bulk thread's time slice ends, and on a
//! kernel without preemption until the next tick. A nice value does not
//! change that wait under Linux's EEVDF scheduler, only how often a thread
//! runs. So the request threads (named `http`) run as `SCHED_FIFO` at the
//! lowest real-time priority, which takes a core at once, or at nice -2
//! where the system refuses it (it needs `CAP_SYS_NICE`); the projections
//! run at nice 10.
//!
//! The price, which the operator who turns it on accepts: a request's work
//! runs ahead of every bulk thread. A long one (an audit replay through
//! the API, a large export) takes a core from ingest while it runs; the
//! kernel's real-time throttle leaves the other threads 5% of it. Threads
//! the libraries start run [`ThreadPolicy::hook`] first, which puts them
//! back to the normal policy, so a thread started while serving a request
//! (a rebuild's) does not keep the real-time one it was born with.

use mailledger_core::{ThreadHook, ThreadRole};

/// The nice value of the threads that serve requests (named `http`) where
/// the system refuses `SCHED_FIFO`. Raising a priority needs
/// `CAP_SYS_NICE`; without it they keep the process's.
pub const REQUEST_NICE: i32 = -2;

/// The nice value of the projections' threads.
pub const PROJECTIONS_NICE: i32 = 10;

/// Whether the process sets thread priorities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadPolicy {
    priorities: bool,
}

impl ThreadPolicy {
    /// The policy: priorities set when `priorities` is true.
    pub fn new(priorities: bool) -> Self {
        Self { priorities }
    }

    /// The hook the libraries run on the threads they start.
    pub fn hook(self) -> ThreadHook {
        if !self.priorities {
            return ThreadHook::default();
        }
        ThreadHook::new(|role| {
            set_own_normal();
            if role == ThreadRole::Projections {
                set_own_nice(PROJECTIONS_NICE, "projections");
            }
        })
    }

    /// What each request thread runs as it starts: `SCHED_FIFO`, else
    /// [`REQUEST_NICE`].
    pub fn on_request_thread(self) -> impl Fn() + Send + Sync + 'static {
        move || {
            if self.priorities && !set_own_fifo() {
                set_own_nice(REQUEST_NICE, "request");
            }
        }
    }
}

/// Sets the calling thread's nice value (on Linux it belongs to the thread,
/// and threads it starts inherit it); says once per kind of thread when the
/// system refuses.
fn set_own_nice(nice: i32, which: &'static str) {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = set_thread_nice(nice) {
        REFUSED.call_once(|| {
            tracing::info!(
                error = %e,
                threads = which,
                "thread priorities left as they are (raising one needs CAP_SYS_NICE)"
            );
        });
    }
}

/// Puts the calling thread in `SCHED_FIFO` at the lowest real-time
/// priority; false where the system refuses.
///
/// Threads it starts inherit the policy: those the libraries start put
/// themselves back ([`set_own_normal`]), and tokio's, the runtime's own,
/// serve requests too.
#[cfg(target_os = "linux")]
fn set_own_fifo() -> bool {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, fifo).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn set_own_fifo() -> bool {
    false
}

/// Puts the calling thread back to the normal policy at nice 0 when it
/// runs under a real-time one (inherited from the thread that started it).
#[cfg(target_os = "linux")]
fn set_own_normal() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    if matches!(
        thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Realtime(_))
    ) {
        let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        let nice_0 = ThreadPriority::Os(ThreadPriorityOsValue::default());
        if let Err(e) = set_thread_priority_and_policy(thread_native_id(), nice_0, normal) {
            tracing::warn!(error = %e, "a bulk thread kept the real-time policy it was started with");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_own_normal() {}

#[cfg(target_os = "linux")]
fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
        .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn set_thread_nice(_nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn off_by_default_and_on_it_lowers_only_the_projections_thread() {
        let before = own_nice();
        let seen = std::thread::spawn(|| {
            ThreadPolicy::default().hook().run(ThreadRole::Projections);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(seen, before, "off: nothing changes");
        let (writer, projections) = std::thread::spawn(|| {
            let hook = ThreadPolicy::new(true).hook();
            hook.run(ThreadRole::LogWriter);
            let writer = own_nice();
            hook.run(ThreadRole::Projections);
            (writer, own_nice())
        })
        .join()
        .unwrap();
        assert_eq!(writer, before, "the log's threads keep theirs");
        assert_eq!(projections, PROJECTIONS_NICE.max(before).min(19));
        assert_eq!(own_nice(), before, "the caller's thread keeps its own");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn request_threads_run_real_time_and_threads_they_start_do_not_keep_it() {
        use thread_priority::{ThreadSchedulePolicy, thread_schedule_policy};
        let policy = ThreadPolicy::new(true);
        let (request, child) = std::thread::spawn(move || {
            policy.on_request_thread()();
            let request = thread_schedule_policy().unwrap();
            // A rebuild's thread, started while a request is served.
            let child = std::thread::spawn(move || {
                policy.hook().run(ThreadRole::Projections);
                (thread_schedule_policy().unwrap(), own_nice())
            })
            .join()
            .unwrap();
            (request, child)
        })
        .join()
        .unwrap();
        let (child_policy, child_nice) = child;
        assert!(
            !matches!(child_policy, ThreadSchedulePolicy::Realtime(_)),
            "a library's thread kept {child_policy:?}"
        );
        if set_own_fifo_allowed() {
            assert!(
                matches!(request, ThreadSchedulePolicy::Realtime(_)),
                "{request:?}"
            );
            assert_eq!(child_nice, PROJECTIONS_NICE);
        } else {
            assert!(!matches!(request, ThreadSchedulePolicy::Realtime(_)));
        }
    }

    /// Whether this process may run a thread as `SCHED_FIFO`: tried on a
    /// thread of its own, which then ends.
    #[cfg(target_os = "linux")]
    fn set_own_fifo_allowed() -> bool {
        std::thread::spawn(set_own_fifo).join().unwrap()
    }
}
