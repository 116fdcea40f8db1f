//! The admin interface against the sandbox: its tables answer with the
//! router's real state, its commands act on live traffic (DRAIN, OFFLINE,
//! ONLINE, PAUSE, RESUME, KILL, RELOAD), bad input gets a MySQL ERR and the
//! session goes on, and admin and application users stay apart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_common::secret::Secret;
use causeway_e2e::router::{opts, start_router, start_router_from, TestRouter};
use causeway_e2e::Topology;
use causeway_router::config::{AdminUserConfig, AuthPlugin, Config};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row, SslOpts};

const OPERATOR: &str = "router_operator";
const OPERATOR_PASSWORD: &str = "operator-secret";

fn with_admin(mut cfg: Config) -> Config {
    cfg.admin.listen = "127.0.0.1:0".parse().expect("address");
    cfg.admin.users.push(AdminUserConfig {
        name: OPERATOR.into(),
        password: Some(Secret(OPERATOR_PASSWORD.into())),
        auth_plugin: AuthPlugin::CachingSha2Password,
        ..AdminUserConfig::default()
    });
    cfg
}

async fn admin(router: &TestRouter) -> Result<Conn> {
    let port = router.admin_port.context("the router has no admin port")?;
    let o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(OPERATOR))
        .pass(Some(OPERATOR_PASSWORD))
        .prefer_socket(false)
        .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
    Ok(Conn::new(o).await?)
}

async fn app(topo: &Topology, router: &TestRouter) -> Result<Conn> {
    Ok(Conn::new(opts(topo, router.port, "APP", true)?).await?)
}

/// The rows of `sql` as text (NULL as "NULL").
async fn rows(c: &mut Conn, sql: &str) -> Result<Vec<Vec<String>>> {
    let rows: Vec<Row> = c.query(sql).await.with_context(|| sql.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i) {
                    Some(mysql_async::Value::NULL) | None => "NULL".to_string(),
                    Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(v) => v.as_sql(true).trim_matches('\'').to_string(),
                })
                .collect()
        })
        .collect())
}

/// Polls `sql` until `ok` holds for its rows (10 s at most).
async fn until(
    c: &mut Conn,
    sql: &str,
    ok: impl Fn(&[Vec<String>]) -> bool,
) -> Result<Vec<Vec<String>>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rows(c, sql).await?;
        if ok(&r) {
            return Ok(r);
        }
        ensure!(Instant::now() < deadline, "{sql}: still {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn err_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn each_table_answers_with_the_sandbox_s_state() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(with_admin(topo.split_config()?)).await?;
    let mut a = admin(&router).await?;
    let servers = until(
        &mut a,
        "SELECT name, hostgroup, role, state FROM servers ORDER BY name",
        |r| r.iter().all(|s| s[3] == "online" && s[2] != "NULL"),
    )
    .await?;
    assert_eq!(
        servers,
        vec![
            vec!["primary", "primary", "primary", "online"],
            vec!["replica1", "replicas", "replicas", "online"],
            vec!["replica2", "replicas", "replicas", "online"],
        ]
    );
    // A session through the application port shows, with its id.
    let mut c = app(&topo, &router).await?;
    let id: u64 = c
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .context("id")?;
    c.query_drop("SELECT 1").await?;
    let sessions = rows(&mut a, "SELECT id, user FROM sessions").await?;
    let app_user = topo.user("APP")?.user;
    assert!(
        sessions.contains(&vec![id.to_string(), app_user]),
        "{sessions:?}"
    );
    // Statements by digest, errors by kind, both resettable.
    let _ = c.query_drop("SELECT * FROM no_such_table_here").await;
    let digests = rows(
        &mut a,
        "SELECT count, errors FROM query_digests WHERE digest LIKE '%no_such_table_here%'",
    )
    .await?;
    assert_eq!(digests, vec![vec!["1", "1"]]);
    let errors = rows(
        &mut a,
        "SELECT code, origin, count FROM errors WHERE code = 1146",
    )
    .await?;
    assert_eq!(errors, vec![vec!["1146", "backend", "1"]]);
    a.query_drop("RESET query_digests").await?;
    a.query_drop("RESET errors").await?;
    assert!(rows(&mut a, "SELECT * FROM query_digests")
        .await?
        .is_empty());
    assert!(rows(&mut a, "SELECT * FROM errors").await?.is_empty());
    // Pools joined with servers.
    let pools = rows(
        &mut a,
        "SELECT s.name, p.opened FROM servers s JOIN pools p ON p.server = s.name \
         WHERE s.name = 'primary'",
    )
    .await?;
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert!(pools[0][1].parse::<u64>()? >= 1, "{pools:?}");
    // The configuration in force, secrets redacted.
    let cfg = rows(
        &mut a,
        "SELECT key, value, revision FROM config WHERE key IN \
         ('users[0].password', 'admin.users[0].password', 'backend.queue_timeout') ORDER BY key",
    )
    .await?;
    assert_eq!(
        cfg,
        vec![
            vec!["admin.users[0].password", "<redacted>", "1"],
            vec!["backend.queue_timeout", "3s", "1"],
            vec!["users[0].password", "<redacted>", "1"],
        ]
    );
    let all = rows(&mut a, "SELECT value FROM config").await?.concat();
    assert!(
        !all.iter().any(|v| v.contains(OPERATOR_PASSWORD)),
        "a secret leaked"
    );
    // Metrics as rows, the tables listed.
    let n = rows(
        &mut a,
        "SELECT count(*) FROM metrics WHERE name = 'causeway_router_client_connections_total'",
    )
    .await?;
    assert_eq!(n, vec![vec!["1"]]);
    let tables: HashSet<String> = rows(&mut a, "SHOW TABLES")
        .await?
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for t in [
        "servers",
        "pools",
        "sessions",
        "config",
        "causal_reads",
        "metrics",
        "fleet",
    ] {
        assert!(tables.contains(t), "{t} missing from {tables:?}");
    }
    // A router configured from a file is in no fleet.
    let fleet = rows(&mut a, "SELECT * FROM fleet").await?;
    assert!(fleet.is_empty(), "{fleet:?}");
    // What clients ask when they connect.
    let v: String = a
        .query_first("SELECT @@version_comment")
        .await?
        .context("row")?;
    assert!(v.contains("Causeway"), "{v}");
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_mysql_error_and_the_session_goes_on() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = with_admin(topo.router_config()?);
    cfg.admin.query_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let mut a = admin(&router).await?;
    for (sql, code) in [
        ("SELECT * FROM nope", 1146),
        ("SELEC name FROM servers", 1064),
        ("DELETE FROM servers", 1036),
        ("UPDATE servers SET state = 'x'", 1036),
        ("WITH x AS (SELECT 1) DELETE FROM servers", 1036),
        ("DRAIN SERVER nope", 1105),
        ("PAUSE nope", 1105),
        ("SELECT @@no_such_variable", 1193),
        ("frobnicate the router", 1064),
        (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
             SELECT count(*) FROM n",
            3024,
        ),
    ] {
        let e = a
            .query_drop(sql)
            .await
            .err()
            .with_context(|| format!("{sql} succeeded"))?;
        assert_eq!(err_code(&e), Some(code), "{sql}: {e}");
        let one: u32 = a.query_first("SELECT 1").await?.context("row")?;
        assert_eq!(one, 1, "the session goes on after {sql}");
    }
    Ok(())
}

#[tokio::test]
async fn admin_and_application_users_stay_apart() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(with_admin(topo.router_config()?)).await?;
    let admin_port = router.admin_port.context("admin port")?;
    // An application user cannot log in to the admin port.
    let e = Conn::new(opts(&topo, admin_port, "APP", true)?)
        .await
        .err()
        .context("an app user logged in to the admin port")?;
    assert_eq!(err_code(&e), Some(1045), "{e}");
    // An operator cannot reach the backends through the application port.
    let o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(router.port)
        .user(Some(OPERATOR))
        .pass(Some(OPERATOR_PASSWORD))
        .prefer_socket(false)
        .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
    let e = Conn::new(o)
        .await
        .err()
        .context("an operator logged in to the app port")?;
    assert_eq!(err_code(&e), Some(1045), "{e}");
    // The mysql CLI speaks to the admin port like to a server.
    // (On a blocking thread: the router runs on this test's runtime.)
    let port = admin_port.to_string();
    let cli = topo.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli.mysql_cli(&[
            "--no-defaults",
            "-h127.0.0.1",
            "-P",
            &port,
            &format!("-u{OPERATOR}"),
            &format!("-p{OPERATOR_PASSWORD}"),
            "--batch",
            "-e",
            "SELECT name, state FROM servers; SHOW VERSION",
        ])
    })
    .await??;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("name\tstate\nprimary\t"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    Ok(())
}

#[tokio::test]
async fn kill_ends_the_session_it_names_and_kill_query_its_statement() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(with_admin(topo.router_config()?)).await?;
    let mut a = admin(&router).await?;
    let mut victim = app(&topo, &router).await?;
    let mut bystander = app(&topo, &router).await?;
    let id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await?
        .context("id")?;
    // KILL QUERY stops a long statement, the session goes on.
    let sleeper = tokio::spawn(async move {
        let r = victim.query_drop("SELECT SLEEP(30)").await;
        (r.map(|_| ()), victim)
    });
    let started = Instant::now();
    until(
        &mut a,
        &format!("SELECT id FROM sessions WHERE id = {id}"),
        |r| !r.is_empty(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.query_drop(format!("KILL QUERY {id}")).await?;
    let (r, mut victim) = sleeper.await?;
    // SLEEP() interrupted returns 1 (MySQL's way), or the statement fails
    // with 1317; either way it did not run 30 s.
    if let Err(e) = &r {
        assert_eq!(err_code(e), Some(1317), "{e}");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    victim.query_drop("SELECT 1").await?;
    // KILL ends that session, not the other.
    a.query_drop(format!("KILL {id}")).await?;
    assert!(victim.query_drop("SELECT 1").await.is_err(), "killed");
    bystander.query_drop("SELECT 1").await?;
    let e = a
        .query_drop(format!("KILL {id}"))
        .await
        .err()
        .context("twice")?;
    assert_eq!(err_code(&e), Some(1094), "{e}");
    Ok(())
}

/// Read load through the router: every few ms each task reads `@@port`
/// (the server that answered); errors are counted.
struct Load {
    stop: Arc<AtomicBool>,
    ports: Arc<Mutex<Vec<(Instant, u16)>>>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Load {
    async fn start(topo: &Topology, router: &TestRouter, sessions: usize) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let ports = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..sessions {
            let mut c = app(topo, router).await?;
            let (stop, ports, errors) = (stop.clone(), ports.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match c.query_first::<u16, _>("SELECT @@port").await {
                        Ok(Some(p)) => ports.lock().expect("lock").push((Instant::now(), p)),
                        Ok(None) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("load: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(())
            }));
        }
        Ok(Load {
            stop,
            ports,
            errors,
            tasks,
        })
    }

    /// Ports that answered after `since`.
    fn since(&self, since: Instant) -> Vec<u16> {
        self.ports
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| *t > since)
            .map(|(_, p)| *p)
            .collect()
    }

    async fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok(self.errors.load(Ordering::Relaxed))
    }
}

#[tokio::test]
async fn drain_and_offline_move_reads_away_under_load_with_no_client_errors() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(with_admin(topo.split_config()?)).await?;
    let mut a = admin(&router).await?;
    until(
        &mut a,
        "SELECT state FROM servers WHERE role = 'replicas'",
        |r| r.len() == 2,
    )
    .await?;
    let (r1, r2) = (topo.replica_ports[0], topo.replica_ports[1]);
    let load = Load::start(&topo, &router, 6).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.since(Instant::now() - Duration::from_millis(400));
    assert!(before.contains(&r1) && before.contains(&r2), "{before:?}");

    a.query_drop("DRAIN SERVER replica1").await?;
    let drained_at = Instant::now();
    until(
        &mut a,
        "SELECT state FROM servers WHERE name = 'replica1'",
        |r| r == [vec!["drained".to_string()]],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = load.since(drained_at);
    assert!(!during.contains(&r1), "replica1 drained but served reads");
    assert!(during.contains(&r2), "{during:?}");

    a.query_drop("ONLINE SERVER replica1").await?;
    a.query_drop("OFFLINE SERVER replica2").await?;
    let offline_at = Instant::now();
    let idle = until(
        &mut a,
        "SELECT s.state, p.idle FROM servers s JOIN pools p ON p.server = s.name \
         WHERE s.name = 'replica2'",
        |r| r.first().is_some_and(|r| r[0] == "offline" && r[1] == "0"),
    )
    .await?;
    assert_eq!(idle.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = load.since(offline_at);
    assert!(!after.contains(&r2), "replica2 offline but served reads");
    assert!(after.contains(&r1), "replica1 back online: {after:?}");
    a.query_drop("ONLINE SERVER replica2").await?;
    let errors = load.stop().await?;
    assert_eq!(errors, 0, "client errors under DRAIN / OFFLINE / ONLINE");
    Ok(())
}

#[tokio::test]
async fn pause_holds_new_statements_until_resume() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(with_admin(topo.router_config()?)).await?;
    let mut a = admin(&router).await?;
    let mut c = app(&topo, &router).await?;
    c.query_drop("SELECT 1").await?;
    a.query_drop("PAUSE HOSTGROUP primary").await?;
    assert_eq!(
        rows(&mut a, "SELECT hostgroup FROM paused").await?,
        vec![vec!["primary"]]
    );
    let waiting = tokio::spawn(async move {
        let r = c.query_first::<u32, _>("SELECT 7").await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a statement ran while its group was paused"
    );
    let resumed = Instant::now();
    a.query_drop("RESUME HOSTGROUP primary").await?;
    let (done, r) = waiting.await?;
    assert_eq!(r?, Some(7));
    assert!(done >= resumed);
    assert!(rows(&mut a, "SELECT * FROM paused").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn reload_of_a_broken_file_returns_every_problem_and_changes_nothing() -> Result<()> {
    let topo = Topology::get()?;
    let dir = tempdir()?;
    let path = dir.join("router.toml");
    std::fs::write(
        &path,
        "[[hostgroups]]\nname = \"w\"\n[[servers]]\nhostgroup = \"nowhere\"\n\
         [backend]\nqueue_timeout = \"0s\"\n",
    )?;
    let router = start_router_from(with_admin(topo.router_config()?), Some(path.clone())).await?;
    let mut a = admin(&router).await?;
    let before = rows(
        &mut a,
        "SELECT key, value, revision FROM config ORDER BY key",
    )
    .await?;
    let answer = rows(&mut a, "RELOAD").await?;
    assert!(answer.len() >= 3, "{answer:?}");
    assert!(answer.iter().all(|r| r[0] == "refused"), "{answer:?}");
    let text = answer.concat().join("\n");
    for needle in ["queue_timeout", "nowhere", "[[users]]"] {
        assert!(text.contains(needle), "{needle} not reported: {text}");
    }
    let after = rows(
        &mut a,
        "SELECT key, value, revision FROM config ORDER BY key",
    )
    .await?;
    assert_eq!(before, after, "a refused reload changed the configuration");
    // The app port still serves.
    app(&topo, &router).await?.query_drop("SELECT 1").await?;
    // A file that parses not at all: its line is reported.
    std::fs::write(&path, "[frontend\nlisten = 1\n")?;
    let answer = rows(&mut a, "RELOAD").await?;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(answer[0][1].contains("router.toml:1"), "{answer:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "causeway-admin-{}-{since_epoch}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
