//! Maps keyed by tenant and a key within it, for the writer's caches.

use std::collections::HashMap;

/// A map keyed by tenant and a key within it, kept as one map per tenant
/// so a lookup borrows the names it is given. Keyed by owned
/// `(tenant, stream)` pairs, every lookup built two strings first, and the
/// writer looks up each stream and event id of a group several times.
pub(super) struct ByTenant<K, V> {
    maps: HashMap<String, HashMap<K, V>>,
}

impl<K, V> Default for ByTenant<K, V> {
    fn default() -> Self {
        Self {
            maps: HashMap::new(),
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
        map.insert(key, value);
    }

    /// Every entry, with its tenant.
    pub(super) fn into_entries(self) -> impl Iterator<Item = (String, K, V)> {
        self.maps
            .into_iter()
            .flat_map(|(t, m)| m.into_iter().map(move |(k, v)| (t.clone(), k, v)))
    }

    pub(super) fn clear(&mut self) {
        self.maps.clear();
    }
}
