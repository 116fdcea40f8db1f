//! `causeway-router`: speaks MySQL to applications and routes their
//! statements over hostgroups of MySQL servers.
//!
//! Settings come from a TOML file (`--config`); a few flags override it,
//! each of which may also be given as an environment variable (see `--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use causeway_common::logging::{self, Output};
use causeway_common::metrics_http;
use causeway_common::signal::terminate;
use causeway_router::config::Config;
use causeway_router::Router;
use clap::Parser;
use tracing::info;

/// MySQL router: read/write split over hostgroups, query rules, pools, health checks.
#[derive(Debug, Parser)]
#[command(version, about, subcommand_negates_reqs = true)]
struct Cli {
    /// TOML configuration file (see router/examples/router.toml).
    #[arg(long, env = "CAUSEWAY_ROUTER_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Address clients connect to (overrides frontend.listen).
    #[arg(long, env = "CAUSEWAY_ROUTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint ("off" disables it).
    #[arg(long, env = "CAUSEWAY_ROUTER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Address of the admin interface (overrides admin.listen; "off"
    /// disables it).
    #[arg(long, env = "CAUSEWAY_ROUTER_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Worker threads (default: one per CPU).
    #[arg(long, env = "CAUSEWAY_ROUTER_THREADS")]
    threads: Option<usize>,
    /// Log as JSON lines.
    #[arg(long, env = "CAUSEWAY_ROUTER_LOG_JSON")]
    log_json: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Write the process id to this file (removed at exit).
    #[arg(long, env = "CAUSEWAY_ROUTER_PID_FILE")]
    pid_file: Option<PathBuf>,
    /// Check the configuration, then ask the router whose pid is in
    /// `--pid-file` to reload it (SIGHUP), and exit. A router also reloads
    /// on SIGHUP sent any other way.
    #[arg(long, requires = "pid_file")]
    reload: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Convert a ProxySQL configuration (proxysql.cnf, or a live admin
    /// interface: mysql://user:password@host:6032) to a Causeway one.
    ImportProxysql(causeway_router::import::Args),
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::from_file(cli.config.as_deref().context("--config is required")?)?;
    if let Some(v) = cli.listen {
        cfg.frontend.listen = v;
    }
    if let Some(v) = &cli.metrics_listen {
        if v.eq_ignore_ascii_case("off") {
            cfg.metrics.enabled = false;
        } else {
            cfg.metrics.enabled = true;
            cfg.metrics.listen = v
                .parse()
                .with_context(|| format!("--metrics-listen: {v:?} is not host:port or \"off\""))?;
        }
    }
    if let Some(v) = &cli.admin_listen {
        if v.eq_ignore_ascii_case("off") {
            cfg.admin.enabled = false;
        } else {
            cfg.admin.enabled = true;
            cfg.admin.listen = v
                .parse()
                .with_context(|| format!("--admin-listen: {v:?} is not host:port or \"off\""))?;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ImportProxysql(args)) = &cli.command {
        return Ok(causeway_router::import::run(args)?);
    }
    logging::init(Output::Stderr, cli.log_json)?;
    let cfg = load(&cli)?;
    let warnings = cfg.warnings();
    if cli.check || cli.reload {
        // Resolves every password and loads every certificate and key.
        causeway_router::runtime::Runtime::build(cfg)?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        eprintln!("configuration ok");
        if cli.reload {
            signal_reload(cli.pid_file.as_deref().context("--pid-file")?)?;
        }
        return Ok(());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let res = rt.enable_all().build()?.block_on(run(cfg, &cli));
    if let Some(p) = &cli.pid_file {
        // Only our own: a router started since (a restart that did not wait
        // for this one to drain) has written its pid there.
        let ours = std::process::id().to_string();
        if std::fs::read_to_string(p).is_ok_and(|t| t.trim() == ours) {
            let _ = std::fs::remove_file(p);
        }
    }
    res
}

/// Sends SIGHUP to the router whose pid is in `pid_file`.
fn signal_reload(pid_file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: not a process id", pid_file.display()))?;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -HUP {pid} failed");
    eprintln!("reload requested from process {pid}");
    Ok(())
}

async fn run(cfg: Config, cli: &Cli) -> anyhow::Result<()> {
    let metrics_addr = cfg.metrics.enabled.then_some(cfg.metrics.listen);
    let router = Router::bind(cfg, cli.config.clone()).await?;
    info!(addr = %router.local_addr()?, "listening");
    if let Some(addr) = router.admin_addr() {
        info!(addr = %addr, "admin interface listening");
    }
    if let Some(p) = &cli.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let shared = router.shared();
    if let Some(addr) = metrics_addr {
        let l = metrics_http::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        let local = l.local_addr()?;
        info!(addr = %local, dashboard = %format!("http://{local}/dashboard"), "metrics listening");
        tokio::spawn(causeway_router::dashboard::serve(l, shared.clone()));
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let reloads = async {
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the configuration");
            // Errors are logged (with the file's line) by reload itself.
            let _ = shared.reload().await;
        }
    };
    tokio::select! {
        _ = router.run() => {}
        _ = reloads => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted; exiting"),
        _ = terminate() => info!("terminated; exiting"),
    }
    Ok(())
}
