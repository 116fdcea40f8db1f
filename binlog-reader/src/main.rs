//! `causeway-reader`: runs beside one mysqld, follows its binlog and
//! publishes the GTIDs that server has made visible to every subscriber.
//!
//! Settings come from an optional TOML file (`--config`), then flags, each
//! of which may also be given as an environment variable (shown in `--help`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::{bail, Context};
use causeway_common::logging::{self, Output};
use causeway_common::secret::resolve_secret;
use causeway_common::signal::terminate;
use causeway_common::{metrics_http, tls};
use causeway_reader::config::{Config, TlsMode};
use causeway_reader::follow::{run_source, run_tracker};
use causeway_reader::hub::Hub;
use causeway_reader::metrics::Metrics;
use causeway_reader::publish::{self, Protocol, PublishCtx};
use causeway_reader::source;
use causeway_reader::tracker::Tracker;
use clap::Parser;
use tokio::sync::mpsc;
use tracing::{error, info};

/// Follows one mysqld's binlog and streams the GTIDs it has made visible.
#[derive(Debug, Parser)]
#[command(version = causeway_reader::VERSION, about)]
struct Cli {
    /// TOML configuration file; flags override it.
    #[arg(long, env = "CAUSEWAY_READER_CONFIG")]
    config: Option<PathBuf>,
    /// Host of the mysqld.
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_HOST")]
    mysql_host: Option<String>,
    /// Port of the mysqld.
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_PORT")]
    mysql_port: Option<u16>,
    /// User with REPLICATION SLAVE (dist/grants.sql).
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_USER")]
    mysql_user: Option<String>,
    /// Environment variable that holds the password.
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_PASSWORD_ENV")]
    mysql_password_env: Option<String>,
    /// File that holds the password.
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_PASSWORD_FILE")]
    mysql_password_file: Option<PathBuf>,
    /// TLS to the mysqld: disabled, required, verify_identity.
    #[arg(long, env = "CAUSEWAY_READER_MYSQL_TLS")]
    mysql_tls: Option<String>,
    /// Server id to register with (unique among the server's replicas).
    #[arg(long, env = "CAUSEWAY_READER_SERVER_ID")]
    server_id: Option<u32>,
    /// Address of the native protocol listener.
    #[arg(long, env = "CAUSEWAY_READER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the ProxySQL-compatible listener ("off" disables it).
    #[arg(long, env = "CAUSEWAY_READER_PROXYSQL_LISTEN")]
    proxysql_listen: Option<String>,
    /// Minimum time between two confirmation queries, e.g. "1ms" or "0s"
    /// (deltas are coalesced over it).
    #[arg(long, env = "CAUSEWAY_READER_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    flush_interval: Option<std::time::Duration>,
    /// Send batched I3/I4 lines to ProxySQL subscribers.
    #[arg(long, env = "CAUSEWAY_READER_PROXYSQL_BATCHED")]
    proxysql_batched: bool,
    /// Environment variable that holds the subscribers' token.
    #[arg(long, env = "CAUSEWAY_READER_TOKEN_ENV")]
    token_env: Option<String>,
    /// File that holds the subscribers' token.
    #[arg(long, env = "CAUSEWAY_READER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the native port (with --tls-key-file).
    #[arg(long, env = "CAUSEWAY_READER_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key for --tls-cert-file.
    #[arg(long, env = "CAUSEWAY_READER_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Address of the Prometheus endpoint ("off" disables it).
    #[arg(long, env = "CAUSEWAY_READER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "CAUSEWAY_READER_LOG_JSON")]
    log_json: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn optional_addr(what: &str, v: &str) -> anyhow::Result<Option<SocketAddr>> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .with_context(|| format!("{what}: {v:?} is not host:port or \"off\""))
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let m = &mut cfg.mysql;
    if let Some(v) = &cli.mysql_host {
        m.host.clone_from(v);
    }
    if let Some(v) = cli.mysql_port {
        m.port = v;
    }
    if let Some(v) = &cli.mysql_user {
        m.user.clone_from(v);
    }
    if cli.mysql_password_env.is_some() || cli.mysql_password_file.is_some() {
        m.password = None;
        m.password_env.clone_from(&cli.mysql_password_env);
        m.password_file.clone_from(&cli.mysql_password_file);
    }
    if let Some(v) = &cli.mysql_tls {
        m.tls = match v.as_str() {
            "disabled" => TlsMode::Disabled,
            "required" => TlsMode::Required,
            "verify_identity" => TlsMode::VerifyIdentity,
            other => bail!("--mysql-tls: {other:?} is not disabled, required or verify_identity"),
        };
    }
    if cli.server_id.is_some() {
        m.server_id = cli.server_id;
    }
    let p = &mut cfg.publish;
    if let Some(v) = cli.listen {
        p.listen = v;
    }
    if let Some(v) = &cli.proxysql_listen {
        p.proxysql_listen = optional_addr("--proxysql-listen", v)?;
    }
    if let Some(v) = cli.flush_interval {
        p.flush_interval = v;
    }
    if cli.proxysql_batched {
        p.proxysql_batched = true;
    }
    if cli.token_env.is_some() || cli.token_file.is_some() {
        p.token = None;
        p.token_env.clone_from(&cli.token_env);
        p.token_file.clone_from(&cli.token_file);
    }
    if cli.tls_cert_file.is_some() {
        p.tls_cert_file.clone_from(&cli.tls_cert_file);
    }
    if cli.tls_key_file.is_some() {
        p.tls_key_file.clone_from(&cli.tls_key_file);
    }
    if let Some(v) = &cli.metrics_listen {
        cfg.metrics.listen = optional_addr("--metrics-listen", v)?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A server id for registering as a replica, from the instance id, in the
/// upper half of the range where operators rarely put real servers.
fn derived_server_id(instance: u64) -> u32 {
    0x8000_0000 | (instance as u32 & 0x7fff_ffff).max(1)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Standard output, as ever (bench/ discards it); the router logs to
    // standard error.
    logging::init(Output::Stdout, cli.log_json)?;
    let cfg = load(&cli)?;
    if cli.check {
        eprintln!("configuration ok");
        return Ok(());
    }
    // One thread: the reader's work per event is tiny, and cross-thread
    // wake-ups cost more than the work itself (measured in bench/reader.sh:
    // the multi-threaded runtime spent most of its CPU switching tasks).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let m = &cfg.mysql;
    let password = resolve_secret(
        "mysql password",
        &m.password,
        &m.password_env,
        &m.password_file,
    )?;
    let p = &cfg.publish;
    let token = resolve_secret("publish token", &p.token, &p.token_env, &p.token_file)?;
    let instance = rand_u64();
    let server_id = m.server_id.unwrap_or_else(|| derived_server_id(instance));
    let opts = source::client_opts(m, password.as_deref());
    let metrics = Arc::new(Metrics::new());

    // The first view: the server's gtid_executed. Retried until the server
    // answers, so a reader started before its mysqld simply waits.
    let mut delay = m.reconnect_min;
    let (server_uuid, executed) = loop {
        let attempt = async {
            let mut conn = source::connect(&opts, m.connect_timeout).await?;
            source::server_state(&mut conn).await
        };
        match attempt.await {
            Ok(state) => break state,
            Err(e) => {
                error!(error = %e, host = %m.host, port = m.port, "cannot read the server's state; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(m.reconnect_max);
            }
        }
    };
    info!(%server_uuid, executed = %executed, server_id, "starting");
    let hub = Hub::new(server_uuid, executed.clone(), p.subscriber_buffer);
    let tracker = Tracker::new(server_uuid, executed);

    let ctx = Arc::new(PublishCtx {
        hub: hub.clone(),
        metrics: metrics.clone(),
        token,
        reader_instance: instance,
        max_subscribers: p.max_subscribers,
        write_timeout: p.write_timeout,
        proxysql_batched: p.proxysql_batched,
        active: AtomicUsize::new(0),
        tls: match (&p.tls_cert_file, &p.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls::acceptor_from_pem(cert, key)?),
            _ => None,
        },
    });
    let native = publish::bind(p.listen)
        .await
        .with_context(|| format!("binding the native listener {}", p.listen))?;
    info!(addr = %native.local_addr()?, "native protocol listening");
    tokio::spawn(publish::serve(native, Protocol::Native, ctx.clone()));
    if let Some(addr) = p.proxysql_listen {
        let l = publish::bind(addr)
            .await
            .with_context(|| format!("binding the ProxySQL listener {addr}"))?;
        info!(addr = %l.local_addr()?, "ProxySQL protocol listening");
        tokio::spawn(publish::serve(l, Protocol::ProxySql, ctx.clone()));
    }
    if let Some(addr) = cfg.metrics.listen {
        let l = metrics_http::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        info!(addr = %l.local_addr()?, "metrics listening");
        tokio::spawn(metrics_http::serve(l, metrics.clone()));
    }

    let (tx, rx) = mpsc::channel(65536);
    tokio::spawn(run_source(
        cfg.clone(),
        opts.clone(),
        server_id,
        tx,
        metrics.clone(),
    ));
    let tracker_task = tokio::spawn(run_tracker(cfg, opts, tracker, hub, rx, metrics));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted; exiting"),
        _ = terminate() => info!("terminated; exiting"),
        res = tracker_task => bail!("the tracker stopped: {res:?}"),
    }
    Ok(())
}

/// A random u64 from the OS (for the instance id).
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    let v = u64::from_le_bytes(b);
    if v == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_server_ids_are_high_and_nonzero() {
        assert_eq!(derived_server_id(0), 0x8000_0001);
        assert!(derived_server_id(u64::MAX) >= 0x8000_0000);
    }

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::parse_from([
            "causeway-reader",
            "--mysql-port",
            "3307",
            "--proxysql-listen",
            "off",
            "--metrics-listen",
            "127.0.0.1:9999",
        ]);
        let cfg = load(&cli).unwrap();
        assert_eq!(cfg.mysql.port, 3307);
        assert_eq!(cfg.publish.proxysql_listen, None);
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9999".parse().unwrap()));
    }

    #[test]
    fn bad_flag_values_are_named() {
        let cli = Cli::parse_from(["causeway-reader", "--proxysql-listen", "nowhere"]);
        let err = load(&cli).unwrap_err().to_string();
        assert!(err.contains("--proxysql-listen"), "{err}");
    }
}
