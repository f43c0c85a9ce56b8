//! Shared pieces of mailledger's benchmarks: opening stores, building
//! records of a known size, and the summary each bench prints after
//! criterion has measured: throughput of every case, its ratio to the raw
//! fjall baseline measured in the same run, and the target it must meet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::Criterion;

use mailledger_core::{Durability, EventLog, Ledger, LedgerConfig, NewEvent, Store};

// The benchmarks run with the allocator the `mailledger` binary uses
// (tools/src/allocator.rs), and like it with mimalloc's settings from the
// environment.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of payload per benchmark record: with the frame's other fields and
/// its hash a stored record is about 300 bytes ([`frame_len`] says exactly).
pub const PAYLOAD_LEN: usize = 200;

/// The stored size of one benchmark record's frame, so baselines write
/// values of the same size.
///
/// # Panics
/// If the in-memory ledger fails, which it does not.
#[must_use]
pub fn frame_len() -> usize {
    let store = Arc::new(mailledger_core::MemoryStore::new());
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).expect("memory ledger");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(log.append_to_stream(
        "default",
        "message-1",
        mailledger_core::ExpectedVersion::Any,
        vec![record(0)],
    ))
    .expect("append");
    store
        .get(mailledger_core::Space::Log, &0u64.to_be_bytes())
        .expect("get")
        .map_or(0, |f| f.len())
}

/// Opens a store of `backend` (`fjall`, `sled` or `objects`, segment files) in `dir`.
///
/// # Panics
/// When the store cannot be opened: a benchmark cannot go on without it.
#[must_use]
pub fn store(backend: &str, dir: &Path) -> Arc<dyn Store> {
    match backend {
        "fjall" => Arc::new(mailledger_fjall::FjallStore::open(dir).expect("open fjall")),
        "sled" => Arc::new(mailledger_sled::SledStore::open(dir).expect("open sled")),
        "objects" => Arc::new(
            mailledger_object_store::SegmentStore::open_dir(dir).expect("open segment files"),
        ),
        other => panic!("no benchmark backend named {other}"),
    }
}

/// A ledger over `backend` in `dir`.
///
/// # Panics
/// When the ledger cannot be opened.
#[must_use]
pub fn ledger(backend: &str, dir: &Path, durability: Durability) -> Arc<dyn EventLog> {
    Arc::new(
        Ledger::open(
            store(backend, dir),
            LedgerConfig::new().durability(durability),
        )
        .expect("open ledger"),
    )
}

/// A new event with a payload of [`PAYLOAD_LEN`] bytes.
#[must_use]
pub fn record(n: u64) -> NewEvent {
    let mut payload = vec![b'x'; PAYLOAD_LEN];
    payload[..8].copy_from_slice(&n.to_le_bytes());
    NewEvent::new(uuid::Uuid::now_v7(), "sent", payload)
}

/// The `p` quantile (0 to 1) of `sorted` samples, by nearest rank: the
/// smallest sample with at least `p` of all samples at or below it.
#[must_use]
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// When this run began, set by [`criterion`].
static RUN_START: OnceLock<SystemTime> = OnceLock::new();

/// Criterion configured from the command line. Notes when the run began, so
/// that [`mean_ns`] and [`summary`] read only estimates this run wrote: a
/// filtered run, or one with `--test`, leaves older files in place.
#[must_use]
pub fn criterion() -> Criterion {
    RUN_START.get_or_init(SystemTime::now);
    Criterion::default().configure_from_args()
}

/// Mean nanoseconds per iteration of one criterion benchmark measured in
/// this run, read from criterion's `new/estimates.json`; `None` when this
/// run did not measure it (or [`criterion`] was not called, any run's).
#[must_use]
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()?
        .join(group)
        .join(id)
        .join("new/estimates.json");
    read_mean_since(&path, RUN_START.get().copied().unwrap_or(UNIX_EPOCH))
}

/// The mean of the estimates file at `path` if it was written at or after `since`.
fn read_mean_since(path: &Path, since: SystemTime) -> Option<f64> {
    if std::fs::metadata(path).ok()?.modified().ok()? < since {
        return None;
    }
    parse_mean(&std::fs::read_to_string(path).ok()?)
}

/// The mean point estimate of a criterion `estimates.json`.
#[must_use]
pub fn parse_mean(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Where criterion writes, found as criterion 0.8 finds it:
/// `CRITERION_HOME`, then `CARGO_TARGET_DIR`, then the target directory
/// `cargo metadata` names, then `./target/criterion`. (Looking upwards from
/// the working directory instead found a stale `benches/target` first and
/// printed "not measured" for cases this run had measured.)
fn criterion_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(h));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["target_directory"].as_str().map(PathBuf::from)
    });
    Some(from_metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    ))
}

/// One line of a summary: a case, its baseline and its target.
pub struct Row {
    /// The criterion group and id of the case.
    pub case: (String, String),
    /// Elements (records, events, erasures) per iteration.
    pub elements: f64,
    /// The baseline's group and id, with its elements per iteration.
    pub baseline: Option<(String, String, f64)>,
    /// The least elements per second the case must reach, if it has a target.
    pub target: Option<f64>,
    /// The least ratio to the baseline the case must reach, if it has one.
    pub min_ratio: Option<f64>,
}

/// Prints the summary table of rows measured in this run.
pub fn summary(title: &str, rows: &[Row]) {
    summary_header(title);
    for r in rows {
        let rate = mean_ns(&r.case.0, &r.case.1).map(|ns| r.elements / (ns / 1e9));
        let base = r
            .baseline
            .as_ref()
            .and_then(|(g, i, e)| mean_ns(g, i).map(|ns| e / (ns / 1e9)));
        summary_line(
            &format!("{}/{}", r.case.0, r.case.1),
            rate,
            base,
            r.target,
            r.min_ratio,
        );
    }
}

/// Prints the title and column heads of a summary table.
pub fn summary_header(title: &str) {
    println!("\n== {title}: measured in this run ==");
    println!(
        "{:<44} {:>14} {:>14} {:>8}  verdict",
        "case", "per second", "baseline/s", "ratio"
    );
}

/// Prints one line of a summary table: a case's rate (elements per second),
/// its baseline's, their ratio, and PASS or MISS against the target rate
/// and least ratio where given. For figures measured outside criterion (the
/// load benchmark); [`summary`] prints criterion's this way.
pub fn summary_line(
    case: &str,
    rate: Option<f64>,
    base: Option<f64>,
    target: Option<f64>,
    min_ratio: Option<f64>,
) {
    let ratio = rate.zip(base).map(|(a, b)| a / b);
    let mut verdict = Vec::new();
    match (target, rate) {
        (Some(t), Some(rate)) => verdict.push(format!(
            "{} target {:.0}/s",
            if rate >= t { "PASS" } else { "MISS" },
            t
        )),
        (Some(_), None) => verdict.push("not measured in this run".to_owned()),
        (None, _) => {}
    }
    if let (Some(m), Some(ratio)) = (min_ratio, ratio) {
        verdict.push(format!(
            "{} ratio >= {m:.2}",
            if ratio >= m { "PASS" } else { "MISS" }
        ));
    }
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    println!(
        "{:<44} {:>14} {:>14} {:>8}  {}",
        case,
        fmt(rate),
        fmt(base),
        ratio.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
        verdict.join(", ")
    );
}

/// CPU seconds (user + system) a process has used, from `/proc`.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let ticks = clock_ticks();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / ticks)
}

/// Clock ticks per second, the unit of `/proc`'s CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds the hypervisor has given to others while this machine's
/// CPUs wanted to run ("steal", summed over CPUs, from `/proc/stat`);
/// `None` where there is no such figure. Stolen time stalls every thread at
/// once, which no code of the measured program can avoid.
#[must_use]
pub fn stolen_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let steal: f64 = cpu.split_whitespace().nth(7)?.parse().ok()?;
    Some(steal / clock_ticks())
}

/// The steal counter ([`stolen_secs`]) sampled through a run: (since the
/// run began, stolen CPU seconds so far), in time order. It tells a slow
/// request that waited while the hypervisor had the CPUs from one that
/// waited for the program.
#[derive(Debug, Default)]
pub struct StolenSamples {
    samples: Vec<(std::time::Duration, f64)>,
}

impl StolenSamples {
    /// How often to sample: `/proc/stat` counts in clock ticks (10 ms on
    /// Linux), so finer sampling sees nothing more.
    pub const EVERY: std::time::Duration = std::time::Duration::from_millis(10);

    /// Adds the counter read `at` (after every earlier sample).
    pub fn push(&mut self, at: std::time::Duration, stolen: f64) {
        self.samples.push((at, stolen));
    }

    /// Whether time was stolen between `from` and `to`, give or take one
    /// sampling interval on each side (the counter moves in ticks).
    #[must_use]
    pub fn during(&self, from: std::time::Duration, to: std::time::Duration) -> bool {
        let s = &self.samples;
        let lo = s.partition_point(|(at, _)| *at + Self::EVERY < from);
        let hi = s.partition_point(|(at, _)| *at <= to + Self::EVERY);
        hi > lo + 1 && s[hi - 1].1 > s[lo].1
    }

    /// Whether anything was sampled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_sees_steal_only_where_the_counter_rose() {
        let ms = std::time::Duration::from_millis;
        let mut s = StolenSamples::default();
        assert!(!s.during(ms(0), ms(60)), "nothing sampled");
        for (at, v) in [
            (0, 1.0),
            (10, 1.0),
            (20, 1.0),
            (30, 1.01),
            (40, 1.01),
            (50, 1.01),
            (60, 1.01),
        ] {
            s.push(ms(at), v);
        }
        assert!(
            s.during(ms(22), ms(25)),
            "the rise at 30 ms is within a sample"
        );
        assert!(!s.during(ms(45), ms(48)));
        assert!(!s.during(ms(0), ms(5)));
        assert!(s.during(ms(0), ms(60)));
        assert!(!s.during(ms(70), ms(90)), "after the last sample");
    }

    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.5,"standard_error":0.1},"median":{"point_estimate":2.0}}"#;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| std::time::Duration::from_millis(n);
        let samples: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 0.99), ms(99));
        assert_eq!(percentile(&samples, 0.5), ms(50));
        assert_eq!(percentile(&samples, 1.0), ms(100));
        assert_eq!(percentile(&[], 0.99), ms(0));
    }

    #[test]
    fn the_mean_is_read_from_criterion_estimates() {
        assert_eq!(parse_mean(ESTIMATES), Some(2.5));
        assert_eq!(parse_mean("{}"), None);
        assert_eq!(parse_mean("not json"), None);
    }

    #[test]
    fn estimates_written_before_the_run_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("estimates.json");
        std::fs::write(&path, ESTIMATES).expect("write");
        assert_eq!(read_mean_since(&path, UNIX_EPOCH), Some(2.5));
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(read_mean_since(&path, later), None);
        assert_eq!(
            read_mean_since(&dir.path().join("missing.json"), UNIX_EPOCH),
            None
        );
    }
}
