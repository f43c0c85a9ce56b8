//! What the binary's tests share: running `mailledger` on a test directory,
//! and a server started on a loopback port and stopped with SIGTERM.

#![allow(dead_code, clippy::unwrap_used)]

pub mod http;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to stop after SIGTERM.
pub const STOP: Duration = Duration::from_secs(10);

/// `mailledger` on `root`'s data and key directories, with every
/// `MAILLEDGER_*` setting of the caller's environment removed.
pub fn command(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailledger"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAILLEDGER_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("--data-dir")
        .arg(root.join("data"))
        .arg("--keys-dir")
        .arg(root.join("keys"));
    cmd
}

/// Runs `mailledger ARGS` on `root`, whatever its outcome.
pub fn run(root: &Path, args: &[&str]) -> Output {
    command(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `mailledger ARGS` on `root` with `stdin` on its standard input
/// (nothing when `None`), whatever its outcome.
pub fn run_with_input(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = command(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs `mailledger ARGS` on `root` and asserts that it succeeded.
pub fn run_ok(root: &Path, args: &[&str]) -> Output {
    let out = run(root, args);
    assert!(
        out.status.success(),
        "mailledger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A server a test started; killed on drop if still running, so a failing
/// assertion never leaves it behind.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The key a first start printed on stdout (empty when none was).
    pub first_key: String,
    /// What it printed on stderr before listening.
    pub banner: String,
    /// Everything it printed after, on stdout and stderr.
    pub output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `mailledger serve` on `root`; `prints_key` when this is the
    /// directory's first start, which prints an admin key.
    pub fn start(root: &Path, prints_key: bool) -> Self {
        Self::start_with(command(root), prints_key)
    }

    /// Starts `COMMAND serve` ([`command`], perhaps with settings of the
    /// test's own); `prints_key` as for [`Server::start`].
    pub fn start_with(mut command: Command, prints_key: bool) -> Self {
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The guard exists before anything can fail.
        let mut server = Self {
            child,
            addr: String::new(),
            first_key: String::new(),
            banner: String::new(),
            output: Arc::default(),
        };
        let mut err = BufReader::new(server.child.stderr.take().unwrap());
        let mut line = String::new();
        while server.addr.is_empty() {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "the server exited: {}",
                server.banner
            );
            server.banner.push_str(&line);
            if let Some(rest) = line.split("listening on http://").nth(1) {
                server.addr = rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        // Keep draining its output so the server never blocks on a full
        // pipe, and keep it for tests that read the server's log.
        keep(err, Arc::clone(&server.output));
        let mut out = BufReader::new(server.child.stdout.take().unwrap());
        if prints_key {
            out.read_line(&mut server.first_key).unwrap();
            server.first_key = server.first_key.trim().to_owned();
        }
        keep(out, Arc::clone(&server.output));
        server
    }

    /// What the server has printed since it started listening.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// SIGTERM to this server's pid, then its exit status (within [`STOP`]).
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + STOP;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within {STOP:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads `from` line by line into `into`, on a thread of its own.
fn keep(mut from: impl BufRead + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut line = String::new();
        while from.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut o) = into.lock() {
                o.push_str(&line);
            }
            line.clear();
        }
    });
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
