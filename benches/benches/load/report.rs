//! What a phase measured, printed.

use super::*;

/// How long after its due time a query must have been sent to count as
/// queued behind the reader's query before (a thread's sleep overshoots by
/// microseconds, not this).
const QUEUED: Duration = Duration::from_millis(1);

/// Prints what a phase measured; `idle`, the timelines before any ingest,
/// with the first.
#[allow(clippy::too_many_lines)]
pub(crate) fn report(m: &Measured, idle: Option<&[Duration]>, clean: bool) {
    let mut q = m.query_latency.clone();
    q.sort();
    let mut i = m.ingest_latency.clone();
    i.sort();
    let mut idle = idle.map(<[Duration]>::to_vec);
    if let Some(idle) = &mut idle {
        idle.sort();
    }
    let mut health = m.health_latency.clone();
    health.sort();
    let phase = match m.offer {
        Offer::Saturate { clients } => format!(
            "saturating: {clients} clients, each sending its next batch as soon as the last is answered"
        ),
        Offer::Paced {
            events_per_sec,
            in_flight,
        } => format!(
            "paced: {events_per_sec:.0} events/s offered on a fixed schedule, up to {in_flight} requests in flight"
        ),
    };
    println!("\n== load: request latency while ingesting ({phase}): measured in this run ==");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8}  verdict",
        "case", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let p99 = percentile(&q, 0.99);
    let verdict = if q.is_empty() {
        "not measured in this run".to_owned()
    } else {
        format!(
            "{} target p99 < {} ms",
            if p99 < TARGET_P99 && m.query_failures == 0 {
                "PASS"
            } else {
                "MISS"
            },
            TARGET_P99.as_millis()
        )
    };
    let none = Vec::new();
    let rows = [
        ("load/timeline GET /v1/messages/{id}", &q, verdict),
        (
            "load/timeline, before ingest (no load)",
            idle.as_ref().unwrap_or(&none),
            String::new(),
        ),
        (
            "load/healthz GET /healthz (control)",
            &health,
            String::new(),
        ),
        (
            "load/ingest POST /v1/events (100 events)",
            &i,
            String::new(),
        ),
    ];
    for (case, v, verdict) in rows.into_iter().filter(|(_, v, _)| !v.is_empty()) {
        println!(
            "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8}  {verdict}",
            case,
            v.len(),
            ms(percentile(v, 0.50)),
            ms(percentile(v, 0.90)),
            ms(percentile(v, 0.99)),
            ms(v.last().copied().unwrap_or_default()),
        );
    }
    if let Offer::Paced { .. } = m.offer {
        println!(
            "paced: {} events acknowledged within the schedule's window ({} after it); the latest send was {} ms after its batch was due",
            m.in_window(),
            m.after_window,
            ms(m.max_lag)
        );
    }
    println!(
        "events acknowledged: {} in {:.2} s; failed ingest requests: {}{}; failed timeline queries: {}{}",
        m.events,
        m.elapsed.as_secs_f64(),
        m.failures,
        m.first_failure
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        m.query_failures,
        m.first_query_failure
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    );
    if m.per_second.len() >= 10 {
        println!(
            "events acknowledged per second, by 5 s stretch (does the rate hold?): {}",
            m.per_second
                .chunks(5)
                .map(|c| format!("{:.0}", c.iter().sum::<u64>() as f64 / c.len() as f64))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &m.catch_up {
        Ok(took) => println!(
            "projections applied all of it {:.2} s after ingest ended; server stopped with SIGTERM: {}",
            took.as_secs_f64(),
            if clean { "exit 0" } else { "NOT CLEAN" }
        ),
        Err(last) => println!(
            "projections had NOT applied all of it {} s after ingest ended (last answer: {last}); server stopped with SIGTERM: {}",
            CATCH_UP_LIMIT.as_secs(),
            if clean { "exit 0" } else { "NOT CLEAN" }
        ),
    }
    println!(
        "timeline readers: {}",
        match READERS_RAISED.load(Ordering::Relaxed) {
            RAISED_FIFO => "SCHED_FIFO (real-time, lowest priority)".to_owned(),
            RAISED_NICE => format!(
                "nice {READER_NICE} (the system refused SCHED_FIFO: their wake-ups may wait out a time slice)"
            ),
            _ => "not raised (the system refused SCHED_FIFO and nice -10: their own wake-ups count as latency)"
                .to_owned(),
        }
    );
    if let Some((server_cpu, client_cpu)) = m.cpu {
        let wall = m.elapsed.as_secs_f64();
        println!(
            "CPU during ingest ({wall:.1} s wall, {} cores): server {server_cpu:.1} s ({:.0}% of one core), \
             this bench's clients {client_cpu:.1} s ({:.0}%)",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            100.0 * server_cpu / wall,
            100.0 * client_cpu / wall,
        );
    }
    if let Some(stolen) = m.stolen {
        println!(
            "CPU time stolen by the hypervisor during ingest (it stalls every thread at once): {:.0} ms",
            stolen * 1000.0
        );
    }
    if let Some(&(_, total)) = m.server_timeline.last()
        && total > 0
    {
        println!(
            "timeline queries as the server timed them (share answered within each bound): {}",
            m.server_timeline
                .iter()
                .filter(|(le, _)| le.is_finite() && *le <= 0.1)
                .map(|(le, n)| format!(
                    "{} ms {:.2}%",
                    le * 1000.0,
                    100.0 * *n as f64 / total as f64
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !m.stolen_samples.is_empty() && !m.query_latency.is_empty() {
        let stolen: Vec<Duration> = m
            .late_queries
            .iter()
            .filter(|(due, took, _)| m.stolen_samples.during(*due, *due + *took))
            .map(|(_, took, _)| *took)
            .collect();
        // A reader sends one query at a time: a query sent well after it was
        // due waited for the one before, so its lateness is that one's.
        let queued = m
            .late_queries
            .iter()
            .filter(|(_, _, behind)| *behind > QUEUED)
            .count();
        println!(
            "timeline queries over {} ms: {} of {} ({:.2}%); of them, time was stolen by the hypervisor while {} waited; p99 leaving those out: {} ms (where the tail comes from, not the target's measure)",
            TARGET_P99.as_millis(),
            m.late_queries.len(),
            m.query_latency.len(),
            100.0 * m.late_queries.len() as f64 / m.query_latency.len() as f64,
            stolen.len(),
            ms(percentile(&without(&m.query_latency, &stolen), 0.99)),
        );
        println!(
            "of the timeline queries over {} ms, {} were sent over {} ms after they were due, behind the reader's query before; {} were sent on time",
            TARGET_P99.as_millis(),
            queued,
            QUEUED.as_millis(),
            m.late_queries.len() - queued,
        );
        let mut episodes = episodes(&m.late_queries);
        episodes.sort_by_key(|e| std::cmp::Reverse(e.1));
        let top: usize = episodes.iter().take(10).map(|e| e.1).sum();
        println!(
            "they came in {} episodes (late queries due within {} ms of each other); the 10 largest held {} of them ({:.0}%): {}",
            episodes.len(),
            EPISODE_GAP.as_millis(),
            top,
            100.0 * top as f64 / m.late_queries.len().max(1) as f64,
            episodes
                .iter()
                .take(10)
                .map(|(at, n)| format!("{:.1} s: {n}", at.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    for (kind, slow) in [
        ("timeline queries", &m.slow_queries),
        ("/healthz requests", &m.slow_health),
    ] {
        if slow.is_empty() {
            continue;
        }
        let mut slow = slow.clone();
        slow.sort();
        println!(
            "{kind} over {} ms (start after ingest began: duration): {}",
            SLOW.as_millis(),
            slow.iter()
                .take(20)
                .map(|(at, took)| format!("{:.2} s: {} ms", at.as_secs_f64(), took.as_millis()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The figures of a long run: whether the rate holds as the log grows,
/// against the in-process rate, the server's peak memory, and its restart.
pub(crate) fn report_growth(
    m: &Measured,
    peak_rss: Option<u64>,
    restart: Duration,
    base_rate: f64,
) {
    let minutes: Vec<f64> = m
        .per_second
        .chunks_exact(60)
        .map(|c| c.iter().sum::<u64>() as f64 / 60.0)
        .collect();
    println!("\n== load: over the run ==");
    if !minutes.is_empty() {
        println!(
            "events acknowledged per second, by minute: {}",
            minutes
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if minutes.len() >= 10 {
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&minutes[..5]), mean(&minutes[minutes.len() - 5..]));
        println!(
            "rate in the last 5 minutes / the first 5: {last:.0} / {first:.0} = {:.2} (target >= 0.85: {})",
            last / first,
            if last / first >= 0.85 { "PASS" } else { "MISS" }
        );
    }
    let rate = m.events as f64 / m.elapsed.as_secs_f64();
    println!(
        "HTTP ingest / in-process baseline: {rate:.0} / {base_rate:.0} = {:.2} (target >= 0.5: {})",
        rate / base_rate,
        if rate / base_rate >= 0.5 {
            "PASS"
        } else {
            "MISS"
        }
    );
    match peak_rss {
        Some(bytes) => println!(
            "server peak resident memory (VmHWM): {} MiB (target <= 1024 MiB: {})",
            bytes >> 20,
            if bytes <= 1 << 30 { "PASS" } else { "MISS" }
        ),
        None => println!("server peak resident memory: not read"),
    }
    println!(
        "restart on this run's data: listening after {:.2} s (target <= 2 s: {})",
        restart.as_secs_f64(),
        if restart <= Duration::from_secs(2) {
            "PASS"
        } else {
            "MISS"
        }
    );
}

/// How close in due time two late queries must be to belong to one
/// episode: a few periods of the readers' schedule.
const EPISODE_GAP: Duration = Duration::from_millis(10);

/// Late queries grouped into episodes: runs whose due times are within
/// [`EPISODE_GAP`] of the one before; each as (its first due time, how
/// many).
fn episodes(late: &[(Duration, Duration, Duration)]) -> Vec<(Duration, usize)> {
    let mut due: Vec<Duration> = late.iter().map(|(d, _, _)| *d).collect();
    due.sort();
    let mut out: Vec<(Duration, usize)> = Vec::new();
    let mut last: Option<Duration> = None;
    for d in due {
        match (last, out.last_mut()) {
            (Some(l), Some(e)) if d - l <= EPISODE_GAP => e.1 += 1,
            _ => out.push((d, 1)),
        }
        last = Some(d);
    }
    out
}

/// `all`, sorted, with one sample of each of `left_out` taken away (each
/// is in it).
fn without(all: &[Duration], left_out: &[Duration]) -> Vec<Duration> {
    let mut counts = std::collections::HashMap::<Duration, usize>::new();
    for d in left_out {
        *counts.entry(*d).or_default() += 1;
    }
    let mut kept: Vec<Duration> = all
        .iter()
        .copied()
        .filter(|d| match counts.get_mut(d) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect();
    kept.sort();
    kept
}
