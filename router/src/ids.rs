//! Small typed ids for servers and hostgroups, and the hash map the
//! router uses for what it looks up on every statement.
//!
//! Names are resolved to ids once, when a configuration is built
//! ([`crate::runtime::Runtime::build`]); per statement the router compares,
//! copies and indexes ids, never strings. An id is valid for the runtime it
//! came from: a reload builds a new runtime with new ids, and sessions take
//! the new one between statements, translating what they hold by name once.

/// A hash map for what the router looks up on every statement (users,
/// prepared statements): foldhash, seeded per process, costs a fraction of
/// std's SipHash on short keys.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A server: its index in [`crate::runtime::Runtime::servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u16);

/// A hostgroup: its index in [`crate::runtime::Runtime::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u16);

impl ServerId {
    /// The id of the server at `index` (saturating: a runtime refuses
    /// more than `u16::MAX` servers).
    pub fn new(index: usize) -> ServerId {
        ServerId(u16::try_from(index).unwrap_or(u16::MAX))
    }

    /// Its index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl GroupId {
    /// The id of the hostgroup at `index` (see [`ServerId::new`]).
    pub fn new(index: usize) -> GroupId {
        GroupId(u16::try_from(index).unwrap_or(u16::MAX))
    }

    /// Its index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A vector indexed by a typed id ([`ServerId`], [`GroupId`]); it derefs
/// to a slice for iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdVec<I, T> {
    items: Vec<T>,
    id: std::marker::PhantomData<fn(I)>,
}

impl<I, T> Default for IdVec<I, T> {
    fn default() -> Self {
        IdVec {
            items: Vec::new(),
            id: std::marker::PhantomData,
        }
    }
}

impl<I, T> From<Vec<T>> for IdVec<I, T> {
    fn from(items: Vec<T>) -> Self {
        IdVec {
            items,
            id: std::marker::PhantomData,
        }
    }
}

impl<I, T> std::ops::Deref for IdVec<I, T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<I, T> std::ops::DerefMut for IdVec<I, T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

impl<T> std::ops::Index<ServerId> for IdVec<ServerId, T> {
    type Output = T;
    fn index(&self, id: ServerId) -> &T {
        &self.items[id.index()]
    }
}

impl<T> std::ops::IndexMut<ServerId> for IdVec<ServerId, T> {
    fn index_mut(&mut self, id: ServerId) -> &mut T {
        &mut self.items[id.index()]
    }
}

impl<T> std::ops::Index<GroupId> for IdVec<GroupId, T> {
    type Output = T;
    fn index(&self, id: GroupId) -> &T {
        &self.items[id.index()]
    }
}

impl<T> std::ops::IndexMut<GroupId> for IdVec<GroupId, T> {
    fn index_mut(&mut self, id: GroupId) -> &mut T {
        &mut self.items[id.index()]
    }
}

impl<'a, I, T> IntoIterator for &'a IdVec<I, T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<I: From<usize>, T> IdVec<I, T> {
    /// Every item with its id.
    pub fn with_ids(&self) -> impl Iterator<Item = (I, &T)> {
        self.items.iter().enumerate().map(|(i, t)| (I::from(i), t))
    }
}

impl From<usize> for ServerId {
    fn from(i: usize) -> Self {
        ServerId::new(i)
    }
}

impl From<usize> for GroupId {
    fn from(i: usize) -> Self {
        GroupId::new(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_their_index() {
        assert_eq!(ServerId::new(7).index(), 7);
        assert_eq!(GroupId::new(0).index(), 0);
        assert!(ServerId::new(1) < ServerId::new(2));
        let v: IdVec<ServerId, &str> = vec!["a", "b"].into();
        assert_eq!(v[ServerId(1)], "b");
        assert_eq!(v.with_ids().last(), Some((ServerId(1), &"b")));
    }
}
