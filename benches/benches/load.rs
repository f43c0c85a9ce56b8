//! Load: the release `mailledger serve` on a loopback port, durable (sync)
//! appends, fed canonical events over HTTP/1.1 keep-alive in batches of 100
//! by concurrent clients for a fixed time, while other clients ask for
//! message timelines (`GET /v1/messages/{id}`) of messages ingested before.
//! Targets: at least 50,000 events/s, timeline p99 under 5 ms at the same
//! time. Baseline,
//! measured in the same run before the server starts: the same events
//! (built as JSON, parsed, sealed, appended) through an in-process
//! `EmailLedger::append` on fjall with sync appends, batches of 100 from 64
//! tasks.
//!
//! ```sh
//! cargo bench -p mailledger-benches --bench load
//! ```
//!
//! The server is the release binary `target/release/mailledger`: the bench
//! runs `cargo build --release -p mailledger` first (a no-op when it is up
//! to date), or uses `MAILLEDGER_BIN` when set. Knobs (environment):
//! `MAILLEDGER_LOAD_SECS` (ingest time, default 30: long enough for the
//! stores to flush and merge their tables several times, which stalls
//! reads; 10 s runs, the default before 2026-11-25, met few of those
//! stalls and measured a lower p99), `MAILLEDGER_LOAD_CLIENTS`
//! (concurrent ingest clients, default 16), `MAILLEDGER_LOAD_PACE` (events/s:
//! after the saturating phase, a second phase offers batches on a fixed
//! schedule at this rate, such as 51000, for `MAILLEDGER_LOAD_PACED_SECS`
//! (default the same time), with up to 64 requests in flight, and reports
//! the rate acknowledged within the schedule's window, how late sends fell
//! behind it and the latencies at that load; default 0, no such phase),
//! `MAILLEDGER_LOAD_QUERY_RATE`
//! (timeline queries per second, default 500), `MAILLEDGER_LOAD_BASELINE_SECS`
//! (default 5). The timeline readers run as `SCHED_FIFO`, or at nice -10,
//! where the system allows it ([`raise_priority`] says why). The server runs with the
//! per-key rate limit off
//! (`--rate-limit-per-second 0`); everything else is the default
//! configuration. Traffic goes to 127.0.0.1 only; the server is stopped with
//! SIGTERM at the end and killed if the bench fails. Client, server and disk
//! share the machine, so the figures are those of one box doing both sides.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mailledger_benches::{percentile, summary_header, summary_line};
use mailledger_core::Durability;
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{CanonicalEvent, EmailLedger, parse_event};
use mailledger_core::keys::FileKeyStore;

/// Events per request (and per in-process append).
const BATCH: usize = 100;
/// Distinct recipients: their keys are made during the warm-up.
const CONTACTS: u64 = 5_000;
/// Messages ingested before the load, the ones whose timelines are asked.
const WARM_MESSAGES: u64 = CONTACTS;
/// In-process appenders of the baseline.
const BASELINE_TASKS: usize = 64;
const TARGET_EVENTS_PER_SEC: f64 = 50_000.0;
const TARGET_P99: Duration = Duration::from_millis(5);
/// Timeline queries this slow are listed with the time they began.
const SLOW: Duration = Duration::from_millis(50);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ events

/// A fresh event id: a UUIDv7 of the current time whose other bits count
/// up (each run starts a fresh log, so ids need only differ within it).
/// `Uuid::now_v7` asks the kernel for randomness once per id, which was a
/// tenth of this bench's own CPU, taken from the server it shares the
/// cores with.
fn event_id() -> uuid::Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bits = [0u8; 10];
    bits[2..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// One canonical event.
fn event(kind: &str, message: &str, contact: u64, second: u64) -> String {
    let id = event_id();
    let (mm, ss) = ((second / 60) % 60, second % 60);
    let extra = if kind == "delivered" {
        r#","smtp_response":"250 2.0.0 OK queued as 4Bq1x2","mx_host":"mx.example.org""#
    } else {
        ""
    };
    format!(
        r#"{{"id":"{id}","type":"{kind}","message_id":"{message}","recipient":"c{contact}@example.org","occurred_at":"2026-11-22T10:{mm:02}:{ss:02}Z","sending_domain":"mail.example.com","tags":["load"],"campaign":"bench"{extra}}}"#
    )
}

/// The events of one batch: `BATCH / 2` messages, each `sent` then
/// `delivered`, named `{prefix}-{n}-{i}`, recipients spread over
/// [`CONTACTS`].
fn batch_events(prefix: &str, n: u64) -> Vec<String> {
    let mut out = Vec::with_capacity(BATCH);
    for i in 0..(BATCH / 2) as u64 {
        let message = format!("{prefix}-{n}-{i}");
        let contact = (n * (BATCH as u64 / 2) + i) % CONTACTS;
        out.push(event("sent", &message, contact, n + i));
        out.push(event("delivered", &message, contact, n + i + 1));
    }
    out
}

/// The request body of one batch, `{"events": [...]}`, built in one buffer.
fn batch_body(prefix: &str, n: u64) -> String {
    let mut body = String::with_capacity(BATCH * 400);
    body.push_str(r#"{"events":["#);
    for (i, e) in batch_events(prefix, n).iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    body
}

/// One batch, parsed as the server parses it.
fn parse_batch(prefix: &str, n: u64) -> Vec<CanonicalEvent> {
    batch_events(prefix, n)
        .iter()
        .map(|e| parse_event(e).expect("event"))
        .collect()
}

// ---------------------------------------------------------------- baseline

/// In-process appends of the same events: events per second.
fn baseline(rt: &tokio::runtime::Runtime, secs: u64) -> f64 {
    let data = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let keys = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let log = mailledger_benches::ledger("fjall", data.path(), Durability::Sync);
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(ks)));
    // The contacts' keys exist before measuring, as on the server side.
    rt.block_on(async {
        for n in 0..CONTACTS / (BATCH as u64 / 2) {
            email
                .append("default", parse_batch("w", n))
                .await
                .expect("warm-up append");
        }
    });
    let next = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let run = Duration::from_secs(secs);
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..BASELINE_TASKS)
            .map(|_| {
                let (email, next, events) =
                    (Arc::clone(&email), Arc::clone(&next), Arc::clone(&events));
                tokio::spawn(async move {
                    while start.elapsed() < run {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let batch = parse_batch("b", n);
                        email.append("default", batch).await.expect("append");
                        events.fetch_add(BATCH as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    drop(email);
    drop(log);
    events.load(Ordering::Relaxed) as f64 / elapsed
}

// ------------------------------------------------------------------ server

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The release `mailledger` binary, built if needed.
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MAILLEDGER_BIN") {
        return PathBuf::from(p);
    }
    let bin = target_dir().join("release/mailledger");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("load: cargo build --release -p mailledger (the server under test)");
    let built = Command::new(&cargo)
        .args(["build", "--release", "-p", "mailledger"])
        .current_dir(workspace_root())
        .status();
    match built {
        Ok(s) if s.success() => {}
        other => {
            assert!(
                bin.exists(),
                "load: the release server is needed: run `cargo build --release -p mailledger` \
                 (or set MAILLEDGER_BIN); building it failed: {other:?}"
            );
            eprintln!(
                "load: building failed ({other:?}); using the existing {}",
                bin.display()
            );
        }
    }
    assert!(bin.exists(), "load: no {} after building", bin.display());
    bin
}

/// The server this bench started: SIGTERM at the end, SIGKILL on drop if
/// it is still running (a failed bench).
struct Server {
    child: Child,
    addr: String,
    /// The metrics listener's address (`--metrics-listen`).
    metrics: String,
    admin_key: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(bin: &Path, root: &Path) -> Self {
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--keys-dir")
            .arg(root.join("keys"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--rate-limit-per-second",
                "0",
            ])
            .env_remove("MAILLEDGER_CONFIG")
            .env_remove("MAILLEDGER_LOG")
            .env_remove("MAILLEDGER_KEK")
            .env_remove("MAILLEDGER_KEK_FILE")
            .env_remove("MAILLEDGER_DURABILITY")
            .env_remove("MAILLEDGER_LISTEN")
            .env_remove("MAILLEDGER_METRICS_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailledger serve");
        let mut server = Self {
            child,
            addr: String::new(),
            metrics: String::new(),
            admin_key: String::new(),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        let mut err = BufReader::new(server.child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while server.addr.is_empty() {
            line.clear();
            let n = err.read_line(&mut line).expect("server stderr");
            assert!(n > 0, "the server exited: {:?}", server.log);
            server.log.lock().expect("log").push(line.clone());
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                server.metrics = rest.split('/').next().unwrap_or_default().to_owned();
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                server.addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
        // Drain stderr (keeping its last lines for a failure report).
        let log = Arc::clone(&server.log);
        std::thread::spawn(move || {
            for l in err.lines() {
                let Ok(l) = l else { break };
                let mut log = log.lock().expect("log");
                if log.len() >= 200 {
                    log.remove(0);
                }
                log.push(l);
            }
        });
        let mut out = BufReader::new(server.child.stdout.take().expect("stdout"));
        out.read_line(&mut server.admin_key).expect("first key");
        server.admin_key = server.admin_key.trim().to_owned();
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        server
    }

    /// SIGTERM, then waits (bounded) for the exit; true when it exited 0.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `mailledger key create` beside the running server.
fn create_key(bin: &Path, root: &Path) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--keys-dir")
        .arg(root.join("keys"))
        .args(["key", "create", "--scopes", "ingest,read", "--name", "load"])
        .env_remove("MAILLEDGER_KEK")
        .env_remove("MAILLEDGER_KEK_FILE")
        .output()
        .expect("mailledger key create");
    assert!(
        out.status.success(),
        "key create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("key")
        .trim()
        .to_owned()
}

// ------------------------------------------------------------------ client

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// One request; the status and body.
async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    key: &str,
    body: Option<String>,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(body.map_or_else(Bytes::new, Bytes::from)))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

/// The server's own latency histogram of `GET /v1/messages/{id}`, from
/// `/metrics` on the metrics listener at `metrics_base`: (upper bound in
/// seconds, cumulative count) per bucket.
async fn timeline_histogram(client: &HttpClient, metrics_base: &str) -> Vec<(f64, u64)> {
    let Ok((200, body)) = send(client, "GET", &format!("{metrics_base}/metrics"), "", None).await
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| {
            l.starts_with("mailledger_http_request_duration_seconds_bucket")
                && l.contains(r#"route="/v1/messages/{id}""#)
                && l.contains(r#"method="GET""#)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// POSTs one batch; `Ok(())` when all of it was appended.
async fn ingest(client: &HttpClient, base: &str, key: &str, body: String) -> Result<(), String> {
    let url = format!("{base}/v1/events");
    let (status, body) = send(client, "POST", &url, key, Some(body)).await?;
    let text = String::from_utf8_lossy(&body);
    if status == 200 && text.contains(&format!(r#""appended":{BATCH}"#)) {
        Ok(())
    } else {
        Err(format!(
            "{status} {}",
            text.chars().take(300).collect::<String>()
        ))
    }
}

/// Polls `GET path` until it answers 200, for at most `limit`.
async fn wait_for(
    client: &HttpClient,
    base: &str,
    key: &str,
    path: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let url = format!("{base}{path}");
    loop {
        match send(client, "GET", &url, key, None).await {
            Ok((200, _)) => return start.elapsed(),
            other => assert!(
                start.elapsed() < limit,
                "{path} not answered 200 within {limit:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// What one ingest task counted.
#[derive(Default)]
struct Tally {
    events: u64,
    max_lag: Duration,
    failures: u64,
    first_failure: Option<String>,
    latency: Vec<Duration>,
    last_acked: Option<u64>,
}

/// What a phase measured.
struct Measured {
    offer: Offer,
    /// Events acknowledged, in all.
    events: u64,
    /// How late a paced batch was sent after it was due, at worst.
    max_lag: Duration,
    /// From the first send to the last answer.
    elapsed: Duration,
    failures: u64,
    first_failure: Option<String>,
    ingest_latency: Vec<Duration>,
    query_latency: Vec<Duration>,
    query_failures: u64,
    /// Timeline queries of at least [`SLOW`]: when they began (since the
    /// ingest began) and how long they took.
    slow_queries: Vec<(Duration, Duration)>,
    /// `GET /healthz` (no storage) at the same time, as a control.
    health_latency: Vec<Duration>,
    slow_health: Vec<(Duration, Duration)>,
    first_query_failure: Option<String>,
    catch_up: Duration,
    /// CPU seconds (user + system) of the server and of this bench's
    /// process during the ingest phase.
    cpu: Option<(f64, f64)>,
    /// CPU seconds the hypervisor took from this machine during the ingest
    /// phase (`/proc/stat`'s steal).
    stolen: Option<f64>,
    /// The server's own histogram of timeline queries during the ingest
    /// phase (from accepting the request to the response, not counting
    /// the network and the client): (upper bound in seconds, count).
    server_timeline: Vec<(f64, u64)>,
    /// Events acknowledged in each second of the phase.
    per_second: Vec<u64>,
    /// Events acknowledged after it (requests still in flight at its end).
    after_window: u64,
}

impl Measured {
    /// Events acknowledged within the phase's time (answers that came
    /// later are left out, so a paced phase's rate is the rate the server
    /// kept up with, not the schedule's).
    fn in_window(&self) -> u64 {
        self.per_second.iter().sum()
    }
}

/// A random warm-up message's path, from an xorshift64 state.
fn random_warm_message(seed: &mut u64) -> String {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let m = *seed % WARM_MESSAGES;
    let (n, i) = (m / (BATCH as u64 / 2), m % (BATCH as u64 / 2));
    format!("/v1/messages/w-{n}-{i}")
}

/// The nice value of the timeline readers, where the system allows it.
const READER_NICE: i32 = -10;
/// How far every reader got in [`raise_priority`], the least of them
/// (reported): [`RAISED_FIFO`], [`RAISED_NICE`] or 0 (not raised).
static READERS_RAISED: AtomicU8 = AtomicU8::new(RAISED_FIFO);
/// A reader runs as `SCHED_FIFO` at the lowest real-time priority.
const RAISED_FIFO: u8 = 2;
/// A reader runs at nice [`READER_NICE`].
const RAISED_NICE: u8 = 1;

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
fn raise_priority() -> u8 {
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

/// The warm-up: every contact's key, and the messages whose timelines are
/// asked; then waits until the projections show the last of them, and
/// measures timelines with nothing else running, for comparison.
async fn warm_up(client: &HttpClient, base: &str, key: &str) -> Vec<Duration> {
    for n in 0..WARM_MESSAGES / (BATCH as u64 / 2) {
        ingest(client, base, key, batch_body("w", n))
            .await
            .expect("warm-up batch");
    }
    let last = WARM_MESSAGES / (BATCH as u64 / 2) - 1;
    wait_for(
        client,
        base,
        key,
        &format!("/v1/messages/w-{last}-{}", BATCH / 2 - 1),
        Duration::from_secs(60),
    )
    .await;
    let mut idle_latency = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..500 {
        let url = format!("{base}{}", random_warm_message(&mut seed));
        let t = Instant::now();
        if let Ok((200, _)) = send(client, "GET", &url, key, None).await {
            idle_latency.push(t.elapsed());
        }
    }
    idle_latency
}

/// How a phase offers its batches.
#[derive(Debug, Clone, Copy)]
enum Offer {
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
const PACED_IN_FLIGHT: usize = 64;

/// One phase: `secs` of ingest as `offer` says, with the timeline readers
/// and the `/healthz` control running throughout; batches' messages are
/// named `{prefix}-…`.
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
async fn phase(
    client: &HttpClient,
    base: &str,
    metrics_base: &str,
    key: &str,
    secs: u64,
    offer: Offer,
    prefix: &'static str,
    query_rate: u64,
    server_pid: u32,
) -> Measured {
    let (client, base, key) = (client.clone(), base.to_owned(), key.to_owned());
    let histogram_before = timeline_histogram(&client, metrics_base).await;
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
    // Events acknowledged in each second of the phase, and in one more
    // slot those answered after it.
    let per_second: Arc<Vec<AtomicU64>> = Arc::new((0..=secs).map(|_| AtomicU64::new(0)).collect());
    let ingesters: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, base, key, next) =
                (client.clone(), base.clone(), key.clone(), Arc::clone(&next));
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
                    let body = batch_body(prefix, n);
                    let sent = Instant::now();
                    match ingest(&client, &base, &key, body).await {
                        Ok(()) => {
                            t.latency.push(sent.elapsed());
                            t.events += BATCH as u64;
                            let second = usize::try_from(start.elapsed().as_secs())
                                .unwrap_or(usize::MAX)
                                .min(per_second.len() - 1);
                            per_second[second].fetch_add(BATCH as u64, Ordering::Relaxed);
                            t.last_acked = t.last_acked.max(Some(n));
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
    // Timeline readers: two paced threads, each asking for a random
    // warm-up message; and a third asking for /healthz at the same pace, a
    // control that touches no storage. Each has a thread, a runtime and a
    // client of its own, as a dashboard is not the process that forwards
    // webhooks (on the ingesters' runtime a reply would wait for ingest
    // tasks' turns), and paces itself with the thread's sleep, which wakes
    // within microseconds, not with tokio's timer, whose millisecond ticks
    // would add up to a millisecond to each query.
    let period = Duration::from_secs_f64(2.0 / query_rate.max(1) as f64);
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (base, key, done) = (base.clone(), key.clone(), Arc::clone(&done));
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
                let mut due = Instant::now();
                while !done.load(Ordering::Relaxed)
                    && start.elapsed() < run + Duration::from_secs(60)
                {
                    // Each query is timed from when it was due, not from
                    // when it was sent: a stall that delays sends counts
                    // in full (no coordinated omission).
                    due += period;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let url = if r == 2 {
                        format!("{base}/healthz")
                    } else {
                        format!("{base}{}", random_warm_message(&mut seed))
                    };
                    match rt.block_on(send(&client, "GET", &url, &key, None)) {
                        Ok((200, body)) if body.starts_with(b"{") => {
                            let took = due.elapsed();
                            if took >= SLOW && slow.len() < 100 {
                                slow.push((due.saturating_duration_since(start), took));
                            }
                            latency.push(took);
                        }
                        other => {
                            failures += 1;
                            first_failure.get_or_insert(format!("{other:?}"));
                        }
                    }
                }
                (r, latency, failures, first_failure, slow)
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
        health_latency: Vec::new(),
        slow_health: Vec::new(),
        first_query_failure: None,
        catch_up: Duration::ZERO,
        cpu: None,
        stolen: None,
        server_timeline: Vec::new(),
        per_second: Vec::new(),
        after_window: 0,
    };
    let mut last_batch = None;
    for t in ingesters {
        let t = t.await.expect("ingest task");
        m.events += t.events;
        m.max_lag = m.max_lag.max(t.max_lag);
        m.failures += t.failures;
        m.first_failure = m.first_failure.or(t.first_failure);
        m.ingest_latency.extend(t.latency);
        last_batch = last_batch.max(t.last_acked);
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
    let readers: Vec<_> = readers
        .into_iter()
        .map(|t| t.join().expect("reader thread"))
        .collect();
    let histogram_after = timeline_histogram(&client, metrics_base).await;
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
    for (r, latency, failures, first, slow) in readers {
        if r == 2 {
            m.health_latency = latency;
            m.query_failures += failures;
            m.first_query_failure = m.first_query_failure.or(first);
            m.slow_health = slow;
            continue;
        }
        m.query_latency.extend(latency);
        m.slow_queries.extend(slow);
        m.query_failures += failures;
        m.first_query_failure = m.first_query_failure.or(first);
    }
    // How long the projections needed to show the last batch acknowledged.
    if let Some(probe) = last_batch {
        m.catch_up = wait_for(
            &client,
            &base,
            &key,
            &format!("/v1/messages/{prefix}-{probe}-{}", BATCH / 2 - 1),
            Duration::from_secs(120),
        )
        .await;
    }
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test") {
        println!("load: skipped (run it with `cargo bench -p mailledger-benches --bench load`)");
        return;
    }
    let secs: u64 = env_or("MAILLEDGER_LOAD_SECS", 30);
    let clients: usize = env_or("MAILLEDGER_LOAD_CLIENTS", 16);
    let query_rate: u64 = env_or("MAILLEDGER_LOAD_QUERY_RATE", 500);
    let baseline_secs: u64 = env_or("MAILLEDGER_LOAD_BASELINE_SECS", 5);
    let pace: f64 = env_or("MAILLEDGER_LOAD_PACE", 0.0);
    let paced_secs: u64 = env_or("MAILLEDGER_LOAD_PACED_SECS", secs);

    let bin = server_binary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    eprintln!(
        "load: baseline: in-process EmailLedger::append, {BASELINE_TASKS} tasks, {baseline_secs} s"
    );
    let base_rate = baseline(&rt, baseline_secs);

    let root = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let mut server = Server::start(&bin, root.path());
    assert!(server.admin_key.starts_with("mlk_"), "no first key printed");
    let key = create_key(&bin, root.path());
    eprintln!(
        "load: {} at http://{}: {clients} clients x batches of {BATCH} for {secs} s, {query_rate} timeline queries/s",
        bin.display(),
        server.addr
    );
    let base = format!("http://{}", server.addr);
    let metrics_base = format!("http://{}", server.metrics);
    let pid = server.child.id();
    let (idle, saturated, paced) = rt.block_on(async {
        let client = client();
        let idle = warm_up(&client, &base, &key).await;
        let saturated = phase(
            &client,
            &base,
            &metrics_base,
            &key,
            secs,
            Offer::Saturate { clients },
            "l",
            query_rate,
            pid,
        )
        .await;
        let paced = if pace > 0.0 && paced_secs > 0 {
            eprintln!(
                "load: paced: {pace:.0} events/s offered for {paced_secs} s, up to {PACED_IN_FLIGHT} requests in flight"
            );
            Some(
                phase(
                    &client,
                    &base,
                    &metrics_base,
                    &key,
                    paced_secs,
                    Offer::Paced {
                        events_per_sec: pace,
                        in_flight: PACED_IN_FLIGHT,
                    },
                    "p",
                    query_rate,
                    pid,
                )
                .await,
            )
        } else {
            None
        };
        (idle, saturated, paced)
    });
    let clean = server.stop();
    if !clean {
        let server_log = server.log.lock().map(|l| l.join("")).unwrap_or_default();
        eprintln!("server log:\n{server_log}");
    }
    drop(server);

    summary_header(&format!(
        "load: POST /v1/events over loopback (release server, sync, batches of {BATCH}) \
         vs in-process EmailLedger::append (fjall, sync, batches of {BATCH}, {BASELINE_TASKS} tasks)"
    ));
    summary_line(
        &format!("load/http-ingest-b{BATCH}-c{clients}"),
        Some(saturated.events as f64 / saturated.elapsed.as_secs_f64()),
        Some(base_rate),
        Some(TARGET_EVENTS_PER_SEC),
        None,
    );
    if let Some(p) = &paced {
        summary_line(
            &format!("load/http-ingest-b{BATCH}-paced{pace:.0}"),
            Some(p.in_window() as f64 / paced_secs as f64),
            Some(base_rate),
            Some(TARGET_EVENTS_PER_SEC),
            None,
        );
    }
    summary_line(
        &format!("load/inprocess-append-b{BATCH}-w{BASELINE_TASKS}"),
        Some(base_rate),
        None,
        None,
        None,
    );

    let both = |m: &Measured, rate: f64| {
        let p99 = {
            let mut q = m.query_latency.clone();
            q.sort();
            percentile(&q, 0.99)
        };
        rate >= TARGET_EVENTS_PER_SEC
            && m.failures == 0
            && m.query_failures == 0
            && !m.query_latency.is_empty()
            && p99 < TARGET_P99
    };
    report(&saturated, Some(&idle), clean);
    let mut verdict = format!(
        "both targets (ingest >= {TARGET_EVENTS_PER_SEC:.0}/s and timeline p99 < {} ms at once): saturating {}",
        TARGET_P99.as_millis(),
        if both(
            &saturated,
            saturated.events as f64 / saturated.elapsed.as_secs_f64()
        ) {
            "PASS"
        } else {
            "MISS"
        }
    );
    if let Some(p) = &paced {
        report(p, None, clean);
        verdict.push_str(&format!(
            ", paced {}",
            if both(p, p.in_window() as f64 / paced_secs as f64) {
                "PASS"
            } else {
                "MISS"
            }
        ));
    }
    println!("\n{verdict}");
}

/// Prints what a phase measured; `idle`, the timelines before any ingest,
/// with the first.
#[allow(clippy::too_many_lines)]
fn report(m: &Measured, idle: Option<&[Duration]>, clean: bool) {
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
    println!(
        "projections showed the last batch {:.2} s after ingest ended; server stopped with SIGTERM: {}",
        m.catch_up.as_secs_f64(),
        if clean { "exit 0" } else { "NOT CLEAN" }
    );
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
