//! Causal reads against the alternatives, in one invocation: the
//! write-then-read workload of `causeway_e2e::workload` in seven modes
//! (through the router with causal reads in scope session, and, with the
//! read on a second connection as through a pool, in scopes user and
//! router; through the router as a plain read/write split; everything on
//! the primary, directly and through the router; a hand-written GTID fence)
//! at think times 0, 1, 5 and 20 ms, interleaved (each think time runs the
//! five modes back to back, in an order that rotates), and the replicas'
//! apply delay, idle and under load.
//!
//! ```sh
//! cargo run --release -p causeway-bench --bin causal-bench -- [SECONDS_PER_RUN]
//! bench/causal [SECONDS_PER_RUN]     # the same against a release router and readers
//! ```
//!
//! Environment: `BENCH_ROUNDS` (2), `BENCH_SESSIONS` (8); the sandbox's router
//! unless `CAUSEWAY_BENCH_ROUTER_PORT`, `CAUSEWAY_BENCH_METRICS_URL` and
//! `CAUSEWAY_BENCH_READER_ADDRS` name another one, and
//! `CAUSEWAY_BENCH_PRIMARY_READER_METRICS` the metrics URLs of every reader
//! beside the primary (bench/causal sets them).
//!
//! The primary's load is every statement it executed during a run
//! (`Questions`), the readers' confirmation queries (a reader asks the
//! primary which of its pending GTIDs are visible, up to once per
//! millisecond while writes arrive) shown apart: they come with the writes,
//! whatever the mode.
//!
//! Not a test: prints numbers, asserts nothing.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_e2e::reader::NativeSubscriber;
use causeway_e2e::workload::{self, ms, quantile, Mode, Scrape, Summary, Workload, TABLE};
use causeway_e2e::Topology;
use causeway_gtid::GtidSet;
use futures_util::future::join_all;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// The causal modes and their scope: (name, metrics label).
const SCOPES: [(Mode, (&str, &str)); 3] = [
    (Mode::Causeway, ("session", "session")),
    (Mode::PoolUser, ("user", "user")),
    (Mode::PoolRouter, ("router", "router")),
];

/// Think times, in milliseconds.
const THINKS_MS: [u64; 4] = [0, 1, 5, 20];

/// The target judged at the end: at least this share of reads on replicas
/// once the think time is at least twice the apply delay.
const TARGET_SHARE: f64 = 0.95;

/// `SHOW GLOBAL STATUS LIKE 'Questions'`: statements the server executed.
async fn questions(c: &mut Conn) -> Result<u64> {
    let row: Option<(String, String)> =
        c.query_first("SHOW GLOBAL STATUS LIKE 'Questions'").await?;
    Ok(row.context("no Questions")?.1.parse()?)
}

/// Waits until every replica has what the primary has executed, so one
/// run's backlog does not land in the next.
async fn settle(primary: &mut Conn, replicas: &mut [Conn]) -> Result<()> {
    let executed: String = primary
        .query_first("SELECT @@global.gtid_executed")
        .await?
        .context("no gtid_executed")?;
    for r in replicas {
        let _: Option<i64> = r
            .query_first(format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET('{executed}', 60)"
            ))
            .await?;
    }
    Ok(())
}

/// Apply and announcement delays of single writes, measured from the
/// write's OK on the primary.
#[derive(Default)]
struct Delays {
    /// Until `WAIT_FOR_EXECUTED_GTID_SET` returned on the replica (includes
    /// reading `@@global.gtid_executed` on the primary and the wait's own
    /// round trip), every replica's samples together.
    apply: Vec<Duration>,
    /// Until the replica's reader announced it (what the router waits for).
    announce: Vec<Duration>,
    /// A `SELECT 1` round trip on a replica, for scale.
    rtt: Vec<Duration>,
    /// Probe writes.
    writes: usize,
}

impl Delays {
    fn line(&self, label: &str) -> String {
        let q = |v: &[Duration], p| ms(quantile(v, p));
        format!(
            "  {label:<44} applied p50 {:>6} p99 {:>6} | announced p50 {:>6} p99 {:>6} | SELECT 1 p50 {:>5}   ({} writes)",
            q(&self.apply, 0.5),
            q(&self.apply, 0.99),
            q(&self.announce, 0.5),
            q(&self.announce, 0.99),
            q(&self.rtt, 0.5),
            self.writes,
        )
    }
}

/// Writes one probe row every `gap` until `stop` (or `count` writes) and
/// times its arrival on every replica, both ways.
async fn probe(
    topo: &Topology,
    count: usize,
    gap: Duration,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Delays> {
    let mut primary = workload::connect(topo, topo.primary_port, "APP").await?;
    let mut replicas = Vec::new();
    for &p in &topo.replica_ports {
        replicas.push(workload::connect(topo, p, "APP").await?);
    }
    let token = topo.reader_token()?;
    let mut subs = Vec::new();
    for addr in &topo.reader_addrs()?[1..] {
        let mut s = NativeSubscriber::connect(addr, &token).await?;
        s.next(Duration::from_secs(10)).await?.context("hello")?;
        s.next(Duration::from_secs(10)).await?.context("snapshot")?;
        subs.push(s);
    }
    let mut d = Delays::default();
    for _ in 0..count {
        if stop.as_ref().is_some_and(|s| *s.borrow()) {
            break;
        }
        let id = workload::next_id();
        primary
            .query_drop(format!(
                "INSERT INTO {TABLE} (id, session, payload) VALUES ({id}, -1, 'probe')"
            ))
            .await?;
        let ok = Instant::now();
        let text: String = primary
            .query_first("SELECT @@global.gtid_executed")
            .await?
            .context("no gtid_executed")?;
        let set = GtidSet::parse(&text)?;
        let waits = replicas.iter_mut().map(|r| {
            let sql = format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{text}', 5)");
            async move {
                let res: Option<i64> = r.query_first(sql).await?;
                anyhow::ensure!(res == Some(0), "a replica did not apply a probe within 5 s");
                anyhow::Ok(ok.elapsed())
            }
        });
        let announces = subs.iter_mut().map(|s| {
            let set = set.clone();
            async move {
                s.until_contains(&set, Duration::from_secs(5)).await?;
                anyhow::Ok(ok.elapsed())
            }
        });
        let (waits, announces) = tokio::join!(join_all(waits), join_all(announces));
        for w in waits {
            d.apply.push(w?);
        }
        for a in announces {
            d.announce.push(a?);
        }
        d.writes += 1;
        let t = Instant::now();
        replicas[0].query_drop("SELECT 1").await?;
        d.rtt.push(t.elapsed());
        tokio::time::sleep(gap).await;
    }
    d.apply.sort_unstable();
    d.announce.sort_unstable();
    d.rtt.sort_unstable();
    Ok(d)
}

/// Confirmation queries the GTID readers beside the primary have sent it.
fn reader_confirms(urls: &[String]) -> Result<f64> {
    let mut n = 0.0;
    for u in urls {
        n += Scrape::get(u)?.sum("causeway_reader_confirm_queries_total", &[]);
    }
    Ok(n)
}

/// One (mode, think time) cell, over every round.
struct Cell {
    summary: Summary,
    /// Statements the primary executed during its runs.
    primary_questions: u64,
    /// Of those, the GTID readers' confirmation queries.
    reader_questions: f64,
    /// The router's metrics, summed over its runs.
    router: HashMap<String, f64>,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_string()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let secs: f64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .with_context(|| format!("usage: causal-bench [SECONDS_PER_RUN], not {a:?}"))?,
        None => 5.0,
    };
    let run_for = Duration::from_secs_f64(secs);
    let rounds = causeway_bench::env_num("BENCH_ROUNDS", 2)?;
    let sessions = causeway_bench::env_num("BENCH_SESSIONS", 8)?;
    let mut topo = Topology::get()?;
    for (bench, var) in [
        ("CAUSEWAY_BENCH_ROUTER_PORT", "CAUSEWAY_ROUTER_PORT"),
        ("CAUSEWAY_BENCH_METRICS_URL", "CAUSEWAY_METRICS_URL"),
        ("CAUSEWAY_BENCH_READER_ADDRS", "CAUSEWAY_READER_ADDRS"),
    ] {
        if let Ok(v) = std::env::var(bench) {
            topo.vars.insert(var.to_string(), v);
        }
    }
    let metrics_url = topo.var("CAUSEWAY_METRICS_URL")?.to_string();
    let primary_readers: Vec<String> = match std::env::var("CAUSEWAY_BENCH_PRIMARY_READER_METRICS")
    {
        Ok(v) => v.split_whitespace().map(str::to_string).collect(),
        Err(_) => topo
            .var("CAUSEWAY_READER_METRICS_URLS")?
            .split_whitespace()
            .take(1)
            .map(str::to_string)
            .collect(),
    };
    workload::prepare(&topo).await?;
    let mut admin = workload::connect(&topo, topo.primary_port, "ADMIN").await?;
    let mut replica_admins = Vec::new();
    for &p in &topo.replica_ports {
        replica_admins.push(workload::connect(&topo, p, "ADMIN").await?);
    }

    println!(
        "causal-bench: {sessions} sessions, {secs} s per run, {rounds} round(s), think times {THINKS_MS:?} ms; \
         router 127.0.0.1:{}, primary :{}, replicas {:?}",
        topo.router_port()?,
        topo.primary_port,
        topo.replica_ports
    );
    for m in Mode::ALL {
        println!("  {:<14} {}", m.name(), m.describe());
    }

    // What the primary executes with nobody using it: the router's health
    // checks, the readers' confirmation queries, ...
    let q0 = questions(&mut admin).await?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rate = (questions(&mut admin).await? - q0) as f64 / t0.elapsed().as_secs_f64();

    println!("\nReplica apply delay: a single write's OK on the primary, until");
    println!("  applied:   WAIT_FOR_EXECUTED_GTID_SET returns on the replica (+ 2 round trips: the GTID fetch and the wait)");
    println!("  announced: the replica's reader announces it (what the router waits for)");
    let idle = probe(&topo, 100, Duration::from_millis(10), None).await?;
    println!("{}", idle.line("idle"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loaded = {
        let topo2 = topo.clone();
        let probe_task = tokio::spawn(async move {
            probe(&topo2, 100_000, Duration::from_millis(10), Some(stop_rx)).await
        });
        let w = Workload {
            mode: Mode::Causeway,
            sessions,
            think: Duration::ZERO,
            duration: run_for,
            keep_samples: false,
        };
        let s = workload::run(&topo, &w, None).await?;
        stop_tx.send(true)?;
        let d = probe_task.await??;
        println!(
            "{}",
            d.line(&format!(
                "under load (causeway, think 0, {:.0} reads/s)",
                s.reads as f64 / s.elapsed.as_secs_f64()
            ))
        );
        d
    };
    settle(&mut admin, &mut replica_admins).await?;

    let mut cells: HashMap<(Mode, u64), Cell> = HashMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        for (ti, &think) in THINKS_MS.iter().enumerate() {
            let mut order = Mode::ALL.to_vec();
            order.rotate_left((round + ti) % Mode::ALL.len());
            for mode in order {
                let w = Workload {
                    mode,
                    sessions,
                    think: Duration::from_millis(think),
                    duration: run_for,
                    keep_samples: false,
                };
                settle(&mut admin, &mut replica_admins).await?;
                let m0 = Scrape::get(&metrics_url)?;
                let c0 = reader_confirms(&primary_readers)?;
                let q0 = questions(&mut admin).await?;
                let s = workload::run(&topo, &w, None).await?;
                let q = questions(&mut admin).await? - q0;
                let rq = reader_confirms(&primary_readers)? - c0;
                let router = Scrape::get(&metrics_url)?.since(&m0);
                eprintln!(
                    "  round {} think {think:>2} ms {:<12} {:>6} reads, {:>5.1} % on replicas, {} stale{}",
                    round + 1,
                    mode.name(),
                    s.reads,
                    100.0 * s.replica_share(),
                    s.stale,
                    if s.errors > 0 {
                        format!(", {} errors", s.errors)
                    } else {
                        String::new()
                    }
                );
                match cells.get_mut(&(mode, think)) {
                    Some(c) => {
                        c.summary.merge(s);
                        c.primary_questions += q;
                        c.reader_questions += rq;
                        for (k, v) in router.0 {
                            *c.router.entry(k).or_default() += v;
                        }
                    }
                    None => {
                        cells.insert(
                            (mode, think),
                            Cell {
                                summary: s,
                                primary_questions: q,
                                reader_questions: rq,
                                router: router.0.into_iter().collect(),
                            },
                        );
                    }
                }
            }
        }
    }
    let total = started.elapsed();

    println!(
        "\nResults ({} runs in {:.0} s; latencies in ms; ×AP = ratio to all-primary at the same think time,\n\
         ×RP to router-primary (the same through the router: the proxy hop's own cost removed);\n\
         primary/1k: statements the primary executed per 1000 reads (SHOW GLOBAL STATUS 'Questions': every\n\
         client, {idle_rate:.1}/s when idle); readers/1k: of those, the GTID readers' confirmation queries;\n\
         ×AP of the rest)",
        rounds * THINKS_MS.len() * Mode::ALL.len(),
        total.as_secs_f64()
    );
    println!(
        "{:>5} {:<14} {:>7} {:>6} {:>8} {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>10} {:>10} {:>5}",
        "think",
        "mode",
        "reads/s",
        "actual",
        "replicas",
        "stale",
        "p50",
        "p95",
        "p99",
        "p50×AP",
        "p99×AP",
        "p99×RP",
        "primary/1k",
        "readers/1k",
        "×AP"
    );
    let mut notes = Vec::new();
    for &think in &THINKS_MS {
        let base = &cells[&(Mode::AllPrimary, think)];
        let base_p50 = base.summary.read_quantile(0.5).as_secs_f64();
        let base_p99 = base.summary.read_quantile(0.99).as_secs_f64();
        let hop_p99 = cells[&(Mode::RouterPrimary, think)]
            .summary
            .read_quantile(0.99)
            .as_secs_f64();
        let per_1k = |c: &Cell| {
            let k = 1000.0 / c.summary.reads.max(1) as f64;
            (c.primary_questions as f64 * k, c.reader_questions * k)
        };
        let (bq, br) = per_1k(base);
        let base_q = bq - br;
        for mode in Mode::ALL {
            let c = &cells[&(mode, think)];
            let s = &c.summary;
            let (p50, p95, p99) = s.read_p50_p95_p99();
            let (q, r) = per_1k(c);
            println!(
                "{:>3} ms {:<14} {:>7.0} {:>6} {:>7.1}% {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>10.0} {:>10.0} {:>5}",
                think,
                mode.name(),
                s.reads as f64 / s.elapsed.as_secs_f64(),
                ms(s.think_actual),
                100.0 * s.replica_share(),
                s.stale,
                ms(p50),
                ms(p95),
                ms(p99),
                ratio(p50.as_secs_f64(), base_p50),
                ratio(p99.as_secs_f64(), base_p99),
                ratio(p99.as_secs_f64(), hop_p99),
                q,
                r,
                ratio(q - r, base_q),
            );
            if s.errors > 0 {
                notes.push(format!(
                    "think {think} ms {}: {} failed statements; first: {}",
                    mode.name(),
                    s.errors,
                    s.first_error.as_deref().unwrap_or("?")
                ));
            }
            if matches!(mode, Mode::Causeway | Mode::PoolUser | Mode::PoolRouter) && s.stale > 0 {
                notes.push(format!(
                    "!!! think {think} ms {}: {} STALE READS through the router's causal reads",
                    mode.name(),
                    s.stale
                ));
            }
            if mode == Mode::Fence && s.fence_timeouts > 0 {
                notes.push(format!(
                    "think {think} ms gtid-fence: {} waits timed out (read on the primary)",
                    s.fence_timeouts
                ));
            }
        }
    }
    println!("(\"actual\": mean think time slept, ms)");

    println!("\nThe router's counters over the causal runs (causeway_router_causal_reads_total, causal_wait_seconds):");
    println!(
        "{:>5} {:<8} {:>9} {:>13} {:>13} {:>13} {:>8} {:>10}",
        "think",
        "scope",
        "replica",
        "not caught up",
        "slow catch-up",
        "no replica",
        "waited",
        "mean wait"
    );
    for &think in &THINKS_MS {
        for (mode, scope) in SCOPES {
            let r = Scrape(
                cells[&(mode, think)]
                    .router
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            );
            let reads = "causeway_router_causal_reads_total";
            let scope = ("scope", scope.1);
            let waited = r.sum("causeway_router_causal_wait_seconds_count", &[]);
            let wait_sum = r.sum("causeway_router_causal_wait_seconds_sum", &[]);
            println!(
                "{:>3} ms {:<8} {:>9.0} {:>13.0} {:>13.0} {:>13.0} {:>8.0} {:>7.2} ms",
                think,
                scope.1,
                r.sum(reads, &[scope, ("served", "replica")]),
                r.sum(
                    reads,
                    &[scope, ("served", "primary"), ("reason", "not_caught_up")]
                ),
                r.sum(
                    reads,
                    &[scope, ("served", "primary"), ("reason", "slow_catch_up")]
                ),
                r.sum(
                    reads,
                    &[
                        scope,
                        ("served", "primary"),
                        ("reason", "no_healthy_replica")
                    ]
                ),
                waited,
                if waited > 0.0 {
                    wait_sum / waited * 1e3
                } else {
                    0.0
                },
            );
        }
    }
    println!("(on the primary: \"not caught up\" within max_wait, or \"slow catch-up\": no replica was expected to catch up before\n\
              the primary would answer, so the read did not wait; \"waited\": reads that waited for a replica, either way)");

    println!(
        "\nWhat each scope costs (same run): share of reads on replicas (offload), read latency, and\n\
         ×session: the ratio to scope session at the same think time (session: write and read on one\n\
         connection; user and router: on two, as through a pool; eventual: the plain split, stale reads allowed)"
    );
    println!(
        "{:>5} {:<8} {:>8} {:>7} {:>7} {:>10} {:>10} {:>10} {:>6}",
        "think", "scope", "replicas", "p50", "p99", "offload×s", "p50×s", "p99×s", "stale"
    );
    for &think in &THINKS_MS {
        let base = &cells[&(Mode::Causeway, think)].summary;
        let (b50, _, b99) = base.read_p50_p95_p99();
        for (mode, (name, _)) in SCOPES
            .into_iter()
            .chain([(Mode::NaiveSplit, ("eventual", "eventual"))])
        {
            let s = &cells[&(mode, think)].summary;
            let (p50, _, p99) = s.read_p50_p95_p99();
            println!(
                "{:>3} ms {:<8} {:>7.1}% {:>7} {:>7} {:>10} {:>10} {:>10} {:>6}",
                think,
                name,
                100.0 * s.replica_share(),
                ms(p50),
                ms(p99),
                ratio(s.replica_share(), base.replica_share()),
                ratio(p50.as_secs_f64(), b50.as_secs_f64()),
                ratio(p99.as_secs_f64(), b99.as_secs_f64()),
                s.stale,
            );
        }
    }

    let apply = quantile(&loaded.apply, 0.5);
    let announce = quantile(&loaded.announce, 0.5);
    println!(
        "\nTarget: ≥{:.0} % of reads on replicas once the think time is ≥ 2× the apply delay.",
        TARGET_SHARE * 100.0
    );
    println!(
        "  apply delay under load p50 {} ms (announced to the router: p50 {} ms; idle: {} / {} ms)",
        ms(apply),
        ms(announce),
        ms(quantile(&idle.apply, 0.5)),
        ms(quantile(&idle.announce, 0.5)),
    );
    for &think in &THINKS_MS {
        let s = &cells[&(Mode::Causeway, think)].summary;
        let eligible = s.think_actual >= 2 * apply;
        let share = s.replica_share();
        println!(
            "  think {:>2} ms (slept {} ms): {:>5.1} % on replicas, {}",
            think,
            ms(s.think_actual),
            100.0 * share,
            match (eligible, share >= TARGET_SHARE) {
                (true, true) => "met",
                (true, false) => "NOT MET",
                (false, _) => "not judged (think < 2× apply delay)",
            }
        );
    }
    if !notes.is_empty() {
        println!("\nNotes:");
        for n in notes {
            println!("  {n}");
        }
    }
    Ok(())
}
