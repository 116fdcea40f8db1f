//! A line diff in unified form, for `fleet diff` (pure). Common head and
//! tail lines are trimmed, the middle compared by longest common
//! subsequence; changes are shown with three lines of context.

/// One line of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Past this many cells the middle is shown as removed then added whole.
const MAX_CELLS: usize = 16 << 20;

fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > MAX_CELLS {
        ops.extend((0..n).map(|i| Op::Del(head + i)));
        ops.extend((0..m).map(|j| Op::Add(head + j)));
    } else {
        // lcs[i][j]: longest common subsequence of am[i..] and bm[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push(Op::Same(head + i, head + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                // Removals before additions, as diff(1) shows them.
                ops.push(Op::Del(head + i));
                i += 1;
            } else {
                ops.push(Op::Add(head + j));
                j += 1;
            }
        }
    }
    let (ta, tb) = (a.len() - tail, b.len() - tail);
    ops.extend((0..tail).map(|k| Op::Same(ta + k, tb + k)));
    ops
}

/// The unified diff from `old` (named `old_name`) to `new`; empty when
/// they are equal line for line.
pub fn unified(old_name: &str, old: &str, new_name: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = script(&a, &b);
    if ops.iter().all(|o| matches!(o, Op::Same(..))) {
        return String::new();
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(k, _)| k)
        .collect();
    // Hunks: runs of changes closer than 2 * CONTEXT, with context around.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(CONTEXT);
        let end = (k + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(h) if start <= h.1 => h.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (start, end) in hunks {
        let slice = &ops[start..end];
        let first_a = slice.iter().find_map(|o| match o {
            Op::Same(i, _) | Op::Del(i) => Some(*i),
            Op::Add(_) => None,
        });
        let first_b = slice.iter().find_map(|o| match o {
            Op::Same(_, j) | Op::Add(j) => Some(*j),
            Op::Del(_) => None,
        });
        let na = slice.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let nb = slice.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        let pos = |first: Option<usize>, count: usize| match first {
            Some(f) => format!("{},{count}", f + 1),
            None => "0,0".to_string(),
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            pos(first_a, na),
            pos(first_b, nb)
        ));
        for o in slice {
            match *o {
                Op::Same(i, _) => out.push_str(&format!(" {}\n", a[i])),
                Op::Del(i) => out.push_str(&format!("-{}\n", a[i])),
                Op::Add(j) => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a", "x\ny\n", "b", "x\ny"), "");
    }

    #[test]
    fn a_change_is_shown_with_its_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        // Changes 6 lines apart share a hunk.
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n";
        assert_eq!(
            unified("etcd", old, "file", new),
            "--- etcd\n+++ file\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
        );
        // Farther apart: two hunks.
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=20)
            .filter(|&i| i != 19)
            .map(|i| match i {
                2 => "two\n".to_string(),
                i => format!("{i}\n"),
            })
            .collect();
        assert_eq!(
            unified("a", &old, "b", &new),
            "--- a\n+++ b\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n\
             @@ -16,5 +16,4 @@\n 16\n 17\n 18\n-19\n 20\n"
        );
    }

    #[test]
    fn additions_and_removals_in_the_middle() {
        let d = unified("a", "x\ny\nz\n", "b", "x\nnew\nz\n");
        assert!(d.contains("-y\n+new\n"), "{d}");
        let d = unified("a", "", "b", "x\n");
        assert!(d.contains("@@ -0,0 +1,1 @@\n+x\n"), "{d}");
    }
}
