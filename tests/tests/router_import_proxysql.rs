//! `causeway-router import-proxysql` against the sandbox: a ProxySQL
//! configuration naming the sandbox's servers, read from a proxysql.cnf and
//! from tables of ProxySQL's admin shapes on a real MySQL server (the admin
//! DSN path), is converted; a router started from the result routes a
//! workload as the ProxySQL rules say (`@@port` tells which server
//! answered), and its causal reads see their own writes.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use causeway_e2e::router::{opts, start_router};
use causeway_e2e::Topology;
use causeway_router::config::{Config, Role};
use causeway_router::import::{self, convert, emit, model::Proxysql, Options, Tables};
use causeway_router::runtime::Runtime;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// The sandbox as ProxySQL would be told about it: the primary in
/// hostgroup 10, the replicas in 20, each with its reader as `gtid_port`;
/// locking reads to the writer, other SELECTs to the readers with causal
/// reads from hostgroup 10. Port 0: the router picks one.
fn cnf(topo: &Topology) -> Result<String> {
    let app = topo.user("APP")?;
    let monitor = topo.user("MONITOR")?;
    let readers = topo.reader_addrs()?;
    let mut servers = Vec::new();
    for (i, (port, reader)) in topo.server_ports().iter().zip(&readers).enumerate() {
        let gtid_port = reader.rsplit_once(':').context("reader address")?.1;
        let hg = if i == 0 { 10 } else { 20 };
        servers.push(format!(
            "    {{ address=\"{}\", port={port}, gtid_port={gtid_port}, hostgroup={hg}, use_ssl=1, max_connections=50 }}",
            topo.host
        ));
    }
    Ok(format!(
        r#"# proxysql.cnf for the sandbox
datadir="/var/lib/proxysql"
mysql_variables=
{{
    interfaces="127.0.0.1:0"
    monitor_username="{mu}"
    monitor_password="{mp}"
    monitor_read_only_interval=200
    monitor_writer_is_also_reader=false
    threads=2
}}
mysql_servers=
(
{servers}
)
mysql_replication_hostgroups=( {{ writer_hostgroup=10, reader_hostgroup=20 }} )
mysql_users=( {{ username="{au}", password="{ap}", default_hostgroup=10 }} )
mysql_query_rules=
(
    {{ rule_id=1, active=1, match_digest="^SELECT .* FOR UPDATE", destination_hostgroup=10, apply=1 }},
    {{ rule_id=2, active=1, match_digest="^SELECT", destination_hostgroup=20, gtid_from_hostgroup=10, apply=1 }}
)
"#,
        mu = monitor.user,
        mp = monitor.password,
        au = app.user,
        ap = app.password,
        servers = servers.join(",\n"),
    ))
}

/// What the conversion must say about the sandbox's ProxySQL, whichever
/// way it was read.
fn check_conversion(topo: &Topology, conv: &convert::Conversion) -> Result<Config> {
    let cfg = &conv.config;
    let groups: Vec<(&str, Role)> = cfg
        .hostgroups
        .iter()
        .map(|h| (h.name.as_str(), h.role))
        .collect();
    ensure!(
        groups == [("hg10", Role::Writer), ("hg20", Role::Reader)],
        "{groups:?}"
    );
    ensure!(cfg.servers.len() == 3, "{:?}", cfg.servers);
    ensure!(
        cfg.servers
            .iter()
            .map(|s| s.reader.clone())
            .collect::<Vec<_>>()
            == topo
                .reader_addrs()?
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>(),
        "readers: {:?}",
        cfg.servers
    );
    ensure!(
        cfg.consistent_pairs.len() == 1 && cfg.consistent_pairs[0].reader == "hg20",
        "{:?}",
        cfg.consistent_pairs
    );
    let dests: Vec<Option<&str>> = cfg
        .query_rules
        .iter()
        .map(|r| r.destination.as_deref())
        .collect();
    ensure!(
        dests == [Some("hg10"), Some("hg10"), Some("hg20")],
        "{:?}",
        cfg.query_rules
    );
    let not: BTreeSet<&str> = conv.not_converted.iter().map(|n| n.what.as_str()).collect();
    ensure!(
        not.iter()
            .all(|n| n.starts_with("mysql-threads") || n.starts_with("mysql-monitor_history")),
        "unexpected: {not:?}"
    );
    // The emitted text is the configuration, and it passes --check.
    let text = emit::emit(conv, "sandbox");
    let dir = topo.dir.join("import-proxysql");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("converted-{}.toml", std::process::id()));
    std::fs::write(&path, &text)?;
    let read = Config::from_file(&path)?;
    ensure!(
        read == conv.config,
        "the text differs from the conversion:\n{text}"
    );
    Runtime::build(read.clone())?;
    Ok(read)
}

async fn port(c: &mut Conn, sql: &str) -> Result<u16> {
    c.query_first::<u16, _>(sql)
        .await?
        .with_context(|| format!("no row for {sql}"))
}

/// Routes a workload through a router built from `cfg` and checks every
/// statement landed where the ProxySQL rules send it.
async fn check_routing(topo: &Topology, mut cfg: Config) -> Result<()> {
    cfg.frontend.listen = "127.0.0.1:0".parse()?;
    let router = start_router(cfg).await?;
    let replicas: HashSet<u16> = topo.replica_ports.iter().copied().collect();
    let primary = topo.primary_port;
    let mut c = Conn::new(opts(topo, router.port, "APP", true)?).await?;
    // Rule 1: locking reads to the writer.
    ensure!(port(&mut c, "SELECT @@port FOR UPDATE").await? == primary);
    // Rule 2: other SELECTs to the readers.
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let p = port(&mut c, "SELECT @@port").await?;
        ensure!(replicas.contains(&p), "a SELECT went to {p}");
        seen.insert(p);
    }
    // No rule matches: the user's default hostgroup, the writer, though
    // Causeway alone would send this plain read to a replica.
    ensure!(port(&mut c, "(SELECT @@port)").await? == primary);
    // Causal reads (gtid_from_hostgroup): a row written is read back at
    // once, from whichever server has it.
    c.query_drop("CREATE TABLE IF NOT EXISTS import_proxysql_t (id INT PRIMARY KEY, v INT)")
        .await?;
    let base = std::process::id() as i64 * 1000 % 1_000_000_000;
    for i in 0..30 {
        let id = base + i;
        c.exec_drop(
            "REPLACE INTO import_proxysql_t (id, v) VALUES (?, ?)",
            (id, i),
        )
        .await?;
        let v: Option<i64> = c
            .exec_first("SELECT v FROM import_proxysql_t WHERE id = ?", (id,))
            .await?;
        ensure!(v == Some(i), "read {id} back as {v:?}: a stale read");
    }
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converted_proxysql_cnf_routes_as_its_rules_say() -> Result<()> {
    let topo = Topology::get()?;
    let proxysql = Proxysql::from_cnf(&cnf(&topo)?)?;
    let opts = Options {
        reader_token_file: Some(topo.var("CAUSEWAY_READER_TOKEN_FILE")?.into()),
    };
    let conv = convert::convert(&proxysql, &opts);
    let cfg = check_conversion(&topo, &conv)?;
    check_routing(&topo, cfg).await
}

/// MySQL DDL for ProxySQL's admin tables (the columns the converter
/// reads, named and typed as ProxySQL defines them).
const ADMIN_TABLES: &[&str] = &[
    "CREATE TABLE runtime_mysql_servers (hostgroup_id INT NOT NULL DEFAULT 0, hostname VARCHAR(255) NOT NULL, \
     port INT NOT NULL DEFAULT 3306, gtid_port INT NOT NULL DEFAULT 0, status VARCHAR(20) NOT NULL DEFAULT 'ONLINE', \
     weight INT NOT NULL DEFAULT 1, compression INT NOT NULL DEFAULT 0, max_connections INT NOT NULL DEFAULT 1000, \
     max_replication_lag INT NOT NULL DEFAULT 0, use_ssl INT NOT NULL DEFAULT 0, max_latency_ms INT NOT NULL DEFAULT 0, \
     comment VARCHAR(255) NOT NULL DEFAULT '', PRIMARY KEY (hostgroup_id, hostname, port))",
    "CREATE TABLE runtime_mysql_users (username VARCHAR(255) NOT NULL, password VARCHAR(255), active INT NOT NULL DEFAULT 1, \
     use_ssl INT NOT NULL DEFAULT 0, default_hostgroup INT NOT NULL DEFAULT 0, default_schema VARCHAR(255), \
     schema_locked INT NOT NULL DEFAULT 0, transaction_persistent INT NOT NULL DEFAULT 1, fast_forward INT NOT NULL DEFAULT 0, \
     backend INT NOT NULL DEFAULT 1, frontend INT NOT NULL DEFAULT 1, max_connections INT NOT NULL DEFAULT 10000, \
     attributes VARCHAR(255) NOT NULL DEFAULT '', comment VARCHAR(255) NOT NULL DEFAULT '', PRIMARY KEY (username, backend))",
    "CREATE TABLE runtime_mysql_query_rules (rule_id INT NOT NULL PRIMARY KEY, active INT NOT NULL DEFAULT 0, \
     username VARCHAR(255), schemaname VARCHAR(255), flagIN INT NOT NULL DEFAULT 0, client_addr VARCHAR(255), \
     proxy_addr VARCHAR(255), proxy_port INT, digest VARCHAR(255), match_digest VARCHAR(255), match_pattern VARCHAR(255), \
     negate_match_pattern INT NOT NULL DEFAULT 0, re_modifiers VARCHAR(255) DEFAULT 'CASELESS', flagOUT INT, \
     replace_pattern VARCHAR(255), destination_hostgroup INT DEFAULT NULL, cache_ttl INT, cache_empty_result INT, \
     cache_timeout INT, reconnect INT, timeout INT, retries INT, delay INT, next_query_flagIN INT, mirror_flagOUT INT, \
     mirror_hostgroup INT, error_msg VARCHAR(255), OK_msg VARCHAR(255), sticky_conn INT, multiplex INT, \
     gtid_from_hostgroup INT, log INT, apply INT NOT NULL DEFAULT 0, attributes VARCHAR(255) NOT NULL DEFAULT '', \
     comment VARCHAR(255))",
    "CREATE TABLE runtime_mysql_replication_hostgroups (writer_hostgroup INT NOT NULL PRIMARY KEY, \
     reader_hostgroup INT NOT NULL, check_type VARCHAR(64) NOT NULL DEFAULT 'read_only', \
     comment VARCHAR(255) NOT NULL DEFAULT '', UNIQUE (reader_hostgroup))",
    "CREATE TABLE runtime_global_variables (variable_name VARCHAR(255) NOT NULL PRIMARY KEY, \
     variable_value VARCHAR(255) NOT NULL)",
];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_interface_dsn_is_read_converted_and_routes_the_same() -> Result<()> {
    let topo = Topology::get()?;
    let schema = format!("proxysql_admin_{}", std::process::id());
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {schema}"))
        .await?;
    admin
        .query_drop(format!("CREATE DATABASE {schema}"))
        .await?;
    admin.query_drop(format!("USE {schema}")).await?;
    for ddl in ADMIN_TABLES {
        admin.query_drop(*ddl).await?;
    }
    // The same ProxySQL as the cnf test, as rows.
    let p = Proxysql::from_cnf(&cnf(&topo)?)?;
    for s in &p.servers {
        let f = |k: &str| s.fields.get(k).cloned().unwrap_or_default();
        admin
            .query_drop(format!(
                "INSERT INTO runtime_mysql_servers (hostgroup_id, hostname, port, gtid_port, use_ssl, max_connections) \
                 VALUES ({}, {}, {}, {}, {}, {})",
                f("hostgroup_id"),
                quote(&f("hostname")),
                f("port"),
                f("gtid_port"),
                f("use_ssl"),
                f("max_connections")
            ))
            .await?;
    }
    // ProxySQL's runtime table also lists nothing else: no writer in the
    // reader group (writer_is_also_reader is off).
    let app = topo.user("APP")?;
    admin
        .query_drop(format!(
            "INSERT INTO runtime_mysql_users (username, password, default_hostgroup) VALUES ({}, {}, 10)",
            quote(&app.user),
            quote(&app.password)
        ))
        .await?;
    admin
        .query_drop(
            "INSERT INTO runtime_mysql_query_rules (rule_id, active, match_digest, destination_hostgroup, \
             gtid_from_hostgroup, apply) VALUES (1, 1, '^SELECT .* FOR UPDATE', 10, NULL, 1), \
             (2, 1, '^SELECT', 20, 10, 1), (3, 0, '^DELETE', 20, NULL, 1)",
        )
        .await?;
    admin
        .query_drop(
            "INSERT INTO runtime_mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (10, 20)",
        )
        .await?;
    for v in &p.variables {
        admin
            .query_drop(format!(
                "INSERT INTO runtime_global_variables VALUES ({}, {})",
                quote(&v.name),
                quote(&v.value)
            ))
            .await?;
    }
    let who = topo.user("ADMIN")?;
    let dsn = format!(
        "mysql://{}:{}@{}:{}/{schema}",
        percent(&who.user),
        percent(&who.password),
        topo.host,
        topo.primary_port
    );
    // `load` runs the admin read on a runtime of its own.
    let read = tokio::task::spawn_blocking(move || import::load(&dsn, Tables::Runtime)).await??;
    let (proxysql, name) = read;
    ensure!(name.contains("runtime tables"), "{name}");
    ensure!(proxysql.rules.len() == 3 && proxysql.servers.len() == 3);
    let opts = Options {
        reader_token_file: Some(topo.var("CAUSEWAY_READER_TOKEN_FILE")?.into()),
    };
    let mut conv = convert::convert(&proxysql, &opts);
    let inactive: Vec<_> = conv
        .not_converted
        .iter()
        .filter(|n| n.what.starts_with("inactive rule"))
        .cloned()
        .collect();
    ensure!(
        inactive.len() == 1 && inactive[0].origin == "runtime_mysql_query_rules row 3",
        "{:?}",
        conv.not_converted
    );
    conv.not_converted
        .retain(|n| !n.what.starts_with("inactive rule"));
    let cfg = check_conversion(&topo, &conv)?;
    // A missing table is a clear error, not an empty configuration.
    admin.query_drop("DROP TABLE runtime_mysql_users").await?;
    let dsn = format!(
        "mysql://{}:{}@{}:{}/{schema}",
        percent(&who.user),
        percent(&who.password),
        topo.host,
        topo.primary_port
    );
    let err = tokio::task::spawn_blocking(move || import::load(&dsn, Tables::Runtime))
        .await?
        .unwrap_err()
        .to_string();
    ensure!(
        err.contains("runtime_mysql_users") && err.contains("1146"),
        "{err}"
    );
    admin.query_drop(format!("DROP DATABASE {schema}")).await?;
    admin.disconnect().await?;
    check_routing(&topo, cfg).await
}

#[test]
fn a_broken_cnf_is_refused_with_its_line() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .join("router/tests/proxysql/5-broken.cnf");
    let err = import::load(path.to_str().context("utf-8 path")?, Tables::Runtime)
        .unwrap_err()
        .to_string();
    ensure!(
        err.ends_with("5-broken.cnf:7:5: expected ',' or ')', found '{'"),
        "{err}"
    );
    Ok(())
}
