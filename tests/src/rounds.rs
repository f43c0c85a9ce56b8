//! Rounds of the crash and power-cut tests: a writing child process
//! (`crash-writer`) that prints `ack <event id>` for every event whose
//! append returned, stopped at a random moment, and the check of the log
//! it leaves behind.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailledger_core::{Direction, EventLog, Ledger, LedgerConfig, TenantFilter};
use uuid::Uuid;

/// The rounds per backend: `var` if set (a number), else `default`.
#[must_use]
pub fn rounds(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seed from the clock (printed by the tests, so a failure can be told
/// apart from another run).
#[must_use]
pub fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

/// xorshift: the tests' own randomness, from a seed they print.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A running `crash-writer` and the acknowledgements it printed.
#[derive(Debug)]
pub struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    acked: Vec<String>,
}

impl Writer {
    /// Starts `exe` (the `crash-writer` binary) appending to `backend` in
    /// `dir`, and waits for its first acknowledgement.
    ///
    /// # Panics
    /// When it cannot start or acknowledges nothing within 30 s.
    #[must_use]
    pub fn start(exe: &Path, backend: &str, dir: &Path, round: usize) -> Self {
        let dir = dir.to_string_lossy();
        Self::start_with(exe, &[backend, &dir, &round.to_string()])
    }

    /// Starts `exe` with `args`, and waits for the first line it prints.
    ///
    /// # Panics
    /// When it cannot start or prints nothing within 30 s.
    #[must_use]
    pub fn start_with(exe: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().expect("the writer's stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer acknowledged nothing");
        Self {
            child,
            lines,
            reader,
            acked: vec![first],
        }
    }

    /// Lets it run for `d`, collecting what it acknowledges.
    pub fn run_for(&mut self, d: Duration) {
        let started = Instant::now();
        while started.elapsed() < d {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(1)) {
                self.acked.push(line);
            }
        }
    }

    /// Waits up to 30 s for a line that starts with `prefix`, collecting
    /// the lines before it; returns that line.
    ///
    /// # Panics
    /// When no such line comes.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        if let Some(line) = self.acked.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the writer never printed {prefix}"));
            self.acked.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Stops it where it is (SIGSTOP): it issues nothing more, and every
    /// acknowledgement it printed is of an append that had returned.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn freeze(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    }

    /// Kills it (SIGKILL) and returns the ids of every event it
    /// acknowledged.
    ///
    /// # Panics
    /// On a line that is not a whole acknowledgement.
    #[must_use]
    pub fn kill(self) -> Vec<Uuid> {
        self.kill_for_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ack "))
            .map(|rest| {
                let id = rest.split(' ').next().unwrap_or_default();
                Uuid::parse_str(id).expect("a whole ack line")
            })
            .collect()
    }

    /// Kills it (SIGKILL) and returns every line it printed.
    #[must_use]
    pub fn kill_for_lines(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        self.acked.extend(self.lines.try_iter());
        self.acked
    }
}

/// Opens the log of `backend` in `dir` and checks it: it opens, every
/// record decodes, no event is there twice, stream versions have no gap,
/// every id in `acked` is present, and the chain verifies. `after` names
/// what happened to the writer, for the messages.
///
/// # Panics
/// When any of that fails.
pub fn check_log(
    backend: &str,
    dir: &Path,
    acked: &HashSet<Uuid>,
    rt: &tokio::runtime::Runtime,
    after: &str,
) {
    rt.block_on(async {
        let store = crate::open_store(backend, dir).expect("the store opens");
        let log = Ledger::open(store, LedgerConfig::new())
            .unwrap_or_else(|e| panic!("the log does not reopen after {after}: {e}"));
        let head = log.head();
        let mut seen: HashMap<Uuid, u64> = HashMap::new();
        let mut versions: HashMap<(String, String), u64> = HashMap::new();
        let mut from = 0;
        while from < head {
            let batch = log
                .read_all(&TenantFilter::All, from, Direction::Forward, 5000)
                .await
                .expect("every record decodes");
            for r in &batch.records {
                assert!(
                    seen.insert(r.event_id, r.position).is_none(),
                    "event {} twice",
                    r.event_id
                );
                let v = versions
                    .entry((r.tenant.clone(), r.stream.clone()))
                    .or_insert(0);
                assert_eq!(r.stream_version, *v, "stream {} has a gap", r.stream);
                *v += 1;
            }
            from = batch.next.expect("a forward read names where to go on");
        }
        assert_eq!(seen.len() as u64, head);
        for id in acked {
            assert!(
                seen.contains_key(id),
                "acknowledged event {id} was lost after {after}"
            );
        }
        log.verify(&TenantFilter::All, 0..u64::MAX, None)
            .await
            .unwrap_or_else(|e| panic!("the chain does not verify after {after}: {e}"));
    });
}
