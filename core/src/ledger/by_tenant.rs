//! Maps keyed by tenant and a key within it, for the writer's caches.

use std::collections::HashMap;

/// A map keyed by tenant and a key within it, kept as one map per tenant
/// so a lookup borrows the names it is given. Keyed by owned
/// `(tenant, stream)` pairs, every lookup built two strings first, and the
/// writer looks up each stream and event id of a group several times.
pub(super) struct ByTenant<K, V> {
    maps: HashMap<String, HashMap<K, V>>,
    len: usize,
}

impl<K, V> Default for ByTenant<K, V> {
    fn default() -> Self {
        Self {
            maps: HashMap::new(),
            len: 0,
        }
    }
}

impl<K: Eq + std::hash::Hash, V: Copy> ByTenant<K, V> {
    pub(super) fn get<Q>(&self, tenant: &str, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.maps.get(tenant)?.get(key).copied()
    }

    pub(super) fn contains<Q>(&self, tenant: &str, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.maps.get(tenant).is_some_and(|m| m.contains_key(key))
    }

    /// `capacity`: room to make for a tenant seen for the first time.
    pub(super) fn insert(&mut self, tenant: &str, key: K, value: V, capacity: usize) {
        let map = match self.maps.get_mut(tenant) {
            Some(m) => m,
            None => self
                .maps
                .entry(tenant.to_owned())
                .or_insert_with(|| HashMap::with_capacity(capacity)),
        };
        if map.insert(key, value).is_none() {
            self.len += 1;
        }
    }

    /// Moves every entry of `other` in; `other`'s win.
    pub(super) fn extend(&mut self, other: Self) {
        for (tenant, entries) in other.maps {
            match self.maps.get_mut(&tenant) {
                Some(map) if !map.is_empty() => {
                    for (k, v) in entries {
                        if map.insert(k, v).is_none() {
                            self.len += 1;
                        }
                    }
                }
                _ => {
                    self.len += entries.len();
                    self.maps.insert(tenant, entries);
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn clear(&mut self) {
        self.maps.clear();
        self.len = 0;
    }
}

/// A bounded [`ByTenant`] cache in two generations: entries go into the
/// young one; when it holds half the capacity it becomes the old one and
/// the old one is dropped. A hit in the old generation is copied into the
/// young one, so what is in use survives every turn, and a full cache
/// never forgets everything at once (the streams of messages still
/// receiving events would each pay a read again).
pub(super) struct Generations<K, V> {
    young: ByTenant<K, V>,
    old: ByTenant<K, V>,
    capacity: usize,
}

impl<K: Eq + std::hash::Hash, V: Copy> Generations<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            young: ByTenant::default(),
            old: ByTenant::default(),
            capacity: capacity.max(2),
        }
    }

    fn turn_if_full(&mut self) {
        if self.young.len() >= self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
    }

    /// The entry of `key`, from either generation (without moving it).
    #[cfg(test)]
    pub(super) fn get<Q>(&self, tenant: &str, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.young
            .get(tenant, key)
            .or_else(|| self.old.get(tenant, key))
    }

    pub(super) fn contains<Q>(&self, tenant: &str, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.young.contains(tenant, key) || self.old.contains(tenant, key)
    }

    /// The entry of `key`, moved into the young generation if it was old.
    pub(super) fn touch<Q>(&mut self, tenant: &str, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.young.get(tenant, key) {
            return Some(v);
        }
        let v = self.old.get(tenant, key)?;
        self.insert(tenant, key.to_owned(), v, 0);
        Some(v)
    }

    pub(super) fn insert(&mut self, tenant: &str, key: K, value: V, capacity: usize) {
        self.turn_if_full();
        self.young.insert(tenant, key, value, capacity);
    }

    /// Moves every entry of `other` into the young generation.
    pub(super) fn extend(&mut self, other: ByTenant<K, V>) {
        self.turn_if_full();
        self.young.extend(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_keeps_what_is_in_use_and_forgets_the_rest() {
        let mut c: Generations<u64, u64> = Generations::new(8);
        for k in 0..4 {
            c.insert("t", k, k, 0);
        }
        // Young is full: the next insert turns it old; nothing is lost yet.
        c.insert("t", 4, 4, 0);
        assert!((0..5).all(|k| c.get("t", &k) == Some(k)));
        // 0 is used, so it moves young; 1 to 3 are not.
        assert_eq!(c.touch("t", &0), Some(0));
        for k in 5..7 {
            c.insert("t", k, k, 0);
        }
        // Young (4, 0, 5, 6) turns old on the next insert; 1 to 3 are gone.
        c.insert("t", 7, 7, 0);
        assert_eq!(c.get("t", &0), Some(0));
        assert!((1..4).all(|k| c.get("t", &k).is_none()));
        assert!((4..8).all(|k| c.get("t", &k) == Some(k)));
    }
}
