//! Tests of the index layout ([`super::keys`]) as the log uses it: a
//! stream hash held by another name, the check of the event-id index, and
//! the layout stamp.

use std::sync::Arc;

use uuid::Uuid;

use super::keys::{LAYOUT_KEY, id_key, stream_key, stream_value};
use super::{Ledger, LedgerConfig};
use crate::MemoryStore;
use crate::error::{Error, ErrorKind};
use crate::log::EventLog;
use crate::record::{ExpectedVersion, NewEvent, TenantFilter};
use crate::store::{Space, Store, WriteBatch};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn put(store: &MemoryStore, space: Space, key: Vec<u8>, value: Vec<u8>) {
    let mut batch = WriteBatch::new();
    batch.put(space, key, value);
    store.commit(batch, true).unwrap();
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(Uuid::now_v7(), "sent", n.to_le_bytes().to_vec())
}

/// A log of two tenants, three events each, over a store the test keeps.
fn log_of_six(rt: &tokio::runtime::Runtime) -> (Arc<MemoryStore>, Vec<NewEvent>) {
    let store = Arc::new(MemoryStore::new());
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap();
    let mut written = Vec::new();
    for (i, tenant) in ["a", "b"].iter().enumerate() {
        let events: Vec<NewEvent> = (0..3).map(|n| event(n + 10 * i as u64)).collect();
        rt.block_on(log.append_to_stream(tenant, "s", ExpectedVersion::Any, events.clone()))
            .unwrap();
        written.extend(events);
    }
    log.close();
    (store, written)
}

fn verify(store: &Arc<MemoryStore>, rt: &tokio::runtime::Runtime) -> Result<(), Error> {
    let log = Ledger::open(Arc::clone(store), LedgerConfig::new()).unwrap();
    rt.block_on(log.verify(&TenantFilter::All, 0..u64::MAX, None))
        .map(|_| ())
}

#[test]
fn a_stream_whose_hash_another_name_holds_is_refused_and_reads_empty() {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new());
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap();
    // The version 0 entry of "s"'s hash names another stream: what a
    // 64-bit collision would leave.
    put(
        &store,
        Space::Streams,
        stream_key("t", "s", 0),
        stream_value(0, 0, "other"),
    );
    let err = rt
        .block_on(log.append_to_stream("t", "s", ExpectedVersion::Any, vec![event(1)]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(log.head(), 0);
    // As a link too.
    let linked = event(2).with_link("s");
    let err = rt
        .block_on(log.append_to_stream("t", "m", ExpectedVersion::Any, vec![linked]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(log.head(), 0);
    assert!(
        rt.block_on(log.read_stream("t", "s", 0, 10))
            .unwrap()
            .is_empty()
    );
    assert_eq!(rt.block_on(log.stream_version("t", "s")).unwrap(), None);
    // Another tenant's stream of that name is another stream.
    rt.block_on(log.append_to_stream("u", "s", ExpectedVersion::NoStream, vec![event(3)]))
        .unwrap();
    assert_eq!(
        rt.block_on(log.read_stream("u", "s", 0, 10)).unwrap().len(),
        1
    );
}

#[test]
fn verify_finds_a_missing_a_wrong_and_a_doubled_event_id_entry() {
    let rt = runtime();
    // Intact, it verifies.
    let (store, events) = log_of_six(&rt);
    verify(&store, &rt).unwrap();

    // A record without its entry: the entry moved to another time.
    let (store, events2) = log_of_six(&rt);
    let e = &events2[4];
    store.remove_for_test(Space::EventIds, &id_key("b", e.time, e.id));
    put(
        &store,
        Space::EventIds,
        id_key("b", e.time + 1, Uuid::now_v7()),
        4u64.to_be_bytes().to_vec(),
    );
    let err = verify(&store, &rt).unwrap_err();
    assert!(err.to_string().contains("id"), "{err}");

    // An entry naming a record of another tenant.
    let (store, _) = log_of_six(&rt);
    put(
        &store,
        Space::EventIds,
        id_key("a", 1, Uuid::now_v7()),
        4u64.to_be_bytes().to_vec(),
    );
    let err = verify(&store, &rt).unwrap_err();
    assert!(matches!(err, Error::Corrupt { position: 4, .. }), "{err}");

    // Two entries naming one record.
    let (store, _) = log_of_six(&rt);
    let e = &events[1];
    put(
        &store,
        Space::EventIds,
        id_key("a", e.time + 5, e.id),
        1u64.to_be_bytes().to_vec(),
    );
    let err = verify(&store, &rt).unwrap_err();
    assert!(matches!(err, Error::Corrupt { position: 1, .. }), "{err}");

    // A record no entry names.
    let (store, events3) = log_of_six(&rt);
    let e = &events3[2];
    store.remove_for_test(Space::EventIds, &id_key("a", e.time, e.id));
    let err = verify(&store, &rt).unwrap_err();
    assert!(matches!(err, Error::Corrupt { position: 2, .. }), "{err}");
}

#[test]
fn an_empty_log_is_stamped_and_an_unstamped_log_is_refused() {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new());
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap();
    // Opening writes nothing; the first batch carries the stamp.
    assert_eq!(store.get(Space::Tenants, LAYOUT_KEY).unwrap(), None);
    rt.block_on(log.append_to_stream("t", "s", ExpectedVersion::Any, vec![event(1)]))
        .unwrap();
    assert_eq!(
        store.get(Space::Tenants, LAYOUT_KEY).unwrap(),
        Some(2u32.to_be_bytes().to_vec())
    );
    drop(log);
    // A log written before the stamp (layout 1) holds records and no stamp.
    let (store, _) = log_of_six(&rt);
    store.remove_for_test(Space::Tenants, LAYOUT_KEY);
    let err = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.to_string().contains("layout"), "{err}");
    put(
        &store,
        Space::Tenants,
        LAYOUT_KEY.to_vec(),
        3u32.to_be_bytes().to_vec(),
    );
    let err = Ledger::open(store, LedgerConfig::new()).unwrap_err();
    assert!(err.to_string().contains("layout 3"), "{err}");
}
