//! `causeway-router`: speaks MySQL to applications and routes their
//! statements over hostgroups of MySQL servers.
//!
//! Settings come from a TOML file (`--config`) or, for a fleet, from an
//! etcd key (`--config-etcd`, `--config-key`); a few flags override them,
//! each of which may also be given as an environment variable (see
//! `--help`). `causeway-router fleet ...` publishes a fleet's configuration
//! and shows the fleet.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use causeway_common::logging::{self, Output};
use causeway_common::metrics_http;
use causeway_common::signal::terminate;
use causeway_router::config::{Config, EtcdConfig, Listen, Overrides};
use causeway_router::fleet;
use causeway_router::Router;
use clap::{Args, Parser, Subcommand};
use tracing::info;

/// mimalloc instead of glibc's malloc: a session's login and statements
/// allocate a few dozen small and some large (>= 1 KiB) blocks, and glibc
/// spent ~5 % of the router's CPU per connection on them (consolidating its
/// fast bins on every large request). Measured (bench/connect-rate,
/// bench/sysbench-passthrough, bench/idle-connections): 3-4 % less CPU per
/// connection, point selects 2-6 % faster at 8 and 32 threads, +1 KiB per
/// idle session.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// MySQL router: read/write split over hostgroups, query rules, pools, health checks.
#[derive(Debug, Parser)]
#[command(version = causeway_router::VERSION, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish the fleet's configuration to etcd and look at the fleet.
    Fleet(Box<FleetArgs>),
    /// Convert a ProxySQL configuration (proxysql.cnf, or a live admin
    /// interface: mysql://user:password@host:6032) to a Causeway one.
    ImportProxysql(causeway_router::import::Args),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// TOML configuration file (see router/examples/router.toml), or a file
    /// holding only an [etcd] table (the configuration then lives in etcd).
    #[arg(long, env = "CAUSEWAY_ROUTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Address clients connect to (overrides frontend.listen).
    #[arg(long, env = "CAUSEWAY_ROUTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint ("off" disables it).
    #[arg(long, env = "CAUSEWAY_ROUTER_METRICS_LISTEN")]
    metrics_listen: Option<Listen>,
    /// Address of the admin interface (overrides admin.listen; "off"
    /// disables it).
    #[arg(long, env = "CAUSEWAY_ROUTER_ADMIN_LISTEN")]
    admin_listen: Option<Listen>,
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
}

/// Where etcd is and which key holds the configuration; each overrides
/// the [etcd] table of the `--config` file, when it has one.
#[derive(Debug, Args)]
struct EtcdArgs {
    /// etcd endpoints, comma separated (host:port or http(s)://host:port):
    /// read the configuration from etcd and follow its changes.
    #[arg(
        long = "config-etcd",
        env = "CAUSEWAY_ROUTER_CONFIG_ETCD",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// The etcd key holding the configuration document.
    #[arg(long = "config-key", env = "CAUSEWAY_ROUTER_CONFIG_KEY")]
    key: Option<String>,
    /// etcd user (etcd authentication).
    #[arg(long = "etcd-user", env = "CAUSEWAY_ETCD_USER")]
    user: Option<String>,
    /// Environment variable holding the etcd user's password.
    #[arg(long = "etcd-password-env")]
    password_env: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long = "etcd-password-file", env = "CAUSEWAY_ETCD_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// CA certificate (PEM) for etcd's TLS.
    #[arg(long = "etcd-ca", env = "CAUSEWAY_ETCD_CA")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's TLS authentication.
    #[arg(long = "etcd-cert", env = "CAUSEWAY_ETCD_CERT")]
    cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long = "etcd-key", env = "CAUSEWAY_ETCD_KEY")]
    key_file: Option<PathBuf>,
    /// This router's id in the fleet (default: host name:listen port).
    #[arg(long = "router-id", env = "CAUSEWAY_ROUTER_ID")]
    router_id: Option<String>,
    /// Keep the last configuration put in force in this file, and start
    /// from it when etcd cannot be read (or its latest revision is refused).
    #[arg(long = "etcd-cache", env = "CAUSEWAY_ETCD_CACHE")]
    cache_file: Option<PathBuf>,
    /// A router that dies leaves the fleet view after this long (e.g. 10s).
    #[arg(long = "etcd-lease-ttl", env = "CAUSEWAY_ETCD_LEASE_TTL", value_parser = humantime::parse_duration)]
    lease_ttl: Option<Duration>,
}

#[derive(Debug, Args)]
struct FleetArgs {
    /// A file holding an [etcd] table (the flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(subcommand)]
    action: FleetAction,
}

#[derive(Debug, Subcommand)]
enum FleetAction {
    /// Check FILE as --check does, then write it to the key, only if the
    /// key is still at the revision the file was edited from.
    Put {
        /// The configuration file.
        file: PathBuf,
        /// The revision the file was edited from (default: from its first
        /// line, as `fleet get` writes it).
        #[arg(long)]
        expect_revision: Option<i64>,
        /// Do not read the secrets and files the configuration names (they
        /// exist only on the routers' hosts).
        #[arg(long)]
        no_resolve: bool,
    },
    /// Print the configuration in etcd, its revision on the first line.
    Get {
        /// Write it to this file instead.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show what FILE would change (exit status 1 when it differs).
    Diff {
        /// The configuration file.
        file: PathBuf,
    },
    /// List the live routers; exit status 1 when there is none, or one is not on the latest
    /// revision or refused its last one.
    Status,
}

impl EtcdArgs {
    /// The etcd settings: the bootstrap file's, overridden by flags; `None`
    /// when neither names etcd.
    fn resolve(&self, file: Option<&Path>) -> anyhow::Result<Option<EtcdConfig>> {
        let from_file = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                EtcdConfig::from_bootstrap(&text, p)?
            }
            None => None,
        };
        let given = !self.endpoints.is_empty() || self.key.is_some();
        if from_file.is_none() && !given {
            return Ok(None);
        }
        if let (Some(p), None, true) = (file, &from_file, given) {
            anyhow::bail!(
                "--config {} is a configuration file, and --config-etcd/--config-key name etcd: \
                 give one source",
                p.display()
            );
        }
        let mut c = from_file.unwrap_or_default();
        if !self.endpoints.is_empty() {
            c.endpoints = self.endpoints.clone();
        }
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = Some(v.clone()); } )* };
        }
        over!(
            user,
            password_env,
            password_file,
            ca_file,
            cert_file,
            key_file,
            router_id,
            cache_file
        );
        if let Some(k) = &self.key {
            c.key = k.clone();
        }
        if let Some(t) = self.lease_ttl {
            c.lease_ttl = t;
        }
        c.validate()?;
        Ok(Some(c))
    }
}

/// Where the running configuration comes from.
enum Source {
    File(PathBuf),
    Etcd(Box<(EtcdConfig, fleet::Initial)>),
}

fn overrides(cli: &RunArgs) -> Overrides {
    Overrides {
        listen: cli.listen,
        metrics_listen: cli.metrics_listen,
        admin_listen: cli.admin_listen,
    }
}

async fn load(cli: &RunArgs) -> anyhow::Result<(Config, Source)> {
    let etcd = cli.etcd.resolve(cli.config.as_deref())?;
    let parse = |key: &str, first: &fleet::Initial| -> anyhow::Result<Config> {
        let origin = PathBuf::from(format!("etcd:{key}@{}", first.revision));
        let mut cfg = Config::from_toml(&first.text, &origin)?;
        overrides(cli).apply(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    };
    let (mut cfg, source) = match etcd {
        Some(e) => {
            let first = fleet::start_document(&e, |f| parse(&e.key, f).map(drop)).await?;
            let cfg = parse(&e.key, &first)?;
            (cfg, Source::Etcd(Box::new((e, first))))
        }
        None => {
            let path = cli
                .config
                .clone()
                .context("give --config FILE, or --config-etcd and --config-key")?;
            (Config::from_file(&path)?, Source::File(path))
        }
    };
    overrides(cli).apply(&mut cfg);
    cfg.validate()?;
    Ok((cfg, source))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ImportProxysql(args)) = &cli.command {
        return Ok(causeway_router::import::run(args)?);
    }
    let log_json = cli.run.log_json;
    logging::init(Output::Stderr, log_json)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.run.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    if let Some(Command::Fleet(f)) = &cli.command {
        let code = rt.block_on(fleet_command(f))?;
        std::process::exit(code);
    }
    let cli = cli.run;
    let (cfg, source) = rt.block_on(load(&cli))?;
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
    let res = rt.block_on(run(cfg, source, &cli));
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

/// Runs `fleet ...`; returns the exit status.
async fn fleet_command(f: &FleetArgs) -> anyhow::Result<i32> {
    let cfg = f
        .etcd
        .resolve(f.config.as_deref())?
        .context("name etcd: --config-etcd and --config-key, or --config with an [etcd] table")?;
    let mut out = std::io::stdout().lock();
    match &f.action {
        FleetAction::Put {
            file,
            expect_revision,
            no_resolve,
        } => match fleet::cli::put(&cfg, file, *expect_revision, !no_resolve).await? {
            fleet::cli::Put::Written(rev) => {
                eprintln!("{}: written, revision {rev}", cfg.key)
            }
            fleet::cli::Put::Unchanged(rev) => {
                eprintln!("{}: unchanged, revision {rev}", cfg.key)
            }
        },
        FleetAction::Get { output } => {
            let text = fleet::cli::get(&cfg).await?;
            match output {
                Some(p) => {
                    std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
        FleetAction::Diff { file } => {
            let d = fleet::cli::diff(&cfg, file).await?;
            out.write_all(d.as_bytes())?;
            return Ok(i32::from(!d.is_empty()));
        }
        FleetAction::Status => {
            let (table, all_well) = fleet::cli::status(&cfg).await?;
            out.write_all(table.as_bytes())?;
            return Ok(i32::from(!all_well));
        }
    }
    Ok(0)
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

async fn run(cfg: Config, source: Source, cli: &RunArgs) -> anyhow::Result<()> {
    let metrics_addr = cfg.metrics.enabled.then_some(cfg.metrics.listen);
    let path = match &source {
        Source::File(p) => Some(p.clone()),
        Source::Etcd(_) => None,
    };
    let router = Router::bind_with(cfg, path, overrides(cli)).await?;
    let listen = router.local_addr()?;
    info!(addr = %listen, "listening");
    if let Some(addr) = router.admin_addr() {
        info!(addr = %addr, "admin interface listening");
    }
    let shared = router.shared();
    let mut metrics_local = None;
    if let Some(addr) = metrics_addr {
        let l = metrics_http::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        let local = l.local_addr()?;
        metrics_local = Some(local);
        info!(addr = %local, dashboard = %format!("http://{local}/dashboard"), "metrics listening");
        tokio::spawn(causeway_router::dashboard::serve(l, shared.clone()));
    }
    let etcd = match source {
        Source::Etcd(b) => {
            let (e, mut first) = *b;
            let id = fleet::router_id(&e, listen);
            match &mut first.client {
                Some(c) => {
                    fleet::claim_id(c, &e, &id).await?;
                    fleet::write_cache(&e, &first.text, first.revision);
                }
                // Started from the cache: etcd is followed once it answers.
                None => shared.fleet.set_link(fleet::state::Link::Down(
                    std::time::SystemTime::now(),
                    "unreachable at start".into(),
                )),
            }
            shared.fleet.set_source(fleet::state::Source::Etcd {
                config: Box::new(e.clone()),
                router_id: id.clone(),
            });
            shared.fleet.applied(first.revision);
            shared.metrics.fleet_config_revision.set(first.revision);
            let base = fleet::registration(id, listen, router.admin_addr(), metrics_local);
            info!(key = %e.key, revision = first.revision, router_id = %base.id, "configuration from etcd");
            tokio::spawn(fleet::agent::run(
                shared.clone(),
                e.clone(),
                base,
                first.client,
            ));
            Some(e)
        }
        Source::File(_) => None,
    };
    if let Some(p) = &cli.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let reloads = async {
        while hup.recv().await.is_some() {
            match &etcd {
                Some(e) => {
                    info!(key = %e.key, "SIGHUP: reading the configuration from etcd again");
                    if let Err(err) = fleet::agent::refetch(&shared, e).await {
                        tracing::error!(error = %format!("{err:#}"), "SIGHUP: etcd unreachable; the configuration in force stays");
                    }
                }
                None => {
                    info!("SIGHUP: reloading the configuration");
                    // Errors are logged (with the file's line) by reload itself.
                    let _ = shared.reload().await;
                }
            }
        }
    };
    tokio::select! {
        _ = router.run() => {}
        _ = reloads => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted; exiting"),
        _ = terminate() => info!("terminated; exiting"),
    }
    if let Some(e) = &etcd {
        fleet::agent::leave(&shared, e).await;
    }
    Ok(())
}
