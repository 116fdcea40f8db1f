//! Shared support for the end-to-end tests: finds the running sandbox, or
//! starts one with `scripts/sandbox up`, and hands out client connections.
//!
//! Tests never skip when the sandbox cannot be had: they fail, saying why.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub mod browser;
pub mod fleet;
pub mod reader;
pub mod workload;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};

/// The topology written by `scripts/sandbox up` to `topology.env`.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The sandbox's folder.
    pub dir: PathBuf,
    /// Every `KEY='value'` of the env file.
    pub vars: HashMap<String, String>,
    /// Host of every server (loopback).
    pub host: String,
    /// Port of the primary.
    pub primary_port: u16,
    /// Ports of the replicas, in order.
    pub replica_ports: Vec<u16>,
}

/// A user of the sandbox and its password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// The root of the workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `<sandbox dir>-<name>`.
fn isolated_dir(name: &str) -> PathBuf {
    let shared = sandbox_dir();
    shared.with_file_name(format!(
        "{}-{name}",
        shared
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sandbox")
    ))
}

fn sandbox_dir() -> PathBuf {
    std::env::var_os("CAUSEWAY_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/sandbox"))
}

/// Runs `scripts/sandbox ARGS --dir DIR` and returns what it printed and its
/// exit status.
pub fn sandbox(dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new(workspace_root().join("scripts/sandbox"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .context("running scripts/sandbox")
}

/// Whether every server pid recorded by `scripts/sandbox up` is alive.
fn servers_alive(dir: &Path) -> bool {
    pids_alive(dir, &["primary", "replica1", "replica2"])
}

/// Whether each named process recorded by `scripts/sandbox up` is alive.
fn pids_alive(dir: &Path, names: &[&str]) -> bool {
    names.iter().all(|name| {
        fs::read_to_string(dir.join("pids").join(format!("{name}.pid")))
            .map(|pid| Path::new("/proc").join(pid.trim()).exists())
            .unwrap_or(false)
    })
}

/// Parses the `export KEY='value'` lines of a topology.env file.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

impl Topology {
    /// The running sandbox, started (once, under a lock shared by every test
    /// process) when none runs. Left running for the next test; `scripts/test`
    /// takes it down at the end.
    pub fn get() -> Result<Topology> {
        Topology::get_in(&sandbox_dir(), &["up"])
    }

    /// A sandbox of its own for tests that break servers on purpose, so the
    /// shared one stays healthy for the others: `<sandbox dir>-<name>`,
    /// started on first use and taken down by `scripts/test`.
    pub fn isolated(name: &str) -> Result<Topology> {
        Topology::get_in(&isolated_dir(name), &["up"])
    }

    /// An isolated sandbox started with `--etcd`: etcd and two fleet
    /// routers reading their configuration from it.
    pub fn isolated_fleet(name: &str) -> Result<Topology> {
        Topology::get_in(&isolated_dir(name), &["up", "--etcd"])
    }

    fn get_in(dir: &Path, up: &[&str]) -> Result<Topology> {
        let dir = dir.to_path_buf();
        fs::create_dir_all(dir.parent().unwrap_or(Path::new(".")))?;
        let lock_path = dir.with_extension("lock");
        let lock = File::create(&lock_path).with_context(|| format!("creating {lock_path:?}"))?;
        lock.lock().context("locking the sandbox")?;
        let env_file = dir.join("topology.env");
        // Reuse a sandbox whose servers are alive, even if one is paused or
        // restarting for a fault-injection test right now (`status` would
        // fail then); start one when none is running.
        let mut running = env_file.exists() && servers_alive(&dir);
        if running && up.contains(&"--etcd") && !pids_alive(&dir, &["etcd", "fleet-a", "fleet-b"]) {
            // A former run left its fleet half down: start afresh.
            let _ = sandbox(&dir, &["down"]);
            running = false;
        }
        if !running {
            let out = sandbox(&dir, up)?;
            if !out.status.success() {
                bail!(
                    "scripts/sandbox up failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let text =
            fs::read_to_string(&env_file).with_context(|| format!("reading {env_file:?}"))?;
        drop(lock);
        Topology::from_vars(parse_env_file(&text))
    }

    fn from_vars(vars: HashMap<String, String>) -> Result<Topology> {
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .with_context(|| format!("{k} missing from topology.env"))
        };
        let primary_port = get("CAUSEWAY_PRIMARY_PORT")?.parse()?;
        let replica_ports = get("CAUSEWAY_REPLICA_PORTS")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u16>, _>>()?;
        let host = get("CAUSEWAY_HOST")?;
        Ok(Topology {
            dir: PathBuf::from(get("CAUSEWAY_SANDBOX_DIR")?),
            vars,
            host,
            primary_port,
            replica_ports,
        })
    }

    /// A variable of the env file.
    pub fn var(&self, key: &str) -> Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("{key} missing from topology.env"))
    }

    /// Runs `scripts/sandbox ARGS` on this topology's sandbox (stop, start,
    /// pause, resume a server, ...); fails with its stderr unless it succeeds.
    pub fn sandbox(&self, args: &[&str]) -> Result<()> {
        let out = sandbox(&self.dir, args)?;
        if !out.status.success() {
            bail!(
                "scripts/sandbox {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The user named by `CAUSEWAY_<ROLE>_USER` / `_PASSWORD` (APP, ADMIN, ...).
    pub fn user(&self, role: &str) -> Result<Credentials> {
        Ok(Credentials {
            user: self.var(&format!("CAUSEWAY_{role}_USER"))?.to_string(),
            password: self.var(&format!("CAUSEWAY_{role}_PASSWORD"))?.to_string(),
        })
    }

    /// Client options for a server of the sandbox, over TLS (the servers
    /// generate their own certificates, so they are not verified).
    pub fn opts(&self, port: u16, who: &Credentials) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(port)
            .user(Some(who.user.clone()))
            .pass(Some(who.password.clone()))
            .db_name(self.vars.get("CAUSEWAY_DATABASE").cloned())
            .ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true))
            .into()
    }

    /// A new connection as `role` to the server on `port` (in the sandbox's
    /// database for the APP and ADMIN users, in none for the others).
    pub async fn conn(&self, port: u16, role: &str) -> Result<Conn> {
        let mut opts = self.opts(port, &self.user(role)?);
        if !matches!(role, "APP" | "ADMIN") {
            opts = OptsBuilder::from_opts(opts).db_name(None::<String>).into();
        }
        Conn::new(opts)
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port} as {role}"))
    }

    /// Runs sysbench (Debian's; `scripts/lib/ensure-tools.sh` installs it)
    /// as the application user against `port` on 127.0.0.1, in `dir`, with
    /// `args` after the connection options. Its output (stdout, then
    /// stderr), or an error carrying it.
    pub fn sysbench(&self, port: u16, dir: &Path, args: &[&str]) -> Result<String> {
        let app = self.user("APP")?;
        let out = Command::new("sysbench")
            .current_dir(dir)
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={port}"),
                &format!("--mysql-user={}", app.user),
                &format!("--mysql-password={}", app.password),
            ])
            .args(args)
            .output()
            .context("running sysbench (scripts/lib/ensure-tools.sh installs it)")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("sysbench {args:?} failed:\n{text}");
        }
        Ok(text)
    }
}

impl Topology {
    /// The environment the client programs of `tests/clients` read: where
    /// to connect (`port`), as `who`, in the `causeway` schema, then
    /// `extra` (the program's own settings).
    pub fn client_env(
        &self,
        port: u16,
        who: &Credentials,
        extra: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("MYSQL_HOST", self.host.clone()),
            ("MYSQL_PORT", port.to_string()),
            ("MYSQL_USER", who.user.clone()),
            ("MYSQL_PASSWORD", who.password.clone()),
            ("MYSQL_DATABASE", "causeway".to_string()),
        ];
        env.extend_from_slice(extra);
        env
    }
}

/// Runs one of the node client programs of `tests/clients/node` (real
/// client libraries from npm, installed by `scripts/test`) and parses the
/// one JSON line it prints.
pub fn run_node_client(script: &str, env: &[(&str, String)]) -> Result<serde_json::Value> {
    let dir = workspace_root().join("tests/clients/node");
    if !dir.join("node_modules").exists() {
        bail!("{dir:?} has no node_modules: run `npm ci` there (scripts/test does)");
    }
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(&dir);
    run_json_client(cmd, "node", script, env)
}

/// Runs a client program and parses the one JSON line it prints last.
pub fn run_json_client(
    mut cmd: Command,
    what: &str,
    script: &str,
    env: &[(&str, String)],
) -> Result<serde_json::Value> {
    let out = cmd
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("running {what} (scripts/test installs it)"))?;
    if !out.status.success() {
        bail!(
            "{what} {script} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout
        .lines()
        .last()
        .with_context(|| format!("{what} client printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("{what} client printed {line:?}"))
}

impl Topology {
    /// The native reader addresses: primary first, then the replicas.
    pub fn reader_addrs(&self) -> Result<Vec<String>> {
        Ok(self
            .var("CAUSEWAY_READER_ADDRS")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// The ProxySQL-protocol reader addresses, in the same order.
    pub fn reader_proxysql_addrs(&self) -> Result<Vec<String>> {
        Ok(self
            .var("CAUSEWAY_READER_PROXYSQL_ADDRS")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// The token readers expect.
    pub fn reader_token(&self) -> Result<Vec<u8>> {
        let path = self.var("CAUSEWAY_READER_TOKEN_FILE")?;
        Ok(fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .as_bytes()
            .to_vec())
    }

    /// Every port in reader order: primary, then replicas.
    pub fn server_ports(&self) -> Vec<u16> {
        std::iter::once(self.primary_port)
            .chain(self.replica_ports.iter().copied())
            .collect()
    }
}

pub mod router;

impl Topology {
    /// The port of the router `scripts/sandbox up` started (a pass-through
    /// to the primary for the APP and ADMIN users).
    pub fn router_port(&self) -> Result<u16> {
        Ok(self.var("CAUSEWAY_ROUTER_PORT")?.parse()?)
    }
}

/// A free local port (bound, then released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The body of `GET url` for a plain `http://host:port/path` URL (the
/// metrics endpoints), bounded in time.
pub fn http_get(url: &str) -> Result<String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: not an http:// URL"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (_, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: no HTTP body"))?;
    Ok(body.to_string())
}
