use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use proptest::prelude::*;

use super::*;

fn rule(f: impl FnOnce(&mut QueryRuleConfig)) -> QueryRuleConfig {
    let mut r = QueryRuleConfig::default();
    f(&mut r);
    r
}

fn to(dest: &str) -> impl FnOnce(&mut QueryRuleConfig) + '_ {
    move |r| r.destination = Some(dest.to_string())
}

fn compile(rules: &[QueryRuleConfig]) -> Rules {
    Rules::compile(rules).unwrap_or_else(|e| panic!("rules should compile: {e:?}"))
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

fn input(sql: &str) -> RuleInput<'_> {
    RuleInput {
        sql,
        digest: None,
        user: "app",
        schema: Some("shop"),
        client_ip: LOCAL,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn first_match_stops_evaluation() {
    let rules = compile(&[
        rule(|r| {
            r.match_pattern = Some("^select".into());
            r.destination = Some("readers".into());
        }),
        rule(to("fallback")),
    ]);
    let out = rules.evaluate(&input("SELECT 1"));
    assert_eq!(out.destination, Some("readers"));
    assert_eq!((out.matched, out.last), (1, Some(0)));
    let out = rules.evaluate(&input("UPDATE t SET a = 1"));
    assert_eq!(out.destination, Some("fallback"));
    assert_eq!((out.matched, out.last), (1, Some(1)));
}

#[test]
fn chained_matches_apply_in_order_and_later_ones_override() {
    let rules = compile(&[
        rule(|r| {
            r.destination = Some("readers".into());
            r.consistency = Some(Scope::Session);
            r.chain = true;
        }),
        rule(|r| {
            r.match_pattern = Some("nothing matches this".into());
            r.destination = Some("never".into());
        }),
        rule(|r| {
            r.user = Some("app".into());
            r.destination = Some("app_readers".into());
            r.chain = true;
        }),
        // Counts matches only.
        rule(|r| {
            r.match_digest = Some("= \\?$".into());
            r.chain = true;
        }),
    ]);
    let out = rules.evaluate(&input("SELECT * FROM t WHERE id = 7"));
    assert_eq!(out.destination, Some("app_readers"));
    assert_eq!(out.consistency, Some(Scope::Session));
    assert_eq!((out.matched, out.last), (3, Some(3)));
    assert_eq!(out.digest.as_deref(), Some("SELECT * FROM t WHERE id = ?"));
}

#[test]
fn disabled_rules_are_skipped_and_positions_kept() {
    let rules = compile(&[
        rule(|r| {
            r.destination = Some("off".into());
            r.enabled = false;
        }),
        rule(|r| {
            r.name = Some("catch-all".into());
            r.destination = Some("on".into());
        }),
    ]);
    let out = rules.evaluate(&input("SELECT 1"));
    assert_eq!((out.destination, out.last), (Some("on"), Some(1)));
    assert_eq!(rules.name(0), Some("rule 0"));
    assert_eq!(rules.name(1), Some("catch-all"));
    assert_eq!(rules.name(2), None);
    assert_eq!(rules.destinations().collect::<Vec<_>>(), [(1, "on")]);
}

#[test]
fn no_rules_no_outcome() {
    let rules = compile(&[]);
    assert!(rules.is_empty());
    assert_eq!(rules.evaluate(&input("SELECT 1")), Outcome::default());
    assert_eq!(Rules::default().evaluate(&input("")), Outcome::default());
}

#[test]
fn negate_inverts_the_text_match_only() {
    let rules = compile(&[rule(|r| {
        r.match_pattern = Some(r"^\s*select\b".into());
        r.negate = true;
        r.user = Some("app".into());
        r.destination = Some("writer".into());
    })]);
    assert_eq!(rules.evaluate(&input("select 1")).destination, None);
    assert_eq!(
        rules.evaluate(&input("DELETE FROM t")).destination,
        Some("writer")
    );
    let other_user = RuleInput {
        user: "batch",
        ..input("DELETE FROM t")
    };
    assert_eq!(rules.evaluate(&other_user).matched, 0);
}

#[test]
fn negate_with_pattern_and_digest_matches_what_fails_either() {
    let rules = compile(&[rule(|r| {
        r.match_pattern = Some("^select".into());
        r.match_digest = Some(r"where id = \?$".into());
        r.negate = true;
        r.destination = Some("writer".into());
    })]);
    let hit = |sql| rules.evaluate(&input(sql)).matched == 1;
    assert!(!hit("SELECT a FROM t WHERE id = 3"));
    assert!(hit("SELECT a FROM t WHERE id > 3"));
    assert!(hit("UPDATE t SET a = 1 WHERE id = 3"));
}

#[test]
fn patterns_are_case_insensitive_unless_opted_out() {
    let rules = compile(&[
        rule(|r| {
            r.match_pattern = Some("(?-i)^SELECT".into());
            r.destination = Some("upper".into());
        }),
        rule(|r| {
            r.match_pattern = Some("^SELECT".into());
            r.destination = Some("any".into());
        }),
    ]);
    assert_eq!(
        rules.evaluate(&input("SELECT 1")).destination,
        Some("upper")
    );
    assert_eq!(rules.evaluate(&input("select 1")).destination, Some("any"));
}

#[test]
fn user_and_schema_filters_are_exact() {
    let rules = compile(&[
        rule(|r| {
            r.user = Some("app".into());
            r.schema = Some("shop".into());
            r.destination = Some("shop_app".into());
        }),
        rule(|r| {
            r.schema = Some("Shop".into());
            r.destination = Some("case".into());
        }),
    ]);
    assert_eq!(rules.evaluate(&input("x")).destination, Some("shop_app"));
    let app2 = RuleInput {
        user: "app2",
        ..input("x")
    };
    assert_eq!(rules.evaluate(&app2).matched, 0);
    let no_schema = RuleInput {
        schema: None,
        ..input("x")
    };
    assert_eq!(rules.evaluate(&no_schema).matched, 0);
    let upper = RuleInput {
        schema: Some("Shop"),
        ..input("x")
    };
    assert_eq!(rules.evaluate(&upper).destination, Some("case"));
}

#[test]
fn client_addr_networks_v4_and_v6() {
    let rules = compile(&[
        rule(|r| {
            r.client_addr = Some("10.0.0.0/8".into());
            r.destination = Some("v4net".into());
        }),
        rule(|r| {
            r.client_addr = Some("fd00::/8".into());
            r.destination = Some("v6net".into());
        }),
        rule(|r| {
            r.client_addr = Some("::1".into());
            r.destination = Some("v6host".into());
        }),
        rule(|r| {
            r.client_addr = Some("192.168.1.7".into());
            r.destination = Some("v4host".into());
        }),
        rule(|r| {
            r.client_addr = Some("0.0.0.0/0".into());
            r.destination = Some("any_v4".into());
        }),
    ]);
    let at = |addr: &str| {
        let i = RuleInput {
            client_ip: ip(addr),
            ..input("SELECT 1")
        };
        rules.evaluate(&i).destination
    };
    assert_eq!(at("10.255.0.1"), Some("v4net"));
    assert_eq!(at("::ffff:10.0.0.9"), Some("v4net"));
    assert_eq!(at("fd12:3456::1"), Some("v6net"));
    assert_eq!(at("fe80::1"), None);
    assert_eq!(at("::1"), Some("v6host"));
    assert_eq!(at("192.168.1.7"), Some("v4host"));
    assert_eq!(at("192.168.1.8"), Some("any_v4"));
    assert_eq!(at("2001:db8::1"), None);
}

#[test]
fn mapped_v6_networks_match_v4_clients() {
    let rules = compile(&[rule(|r| {
        r.client_addr = Some("::ffff:10.0.0.0/104".into());
        r.destination = Some("mapped".into());
    })]);
    let i = RuleInput {
        client_ip: ip("10.9.9.9"),
        ..input("SELECT 1")
    };
    assert_eq!(rules.evaluate(&i).destination, Some("mapped"));
}

#[test]
fn digest_is_computed_once_only_when_reached() {
    let rules = compile(&[
        rule(|r| {
            r.user = Some("admin".into());
            r.match_digest = Some("x".into());
            r.destination = Some("a".into());
        }),
        rule(|r| {
            r.match_pattern = Some("^select".into());
            r.destination = Some("b".into());
        }),
        rule(|r| {
            r.match_digest = Some("^update".into());
            r.destination = Some("c".into());
        }),
    ]);
    // The user filter fails before the digest is needed; rule 1 stops.
    let out = rules.evaluate(&input("SELECT 1"));
    assert_eq!((out.destination, out.digest), (Some("b"), None));
    let out = rules.evaluate(&input("UPDATE t SET a = 'x'"));
    assert_eq!(out.destination, Some("c"));
    assert_eq!(out.digest.as_deref(), Some("UPDATE t SET a = ?"));
    // A digest from the caller is used as is.
    let given = RuleInput {
        digest: Some("update (given)"),
        ..input("SELECT 1")
    };
    let out = rules.evaluate(&given);
    assert_eq!((out.destination, out.digest), (Some("b"), None));
    let given = RuleInput {
        digest: Some("update (given)"),
        ..input("DELETE FROM t")
    };
    assert_eq!(rules.evaluate(&given).destination, Some("c"));
}

#[test]
fn compile_collects_every_problem_naming_the_rule() {
    let errors = Rules::compile(&[
        rule(|r| {
            r.name = Some("bad regex".into());
            r.match_pattern = Some("(unclosed".into());
            r.match_digest = Some("[z-a]".into());
            r.destination = Some("w".into());
        }),
        rule(to("fine")),
        rule(|r| {
            r.client_addr = Some("10.0.0.1/8".into());
            r.destination = Some("w".into());
        }),
        rule(|r| {
            r.client_addr = Some("not an address".into());
            r.consistency = Some(Scope::Eventual);
        }),
        rule(|r| r.user = Some("app".into())),
        rule(|_| {}),
        rule(|r| {
            r.negate = true;
            r.destination = Some(String::new());
            r.enabled = false;
        }),
        rule(|r| {
            r.client_addr = Some("::1/129".into());
            r.match_pattern = Some(String::new());
            r.destination = Some("w".into());
        }),
        rule(|r| {
            r.match_pattern = Some("a{1000}{1000}".into());
            r.destination = Some("w".into());
        }),
    ])
    .unwrap_err();
    let expect = [
        "query_rules[0] (\"bad regex\"): match_pattern: ",
        "query_rules[0] (\"bad regex\"): match_digest: ",
        "query_rules[2]: client_addr: host bits set (the network is 10.0.0.0/8)",
        "query_rules[3]: client_addr: \"not an address\" is not an IP address",
        "query_rules[4]: rule: no action",
        "query_rules[5]: rule: no match criteria and no action",
        "query_rules[6]: destination: must not be empty",
        "query_rules[6]: negate: needs match_pattern or match_digest",
        "query_rules[7]: match_pattern: must not be empty",
        "query_rules[7]: client_addr: prefix length \"129\" is not 0..=128",
        "query_rules[8]: match_pattern: ",
    ];
    for e in expect {
        assert!(
            errors.iter().any(|m| m.starts_with(e)),
            "missing {e:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    assert!(errors[0].contains("unclosed"), "{}", errors[0]);
    assert!(errors.iter().all(|e| !e.contains('\n')), "{errors:#?}");
}

#[test]
fn chained_rule_without_action_is_allowed() {
    let rules = compile(&[rule(|r| {
        r.user = Some("app".into());
        r.chain = true;
    })]);
    let out = rules.evaluate(&input("SELECT 1"));
    assert_eq!((out.matched, out.destination), (1, None));
}

#[test]
fn config_entries_deserialize_with_defaults() {
    #[derive(Debug, serde::Deserialize)]
    struct File {
        query_rules: Vec<QueryRuleConfig>,
    }
    let text = r#"
        [[query_rules]]
        name = "reports"
        match_digest = '^SELECT .* FROM orders'
        client_addr = "10.0.0.0/8"
        consistency = "eventual"
        destination = "analytics"
        chain = true

        [[query_rules]]
        user = "batch"
        consistency = "global"
    "#;
    let f: File = causeway_common::config::parse_toml(text, Path::new("t.toml")).unwrap();
    assert_eq!(f.query_rules[0].consistency, Some(Scope::Eventual));
    assert!(f.query_rules[0].enabled && f.query_rules[0].chain);
    assert_eq!(
        f.query_rules[1],
        QueryRuleConfig {
            user: Some("batch".into()),
            consistency: Some(Scope::Global),
            ..QueryRuleConfig::default()
        }
    );
    compile(&f.query_rules);
    let bad = "[[query_rules]]\nmatch = 'x'\n";
    assert!(causeway_common::config::parse_toml::<File>(bad, Path::new("t.toml")).is_err());
    let bad = "[[query_rules]]\nconsistency = 'strong'\n";
    assert!(causeway_common::config::parse_toml::<File>(bad, Path::new("t.toml")).is_err());
}

// ---------------------------------------------------------------------------
// Digest

#[test]
fn digest_examples() {
    for (sql, want) in [
        (
            "SELECT * FROM t WHERE id = 5",
            "SELECT * FROM t WHERE id = ?",
        ),
        (
            "select c from sbtest1 where id=7",
            "select c from sbtest1 where id=?",
        ),
        (
            "SELECT * FROM users WHERE name = 'O\\'Brien' AND age > -3 AND x = 'it''s'",
            "SELECT * FROM users WHERE name = ? AND age > ? AND x = ?",
        ),
        (
            "/* app:42 */ SELECT a FROM t WHERE b IN (1, 2, 3) -- tail\n",
            "SELECT a FROM t WHERE b IN (...)",
        ),
        (
            "SELECT a FROM t WHERE b NOT IN ( 'a' , \"b\" )AND c in(-1)",
            "SELECT a FROM t WHERE b NOT IN (...)AND c in (...)",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, NULL);",
            "INSERT INTO t (a, b) VALUES (?, ?), (?, NULL)",
        ),
        (
            "UPDATE `my table` SET v = v - 1, w = X'0F', z = 1.5e-3, q = .5 WHERE id = 0x1F",
            "UPDATE `my table` SET v = v - ?, w = ?, z = ?, q = ? WHERE id = ?",
        ),
        (
            "SELECT  a,\n\tb  FROM t1 WHERE c = \"dq\" # hash\n LIMIT 10, 20 ;",
            "SELECT a, b FROM t1 WHERE c = ? LIMIT ?, ?",
        ),
        (
            "SELECT MIN(1), JOIN_ME(2, 3) FROM t",
            "SELECT MIN(?), JOIN_ME(?, ?) FROM t",
        ),
        ("SELECT t.1col, 1st FROM t", "SELECT t.1col, 1st FROM t"),
        (
            "SELECT _utf8mb4'abc', N'x', b'0101', 0b11 FROM dual",
            "SELECT ?, ?, ?, ? FROM dual",
        ),
        (
            "SELECT a-1, b - -2, -3, (+4), c*-5",
            "SELECT a-?, b - ?, ?, (?), c*?",
        ),
        (
            "SELECT x FROM t WHERE a = ? AND b IN (?)",
            "SELECT x FROM t WHERE a = ? AND b IN (...)",
        ),
        (
            "SELECT /*+ MAX_EXECUTION_TIME(1000) */ /*!40001 SQL_NO_CACHE */ * FROM t",
            "SELECT * FROM t",
        ),
        (
            "SELECT `a``b`, `c d` FROM `db`.`t` WHERE `x` = 1",
            "SELECT `a``b`, `c d` FROM `db`.`t` WHERE `x` = ?",
        ),
        ("SELECT 'é', ünï FROM t", "SELECT ?, ünï FROM t"),
        (
            "SELECT * FROM t WHERE id IN (SELECT 1)",
            "SELECT * FROM t WHERE id IN (SELECT ?)",
        ),
        ("SELECT a--1", "SELECT a-?"),
        (
            "SET @x := -1, @@session.sql_mode = 'ANSI'",
            "SET @x := ?, @@session.sql_mode = ?",
        ),
        ("CALL p(?, 2)", "CALL p(?, ?)"),
        ("  ", ""),
        ("", ""),
    ] {
        assert_eq!(digest(sql), want, "digest of {sql:?}");
    }
}

#[test]
fn digest_of_unterminated_text() {
    for (sql, want) in [
        ("SELECT 'abc", "SELECT ?"),
        ("SELECT \"ab\\", "SELECT ?"),
        ("SELECT 1 /* open", "SELECT ?"),
        ("SELECT `open", "SELECT `open"),
        ("SELECT x'0", "SELECT ?"),
        ("SELECT 1 --", "SELECT ? --"),
        ("SELECT 1 -- ", "SELECT ?"),
        ("/*/ x */ 1", "?"),
        ("#", ""),
        ("0x", "0x"),
        ("1e", "1e"),
        ("1e+", "1e+"),
    ] {
        assert_eq!(digest(sql), want, "digest of {sql:?}");
    }
}

#[test]
fn digest_is_stable_on_tricky_text() {
    for sql in [
        "a --/**/ b",
        "a --;",
        "a--/**/",
        "1.5.5",
        "t./**/5",
        "'a'.5",
        "1e+5x",
        "x = - 5",
        "IN ( -5 , +6 )",
        "f(a, - 5)",
        "`a ; ",
        "a -\u{1}",
        "-/**/-/**/- 1",
    ] {
        let once = digest(sql);
        assert_eq!(digest(&once), once, "digest of {sql:?} is {once:?}");
    }
}

/// Text made of SQL-ish pieces, where the digest's edge cases live.
fn sqlish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        " ", "\n", "\t", "\u{1}", "-", "--", "-- ", "+", "#", "/*", "*/", "/", "*", "'", "\"", "`",
        "\\", ";", ",", "(", ")", ".", "?", "1", "0x1f", "0b1", "e", "E", "5", "x", "N", "_u",
        "IN", "in", "SELECT", "WHERE", "a", "é", "=", "@", ":", "$", "IN (", "1, 2", "*/ 1",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn digest_never_panics_and_is_idempotent(sql in any::<String>()) {
        let once = digest(&sql);
        prop_assert_eq!(digest(&once), once);
    }

    #[test]
    fn digest_into_a_reused_buffer_is_the_digest(a in sqlish(), b in sqlish()) {
        // Whatever the buffer held before (a longer digest included).
        let mut buf = String::from("left over from an earlier statement");
        digest_into(&a, &mut buf);
        prop_assert_eq!(&buf, &digest(&a));
        digest_into(&b, &mut buf);
        prop_assert_eq!(&buf, &digest(&b));
    }

    #[test]
    fn digest_of_sqlish_text_is_idempotent(sql in sqlish()) {
        let once = digest(&sql);
        prop_assert_eq!(digest(&once), once.clone(), "input {:?}", sql);
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
    }

    #[test]
    fn hints_never_panic(sql in any::<String>(), sqlish in sqlish()) {
        let _ = Hints::parse(&sql);
        let h = Hints::parse(&sqlish);
        prop_assert!(h.errors.len() <= Hints::MAX_ERRORS + 1);
    }

    #[test]
    fn hints_inside_string_literals_never_count(s in "[a-z ,=:]{0,20}") {
        let sql = format!("SELECT '/* causeway: primary, {s} */' FROM t");
        prop_assert!(Hints::parse(&sql).is_empty());
    }
}

// ---------------------------------------------------------------------------
// Hints

#[test]
fn hints_read_every_key() {
    let h = Hints::parse(
        "SELECT /* causeway: hostgroup=reports, consistency=Token, \
         min_gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n 3e11fa47-71ca-11e1-9e33-c80aa9429563:7 */ 1",
    );
    assert_eq!(
        h,
        Hints {
            hostgroup: Some("reports".into()),
            primary: false,
            consistency: Some(Scope::Token),
            min_gtid: Some(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,3e11fa47-71ca-11e1-9e33-c80aa9429563:7"
                    .into()
            ),
            errors: vec![],
        }
    );
    let h = Hints::parse("/*+ CAUSEWAY : primary */ UPDATE t SET a = 1");
    assert!(h.primary && h.errors.is_empty(), "{h:?}");
    let h = Hints::parse("/*causeway:primary=false,*/ SELECT 1");
    assert!(!h.primary && h.errors.is_empty(), "{h:?}");
}

#[test]
fn every_scope_has_a_hint() {
    for (text, scope) in [
        ("eventual", Scope::Eventual),
        ("session", Scope::Session),
        ("USER", Scope::User),
        ("router", Scope::Router),
        ("token", Scope::Token),
        ("global", Scope::Global),
    ] {
        let h = Hints::parse(&format!("/* causeway: consistency={text} */ SELECT 1"));
        assert_eq!(h.consistency, Some(scope), "{text}");
        assert!(h.errors.is_empty(), "{text}: {h:?}");
    }
}

#[test]
fn later_hint_comments_win() {
    let h = Hints::parse(
        "/* causeway: hostgroup=a, consistency=global */ SELECT 1 \
         /* causeway: hostgroup=b */ /* causeway: primary=on */",
    );
    assert_eq!(h.hostgroup.as_deref(), Some("b"));
    assert_eq!(h.consistency, Some(Scope::Global));
    assert!(h.primary);
}

#[test]
fn only_real_comments_are_hints() {
    for sql in [
        "SELECT '/* causeway: primary */'",
        "SELECT \"it's /* causeway: primary */\"",
        "SELECT 'a\\' /* causeway: primary */'",
        "SELECT `/* causeway: primary */` FROM t",
        "SELECT 1 -- /* causeway: primary */",
        "SELECT 1 # /* causeway: primary */",
        "SELECT /* not causeway: primary */ 1",
        "SELECT /*! causeway: primary */ 1",
        "SELECT /* causewayx: primary */ 1",
        "SELECT 1",
    ] {
        assert!(Hints::parse(sql).is_empty(), "{sql:?}");
    }
    let h = Hints::parse("SELECT 'a''b', `c` -- x\n /* causeway: primary */");
    assert!(h.primary, "{h:?}");
}

#[test]
fn hint_errors_are_collected() {
    let h = Hints::parse(
        "/* causeway: color=red, consistency=strong, primary=maybe, hostgroup, \
         min_gtid=, hostgroup=ok, x:1 */ SELECT 1",
    );
    assert_eq!(h.hostgroup.as_deref(), Some("ok"));
    assert_eq!(
        h.errors,
        [
            "hint: unknown key \"color\"",
            "hint: consistency: expected eventual, session, token or global, got \"strong\"",
            "hint: primary: expected true or false, got \"maybe\"",
            "hint: hostgroup needs a value",
            "hint: min_gtid needs a value",
            "hint: unknown key \"x:1\"",
        ]
    );
    let h = Hints::parse("SELECT 1 /* causeway: primary");
    assert_eq!(h.errors, ["hint: unterminated hint comment"]);
    assert!(!h.primary);
}

#[test]
fn hint_errors_are_bounded() {
    let many = "k, ".repeat(100);
    let h = Hints::parse(&format!("/* causeway: {many} */"));
    assert_eq!(h.errors.len(), Hints::MAX_ERRORS + 1);
    assert_eq!(h.errors.last().unwrap(), "hint: more errors not shown");
    let long = "x".repeat(100);
    let h = Hints::parse(&format!("/* causeway: {long}=1 */"));
    assert!(h.errors[0].len() < 70, "{:?}", h.errors[0]);
}
