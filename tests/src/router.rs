//! Support for the router's end-to-end tests: routers started inside the
//! test process with a configuration of the test's choosing, in front of the
//! sandbox's primary; the mysql CLI; raw protocol helpers.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use causeway_router::causal::Scope;
use causeway_router::config::{
    AuthPlugin, BackendTlsMode, Config, ConsistentPair, HostgroupConfig, Role, Secret,
    ServerConfig, UserConfig,
};
use causeway_router::{Router, Shared};
use mysql_async::{Opts, OptsBuilder, SslOpts};

use crate::Topology;

/// A router running inside the test process.
#[derive(Debug)]
pub struct TestRouter {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its shared state (metrics, sessions).
    pub shared: std::sync::Arc<Shared>,
    /// Its admin interface's port, when it has one.
    pub admin_port: Option<u16>,
}

impl Topology {
    /// A router configuration in front of the primary alone (one writer
    /// hostgroup, no reader group: every statement goes to the primary, as
    /// through a pass-through): an ephemeral port, the APP and ADMIN users
    /// (caching_sha2_password, inline passwords), TLS on both legs, the
    /// primary's RSA key, the monitor off.
    pub fn router_config(&self) -> Result<Config> {
        let mut cfg = Config::default();
        cfg.frontend.listen = "127.0.0.1:0".parse()?;
        cfg.frontend.rsa_private_key_file = Some(self.primary_data().join("private_key.pem"));
        cfg.backend.tls.mode = BackendTlsMode::Required;
        cfg.metrics.enabled = false;
        cfg.monitor.enabled = false;
        cfg.hostgroups.push(HostgroupConfig {
            name: "primary".into(),
            role: Role::Writer,
            writer: None,
            ..HostgroupConfig::default()
        });
        cfg.servers.push(ServerConfig {
            name: Some("primary".into()),
            host: self.host.clone(),
            port: self.primary_port,
            hostgroup: "primary".into(),
            ..ServerConfig::default()
        });
        for role in ["APP", "ADMIN"] {
            let who = self.user(role)?;
            cfg.users.push(UserConfig {
                name: who.user,
                password: Some(Secret(who.password)),
                auth_plugin: AuthPlugin::CachingSha2Password,
                ..UserConfig::default()
            });
        }
        Ok(cfg)
    }

    /// [`Topology::router_config`] plus the replicas as the reader
    /// hostgroup `replicas` of the writer group `primary`, and the health
    /// monitor on (as the MONITOR user, checking every 100 ms).
    pub fn split_config(&self) -> Result<Config> {
        let mut cfg = self.router_config()?;
        cfg.hostgroups.push(HostgroupConfig {
            name: "replicas".into(),
            role: Role::Reader,
            writer: Some("primary".into()),
            ..HostgroupConfig::default()
        });
        for (i, port) in self.replica_ports.iter().enumerate() {
            cfg.servers.push(ServerConfig {
                name: Some(format!("replica{}", i + 1)),
                host: self.host.clone(),
                port: *port,
                hostgroup: "replicas".into(),
                ..ServerConfig::default()
            });
        }
        let monitor = self.user("MONITOR")?;
        cfg.monitor.enabled = true;
        cfg.monitor.interval = std::time::Duration::from_millis(100);
        cfg.monitor.user = monitor.user;
        cfg.monitor.password = Some(Secret(monitor.password));
        Ok(cfg)
    }

    /// [`Topology::split_config`] with causal reads: each server follows
    /// the reader beside it, and `replicas` is consistently paired with
    /// `primary` in `scope`.
    pub fn causal_config(&self, scope: Scope) -> Result<Config> {
        let mut cfg = self.split_config()?;
        let readers = self.reader_addrs()?;
        let token = PathBuf::from(self.var("CAUSEWAY_READER_TOKEN_FILE")?);
        for (server, addr) in cfg.servers.iter_mut().zip(readers) {
            server.reader = Some(addr);
            server.reader_token_file = Some(token.clone());
        }
        cfg.consistent_pairs.push(ConsistentPair {
            reader: "replicas".into(),
            writer: "primary".into(),
            scope,
            ..ConsistentPair::default()
        });
        Ok(cfg)
    }
    /// The primary's data directory (certificates, RSA keys).
    pub fn primary_data(&self) -> PathBuf {
        PathBuf::from(
            self.vars
                .get("CAUSEWAY_SANDBOX_DIR")
                .cloned()
                .unwrap_or_default(),
        )
        .join("primary/data")
    }

    /// Runs the sandbox's mysql 9.x CLI with `args`.
    pub fn mysql_cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(self.var("CAUSEWAY_MYSQL")?)
            .args(args)
            .output()
            .context("running the mysql CLI")
    }

    /// The mysql CLI as `role` on `port`, in the sandbox database, running
    /// `sql` in batch mode; `extra` options come first. Fails on a non-zero exit.
    pub fn mysql_batch(&self, port: u16, role: &str, extra: &[&str], sql: &str) -> Result<String> {
        let who = self.user(role)?;
        let port = port.to_string();
        let user = format!("-u{}", who.user);
        let pass = format!("-p{}", who.password);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend([
            "--no-defaults",
            "-h127.0.0.1",
            "-P",
            &port,
            &user,
            &pass,
            "--batch",
            "causeway",
            "-e",
            sql,
        ]);
        // --no-defaults must come first.
        args.retain(|a| *a != "--no-defaults");
        args.insert(0, "--no-defaults");
        let out = self.mysql_cli(&args)?;
        if !out.status.success() {
            bail!(
                "mysql {:?} failed: {}",
                extra,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// Starts a router with `cfg` on the current tokio runtime.
pub async fn start_router(cfg: Config) -> Result<TestRouter> {
    start_router_from(cfg, None).await
}

/// Starts a router with `cfg`, which reloads from `path` (RELOAD, SIGHUP).
pub async fn start_router_from(cfg: Config, path: Option<PathBuf>) -> Result<TestRouter> {
    let router = Router::bind(cfg, path).await?;
    let port = router.local_addr()?.port();
    let admin_port = router.admin_addr().map(|a| a.port());
    let shared = router.shared();
    tokio::spawn(router.run());
    Ok(TestRouter {
        port,
        shared,
        admin_port,
    })
}

/// A router on a runtime of its own thread, usable from sync and async
/// tests alike; it stops when dropped.
#[derive(Debug)]
pub struct BackgroundRouter {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its shared state.
    pub shared: std::sync::Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for BackgroundRouter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a router with `cfg` in the background (see [`BackgroundRouter`]).
pub fn background_router(cfg: Config) -> Result<BackgroundRouter> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        rt.block_on(async move {
            match Router::bind(cfg, None).await {
                Ok(router) => {
                    let port = router.local_addr().map(|a| a.port());
                    let _ = ready_tx.send(port.map(|p| (p, router.shared())).map_err(Into::into));
                    tokio::select! {
                        _ = router.run() => {}
                        _ = stopped => {}
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let (port, shared) = ready_rx.recv().context("router thread died")??;
    Ok(BackgroundRouter {
        port,
        shared,
        stop: Some(stop),
    })
}

/// mysql_async options for `role` on `port`; `tls` selects TLS (certificates
/// not verified) or plain TCP.
pub fn opts(topo: &Topology, port: u16, role: &str, tls: bool) -> Result<Opts> {
    // mysql_async reads @@socket after connecting and, without TLS, moves
    // to that Unix socket when the host is local: past the router, to
    // whichever server answered. Tests through a router must not.
    let mut b = OptsBuilder::from_opts(topo.opts(port, &topo.user(role)?)).prefer_socket(false);
    if !tls {
        b = b.ssl_opts(None::<SslOpts>);
    }
    Ok(b.into())
}

/// A hand-driven MySQL client connection, for protocol edge cases no client
/// library produces.
#[derive(Debug)]
pub struct Raw {
    stream: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    codec: causeway_wire::PacketCodec,
    /// Capabilities the login negotiated.
    pub caps: causeway_wire::CapabilityFlags,
}

/// Capabilities [`Raw::login`] asks for.
pub const RAW_CAPS: causeway_wire::CapabilityFlags = causeway_wire::CapabilityFlags::PROTOCOL_41
    .union(causeway_wire::CapabilityFlags::SECURE_CONNECTION)
    .union(causeway_wire::CapabilityFlags::PLUGIN_AUTH)
    .union(causeway_wire::CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(causeway_wire::CapabilityFlags::TRANSACTIONS)
    .union(causeway_wire::CapabilityFlags::CONNECT_WITH_DB)
    .union(causeway_wire::CapabilityFlags::DEPRECATE_EOF)
    .union(causeway_wire::CapabilityFlags::MULTI_RESULTS)
    .union(causeway_wire::CapabilityFlags::PS_MULTI_RESULTS)
    .union(causeway_wire::CapabilityFlags::LONG_PASSWORD);

impl Raw {
    /// Opens a TCP connection.
    pub async fn connect(port: u16) -> Result<Raw> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(Raw {
            stream,
            buf: bytes::BytesMut::new(),
            codec: causeway_wire::PacketCodec::new(usize::MAX),
            caps: causeway_wire::CapabilityFlags::empty(),
        })
    }

    /// The next packet; `None` when the server closed the connection.
    /// Fails after 10 s of silence.
    pub async fn read(&mut self) -> Result<Option<causeway_wire::Packet>> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(p) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(p));
            }
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read_buf(&mut self.buf),
            )
            .await
            .context("no packet within 10 s")??;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Sends one packet with sequence id `seq`.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<()> {
        let mut out = bytes::BytesMut::new();
        causeway_wire::packet::encode_packet(seq, payload, &mut out);
        self.send_bytes(&out).await
    }

    /// Connects and reads the greeting.
    pub async fn greet(port: u16) -> Result<(Raw, causeway_wire::handshake::HandshakeV10)> {
        let mut raw = Raw::connect(port).await?;
        let p = raw.read().await?.context("closed before the greeting")?;
        let g = causeway_wire::handshake::HandshakeV10::decode(&p.payload)
            .with_context(|| format!("greeting {:?}", p.payload))?;
        Ok((raw, g))
    }

    /// Logs in with caching_sha2_password's fast path (answering an auth
    /// switch if asked), plugin name `plugin` in the response.
    pub async fn login(port: u16, user: &str, password: &str, plugin: &str) -> Result<Raw> {
        Raw::login_with(port, user, password, plugin, RAW_CAPS).await
    }

    /// [`Raw::login`] as `who`, naming caching_sha2_password.
    pub async fn login_as(port: u16, who: &crate::Credentials) -> Result<Raw> {
        Raw::login(port, &who.user, &who.password, "caching_sha2_password").await
    }

    /// [`Raw::login`] asking for `wanted` capabilities (those the server
    /// offers).
    pub async fn login_with(
        port: u16,
        user: &str,
        password: &str,
        plugin: &str,
        wanted: causeway_wire::CapabilityFlags,
    ) -> Result<Raw> {
        use causeway_wire::auth::caching_sha2_scramble;
        use causeway_wire::handshake::{AuthSwitchRequest, HandshakeResponse};
        let (mut raw, g) = Raw::greet(port).await?;
        let caps = wanted & g.capabilities;
        let resp = HandshakeResponse {
            capabilities: caps,
            max_packet_size: 1 << 24,
            charset: 255,
            username: user.as_bytes().to_vec().into(),
            auth_response: caching_sha2_scramble(password.as_bytes(), &g.auth_plugin_data).into(),
            database: Some(bytes::Bytes::from_static(b"causeway")),
            auth_plugin_name: Some(plugin.as_bytes().to_vec().into()),
            ..HandshakeResponse::default()
        };
        let mut out = bytes::BytesMut::new();
        resp.encode(&mut out)?;
        raw.send(1, &out).await?;
        loop {
            let p = raw.read().await?.context("closed during login")?;
            match p.payload.first() {
                Some(0x00) => break,
                Some(0xfe) => {
                    let sw = AuthSwitchRequest::decode(&p.payload)?;
                    let answer = caching_sha2_scramble(password.as_bytes(), sw.nonce());
                    raw.send(p.seq + 1, &answer).await?;
                }
                Some(0x01) if p.payload[..] == [0x01, 0x03] => {}
                _ => bail!("login failed: {:?}", p.payload),
            }
        }
        raw.caps = caps;
        Ok(raw)
    }

    /// The socket and what was read from it and not yet decoded, for a
    /// test that speaks another framing (the compressed protocol) from here.
    pub fn into_parts(self) -> (tokio::net::TcpStream, bytes::BytesMut) {
        (self.stream, self.buf)
    }

    /// Sends a command (sequence 0) and reads its whole response.
    pub async fn command(&mut self, payload: &[u8]) -> Result<Vec<bytes::Bytes>> {
        let mut tracker = causeway_wire::ResponseTracker::for_command(payload, self.caps);
        self.send(0, payload).await?;
        let mut out = Vec::new();
        while !tracker.is_done() {
            let p = self.read().await?.context("closed during a response")?;
            let step = tracker.feed(&p.payload)?;
            if std::env::var_os("RCMD_DEBUG").is_some() {
                eprintln!("  {:?} {:?}", step, &p.payload[..p.payload.len().min(40)]);
            }
            out.push(p.payload);
        }
        Ok(out)
    }
}

/// Runs a Python client program of `tests/clients/python` with the PyMySQL
/// venv `scripts/lib/ensure-tools.sh` builds in `target/pyclients`, and
/// parses the one JSON line it prints.
pub fn run_python_client(script: &str, env: &[(&str, String)]) -> Result<serde_json::Value> {
    let root = crate::workspace_root();
    let python = root.join("target/pyclients/bin/python");
    if !python.exists() {
        bail!(
            "{python:?} is missing: scripts/lib/ensure-tools.sh (ensure_router_clients) builds it"
        );
    }
    let mut cmd = Command::new(python);
    cmd.arg(root.join("tests/clients/python").join(script));
    crate::run_json_client(cmd, "python", script, env)
}
