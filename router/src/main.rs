//! `causeway-router`: speaks MySQL to applications and passes each session
//! through to the configured backend.
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

/// MySQL router: a pass-through to one backend, with TLS and authentication.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see router/examples/router.toml).
    #[arg(long, env = "CAUSEWAY_ROUTER_CONFIG")]
    config: PathBuf,
    /// Address clients connect to (overrides frontend.listen).
    #[arg(long, env = "CAUSEWAY_ROUTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint ("off" disables it).
    #[arg(long, env = "CAUSEWAY_ROUTER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Worker threads (default: one per CPU).
    #[arg(long, env = "CAUSEWAY_ROUTER_THREADS")]
    threads: Option<usize>,
    /// Log as JSON lines.
    #[arg(long, env = "CAUSEWAY_ROUTER_LOG_JSON")]
    log_json: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::from_file(&cli.config)?;
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
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(Output::Stderr, cli.log_json)?;
    let cfg = load(&cli)?;
    if cli.check {
        // Resolves every password and loads every certificate and key.
        causeway_router::Shared::new(cfg)?;
        eprintln!("configuration ok");
        return Ok(());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics_addr = cfg.metrics.enabled.then_some(cfg.metrics.listen);
    let router = Router::bind(cfg).await?;
    info!(addr = %router.local_addr()?, "listening");
    if let Some(addr) = metrics_addr {
        let l = metrics_http::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        info!(addr = %l.local_addr()?, "metrics listening");
        tokio::spawn(metrics_http::serve(l, router.shared().metrics.clone()));
    }
    tokio::select! {
        _ = router.run() => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted; exiting"),
        _ = terminate() => info!("terminated; exiting"),
    }
    Ok(())
}
