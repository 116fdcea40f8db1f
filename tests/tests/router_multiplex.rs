//! Multiplexing: client sessions borrow backend connections between
//! statements, and a session cannot tell. A seeded generator writes
//! session scripts (settings, `SET NAMES`, `USE`, user variables of every
//! type, temporary tables, named locks, transactions and the next one's
//! characteristics, autocommit, prepared statements of both kinds,
//! `LAST_INSERT_ID()`, `ROW_COUNT()`); each runs
//! directly against MySQL and through a router whose pools are smaller
//! than the number of sessions, with think times around the multiplex
//! delay so connections change hands, and every result must be the same.
//! With the replay of session settings switched off the same scripts must
//! differ, or the test proves nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use causeway_e2e::router::{opts, start_router};
use causeway_e2e::Topology;
use causeway_router::causal::Scope;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }
}

/// One step of a session's script.
#[derive(Debug, Clone)]
enum Step {
    /// A text-protocol statement.
    Sql(String),
    /// A prepared statement (binary protocol) with one integer parameter.
    Exec(String, i64),
    /// Think time, in milliseconds.
    Sleep(u64),
}

/// What a session sees of its settings and variables.
const CHECK: &str = "SELECT @@session.sql_mode, @@session.time_zone, @@character_set_client, \
     @@collation_connection, @@character_set_results, @@max_execution_time, \
     @@group_concat_max_len, @@autocommit, @@transaction_isolation, DATABASE(), \
     @u1, @u2, @u3, @u4, HEX(@u4), @u1 + 0, @p";

/// The script of session `k`; its tables and locks are named after `run`.
fn script(run: &str, seed: u64, k: usize, len: usize) -> Vec<Step> {
    let mut r = Rng::new(seed ^ ((k as u64 + 1) * 7919));
    let t = format!("causeway.{run}_t{k}");
    let tmp = format!("causeway.{run}_tmp{k}");
    let lock = format!("{run}_lock{k}");
    let mut out = Vec::new();
    let mut temp = false;
    let mut prepared = false;
    for _ in 0..len {
        let sql = match r.below(21) {
            0 => format!(
                "SET SESSION sql_mode = '{}'",
                r.pick(&[
                    "",
                    "ANSI_QUOTES",
                    "TRADITIONAL",
                    "NO_BACKSLASH_ESCAPES,ONLY_FULL_GROUP_BY"
                ])
            ),
            1 => format!(
                "SET time_zone = '{}'",
                r.pick(&["+00:00", "+05:30", "-03:00", "SYSTEM"])
            ),
            2 => format!(
                "SET NAMES {}",
                r.pick(&["utf8mb4", "latin1", "utf8mb4 COLLATE utf8mb4_bin"])
            ),
            3 => format!(
                "SET @@session.max_execution_time = {}, group_concat_max_len = {}",
                r.pick(&[0, 1000, 2500]),
                r.pick(&[1024, 4096, 77])
            ),
            4 => {
                let v = r.pick(&[
                    "42",
                    "-7",
                    "1.50",
                    "0.1e0 + 0.2e0",
                    "'h\u{e9}llo'",
                    "NULL",
                    "X'00FF'",
                    "CAST('{\"a\": 1}' AS JSON)",
                    "_latin1 X'E9' COLLATE latin1_german1_ci",
                ]);
                format!("SET @u{} = {v}", r.below(4) + 1)
            }
            5 => format!("SELECT @u{} := {} + 1", r.below(4) + 1, r.below(100)),
            6 => format!("SELECT {} INTO @u{}", r.below(100), r.below(4) + 1),
            7 => format!("USE {}", r.pick(&["causeway", "mux_other"])),
            8 if !temp => {
                temp = true;
                format!("CREATE TEMPORARY TABLE {tmp} (a INT)")
            }
            8 | 9 if temp => {
                if r.below(3) == 0 {
                    temp = false;
                    format!("DROP TEMPORARY TABLE {tmp}")
                } else {
                    format!("INSERT INTO {tmp} VALUES ({})", r.below(50))
                }
            }
            10 if temp => format!("SELECT COUNT(*), SUM(a) FROM {tmp}"),
            10 => format!("SELECT GET_LOCK('{lock}', 0)"),
            11 => format!("SELECT IS_USED_LOCK('{lock}') IS NOT NULL, RELEASE_LOCK('{lock}')"),
            12 => {
                out.push(Step::Sql("BEGIN".into()));
                out.push(Step::Sql(format!(
                    "INSERT INTO {t} (v) VALUES ({})",
                    r.below(1000)
                )));
                if r.below(2) == 0 {
                    out.push(Step::Sleep(r.below(8)));
                }
                out.push(Step::Sql(format!("SELECT COUNT(*), SUM(v) FROM {t}")));
                r.pick(&["COMMIT", "ROLLBACK"]).to_string()
            }
            13 => {
                out.push(Step::Sql("SET autocommit = 0".into()));
                out.push(Step::Sql(format!(
                    "UPDATE {t} SET v = v + 1 WHERE id % 2 = 0"
                )));
                out.push(Step::Sql("SELECT ROW_COUNT()".into()));
                out.push(Step::Sql("COMMIT".into()));
                "SET autocommit = 1".into()
            }
            14 => {
                out.push(Step::Sql(format!(
                    "INSERT INTO {t} (v) VALUES ({})",
                    r.below(1000)
                )));
                if r.below(2) == 0 {
                    out.push(Step::Sleep(r.pick(&[0, 3, 12]).to_owned()));
                    out.push(Step::Sql("SELECT 1".into()));
                }
                "SELECT LAST_INSERT_ID()".into()
            }
            15 => {
                out.push(Step::Sql(format!(
                    "UPDATE {t} SET v = v - 1 WHERE id <= {}",
                    r.below(4)
                )));
                if r.below(2) == 0 {
                    out.push(Step::Sleep(12));
                }
                "SELECT ROW_COUNT()".into()
            }
            16 => {
                out.push(Step::Exec(
                    "SELECT ? + 1, @u1, @@time_zone".into(),
                    r.below(100) as i64,
                ));
                continue;
            }
            17 if !prepared => {
                prepared = true;
                format!("PREPARE {run}_ps{k} FROM 'SELECT ? * 2, @u2'")
            }
            17 => {
                out.push(Step::Sql(format!("SET @p = {}", r.below(100))));
                if r.below(2) == 0 {
                    out.push(Step::Sleep(12));
                }
                format!("EXECUTE {run}_ps{k} USING @p")
            }
            18 if prepared => {
                prepared = false;
                format!("DEALLOCATE PREPARE {run}_ps{k}")
            }
            18 => format!(
                "SET SESSION TRANSACTION ISOLATION LEVEL {}",
                r.pick(&["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
            ),
            // The next transaction's characteristics: one-shot, left
            // pending at times (on a connection that then changes hands).
            19 => {
                let c = r.pick(&[
                    "READ ONLY",
                    "ISOLATION LEVEL READ COMMITTED, READ ONLY",
                    "ISOLATION LEVEL SERIALIZABLE",
                    "READ WRITE",
                ]);
                if r.below(3) == 0 {
                    format!("SET TRANSACTION {c}")
                } else {
                    out.push(Step::Sql(format!("SET TRANSACTION {c}")));
                    if r.below(2) == 0 {
                        out.push(Step::Sleep(12));
                    }
                    out.push(Step::Sql("BEGIN".into()));
                    out.push(Step::Sql(format!("INSERT INTO {t} (v) VALUES (5)")));
                    "ROLLBACK".into()
                }
            }
            _ => CHECK.into(),
        };
        out.push(Step::Sql(sql));
        if r.below(3) == 0 {
            out.push(Step::Sleep(*r.pick(&[0, 1, 4, 12])));
        }
        if r.below(4) == 0 {
            out.push(Step::Sql(CHECK.into()));
        }
    }
    out.push(Step::Sql(CHECK.into()));
    out
}

/// What a step gave: rows, or the error code.
fn outcome(res: std::result::Result<Vec<Row>, mysql_async::Error>) -> String {
    match res {
        Ok(rows) => format!(
            "{:?}",
            rows.into_iter()
                .map(|r| r.unwrap())
                .collect::<Vec<Vec<Value>>>()
        ),
        Err(mysql_async::Error::Server(e)) => format!("ERR {}", e.code),
        Err(e) => format!("ERR {e}"),
    }
}

/// Runs `steps` on one connection to `port`; the transcript.
async fn run(topo: &Topology, port: u16, steps: &[Step]) -> Result<Vec<String>> {
    let mut c = Conn::new(opts(topo, port, "APP", false)?).await?;
    let mut out = Vec::with_capacity(steps.len());
    for (n, s) in steps.iter().enumerate() {
        match s {
            Step::Sql(sql) => {
                let res = c.query::<Row, _>(sql.as_str()).await;
                out.push(format!("#{n} {sql} -> {}", outcome(res)));
            }
            Step::Exec(sql, p) => {
                let res = c.exec::<Row, _, _>(sql.as_str(), (*p,)).await;
                out.push(format!("#{n} {sql} ({p}) -> {}", outcome(res)));
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }
    c.disconnect().await?;
    Ok(out)
}

/// Fresh per-session tables, so that every run starts alike.
async fn setup(topo: &Topology, run: &str, sessions: usize) -> Result<()> {
    let mut a = topo.conn(topo.primary_port, "APP").await?;
    a.query_drop("CREATE DATABASE IF NOT EXISTS mux_other")
        .await?;
    for k in 0..sessions {
        a.query_drop(format!("DROP TABLE IF EXISTS causeway.{run}_t{k}"))
            .await?;
        a.query_drop(format!(
            "CREATE TABLE causeway.{run}_t{k} (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"
        ))
        .await?;
        a.query_drop(format!(
            "INSERT INTO causeway.{run}_t{k} (v) VALUES (1), (2), (3), (4)"
        ))
        .await?;
    }
    a.disconnect().await?;
    Ok(())
}

/// Every session's transcript, all sessions at once.
async fn all(topo: &Topology, port: u16, scripts: &[Vec<Step>]) -> Result<Vec<Vec<String>>> {
    let mut tasks = Vec::new();
    for s in scripts {
        let topo = topo.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move { run(&topo, port, &s).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// A router with small pools (fewer connections than sessions) and a
/// short multiplex delay, causal reads over the replicas.
async fn mux_router(topo: &Topology) -> Result<causeway_e2e::router::TestRouter> {
    let mut cfg = topo.causal_config(Scope::Session)?;
    cfg.frontend.caching_sha2_full_auth = causeway_router::config::FullAuth::Never;
    cfg.backend.tls.mode = causeway_router::config::BackendTlsMode::Disabled;
    cfg.backend.multiplex_delay = Duration::from_millis(2);
    cfg.backend.queue_timeout = Duration::from_secs(20);
    for s in &mut cfg.servers {
        s.max_connections = 3;
    }
    start_router(cfg).await
}

/// The first difference between two runs, if any (each session's first
/// one, with `MUX_ALL` set).
fn first_difference(a: &[Vec<String>], b: &[Vec<String>]) -> Option<String> {
    let mut all = Vec::new();
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        for (l, r) in x.iter().zip(y) {
            if l != r {
                if std::env::var_os("MUX_DUMP").is_some() {
                    for (p, q) in x.iter().zip(y) {
                        eprintln!("D {p}\nR {q}");
                        if p == l {
                            break;
                        }
                    }
                }
                let d = format!("session {k}:\n direct: {l}\n router: {r}");
                if std::env::var_os("MUX_ALL").is_none() {
                    return Some(d);
                }
                all.push(d);
                break;
            }
        }
        if x.len() != y.len() {
            return Some(format!("session {k}: {} vs {} steps", x.len(), y.len()));
        }
    }
    (!all.is_empty()).then(|| all.join("\n"))
}

const SESSIONS: usize = 8;
const STEPS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_sessions_see_through_the_router_what_they_see_directly() -> Result<()> {
    let topo = Topology::get()?;
    let router = mux_router(&topo).await?;
    // More with MUX_SEEDS=first..last (e.g. 1..200) when hunting.
    let seeds: Vec<u64> = match std::env::var("MUX_SEEDS") {
        Ok(r) => {
            let (a, b) = r.split_once("..").context("MUX_SEEDS=first..last")?;
            (a.parse()?..=b.parse()?).collect()
        }
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let scripts: Vec<Vec<Step>> = (0..SESSIONS)
            .map(|k| script("mux", seed, k, STEPS))
            .collect();
        setup(&topo, "mux", SESSIONS).await?;
        let direct = all(&topo, topo.primary_port, &scripts).await?;
        setup(&topo, "mux", SESSIONS).await?;
        let routed = all(&topo, router.port, &scripts).await?;
        if let Some(d) = first_difference(&direct, &routed) {
            anyhow::bail!("seed {seed}: {d}");
        }
    }
    // Connections really changed hands: sessions replayed settings on
    // connections others had used, and read back what lived on theirs.
    let m = &router.shared.metrics;
    assert!(m.replays.get() > 100, "replays {}", m.replays.get());
    assert!(m.captures.get() > 10, "captures {}", m.captures.get());
    let pools = router.shared.pools.stats();
    assert!(pools.iter().all(|p| p.open <= 3), "{pools:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_the_same_sessions_see_each_others_settings() -> Result<()> {
    let topo = Topology::get()?;
    let router = mux_router(&topo).await?;
    router
        .shared
        .skip_replay_for_tests
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let scripts: Vec<Vec<Step>> = (0..SESSIONS)
        .map(|k| script("nomux", 1, k, STEPS))
        .collect();
    setup(&topo, "nomux", SESSIONS).await?;
    let direct = all(&topo, topo.primary_port, &scripts).await?;
    setup(&topo, "nomux", SESSIONS).await?;
    let routed = all(&topo, router.port, &scripts).await?;
    let d = first_difference(&direct, &routed).context("no difference without replay")?;
    eprintln!("without replay, as expected: {d}");
    Ok(())
}

/// A session that logged in with latin1 gets latin1 on a connection where
/// another session ran `SET NAMES utf8mb4`: the login's collation, not the
/// server's default, is what "no `SET NAMES`" means.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_another_session_changed_gets_the_login_character_set_back() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = causeway_router::config::FullAuth::Never;
    cfg.backend.multiplex_delay = Duration::from_millis(2);
    for s in &mut cfg.servers {
        s.max_connections = 1;
    }
    let router = start_router(cfg).await?;
    let latin1 = ["--default-character-set=latin1"];
    let check = "SELECT @@character_set_client, @@character_set_results, @@collation_connection";
    let direct = topo.mysql_batch(topo.primary_port, "APP", &latin1, check)?;
    assert!(direct.contains("latin1_swedish_ci"), "{direct}");
    let opened = router.shared.metrics.backend_opened.get();
    topo.mysql_batch(router.port, "APP", &latin1, "SET NAMES utf8mb4; SELECT 1")?;
    let routed = topo.mysql_batch(router.port, "APP", &latin1, check)?;
    assert_eq!(routed, direct);
    assert_eq!(
        router.shared.metrics.backend_opened.get(),
        opened + 1,
        "the second session reused the first one's connection"
    );
    Ok(())
}

/// The connection that held a session's named lock was killed behind the
/// router's back while the session was idle: when the router finds out
/// (asking whether the lock is still held before giving the connection
/// back), the session ends with ERR 2013, as a direct one would have; it
/// never goes on without its lock. Other sessions carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_that_held_a_lock_ends_its_session() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.causal_config(Scope::Session)?;
    cfg.frontend.caching_sha2_full_auth = causeway_router::config::FullAuth::Never;
    cfg.backend.tls.mode = causeway_router::config::BackendTlsMode::Disabled;
    cfg.backend.multiplex_delay = Duration::from_millis(400);
    let router = start_router(cfg).await?;
    let mut c = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    let got: Option<i64> = c.query_first("SELECT GET_LOCK('mux_lost_lock', 0)").await?;
    assert_eq!(got, Some(1));
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    // The backend connection that holds it (CONNECTION_ID() is the
    // router's id).
    let thread: u64 = admin
        .query_first("SELECT IS_USED_LOCK('mux_lost_lock')")
        .await?
        .context("nobody holds the lock")?;
    admin.query_drop(format!("KILL {thread}")).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let next = c.query_drop("SELECT 1").await;
    match next {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 2013, "{e}"),
        Err(_) => {}
        Ok(()) => panic!("the session went on without its lock"),
    }
    let mut d = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    let one: Option<i64> = d.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    d.disconnect().await?;
    Ok(())
}
