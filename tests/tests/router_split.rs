//! The read/write split against the sandbox: where statements land (told by
//! `@@port` in their results), transactions, session state, hints, rules,
//! prepared statements across servers, reloads; and, in a sandbox of its
//! own, a replica going away, a promotion by `read_only`, and a replica made
//! writable while it replicates (fenced: the primary stays the writer).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::router::{opts, start_router};
use causeway_e2e::Topology;
use causeway_router::config::{Config, QueryRuleConfig};
use causeway_router::Router;
use mysql_async::prelude::*;
use mysql_async::{Conn, TxOpts};

/// Deadline of each wait: a guard against hanging, not a speed assertion.
const WAIT: Duration = Duration::from_secs(60);

async fn port_of(conn: &mut Conn, sql: &str) -> Result<u16> {
    conn.query_first::<u16, _>(sql).await?.context("no row")
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_writes_and_transactions_to_the_primary() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.split_config()?).await?;
    let replicas: HashSet<u16> = topo.replica_ports.iter().copied().collect();
    let primary = topo.primary_port;
    let mut seen = HashSet::new();
    for _ in 0..6 {
        let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
        let p = port_of(&mut c, "SELECT @@port").await?;
        assert!(replicas.contains(&p), "a plain read went to {p}");
        seen.insert(p);
        c.disconnect().await?;
    }
    assert_eq!(seen, replicas, "sessions are spread over both replicas");

    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    c.query_drop("CREATE TABLE IF NOT EXISTS split_t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await?;
    // Locking reads, side effects and writes: the primary.
    for sql in [
        "SELECT @@port FOR UPDATE",
        "SELECT @@port FROM split_t LOCK IN SHARE MODE",
        "SELECT @@port FROM DUAL WHERE SLEEP(0) = 0",
    ] {
        if let Some(p) = c.query_first::<u16, _>(sql).await? {
            assert_eq!(p, primary, "{sql}");
        }
    }
    // A transaction stays on the primary from BEGIN to COMMIT, reads included.
    let mut tx = c.start_transaction(TxOpts::default()).await?;
    tx.query_drop("INSERT INTO split_t (v) VALUES (1)").await?;
    for _ in 0..3 {
        assert_eq!(
            tx.query_first::<u16, _>("SELECT @@port").await?,
            Some(primary)
        );
    }
    let in_txn: Option<i64> = tx
        .query_first("SELECT COUNT(*) FROM split_t WHERE v = 1")
        .await?;
    assert!(
        in_txn.unwrap_or(0) >= 1,
        "the transaction sees its own insert"
    );
    tx.commit().await?;
    // autocommit = 0 is a transaction too, until autocommit = 1.
    c.query_drop("SET autocommit = 0").await?;
    assert_eq!(port_of(&mut c, "SELECT @@port").await?, primary);
    c.query_drop("COMMIT").await?;
    assert_eq!(
        port_of(&mut c, "SELECT @@port").await?,
        primary,
        "still autocommit = 0"
    );
    c.query_drop("SET autocommit = 1").await?;
    assert!(replicas.contains(&port_of(&mut c, "SELECT @@port").await?));
    // START TRANSACTION READ ONLY may run on a replica, and stays there.
    c.query_drop("START TRANSACTION READ ONLY").await?;
    let ro = port_of(&mut c, "SELECT @@port").await?;
    assert!(replicas.contains(&ro));
    assert_eq!(port_of(&mut c, "SELECT @@port").await?, ro);
    c.query_drop("COMMIT").await?;
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_is_used_where_it_lives_and_settings_follow_to_replicas() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.split_config()?).await?;
    let primary = topo.primary_port;
    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    // User variables: set on the primary, read there.
    c.query_drop("SET @cw_x = 41").await?;
    let (x, p): (i64, u16) = c
        .query_first("SELECT @cw_x + 1, @@port")
        .await?
        .context("row")?;
    assert_eq!((x, p), (42, primary));
    // LAST_INSERT_ID() after an insert: where the insert ran.
    c.query_drop("CREATE TABLE IF NOT EXISTS split_li (id INT PRIMARY KEY AUTO_INCREMENT)")
        .await?;
    c.query_drop("INSERT INTO split_li VALUES ()").await?;
    let (id, p): (u64, u16) = c
        .query_first("SELECT LAST_INSERT_ID(), @@port")
        .await?
        .context("row")?;
    assert!(id > 0);
    assert_eq!(p, primary);
    // A temporary table lives on the primary; plain reads of it go there.
    c.query_drop("CREATE TEMPORARY TABLE split_tmp (a INT)")
        .await?;
    c.query_drop("INSERT INTO split_tmp VALUES (7)").await?;
    let (a, p): (i64, u16) = c
        .query_first("SELECT a, @@port FROM split_tmp")
        .await?
        .context("row")?;
    assert_eq!((a, p), (7, primary));
    // Named locks stay with their connection.
    let got: Option<i64> = c.query_first("SELECT GET_LOCK('split_lock', 1)").await?;
    assert_eq!(got, Some(1));
    let (held, p): (Option<i64>, u16) = c
        .query_first("SELECT IS_USED_LOCK('split_lock') IS NOT NULL, @@port")
        .await?
        .context("row")?;
    assert_eq!((held, p), (Some(1), primary));
    c.query_drop("DO RELEASE_LOCK('split_lock')").await?;
    // Session variables and the schema reach a replica opened later.
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+03:00'")
        .await?;
    c.query_drop("USE mysql").await?;
    let (mode, tz, db, p): (String, String, String, u16) = c
        .query_first("SELECT @@sql_mode, @@time_zone, DATABASE(), @@port")
        .await?
        .context("row")?;
    assert_ne!(p, primary, "a plain read");
    assert_eq!(
        (mode.as_str(), tz.as_str(), db.as_str()),
        ("ANSI_QUOTES", "+03:00", "mysql")
    );
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_and_rules_route_as_configured() -> Result<()> {
    let topo = Topology::get()?;
    let primary = topo.primary_port;
    let replicas: HashSet<u16> = topo.replica_ports.iter().copied().collect();
    let mut cfg = topo.split_config()?;
    cfg.query_rules.push(QueryRuleConfig {
        match_pattern: Some("^SELECT .*-- to-primary".into()),
        destination: Some("primary".into()),
        ..QueryRuleConfig::default()
    });
    let router = start_router(cfg).await?;
    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    assert_eq!(
        port_of(&mut c, "/* causeway: primary */ SELECT @@port").await?,
        primary
    );
    assert_eq!(
        port_of(&mut c, "SELECT /* causeway: hostgroup=primary */ @@port").await?,
        primary
    );
    assert_eq!(
        port_of(&mut c, "SELECT @@port -- to-primary").await?,
        primary
    );
    let to_replica = "/* causeway: hostgroup=replicas */ SELECT @@port FOR UPDATE";
    assert!(replicas.contains(&port_of(&mut c, to_replica).await?));
    // A string that looks like a hint is not one.
    let p: (String, u16) = c
        .query_first("SELECT '/* causeway: primary */', @@port")
        .await?
        .context("row")?;
    assert!(replicas.contains(&p.1));
    // A hint naming no hostgroup is refused with a clear error; the
    // session goes on.
    let err = c
        .query_drop("/* causeway: hostgroup=nowhere */ SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(9003), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(c.query_first::<i64, _>("SELECT 1").await?, Some(1));
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_work_across_the_split() -> Result<()> {
    let topo = Topology::get()?;
    let primary = topo.primary_port;
    let router = start_router(topo.split_config()?).await?;
    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let read = c.prep("SELECT @@port, ? + 1").await?;
    let (p, v): (u16, i64) = c.exec_first(&read, (1,)).await?.context("row")?;
    assert_ne!(p, primary, "a prepared plain read runs on a replica");
    assert_eq!(v, 2);
    // Inside a transaction the same statement runs on the primary, where
    // the router prepares it on first use; the client's id does not change.
    c.query_drop("BEGIN").await?;
    let (p, v): (u16, i64) = c.exec_first(&read, (41,)).await?.context("row")?;
    assert_eq!((p, v), (primary, 42));
    // Without new types (mysql_async rebinds only when types change).
    let (p, v): (u16, i64) = c.exec_first(&read, (9,)).await?.context("row")?;
    assert_eq!((p, v), (primary, 10));
    c.query_drop("COMMIT").await?;
    let (p, v): (u16, i64) = c.exec_first(&read, (0,)).await?.context("row")?;
    assert_ne!(p, primary);
    assert_eq!(v, 1);
    c.close(read).await?;
    // A prepared write goes to the primary.
    c.query_drop("CREATE TABLE IF NOT EXISTS split_ps (id INT PRIMARY KEY, v INT)")
        .await?;
    let w = c.prep("REPLACE INTO split_ps VALUES (?, ?)").await?;
    c.exec_drop(&w, (1, 5)).await?;
    let v: Option<i64> = c
        .query_first("/* causeway: primary */ SELECT v FROM split_ps WHERE id = 1")
        .await?;
    assert_eq!(v, Some(5));
    c.disconnect().await?;
    Ok(())
}

fn toml_config(topo: &Topology, extra: &str) -> Result<String> {
    let app = topo.user("APP")?;
    let replicas: String = topo
        .replica_ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "[[servers]]\nname = \"replica{}\"\nport = {p}\nhostgroup = \"replicas\"\n",
                i + 1
            )
        })
        .collect();
    Ok(format!(
        "[frontend]\nlisten = \"127.0.0.1:0\"\nrsa_private_key_file = \"{}\"\n\
         [metrics]\nenabled = false\n[monitor]\nenabled = false\n\
         [[hostgroups]]\nname = \"primary\"\n\
         [[hostgroups]]\nname = \"replicas\"\nrole = \"reader\"\nwriter = \"primary\"\n\
         [[servers]]\nname = \"primary\"\nport = {}\nhostgroup = \"primary\"\n{replicas}\
         [[users]]\nname = \"{}\"\npassword = \"{}\"\n{extra}",
        topo.primary_data().join("private_key.pem").display(),
        topo.primary_port,
        app.user,
        app.password
    ))
}

/// A router started from a configuration file, so that `reload` reads it
/// again: `text` is written to `router.toml` in a folder of its own
/// (`causeway-<name>-<pid>` in the temp dir). Its port, its shared state,
/// the file.
async fn router_from_file(
    name: &str,
    text: &str,
) -> Result<(u16, std::sync::Arc<causeway_router::Shared>, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("causeway-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("router.toml");
    std::fs::write(&path, text)?;
    let router = Router::bind(Config::from_file(&path)?, Some(path.clone())).await?;
    let port = router.local_addr()?.port();
    let shared = router.shared();
    tokio::spawn(router.run());
    Ok((port, shared, path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_between_statements_and_a_broken_file_changes_nothing() -> Result<()> {
    let topo = Topology::get()?;
    let (port, shared, path) = router_from_file("reload", &toml_config(&topo, "")?).await?;
    let mut c = Conn::new(opts(&topo, port, "APP", true)?).await?;
    assert_ne!(port_of(&mut c, "SELECT @@port").await?, topo.primary_port);

    // A file with an error: refused with its line, the old one stays.
    std::fs::write(
        &path,
        toml_config(&topo, "[[query_rules]]\ndestinaton = \"primary\"\n")?,
    )?;
    let err = shared.reload().await.unwrap_err();
    assert!(format!("{err:#}").contains("router.toml:"), "{err:#}");
    assert!(format!("{err:#}").contains("destinaton"), "{err:#}");
    assert_ne!(port_of(&mut c, "SELECT @@port").await?, topo.primary_port);

    // A valid one: the same session, between two statements, follows it.
    let rule = "[[query_rules]]\nmatch_pattern = \"^SELECT\"\ndestination = \"primary\"\n";
    std::fs::write(&path, toml_config(&topo, rule)?)?;
    shared.reload().await?;
    assert_eq!(port_of(&mut c, "SELECT @@port").await?, topo.primary_port);
    c.disconnect().await?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

#[test]
fn sighup_reloads_the_sandbox_router() -> Result<()> {
    let topo = Topology::get()?;
    let url = topo.var("CAUSEWAY_METRICS_URL")?.to_string();
    let reloads = || -> Result<u64> {
        let text = causeway_e2e::http_get(&url)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("causeway_router_reloads_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    let before = reloads()?;
    let pid = std::fs::read_to_string(topo.var("CAUSEWAY_ROUTER_PID_FILE")?)?;
    let status = Command::new("kill").args(["-HUP", pid.trim()]).status()?;
    ensure!(status.success(), "kill -HUP failed");
    let deadline = Instant::now() + WAIT;
    while reloads()? <= before {
        ensure!(Instant::now() < deadline, "no reload counted after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs `sql` as ADMIN on `port` of `topo`.
async fn admin(topo: &Topology, port: u16, sql: &str) -> Result<()> {
    let mut a = topo.conn(port, "ADMIN").await?;
    a.query_drop(sql).await?;
    a.disconnect().await?;
    Ok(())
}

/// The primary writable, the replicas read-only.
async fn restore_roles(topo: &Topology) -> Result<()> {
    for &r in &topo.replica_ports {
        admin(topo, r, "SET GLOBAL super_read_only = ON").await?;
    }
    admin(topo, topo.primary_port, "SET GLOBAL super_read_only = OFF").await?;
    admin(topo, topo.primary_port, "SET GLOBAL read_only = OFF").await
}

/// Repeats `probe` until it returns true; the last error or `false` is
/// reported when it never does.
async fn eventually<F, Fut>(what: &str, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => "false".to_string(),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            Instant::now() < deadline,
            "never {what} within {WAIT:?} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_shun_promotions_move_the_writer_and_a_writable_replica_is_fenced() -> Result<()> {
    let topo = Topology::isolated("split")?;
    // The sandbox's roles, whatever an earlier run left behind.
    restore_roles(&topo).await?;
    let router = start_router(topo.split_config()?).await?;
    let (r1, r2) = (topo.replica_ports[0], topo.replica_ports[1]);
    let fresh_read = || async {
        let mut c = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
        let p = port_of(&mut c, "SELECT @@port").await;
        let _ = c.disconnect().await;
        p
    };

    // replica1 stops: after the monitor shuns it, every read goes to replica2.
    topo.sandbox(&["stop", "replica1"])?;
    let result = async {
        eventually("replica1 shunned", || async {
            for _ in 0..4 {
                if fresh_read().await? != r2 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }
    .await;
    topo.sandbox(&["start", "replica1"])?;
    result?;
    eventually("replica1 back in use", || async {
        Ok(fresh_read().await? == r1)
    })
    .await?;

    // A replica made writable while it still replicates: not a promotion.
    // The primary stays the writer; replica2 is fenced (no statement at all).
    admin(&topo, r2, "SET GLOBAL super_read_only = OFF").await?;
    admin(&topo, r2, "SET GLOBAL read_only = OFF").await?;
    let fenced = eventually("replica2 fenced", || async {
        let cur = router.shared.current();
        let id = cur.rt.server_named("replica2").context("replica2")?;
        Ok(cur.members.fenced.contains(&id))
    })
    .await;
    let checked = async {
        fenced?;
        let mut c = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
        let w = port_of(&mut c, "/* causeway: primary */ SELECT @@port").await?;
        ensure!(
            w == topo.primary_port,
            "writes went to {w}, not the primary"
        );
        for _ in 0..6 {
            let p = port_of(&mut c, "SELECT @@port").await?;
            ensure!(p != r2, "a read reached the fenced replica2");
        }
        c.disconnect().await?;
        anyhow::Ok(())
    }
    .await;
    // Demote the primary: replica2 alone is writable, and becomes the writer.
    admin(&topo, topo.primary_port, "SET GLOBAL super_read_only = ON").await?;
    if let Err(e) = checked {
        let health = router.shared.monitor.snapshot();
        let members = router.shared.current().members.clone();
        restore_roles(&topo).await?;
        return Err(e.context(format!("{members:?}; health: {health:#?}")));
    }
    let promoted = eventually("replica2 takes writes", || async {
        let mut w = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
        let p = port_of(&mut w, "/* causeway: primary */ SELECT @@port").await?;
        let _ = w.disconnect().await;
        Ok(p == r2)
    })
    .await;
    // Put the roles back for whoever uses this sandbox next.
    restore_roles(&topo).await?;
    promoted?;
    Ok(())
}

/// A raw client of the router on `port` as APP, after a real client's login
/// (the full caching_sha2_password exchange) let the fast path through.
async fn raw_login(topo: &Topology, port: u16) -> Result<causeway_e2e::router::Raw> {
    Conn::new(opts(topo, port, "APP", true)?)
        .await?
        .disconnect()
        .await?;
    causeway_e2e::router::Raw::login_as(port, &topo.user("APP")?).await
}

/// The ERR in `packets` (the first packet), or a failure naming what came.
fn err_code(packets: &[bytes::Bytes]) -> Result<u16> {
    let p = packets.first().context("no packet")?;
    ensure!(p.first() == Some(&0xff), "not an ERR: {p:?}");
    Ok(u16::from_le_bytes([p[1], p[2]]))
}

/// COM_STMT_PREPARE through `raw`; the statement id.
async fn raw_prepare(raw: &mut causeway_e2e::router::Raw, sql: &str) -> Result<u32> {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    let out = raw.command(&p).await?;
    let ok = out.first().context("no PREPARE_OK")?;
    ensure!(ok.first() == Some(&0x00), "PREPARE failed: {ok:?}");
    Ok(u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]))
}

/// COM_STMT_SEND_LONG_DATA of parameter 0 (no reply is allowed), then
/// COM_STMT_EXECUTE with that parameter as a string; the EXECUTE's packets.
async fn raw_long_data_execute(
    raw: &mut causeway_e2e::router::Raw,
    id: u32,
    data: &[u8],
) -> Result<Vec<bytes::Bytes>> {
    let mut p = vec![0x18];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(data);
    raw.send(0, &p).await?;
    let mut e = vec![0x17];
    e.extend_from_slice(&id.to_le_bytes());
    e.push(0); // no cursor
    e.extend_from_slice(&1u32.to_le_bytes());
    e.push(0); // null bitmap: not NULL
    e.push(1); // types follow
    e.extend_from_slice(&[0xfe, 0x00]); // MYSQL_TYPE_STRING; its value came as long data
    raw.command(&e).await
}

/// SEND_LONG_DATA has no reply, even when the router cannot deliver it: the
/// failure is the EXECUTE's answer (as MySQL reports its own), and the
/// session goes on in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_that_cannot_be_delivered_fails_the_execute_not_the_protocol() -> Result<()> {
    let topo = Topology::get()?;
    let side = format!(
        "[[hostgroups]]\nname = \"side\"\nrole = \"reader\"\nwriter = \"primary\"\n\
         [[servers]]\nname = \"side1\"\nport = {}\nhostgroup = \"side\"\n",
        topo.replica_ports[0]
    );
    let (port, shared, path) = router_from_file("longdata", &toml_config(&topo, &side)?).await?;
    let mut raw = raw_login(&topo, port).await?;

    // Delivered: the value arrives as long data.
    let sql = "SELECT /* causeway: hostgroup=side */ CONCAT('got:', ?)";
    let id = raw_prepare(&mut raw, sql).await?;
    let out = raw_long_data_execute(&mut raw, id, b"abc").await?;
    ensure!(
        out.iter().any(|p| p.windows(7).any(|w| w == b"got:abc")),
        "the long data did not reach the statement: {out:?}"
    );

    // Not deliverable: the hostgroup of its hint is gone after a reload.
    std::fs::write(&path, toml_config(&topo, "")?)?;
    shared.reload().await?;
    let out = raw_long_data_execute(&mut raw, id, b"def").await?;
    assert_eq!(err_code(&out)?, 9003, "{out:?}");
    // The session is in step: the next command gets its own answer.
    let out = raw.command(b"\x03SELECT 'next'").await?;
    ensure!(
        out.iter().any(|p| p.windows(4).any(|w| w == b"next")),
        "out of step after the failed long data: {out:?}"
    );
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// A command over 16 MiB that the router refuses: its remaining chunks are
/// read and dropped, not taken for commands, and the ERR follows its last
/// chunk's sequence id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_over_16_mib_is_skipped_whole() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.split_config()?).await?;
    let mut raw = raw_login(&topo, router.port).await?;
    let mut q = b"\x03SELECT /* causeway: hostgroup=nowhere */ '".to_vec();
    q.resize(17 << 20, b'x');
    q.push(b'\'');
    raw.send(0, &q).await?;
    let err = raw.read().await?.context("closed")?;
    ensure!(
        err.payload.first() == Some(&0xff),
        "not an ERR: {:?}",
        &err.payload[..err.payload.len().min(60)]
    );
    assert_eq!(u16::from_le_bytes([err.payload[1], err.payload[2]]), 9003);
    assert_eq!(err.seq, 2, "the ERR follows chunks 0 and 1");
    let out = raw.command(b"\x03SELECT 'next'").await?;
    ensure!(
        out.iter().any(|p| p.windows(4).any(|w| w == b"next")),
        "out of step after the refused command: {out:?}"
    );
    Ok(())
}
