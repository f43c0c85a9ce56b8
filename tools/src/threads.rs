//! The server's thread policy: the one place the process sets thread
//! priorities. Off unless configured (`mailledger serve
//! --thread-priorities`, `MAILLEDGER_THREAD_PRIORITIES=true`); the
//! libraries set none themselves, they run the hook given here.
//!
//! Why it can pay: with both cores busy with ingest, a query's thread that
//! wakes waits for a core until a bulk thread's slice ends. A little more
//! weight for the request threads and a little less for the projections
//! lets the query in sooner, at some cost to the projections' lag.

use mailledger_core::{ThreadHook, ThreadRole};

/// The nice value of the threads that serve requests (named `http`).
/// Raising a priority needs `CAP_SYS_NICE`; without it they keep the
/// process's.
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
            if role == ThreadRole::Projections {
                set_own_nice(PROJECTIONS_NICE, "projections");
            }
        })
    }

    /// What each request thread runs as it starts.
    pub fn on_request_thread(self) -> impl Fn() + Send + Sync + 'static {
        move || {
            if self.priorities {
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
}
