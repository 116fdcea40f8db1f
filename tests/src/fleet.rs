//! A fleet of routers on etcd in the sandbox (`scripts/sandbox up --etcd`):
//! its routers, admin interfaces and metrics, the `causeway-router fleet`
//! command against its etcd, and the helpers the fleet's tests share.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::router::opts;
use crate::{http_get, Topology};

/// The rule the tests add: a marked statement goes to the writer.
pub const MARKER_RULE: &str = "\n[[query_rules]]\nname = \"fleet marker\"\n\
                           match_pattern = \"fleet_marker\"\ndestination = \"primary\"\n";

/// The fleet of an `--etcd` sandbox.
#[derive(Debug)]
pub struct Fleet {
    /// See `topology.env`.
    pub topo: Topology,
    /// See `topology.env`.
    pub ports: Vec<u16>,
    /// See `topology.env`.
    pub admin_ports: Vec<u16>,
    /// See `topology.env`.
    pub metrics: Vec<String>,
    /// See `topology.env`.
    pub endpoints: String,
    /// See `topology.env`.
    pub key: String,
}

/// Whitespace-separated values.
pub fn words<T: std::str::FromStr>(s: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(s.split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<T>, _>>()?)
}

/// The router binary the sandbox runs (built beside this test).
pub fn router_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test binary folder")?;
    let bin = dir.join("causeway-router");
    ensure!(bin.exists(), "{} is missing", bin.display());
    Ok(bin)
}

impl Fleet {
    pub fn get(name: &str) -> Result<Fleet> {
        let topo = Topology::isolated_fleet(name)?;
        Ok(Fleet {
            ports: words(topo.var("CAUSEWAY_FLEET_ROUTER_PORTS")?)?,
            admin_ports: words(topo.var("CAUSEWAY_FLEET_ADMIN_PORTS")?)?,
            metrics: words(topo.var("CAUSEWAY_FLEET_METRICS_URLS")?)?,
            endpoints: topo.var("CAUSEWAY_ETCD_ENDPOINTS")?.to_string(),
            key: topo.var("CAUSEWAY_FLEET_CONFIG_KEY")?.to_string(),
            topo,
        })
    }

    /// `causeway-router fleet ARGS` against this fleet's etcd, with the
    /// secrets the configuration names in its environment.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let t = &self.topo;
        let mut cmd = std::process::Command::new(router_bin()?);
        cmd.args(["fleet", "--config-etcd", &self.endpoints])
            .args(["--config-key", &self.key])
            .args(args)
            .env_remove("CAUSEWAY_ROUTER_CONFIG")
            .env("RUST_BACKTRACE", "0");
        // The router's variable for each secret, and where topology.env has it.
        for (to, from) in [
            ("CAUSEWAY_ROUTER_APP_PASSWORD", "CAUSEWAY_APP_PASSWORD"),
            (
                "CAUSEWAY_ROUTER_DBADMIN_PASSWORD",
                "CAUSEWAY_ADMIN_PASSWORD",
            ),
            (
                "CAUSEWAY_ROUTER_MONITOR_PASSWORD",
                "CAUSEWAY_MONITOR_PASSWORD",
            ),
            (
                "CAUSEWAY_ROUTER_ADMIN_PASSWORD",
                "CAUSEWAY_ROUTER_ADMIN_PASSWORD",
            ),
        ] {
            cmd.env(to, t.var(from)?);
        }
        // Blocking: the load's sessions go on on the other worker.
        Ok(tokio::task::block_in_place(|| cmd.output())?)
    }

    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        ensure!(
            out.status.success(),
            "fleet {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The document in etcd, with `fleet get`'s revision line.
    pub fn get_doc(&self) -> Result<String> {
        self.cli_ok(&["get"])
    }

    /// Writes `doc` to a file and `fleet put`s it.
    pub fn put(&self, doc: &str, name: &str) -> Result<Output> {
        let path = self.topo.dir.join(format!("{name}.toml"));
        std::fs::write(&path, doc)?;
        self.cli(&["put", path.to_str().context("path")?])
    }

    /// The document with the marker rule, put; returns its revision.
    pub fn put_marker_rule(&self) -> Result<i64> {
        self.put_marker(true)
    }

    /// The document with or without the marker rule, put as a new
    /// revision (an edit note makes each one new); returns its revision.
    pub fn put_marker(&self, on: bool) -> Result<i64> {
        let doc = self.get_doc()?;
        let mut doc = doc.replace(MARKER_RULE, "");
        if on {
            doc.push_str(MARKER_RULE);
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        doc.push_str(&format!("# edit {}\n", stamp.as_nanos()));
        let out = self.put(&doc, "with-marker")?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        revision_of(&String::from_utf8_lossy(&out.stderr))
    }

    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = std::process::Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints])
            .args(args);
        let out = tokio::task::block_in_place(|| cmd.output()).context("running etcdctl")?;
        ensure!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn app(&self, i: usize) -> Result<Conn> {
        Ok(Conn::new(opts(&self.topo, self.ports[i], "APP", true)?).await?)
    }

    pub async fn admin(&self, i: usize) -> Result<Conn> {
        self.admin_on(self.admin_ports[i]).await
    }

    /// The operator's session on the admin interface at `port` (a fleet
    /// router's, or the sandbox router's).
    pub async fn admin_on(&self, port: u16) -> Result<Conn> {
        let o = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(self.topo.var("CAUSEWAY_ROUTER_ADMIN_USER")?))
            .pass(Some(self.topo.var("CAUSEWAY_ROUTER_ADMIN_PASSWORD")?))
            .prefer_socket(false)
            .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
        Ok(Conn::new(o).await?)
    }

    /// The sum of a metric's samples on router `i`.
    pub fn metric(&self, i: usize, name: &str) -> Result<f64> {
        let text = tokio::task::block_in_place(|| http_get(&self.metrics[i]))?;
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Kills fleet router `name` (SIGKILL: no lease revoked).
    pub fn kill(&self, name: &str) -> Result<()> {
        let pid = std::fs::read_to_string(self.topo.dir.join(format!("pids/{name}.pid")))?;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()?;
        ensure!(killed.success(), "kill -KILL {name}");
        Ok(())
    }

    /// `fleet status`: its table and whether it reported every router well.
    pub fn status(&self) -> Result<(String, bool)> {
        let out = self.cli(&["status"])?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.success(),
        ))
    }
}

/// The revision in `fleet put`'s "written, revision N" line.
pub fn revision_of(text: &str) -> Result<i64> {
    text.split("revision ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no revision in {text:?}"))
}

/// Which server answered the marked statement.
pub async fn marker_server(c: &mut Conn) -> Result<u32> {
    c.query_first("SELECT @@server_id, 'fleet_marker'")
        .await?
        .map(|(id, _): (u32, String)| id)
        .context("no row")
}

/// Polls `f` every 100 ms until it says yes, or fails after `limit`.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if f().await? {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions on every router that run statements until stopped, counting
/// statements and errors.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Statements that succeeded.
    pub ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    pub async fn start(f: &Fleet) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..f.ports.len() {
            let mut c = f.app(i).await?;
            let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match c.query_drop("SELECT 1").await {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            seen.push(e.to_string());
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            }));
        }
        Ok(Load {
            stop,
            ok,
            errors,
            tasks,
        })
    }

    /// Stops; fails when a statement failed.
    pub async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = Vec::new();
        for t in self.tasks {
            seen.extend(t.await?);
        }
        ensure!(
            self.errors.load(Ordering::Relaxed) == 0,
            "statements failed: {seen:?}"
        );
        Ok(self.ok.load(Ordering::Relaxed))
    }
}

/// Runs SQL as root on a sandbox server (by name) through its socket.
pub fn on_server(topo: &Topology, name: &str, sql: &str) -> Result<String> {
    let mut cmd = std::process::Command::new(topo.var("CAUSEWAY_MYSQL")?);
    cmd.args(["--no-defaults", "-uroot", "--batch", "--skip-column-names"])
        .arg(format!(
            "--socket={}/{name}/mysqld.sock",
            topo.dir.display()
        ))
        .args(["-e", sql]);
    let out = tokio::task::block_in_place(|| cmd.output())?;
    ensure!(
        out.status.success(),
        "{name}: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
