//! Blocking work from async code ([`run_blocking`]): in place on a thread
//! marked as one that may block ([`on_blocking_thread`]), in place inside
//! `block_in_place` on a multi-threaded runtime, else on tokio's blocking
//! pool. The ledger, the email layer and the API's handlers all go
//! through it.

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

/// Runs `future` with every poll inside [`on_blocking_thread`]: for a
/// runtime whose threads may block (a pool for work that writes and syncs,
/// such as the API's ingest pool), so the blocking work the future starts
/// runs in place. Through `block_in_place` instead, each call handed the
/// thread's other tasks to another thread, and a burst of appends for new
/// contacts (a key made and synced for each) grew the pool to about 150
/// threads.
pub fn blocking_allowed<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    std::future::poll_fn(move |cx| on_blocking_thread(|| future.as_mut().poll(cx)))
}

/// Whether the calling thread is inside [`on_blocking_thread`].
pub(crate) fn may_block() -> bool {
    MAY_BLOCK.with(std::cell::Cell::get)
}

/// Runs blocking `f` so that it never holds up the other tasks of the
/// async thread that awaits it, marked [`on_blocking_thread`] (so blocking
/// work inside it runs in place too). `None` when the runtime dropped the
/// task.
///
/// - On a thread that may block already, or outside any tokio runtime, it
///   runs right here.
/// - On a multi-threaded runtime it runs here inside `block_in_place`:
///   tokio hands this thread's other tasks to another thread meanwhile,
///   and the caller saves two hand-overs between threads, which on a busy
///   machine cost more than the work (a query's tail latency while
///   ingesting showed it).
/// - On a current-thread runtime it goes to the blocking pool.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if may_block() {
        return Some(f());
    }
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => Some(f()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            Some(tokio::task::block_in_place(|| on_blocking_thread(f)))
        }
        Ok(_) => tokio::task::spawn_blocking(|| on_blocking_thread(f))
            .await
            .ok(),
    }
}

/// [`run_blocking`] for work that returns the crate's `Result`.
///
/// # Errors
/// `f`'s error, or [`Error::Closed`] when the runtime drops the task.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    run_blocking(f).await.unwrap_or(Err(Error::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocking_work_on_the_one_worker_of_a_runtime_lets_its_other_tasks_run() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Spawned, so that it runs on the runtime's one worker thread.
        let done = rt.spawn(async {
            let (release, released) = std::sync::mpsc::channel::<()>();
            let other = tokio::spawn(async move {
                let _ = release.send(());
            });
            let waited = run_blocking(move || {
                let in_place = may_block();
                (released.recv_timeout(Duration::from_secs(10)), in_place)
            })
            .await;
            other.await.unwrap();
            waited
        });
        let (waited, marked) = rt.block_on(done).unwrap().unwrap();
        assert!(
            waited.is_ok(),
            "the other task did not run while the work blocked"
        );
        assert!(
            marked,
            "the work is not marked as on a thread that may block"
        );
        assert!(!may_block(), "the marker leaked out");
    }

    #[test]
    fn inside_blocking_allowed_blocking_work_runs_in_place_on_its_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let task = rt.spawn(blocking_allowed(async {
            let polled_on = std::thread::current().id();
            // A pending point between two pieces of blocking work.
            let first = run_blocking(|| (std::thread::current().id(), may_block())).await;
            tokio::task::yield_now().await;
            let second = run_blocking(|| (std::thread::current().id(), may_block())).await;
            (polled_on, first, second, std::thread::current().id())
        }));
        let (polled_on, first, second, after) = rt.block_on(task).unwrap();
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first, (polled_on, true), "not run in place");
        assert!(second.1, "the marker did not last across an await");
        assert_eq!(second.0, after, "the second piece left its thread");
        assert!(!may_block(), "the marker leaked out");
        // Outside it, the runtime's worker is not marked.
        let plain = rt.block_on(rt.spawn(async { may_block() })).unwrap();
        assert!(!plain, "the marker leaked into another task");
    }
}
