use std::path::Path;

use super::*;
use crate::config::Config;
use crate::import::emit::emit;
use crate::runtime::Runtime;

fn fixture(name: &str) -> Proxysql {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/proxysql")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Proxysql::from_cnf(&text).unwrap()
}

/// Converts a fixture, emits it, reads the text back as a `Config` (which
/// must equal the converted one), validates it and builds a runtime.
fn check(name: &str) -> (Conversion, Config, String) {
    let conv = convert(&fixture(name), &Options::default());
    let text = emit(&conv, name);
    let cfg = Config::from_toml(&text, Path::new(name)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg, conv.config, "{text}");
    cfg.validate().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut built = cfg.clone();
    // Hashed passwords are read from the environment: give them one here.
    for u in &mut built.users {
        if u.password_env.take().is_some() {
            u.password = Some(Secret("from-env".into()));
        }
    }
    Runtime::build(built).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    (conv, cfg, text)
}

/// A rule's user, digest, destination and chain.
type RuleView<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, bool);

fn not_converted(conv: &Conversion) -> Vec<String> {
    conv.not_converted
        .iter()
        .map(|n| format!("{}: {}", n.origin, n.what))
        .collect()
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|l| l.contains(needle))
}

#[test]
fn minimal() {
    let (conv, cfg, _) = check("1-minimal.cnf");
    assert_eq!(cfg.hostgroups.len(), 1);
    assert_eq!(cfg.hostgroups[0].role, Role::Writer);
    assert_eq!(cfg.servers[0].hostgroup, "hg0");
    assert_eq!(cfg.users[0].default_hostgroup.as_deref(), Some("hg0"));
    assert_eq!(cfg.users[0].max_connections, 10000);
    assert!(cfg.query_rules.is_empty());
    assert_eq!(cfg.monitor.user, "monitor");
    assert_eq!(cfg.backend.tls.mode, BackendTlsMode::Disabled);
    assert!(conv.not_converted.is_empty(), "{:?}", conv.not_converted);
}

#[test]
fn read_write_split_guide() {
    let (conv, cfg, text) = check("2-rw-split.cnf");
    let roles: Vec<(&str, Role, Option<&str>)> = cfg
        .hostgroups
        .iter()
        .map(|h| (h.name.as_str(), h.role, h.writer.as_deref()))
        .collect();
    assert_eq!(
        roles,
        [
            ("hg1", Role::Writer, None),
            ("hg2", Role::Reader, Some("hg1"))
        ]
    );
    assert_eq!(cfg.servers[1].weight, 10);
    assert_eq!(cfg.servers[1].max_connections, 200);
    assert_eq!(
        cfg.servers[1].max_replication_lag,
        Some(Duration::from_secs(10))
    );
    // The users' default hostgroups first (chained), then the guide's rules.
    let rules: Vec<RuleView<'_>> = cfg
        .query_rules
        .iter()
        .map(|r| {
            (
                r.user.as_deref(),
                r.match_digest.as_deref(),
                r.destination.as_deref(),
                r.chain,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (Some("app"), None, Some("hg1"), true),
            (Some("reports"), None, Some("hg2"), true),
            (None, Some("^SELECT .* FOR UPDATE"), Some("hg1"), false),
            (None, Some("^SELECT"), Some("hg2"), false),
        ]
    );
    assert!(cfg.routing.writer_is_also_reader, "ProxySQL's default");
    assert_eq!(cfg.monitor.interval, Duration::from_millis(1500));
    assert_eq!(cfg.monitor.query_timeout, Duration::from_millis(500));
    assert_eq!(cfg.backend.connect_timeout, Duration::from_secs(3));
    assert_eq!(cfg.frontend.listen.to_string(), "0.0.0.0:6033");
    assert_eq!(cfg.frontend.max_connections, 2048);
    let not = not_converted(&conv);
    for needle in [
        "mysql-threads = 4: use causeway-router --threads",
        "mysql-server_version = 8.0.36",
        "mysql-have_compress",
        "admin-admin_credentials = (not shown)",
        "mysql-monitor_connect_interval",
    ] {
        assert!(has(&not, needle), "{needle}: {not:#?}");
    }
    assert!(!text.contains("admin:admin"), "{text}");
    assert!(text.contains("# ---- Not converted"), "{text}");
}

#[test]
fn gtid_causal_reads_guide() {
    let (conv, cfg, _) = check("3-gtid-causal.cnf");
    assert_eq!(cfg.consistent_pairs.len(), 1);
    let p = &cfg.consistent_pairs[0];
    assert_eq!((p.reader.as_str(), p.writer.as_str()), ("hg2", "hg1"));
    // Only the rule's reads are causal, as in ProxySQL.
    assert_eq!(p.scope, Scope::Eventual);
    let r = cfg
        .query_rules
        .iter()
        .find(|r| r.match_digest.as_deref() == Some("^SELECT"))
        .unwrap();
    assert_eq!(r.consistency, Some(Scope::Session));
    assert_eq!(r.destination.as_deref(), Some("hg2"));
    let readers: Vec<Option<&str>> = cfg.servers.iter().map(|s| s.reader.as_deref()).collect();
    assert_eq!(
        readers,
        [Some("db1:3307"), Some("db2:3307"), Some("db3:3307")]
    );
    assert!(!cfg.routing.writer_is_also_reader);
    assert_eq!(cfg.monitor.interval, Duration::from_secs(1));
    assert!(conv.not_converted.is_empty(), "{:#?}", conv.not_converted);
}

#[test]
fn large_configuration_with_chains_and_unconvertible_features() {
    let (conv, cfg, _) = check("4-large.cnf");
    let names: Vec<&str> = cfg.hostgroups.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["hg10", "hg20", "hg30", "hg40"]);
    assert_eq!(cfg.hostgroups[2].role, Role::Writer, "analytics' default");
    assert_eq!(cfg.hostgroups[3].role, Role::Reader, "a plain pool");
    // 10.1.0.1 once (the writer, also reading); 10.1.0.2 once.
    assert_eq!(cfg.servers.len(), 6);
    assert!(cfg.routing.writer_is_also_reader);
    let offline = cfg.servers.iter().find(|s| s.host == "10.1.0.3").unwrap();
    assert_eq!(offline.weight, 0);
    assert_eq!(cfg.backend.tls.mode, BackendTlsMode::Required);
    assert!(cfg
        .servers
        .iter()
        .find(|s| s.host == "10.3.0.1")
        .unwrap()
        .tls
        .is_none());
    assert_eq!(
        cfg.servers[0].tls.as_ref().map(|t| t.mode),
        Some(BackendTlsMode::Disabled)
    );
    let analytics = cfg.users.iter().find(|u| u.name == "analytics").unwrap();
    assert_eq!(
        analytics.password_env.as_deref(),
        Some("CAUSEWAY_PASSWORD_ANALYTICS")
    );
    assert!(cfg.users.iter().all(|u| u.name != "legacy"));
    assert_eq!(cfg.monitor.interval, Duration::from_millis(500));
    assert_eq!(cfg.monitor.shun_after_errors, 5);
    assert_eq!(cfg.frontend.max_connections, 4000);

    let rules: Vec<String> = cfg
        .query_rules
        .iter()
        .map(|r| {
            format!(
                "{} | user={:?} client={:?} digest={:?} pattern={:?} -> {:?} chain={}",
                r.name.as_deref().unwrap_or(""),
                r.user,
                r.client_addr,
                r.match_digest,
                r.match_pattern,
                r.destination,
                r.chain
            )
        })
        .collect();
    let expect = [
        "default_hostgroup of app | user=Some(\"app\") client=None digest=None pattern=None -> Some(\"hg10\") chain=true",
        "default_hostgroup of batch | user=Some(\"batch\") client=None digest=None pattern=None -> Some(\"hg10\") chain=true",
        "proxysql rule 2 (flagIN 100 via 1) | user=Some(\"analytics\") client=None digest=Some(\"FOR UPDATE\") pattern=None -> Some(\"hg10\") chain=false",
        "proxysql rule 3 (flagIN 100 via 1) | user=Some(\"analytics\") client=None digest=None pattern=None -> Some(\"hg30\") chain=false",
        "proxysql rule 10 | user=None client=None digest=Some(\"^SELECT c FROM sbtest1 WHERE id=\\\\?\") pattern=None -> Some(\"hg20\") chain=false",
        "proxysql rule 20 | user=None client=None digest=None pattern=Some(\"^SELECT DISTINCT c FROM sbtest1\") -> Some(\"hg20\") chain=false",
        "proxysql rule 30 | user=None client=Some(\"192.168.1.0/24\") digest=None pattern=Some(\"^INSERT INTO audit\") -> Some(\"hg10\") chain=false",
        "proxysql rule 60 | user=None client=None digest=Some(\"report\") pattern=None -> None chain=true",
        "proxysql rule 70 | user=None client=None digest=Some(\"^SELECT .* FOR UPDATE\") pattern=None -> Some(\"hg10\") chain=false",
        "proxysql rule 80 | user=None client=None digest=Some(\"^SELECT\") pattern=None -> Some(\"hg20\") chain=false",
    ];
    assert_eq!(rules, expect, "{rules:#?}");
    let r60 = &cfg.query_rules[7];
    assert_eq!(r60.backend_timeout, Some(Duration::from_secs(5)));
    assert_eq!(r60.multiplex, Some(false));

    let not = not_converted(&conv);
    for needle in [
        "rule 10: query cache (cache_ttl): no equivalent",
        "rule 20: rewrite (replace_pattern)",
        "rule 30: mirroring (mirror_hostgroup)",
        "rule 40: error_msg",
        "mysql_query_rules[7] (line 75): inactive rule",
        "rule 90: matches on digest",
        "user analytics: the password is a mysql_native_password hash",
        "user analytics: default_schema dwh",
        "user legacy: inactive",
        "user batch: fast_forward",
        "10.1.0.2:3306 is already in hostgroup 20",
        "compression = 1",
        "mysql_galera_hostgroups[0] (line 49): mysql_galera_hostgroups: Galera",
        "scheduler[0]",
        "restart_on_missing_heartbeats",
        "interface /tmp/proxysql.sock",
        "mysql-query_cache_size_MB = 256",
        "admin-refresh_interval",
    ] {
        assert!(has(&not, needle), "{needle}: {not:#?}");
    }
    let diff: Vec<String> = conv
        .differences
        .iter()
        .map(|n| format!("{}: {}", n.origin, n.what))
        .collect();
    for needle in [
        "check_type = innodb_read_only",
        "in writer hostgroup and its reader hostgroup",
        "status OFFLINE_SOFT: weight 0",
        "2 servers in writer hostgroup 30",
        "every 500ms",
    ] {
        assert!(has(&diff, needle), "{needle}: {diff:#?}");
    }
}

#[test]
fn a_broken_file_names_its_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxysql/5-broken.cnf");
    let text = std::fs::read_to_string(path).unwrap();
    let e = Proxysql::from_cnf(&text).unwrap_err();
    assert_eq!((e.line, e.column), (7, 5), "{e}");
    assert!(e.message.contains("expected ','"), "{e}");
}

#[test]
fn client_addr_prefixes_become_networks() {
    assert_eq!(client_network("%").unwrap(), None);
    assert_eq!(
        client_network("10.%").unwrap().as_deref(),
        Some("10.0.0.0/8")
    );
    assert_eq!(
        client_network("10.1.2.3").unwrap().as_deref(),
        Some("10.1.2.3")
    );
    assert!(client_network("10.1%").is_err());
    assert!(client_network("app-host").is_err());
}
