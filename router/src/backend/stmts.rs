//! Prepared statements on one backend connection: which session's
//! statement has which id there, bounded by a cap with least-recently-used
//! eviction (the evicted statement is closed on the server), so a churn of
//! prepares across sessions cannot grow the server's `Prepared_stmt_count`
//! past the cap times the connections. Pure: the caller sends the
//! `COM_STMT_CLOSE`s it is handed.

use bytes::Bytes;

/// A client statement: the session's id and the router's statement id.
pub type Owner = (u32, u32);

/// One statement prepared on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whose statement.
    pub owner: Owner,
    /// The server's statement id.
    pub backend_id: u32,
    /// The parameter types last sent to the server for it (EXECUTEs that do
    /// not bind types use these).
    pub types: Option<Bytes>,
    used: u64,
}

/// The statements prepared on one connection.
#[derive(Debug, Clone, Default)]
pub struct StmtCache {
    entries: Vec<Entry>,
    clock: u64,
}

impl StmtCache {
    /// The entry of `owner`, marked used.
    pub fn get(&mut self, owner: Owner) -> Option<&mut Entry> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.iter_mut().find(|e| e.owner == owner)?;
        e.used = clock;
        Some(e)
    }

    /// Records `owner`'s statement as `backend_id`; returns the server ids
    /// to close so that at most `cap` remain (least recently used first,
    /// never `owner`'s).
    pub fn insert(&mut self, owner: Owner, backend_id: u32, cap: usize) -> Vec<u32> {
        self.clock += 1;
        let mut closed = self.remove(owner).into_iter().collect::<Vec<_>>();
        self.entries.push(Entry {
            owner,
            backend_id,
            types: None,
            used: self.clock,
        });
        while self.entries.len() > cap.max(1) {
            let Some((i, _)) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.owner != owner)
                .min_by_key(|(_, e)| e.used)
            else {
                break;
            };
            closed.push(self.entries.swap_remove(i).backend_id);
        }
        closed
    }

    /// Forgets `owner`'s statement; its server id, to close.
    pub fn remove(&mut self, owner: Owner) -> Option<u32> {
        let i = self.entries.iter().position(|e| e.owner == owner)?;
        Some(self.entries.swap_remove(i).backend_id)
    }

    /// Forgets every statement of `session`; their server ids, to close.
    pub fn remove_session(&mut self, session: u32) -> Vec<u32> {
        let mut out = Vec::new();
        self.entries.retain(|e| {
            let keep = e.owner.0 != session;
            if !keep {
                out.push(e.backend_id);
            }
            keep
        });
        out
    }

    /// Statements prepared.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// None prepared.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the server forgot: a reset or a new login).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_evicts_the_least_recently_used_other_statement() {
        let mut c = StmtCache::default();
        assert!(c.insert((1, 1), 101, 2).is_empty());
        assert!(c.insert((1, 2), 102, 2).is_empty());
        assert_eq!(c.get((1, 1)).map(|e| e.backend_id), Some(101));
        // (1, 2) is the least recently used now.
        assert_eq!(c.insert((2, 1), 201, 2), vec![102]);
        assert_eq!(c.len(), 2);
        assert!(c.get((1, 2)).is_none());
        // Re-preparing the same statement replaces it.
        assert_eq!(c.insert((2, 1), 202, 2), vec![201]);
        assert_eq!(c.remove_session(2), vec![202]);
        assert_eq!(c.remove((1, 1)), Some(101));
        assert!(c.is_empty());
    }

    #[test]
    fn churn_stays_bounded() {
        let mut c = StmtCache::default();
        let mut closed = 0;
        for i in 0..10_000u32 {
            closed += c.insert((i % 50, i), i, 16).len();
            assert!(c.len() <= 16);
        }
        assert_eq!(closed, 10_000 - 16);
    }
}
