use std::net::{IpAddr, Ipv4Addr};

use regex::RegexBuilder;

use super::*;
use crate::rules::{RuleInput, Rules};

fn step(id: i64, flag_in: i64, flag_out: Option<i64>, apply: bool, lits: Vec<Lit>) -> Step {
    Step {
        id,
        origin: format!("mysql_query_rules[{id}]"),
        flag_in,
        flag_out,
        apply,
        criteria: Ok(lits),
        actions: QueryRuleConfig {
            destination: Some(format!("hg{id}")),
            ..QueryRuleConfig::default()
        },
        comment: None,
    }
}

fn no_action(mut s: Step) -> Step {
    s.actions.destination = None;
    s
}

fn pat(p: &str) -> Lit {
    Lit::Pattern(p.into(), true)
}

fn holds(l: &Lit, sql: &str, user: &str) -> bool {
    let re = |p: &str| {
        RegexBuilder::new(p)
            .case_insensitive(true)
            .build()
            .unwrap()
            .is_match(sql)
    };
    match l {
        Lit::User(v, p) => (v == user) == *p,
        Lit::Schema(_, p) => !*p,
        Lit::Client(_, p) => *p,
        Lit::Pattern(v, p) | Lit::Digest(v, p) => re(v) == *p,
    }
}

/// ProxySQL's walk, written out directly: the reference.
fn proxysql(steps: &[Step], sql: &str, user: &str) -> Option<String> {
    let mut flag = 0;
    let mut dest = None;
    for s in steps {
        if s.flag_in != flag {
            continue;
        }
        let lits = s.criteria.as_ref().unwrap();
        if !lits.iter().all(|l| holds(l, sql, user)) {
            continue;
        }
        if let Some(d) = &s.actions.destination {
            dest = Some(d.clone());
        }
        if let Some(f) = s.flag_out {
            flag = f;
        }
        if s.apply {
            break;
        }
    }
    dest
}

fn causeway(rules: &Rules, sql: &str, user: &str) -> Option<String> {
    rules
        .evaluate(&RuleInput {
            sql,
            digest: Some(sql),
            user,
            schema: None,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        })
        .destination
        .map(str::to_string)
}

const STATEMENTS: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t FOR UPDATE",
    "select a from report_x",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "SELECT * FROM report_y FOR UPDATE",
];

fn check_same(steps: &[Step]) -> Flattened {
    let flat = flatten(steps);
    assert!(flat.not_converted.is_empty(), "{:?}", flat.not_converted);
    let rules = Rules::compile(&flat.rules).unwrap();
    for sql in STATEMENTS {
        for user in ["app", "reports"] {
            assert_eq!(
                causeway(&rules, sql, user),
                proxysql(steps, sql, user),
                "{sql:?} as {user}: {:#?}",
                flat.rules
            );
        }
    }
    flat
}

#[test]
fn plain_rules_keep_their_order_and_apply_becomes_a_stop() {
    let steps = [
        step(1, 0, None, true, vec![pat("^SELECT .* FOR UPDATE")]),
        step(2, 0, None, true, vec![pat("^SELECT")]),
    ];
    let flat = check_same(&steps);
    assert_eq!(flat.rules.len(), 2);
    assert!(!flat.rules[0].chain && !flat.rules[1].chain);
    assert_eq!(flat.rules[0].name.as_deref(), Some("proxysql rule 1"));
}

#[test]
fn without_apply_later_matches_override() {
    let steps = [
        step(1, 0, None, false, vec![pat("^SELECT")]),
        step(2, 0, None, false, vec![pat("report_")]),
    ];
    let flat = check_same(&steps);
    assert!(flat.rules.iter().all(|r| r.chain));
}

#[test]
fn a_flag_chain_becomes_conjunctions() {
    // By user into flag 1, then by pattern within it; flag-0 rules after
    // the chain only see the statements of other users.
    let steps = [
        no_action(step(
            1,
            0,
            Some(1),
            false,
            vec![Lit::User("reports".into(), true)],
        )),
        step(2, 1, None, true, vec![pat("^SELECT")]),
        step(3, 1, None, true, vec![]),
        step(4, 0, None, true, vec![pat("^SELECT")]),
    ];
    let flat = check_same(&steps);
    let r2 = &flat.rules[0];
    assert_eq!(r2.user.as_deref(), Some("reports"));
    assert_eq!(r2.match_pattern.as_deref(), Some("^SELECT"));
    assert_eq!(r2.name.as_deref(), Some("proxysql rule 2 (flagIN 1 via 1)"));
    // Rule 4 needs "user is not reports": not expressible; but rule 3
    // (flag 1, apply, no criteria) stops every reports statement first,
    // so rule 4 needs no guard at all.
    assert_eq!(flat.rules.len(), 3, "{:#?}", flat.rules);
}

#[test]
fn a_negated_pattern_guard_is_expressed_with_negate() {
    let steps = [
        no_action(step(1, 0, Some(2), false, vec![pat("FOR UPDATE")])),
        step(2, 2, None, true, vec![]),
        step(3, 0, None, true, vec![pat("^SELECT")]),
        step(4, 0, None, true, vec![]),
    ];
    let flat = check_same(&steps);
    assert_eq!(flat.rules[0].match_pattern.as_deref(), Some("FOR UPDATE"));
    assert!(!flat.rules[0].negate);
}

#[test]
fn a_guard_needing_not_a_user_is_reported_not_broadened() {
    let steps = [
        no_action(step(
            1,
            0,
            Some(1),
            false,
            vec![Lit::User("reports".into(), true)],
        )),
        step(2, 1, None, false, vec![pat("^SELECT")]),
        step(3, 0, None, true, vec![pat("^SELECT")]),
    ];
    let flat = flatten(&steps);
    assert_eq!(flat.not_converted.len(), 1, "{:?}", flat.not_converted);
    assert!(
        flat.not_converted[0].1.contains("username is not reports"),
        "{:?}",
        flat.not_converted
    );
}

#[test]
fn negate_with_both_patterns_is_reported() {
    let steps = [step(
        1,
        0,
        None,
        true,
        vec![
            Lit::Pattern("^SELECT".into(), false),
            Lit::Digest("^INSERT".into(), false),
        ],
    )];
    let flat = flatten(&steps);
    assert!(flat.rules.is_empty());
    assert!(flat.not_converted[0]
        .1
        .contains("several patterns not to match"));
}

#[test]
fn contradictory_guards_are_dropped() {
    let steps = [
        no_action(step(
            1,
            0,
            Some(1),
            false,
            vec![Lit::User("app".into(), true)],
        )),
        step(2, 1, None, true, vec![Lit::User("reports".into(), true)]),
        step(3, 1, None, true, vec![pat("^SELECT")]),
    ];
    let flat = check_same(&steps);
    assert_eq!(flat.rules.len(), 1);
    assert_eq!(flat.rules[0].user.as_deref(), Some("app"));
}

/// Random rule sets over a few patterns and users, each flattened and run
/// against the reference on every statement (those the flattener reports
/// are skipped: they are listed, not converted).
#[test]
fn random_rule_sets_route_like_proxysql() {
    let pats = ["^SELECT", "FOR UPDATE", "report_", "^INSERT", "t"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut checked = 0;
    for _ in 0..400 {
        let len = 1 + next(6) as i64;
        let steps: Vec<Step> = (1..=len)
            .map(|id| {
                let mut lits = Vec::new();
                if next(3) == 0 {
                    lits.push(Lit::User(["app", "reports"][next(2) as usize].into(), true));
                }
                if next(4) != 0 {
                    let negate = next(5) == 0;
                    lits.push(Lit::Pattern(pats[next(5) as usize].into(), !negate));
                }
                let flag_in = [0, 0, 1, 2][next(4) as usize];
                let flag_out = [None, None, Some(1), Some(2), Some(0)][next(5) as usize];
                let s = step(id, flag_in, flag_out, next(2) == 0, lits);
                if next(4) == 0 {
                    no_action(s)
                } else {
                    s
                }
            })
            .collect();
        let flat = flatten(&steps);
        if !flat.not_converted.is_empty() {
            continue;
        }
        checked += 1;
        let rules = Rules::compile(&flat.rules).unwrap();
        for sql in STATEMENTS {
            for user in ["app", "reports"] {
                assert_eq!(
                    causeway(&rules, sql, user),
                    proxysql(&steps, sql, user),
                    "{sql:?} as {user}\nsteps: {steps:#?}\nrules: {:#?}",
                    flat.rules
                );
            }
        }
    }
    assert!(checked > 200, "only {checked} rule sets were convertible");
}
