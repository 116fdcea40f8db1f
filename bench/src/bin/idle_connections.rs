//! Idle connections: opens K client sessions through a router (each a full
//! login without TLS and one `SELECT 1`, as a client pool validates a new
//! connection), holds them idle, and reports how many were accepted, how
//! the others were refused (counted by error code), the router's resident
//! memory before and after (VmRSS) and per held session, the backend
//! connections the router holds (the APP user's sessions on the primary,
//! counted by the ADMIN user, and the router's pool gauge), whether a new
//! session still gets a result, and the same once the K are closed.
//!
//! ```sh
//! idle-connections K      # bench/idle-connections runs it
//! ```
//!
//! Environment: `BENCH_ROUTER_PORT`, `BENCH_ROUTER_PID`, optional
//! `BENCH_METRICS_URL` (the router's), `BENCH_CONCURRENCY` (logins in
//! flight, 32), and the sandbox (`CAUSEWAY_SANDBOX_DIR`).
//!
//! Not a test: prints numbers, asserts nothing.

#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_bench::client::{self, Failures};
use causeway_bench::procfs;
use causeway_e2e::Topology;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

/// A login or its `SELECT 1` that takes longer than this counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

fn env_var(key: &str) -> Result<String> {
    std::env::var(key).with_context(|| format!("{key} is not set"))
}

/// Login and `SELECT 1`: the held session, or why not.
async fn open(opts: Opts) -> std::result::Result<Conn, (String, String)> {
    let attempt = async {
        let mut c = Conn::new(opts).await?;
        let _: Option<i64> = c.query_first("SELECT 1").await?;
        Ok::<_, mysql_async::Error>(c)
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err((client::failure_kind(&e), e.to_string())),
        Err(_) => Err((
            "timeout".into(),
            format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        )),
    }
}

/// What a new session sees: "ok (N ms)" or the failure.
async fn probe(opts: &Opts) -> String {
    let t = Instant::now();
    match open(opts.clone()).await {
        Ok(c) => {
            let _ = c.disconnect().await;
            format!(
                "gets its result ({:.1} ms)",
                t.elapsed().as_secs_f64() * 1e3
            )
        }
        Err((kind, msg)) => format!("fails: {kind} ({msg})"),
    }
}

/// Sessions of `user` on the server behind `admin`.
async fn backend_sessions(admin: &mut Conn, user: &str) -> Result<i64> {
    let n: Option<i64> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
        )
        .await?;
    Ok(n.unwrap_or(0))
}

/// The router's sessions gauge and its pool gauge summed by state, from
/// its metrics, as text.
fn router_gauges(url: Option<&str>) -> String {
    let Some(url) = url else {
        return "(no metrics)".into();
    };
    let Ok(text) = causeway_e2e::http_get(url) else {
        return "(metrics did not answer)".into();
    };
    let sum = |prefix: &str| -> i64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as i64)
            .sum()
    };
    format!(
        "client sessions {}, pool connections in use {}, idle {}",
        sum("causeway_router_client_sessions "),
        sum("causeway_router_pool_connections{server=\"primary\",state=\"in_use\"}"),
        sum("causeway_router_pool_connections{server=\"primary\",state=\"idle\"}"),
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let k: usize = match std::env::args().nth(1) {
        Some(v) => v.parse().with_context(|| format!("{v}: not a number"))?,
        None => 10_000,
    };
    let port: u16 = env_var("BENCH_ROUTER_PORT")?.parse()?;
    let pid: u32 = env_var("BENCH_ROUTER_PID")?.parse()?;
    let metrics = std::env::var("BENCH_METRICS_URL").ok();
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let topo = Topology::get()?;
    let app_user = topo.user("APP")?.user;
    let opts = client::app_opts(port)?;

    // Held from the start: while the primary is full only one more
    // privileged session gets in (MySQL's spare connection), and this is it.
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    let first = probe(&opts).await;
    let rss_before = procfs::rss_kib(pid)?;
    let backends_before = backend_sessions(&mut admin, &app_user).await?;
    let gauges_before = router_gauges(metrics.as_deref());
    eprintln!("before: a session through the router {first}; opening {k} sessions, {concurrency} at a time");

    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let next = next.clone();
            let finished = finished.clone();
            let opts = opts.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                let mut failures = Failures::default();
                while next.fetch_add(1, Ordering::Relaxed) < k {
                    match open(opts.clone()).await {
                        Ok(c) => held.push(c),
                        Err((kind, msg)) => failures.add(kind, || msg),
                    }
                    let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                    if done.is_multiple_of(1000) {
                        eprintln!("  {done} attempted");
                    }
                }
                (held, failures)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut failures = Failures::default();
    for w in workers {
        let (h, f) = w.await?;
        held.extend(h);
        failures.merge(f);
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_held = procfs::rss_kib(pid)?;
    let backends_held = backend_sessions(&mut admin, &app_user).await?;
    let gauges_held = router_gauges(metrics.as_deref());
    let while_held = probe(&opts).await;

    let n_held = held.len();
    futures_util::future::join_all(held.into_iter().map(Conn::disconnect)).await;
    // The router notices the closed sessions asynchronously.
    let released = Instant::now();
    let mut backends_after = backend_sessions(&mut admin, &app_user).await?;
    while backends_after > backends_before && released.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        backends_after = backend_sessions(&mut admin, &app_user).await?;
    }
    let rss_after = procfs::rss_kib(pid)?;
    let gauges_after = router_gauges(metrics.as_deref());
    let after = probe(&opts).await;
    admin.disconnect().await?;

    println!("\n{k} idle sessions through the router (login without TLS + SELECT 1 each, {concurrency} logins in flight)");
    println!(
        "attempted {k} in {open_secs:.1} s: held {n_held}, refused {} ({})",
        failures.total(),
        failures.summary()
    );
    for (kind, (n, msg)) in &failures.by_kind {
        println!("  {n} x {kind}, e.g. {msg}");
    }
    let per_session = if n_held > 0 {
        format!(
            "{:.1} KiB per held session",
            (rss_held as f64 - rss_before as f64) / n_held as f64
        )
    } else {
        "no session held".into()
    };
    println!(
        "router RSS: before {:.1} MiB, holding {n_held}: {:.1} MiB (+{:.1} MiB, {per_session}), after closing them: {:.1} MiB",
        mib(rss_before),
        mib(rss_held),
        mib(rss_held.saturating_sub(rss_before)),
        mib(rss_after),
    );
    println!(
        "backend sessions of {app_user} on the primary (PROCESSLIST): before {backends_before}, \
         holding {backends_held}, after closing {backends_after}"
    );
    println!("router gauges: before: {gauges_before}");
    println!("               holding: {gauges_held}");
    println!("               after:   {gauges_after}");
    println!("a new session while they are held {while_held}");
    println!("a new session after they are closed {after}");
    Ok(())
}
