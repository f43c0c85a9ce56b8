//! When the hypervisor took this machine's CPUs, sampled through a phase,
//! so that each slow timeline query can be told apart by whether time was
//! stolen while it waited: that stalls every thread at once, server and
//! client alike, and no code of the server can avoid it.

use mailledger_benches::StolenSamples;

use super::*;

/// Samples the steal counter on a thread of its own, raised like the
/// readers, from `start` until `done`; empty where the system has no such
/// counter.
pub(crate) fn sample(
    start: Instant,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<StolenSamples> {
    std::thread::spawn(move || {
        let _ = phase::raise_priority();
        let mut samples = StolenSamples::default();
        let mut due = Instant::now();
        while !done.load(Ordering::Relaxed) {
            let Some(s) = mailledger_benches::stolen_secs() else {
                break;
            };
            samples.push(start.elapsed(), s);
            due += StolenSamples::EVERY;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        samples
    })
}
