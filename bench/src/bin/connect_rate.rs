//! Connect rate: "connect + SELECT 1 + close" in a loop from N client
//! processes, against each target in turn, in rounds whose order rotates,
//! so machine noise hits every target. Each iteration is a full MySQL login
//! (handshake, caching_sha2_password authentication; TLS off on every
//! path), `SELECT 1`, and `COM_QUIT`; see `causeway_bench::client`.
//!
//! ```sh
//! connect-rate SECONDS_PER_RUN          # the benchmark (bench/connect-rate runs it)
//! connect-rate --child PORT SECONDS     # one client process
//! ```
//!
//! Environment: `BENCH_TARGETS` = `name=port[/pid] ...`, the first one the
//! baseline (`direct`); with a pid, that process's CPU time over each run
//! is counted per connection. `BENCH_SERVER_PID` (the primary's mysqld, its
//! CPU per connection alike), `BENCH_PROCESSES` (6), `BENCH_ROUNDS` (2),
//! `BENCH_CLK_TCK`, and the APP user's `CAUSEWAY_*` variables.
//!
//! Not a test: prints numbers, asserts nothing.

#![allow(clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use causeway_bench::client::{self, Failures};
use causeway_bench::procfs;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// One client process: connect, `SELECT 1`, close, until `secs` have
/// passed. Prints `ok COUNT ELAPSED_S`, `lat` and each latency in µs,
/// `err KIND|COUNT|MESSAGE` per kind of failure, then `cpu TICKS` (its own
/// CPU time).
fn child(port: u16, secs: f64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let opts = client::app_opts(port)?;
        let mut lat_us = Vec::new();
        let mut failures = Failures::default();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            let t = Instant::now();
            let one = async {
                let mut c = Conn::new(opts.clone()).await?;
                let one: Option<i64> = c.query_first("SELECT 1").await?;
                c.disconnect().await?;
                Ok::<_, mysql_async::Error>(one)
            };
            match tokio::time::timeout(Duration::from_secs(10), one).await {
                Ok(Ok(Some(1))) => lat_us.push(t.elapsed().as_micros() as u64),
                Ok(Ok(other)) => failures.add("wrong result".into(), || format!("{other:?}")),
                Ok(Err(e)) => failures.add(client::failure_kind(&e), || e.to_string()),
                Err(_) => failures.add("timeout".into(), || "no answer within 10 s".into()),
            }
            if lat_us.is_empty() && failures.total() > 0 {
                // Do not spin on a target that refuses everything.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!("ok {} {elapsed:.6}", lat_us.len());
        let lats: Vec<String> = lat_us.iter().map(u64::to_string).collect();
        println!("lat {}", lats.join(" "));
        for (kind, (n, msg)) in &failures.by_kind {
            println!("err {kind}|{n}|{}", msg.replace('\n', " "));
        }
        println!("cpu {}", procfs::cpu_ticks(std::process::id())?);
        Ok(())
    })
}

/// A place to connect to.
#[derive(Debug)]
struct Target {
    name: String,
    port: u16,
    /// The process behind the port (router, relay), for its CPU time.
    pid: Option<u32>,
}

fn targets() -> Result<Vec<Target>> {
    let spec = std::env::var("BENCH_TARGETS").context("BENCH_TARGETS is not set")?;
    spec.split_whitespace()
        .map(|t| {
            let (name, rest) = t
                .split_once('=')
                .with_context(|| format!("{t}: not name=port[/pid]"))?;
            let (port, pid) = match rest.split_once('/') {
                Some((port, pid)) => (port, Some(pid.parse()?)),
                None => (rest, None),
            };
            Ok(Target {
                name: name.to_string(),
                port: port.parse().with_context(|| format!("{t}: bad port"))?,
                pid,
            })
        })
        .collect()
}

/// What the runs of one target added up to.
#[derive(Debug, Default)]
struct Totals {
    runs: usize,
    /// Sum over runs of connections per second.
    rate_sum: f64,
    connections: u64,
    lat_us: Vec<u64>,
    failures: Failures,
    /// CPU ticks of the target's process, of the mysqld and of the client
    /// processes over the runs.
    ticks: u64,
    server_ticks: u64,
    client_ticks: u64,
    /// The machine's idle and total CPU ticks over the runs.
    machine_idle: u64,
    machine_total: u64,
    /// Wall seconds of the runs.
    secs: f64,
}

/// `processes` client processes against `port` for `secs`; their merged
/// results and the run's connection rate.
fn run(port: u16, secs: f64, processes: usize, into: &mut Totals) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let children = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args(["--child", &port.to_string(), &secs.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a client process")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rate = 0.0;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!("a client process failed: {}", out.status);
        }
        for line in String::from_utf8(out.stdout)?.lines() {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "ok" => {
                    let mut f = rest.split_whitespace();
                    let n: u64 = f.next().context("ok: no count")?.parse()?;
                    let elapsed: f64 = f.next().context("ok: no time")?.parse()?;
                    into.connections += n;
                    rate += n as f64 / elapsed;
                }
                "lat" => into.lat_us.extend(
                    rest.split_whitespace()
                        .filter_map(|v| v.parse::<u64>().ok()),
                ),
                "cpu" => into.client_ticks += rest.trim().parse::<u64>()?,
                "err" => {
                    let mut f = rest.splitn(3, '|');
                    let kind = f.next().unwrap_or("?");
                    let n: u64 = f.next().unwrap_or("0").parse()?;
                    into.failures.add_n(kind, n, f.next().unwrap_or(""));
                }
                _ => bail!("a client process printed {line:?}"),
            }
        }
    }
    into.runs += 1;
    into.rate_sum += rate;
    into.secs += secs;
    Ok(rate)
}

fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn ticks(pid: Option<u32>) -> u64 {
    pid.and_then(|p| procfs::cpu_ticks(p).ok()).unwrap_or(0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let port = args.get(1).context("--child PORT SECONDS")?.parse()?;
        let secs = args.get(2).context("--child PORT SECONDS")?.parse()?;
        return child(port, secs);
    }
    let secs: f64 = match args.first() {
        Some(s) => s
            .parse()
            .with_context(|| format!("{s}: not a number of seconds"))?,
        None => 10.0,
    };
    let processes = causeway_bench::env_num("BENCH_PROCESSES", 6)?;
    let rounds = causeway_bench::env_num("BENCH_ROUNDS", 2)?;
    let server_pid: Option<u32> = std::env::var("BENCH_SERVER_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let hz = procfs::clock_ticks_per_second();
    let targets = targets()?;
    if targets.is_empty() {
        bail!("BENCH_TARGETS names no target");
    }

    // A short warm-up each: first logins (full authentication), pools.
    for t in &targets {
        run(t.port, 1.0, processes, &mut Totals::default())?;
    }
    let mut totals: Vec<Totals> = targets.iter().map(|_| Totals::default()).collect();
    for round in 0..rounds {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            let t = &targets[i];
            let (t0, s0) = (ticks(t.pid), ticks(server_pid));
            let m0 = procfs::machine_ticks()?;
            let failed_before = totals[i].failures.total();
            let rate = run(t.port, secs, processes, &mut totals[i])?;
            let m1 = procfs::machine_ticks()?;
            let (t1, s1) = (ticks(t.pid), ticks(server_pid));
            totals[i].ticks += t1 - t0;
            totals[i].server_ticks += s1 - s0;
            totals[i].machine_idle += m1.0.saturating_sub(m0.0);
            totals[i].machine_total += m1.1.saturating_sub(m0.1);
            eprintln!(
                "  round {} {:<10} {:>8.0} conn/s, {} failed",
                round + 1,
                t.name,
                rate,
                totals[i].failures.total() - failed_before
            );
        }
    }

    println!(
        "\nconnect + SELECT 1 + close, {processes} client processes, {secs} s per run, \
         {rounds} runs per target (means); a full MySQL login each time \
         (caching_sha2_password fast path), TLS off on every path"
    );
    println!(
        "{:<10} | {:>9} {:>8} | {:>7} {:>7} | {:>12} {:>5} | {:>12} | {:>13} | {:>6} | failures",
        "target",
        "conn/s",
        "x direct",
        "p50 ms",
        "p99 ms",
        "cpu ms/1k",
        "cpu%",
        "mysqld ms/1k",
        "clients ms/1k",
        "idle %"
    );
    let base = totals[0].rate_sum / totals[0].runs.max(1) as f64;
    for (t, tot) in targets.iter().zip(totals.iter_mut()) {
        tot.lat_us.sort_unstable();
        let rate = tot.rate_sum / tot.runs.max(1) as f64;
        let per_1k = |ticks: u64| {
            if tot.connections == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1}",
                    ticks as f64 / hz * 1000.0 / tot.connections as f64 * 1000.0
                )
            }
        };
        let (cpu, cpu_pct) = match t.pid {
            Some(_) => (
                per_1k(tot.ticks),
                format!("{:.0}%", 100.0 * tot.ticks as f64 / hz / tot.secs.max(1e-9)),
            ),
            None => ("-".into(), "-".into()),
        };
        let server = if server_pid.is_some() {
            per_1k(tot.server_ticks)
        } else {
            "-".into()
        };
        let idle = 100.0 * tot.machine_idle as f64 / tot.machine_total.max(1) as f64;
        println!(
            "{:<10} | {:>9.0} {:>8.2} | {:>7.2} {:>7.2} | {:>12} {:>5} | {:>12} | {:>13} | {:>6.1} | {}",
            t.name,
            rate,
            if base > 0.0 { rate / base } else { 0.0 },
            quantile_ms(&tot.lat_us, 0.5),
            quantile_ms(&tot.lat_us, 0.99),
            cpu,
            cpu_pct,
            server,
            per_1k(tot.client_ticks),
            idle,
            tot.failures.summary()
        );
    }
    println!(
        "(cpu ms/1k: CPU time (utime+stime) of the target's own process per 1000 connections; \
         mysqld ms/1k: the primary's, which also serves the sandbox's other clients; \
         clients ms/1k: the client processes'; idle %: the whole machine's idle CPU \
         during the runs. Where idle is near 0, the rate is what the machine's CPUs allow, \
         shared by clients, router and mysqld: less CPU per connection anywhere is a higher rate)"
    );
    for (t, tot) in targets.iter().zip(&totals) {
        for (kind, (n, msg)) in &tot.failures.by_kind {
            println!("{}: {n} x {kind}, e.g. {msg}", t.name);
        }
    }
    Ok(())
}
