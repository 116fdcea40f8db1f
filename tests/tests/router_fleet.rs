//! A fleet of routers on etcd, end to end (`scripts/sandbox up --etcd`: a
//! real etcd and two routers, fleet-a and fleet-b, reading their
//! configuration from it, in front of the sandbox's real MySQL servers):
//!
//! - a configuration put once (`causeway-router fleet put`) reaches both
//!   routers, which apply it between the statements of live sessions; a
//!   broken revision is refused by both, shown in `fleet status` and the
//!   admin `fleet` table, and the old configuration keeps serving;
//!   `fleet put` refuses to overwrite a change made since the file's copy;
//! - etcd stopped for 10 s: both routers keep serving without an error and
//!   catch up with a revision put right after etcd returns; a router killed
//!   leaves the fleet view once its lease expires, and comes back;
//! - a new writer must hold what every router acknowledged: fleet-b, which
//!   never acknowledged anything itself, refuses a promoted replica that
//!   lacks a write acknowledged by fleet-a, while a router outside the fleet
//!   takes it (the hazard the union closes). The etcd writes this costs
//!   are counted under load.
//!
//! - causality across the fleet's routers: a write through fleet-a, its GTID
//!   from the OK packet handed as a token to a read through fleet-b, under
//!   replication lag bursts: no stale read (without the token, many).
//!
//! Each test has a sandbox of its own: they stop etcd, kill routers and
//! promote replicas.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use causeway_e2e::router::{opts, Raw, RAW_CAPS};
use causeway_e2e::{http_get, Topology};
use causeway_wire::{CapabilityFlags, OkPacket};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, SslOpts};

/// The rule the tests add: a marked statement goes to the writer.
const MARKER_RULE: &str = "\n[[query_rules]]\nname = \"fleet marker\"\n\
                           match_pattern = \"fleet_marker\"\ndestination = \"primary\"\n";

struct Fleet {
    topo: Topology,
    ports: Vec<u16>,
    admin_ports: Vec<u16>,
    metrics: Vec<String>,
    endpoints: String,
    key: String,
}

fn words<T: std::str::FromStr>(s: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(s.split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<T>, _>>()?)
}

/// The router binary the sandbox runs (built beside this test).
fn router_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test binary folder")?;
    let bin = dir.join("causeway-router");
    ensure!(bin.exists(), "{} is missing", bin.display());
    Ok(bin)
}

impl Fleet {
    fn get(name: &str) -> Result<Fleet> {
        let topo = Topology::isolated_fleet(name)?;
        Ok(Fleet {
            ports: words(topo.var("CAUSEWAY_FLEET_ROUTER_PORTS")?)?,
            admin_ports: words(topo.var("CAUSEWAY_FLEET_ADMIN_PORTS")?)?,
            metrics: words(topo.var("CAUSEWAY_FLEET_METRICS_URLS")?)?,
            endpoints: topo.var("CAUSEWAY_ETCD_ENDPOINTS")?.to_string(),
            key: topo.var("CAUSEWAY_FLEET_CONFIG_KEY")?.to_string(),
            topo,
        })
    }

    /// `causeway-router fleet ARGS` against this fleet's etcd, with the
    /// secrets the configuration names in its environment.
    fn cli(&self, args: &[&str]) -> Result<Output> {
        let t = &self.topo;
        let mut cmd = std::process::Command::new(router_bin()?);
        cmd.args(["fleet", "--config-etcd", &self.endpoints])
            .args(["--config-key", &self.key])
            .args(args)
            .env_remove("CAUSEWAY_ROUTER_CONFIG")
            .env("RUST_BACKTRACE", "0")
            .env(
                "CAUSEWAY_ROUTER_APP_PASSWORD",
                t.var("CAUSEWAY_APP_PASSWORD")?,
            )
            .env(
                "CAUSEWAY_ROUTER_DBADMIN_PASSWORD",
                t.var("CAUSEWAY_ADMIN_PASSWORD")?,
            )
            .env(
                "CAUSEWAY_ROUTER_MONITOR_PASSWORD",
                t.var("CAUSEWAY_MONITOR_PASSWORD")?,
            )
            .env(
                "CAUSEWAY_ROUTER_ADMIN_PASSWORD",
                t.var("CAUSEWAY_ROUTER_ADMIN_PASSWORD")?,
            );
        // Blocking: the load's sessions go on on the other worker.
        Ok(tokio::task::block_in_place(|| cmd.output())?)
    }

    fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        ensure!(
            out.status.success(),
            "fleet {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The document in etcd, with `fleet get`'s revision line.
    fn get_doc(&self) -> Result<String> {
        self.cli_ok(&["get"])
    }

    /// Writes `doc` to a file and `fleet put`s it.
    fn put(&self, doc: &str, name: &str) -> Result<Output> {
        let path = self.topo.dir.join(format!("{name}.toml"));
        std::fs::write(&path, doc)?;
        self.cli(&["put", path.to_str().context("path")?])
    }

    /// The document with the marker rule, put; returns its revision.
    fn put_marker_rule(&self) -> Result<i64> {
        self.put_marker(true)
    }

    /// The document with or without the marker rule, put as a new
    /// revision (an edit note makes each one new); returns its revision.
    fn put_marker(&self, on: bool) -> Result<i64> {
        let doc = self.get_doc()?;
        let mut doc = doc.replace(MARKER_RULE, "");
        if on {
            doc.push_str(MARKER_RULE);
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        doc.push_str(&format!("# edit {}\n", stamp.as_nanos()));
        let out = self.put(&doc, "with-marker")?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        revision_of(&String::from_utf8_lossy(&out.stderr))
    }

    fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = std::process::Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints])
            .args(args);
        let out = tokio::task::block_in_place(|| cmd.output()).context("running etcdctl")?;
        ensure!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn app(&self, i: usize) -> Result<Conn> {
        Ok(Conn::new(opts(&self.topo, self.ports[i], "APP", true)?).await?)
    }

    async fn admin(&self, i: usize) -> Result<Conn> {
        let o = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.admin_ports[i])
            .user(Some(self.topo.var("CAUSEWAY_ROUTER_ADMIN_USER")?))
            .pass(Some(self.topo.var("CAUSEWAY_ROUTER_ADMIN_PASSWORD")?))
            .prefer_socket(false)
            .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
        Ok(Conn::new(o).await?)
    }

    /// The sum of a metric's samples on router `i`.
    fn metric(&self, i: usize, name: &str) -> Result<f64> {
        let text = tokio::task::block_in_place(|| http_get(&self.metrics[i]))?;
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// `fleet status`: its table and whether it reported every router well.
    fn status(&self) -> Result<(String, bool)> {
        let out = self.cli(&["status"])?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.success(),
        ))
    }
}

/// The revision in `fleet put`'s "written, revision N" line.
fn revision_of(text: &str) -> Result<i64> {
    text.split("revision ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no revision in {text:?}"))
}

/// Which server answered the marked statement.
async fn marker_server(c: &mut Conn) -> Result<u32> {
    c.query_first("SELECT @@server_id, 'fleet_marker'")
        .await?
        .map(|(id, _): (u32, String)| id)
        .context("no row")
}

async fn until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if f().await? {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions on every router that run statements until stopped, counting
/// statements and errors.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    async fn start(f: &Fleet) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..f.ports.len() {
            let mut c = f.app(i).await?;
            let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match c.query_drop("SELECT 1").await {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            seen.push(e.to_string());
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            }));
        }
        Ok(Load {
            stop,
            ok,
            errors,
            tasks,
        })
    }

    /// Stops; fails when a statement failed.
    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = Vec::new();
        for t in self.tasks {
            seen.extend(t.await?);
        }
        ensure!(
            self.errors.load(Ordering::Relaxed) == 0,
            "statements failed: {seen:?}"
        );
        Ok(self.ok.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reaches_every_router_and_a_broken_revision_is_refused_by_all() -> Result<()> {
    let f = Fleet::get("fleet")?;
    // A former run may have left the rule in force.
    let rev = f.put_marker(false)?;
    until(
        "both routers without the rule",
        Duration::from_secs(15),
        || async {
            Ok(
                f.metric(0, "causeway_router_fleet_config_revision")? == rev as f64
                    && f.metric(1, "causeway_router_fleet_config_revision")? == rev as f64,
            )
        },
    )
    .await?;
    // Live sessions on both routers, opened before the change.
    let mut live = vec![f.app(0).await?, f.app(1).await?];
    let load = Load::start(&f).await?;
    for c in &mut live {
        let id = marker_server(c).await?;
        ensure!(
            id != 1,
            "without the rule the marked read goes to a replica, got {id}"
        );
    }

    // One put; both routers apply it, the live sessions see it at their
    // next statements.
    let rev = f.put_marker_rule()?;
    for (i, c) in live.iter_mut().enumerate() {
        let start = Instant::now();
        while marker_server(c).await? != 1 {
            ensure!(
                start.elapsed() < Duration::from_secs(15),
                "router {i} did not put revision {rev} in force"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..2 {
        ensure!(
            f.metric(i, "causeway_router_fleet_config_revision")? == rev as f64,
            "router {i}'s revision metric"
        );
        ensure!(f.metric(i, "causeway_router_fleet_etcd_connected")? == 1.0);
    }
    let (table, all_well) = f.status()?;
    ensure!(all_well, "fleet status flags a router: {table}");
    ensure!(
        table.contains("fleet-a") && table.contains("fleet-b"),
        "{table}"
    );

    // The admin table of either router lists both, on the latest revision
    // (once fleet-a's watch saw fleet-b's registration).
    let mut admin = f.admin(0).await?;
    let want = vec![
        ("fleet-a".to_string(), rev, rev, 1, 0, 1),
        ("fleet-b".to_string(), rev, rev, 1, 0, 0),
    ];
    let start = Instant::now();
    loop {
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = admin
            .query(
                "SELECT router_id, config_revision, latest_revision, on_latest, reload_failed, \
                 this_router FROM fleet ORDER BY router_id",
            )
            .await?;
        if rows == want {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(15),
            "fleet table: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two operators: a copy from before the last put is refused.
    let stale = format!(
        "# causeway fleet: revision {} of {}\n{}",
        rev - 1,
        f.key,
        f.get_doc()?.split_once('\n').context("header")?.1
    ) + "\n# an edit\n";
    let out = f.put(&stale, "stale")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("someone changed it"),
        "{err}"
    );
    // `fleet diff` shows what a file would change.
    let path = f.topo.dir.join("stale.toml");
    let out = f.cli(&["diff", path.to_str().context("path")?])?;
    ensure!(out.status.code() == Some(1));
    ensure!(String::from_utf8_lossy(&out.stdout).contains("+# an edit"));

    // A broken revision (written around the CLI's check): refused by both,
    // reported, and the configuration in force keeps serving.
    let failures = [
        f.metric(0, "causeway_router_reload_failures_total")?,
        f.metric(1, "causeway_router_reload_failures_total")?,
    ];
    let broken = f
        .get_doc()?
        .split_once('\n')
        .context("header")?
        .1
        .to_string()
        + "\n[frontend.bogus]\nx = 1\n";
    f.etcdctl(&["put", &f.key, &broken])?;
    until(
        "both routers refuse the broken revision",
        Duration::from_secs(15),
        || async {
            let (table, all_well) = f.status()?;
            Ok(!all_well && table.matches("refused revision").count() == 2)
        },
    )
    .await?;
    let (table, _) = f.status()?;
    ensure!(table.contains("unknown field `bogus`"), "{table}");
    let rows: Vec<(String, i64, i64, i64, String)> = admin
        .query(
            "SELECT router_id, config_revision, on_latest, reload_failed, last_error \
             FROM fleet ORDER BY router_id",
        )
        .await?;
    ensure!(rows.len() == 2, "{rows:?}");
    for r in &rows {
        ensure!(
            r.1 == rev && r.2 == 0 && r.3 == 1 && r.4.contains("bogus"),
            "{r:?}"
        );
    }
    for (i, c) in live.iter_mut().enumerate() {
        ensure!(
            marker_server(c).await? == 1,
            "router {i} lost the configuration in force"
        );
        ensure!(
            f.metric(i, "causeway_router_reload_failures_total")? > failures[i],
            "router {i} did not count the refusal"
        );
    }
    // The next good revision clears the flags.
    let good = f.get_doc()?;
    let good = good.replace("\n[frontend.bogus]\nx = 1\n", "\n");
    let out = f.put(&good, "fixed")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until(
        "both routers on the fixed revision",
        Duration::from_secs(15),
        || async { Ok(f.status()?.1) },
    )
    .await?;
    let n = load.finish().await?;
    ensure!(n >= 4, "the live sessions ran only {n} statements");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_ride_out_etcd_down_and_a_killed_router_leaves_the_view() -> Result<()> {
    let f = Fleet::get("fleet-outage")?;
    let load = Load::start(&f).await?;
    let before = load.ok.load(Ordering::Relaxed);

    // etcd down for 10 s: both routers keep serving, and say they lost it.
    tokio::task::block_in_place(|| f.topo.sandbox(&["stop", "etcd"]))?;
    let down = Instant::now();
    until(
        "both routers see etcd gone",
        Duration::from_secs(15),
        || async {
            Ok(f.metric(0, "causeway_router_fleet_etcd_connected")? == 0.0
                && f.metric(1, "causeway_router_fleet_etcd_connected")? == 0.0)
        },
    )
    .await?;
    let mut c = f.app(1).await?;
    ensure!(
        marker_server(&mut c).await? > 0,
        "a new session during the outage"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    let during = load.ok.load(Ordering::Relaxed) - before;
    ensure!(during >= 4, "only {during} statements while etcd was down");

    // Back: a revision put at once is caught up by both (they are still
    // backing off: the catch-up read on reconnection finds it).
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "etcd"]))?;
    let rev = f.put_marker_rule()?;
    until("both routers catch up", Duration::from_secs(30), || async {
        Ok(
            f.metric(0, "causeway_router_fleet_config_revision")? == rev as f64
                && f.metric(1, "causeway_router_fleet_config_revision")? == rev as f64,
        )
    })
    .await?;
    ensure!(
        marker_server(&mut c).await? == 1,
        "the session on fleet-b after catch-up"
    );
    ensure!(f.metric(0, "causeway_router_fleet_etcd_connected")? == 1.0);
    load.finish().await?;
    until(
        "both routers registered again",
        Duration::from_secs(15),
        || async {
            let (t, ok) = f.status()?;
            Ok(ok && t.contains("fleet-a") && t.contains("fleet-b"))
        },
    )
    .await?;

    // fleet-b killed: it leaves the view once its lease (4 s) expires.
    let pid = std::fs::read_to_string(f.topo.dir.join("pids/fleet-b.pid"))?;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()?;
    ensure!(killed.success());
    until(
        "fleet-b leaves the fleet view",
        Duration::from_secs(20),
        || async {
            let (t, _) = f.status()?;
            Ok(t.contains("fleet-a") && !t.contains("fleet-b"))
        },
    )
    .await?;
    let mut admin = f.admin(0).await?;
    let ids: Vec<String> = admin.query("SELECT router_id FROM fleet").await?;
    ensure!(ids == ["fleet-a"], "{ids:?}");
    // Started again, it registers and runs the latest revision.
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "fleet-b"]))?;
    until("fleet-b is back", Duration::from_secs(20), || async {
        let (t, ok) = f.status()?;
        Ok(ok && t.contains("fleet-b"))
    })
    .await?;
    let mut c = f.app(1).await?;
    ensure!(marker_server(&mut c).await? == 1);
    Ok(())
}

/// Runs SQL as root on a sandbox server (by name) through its socket.
fn on_server(topo: &Topology, name: &str, sql: &str) -> Result<String> {
    let mut cmd = std::process::Command::new(topo.var("CAUSEWAY_MYSQL")?);
    cmd.args(["--no-defaults", "-uroot", "--batch", "--skip-column-names"])
        .arg(format!(
            "--socket={}/{name}/mysqld.sock",
            topo.dir.display()
        ))
        .args(["-e", sql]);
    let out = tokio::task::block_in_place(|| cmd.output())?;
    ensure!(
        out.status.success(),
        "{name}: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_writer_must_hold_what_every_router_of_the_fleet_acknowledged() -> Result<()> {
    let mut f = Fleet::get("fleet-failover")?;
    // This test promotes a replica: a sandbox a former run left so is
    // started afresh, and this one goes down at the end.
    if on_server(&f.topo, "primary", "SELECT @@global.super_read_only")? != "0" {
        tokio::task::block_in_place(|| f.topo.sandbox(&["down"]))?;
        f = Fleet::get("fleet-failover")?;
    }
    let res = hold_what_every_router_acknowledged(&f).await;
    tokio::task::block_in_place(|| f.topo.sandbox(&["down"]))?;
    res
}

async fn hold_what_every_router_acknowledged(f: &Fleet) -> Result<()> {
    let topo = &f.topo;
    let mut a = f.app(0).await?;
    a.query_drop("CREATE TABLE IF NOT EXISTS causeway.fleet_acked (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await?;

    // What publishing costs: writes through fleet-a for 3 s, each
    // acknowledged; the sets go to etcd at most every publish_interval
    // (100 ms).
    let published = || {
        f.metric(
            0,
            "causeway_router_fleet_etcd_writes_total{kind=\"acknowledged\"}",
        )
    };
    let p0 = published()?;
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        a.query_drop("INSERT INTO causeway.fleet_acked (v) VALUES (1)")
            .await?;
        writes += 1;
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = published()? - p0;
    let most = (elapsed.as_millis() / 100) as f64 + 2.0;
    ensure!(
        sent >= 1.0 && sent <= most,
        "{sent} publishes for {writes} writes in {elapsed:?} (at most {most})"
    );
    eprintln!(
        "etcd writes for the acknowledged sets: {sent} in {elapsed:?} for {writes} acknowledged writes ({:.1}/s)",
        sent / elapsed.as_secs_f64()
    );

    // replica1 stops replicating; a write acknowledged by fleet-a only.
    on_server(topo, "replica1", "STOP REPLICA")?;
    a.query_drop("INSERT INTO causeway.fleet_acked (v) VALUES (2)")
        .await?;
    let gtid = on_server(topo, "primary", "SELECT @@global.gtid_executed")?;
    let lacking = on_server(
        topo,
        "replica1",
        &format!("SELECT GTID_SUBTRACT('{gtid}', @@global.gtid_executed)"),
    )?;
    ensure!(!lacking.is_empty(), "replica1 should lack the last write");
    // fleet-b has it from fleet-a's published set.
    until(
        "fleet-a's set reaches etcd",
        Duration::from_secs(10),
        || async {
            let doc = f.etcdctl(&[
                "get",
                "--print-value-only",
                &format!("{}/acknowledged/fleet-a", f.key),
            ])?;
            let sets: std::collections::HashMap<String, String> =
                serde_json::from_str(doc.trim()).unwrap_or_default();
            let set =
                causeway_gtid::GtidSet::parse(sets.get("primary").map_or("", String::as_str))?;
            let want = causeway_gtid::GtidSet::parse(&lacking.replace('\n', ""))?;
            Ok(set.is_superset(&want))
        },
    )
    .await?;

    // A promotion of replica1 while it lacks the write: the primary is
    // made read-only, replica1 writable.
    on_server(topo, "primary", "SET GLOBAL super_read_only = ON")?;
    on_server(
        topo,
        "replica1",
        "RESET REPLICA ALL; SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )?;

    // Outside the fleet, the sandbox's own router acknowledged nothing and
    // takes replica1: what a router without the union does.
    let router_admin = f.topo.var("CAUSEWAY_ROUTER_ADMIN_PORT")?.parse::<u16>()?;
    let mut plain = {
        let o = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(router_admin)
            .user(Some(topo.var("CAUSEWAY_ROUTER_ADMIN_USER")?))
            .pass(Some(topo.var("CAUSEWAY_ROUTER_ADMIN_PASSWORD")?))
            .prefer_socket(false)
            .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
        Conn::new(o).await?
    };
    let q = "SELECT name, writer, missing_acknowledged, state FROM servers";
    // replica1's (writer, missing_acknowledged) as `admin` shows it, once
    // `done` says so (or fails with the last seen after `limit`).
    async fn replica1_until(
        admin: &mut Conn,
        what: &str,
        done: impl Fn(&(i64, String, String)) -> bool,
    ) -> Result<(i64, String, String)> {
        let q = "SELECT name, writer, missing_acknowledged, state FROM servers";
        let start = Instant::now();
        loop {
            let rows: Vec<(String, i64, String, String)> = admin.query(q).await?;
            let w = rows
                .into_iter()
                .find(|r| r.0 == "replica1")
                .map(|r| (r.1, r.2, r.3))
                .context("no replica1 row")?;
            if done(&w) {
                return Ok(w);
            }
            ensure!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: not within 20 s; replica1 is {w:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    replica1_until(&mut plain, "the plain router takes replica1", |w| w.0 == 1).await?;

    // fleet-b, which never acknowledged anything itself, refuses it: it
    // lacks what fleet-a acknowledged.
    let mut b_admin = f.admin(1).await?;
    replica1_until(&mut b_admin, "fleet-b holds replica1 as catching up", |w| {
        w.0 == 0 && !w.1.is_empty() && w.2 == "catching_up"
    })
    .await?;
    // And stays so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows: Vec<(String, i64, String, String)> = b_admin.query(q).await?;
    let w = rows
        .into_iter()
        .find(|r| r.0 == "replica1")
        .map(|r| (r.1, r.2, r.3))
        .context("replica1 row")?;
    ensure!(
        w.0 == 0 && w.2 == "catching_up",
        "fleet-b took replica1 as writer: {w:?}"
    );
    let missing = causeway_gtid::GtidSet::parse(&w.1)?;
    let want = causeway_gtid::GtidSet::parse(&lacking.replace('\n', ""))?;
    ensure!(
        missing.is_superset(&want),
        "fleet-b says replica1 lacks {missing}, it lacks {want}"
    );

    // fleet-a dies: what it acknowledged stays needed (its key outlives
    // its lease until every server has it), so fleet-b still refuses.
    let pid = std::fs::read_to_string(f.topo.dir.join("pids/fleet-a.pid"))?;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()?;
    ensure!(killed.success());
    until(
        "fleet-a leaves the fleet view",
        Duration::from_secs(20),
        || async {
            let (t, _) = f.status()?;
            Ok(!t.contains("fleet-a"))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let w = replica1_until(&mut b_admin, "fleet-b still refuses replica1", |_| true).await?;
    ensure!(
        w.0 == 0 && w.2 == "catching_up",
        "fleet-b took replica1 once fleet-a was gone: {w:?}"
    );
    let doc = f.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("{}/acknowledged/fleet-a", f.key),
    ])?;
    ensure!(
        doc.contains("primary"),
        "fleet-a's acknowledged GTIDs went: {doc:?}"
    );
    Ok(())
}

async fn ok_of(raw: &mut Raw, sql: String) -> Result<OkPacket> {
    let mut q = vec![0x03];
    q.extend_from_slice(sql.as_bytes());
    let resp = raw.command(&q).await?;
    Ok(OkPacket::decode(&resp[0], raw.caps)?)
}

/// Stops and starts the replicas' appliers in bursts until `stop`.
async fn lag_bursts(topo: Topology, stop: Arc<AtomicBool>) -> Result<()> {
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let names: &[&str] = match round % 3 {
            0 => &["replica1"],
            1 => &["replica2"],
            _ => &["replica1", "replica2"],
        };
        for n in names {
            on_server(&topo, n, "STOP REPLICA SQL_THREAD")?;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        for n in names {
            on_server(&topo, n, "START REPLICA SQL_THREAD")?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        round += 1;
    }
    Ok(())
}

/// Reads made, stale ones, and reads served per server port.
#[derive(Debug, Default)]
struct Tally {
    reads: u64,
    stale: u64,
    by_port: std::collections::BTreeMap<u16, u64>,
}

/// Writes through fleet-a for `run`, each row read back at once in a fresh
/// session of fleet-b, with the write's GTID as a token or not.
async fn across(f: &Fleet, ids: u64, token: bool, run: Duration) -> Result<Tally> {
    let who = f.topo.user("APP")?;
    let caps = RAW_CAPS | CapabilityFlags::SESSION_TRACK;
    let mut raw = Raw::login_with(
        f.ports[0],
        &who.user,
        &who.password,
        "caching_sha2_password",
        caps,
    )
    .await?;
    ok_of(&mut raw, "SET session_track_gtids = OWN_GTID".into()).await?;
    let mut tally = Tally::default();
    let deadline = Instant::now() + run;
    let mut id = ids;
    while Instant::now() < deadline {
        id += 1;
        let ok = ok_of(
            &mut raw,
            format!("INSERT INTO causeway.fleet_hunt (id) VALUES ({id})"),
        )
        .await?;
        let gtid = String::from_utf8(ok.gtids()?.context("no GTID in the OK packet")?.to_vec())?;
        let hint = if token {
            format!("/* causeway: min_gtid={gtid} */ ")
        } else {
            String::new()
        };
        let mut b = f.app(1).await?;
        let row: Option<(u16, u64)> = b
            .query_first(format!(
                "{hint}SELECT @@port, (SELECT COUNT(*) FROM causeway.fleet_hunt WHERE id = {id})"
            ))
            .await?;
        b.disconnect().await?;
        let (port, found) = row.context("no row")?;
        tally.reads += 1;
        *tally.by_port.entry(port).or_default() += 1;
        if found == 0 {
            tally.stale += 1;
        }
    }
    raw.send(0, &[0x01]).await?;
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carries_causality_from_one_fleet_router_to_the_other() -> Result<()> {
    let f = Fleet::get("fleet")?;
    let mut a = f.app(0).await?;
    a.query_drop("CREATE TABLE IF NOT EXISTS causeway.fleet_hunt (id BIGINT PRIMARY KEY)")
        .await?;
    let start: u64 = a
        .query_first("SELECT COALESCE(MAX(id), 0) FROM causeway.fleet_hunt")
        .await?
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let lagger = tokio::spawn(lag_bursts(f.topo.clone(), stop.clone()));
    let with = across(&f, start, true, Duration::from_secs(6)).await;
    let without = across(&f, start + 1_000_000, false, Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    lagger.await??;
    let (with, without) = (with?, without?);
    eprintln!("with the token: {with:?}; without: {without:?}");
    let replicas: u64 = f
        .topo
        .replica_ports
        .iter()
        .map(|p| with.by_port.get(p).copied().unwrap_or(0))
        .sum();
    ensure!(with.reads >= 20, "only {} reads with the token", with.reads);
    ensure!(with.stale == 0, "stale reads with the token: {with:?}");
    ensure!(
        replicas > 0,
        "no read with the token went to a replica: {with:?}"
    );
    // The hunt finds stale reads when there is no token: it can fail.
    ensure!(
        without.stale > 0,
        "no stale read without the token: {without:?}"
    );
    Ok(())
}
