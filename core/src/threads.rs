//! Thread-start hooks: how the caller applies its own thread policy to the
//! threads a library starts.
//!
//! The libraries start a few long-lived threads of their own (the log's
//! writer and committer, the projections' runner). They set no priority,
//! affinity or scheduling class on them: that is the process's business.
//! A caller that has such a policy passes a [`ThreadHook`], which every such
//! thread runs first, told what the thread is for.

use std::sync::Arc;

/// What a thread started by a library is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThreadRole {
    /// The log's writer: sequences appends (one per open log).
    LogWriter,
    /// The log's committer: writes and syncs each group (one per open log).
    LogCommitter,
    /// A projection runner's thread, live or rebuilding, and its blocking
    /// pool.
    Projections,
}

/// A function every library-started thread runs first. The default does
/// nothing.
#[derive(Clone, Default)]
pub struct ThreadHook(Option<Arc<dyn Fn(ThreadRole) + Send + Sync>>);

impl ThreadHook {
    /// A hook that runs `f` at the start of each thread.
    pub fn new(f: impl Fn(ThreadRole) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Runs the hook for a thread of `role` (on that thread).
    pub fn run(&self, role: ThreadRole) {
        if let Some(f) = &self.0 {
            f(role);
        }
    }
}

impl std::fmt::Debug for ThreadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ThreadHook(set)"
        } else {
            "ThreadHook(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_hook_sees_each_role_it_is_run_for_and_the_default_does_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook = {
            let seen = Arc::clone(&seen);
            ThreadHook::new(move |role| seen.lock().unwrap().push(role))
        };
        hook.run(ThreadRole::LogWriter);
        hook.clone().run(ThreadRole::Projections);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![ThreadRole::LogWriter, ThreadRole::Projections]
        );
        ThreadHook::default().run(ThreadRole::LogCommitter);
    }
}
