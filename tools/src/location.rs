//! Where the log lives: `--log` URLs and the data directory's memory of its backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use mailledger_core::{EventLog, Ledger, LedgerConfig, MemoryStore, Store};
use serde::{Deserialize, Serialize};

use crate::memory::MemoryPlan;

/// The file in a data directory that records which backend holds its log.
pub const MARKER: &str = "ledger.json";

/// A storage backend and where its files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum LogLocation {
    /// fjall in a directory.
    Fjall {
        /// The fjall directory.
        path: PathBuf,
    },
    /// sled 0.34 in a directory.
    Sled {
        /// The sled directory.
        path: PathBuf,
    },
    /// Segment objects (the object_store backend) in a local directory.
    Objects {
        /// The directory of the segments.
        path: PathBuf,
    },
    /// Segment objects (the object_store backend) on an S3-compatible store.
    S3 {
        /// `s3://BUCKET[/PREFIX]`; the client reads its settings and
        /// credentials from the `AWS_*` environment variables.
        url: String,
    },
    /// Nothing on disk; gone when the process ends.
    Memory,
}

impl LogLocation {
    /// Parses `fjall:PATH`, `sled:PATH`, `objects:PATH`, `s3://BUCKET[/PREFIX]`
    /// or `memory:`.
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once(':').with_context(|| {
            format!("--log {url:?}: expected fjall:PATH, sled:PATH, objects:PATH, s3://BUCKET/PREFIX or memory:")
        })?;
        let path = || -> Result<PathBuf> {
            if rest.is_empty() {
                bail!("--log {url:?}: the {scheme} backend needs a path, as in {scheme}:./log");
            }
            absolute(Path::new(rest))
        };
        match scheme {
            "fjall" => Ok(Self::Fjall { path: path()? }),
            "sled" => Ok(Self::Sled { path: path()? }),
            "objects" => Ok(Self::Objects { path: path()? }),
            "s3" => {
                mailledger_object_store::parse_s3_url(url)
                    .map_err(|e| anyhow::anyhow!("--log: {e}"))?;
                Ok(Self::S3 {
                    url: url.trim_end_matches('/').to_owned(),
                })
            }
            "memory" if rest.is_empty() => Ok(Self::Memory),
            "memory" => bail!("--log {url:?}: memory: takes no path"),
            other => bail!(
                "--log {url:?}: unknown backend {other:?}; use fjall, sled, objects, s3 or memory"
            ),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Fjall { .. } => "fjall",
            Self::Sled { .. } => "sled",
            Self::Objects { .. } | Self::S3 { .. } => "object_store",
            Self::Memory => "memory",
        }
    }

    /// Where the log is, as `--log` would name it (absolute for paths).
    pub fn describe(&self) -> String {
        match self {
            Self::Fjall { path } => format!("fjall:{}", path.display()),
            Self::Sled { path } => format!("sled:{}", path.display()),
            Self::Objects { path } => format!("objects:{}", path.display()),
            Self::S3 { url } => url.clone(),
            Self::Memory => "memory:".into(),
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve path {}", p.display()))
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: u32,
    #[serde(flatten)]
    log: LogLocation,
}

/// Which log `data_dir` and an optional `--log` URL name, without creating
/// anything: what an existing data directory recorded (refusing a `--log`
/// that disagrees), else what `--log` asks, else fjall in `DATA_DIR/log`.
/// The second value says whether the data directory records it already.
pub fn peek(data_dir: &Path, log: Option<&str>) -> Result<(LogLocation, bool)> {
    let asked = log.map(LogLocation::parse).transpose()?;
    if asked == Some(LogLocation::Memory) {
        return Ok((LogLocation::Memory, true));
    }
    let marker_path = data_dir.join(MARKER);
    if marker_path.exists() {
        let text = std::fs::read_to_string(&marker_path)
            .with_context(|| format!("cannot read {}", marker_path.display()))?;
        let marker: Marker = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a mailledger marker", marker_path.display()))?;
        if marker.format != 1 {
            bail!(
                "{} has format {}, which this build does not know",
                marker_path.display(),
                marker.format
            );
        }
        if let Some(asked) = asked.filter(|a| *a != marker.log) {
            bail!(
                "data directory {} holds a {} log; --log asked for {}. Pass --log {} or use another --data-dir",
                data_dir.display(),
                marker.log.describe(),
                asked.describe(),
                marker.log.describe()
            );
        }
        return Ok((marker.log, true));
    }
    let location = match asked {
        Some(l) => l,
        None => LogLocation::Fjall {
            path: absolute(&data_dir.join("log"))?,
        },
    };
    Ok((location, false))
}

/// Resolves which log to open for `data_dir` and an optional `--log` URL
/// (see [`peek`]), recording the choice in a new data directory when
/// `create`, and refusing a directory that holds no ledger otherwise.
pub fn resolve(data_dir: &Path, log: Option<&str>, create: bool) -> Result<LogLocation> {
    let (location, recorded) = peek(data_dir, log)?;
    if recorded {
        return Ok(location);
    }
    if !create {
        bail!(
            "no ledger in {}; run `mailledger init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Durably, as a switch is: the marker, and the data directory's own
    // name in its parent (a power cut must not leave a directory without
    // its marker, or no directory at all).
    switch(data_dir, &location)?;
    mailledger_core::sync_tree(data_dir)
        .with_context(|| format!("cannot sync data directory {}", data_dir.display()))?;
    Ok(location)
}

/// Opens the log at `location`, within `memory`'s shares for the log.
pub fn open(
    location: &LogLocation,
    config: LedgerConfig,
    memory: &MemoryPlan,
) -> Result<Arc<dyn EventLog>> {
    let config = config.stream_cache_entries(memory.stream_cache_entries());
    Ok(Arc::new(Ledger::open(
        open_store(location, memory)?,
        config,
    )?))
}

/// The error of a directory store that would not open: most often another
/// process holds it.
fn locked(backend: &str, path: &Path) -> String {
    format!(
        "cannot open the {backend} log in {} (is another mailledger process using it?)",
        path.display()
    )
}

/// Opens the store under the log at `location`, creating it when empty,
/// within `memory`'s share for the log's store.
pub fn open_store(location: &LogLocation, memory: &MemoryPlan) -> Result<Arc<dyn Store>> {
    let segments = || {
        let cache = usize::try_from(memory.log_cache_bytes()).unwrap_or(usize::MAX);
        mailledger_object_store::SegmentStore::builder().cache_bytes(cache)
    };
    Ok(match location {
        LogLocation::Fjall { path } => Arc::new(
            mailledger_fjall::FjallStore::open_with(path, memory.log_fjall())
                .with_context(|| locked("fjall", path))?,
        ),
        LogLocation::Sled { path } => Arc::new(
            mailledger_sled::SledStore::open_with(path, memory.log_cache_bytes())
                .with_context(|| locked("sled", path))?,
        ),
        LogLocation::Objects { path } => Arc::new(
            segments()
                .open_dir(path)
                .with_context(|| format!("cannot open the segment log in {}", path.display()))?,
        ),
        LogLocation::S3 { url } => Arc::new(
            segments()
                .open_s3(url)
                .with_context(|| format!("cannot open the segment log at {url}"))?,
        ),
        LogLocation::Memory => Arc::new(MemoryStore::new()),
    })
}

/// Points the ledger in `data_dir` at the log at `location` (after
/// `mailledger migrate` copied it there): the marker is replaced
/// atomically and durably (temp file, `fsync`, rename, `fsync` of the
/// directory), so a crash leaves the old or the new one, never neither.
pub fn switch(data_dir: &Path, location: &LogLocation) -> Result<()> {
    let marker_path = data_dir.join(MARKER);
    let tmp = data_dir.join(format!("{MARKER}.tmp"));
    let marker = Marker {
        format: 1,
        log: location.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&marker)?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &marker_path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", marker_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_what_is_wrong() {
        assert_eq!(LogLocation::parse("memory:").unwrap(), LogLocation::Memory);
        assert!(matches!(
            LogLocation::parse("fjall:/x").unwrap(),
            LogLocation::Fjall { .. }
        ));
        assert!(matches!(
            LogLocation::parse("sled:rel").unwrap(),
            LogLocation::Sled { .. }
        ));
        assert!(matches!(
            LogLocation::parse("objects:segs").unwrap(),
            LogLocation::Objects { .. }
        ));
        assert_eq!(
            LogLocation::parse("s3://eu-logs/ledger/").unwrap(),
            LogLocation::S3 {
                url: "s3://eu-logs/ledger".into()
            }
        );
        for bad in [
            "fjall:",
            "objects:",
            "s3:/x",
            "s3://Bad/x",
            "rocks:/x",
            "memory:/x",
            "nocolon",
        ] {
            assert!(LogLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_data_dir_remembers_its_backend() {
        let dir = tempfile::tempdir().unwrap();
        let sled = format!("sled:{}", dir.path().join("s").display());
        let first = resolve(dir.path(), Some(&sled), true).unwrap();
        assert_eq!(first.backend(), "sled");
        assert_eq!(resolve(dir.path(), None, false).unwrap(), first);
        let fjall = format!("fjall:{}", dir.path().join("f").display());
        let err = resolve(dir.path(), Some(&fjall), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds a sled"), "{err}");
        let other = tempfile::tempdir().unwrap();
        assert!(resolve(other.path(), None, false).is_err());
    }
}
