//! Appends email events until killed, for the power-cut tests of the key
//! store. Usage: `email-writer BACKEND DIR MODE ROUND`, with the log in
//! `DIR/log`, the keys in `DIR/keys` and the key-encryption key in
//! `DIR/kek` (made by the test).
//!
//! - `contacts`: every event goes to a new contact (a new key each) and
//!   prints `ack <event id> <address>` once its append returned.
//! - `erase`: appends three events of `erase-ROUND@example.org`, prints
//!   `key <raw hex> <wrapped hex>` (its key as the key file holds it),
//!   erases the contact and prints `erased` once that returned, then goes
//!   on appending other contacts' events.

use std::io::Write;
use std::sync::Arc;

use mailledger_core::crypto::Personal;
use mailledger_core::email::{ContactRef, EmailLedger, parse_event};
use mailledger_core::keys::{FileKeyStore, read_kek_file};
use mailledger_core::{EventLog, Ledger, LedgerConfig};
use uuid::Uuid;

fn event(address: &str, message: &str) -> Result<mailledger_core::email::CanonicalEvent, String> {
    parse_event(&format!(
        r#"{{"id": "{}", "type": "sent", "recipient": "{address}", "message_id": "{message}", "occurred_at": "2026-11-22T10:00:00Z"}}"#,
        Uuid::now_v7()
    ))
    .map_err(|e| e.to_string())
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, backend, dir, mode, round] = args.as_slice() else {
        return Err("usage: email-writer BACKEND DIR MODE ROUND".into());
    };
    let dir = std::path::Path::new(dir);
    let store = mailledger_tests::open_store(backend, &dir.join("log"))?;
    let log: Arc<dyn EventLog> = Arc::new(Ledger::open(store, LedgerConfig::new())?);
    let kek = read_kek_file(&dir.join("kek"))?;
    let keys = Arc::new(FileKeyStore::open(&dir.join("keys"), &kek)?);
    let email = EmailLedger::new(log, Arc::clone(&keys) as _);
    if mode == "erase" {
        let address = format!("erase-{round}@example.org");
        for i in 0..3 {
            email
                .append("t", vec![event(&address, &format!("e{round}-{i}"))?])
                .await?;
        }
        let contact = email
            .pseudonym("t", &Personal::new(address.clone()))
            .await?;
        let (raw, wrapped) = keys
            .key_material("t", &contact)?
            .ok_or("the contact has no key")?;
        say(&format!(
            "key {} {}",
            mailledger_core::hex(&raw),
            mailledger_core::hex(&wrapped)
        ))?;
        email
            .erase(
                "t",
                ContactRef::Address(Personal::new(address)),
                &format!("r{round}"),
            )
            .await?;
        say("erased")?;
    }
    for i in 0u64.. {
        let address = format!("c{round}-{i}@example.org");
        let e = event(&address, &format!("m{round}-{i}"))?;
        let id = e.id;
        email.append("t", vec![e]).await?;
        if mode == "contacts" {
            say(&format!("ack {id} {address}"))?;
        }
    }
    Ok(())
}
