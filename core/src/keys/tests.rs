//! Tests of the key store.

use super::*;
use crate::crypto::Personal;

fn kek() -> SecretKey {
    SecretKey::from_bytes([7; 32])
}

fn contact(n: u8) -> Pseudonym {
    Pseudonym::of(
        &SecretKey::from_bytes([1; 32]),
        &Personal::new(format!("c{n}@x.org")),
        crate::pseudonym::LocalPartCase::Insensitive,
    )
    .unwrap()
}

#[test]
fn keys_survive_reopen_and_seal_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = {
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        let k = ks.ensure("t", &[(contact(1), 0)]).unwrap();
        k[0].cipher().seal(b"hello", b"ad").unwrap()
    };
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    let KeyState::Live(k) = ks.contact("t", &contact(1)).unwrap() else {
        panic!("key lost")
    };
    assert_eq!(&**k.cipher().open(&sealed, b"ad").unwrap(), b"hello");
    assert!(matches!(
        ks.contact("u", &contact(1)).unwrap(),
        KeyState::Unknown
    ));
}

#[test]
fn a_wrong_kek_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileKeyStore::open(dir.path(), &kek()).unwrap());
    let e = FileKeyStore::open(dir.path(), &SecretKey::from_bytes([8; 32])).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

#[test]
fn a_second_process_is_refused_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let _ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    assert!(FileKeyStore::open(dir.path(), &kek()).is_err());
}

#[test]
fn destroy_overwrites_the_wrapped_key_in_place_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    ks.ensure("t", &[(contact(1), 0), (contact(2), 0)]).unwrap();
    let (raw, wrapped) = ks.key_material("t", &contact(1)).unwrap().unwrap();
    let file = dir.path().join(KEY_FILE);
    let before = std::fs::read(&file).unwrap();
    assert!(
        before
            .windows(wrapped.len())
            .any(|w| w == wrapped.as_slice())
    );
    let e = ks.destroy("t", &contact(1), 5, 1_000).unwrap().unwrap();
    assert_eq!(
        e,
        Erasure {
            generation: 0,
            events: 5,
            erased_at: 1_000,
        }
    );
    let after = std::fs::read(&file).unwrap();
    assert_eq!(after.len(), before.len(), "overwritten in place");
    assert!(
        !after
            .windows(wrapped.len())
            .any(|w| w == wrapped.as_slice())
    );
    assert!(!after.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert_eq!(
        ks.destroy("t", &contact(1), 9, 2_000).unwrap(),
        Some(e),
        "a second erasure changes nothing, its time included"
    );
    assert!(matches!(
        ks.contact("t", &contact(1)).unwrap(),
        KeyState::Erased(_)
    ));
    assert!(matches!(
        ks.contact("t", &contact(2)).unwrap(),
        KeyState::Live(_)
    ));
    assert_eq!(ks.destroy("t", &contact(3), 0, 3_000).unwrap(), None);
    drop(ks);
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    assert!(
        matches!(
            ks.contact("t", &contact(1)).unwrap(),
            KeyState::Erased(Erasure {
                erased_at: 1_000,
                ..
            })
        ),
        "the erasure and its time survive a reopen"
    );
    let again = ks.ensure("t", &[(contact(1), 7)]).unwrap();
    assert_eq!(again[0].generation, 1, "a returning contact gets a new key");
}

#[test]
fn torn_slots_are_zeroed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        ks.ensure("t", &[(contact(1), 0), (contact(2), 0)]).unwrap();
    }
    let file = dir.path().join(KEY_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    // Tear slot 2 (contact 2) halfway, and leave half a slot at the end.
    for b in &mut bytes[2 * SLOT_LEN + 40..2 * SLOT_LEN + 70] {
        *b = 0;
    }
    bytes.extend_from_slice(&[9u8; 50]);
    std::fs::write(&file, &bytes).unwrap();
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    let after = std::fs::read(&file).unwrap();
    assert_eq!(after.len(), 3 * SLOT_LEN);
    assert!(after[2 * SLOT_LEN..].iter().all(|&b| b == 0));
    assert!(matches!(
        ks.contact("t", &contact(2)).unwrap(),
        KeyState::Unknown
    ));
    assert!(matches!(
        ks.contact("t", &contact(1)).unwrap(),
        KeyState::Live(_)
    ));
}

#[test]
fn tenant_secrets_are_stable_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        (
            ks.tenant_secret("a").unwrap(),
            ks.tenant_secret("b").unwrap(),
        )
    };
    assert_ne!(a, b);
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    assert_eq!(ks.tenant_secret("a").unwrap(), a);
}

#[test]
fn kek_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    let k = generate_kek_file(&path).unwrap();
    assert_eq!(read_kek_file(&path).unwrap(), k);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(read_kek_file(&path), Err(Error::Config(_))));
    assert!(generate_kek_file(&path).is_err(), "never overwrites a KEK");
}

#[test]
fn contacts_at_once_give_what_each_alone_gives_in_their_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        ks.ensure("t", &[(contact(1), 0), (contact(2), 0), (contact(3), 0)])
            .unwrap();
        ks.destroy("t", &contact(2), 4, 99).unwrap();
    }
    // Reopened, so nothing is cached: the live keys are read from the file.
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    let asked = [contact(3), contact(2), contact(4), contact(1), contact(3)];
    let sealed = {
        let KeyState::Live(k) = ks.contact("t", &contact(1)).unwrap() else {
            panic!("key lost")
        };
        k.cipher().seal(b"hello", b"ad").unwrap()
    };
    let batch = ks.contacts("t", &asked).unwrap();
    assert_eq!(batch.len(), asked.len());
    for (c, state) in asked.iter().zip(&batch) {
        match (ks.contact("t", c).unwrap(), state) {
            (KeyState::Live(a), KeyState::Live(b)) => {
                assert_eq!(a.generation, b.generation);
                let probe = a.cipher().seal(b"probe", b"ad").unwrap();
                assert_eq!(&**b.cipher().open(&probe, b"ad").unwrap(), b"probe");
            }
            (KeyState::Erased(a), KeyState::Erased(b)) => assert_eq!(a, *b),
            (KeyState::Unknown, KeyState::Unknown) => {}
            (a, b) => panic!("one at a time {a:?}, at once {b:?}"),
        }
    }
    let KeyState::Live(k) = &batch[3] else {
        panic!("key lost")
    };
    assert_eq!(&**k.cipher().open(&sealed, b"ad").unwrap(), b"hello");
    assert!(matches!(
        ks.contacts("u", &asked[..1]).unwrap()[0],
        KeyState::Unknown
    ));
}

#[test]
fn a_key_looked_up_at_once_and_then_destroyed_is_not_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        ks.ensure("t", &[(contact(1), 0)]).unwrap();
    }
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    assert!(matches!(
        ks.contacts("t", &[contact(1)]).unwrap()[0],
        KeyState::Live(_)
    ));
    ks.destroy("t", &contact(1), 1, 5).unwrap();
    assert!(matches!(
        ks.contacts("t", &[contact(1)]).unwrap()[0],
        KeyState::Erased(_)
    ));
    assert!(matches!(
        ks.contact("t", &contact(1)).unwrap(),
        KeyState::Erased(_)
    ));
}

#[test]
fn a_key_made_and_evicted_while_another_call_looked_never_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one key, so a second contact's key evicts the first.
    let ks = FileKeyStore::open(dir.path(), &kek())
        .unwrap()
        .with_cache_entries(1);
    let sealed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = std::sync::Arc::clone(&sealed);
    // After this call has looked for contact 1 and found no key, and
    // before it takes the lock: another call makes the key and seals under
    // it, and a third fills the cache with another contact's.
    *ks.before_ensure_locks.lock().unwrap() = Some(Box::new(move |ks: &FileKeyStore| {
        let first = ks.ensure("t", &[(contact(1), 0)]).unwrap();
        *seen.lock().unwrap() = Some(first[0].cipher().seal(b"hello", b"ad").unwrap());
        ks.ensure("t", &[(contact(2), 0)]).unwrap();
    }));
    let late = ks.ensure("t", &[(contact(1), 0)]).unwrap();
    let sealed = sealed.lock().unwrap().take().expect("the other call ran");
    assert_eq!(
        late[0]
            .cipher()
            .open(&sealed, b"ad")
            .as_deref()
            .map(|v| &v[..]),
        Some(&b"hello"[..]),
        "the late call got another key"
    );
    drop(ks);
    let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
    let KeyState::Live(k) = ks.contact("t", &contact(1)).unwrap() else {
        panic!("key lost")
    };
    assert!(
        k.cipher().open(&sealed, b"ad").is_some(),
        "the key was replaced"
    );
}

#[test]
fn a_cache_smaller_than_the_contacts_still_serves_each_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ks = FileKeyStore::open(dir.path(), &kek())
        .unwrap()
        .with_cache_entries(3);
    let all: Vec<_> = (0..10).map(|n| (contact(n), 0)).collect();
    let keys = ks.ensure("t", &all).unwrap();
    let sealed: Vec<_> = keys
        .iter()
        .map(|k| k.cipher().seal(b"x", b"ad").unwrap())
        .collect();
    for round in 0..2 {
        for (n, s) in sealed.iter().enumerate() {
            let KeyState::Live(k) = ks.contact("t", &contact(n as u8)).unwrap() else {
                panic!("key lost")
            };
            assert!(
                k.cipher().open(s, b"ad").is_some(),
                "round {round}, contact {n}"
            );
        }
    }
}
