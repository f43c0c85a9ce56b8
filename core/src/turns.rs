//! Bulk work that hands its core over now and then, so that a thread that
//! woke for a short job (a query's request) does not wait behind it.
//!
//! Linux's EEVDF scheduler lets the running thread finish its time slice
//! before a thread that woke gets the core, and a kernel built without
//! preemption (`preempt=none`, a 250 Hz tick: the project's machine) looks
//! again only at its next tick. Under a stream of appends the ingest pool
//! and the log's writer run for milliseconds without sleeping, and a query
//! could wait up to a tick (4 ms) for a core behind them (`perf sched`: the
//! request threads' wait for a core reached 6 ms, and when they waited,
//! the ingest pool and the writer held the core most often).
//!
//! A bulk thread marks where its turn starts ([`turn_started`]: when it
//! wakes) and, between units of work, calls [`end_turn_if_due`], which
//! yields the core (`sched_yield`) once the turn has lasted [`TURN`]. With
//! nothing else waiting for the core the call returns at once; otherwise
//! the waiting threads run first.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a bulk thread works before it offers its core: shorter than the
/// scheduler's slice (0.75 ms at the base), a few units of work long.
pub const TURN: Duration = Duration::from_micros(500);

std::thread_local! {
    /// When the calling thread's current turn started.
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Marks the start of the calling thread's turn: call it when the thread
/// wakes to work.
pub fn turn_started() {
    STARTED.with(|s| s.set(Some(Instant::now())));
}

/// Yields the core when the calling thread's turn has lasted [`TURN`], and
/// starts the next turn; returns whether it yielded. A thread that never
/// marked a turn starts one here.
pub fn end_turn_if_due() -> bool {
    STARTED.with(|s| {
        let now = Instant::now();
        match s.get() {
            Some(start) if now.duration_since(start) >= TURN => {
                std::thread::yield_now();
                s.set(Some(Instant::now()));
                true
            }
            Some(_) => false,
            None => {
                s.set(Some(now));
                false
            }
        }
    })
}

/// Runs `future`, ending the polling thread's turn after any poll that
/// leaves it due ([`end_turn_if_due`]): for a runtime of bulk work whose
/// threads mark [`turn_started`] when they unpark.
pub fn take_turns<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    std::future::poll_fn(move |cx| {
        let polled = future.as_mut().poll(cx);
        end_turn_if_due();
        polled
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_ends_only_once_it_has_lasted_its_length() {
        turn_started();
        assert!(!end_turn_if_due(), "a fresh turn is not due");
        std::thread::sleep(TURN);
        assert!(end_turn_if_due(), "a turn of TURN is due");
        assert!(!end_turn_if_due(), "yielding started the next turn");
    }

    #[test]
    fn a_thread_without_a_marked_turn_starts_one_at_its_first_check() {
        std::thread::spawn(|| {
            assert!(!end_turn_if_due());
            std::thread::sleep(TURN);
            assert!(end_turn_if_due());
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn take_turns_passes_the_output_through() {
        assert_eq!(take_turns(async { 7 }).await, 7);
    }
}
