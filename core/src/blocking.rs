//! Blocking work from async code: on tokio's blocking pool, or in place
//! on a thread marked as one that may block ([`on_blocking_thread`]).

use crate::error::{Error, Result};

std::thread_local! {
    /// Whether this thread may block: set by [`on_blocking_thread`].
    static MAY_BLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on the calling thread, telling the ledger and the email layer
/// that the thread may block: their reads and key store calls, which would
/// move to tokio's blocking pool (so as not to stall an async worker), run
/// in place instead, saving a hand-over to another thread and back each.
///
/// Call it only on a thread that may block: a blocking-pool thread, a
/// thread of one's own, or `main` around `Handle::block_on`; never on an
/// async runtime's worker.
pub fn on_blocking_thread<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the flag back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MAY_BLOCK.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MAY_BLOCK.with(|m| m.replace(true)));
    f()
}

/// Whether the calling thread is inside [`on_blocking_thread`].
pub(crate) fn may_block() -> bool {
    MAY_BLOCK.with(std::cell::Cell::get)
}

/// Runs blocking `f`: in place where the thread may block, else on tokio's
/// blocking pool.
///
/// # Errors
/// `f`'s error, or [`Error::Closed`] when the runtime drops the task.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if may_block() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::Closed)?
}
