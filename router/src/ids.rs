//! Small typed ids for servers and hostgroups.
//!
//! Names are resolved to ids once, when a configuration is built
//! ([`crate::runtime::Runtime::build`]); per statement the router compares,
//! copies and indexes ids, never strings. An id is valid for the runtime it
//! came from: a reload builds a new runtime with new ids, and sessions take
//! the new one between statements, translating what they hold by name once.

/// A server: its index in [`crate::runtime::Runtime::servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u16);

/// A hostgroup: its index in [`crate::runtime::Runtime::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u16);

impl ServerId {
    /// The id of the server at `index`.
    ///
    /// # Panics
    /// Never for a validated configuration: validation refuses more than
    /// `u16::MAX` servers.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_their_index() {
        assert_eq!(ServerId::new(7).index(), 7);
        assert_eq!(GroupId::new(0).index(), 0);
        assert!(ServerId::new(1) < ServerId::new(2));
    }
}
