//! The conformance suite every backend runs from its own tests, through
//! [`conformance_tests!`](crate::conformance_tests).
//!
//! A backend provides one function that opens (or reopens) its store in a
//! directory; each check below gets a fresh directory, and checks that
//! reopen call the function again on the same one after dropping the log.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod appends;
mod integrity;
mod reads;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use uuid::Uuid;

use crate::residency::Jurisdiction;
use crate::{
    Direction, Durability, Error, EventLog, ExpectedVersion, Ledger, LedgerConfig, MemoryStore,
    NewEvent, Space, Store, StreamAppend, TenantFilter, WriteBatch, codec,
};

pub use appends::*;
use integrity::put_raw;
pub use integrity::*;
use reads::read_everything;
pub use reads::*;

/// Opens the backend's store kept in a directory, creating it when empty.
pub type OpenStore = fn(&Path) -> crate::Result<Arc<dyn Store>>;

/// The in-memory store as an [`OpenStore`]: the same directory gives back
/// the same store, so "reopen" keeps data for the life of the process.
pub fn open_memory(dir: &Path) -> crate::Result<Arc<dyn Store>> {
    static STORES: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<MemoryStore>>>> = OnceLock::new();
    let mut map = STORES.get_or_init(Default::default).lock().unwrap();
    let store = map.entry(dir.to_path_buf()).or_default().clone();
    Ok(store)
}

/// A log and the raw store under it.
pub struct Opened {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Store>,
}

pub fn open(open: OpenStore, dir: &Path, durability: Durability) -> Opened {
    let store = open(dir).expect("open store");
    let log = Ledger::open(store.clone(), LedgerConfig::new().durability(durability))
        .expect("open ledger");
    Opened {
        log: Arc::new(log),
        store,
    }
}

pub(crate) fn ev(ty: &str, payload: &str) -> NewEvent {
    NewEvent::new(Uuid::now_v7(), ty, payload.as_bytes().to_vec()).with_metadata(b"m".to_vec())
}

pub(crate) fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| ev("sent", &format!("{{\"i\":{i}}}")))
        .collect()
}

/// Expands to one `#[tokio::test]` per check, for a backend's `OpenStore`.
///
/// `conformance_tests!(open, when = ready)` runs each check only when
/// `ready()` (a `fn() -> bool`) says the backend's service is there, for a
/// backend that needs a server the tests do not start themselves; `ready`
/// says why when it answers no, and decides whether that fails the run.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!($open, when = || true);
    };
    ($open:expr, when = $when:expr) => {
        $crate::conformance_tests!(@each $open, $when;
            append_then_read_returns_what_was_written,
            wrong_expected_version_is_a_conflict_and_writes_nothing,
            duplicate_ids_return_original_positions_across_reopen,
            a_failed_append_writes_nothing_of_its_batch,
            reads_of_the_whole_log_page_both_ways_and_filter_tenants,
            subscriptions_catch_up_then_go_live_without_gap_or_duplicate,
            verify_names_the_first_bad_position,
            frames_read_are_the_bytes_stored,
            open_refuses_a_corrupt_tail_and_names_it,
            event_ids_and_streams_are_the_tenant_s_own,
            tenants_chain_and_read_apart,
            reopen_continues_positions_versions_and_chains,
            eight_concurrent_writers_keep_a_dense_order,
            links_index_an_event_in_further_streams,
            no_append_changes_a_record_already_written,
        );
    };
    (@each $open:expr, $when:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if ($when)() {
                    $crate::conformance::$name($open).await;
                }
            }
        )*
    };
}
