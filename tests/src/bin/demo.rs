//! The demo's watcher: subscribes to every reader of the sandbox, writes a
//! row through the router with a real client (node's mysql2, which reads the
//! GTID from the OK packet), and reports when each server's reader announced
//! that GTID as visible, and what each server then returns for the row.
//! Then read-your-writes under load: sessions write a row and read it back
//! through the router for a few seconds while replica1 is made to lag, and
//! a summary of where the reads went, how fast, and whether any was stale.
//! Run by `scripts/demo`.

#![allow(clippy::print_stdout)]

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use causeway_e2e::reader::NativeSubscriber;
use causeway_e2e::workload::{self, Mode, Progress, Sample, Scrape, Summary, Workload};
use causeway_e2e::{run_node_client, Topology};
use causeway_gtid::delta::binary::Message;
use causeway_gtid::{Gtid, GtidSet};
use mysql_async::prelude::*;

#[tokio::main]
async fn main() -> Result<()> {
    let topo = Topology::get()?;
    let names = ["primary", "replica1", "replica2"];
    let addrs = topo.reader_addrs()?;
    let token = topo.reader_token()?;
    let mut subs = Vec::new();
    for addr in &addrs {
        let mut s = NativeSubscriber::connect(addr, &token).await?;
        s.next(Duration::from_secs(10)).await?.context("hello")?;
        s.next(Duration::from_secs(10)).await?.context("snapshot")?;
        subs.push(s);
    }
    // Every reader is followed from now on; each delta is stamped with the
    // wall-clock time it arrived, so the announcement can be compared with
    // the moment the client got its OK.
    let (tx, rx) = tokio::sync::watch::channel::<Option<GtidSet>>(None);
    let mut tasks = Vec::new();
    for mut s in subs {
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen_at = Vec::new();
            loop {
                if let Some(want) = rx.borrow().clone() {
                    if let Some((at, _)) = seen_at
                        .iter()
                        .find(|(_, v): &&(SystemTime, GtidSet)| want.is_subset(v))
                    {
                        return anyhow::Ok(*at);
                    }
                }
                tokio::select! {
                    msg = s.next(Duration::from_secs(10)) => {
                        if let Some(Message::Delta(_) | Message::Snapshot(_)) = msg? {
                            seen_at.push((SystemTime::now(), s.view.clone()));
                        }
                    }
                    _ = rx.changed() => {}
                }
            }
        }));
    }

    let router_port: u16 = topo.var("CAUSEWAY_ROUTER_PORT")?.parse()?;
    let app = topo.user("APP")?;
    let id = format!(
        "demo-{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    println!("\n== A write through the router (127.0.0.1:{router_port}), by node's mysql2");
    let out = run_node_client(
        "write_own_gtid.mjs",
        &[
            ("MYSQL_HOST", topo.host.clone()),
            ("MYSQL_PORT", router_port.to_string()),
            ("MYSQL_USER", app.user.clone()),
            ("MYSQL_PASSWORD", app.password.clone()),
            ("MYSQL_DATABASE", topo.var("CAUSEWAY_DATABASE")?.to_string()),
            ("ROW_ID", id.clone()),
        ],
    )?;
    let gtid = out["gtids"][0]
        .as_str()
        .context("the OK packet carried no GTID")?
        .to_string();
    let ok_at =
        UNIX_EPOCH + Duration::from_secs_f64(out["okAt"].as_f64().context("no okAt")? / 1000.0);
    println!("INSERT INTO e2e_first VALUES ('{id}', 1)");
    println!("the OK packet says this session wrote {gtid}");
    let mut want = GtidSet::default();
    want.insert(Gtid::parse(&gtid)?);
    tx.send(Some(want))?;

    println!("\n== Each reader announces it once it is visible on its server");
    for (i, t) in tasks.into_iter().enumerate() {
        let at = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .with_context(|| format!("the reader of {} never announced {gtid}", names[i]))???;
        let port = topo.server_ports()[i];
        let mut c = topo.conn(port, "APP").await?;
        let n: Option<i64> = c
            .exec_first("SELECT n FROM e2e_first WHERE id = ?", (&id,))
            .await?;
        ensure!(n == Some(1), "{} announced {gtid} but has no row", names[i]);
        let when = match at.duration_since(ok_at) {
            Ok(d) => format!("{:.1} ms after", d.as_secs_f64() * 1e3),
            Err(e) => format!("{:.1} ms before", e.duration().as_secs_f64() * 1e3),
        };
        println!(
            "{:<9} (:{port}) its reader announced it {when} the client's OK; the row is there (n = 1)",
            names[i]
        );
    }
    println!(
        "\nThe router follows these same announcements: it sends a session's read to a\n\
         replica whose view already holds the session's writes, else to the primary."
    );
    causal_reads(&topo).await
}

/// Sessions of the read-your-writes part.
const SESSIONS: usize = 4;
/// Pause between a write and the read of its row.
const THINK: Duration = Duration::from_millis(2);
/// How long the read-your-writes part runs.
const RUN: Duration = Duration::from_secs(10);
/// When replica1's applier stops, from the start of the run.
const LAG_FROM: Duration = Duration::from_millis(3500);
/// How long it stays stopped.
const LAG_FOR: Duration = Duration::from_secs(3);

/// What the lag injection did.
struct Lag {
    stopped: Instant,
    restarted: Instant,
    /// Transactions replica1 missed when its applier restarted.
    behind: u128,
    /// From the restart until replica1 had everything the primary had then.
    caught_up: Duration,
    /// The router's metrics just before the restart.
    mid: Option<Scrape>,
}

/// Lag states shown on the progress line.
const LAG_NOT_YET: u8 = 0;
const LAG_ON: u8 = 1;
const LAG_OVER: u8 = 2;

/// Stops replica1's SQL thread `LAG_FROM` into the run, for `LAG_FOR`,
/// then starts it again (always, once stopped) and times its catch-up.
async fn lag_replica1(
    topo: Topology,
    progress: Arc<Progress>,
    state: Arc<std::sync::atomic::AtomicU8>,
) -> Result<Lag> {
    let mut replica = workload::connect(&topo, topo.replica_ports[0], "ADMIN").await?;
    let mut primary = workload::connect(&topo, topo.primary_port, "ADMIN").await?;
    let waiting = Instant::now();
    let started = loop {
        if let Some(s) = progress.started.get() {
            break *s;
        }
        ensure!(
            waiting.elapsed() < Duration::from_secs(60),
            "the workload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep_until((started + LAG_FROM).into()).await;
    state.store(LAG_ON, Ordering::Relaxed);
    replica.query_drop("STOP REPLICA SQL_THREAD").await?;
    let stopped = Instant::now();
    tokio::time::sleep_until((stopped + LAG_FOR).into()).await;
    let mid = topo
        .var("CAUSEWAY_METRICS_URL")
        .ok()
        .and_then(|url| Scrape::get(url).ok());
    let executed = async {
        let p: String = primary
            .query_first("SELECT @@global.gtid_executed")
            .await?
            .context("no gtid_executed")?;
        let r: String = replica
            .query_first("SELECT @@global.gtid_executed")
            .await?
            .context("no gtid_executed")?;
        anyhow::Ok((p, r))
    }
    .await;
    replica.query_drop("START REPLICA SQL_THREAD").await?;
    let restarted = Instant::now();
    state.store(LAG_OVER, Ordering::Relaxed);
    let (p, r) = executed?;
    let behind = GtidSet::parse(&p)?.difference(&GtidSet::parse(&r)?).count();
    let res: Option<i64> = replica
        .query_first(format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{p}', 30)"))
        .await?;
    ensure!(res == Some(0), "replica1 did not catch up within 30 s");
    Ok(Lag {
        stopped,
        restarted,
        behind,
        caught_up: restarted.elapsed(),
        mid,
    })
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{:.1} %", 100.0 * n as f64 / of as f64)
    }
}

/// The progress line: time, reads, share on replicas, stale so far.
fn progress_line(p: &Progress, names: &[String], lag: u8) -> String {
    let reads = p.reads.load(Ordering::Relaxed);
    let t = p
        .started
        .get()
        .map_or(0.0, |s| s.elapsed().as_secs_f64())
        .min(RUN.as_secs_f64());
    let per: Vec<String> = names[1..names.len() - 1]
        .iter()
        .zip(&p.served[1..])
        .map(|(n, c)| format!("{n} {}", c.load(Ordering::Relaxed)))
        .collect();
    let stale = p.stale.load(Ordering::Relaxed);
    let errors = p.errors.load(Ordering::Relaxed);
    let lag = match lag {
        LAG_ON => "  [replica1 lagging]",
        LAG_OVER => "  [replica1 restarted]",
        _ => "",
    };
    format!(
        "{t:>5.1} s  reads {reads:>6}  on replicas {:>7} ({}, primary {})  stale {stale}{}{lag}",
        pct(p.on_replicas(), reads),
        per.join(", "),
        p.served[0].load(Ordering::Relaxed),
        if errors > 0 {
            format!("  errors {errors}")
        } else {
            String::new()
        },
    )
}

/// One row of the lag table: reads whose start fell in `[from, to)`.
fn window_row(label: &str, s: &Summary, from: Duration, to: Duration) -> String {
    let mut lat: Vec<Duration> = Vec::new();
    let mut served = vec![0u64; s.names.len()];
    let mut stale = 0;
    for x in s
        .samples
        .iter()
        .filter(|x: &&Sample| x.at >= from && x.at < to)
    {
        lat.push(x.latency);
        served[x.server] += 1;
        stale += u64::from(x.stale);
    }
    lat.sort_unstable();
    let n = lat.len() as u64;
    let mut row = format!(
        "  {label:<28} {:>5.1}-{:<5.1} {n:>7} {:>9}",
        from.as_secs_f64(),
        to.as_secs_f64(),
        pct(served[0], n)
    );
    for c in &served[1..served.len() - 1] {
        row.push_str(&format!(" {:>9}", pct(*c, n)));
    }
    row.push_str(&format!(
        " {stale:>6} {:>8} {:>8}",
        workload::ms(workload::quantile(&lat, 0.5)),
        workload::ms(workload::quantile(&lat, 0.99))
    ));
    row
}

/// The read-your-writes part of the demo.
async fn causal_reads(topo: &Topology) -> Result<()> {
    let names = workload::server_names(topo);
    println!("\n== Read-your-writes under load, through the router");
    println!(
        "{SESSIONS} sessions, each in a loop: INSERT a row, wait {} ms, SELECT it back with\n\
         @@port (which server answered). A read that misses the row its own session has\n\
         just written would be a stale read. For {} s; from {:.1} s to {:.1} s replica1 lags\n\
         (its applier stopped: STOP REPLICA SQL_THREAD, then START REPLICA SQL_THREAD).\n",
        THINK.as_millis(),
        RUN.as_secs(),
        LAG_FROM.as_secs_f64(),
        (LAG_FROM + LAG_FOR).as_secs_f64(),
    );
    workload::prepare(topo).await?;
    // An earlier demo stopped mid-lag would have left replica1's applier
    // off (starting a running one only warns).
    let mut admin = workload::connect(topo, topo.replica_ports[0], "ADMIN").await?;
    admin.query_drop("START REPLICA SQL_THREAD").await?;
    admin.disconnect().await?;

    let metrics_url = topo.var("CAUSEWAY_METRICS_URL")?.to_string();
    let before = Scrape::get(&metrics_url)?;
    let progress = Arc::new(Progress::new(topo));
    let state = Arc::new(std::sync::atomic::AtomicU8::new(LAG_NOT_YET));
    let w = Workload {
        mode: Mode::Causeway,
        sessions: SESSIONS,
        think: THINK,
        duration: RUN,
        keep_samples: true,
    };
    let run = tokio::spawn({
        let (topo, p) = (topo.clone(), progress.clone());
        async move { workload::run(&topo, &w, Some(p)).await }
    });
    let lag = tokio::spawn(lag_replica1(topo.clone(), progress.clone(), state.clone()));
    let tty = std::io::stdout().is_terminal();
    let mut tick = 0u32;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tick += 1;
        let line = progress_line(&progress, &names, state.load(Ordering::Relaxed));
        if tty {
            print!("\r\x1b[K{line}");
            std::io::stdout().flush()?;
        } else if tick.is_multiple_of(2) {
            println!("{line}");
        }
    }
    println!(
        "{}{}",
        if tty { "\r\x1b[K" } else { "" },
        progress_line(&progress, &names, state.load(Ordering::Relaxed))
    );
    let s = match run.await? {
        Ok(s) => s,
        Err(e) => {
            // Never leave replica1's applier stopped: once stopped, the lag
            // task restarts it; before that, it is stopped itself.
            if state.load(Ordering::Relaxed) == LAG_NOT_YET {
                lag.abort();
            } else {
                let _ = lag.await;
            }
            return Err(e);
        }
    };
    let lag = lag.await??;
    let router = Scrape::get(&metrics_url)?.since(&before);

    let rate = s.reads as f64 / s.elapsed.as_secs_f64();
    let (p50, p95, p99) = s.read_p50_p95_p99();
    println!("\n== What happened");
    println!(
        "{} reads in {:.1} s ({rate:.0} reads/s), each right after its session's write.",
        s.reads,
        s.elapsed.as_secs_f64()
    );
    let on_replicas = s.served[1..s.served.len() - 1].iter().sum::<u64>();
    let per: Vec<String> = names[1..names.len() - 1]
        .iter()
        .zip(&s.served[1..])
        .map(|(n, c)| format!("{n} {}", pct(*c, s.reads)))
        .collect();
    println!(
        "Served by the replicas: {} ({}); by the primary: {}.",
        pct(on_replicas, s.reads),
        per.join(", "),
        pct(s.on_primary(), s.reads)
    );
    println!(
        "Read latency: p50 {} ms, p95 {} ms, p99 {} ms (the write before it: p50 {} ms).",
        workload::ms(p50),
        workload::ms(p95),
        workload::ms(p99),
        workload::ms(workload::quantile(&s.write_latencies, 0.5))
    );
    if s.stale == 0 {
        println!("Stale reads: 0. Every read found the row its session had just written.");
    } else {
        println!(
            "\n!!! STALE READS: {} of {} reads did not find the row their own session had just\n\
             !!! written. The router sent them to a replica that had not applied the write yet:\n\
             !!! this is a bug. Router log: {}/router/router.log\n",
            s.stale,
            s.reads,
            topo.dir.display()
        );
    }
    if s.errors > 0 {
        println!(
            "!!! {} statements failed; the first: {}",
            s.errors,
            s.first_error.as_deref().unwrap_or("?")
        );
    }

    println!(
        "\nThe router's own counters over the run (deltas from {metrics_url};\n\
         the warm-up, {} writes and reads, and the client library's set-up queries included):",
        2 * SESSIONS
    );
    for (labels, v) in router.series("causeway_router_causal_reads_total") {
        if v > 0.0 {
            println!("  causal_reads_total{{{labels}}} {v:>8.0}");
        }
    }
    let waited = router.sum("causeway_router_causal_wait_seconds_count", &[]);
    let wait_sum = router.sum("causeway_router_causal_wait_seconds_sum", &[]);
    if waited > 0.0 {
        println!(
            "  {waited:.0} reads waited for a replica to catch up (mean {:.2} ms; at most max_wait,\n  \
             5 ms, then they go to the primary)",
            wait_sum / waited * 1e3
        );
    } else {
        println!("  no read had to wait for a replica to catch up");
    }
    println!(
        "  (slow_catch_up: no replica was expected to have the write before the primary\n  \
         would answer, so the read went there without waiting)"
    );
    for (labels, v) in router.series("causeway_router_queries_total") {
        if v > 0.0 {
            println!("  queries_total{{{labels}}} {v:>8.0}");
        }
    }

    let from = lag.stopped.saturating_duration_since(s.started);
    let to = lag.restarted.saturating_duration_since(s.started);
    // Every read started before the run ended.
    let end = s.elapsed;
    println!(
        "\n== While replica1 lagged ({:.1} s to {:.1} s)",
        from.as_secs_f64(),
        to.as_secs_f64()
    );
    let mut head = format!(
        "  {:<28} {:^11} {:>7} {:>9}",
        "window", "seconds", "reads", "primary"
    );
    for n in &names[1..names.len() - 1] {
        head.push_str(&format!(" {n:>9}"));
    }
    head.push_str(&format!(" {:>6} {:>8} {:>8}", "stale", "p50 ms", "p99 ms"));
    println!("{head}");
    println!("{}", window_row("before", &s, Duration::ZERO, from));
    println!("{}", window_row("replica1's applier stopped", &s, from, to));
    println!("{}", window_row("after it restarted", &s, to, end));
    println!(
        "  When its applier restarted, replica1 was {} transactions behind the primary;\n  \
         it had caught up {:.0} ms later.",
        lag.behind,
        lag.caught_up.as_secs_f64() * 1e3
    );
    if let Some(mid) = &lag.mid {
        let get = |name: &str| {
            mid.series(name)
                .into_iter()
                .find(|(l, _)| l.contains("server=\"replica1\""))
                .map_or("-".to_string(), |(_, v)| format!("{v}"))
        };
        println!(
            "  Just before the restart the router's metrics said, for replica1:\n  \
             server_up {} (the health monitor kept it in the group), server_lag_seconds {}\n  \
             (-1: replication not running), view_gtid_distance {} (GTIDs the primary has\n  \
             that replica1's view lacks).",
            get("causeway_router_server_up"),
            get("causeway_router_server_lag_seconds"),
            get("causeway_router_view_gtid_distance"),
        );
    }
    println!(
        "\nWhile replica1 applied nothing, its reader announced nothing new, so the router\n\
         stopped sending it reads that needed newer writes: they went to replica2 (or,\n\
         when replica2 had not caught up within 5 ms either, or was not expected to\n\
         before the primary would answer, to the primary). Once replica1 caught up,\n\
         it took its share again."
    );
    if s.stale == 0 {
        println!("Not one read was sent where its session's write was missing.");
    }
    println!(
        "A plain read/write split would have read the lagging replica and missed rows.\n\
         To compare causal reads with such a split, with a GTID fence written by hand and\n\
         with reading everything on the primary (load, latency, stale reads):\n\
         `cargo run --release -p causeway-bench --bin causal-bench`, or `bench/causal`."
    );
    Ok(())
}
