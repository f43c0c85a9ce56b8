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
//!
//! [`set_thread_nice`] sets the calling thread's own priority, which is how
//! the server puts its threads in order (request threads above bulk work,
//! the projections below it).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a bulk thread works before it offers its core: shorter than the
/// scheduler's slice (0.75 ms at the base), a few units of work long.
pub const TURN: Duration = Duration::from_micros(500);

std::thread_local! {
    /// When the calling thread's current turn started.
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// How many turns the calling thread has ended by yielding.
    static YIELDS: Cell<u64> = const { Cell::new(0) };
}

/// How many times the calling thread has yielded its core through
/// [`end_turn_if_due`]: for tests that check a loop of bulk work offers its
/// core (a store or key store the loop calls can read it on the loop's
/// thread), and for diagnostics.
#[must_use]
pub fn yields() -> u64 {
    YIELDS.with(Cell::get)
}

/// Sets the calling thread's nice value (on Linux a nice value belongs to
/// the thread, and threads it starts inherit it). Raising a priority (a
/// lower value than the thread has) needs `CAP_SYS_NICE`.
///
/// # Errors
/// When the system refuses, or on a system where this is not supported.
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
            .map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// The calling thread's nice value.
///
/// # Errors
/// When the system cannot tell, or on a system where this is not supported.
pub fn thread_nice() -> std::io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Marks the start of the calling thread's turn: call it when the thread
/// wakes to work.
pub fn turn_started() {
    STARTED.with(|s| s.set(Some(Instant::now())));
}

/// Yields the core when the calling thread's turn has lasted [`TURN`], and
/// starts the next turn; returns whether it yielded. A thread that never
/// marked a turn starts one at its first check; its later turns then count
/// from its last yield, sleep included, so after a pause its next check
/// yields once (a `sched_yield` that returns at once when nothing waits).
pub fn end_turn_if_due() -> bool {
    if due(Instant::now()) {
        std::thread::yield_now();
        STARTED.with(|s| s.set(Some(Instant::now())));
        YIELDS.with(|y| y.set(y.get() + 1));
        true
    } else {
        false
    }
}

/// Whether the calling thread's turn has lasted [`TURN`] at `now`; starts
/// a turn at `now` when none is marked.
fn due(now: Instant) -> bool {
    STARTED.with(|s| match s.get() {
        Some(start) => now.saturating_duration_since(start) >= TURN,
        None => {
            s.set(Some(now));
            false
        }
    })
}

/// Runs `future`, ending the polling thread's turn after any poll that
/// leaves it due ([`end_turn_if_due`]): for a runtime of bulk work whose
/// threads mark [`turn_started`] when they unpark. `future` is `Unpin`
/// (boxed, or one that boxes its own, as `blocking_allowed` does), so no
/// second box is needed here.
pub fn take_turns<F: Future + Unpin>(mut future: F) -> impl Future<Output = F::Output> {
    std::future::poll_fn(move |cx| {
        let polled = std::pin::Pin::new(&mut future).poll(cx);
        end_turn_if_due();
        polled
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The clock is passed in: a test that slept and then checked could be
    // descheduled for longer than a turn on a busy machine.
    #[test]
    fn a_turn_is_due_only_once_it_has_lasted_its_length() {
        let start = Instant::now();
        STARTED.with(|s| s.set(Some(start)));
        assert!(!due(start), "a fresh turn is not due");
        assert!(!due(start + TURN / 2), "half a turn is not due");
        assert!(due(start + TURN), "a turn of TURN is due");
    }

    #[test]
    fn yielding_starts_the_next_turn() {
        let old = Instant::now() - 2 * TURN;
        STARTED.with(|s| s.set(Some(old)));
        let before = yields();
        assert!(end_turn_if_due(), "a turn of twice TURN is due");
        assert_eq!(yields(), before + 1, "the yield is counted");
        let next = STARTED.with(Cell::get).unwrap();
        assert!(
            next >= old + 2 * TURN,
            "the next turn starts when the yield returns"
        );
    }

    #[test]
    fn a_thread_without_a_marked_turn_starts_one_at_its_first_check() {
        std::thread::spawn(|| {
            let now = Instant::now();
            assert!(!due(now));
            assert_eq!(STARTED.with(Cell::get), Some(now));
            assert!(due(now + TURN));
        })
        .join()
        .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn take_turns_passes_the_output_through_and_ends_a_due_turn() {
        let old = Instant::now() - 2 * TURN;
        STARTED.with(|s| s.set(Some(old)));
        assert_eq!(take_turns(Box::pin(async { 7 })).await, 7);
        let next = STARTED.with(Cell::get).unwrap();
        assert!(
            next >= old + 2 * TURN,
            "the poll ended the due turn and started one"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_sets_its_own_nice_value_and_no_other() {
        let before = thread_nice().unwrap();
        let lowered = (before + 3).min(19);
        let seen = std::thread::spawn(move || {
            set_thread_nice(lowered).unwrap();
            thread_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, lowered);
        assert_eq!(thread_nice().unwrap(), before, "the caller's stays");
    }
}
