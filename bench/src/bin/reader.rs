//! The reader under a write load on the sandbox primary: visibility delay
//! (binlog arrival to announcement) p50/p99, bytes per transaction per
//! subscriber for both protocols, reader CPU and wake-ups, at ~1k trx/s,
//! ~10k trx/s and the highest rate this machine reaches.
//!
//! Runs its own release-built reader (path in `CAUSEWAY_BENCH_READER`, see
//! `bench/reader.sh`) beside the sandbox primary, so the numbers are not
//! those of the sandbox's debug readers.
//!
//! Not a test: prints numbers, asserts nothing about speed.

#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use causeway_e2e::reader::{untagged, NativeSubscriber, ProxySqlSubscriber};
use causeway_e2e::Topology;
use causeway_gtid::GtidSet;
use mysql_async::prelude::*;

const PHASE: Duration = Duration::from_secs(10);

struct Reader {
    child: Child,
    native: String,
    proxysql: String,
    metrics: String,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_reader(topo: &Topology, bin: &str, base: u16, flush: &str) -> Result<Reader> {
    let repl = topo.user("REPL")?;
    let native = format!("127.0.0.1:{}", base);
    let proxysql = format!("127.0.0.1:{}", base + 1);
    let metrics = format!("127.0.0.1:{}", base + 2);
    let child = Command::new(bin)
        .args(["--mysql-port", &topo.primary_port.to_string()])
        .args([
            "--mysql-user",
            &repl.user,
            "--mysql-password-env",
            "BENCH_PW",
        ])
        .args(["--listen", &native, "--proxysql-listen", &proxysql])
        .args(["--metrics-listen", &metrics, "--server-id", "4242"])
        .args(["--flush-interval", flush])
        .env("BENCH_PW", &repl.password)
        // No token (the subscribers send none), even from a shell that
        // sourced the sandbox's topology.env.
        .env_remove("CAUSEWAY_READER_TOKEN_FILE")
        .env_remove("CAUSEWAY_READER_TOKEN_ENV")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    Ok(Reader {
        child,
        native,
        proxysql,
        metrics: format!("http://{metrics}/metrics"),
    })
}

/// The baseline: `mysqlbinlog --raw --stop-never`, the server's own binlog
/// client, receiving the same stream over the same kind of connection (plain
/// TCP) and writing it to files undecoded. What it costs is what merely
/// receiving this binlog costs on this machine.
struct Baseline {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_baseline(topo: &Topology, bin: &str) -> Result<Baseline> {
    let mut c = topo.conn(topo.primary_port, "ADMIN").await?;
    let row: mysql_async::Row = c
        .query_first("SHOW BINARY LOG STATUS")
        .await?
        .context("SHOW BINARY LOG STATUS: no row")?;
    let file: String = row.get(0).context("File")?;
    let pos: u64 = row.get(1).context("Position")?;
    let repl = topo.user("REPL")?;
    let dir = std::env::temp_dir().join(format!("causeway-bench-binlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new(bin)
        .args(["--read-from-remote-server", "--raw", "--stop-never"])
        .args([
            "--host",
            &topo.host,
            "--port",
            &topo.primary_port.to_string(),
        ])
        .args([
            "--user",
            &repl.user,
            &format!("--password={}", repl.password),
        ])
        .args(["--ssl-mode=DISABLED", "--get-server-public-key"])
        .args([
            "--connection-server-id=4243",
            &format!("--start-position={pos}"),
        ])
        .arg(format!("--result-file={}/", dir.display()))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    Ok(Baseline { child, dir })
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Context switches of a process (all its threads): each is a wake-up
/// after blocking (voluntary) or a preemption. On a one-thread reader the
/// voluntary ones count how often it went to sleep in epoll and was woken.
fn switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

/// A histogram's cumulative buckets: (le, count).
fn histogram(body: &str, name: &str) -> Result<Vec<(f64, f64)>> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            let (le, count) = rest.split_once("\"} ").context("bucket line")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            out.push((le, count.parse()?));
        }
    }
    Ok(out)
}

/// A counter's value.
fn counter(body: &str, name: &str) -> f64 {
    let prefix = format!("{name}_total ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

const DELAY: &str = "causeway_reader_visibility_delay_seconds";
const CONFIRM: &str = "causeway_reader_confirm_seconds";
const QUERIES: &str = "causeway_reader_confirm_queries";
const INVISIBLE: &str = "causeway_reader_confirm_still_invisible";

/// Quantile from cumulative buckets (difference of two scrapes), taking the
/// bucket's upper bound.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .zip(before)
        .map(|((le, a), (_, b))| (*le, a - b))
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    counts
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

async fn executed(topo: &Topology) -> Result<GtidSet> {
    let mut c = topo.conn(topo.primary_port, "MONITOR").await?;
    let t: String = c
        .query_first("SELECT @@global.gtid_executed")
        .await?
        .context("no row")?;
    Ok(GtidSet::parse(&t)?)
}

/// Writes for `PHASE` with `writers` connections, each pacing itself to
/// `per_writer_rate` trx/s (0 = as fast as it can). Returns transactions.
async fn load(topo: &Topology, writers: usize, per_writer_rate: u64) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + PHASE;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let topo = topo.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = topo.conn(topo.primary_port, "APP").await?;
            let start = Instant::now();
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                c.exec_drop("INSERT INTO bench_reader (w, n) VALUES (?, ?)", (w, n))
                    .await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
                if per_writer_rate > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / per_writer_rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

async fn phase(
    topo: &Topology,
    reader: &Reader,
    pid: u32,
    name: &str,
    writers: usize,
    rate: u64,
) -> Result<()> {
    let mut baseline = start_baseline(topo, topo.var("CAUSEWAY_MYSQLBINLOG")?).await?;
    let bpid = baseline.child.id();
    let mut native = NativeSubscriber::connect(&reader.native, b"").await?;
    let mut px = ProxySqlSubscriber::connect(&reader.proxysql).await?;
    // Catch up with the snapshot first, so only the phase's bytes count.
    let start_set = executed(topo).await?;
    native
        .until_contains(&start_set, Duration::from_secs(10))
        .await?;
    px.until_contains(&untagged(&start_set), Duration::from_secs(10))
        .await?;
    let native_bytes0 = native.bytes_read();
    let px_bytes0 = px.bytes;
    let m0 = causeway_e2e::http_get(&reader.metrics)?;
    // mysqlbinlog has had the snapshot wait to connect; it must be running.
    if let Some(status) = baseline.child.try_wait()? {
        bail!("the baseline mysqlbinlog exited ({status}) before the load started");
    }
    let (bcpu0, bsw0) = (cpu_seconds(bpid)?, switches(bpid)?);
    let cpu0 = cpu_seconds(pid)?;
    let sw0 = switches(pid)?;
    let t0 = Instant::now();

    // Both subscribers read all along, as a router would, until they hold
    // everything the primary executed by the end of the load.
    let (end_tx, end_rx) = tokio::sync::watch::channel::<Option<GtidSet>>(None);
    let rx1 = end_rx.clone();
    let native_task = tokio::spawn(async move {
        loop {
            if let Some(end) = rx1.borrow().clone() {
                if end.is_subset(&native.view) {
                    return anyhow::Ok(native);
                }
            }
            native.next(Duration::from_secs(60)).await?;
        }
    });
    let mut rx2 = end_rx;
    let px_task = tokio::spawn(async move {
        loop {
            if let Some(end) = rx2.borrow().clone() {
                if untagged(&end).is_subset(&px.view) {
                    return anyhow::Ok(px);
                }
            }
            // ProxySQL's protocol has no heartbeat: also wake when the end
            // of the load is announced.
            tokio::select! {
                r = px.read_some(Duration::from_secs(60)) => { r?; }
                _ = rx2.changed() => {}
            }
        }
    });
    let trx = load(topo, writers, rate).await?;
    end_tx.send(Some(executed(topo).await?))?;
    let native = native_task.await??;
    let px = px_task.await??;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let sw = switches(pid)? - sw0;
    let bcpu = cpu_seconds(bpid)? - bcpu0;
    let bsw = switches(bpid)? - bsw0;
    drop(baseline);
    let m1 = causeway_e2e::http_get(&reader.metrics)?;
    let (hist0, hist1) = (histogram(&m0, DELAY)?, histogram(&m1, DELAY)?);
    let (c0, c1) = (histogram(&m0, CONFIRM)?, histogram(&m1, CONFIRM)?);
    let queries = counter(&m1, QUERIES) - counter(&m0, QUERIES);
    let invisible = counter(&m1, INVISIBLE) - counter(&m0, INVISIBLE);
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0} µs", v * 1e6));
    let rate_done = trx as f64 / secs;
    let nb = (native.bytes_read() - native_bytes0) as f64 / trx as f64;
    let pb = (px.bytes - px_bytes0) as f64 / trx as f64;
    let p50 = quantile(&hist0, &hist1, 0.50).map_or("-".into(), |v| format!("{:.0} µs", v * 1e6));
    let p99 = quantile(&hist0, &hist1, 0.99).map_or("-".into(), |v| format!("{:.0} µs", v * 1e6));
    println!(
        "{name:<10} {trx:>7} trx {rate_done:>8.0} trx/s | delay p50 ≤ {p50:>8}  p99 ≤ {p99:>8} | \
         bytes/trx/subscriber native {nb:>5.2}  proxysql {pb:>5.2} (×{:.1}) | reader CPU {:.1} % of a core = {:.2} % per 1k trx/s",
        pb / nb,
        100.0 * cpu / secs,
        100.0 * cpu / secs / (rate_done / 1000.0),
    );
    println!(
        "{:<10} confirm queries {queries:.0} ({:.2} per trx), answers with GTIDs not yet visible {invisible:.0}, round trip p50 ≤ {} p99 ≤ {}; \
         wake-ups {:.0}/s ({:.2} per trx)",
        "",
        queries / trx as f64,
        us(quantile(&c0, &c1, 0.5)),
        us(quantile(&c0, &c1, 0.99)),
        sw as f64 / secs,
        sw as f64 / trx as f64,
    );
    println!(
        "{:<10} baseline mysqlbinlog --raw on the same stream: CPU {:.1} % of a core, wake-ups {:.0}/s; reader ×{:.2} its CPU, ×{:.2} its wake-ups",
        "",
        100.0 * bcpu / secs,
        bsw as f64 / secs,
        cpu / bcpu,
        sw as f64 / bsw as f64,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = std::env::var("CAUSEWAY_BENCH_READER").context(
        "CAUSEWAY_BENCH_READER: path of a release causeway-reader (bench/reader.sh sets it)",
    )?;
    let topo = Topology::get()?;
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    c.query_drop("CREATE TABLE IF NOT EXISTS bench_reader (id BIGINT AUTO_INCREMENT PRIMARY KEY, w INT, n BIGINT)")
        .await?;
    let base: u16 = topo.var("CAUSEWAY_BASE_PORT")?.parse::<u16>()? + 15;
    // Both pacing settings in one run: the default (1 ms between
    // confirmation queries) and 0 (a query as soon as the last answered).
    for flush in ["1ms", "0s"] {
        let reader = start_reader(&topo, &bin, base, flush)?;
        let pid = reader.child.id();
        let mut ready = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(&reader.native).is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            bail!("the bench reader did not listen on {}", reader.native);
        }
        println!(
            "reader bench, flush_interval {flush}: {} s per phase, primary :{}, reader pid {pid}",
            PHASE.as_secs(),
            topo.primary_port
        );
        phase(&topo, &reader, pid, "~1k/s", 4, 250).await?;
        phase(&topo, &reader, pid, "~10k/s", 8, 1250).await?;
        phase(&topo, &reader, pid, "max", 8, 0).await?;
        drop(reader);
        // Let the ports close before the next reader binds them.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}
