//! The release server the bench starts, and its first key.

use super::*;

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The release `mailledger` binary, built if needed.
pub(crate) fn server_binary() -> PathBuf {
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
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// The metrics listener's address (`--metrics-listen`).
    pub(crate) metrics: String,
    pub(crate) admin_key: String,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

/// Whether the server runs with its thread priorities
/// (`serve --thread-priorities`): yes unless `MAILLEDGER_LOAD_THREAD_PRIORITIES`
/// is `0` or `false`. The server's own variable is removed from its
/// environment, so what the bench reports is what the server runs.
pub(crate) fn thread_priorities() -> bool {
    std::env::var("MAILLEDGER_LOAD_THREAD_PRIORITIES")
        .map_or(true, |v| !matches!(v.as_str(), "0" | "false"))
}

impl Server {
    /// Starts the server on the data in `root`; on its `first` start it
    /// prints the first key, which is read. Returns once it listens.
    pub(crate) fn start(bin: &Path, root: &Path, first: bool) -> Self {
        let priorities: &[&str] = if thread_priorities() {
            &["--thread-priorities"]
        } else {
            &[]
        };
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
            .args(priorities)
            .env_remove("MAILLEDGER_CONFIG")
            .env_remove("MAILLEDGER_LOG")
            .env_remove("MAILLEDGER_KEK")
            .env_remove("MAILLEDGER_KEK_FILE")
            .env_remove("MAILLEDGER_DURABILITY")
            .env_remove("MAILLEDGER_LISTEN")
            .env_remove("MAILLEDGER_METRICS_LISTEN")
            .env_remove("MAILLEDGER_THREAD_PRIORITIES")
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
        if first {
            out.read_line(&mut server.admin_key).expect("first key");
            server.admin_key = server.admin_key.trim().to_owned();
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        server
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// SIGTERM, then waits (bounded) for the exit; true when it exited 0.
    pub(crate) fn stop(&mut self) -> bool {
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

/// Runs `mailledger ARGS` on the server's data beside the running server
/// (the access commands work while it holds the log); its standard output.
fn admin(bin: &Path, root: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--keys-dir")
        .arg(root.join("keys"))
        .args(args)
        .env_remove("MAILLEDGER_KEK")
        .env_remove("MAILLEDGER_KEK_FILE")
        .output()
        .expect("run mailledger");
    assert!(
        out.status.success(),
        "mailledger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("output")
        .trim()
        .to_owned()
}

/// `mailledger tenant create TENANT`.
pub(crate) fn create_tenant(bin: &Path, root: &Path, tenant: &str) {
    admin(bin, root, &["tenant", "create", tenant]);
}

/// `mailledger key create` for `tenant`, with the scopes the load needs.
pub(crate) fn create_key(bin: &Path, root: &Path, tenant: &str) -> String {
    admin(
        bin,
        root,
        &[
            "key",
            "create",
            "--scopes",
            "ingest,read",
            "--name",
            "load",
            "--tenant",
            tenant,
        ],
    )
}

// ------------------------------------------------------------------ client
