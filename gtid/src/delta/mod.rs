//! The reader-to-router stream: a snapshot of a server's executed set, then
//! ordered deltas.
//!
//! A delta is itself a [`GtidSet`]: the transactions that became visible
//! since the previous message (`new_view.difference(&old_view)`). Applying
//! the snapshot and then every delta in order with [`apply`] reproduces the
//! reader's set exactly. Views only grow; a shrink (RESET, re-clone) is not
//! a delta but a `Reset` followed by a new snapshot.
//!
//! Two encodings, both pure (bytes in, bytes out):
//! - [`binary`]: Causeway's own compact, versioned framing;
//! - [`proxysql`]: ProxySQL's newline-framed text protocol, so a Causeway
//!   reader can feed ProxySQL and a Causeway router can read
//!   `proxysql_mysqlbinlog`.

use crate::set::GtidSet;

pub mod binary;
pub mod proxysql;
mod varint;

/// Applies a delta to a view: `view ∪= delta`.
pub fn apply(view: &mut GtidSet, delta: &GtidSet) {
    view.union_with(delta);
}

/// The delta that takes `old` to `new` when `new ⊇ old`; `None` if `new`
/// lost transactions (a reset: send a new snapshot instead).
pub fn diff(old: &GtidSet, new: &GtidSet) -> Option<GtidSet> {
    old.is_subset(new).then(|| new.difference(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_then_apply_reproduces() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let old = GtidSet::parse(&format!("{u}:1-5:8")).unwrap();
        let new = GtidSet::parse(&format!("{u}:1-9:aa:1")).unwrap();
        let d = diff(&old, &new).unwrap();
        assert_eq!(d.to_string(), format!("{u}:6-7:9:aa:1"));
        let mut view = old.clone();
        apply(&mut view, &d);
        assert_eq!(view, new);
        assert_eq!(diff(&new, &old), None);
    }
}
