//! Sorting a batch's writes by key, the last write of a key winning, for
//! [`super::Frozen::sorted`] and [`super::Tx::take_writes`].

/// Sorts writes by key, keeping the last of several writes of one key.
///
/// A batch's keys share long prefixes (the tenant, the table, an index's
/// kind and value), so comparing them in place chases two key pointers
/// through `memcmp` per comparison, a cache miss each. Instead each key is
/// abbreviated to 16 bytes ([`abbreviate`]) and the compact abbreviations
/// are sorted; only keys whose abbreviations tie are abbreviated again
/// further on.
pub(super) fn sort_writes<K: AsRef<[u8]>, V>(writes: &mut Vec<(K, V)>) {
    let mut order: Vec<(u128, usize)> = (0..writes.len()).map(|i| (0, i)).collect();
    sort_from(&mut order, writes, 0);
    let mut slots: Vec<Option<(K, V)>> = writes.drain(..).map(Some).collect();
    // Equal keys come latest first, and `sort_from` marked all but the
    // first of them: comparing neighbours here would read every key again.
    for &(mark, i) in &order {
        if mark == SUPERSEDED {
            continue;
        }
        if let Some(w) = slots.get_mut(i).and_then(Option::take) {
            writes.push(w);
        }
    }
}

/// What [`sort_from`] leaves in place of the abbreviation of a write whose
/// key an earlier entry of the order (a later write) has too.
const SUPERSEDED: u128 = 1;

/// What it leaves for every other write.
const KEPT: u128 = 0;

/// Bytes of a key an abbreviation holds.
const ABBREVIATED: usize = 15;

/// Bytes `d..d + 15` of `key` (zero-padded) and how many of them the key
/// has (16 when it goes on past them), as one number that orders like the
/// keys' tails from `d`: zero padding keeps the order of bytes, and where
/// padded bytes tie, the shorter key is a prefix of the other and sorts
/// first. Keys with equal abbreviations below 16 are equal.
fn abbreviate(key: &[u8], d: usize) -> u128 {
    let tail = key.get(d..).unwrap_or_default();
    let mut bytes = [0u8; 16];
    let n = tail.len().min(ABBREVIATED);
    bytes[..n].copy_from_slice(&tail[..n]);
    bytes[ABBREVIATED] = u8::try_from(tail.len().min(ABBREVIATED + 1)).unwrap_or(16);
    u128::from_be_bytes(bytes)
}

/// Sorts `order` (abbreviation, index into `writes`) by the keys' bytes
/// from `d` on, then by index descending, where the keys share their first
/// `d` bytes, and leaves [`SUPERSEDED`] in place of the abbreviation of
/// each entry whose key the entry before it has ([`KEPT`] otherwise). Ties
/// go on a work list rather than the stack, so a long shared prefix cannot
/// exhaust it.
fn sort_from<K: AsRef<[u8]>, V>(order: &mut [(u128, usize)], writes: &[(K, V)], d: usize) {
    let mut work = vec![(0, order.len(), d)];
    while let Some((start, end, d)) = work.pop() {
        let part = &mut order[start..end];
        for o in part.iter_mut() {
            o.0 = writes.get(o.1).map_or(0, |w| abbreviate(w.0.as_ref(), d));
        }
        part.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut run = 0;
        while run < part.len() {
            let abbreviation = part[run].0;
            let len = part[run..].partition_point(|o| o.0 == abbreviation);
            // A tie of keys that go on: the next bytes decide.
            if len > 1 && abbreviation & 0xff > ABBREVIATED as u128 {
                work.push((start + run, start + run + len, d + ABBREVIATED));
            } else {
                // Settled: one key, or keys that end within this
                // abbreviation and so are equal.
                part[run].0 = KEPT;
                for o in &mut part[run + 1..run + len] {
                    o.0 = SUPERSEDED;
                }
            }
            run += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain way: a stable sort, then the last of each key.
    fn sorted_the_plain_way(writes: &[(Vec<u8>, u32)]) -> Vec<(Vec<u8>, u32)> {
        let mut w = writes.to_vec();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Vec<u8>, u32)> = Vec::new();
        for x in w {
            match out.last_mut() {
                Some(l) if l.0 == x.0 => *l = x,
                _ => out.push(x),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn writes_sort_by_key_and_the_last_write_of_a_key_wins(
            // Few distinct bytes and shared prefixes, so keys collide, end
            // inside each other and share long runs, as a batch's keys do.
            keys in proptest::collection::vec(
                (0usize..4, proptest::collection::vec(0u8..3, 0..40)),
                0..400,
            )
        ) {
            let prefixes: [&[u8]; 4] = [b"", b"tenant\0I", b"tenant\0IG\0\x07welcome", b"t"];
            let writes: Vec<(Vec<u8>, u32)> = keys
                .into_iter()
                .enumerate()
                .map(|(i, (p, tail))| {
                    ([prefixes[p], tail.as_slice()].concat(), u32::try_from(i).unwrap_or(0))
                })
                .collect();
            let mut sorted = writes.clone();
            sort_writes(&mut sorted);
            proptest::prop_assert_eq!(sorted, sorted_the_plain_way(&writes));
        }
    }
}
