//! One measured phase: ingest clients, timeline readers, what they counted.

use super::*;

/// What one ingest task counted.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) events: u64,
    pub(crate) max_lag: Duration,
    pub(crate) failures: u64,
    pub(crate) first_failure: Option<String>,
    pub(crate) latency: Vec<Duration>,
}

/// The server under load and what the clients send it.
pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) metrics_base: String,
    /// Each tenant's key (ingest, read), in the generator's order.
    pub(crate) keys: Vec<String>,
    /// The first key, for `GET /v1/admin/projections`.
    pub(crate) admin_key: String,
    pub(crate) feed: Feed,
    /// The messages whose timelines the readers ask for: (tenant, id).
    pub(crate) messages: Vec<(usize, String)>,
}

impl Target {
    /// A random message of [`Target::messages`] (from an xorshift64
    /// state): its timeline's URL and its tenant's key.
    pub(crate) fn random_timeline(&self, seed: &mut u64) -> (String, &str) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let len = self.messages.len().max(1) as u64;
        let (tenant, id) = &self.messages[usize::try_from(*seed % len).unwrap_or(0)];
        (
            format!("{}/v1/messages/{id}", self.base),
            &self.keys[*tenant],
        )
    }
}

/// What a phase measured.
pub(crate) struct Measured {
    pub(crate) offer: Offer,
    /// Events acknowledged, in all.
    pub(crate) events: u64,
    /// How late a paced batch was sent after it was due, at worst.
    pub(crate) max_lag: Duration,
    /// From the first send to the last answer.
    pub(crate) elapsed: Duration,
    pub(crate) failures: u64,
    pub(crate) first_failure: Option<String>,
    pub(crate) ingest_latency: Vec<Duration>,
    pub(crate) query_latency: Vec<Duration>,
    pub(crate) query_failures: u64,
    /// Timeline queries of at least [`SLOW`]: when they began (since the
    /// ingest began) and how long they took.
    pub(crate) slow_queries: Vec<(Duration, Duration)>,
    /// Timeline queries over the target ([`TARGET_P99`]): when they were
    /// due (since the ingest began), how long they took from then, and how
    /// long after it they were sent (waiting for the reader's query before).
    pub(crate) late_queries: Vec<(Duration, Duration, Duration)>,
    /// The hypervisor's steal counter through the ingest phase.
    pub(crate) stolen_samples: mailledger_benches::StolenSamples,
    /// `GET /healthz` (no storage) at the same time, as a control.
    pub(crate) health_latency: Vec<Duration>,
    pub(crate) slow_health: Vec<(Duration, Duration)>,
    pub(crate) first_query_failure: Option<String>,
    pub(crate) catch_up: Result<Duration, String>,
    /// CPU seconds (user + system) of the server and of this bench's
    /// process during the ingest phase.
    pub(crate) cpu: Option<(f64, f64)>,
    /// CPU seconds the hypervisor took from this machine during the ingest
    /// phase (`/proc/stat`'s steal).
    pub(crate) stolen: Option<f64>,
    /// The server's own histogram of timeline queries during the ingest
    /// phase (from accepting the request to the response, not counting
    /// the network and the client): (upper bound in seconds, count).
    pub(crate) server_timeline: Vec<(f64, u64)>,
    /// Events acknowledged in each second of the phase.
    pub(crate) per_second: Vec<u64>,
    /// Events acknowledged after it (requests still in flight at its end).
    pub(crate) after_window: u64,
}

impl Measured {
    /// Events acknowledged within the phase's time (answers that came
    /// later are left out, so a paced phase's rate is the rate the server
    /// kept up with, not the schedule's).
    pub(crate) fn in_window(&self) -> u64 {
        self.per_second.iter().sum()
    }
}

/// How long the projections may take to apply what was acknowledged once
/// ingest ends, before the bench reports them behind and goes on.
pub(crate) const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);

/// The nice value of the timeline readers, where the system allows it.
pub(crate) const READER_NICE: i32 = -10;
/// How far every reader got in [`raise_priority`], the least of them
/// (reported): [`RAISED_FIFO`], [`RAISED_NICE`] or 0 (not raised).
pub(crate) static READERS_RAISED: AtomicU8 = AtomicU8::new(RAISED_FIFO);
/// A reader runs as `SCHED_FIFO` at the lowest real-time priority.
pub(crate) const RAISED_FIFO: u8 = 2;
/// A reader runs at nice [`READER_NICE`].
pub(crate) const RAISED_NICE: u8 = 1;

/// Raises the calling thread's CPU priority where the system allows it
/// (root, or `CAP_SYS_NICE`): to `SCHED_FIFO` at the lowest real-time
/// priority, else to nice [`READER_NICE`]; returns how far it got.
///
/// The readers stand for clients on other machines: at the server's
/// priority, on this shared box, each reader's own wake-ups (when a query
/// is due, when its answer arrives) would wait for a core behind the
/// server's ingest work and count as the server's latency. A nice value is
/// not enough under Linux's EEVDF scheduler: a woken thread, whatever its
/// weight, waits for the running one to finish its time slice, and on a
/// kernel without preemption (this machine's: a 250 Hz tick) until the
/// next tick, up to 4 ms (`perf sched` showed the nice -10 readers waiting
/// up to 2 ms at p99). A real-time reader takes the core at once. The server's
/// threads, the query's included, keep their priority, so every wait of
/// the server still counts.
pub(crate) fn raise_priority() -> u8 {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        if set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, fifo).is_ok() {
            return RAISED_FIFO;
        }
        if rustix::process::setpriority_process(Some(rustix::thread::gettid()), READER_NICE).is_ok()
        {
            return RAISED_NICE;
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// The warm-up: [`WARM_BATCHES`] batches of the traffic, whose sent
/// messages are the ones the readers ask for; then waits until the
/// projections have applied them, and measures timelines with nothing else
/// running, for comparison.
pub(crate) async fn warm_up(client: &HttpClient, target: &mut Target) -> Vec<Duration> {
    let mut messages = Vec::new();
    for _ in 0..WARM_BATCHES {
        let (tenant, body) = target.feed.next_body();
        messages.extend(sent_messages(&body).into_iter().map(|m| (tenant, m)));
        ingest(client, &target.base, &target.keys[tenant], body)
            .await
            .expect("warm-up batch");
    }
    assert!(!messages.is_empty(), "the warm-up sent no message");
    target.messages = messages;
    if let Err(last) = caught_up(
        client,
        &target.base,
        &target.admin_key,
        Duration::from_secs(60),
    )
    .await
    {
        panic!("the projections did not apply the warm-up within 60 s: {last}");
    }
    let mut idle_latency = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..500 {
        let (url, key) = target.random_timeline(&mut seed);
        let t = Instant::now();
        if let Ok((200, _)) = send(client, "GET", &url, key, None).await {
            idle_latency.push(t.elapsed());
        }
    }
    idle_latency
}

/// How a phase offers its batches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Offer {
    /// `clients` requests in flight, each sent as soon as the one before
    /// it is answered: the most the server takes.
    Saturate { clients: usize },
    /// Batches due on a fixed schedule of `events_per_sec`, sent when due
    /// by up to `in_flight` requests at once, whatever the answers' pace.
    Paced {
        events_per_sec: f64,
        in_flight: usize,
    },
}

/// Up to this many requests of a paced phase are in flight; a stall of the
/// server holds back sends only once this many wait (at 2 ms a batch, 128
/// ms of answers).
pub(crate) const PACED_IN_FLIGHT: usize = 64;

/// One phase: `secs` of ingest of the target's traffic as `offer` says,
/// with the timeline readers and the `/healthz` control running
/// throughout.
#[allow(clippy::too_many_lines)]
pub(crate) async fn phase(
    client: &HttpClient,
    target: &Arc<Target>,
    secs: u64,
    offer: Offer,
    query_rate: u64,
    server_pid: u32,
) -> Measured {
    let client = client.clone();
    let histogram_before = timeline_histogram(&client, &target.metrics_base).await;
    let run = Duration::from_secs(secs);
    let server_pid = server_pid.to_string();
    let cpu_before =
        mailledger_benches::cpu_secs(&server_pid).zip(mailledger_benches::cpu_secs("self"));
    let stolen_before = mailledger_benches::stolen_secs();
    // A bound besides the clock: 4x the target rate.
    let max_batches = secs * 4 * TARGET_EVENTS_PER_SEC as u64 / BATCH as u64;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (tasks, interval) = match offer {
        Offer::Saturate { clients } => (clients, None),
        Offer::Paced {
            events_per_sec,
            in_flight,
        } => (
            in_flight,
            Some(Duration::from_secs_f64(BATCH as f64 / events_per_sec)),
        ),
    };
    let start = Instant::now();
    let window_end = start + run;
    let stolen_sampler = stolen::sample(start, Arc::clone(&done));
    // Events acknowledged in each second of the phase, and in one more
    // slot those answered after it.
    let per_second: Arc<Vec<AtomicU64>> = Arc::new((0..=secs).map(|_| AtomicU64::new(0)).collect());
    let ingesters: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, target, next) = (client.clone(), Arc::clone(target), Arc::clone(&next));
            let per_second = Arc::clone(&per_second);
            tokio::spawn(async move {
                let mut t = Tally::default();
                while start.elapsed() < run {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= max_batches {
                        break;
                    }
                    if let Some(interval) = interval {
                        let due = start + interval * u32::try_from(n).unwrap_or(u32::MAX);
                        if due >= window_end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        t.max_lag = t.max_lag.max(due.elapsed());
                    }
                    let (tenant, body) = target.feed.next_body();
                    let sent = Instant::now();
                    match ingest(&client, &target.base, &target.keys[tenant], body).await {
                        Ok(()) => {
                            t.latency.push(sent.elapsed());
                            t.events += BATCH as u64;
                            let second = usize::try_from(start.elapsed().as_secs())
                                .unwrap_or(usize::MAX)
                                .min(per_second.len() - 1);
                            per_second[second].fetch_add(BATCH as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            t.failures += 1;
                            t.first_failure.get_or_insert(e);
                        }
                    }
                }
                t
            })
        })
        .collect();
    // Timeline readers: two paced threads, each asking for the timeline of
    // a random message sent in the warm-up; and a third asking for /healthz at the same pace, a
    // control that touches no storage. Each has a thread, a runtime and a
    // client of its own, as a dashboard is not the process that forwards
    // webhooks (on the ingesters' runtime a reply would wait for ingest
    // tasks' turns), and paces itself with the thread's sleep, which wakes
    // within microseconds, not with tokio's timer, whose millisecond ticks
    // would add up to a millisecond to each query.
    let period = Duration::from_secs_f64(2.0 / query_rate.max(1) as f64);
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (target, done) = (Arc::clone(target), Arc::clone(&done));
            std::thread::spawn(move || {
                READERS_RAISED.fetch_min(raise_priority(), Ordering::Relaxed);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("reader runtime");
                let client = self::client();
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (r + 1);
                let (mut latency, mut failures, mut first_failure) = (Vec::new(), 0u64, None);
                let mut slow = Vec::new();
                let mut late = Vec::new();
                let mut due = Instant::now();
                while !done.load(Ordering::Relaxed)
                    && start.elapsed() < run + Duration::from_secs(60)
                {
                    // Each query is timed from when it was due, not from
                    // when it was sent: a stall that delays sends counts
                    // in full (no coordinated omission).
                    due += period;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let behind = due.elapsed();
                    let (url, key) = if r == 2 {
                        (format!("{}/healthz", target.base), "")
                    } else {
                        target.random_timeline(&mut seed)
                    };
                    match rt.block_on(send(&client, "GET", &url, key, None)) {
                        Ok((200, body)) if body.starts_with(b"{") => {
                            let took = due.elapsed();
                            if took >= SLOW && slow.len() < 100 {
                                slow.push((due.saturating_duration_since(start), took));
                            }
                            if took > TARGET_P99 {
                                late.push((due.saturating_duration_since(start), took, behind));
                            }
                            latency.push(took);
                        }
                        other => {
                            failures += 1;
                            first_failure.get_or_insert(format!("{other:?}"));
                        }
                    }
                }
                (r, latency, failures, first_failure, slow, late)
            })
        })
        .collect();
    let mut m = Measured {
        offer,
        events: 0,
        max_lag: Duration::ZERO,
        elapsed: Duration::ZERO,
        failures: 0,
        first_failure: None,
        ingest_latency: Vec::new(),
        query_latency: Vec::new(),
        query_failures: 0,
        slow_queries: Vec::new(),
        late_queries: Vec::new(),
        stolen_samples: mailledger_benches::StolenSamples::default(),
        health_latency: Vec::new(),
        slow_health: Vec::new(),
        first_query_failure: None,
        catch_up: Ok(Duration::ZERO),
        cpu: None,
        stolen: None,
        server_timeline: Vec::new(),
        per_second: Vec::new(),
        after_window: 0,
    };
    for t in ingesters {
        let t = t.await.expect("ingest task");
        m.events += t.events;
        m.max_lag = m.max_lag.max(t.max_lag);
        m.failures += t.failures;
        m.first_failure = m.first_failure.or(t.first_failure);
        m.ingest_latency.extend(t.latency);
    }
    m.elapsed = start.elapsed();
    let mut counted: Vec<u64> = per_second
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    m.after_window = counted.pop().unwrap_or(0);
    m.per_second = counted;
    m.cpu = cpu_before
        .zip(mailledger_benches::cpu_secs(&server_pid).zip(mailledger_benches::cpu_secs("self")))
        .map(|((s0, c0), (s1, c1))| (s1 - s0, c1 - c0));
    m.stolen = stolen_before
        .zip(mailledger_benches::stolen_secs())
        .map(|(a, b)| b - a);
    done.store(true, Ordering::Relaxed);
    m.stolen_samples = stolen_sampler.join().expect("steal sampler");
    let readers: Vec<_> = readers
        .into_iter()
        .map(|t| t.join().expect("reader thread"))
        .collect();
    let histogram_after = timeline_histogram(&client, &target.metrics_base).await;
    m.server_timeline = histogram_after
        .iter()
        .map(|&(le, n)| {
            let before = histogram_before
                .iter()
                .find(|b| b.0 == le)
                .map_or(0, |b| b.1);
            (le, n.saturating_sub(before))
        })
        .collect();
    for (r, latency, failures, first, slow, late) in readers {
        if r == 2 {
            m.health_latency = latency;
            m.query_failures += failures;
            m.first_query_failure = m.first_query_failure.or(first);
            m.slow_health = slow;
            continue;
        }
        m.query_latency.extend(latency);
        m.slow_queries.extend(slow);
        m.late_queries.extend(late);
        m.query_failures += failures;
        m.first_query_failure = m.first_query_failure.or(first);
    }
    // How long the projections needed to apply everything acknowledged.
    m.catch_up = caught_up(&client, &target.base, &target.admin_key, CATCH_UP_LIMIT).await;
    m
}
