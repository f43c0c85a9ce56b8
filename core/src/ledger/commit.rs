//! The committer thread: writes each prepared group as one batch and one
//! sync, then publishes the head and answers the callers.

use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::Shared;
use super::config::Durability;
use super::writer::Prepared;
use crate::error::Error;
use crate::store::{Space, Store};

/// Orders a batch's puts by space and key, keeping puts of one key in
/// their order (a later one wins). A group's stream-index keys land at
/// random places in the store's ordered structures (a memtable skiplist
/// for fjall); inserted in order, each insert finds most of its search
/// path still in cache from the one before, rather than a fresh walk
/// of cache misses.
pub(super) fn sort_puts(puts: &mut [(Space, Vec<u8>, Vec<u8>)]) {
    puts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
}

/// The committer: writes each prepared group (one atomic batch, synced
/// when the log is durable), then publishes its head and answers its
/// callers. After a failed write the log is poisoned: that group's callers
/// get the error, and every later group (prepared on top of it) is
/// answered with [`Error::Poisoned`] and not written.
pub(super) fn commit_groups<S: Store>(shared: &Shared<S>, groups: &mpsc::Receiver<Prepared>) {
    let sync = shared.durability == Durability::Sync;
    for group in groups {
        if shared.poisoned.load(Ordering::SeqCst) {
            for (reply, _) in group.replies {
                let _ = reply.send(Err(Error::Poisoned));
            }
            continue;
        }
        if !group.batch.is_empty() {
            if let Err(e) = shared.store.commit(group.batch, sync) {
                tracing::error!(error = %e, "append failed; the log stops accepting appends");
                shared.poisoned.store(true, Ordering::SeqCst);
                let mut e = Some(e);
                for (reply, _) in group.replies {
                    let err = e.take().map_or(Error::Poisoned, Error::Storage);
                    let _ = reply.send(Err(err));
                }
                continue;
            }
            shared.head.send_replace(group.head);
        }
        for (reply, result) in group.replies {
            let _ = reply.send(result);
        }
    }
}
