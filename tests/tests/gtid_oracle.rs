//! MySQL itself as the oracle for `causeway-gtid`: random sets with several
//! sources, tags, holes, overlaps and mixed case are parsed, combined and
//! printed by our crate and by the server (`GTID_SUBSET`, `GTID_SUBTRACT`, and
//! the server's normal form of a set), and the answers must agree exactly.

use anyhow::{ensure, Context, Result};
use causeway_e2e::Topology;
use causeway_gtid::GtidSet;
use mysql_async::prelude::*;

/// xorshift64*: deterministic, so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const UUIDS: [&str; 3] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "0b55a4e1-e588-11f1-8c0e-02fc00000001",
    "ffffffff-0000-4000-8000-0000000000aa",
];
const TAGS: [&str; 4] = ["", "a", "tag_1", "Batch"];

/// A random set in MySQL's input syntax, deliberately unnormalised:
/// overlapping and unordered intervals, repeated sources, mixed case.
fn random_text(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    for _ in 0..rng.below(5) {
        let mut uuid = UUIDS[rng.below(3) as usize].to_string();
        if rng.below(4) == 0 {
            uuid = uuid.to_uppercase();
        }
        let tag = TAGS[rng.below(4) as usize];
        let mut part = uuid;
        if !tag.is_empty() {
            part.push(':');
            part.push_str(tag);
        }
        for _ in 0..1 + rng.below(4) {
            let start = 1 + rng.below(60);
            match rng.below(3) {
                0 => part.push_str(&format!(":{start}")),
                _ => part.push_str(&format!(":{start}-{}", start + rng.below(15))),
            }
        }
        parts.push(part);
    }
    parts.join(",")
}

#[tokio::test]
async fn random_sets_agree_with_mysql() -> Result<()> {
    let topo = Topology::get()?;
    let mut conn = topo.conn(topo.primary_port, "MONITOR").await?;
    let seed = 0x00c0_ffee_u64;
    let mut rng = Rng(seed);
    for case in 0..300 {
        let (ta, tb) = (random_text(&mut rng), random_text(&mut rng));
        let a = GtidSet::parse(&ta).with_context(|| format!("case {case}: parse {ta:?}"))?;
        let b = GtidSet::parse(&tb).with_context(|| format!("case {case}: parse {tb:?}"))?;
        type Row = (String, String, i64, i64, String, String, String, String);
        conn.exec_drop("SET @a = ?, @b = ?", (&ta, &tb)).await?;
        let row: Row = conn
            .query_first(
                "SELECT GTID_SUBTRACT(@a, ''), GTID_SUBTRACT(@b, ''), \
                 GTID_SUBSET(@a, @b), GTID_SUBSET(@b, @a), \
                 GTID_SUBTRACT(@a, @b), GTID_SUBTRACT(@b, @a), \
                 GTID_SUBTRACT(CONCAT(@a, ',', @b), ''), \
                 GTID_SUBTRACT(@a, GTID_SUBTRACT(@a, @b))",
            )
            .await?
            .context("no row")?;
        let (norm_a, norm_b, a_in_b, b_in_a, a_minus_b, b_minus_a, union, inter) = row;
        let ctx = format!("case {case} (seed {seed:#x}): a = {ta:?}, b = {tb:?}");
        ensure!(
            a.to_string() == norm_a,
            "{ctx}: format(a) {a} != MySQL {norm_a}"
        );
        ensure!(
            b.to_string() == norm_b,
            "{ctx}: format(b) {b} != MySQL {norm_b}"
        );
        ensure!(a.is_subset(&b) == (a_in_b == 1), "{ctx}: a ⊆ b disagrees");
        ensure!(b.is_subset(&a) == (b_in_a == 1), "{ctx}: b ⊆ a disagrees");
        ensure!(a.difference(&b).to_string() == a_minus_b, "{ctx}: a - b");
        ensure!(b.difference(&a).to_string() == b_minus_a, "{ctx}: b - a");
        ensure!(a.union(&b).to_string() == union, "{ctx}: a ∪ b");
        ensure!(a.intersection(&b).to_string() == inter, "{ctx}: a ∩ b");
        // Round trip of the server's own text.
        ensure!(
            GtidSet::parse(&norm_a)? == a,
            "{ctx}: parse(MySQL's text of a)"
        );
    }
    Ok(())
}

#[tokio::test]
async fn executed_sets_of_the_sandbox_round_trip() -> Result<()> {
    let topo = Topology::get()?;
    for port in topo.server_ports() {
        let mut conn = topo.conn(port, "MONITOR").await?;
        let (executed, purged): (String, String) = conn
            .query_first("SELECT @@global.gtid_executed, @@global.gtid_purged")
            .await?
            .context("no row")?;
        for text in [executed, purged] {
            let set = GtidSet::parse(&text)?;
            ensure!(set.to_string() == text, "{text:?} printed as {set}");
        }
    }
    Ok(())
}
