//! Causal reads against real MySQL: stale-read hunters.
//!
//! Sessions write a unique row on the primary through the router and read it
//! back at once through the router, while the replicas are made to lag in
//! bursts (`STOP REPLICA SQL_THREAD` for a while, then `START`) and the
//! readers beside them are restarted. A read that does not find its row is a
//! stale read. With `session` consistency there must be none; the same
//! hunter with `eventual` must find some (so the hunter can fail). `token`
//! and `global` have hunters of their own, each with the counter-proof that
//! the same reads without them are stale; so do `user` and `router`, with
//! the write and the read on different connections, as through a pool
//! (`pool_hunters`).
//!
//! They run in a sandbox of their own (`Topology::isolated("causal")`),
//! one phase after another, since they stop replication on purpose.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::router::{opts, start_router, TestRouter};
use causeway_e2e::router::{Raw, RAW_CAPS};
use causeway_e2e::Topology;
use causeway_gtid::GtidSet;
use causeway_router::causal::Scope;
use causeway_router::config::Role;
use causeway_router::metrics::{CausalLabels, VIEW_CATCH_UP_SECONDS};
use causeway_wire::{CapabilityFlags, OkPacket, StatusFlags};
use mysql_async::prelude::*;
use mysql_async::Conn;

/// How long each hunt runs.
const HUNT: Duration = Duration::from_secs(4);
/// Concurrent sessions per hunt.
const SESSIONS: u64 = 8;

#[derive(Debug, Default, Clone)]
struct Tally {
    reads: u64,
    stale: u64,
    /// Reads served per port.
    by_port: HashMap<u16, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.reads += o.reads;
        self.stale += o.stale;
        for (p, n) in &o.by_port {
            *self.by_port.entry(*p).or_default() += n;
        }
    }

    fn on_replicas(&self, topo: &Topology) -> u64 {
        topo.replica_ports
            .iter()
            .map(|p| self.by_port.get(p).copied().unwrap_or(0))
            .sum()
    }
}

/// How the reads of a hunt are made.
#[derive(Debug, Clone)]
enum Reads {
    /// In the writing session, with this prefix before `SELECT`.
    Own(&'static str),
    /// In the writing session, after it ran this statement first.
    OwnAfter(&'static str),
    /// In a fresh session that never wrote, with this prefix; with
    /// `token`, the session first sets `@causeway_min_gtid` to the primary's
    /// set after the write (obtained outside the router).
    Fresh { prefix: &'static str, token: bool },
    /// Across routers: the writes through the hunt's router with
    /// `session_track_gtids = OWN_GTID`, each read in a fresh session
    /// through another router (on `port`), given the write's GTID from the
    /// OK packet as a token (`min_gtid` hint) or not.
    Across { port: u16, token: bool },
    /// As a connection pool does: the writes on one connection of the
    /// `writer` user, the reads on another connection of the `reader`
    /// user (open for the whole hunt, never writing), with this prefix.
    Pool {
        writer: &'static str,
        reader: &'static str,
        prefix: &'static str,
    },
}

async fn admin(topo: &Topology, port: u16, sql: &str) -> Result<()> {
    let mut c = Conn::new(opts(topo, port, "ADMIN", false)?).await?;
    c.query_drop(sql)
        .await
        .with_context(|| format!("{sql} on {port}"))?;
    c.disconnect().await?;
    Ok(())
}

/// Makes the replicas lag in bursts until `stop`: the SQL thread of one
/// replica, then of both, stopped for a while and started again; once, a
/// reader is restarted mid-run.
async fn lag_bursts(topo: Topology, stop: Arc<AtomicBool>, restart_reader: bool) -> Result<()> {
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let ports: Vec<u16> = if round.is_multiple_of(2) {
            vec![topo.replica_ports[(round as usize / 2) % 2]]
        } else {
            topo.replica_ports.clone()
        };
        for &p in &ports {
            admin(&topo, p, "STOP REPLICA SQL_THREAD").await?;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        for &p in &ports {
            admin(&topo, p, "START REPLICA SQL_THREAD").await?;
        }
        if restart_reader && round == 1 {
            let t = topo.clone();
            tokio::task::spawn_blocking(move || t.sandbox(&["restart-reader", "replica1"]))
                .await??;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        round += 1;
    }
    Ok(())
}

/// One session of a hunt: writes rows and reads each back at once.
async fn hunter(
    topo: Topology,
    router_port: u16,
    id_base: u64,
    reads: Reads,
    deadline: Instant,
) -> Result<Tally> {
    let writer_role = match &reads {
        Reads::Pool { writer, .. } => writer,
        _ => "APP",
    };
    let mut writer = Conn::new(opts(&topo, router_port, writer_role, false)?).await?;
    let mut primary = Conn::new(opts(&topo, topo.primary_port, "ADMIN", false)?).await?;
    let mut pooled = match &reads {
        Reads::Pool { reader, .. } => {
            Some(Conn::new(opts(&topo, router_port, reader, false)?).await?)
        }
        _ => None,
    };
    if let Reads::OwnAfter(setup) = &reads {
        writer.query_drop(*setup).await?;
    }
    // Across routers the writes go through a client that reads its OK
    // packets' GTIDs (the login above did caching_sha2's full exchange, so
    // this one takes the fast path).
    let mut tracked = match &reads {
        Reads::Across { .. } => {
            let who = topo.user("APP")?;
            let caps = RAW_CAPS | CapabilityFlags::SESSION_TRACK;
            let plugin = "caching_sha2_password";
            let mut raw =
                Raw::login_with(router_port, &who.user, &who.password, plugin, caps).await?;
            ok_of(&mut raw, "SET session_track_gtids = OWN_GTID").await?;
            Some(raw)
        }
        _ => None,
    };
    let mut gtid = String::new();
    let mut tally = Tally::default();
    let mut id = id_base;
    while Instant::now() < deadline {
        id += 1;
        match tracked.as_mut() {
            Some(raw) => {
                let insert = format!("INSERT INTO causeway.hunt (id, v) VALUES ({id}, {id})");
                let ok = ok_of(raw, &insert).await?;
                let set = ok.gtids()?.context("no GTID in the write's OK packet")?;
                gtid = String::from_utf8(set.to_vec())?;
            }
            None => {
                writer
                    .exec_drop("INSERT INTO causeway.hunt (id, v) VALUES (?, ?)", (id, id))
                    .await?
            }
        }
        let sql = |prefix: &str| {
            format!("{prefix}SELECT @@port, (SELECT COUNT(*) FROM causeway.hunt WHERE id = {id})")
        };
        let row: Option<(u16, u64)> = match &reads {
            Reads::Own(prefix) => writer.query_first(sql(prefix)).await?,
            Reads::OwnAfter(_) => writer.query_first(sql("")).await?,
            Reads::Fresh { prefix, token } => {
                let mut fresh = Conn::new(opts(&topo, router_port, "APP", false)?).await?;
                if *token {
                    let set: String = primary
                        .query_first("SELECT @@global.gtid_executed")
                        .await?
                        .context("no gtid_executed")?;
                    fresh
                        .query_drop(format!("SET @causeway_min_gtid = '{set}'"))
                        .await?;
                }
                let row = fresh.query_first(sql(prefix)).await?;
                fresh.disconnect().await?;
                row
            }
            Reads::Pool { prefix, .. } => {
                let reader = pooled.as_mut().context("no reading connection")?;
                reader.query_first(sql(prefix)).await?
            }
            Reads::Across { port, token } => {
                let mut fresh = Conn::new(opts(&topo, *port, "APP", false)?).await?;
                let prefix = if *token {
                    format!("/* causeway: min_gtid={gtid} */ ")
                } else {
                    String::new()
                };
                let row = fresh.query_first(sql(&prefix)).await?;
                fresh.disconnect().await?;
                row
            }
        };
        let (port, found) = row.context("no row")?;
        tally.reads += 1;
        *tally.by_port.entry(port).or_default() += 1;
        if found == 0 {
            tally.stale += 1;
        }
    }
    writer.disconnect().await?;
    primary.disconnect().await?;
    if let Some(mut raw) = tracked {
        raw.send(0, &[0x01]).await?;
    }
    if let Some(c) = pooled {
        c.disconnect().await?;
    }
    Ok(tally)
}

/// Runs `SESSIONS` hunters for [`HUNT`] under lag bursts.
async fn hunt(
    topo: &Topology,
    router: &TestRouter,
    phase: u64,
    reads: Reads,
    restart_reader: bool,
) -> Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let lagger = tokio::spawn(lag_bursts(topo.clone(), stop.clone(), restart_reader));
    let deadline = Instant::now() + HUNT;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let base = phase * 1_000_000_000 + s * 10_000_000;
        tasks.push(tokio::spawn(hunter(
            topo.clone(),
            router.port,
            base,
            reads.clone(),
            deadline,
        )));
    }
    let mut total = Tally::default();
    let mut failed = None;
    for t in tasks {
        match t.await? {
            Ok(tally) => total.add(&tally),
            Err(e) => failed = Some(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let lag_result = lagger.await?;
    // Whatever happened, replication runs again before the next phase.
    for &p in &topo.replica_ports {
        admin(topo, p, "START REPLICA SQL_THREAD").await?;
    }
    lag_result?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(total)
}

async fn setup(topo: &Topology) -> Result<()> {
    let mut c = Conn::new(opts(topo, topo.primary_port, "ADMIN", false)?).await?;
    c.query_drop("CREATE DATABASE IF NOT EXISTS causeway")
        .await?;
    c.query_drop("DROP TABLE IF EXISTS causeway.hunt").await?;
    c.query_drop("CREATE TABLE causeway.hunt (id BIGINT PRIMARY KEY, v BIGINT)")
        .await?;
    c.disconnect().await?;
    // Both replicas have the table before anyone reads it.
    for &p in &topo.replica_ports {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut r = Conn::new(opts(topo, p, "ADMIN", false)?).await?;
            let n: Option<u64> = r
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = 'causeway' AND table_name = 'hunt'",
                )
                .await?;
            r.disconnect().await?;
            if n == Some(1) {
                break;
            }
            ensure!(Instant::now() < deadline, "the table never reached {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn report(what: &str, topo: &Topology, t: &Tally) {
    eprintln!(
        "{what}: {} reads, {} stale, {} on replicas, by port {:?}",
        t.reads,
        t.stale,
        t.on_replicas(topo),
        t.by_port
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_read_hunters() -> Result<()> {
    let topo = Topology::isolated("causal")?;
    setup(&topo).await?;
    let router = start_router(topo.causal_config(Scope::Session)?).await?;

    // session: read-your-own-writes, through lag bursts and a reader restart.
    let session = hunt(&topo, &router, 1, Reads::Own(""), true).await?;
    report("session", &topo, &session);
    ensure!(session.reads > 50, "too few reads to mean anything");
    assert_eq!(session.stale, 0, "stale reads with session consistency");
    ensure!(
        session.on_replicas(&topo) > 0,
        "no read was served by a replica: the hunt proves nothing about replicas"
    );

    // A client that turns GTID tracking off for itself does not turn it off
    // for the router.
    let off = hunt(
        &topo,
        &router,
        6,
        Reads::OwnAfter("SET session_track_gtids = OFF"),
        false,
    )
    .await?;
    report("session, client tracking off", &topo, &off);
    assert_eq!(
        off.stale, 0,
        "stale reads after the client set tracking off"
    );

    // eventual: the same hunt must find stale reads (the hunter can fail).
    let eventual = hunt(
        &topo,
        &router,
        2,
        Reads::Own("/* causeway: consistency=eventual */ "),
        false,
    )
    .await?;
    report("eventual", &topo, &eventual);
    ensure!(
        eventual.stale > 0,
        "the hunter found no stale read with eventual consistency: it cannot tell"
    );

    // token: a session that never wrote sees a write made elsewhere once it
    // passes that write's GTIDs; without the token the same reads are stale.
    let token = hunt(
        &topo,
        &router,
        3,
        Reads::Fresh {
            prefix: "",
            token: true,
        },
        false,
    )
    .await?;
    report("token", &topo, &token);
    assert_eq!(token.stale, 0, "stale reads with a token");
    let no_token = hunt(
        &topo,
        &router,
        4,
        Reads::Fresh {
            prefix: "",
            token: false,
        },
        false,
    )
    .await?;
    report("no token", &topo, &no_token);
    ensure!(
        no_token.stale > 0,
        "fresh sessions without a token never read stale: the token hunt proves nothing"
    );

    // Across routers: a write through this router, its GTID (from the OK
    // packet) handed to a fresh session of a second router as a token: no
    // stale read; the same reads without the token find stale ones.
    let other = start_router(topo.causal_config(Scope::Session)?).await?;
    let across = hunt(
        &topo,
        &router,
        11,
        Reads::Across {
            port: other.port,
            token: true,
        },
        false,
    )
    .await?;
    report("across routers, token", &topo, &across);
    assert_eq!(across.stale, 0, "stale reads with a token across routers");
    ensure!(
        across.on_replicas(&topo) > 0,
        "no read across routers was served by a replica"
    );
    let across_no_token = hunt(
        &topo,
        &router,
        12,
        Reads::Across {
            port: other.port,
            token: false,
        },
        false,
    )
    .await?;
    report("across routers, no token", &topo, &across_no_token);
    ensure!(
        across_no_token.stale > 0,
        "reads through another router without a token never read stale: the hunt proves nothing"
    );

    // global: a fresh session's read sees everything committed before it.
    let global = hunt(
        &topo,
        &router,
        5,
        Reads::Fresh {
            prefix: "/* causeway: consistency=global */ ",
            token: false,
        },
        false,
    )
    .await?;
    report("global", &topo, &global);
    assert_eq!(global.stale, 0, "stale reads with global consistency");

    pool_hunters(&topo, &router).await?;

    // The router counted where causal reads went, and follows every reader.
    let m = &router.shared.metrics;
    let count = |scope, served, reason| {
        m.causal_reads
            .get_or_create(&CausalLabels {
                scope,
                served,
                reason,
            })
            .get()
    };
    ensure!(count("session", "replica", "caught_up") > 0);
    ensure!(count("eventual", "replica", "caught_up") > 0);
    ensure!(
        count("global", "replica", "caught_up") + count("global", "primary", "not_caught_up") > 0
    );
    // The replicas' catch-up was timed (their readers announced the
    // session writes' probes), and the scrape shows it.
    let text = causeway_common::metrics_http::Render::render(&causeway_router::scrape::Live(
        router.shared.clone(),
    ));
    for (name, v) in router.shared.views.read().iter() {
        if name.starts_with("replica") {
            let catch_up = v
                .catch_up
                .context("a replica's catch-up was never measured")?;
            let line = format!("{VIEW_CATCH_UP_SECONDS}{{server=\"{name}\"}} ");
            ensure!(
                text.lines().any(|l| l.starts_with(&line)),
                "no {line} in the scrape"
            );
            ensure!(catch_up < Duration::from_secs(60), "{name}: {catch_up:?}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !router.shared.views.read().iter().all(|(_, v)| v.connected) {
        ensure!(
            Instant::now() < deadline,
            "a reader stream did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Connection pools: each hunter writes on one connection and reads on
/// another, at once, under lag bursts.
///
/// - `user` (hinted): the reading connection is of the same user; no read
///   may be stale, though it never wrote itself.
/// - `router` (the pair's default scope of a second router, without a
///   failover window): the reading connection is of another user; no read
///   may be stale.
/// - The counter-proof, with the same workload: in `session` scope the
///   reading connection needs only its own writes, none: that is `user`
///   or `router` with their acknowledged sets ignored, and it must read
///   stale rows, or these hunters could not fail. (Switched off for real,
///   by not adding the acknowledged set in `session/causal.rs`: the
///   applier-stopped check failed at once, and without it the `user` hunt
///   read 278 stale rows of 1,059.)
/// - `user` does not wait for another user's writes: reads of APP after
///   ADMIN's writes, in `user` scope, are stale like `session`'s.
async fn pool_hunters(topo: &Topology, router: &TestRouter) -> Result<()> {
    // First without chance: with every replica's applier stopped, a write
    // on one connection, then reads on others.
    for &p in &topo.replica_ports {
        admin(topo, p, "STOP REPLICA SQL_THREAD").await?;
    }
    let stopped = applier_stopped(topo, router).await;
    for &p in &topo.replica_ports {
        admin(topo, p, "START REPLICA SQL_THREAD").await?;
    }
    stopped?;

    let pool = |writer, reader, prefix| Reads::Pool {
        writer,
        reader,
        prefix,
    };
    let user_hint = "/* causeway: consistency=user */ ";
    let user = hunt(topo, router, 7, pool("APP", "APP", user_hint), true).await?;
    report("user, pooled", topo, &user);
    ensure!(user.reads > 50, "too few reads to mean anything");
    assert_eq!(user.stale, 0, "stale reads with user consistency");
    ensure!(
        user.on_replicas(topo) > 0,
        "no user read was served by a replica: the hunt proves nothing about replicas"
    );

    // No failover window: the acknowledged sets are kept for the scope.
    let mut cfg = topo.causal_config(Scope::Router)?;
    for g in &mut cfg.hostgroups {
        if g.role == Role::Writer {
            g.failover.window = Duration::ZERO;
        }
    }
    let by_router = start_router(cfg).await?;
    let all = hunt(topo, &by_router, 8, pool("APP", "ADMIN", ""), false).await?;
    report("router, pooled, another user", topo, &all);
    ensure!(all.reads > 50, "too few reads to mean anything");
    assert_eq!(all.stale, 0, "stale reads with router consistency");
    ensure!(
        all.on_replicas(topo) > 0,
        "no router read was served by a replica: the hunt proves nothing about replicas"
    );

    let session = hunt(topo, router, 9, pool("APP", "APP", ""), false).await?;
    report("session, pooled", topo, &session);
    ensure!(
        session.stale > 0,
        "pooled reads in session scope were never stale: the user and router hunts prove nothing"
    );

    let other = hunt(topo, router, 10, pool("ADMIN", "APP", user_hint), false).await?;
    report("user, pooled, another user's writes", topo, &other);
    ensure!(
        other.stale > 0,
        "user reads never missed another user's writes: did they wait for them?"
    );

    let count = |r: &TestRouter, scope, served| {
        r.shared
            .metrics
            .causal_reads
            .get_or_create(&CausalLabels {
                scope,
                served,
                reason: "caught_up",
            })
            .get()
    };
    ensure!(count(router, "user", "replica") > 0);
    ensure!(count(&by_router, "router", "replica") > 0);
    Ok(())
}

/// With the replicas' appliers stopped (no replica can have a new write),
/// APP writes a row on one connection; on two others, APP and ADMIN read it
/// in each scope. `user` (APP) and `router` (both) must find it, on the
/// primary; `session` and ADMIN's `user` read on a replica, where it is
/// missing: exactly what the scopes say, with no race to win.
async fn applier_stopped(topo: &Topology, router: &TestRouter) -> Result<()> {
    let id = 11_000_000_000u64;
    let mut writer = Conn::new(opts(topo, router.port, "APP", false)?).await?;
    let mut app = Conn::new(opts(topo, router.port, "APP", false)?).await?;
    let mut other = Conn::new(opts(topo, router.port, "ADMIN", false)?).await?;
    writer
        .exec_drop("INSERT INTO causeway.hunt (id, v) VALUES (?, ?)", (id, id))
        .await?;
    let sql = |scope: &str| {
        format!(
            "/* causeway: consistency={scope} */ \
             SELECT @@port, (SELECT COUNT(*) FROM causeway.hunt WHERE id = {id})"
        )
    };
    for (who, scope, found) in [
        ("APP", "session", false),
        ("APP", "user", true),
        ("ADMIN", "router", true),
        ("ADMIN", "user", false),
    ] {
        let c = if who == "APP" { &mut app } else { &mut other };
        let (port, n): (u16, u64) = c.query_first(sql(scope)).await?.context("no row")?;
        let on_primary = port == topo.primary_port;
        ensure!(
            (n == 1) == found && on_primary == found,
            "{who} in scope {scope}: row found {n} time(s) on port {port} \
             (expected {}, on the primary: {})",
            u8::from(found),
            found
        );
    }
    for c in [writer, app, other] {
        c.disconnect().await?;
    }
    Ok(())
}

/// Runs `sql` on `raw` and returns its OK packet.
async fn ok_of(raw: &mut Raw, sql: &str) -> Result<OkPacket> {
    let mut q = vec![0x03];
    q.extend_from_slice(sql.as_bytes());
    let resp = raw.command(&q).await?;
    Ok(OkPacket::decode(&resp[0], raw.caps)?)
}

/// OK packets reach clients as MySQL would send them: GTIDs only to a
/// client that set `session_track_gtids` itself, no session state at all to
/// a client without `CLIENT_SESSION_TRACK` (whose OK has another layout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_ok_packets_as_mysql_sends_them() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.causal_config(Scope::Session)?).await?;
    // mysql_async logs in over TLS first (caching_sha2's full
    // authentication), so the raw logins below take the fast path.
    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS causeway.causal_ok (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await?;
    c.disconnect().await?;
    let insert = "INSERT INTO causeway.causal_ok (v) VALUES (1)";
    let who = topo.user("APP")?;
    let plugin = "caching_sha2_password";

    // With CLIENT_SESSION_TRACK.
    let caps = RAW_CAPS | CapabilityFlags::SESSION_TRACK;
    let mut raw = Raw::login_with(router.port, &who.user, &who.password, plugin, caps).await?;
    assert!(raw.caps.contains(CapabilityFlags::SESSION_TRACK));
    let ok = ok_of(&mut raw, insert).await?;
    assert_eq!(ok.affected_rows, 1);
    assert_eq!(ok.gtids()?, None, "GTIDs reached a client that did not ask");
    ok_of(&mut raw, "SET session_track_gtids = OWN_GTID").await?;
    let ok = ok_of(&mut raw, insert).await?;
    let gtid = ok
        .gtids()?
        .context("the client asked for GTIDs and got none")?;
    let gtid = GtidSet::parse_bytes(gtid)?;
    assert_eq!(gtid.count(), 1, "OWN_GTID: one transaction, {gtid}");
    ok_of(&mut raw, "SET session_track_gtids = OFF").await?;
    let ok = ok_of(&mut raw, insert).await?;
    assert_eq!(
        ok.gtids()?,
        None,
        "GTIDs after the client turned tracking off"
    );

    // Without CLIENT_SESSION_TRACK the info string is the rest of the OK:
    // session state left in it would show there.
    let mut raw = Raw::login(router.port, &who.user, &who.password, plugin).await?;
    assert!(!raw.caps.contains(CapabilityFlags::SESSION_TRACK));
    let ok = ok_of(&mut raw, insert).await?;
    assert_eq!(ok.affected_rows, 1);
    assert!(ok.last_insert_id > 0);
    assert!(ok.info.is_empty(), "session state leaked: {:?}", ok.info);
    assert!(!ok.status.contains(StatusFlags::SESSION_STATE_CHANGED));
    // Commands that are not statements, after a reset too (the schema
    // tracker reports COM_INIT_DB; a reset turns GTID tracking off).
    for cmd in [&[0x1f][..], &[0x0e], b"\x02causeway", b"\x02mysql", &[0x0e]] {
        let resp = raw.command(cmd).await?;
        let ok = OkPacket::decode(&resp[0], raw.caps)?;
        assert!(
            ok.info.is_empty(),
            "command {cmd:?}: session state leaked: {:?}",
            ok.info
        );
    }
    let ok = ok_of(&mut raw, "INSERT INTO causeway.causal_ok (v) VALUES (2)").await?;
    assert_eq!(ok.affected_rows, 1);
    assert!(ok.info.is_empty(), "after a reset: {:?}", ok.info);
    Ok(())
}
