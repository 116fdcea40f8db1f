//! ProxySQL's query rules, flagIN/flagOUT chains included, as one ordered
//! list of Causeway rules that routes every statement the same way. Pure.
//!
//! ProxySQL walks its active rules in `rule_id` order with a flag that
//! starts at 0. A rule is looked at only when its `flagIN` equals the flag;
//! when it matches, its actions are applied (later matches override
//! earlier ones), its `flagOUT` becomes the flag, and `apply = 1` stops
//! the walk. Causeway rules have no flag: one list, a chained match goes
//! on, an unchained one stops (`rules.rs`).
//!
//! The flag is therefore replaced by what the statement matched to get
//! it. The walk is replayed symbolically over **paths**, each a
//! conjunction of conditions (the guard) and the flag its statements have:
//!
//! ```text
//!   start: one path, guard = true, flag = 0
//!   rule R, for each path P with P.flag == R.flagIN:
//!     emit "P.guard and R's criteria -> R's actions"   (chain unless apply)
//!     R sets another flag (no apply):   P splits into
//!         P.guard and R           -> flag = R.flagOUT
//!         P.guard and not R       -> flag unchanged   (one path per negated condition)
//!     R stops (apply) with no action: P continues as P.guard and not R
//! ```
//! Paths are disjoint, so a statement meets exactly the emitted rules of
//! its own path, in ProxySQL's order, and stops where ProxySQL stops. A
//! guard that contradicts itself (two users) is dropped, since no statement
//! follows it. A conjunction one Causeway rule cannot say (two different
//! patterns, "not this user", a negated pattern beside a negated digest) is
//! reported with the rule it blocks; it is never replaced by something
//! broader.

use crate::rules::QueryRuleConfig;

/// One condition of a rule, positive or negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    /// The session's user is (not) this.
    User(String, bool),
    /// The session's schema is (not) this.
    Schema(String, bool),
    /// The client is (not) in this network (Causeway's `client_addr`).
    Client(String, bool),
    /// The text matches (does not match) this regex.
    Pattern(String, bool),
    /// The digest matches (does not match) this regex.
    Digest(String, bool),
}

impl Lit {
    fn negated(&self) -> Lit {
        match self.clone() {
            Lit::User(v, p) => Lit::User(v, !p),
            Lit::Schema(v, p) => Lit::Schema(v, !p),
            Lit::Client(v, p) => Lit::Client(v, !p),
            Lit::Pattern(v, p) => Lit::Pattern(v, !p),
            Lit::Digest(v, p) => Lit::Digest(v, !p),
        }
    }
}

/// One active ProxySQL rule, ready to flatten.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its `rule_id`.
    pub id: i64,
    /// Where it came from, for messages.
    pub origin: String,
    /// `flagIN`.
    pub flag_in: i64,
    /// `flagOUT`, when set.
    pub flag_out: Option<i64>,
    /// `apply`.
    pub apply: bool,
    /// Its match criteria, or why they cannot be converted.
    pub criteria: Result<Vec<Lit>, String>,
    /// The actions Causeway can take (only the action fields are set).
    pub actions: QueryRuleConfig,
    /// A comment for its name.
    pub comment: Option<String>,
}

/// The result: Causeway rules in order, and what could not be converted.
#[derive(Debug, Default)]
pub struct Flattened {
    /// The rules.
    pub rules: Vec<QueryRuleConfig>,
    /// `(origin, why)` per rule (or part of one) left out.
    pub not_converted: Vec<(String, String)>,
}

/// Paths kept at most: a pathological chain is reported, not expanded.
const MAX_PATHS: usize = 256;

#[derive(Debug, Clone)]
struct Path {
    guard: Vec<Lit>,
    flag: i64,
    /// Rule ids whose flagOUT led here (for names).
    via: Vec<i64>,
}

/// Flattens `steps` (active rules, in `rule_id` order).
pub fn flatten(steps: &[Step]) -> Flattened {
    let mut out = Flattened::default();
    // Conditions under which an emitted unchained rule has already stopped
    // evaluation: later rules need not exclude them.
    let mut stopped: Vec<Vec<Lit>> = Vec::new();
    let mut paths = vec![Path {
        guard: Vec::new(),
        flag: 0,
        via: Vec::new(),
    }];
    for (k, step) in steps.iter().enumerate() {
        if paths.len() > MAX_PATHS {
            for s in &steps[k..] {
                out.not_converted.push((
                    s.origin.clone(),
                    format!(
                        "rule {}: the flagIN/flagOUT chains before it branch into more than \
                         {MAX_PATHS} cases; not flattened",
                        s.id
                    ),
                ));
            }
            break;
        }
        let criteria = match &step.criteria {
            Ok(c) => c,
            Err(why) => {
                if paths.iter().any(|p| p.flag == step.flag_in) {
                    out.not_converted.push((
                        step.origin.clone(),
                        format!(
                            "rule {}: {why}; statements it matches follow the rules after it",
                            step.id
                        ),
                    ));
                }
                continue;
            }
        };
        let has_action = has_action(&step.actions);
        let changes_flag = !step.apply && step.flag_out.is_some_and(|f| f != step.flag_in);
        let mut next = Vec::new();
        let reached = paths.iter().filter(|p| p.flag == step.flag_in).count();
        for path in paths {
            if path.flag != step.flag_in {
                next.push(path);
                continue;
            }
            let mut cond = path.guard.clone();
            cond.extend(criteria.iter().cloned());
            let Some(cond) = simplify(cond) else {
                next.push(path);
                continue;
            };
            let mut covered = false;
            if has_action {
                let cond = drop_stopped(cond.clone(), &stopped);
                match to_rule(&cond) {
                    Ok(mut rule) => {
                        rule.name = Some(name(step, &path, reached));
                        copy_actions(&mut rule, &step.actions);
                        rule.chain = !step.apply;
                        out.rules.push(rule);
                        if step.apply {
                            // Causeway stops here for these statements.
                            covered = criteria.is_empty();
                            stopped.push(cond);
                        }
                    }
                    Err(why) => out.not_converted.push((
                        step.origin.clone(),
                        format!("rule {}: {}: {why}", step.id, reached_as(&path)),
                    )),
                }
            }
            if changes_flag || (step.apply && !has_action) {
                if changes_flag {
                    let mut via = path.via.clone();
                    via.push(step.id);
                    next.push(Path {
                        guard: cond.clone(),
                        flag: step.flag_out.unwrap_or(path.flag),
                        via,
                    });
                }
                // Not matched: one path per first failing condition.
                for i in 0..criteria.len() {
                    let mut guard = path.guard.clone();
                    guard.extend(criteria[..i].iter().cloned());
                    guard.push(criteria[i].negated());
                    if let Some(guard) = simplify(guard) {
                        next.push(Path {
                            guard,
                            flag: path.flag,
                            via: path.via.clone(),
                        });
                    }
                }
            } else if !covered {
                next.push(path);
            }
        }
        paths = next;
    }
    out
}

fn has_action(r: &QueryRuleConfig) -> bool {
    r.destination.is_some()
        || r.consistency.is_some()
        || r.multiplex.is_some()
        || r.backend_timeout.is_some()
}

fn copy_actions(to: &mut QueryRuleConfig, from: &QueryRuleConfig) {
    to.destination = from.destination.clone();
    to.consistency = from.consistency;
    to.multiplex = from.multiplex;
    to.backend_timeout = from.backend_timeout;
}

fn reached_as(path: &Path) -> String {
    if path.via.is_empty() {
        "its conditions".into()
    } else {
        let via: Vec<String> = path.via.iter().map(|i| i.to_string()).collect();
        format!("reached through the flagOUT of rule {}", via.join(", "))
    }
}

fn name(step: &Step, path: &Path, reached: usize) -> String {
    let mut name = format!("proxysql rule {}", step.id);
    if !path.via.is_empty() {
        let via: Vec<String> = path.via.iter().map(|i| i.to_string()).collect();
        name.push_str(&format!(
            " (flagIN {} via {})",
            step.flag_in,
            via.join(", ")
        ));
    } else if reached > 1 {
        name.push_str(&format!(" (flagIN {})", step.flag_in));
    }
    if let Some(c) = step.comment.as_deref().filter(|c| !c.is_empty()) {
        name.push_str(": ");
        name.push_str(c);
    }
    name
}

/// The conjunction without repeats; `None` when no statement satisfies it.
fn simplify(lits: Vec<Lit>) -> Option<Vec<Lit>> {
    let mut out: Vec<Lit> = Vec::new();
    for l in lits {
        if out.contains(&l) {
            continue;
        }
        if out.contains(&l.negated()) {
            return None;
        }
        out.push(l);
    }
    // Exact-match filters: two different positive values never hold
    // together; a negative beside a different positive says nothing.
    for pick in [
        |l: &Lit| match l {
            Lit::User(v, p) => Some((v.clone(), *p)),
            _ => None,
        },
        |l: &Lit| match l {
            Lit::Schema(v, p) => Some((v.clone(), *p)),
            _ => None,
        },
    ] {
        let positives: Vec<String> = out
            .iter()
            .filter_map(pick)
            .filter(|(_, p)| *p)
            .map(|(v, _)| v)
            .collect();
        if positives.len() > 1 {
            return None;
        }
        if !positives.is_empty() {
            out.retain(|l| pick(l).is_none_or(|(_, p)| p));
        }
    }
    Some(out)
}

/// `cond` without the negated conditions whose opposite is already
/// stopped: a statement meeting the rest and the opposite never gets this
/// far, so the negation needs no saying.
fn drop_stopped(mut cond: Vec<Lit>, stopped: &[Vec<Lit>]) -> Vec<Lit> {
    let mut i = 0;
    while i < cond.len() {
        let positive = match &cond[i] {
            Lit::User(_, p) | Lit::Schema(_, p) | Lit::Client(_, p) => *p,
            Lit::Pattern(_, p) | Lit::Digest(_, p) => *p,
        };
        if !positive {
            let mut other: Vec<Lit> = cond.clone();
            let l = other.remove(i).negated();
            other.push(l);
            if stopped.iter().any(|s| s.iter().all(|x| other.contains(x))) {
                cond.remove(i);
                continue;
            }
        }
        i += 1;
    }
    cond
}

/// One Causeway rule's criteria for a conjunction, or why there is none.
fn to_rule(lits: &[Lit]) -> Result<QueryRuleConfig, String> {
    let mut rule = QueryRuleConfig::default();
    let mut negated_text = Vec::new();
    for l in lits {
        match l {
            Lit::User(v, true) => rule.user = Some(v.clone()),
            Lit::Schema(v, true) => rule.schema = Some(v.clone()),
            Lit::Client(v, true) if rule.client_addr.is_none() => {
                rule.client_addr = Some(v.clone())
            }
            Lit::Client(..) => {
                return Err("needs two client_addr conditions at once".into());
            }
            Lit::User(v, false) => return Err(format!("needs \"username is not {v}\"")),
            Lit::Schema(v, false) => return Err(format!("needs \"schemaname is not {v}\"")),
            Lit::Pattern(v, true) if rule.match_pattern.is_none() => {
                rule.match_pattern = Some(v.clone())
            }
            Lit::Digest(v, true) if rule.match_digest.is_none() => {
                rule.match_digest = Some(v.clone())
            }
            Lit::Pattern(_, true) | Lit::Digest(_, true) => {
                return Err("needs two different patterns to match at once".into());
            }
            Lit::Pattern(_, false) | Lit::Digest(_, false) => negated_text.push(l),
        }
    }
    match negated_text.as_slice() {
        [] => {}
        [one] if rule.match_pattern.is_none() && rule.match_digest.is_none() => {
            rule.negate = true;
            match one {
                Lit::Pattern(v, _) => rule.match_pattern = Some(v.clone()),
                Lit::Digest(v, _) => rule.match_digest = Some(v.clone()),
                _ => {}
            }
        }
        [_] => return Err("needs a pattern to match and another not to match at once".into()),
        _ => {
            return Err(
                "needs several patterns not to match at once (negate_match_pattern with both \
                 match_digest and match_pattern, or after a flagOUT)"
                    .into(),
            )
        }
    }
    Ok(rule)
}

#[cfg(test)]
#[path = "flatten_tests.rs"]
mod tests;
