//! Router configuration: one TOML file (`--config`). Every field has a
//! default; unknown keys are rejected with their line. `examples/router.toml`
//! shows and explains every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use causeway_common::config::ConfigError;
use causeway_common::config::{parse_toml, read_toml};
use causeway_common::secret::sources_given;
pub use causeway_common::secret::Secret;
use serde::Deserialize;

mod admin;
pub use self::admin::{AdminConfig, AdminUserConfig, Door};
use crate::causal::Scope;
use crate::failover::FailoverConfig;
pub use crate::rules::QueryRuleConfig;
use crate::rules::Rules;

mod fleet;
pub use self::fleet::{EtcdConfig, Listen, Overrides};

mod frontend;
pub use self::frontend::{FrontendConfig, FrontendTls, FullAuth};

mod monitor;
pub use self::monitor::MonitorConfig;

mod observe;
pub use observe::{QueryLogConfig, StatsConfig, MAX_DIGESTS};

/// The whole configuration of one router.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The client-facing side.
    pub frontend: FrontendConfig,
    /// Settings shared by every backend server (timeouts, TLS, pools).
    pub backend: BackendConfig,
    /// Hostgroups: named sets of servers, each a writer or a reader group.
    pub hostgroups: Vec<HostgroupConfig>,
    /// The MySQL servers.
    pub servers: Vec<ServerConfig>,
    /// Reader hostgroups whose reads must be causally consistent with the
    /// writes of a writer hostgroup.
    pub consistent_pairs: Vec<ConsistentPair>,
    /// Users clients may log in as.
    pub users: Vec<UserConfig>,
    /// Query rules, evaluated in order for every statement.
    pub query_rules: Vec<QueryRuleConfig>,
    /// Routing defaults.
    pub routing: RoutingConfig,
    /// The health monitor.
    pub monitor: MonitorConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The admin SQL interface.
    pub admin: AdminConfig,
    /// Per-statement statistics (query digests).
    pub stats: StatsConfig,
    /// The JSON-lines query log.
    pub query_log: QueryLogConfig,
}

/// Settings shared by every backend server.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// TCP connect plus greeting timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// TLS towards the servers (a server may override it).
    pub tls: BackendTls,
    /// Idle connections kept per server for the next session that needs
    /// one. 0: a connection a session gives back is closed.
    pub pool_max_idle: usize,
    /// An idle pooled connection older than this is closed.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// After a failed connect to a server, new connects to it wait at
    /// least this long (doubling per failure up to 16 times this), so a
    /// down server is not hammered; its sessions fail over or get an ERR.
    #[serde(with = "humantime_serde")]
    pub connect_backoff: Duration,
    /// A session idle this long gives its backend connections back to
    /// their pools (those holding nothing that lives only there); sooner
    /// when another session waits for one. Between statements closer than
    /// this a session keeps its connections.
    #[serde(with = "humantime_serde")]
    pub multiplex_delay: Duration,
    /// When every connection a server may have is busy, a statement waits
    /// this long for one to come back, then gets ERR 9004.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// At most this many statements wait for a connection to one server;
    /// more get ERR 9004 at once.
    pub queue_max: usize,
    /// Prepared statements kept on one backend connection; past it the
    /// least recently used is closed on the server (`COM_STMT_CLOSE`) and
    /// prepared again when needed. Bounds each server's
    /// `Prepared_stmt_count` by this times the router's connections.
    pub max_prepared_statements: usize,
    /// The compressed protocol on backend connections (`off`, `zlib`,
    /// `zstd`); whatever clients use. Used only where the server offers it.
    pub compression: BackendCompression,
    /// zstd level (1..=22) with `compression = "zstd"`.
    pub zstd_level: u8,
}

/// Compression towards the backends.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendCompression {
    /// Uncompressed.
    #[default]
    Off,
    /// zlib (`CLIENT_COMPRESS`).
    Zlib,
    /// zstd at `zstd_level` (`CLIENT_ZSTD_COMPRESSION_ALGORITHM`).
    Zstd,
}

impl BackendConfig {
    /// The algorithm backend connections ask for.
    pub fn compression_algorithm(&self) -> Option<causeway_wire::compress::Algorithm> {
        use causeway_wire::compress::Algorithm;
        match self.compression {
            BackendCompression::Off => None,
            BackendCompression::Zlib => Some(Algorithm::Zlib),
            BackendCompression::Zstd => Some(Algorithm::Zstd(self.zstd_level)),
        }
    }
}

/// A hostgroup's role.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes writes, transactions and everything not provably a read.
    #[default]
    Writer,
    /// Takes plain reads outside transactions.
    Reader,
}

/// One hostgroup.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HostgroupConfig {
    /// Its name, used by servers, users, rules and hints.
    pub name: String,
    /// Writer or reader.
    pub role: Role,
    /// For a reader hostgroup: the writer hostgroup its servers replicate
    /// from. Servers of the two groups then move between them by their
    /// `read_only` (as the monitor sees it): a writable server serves the
    /// writer group, a read-only one the reader group, so a promoted
    /// replica becomes the writer without a config change. Plain reads of
    /// sessions whose writer group is this one go here.
    pub writer: Option<String>,
    /// For a writer hostgroup: what its sessions do while it has no
    /// usable writer.
    pub failover: FailoverConfig,
}

/// One MySQL server.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Its name in logs, metrics and hints (default `host:port`).
    pub name: Option<String>,
    /// Host name (re-resolved on every connect) or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The hostgroup it belongs to (the monitor may move it between a
    /// writer group and its reader group, see `hostgroups.writer`).
    pub hostgroup: String,
    /// Share of the reads of its hostgroup, relative to the other servers'.
    /// 0 keeps the server configured but sends it nothing.
    pub weight: u32,
    /// At most this many backend connections to it at once (sessions and
    /// pool together); more sessions get ERR 1040 or another server.
    pub max_connections: usize,
    /// Shunned while its replication lag is above this, or replication is
    /// broken (unset: lag is not checked).
    #[serde(default, with = "humantime_serde")]
    pub max_replication_lag: Option<Duration>,
    /// TLS towards this server, instead of `backend.tls`.
    pub tls: Option<BackendTls>,
    /// The native address (`host:port`) of the `causeway-reader` beside it.
    pub reader: Option<String>,
    /// File holding that reader's token.
    pub reader_token_file: Option<PathBuf>,
    /// TLS towards that reader (same modes as `tls`; unset: plain TCP). The
    /// name checked with `verify_identity` defaults to the host of `reader`.
    pub reader_tls: Option<BackendTls>,
}

/// Reads in `reader` must see the session's writes made in `writer`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistentPair {
    /// The reader hostgroup.
    pub reader: String,
    /// The writer hostgroup.
    pub writer: String,
    /// The default consistency of reads routed to `reader`.
    pub scope: Scope,
    /// How long a read may wait for a replica to catch up before it goes to
    /// the writer.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

/// Routing defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// A writable server also serves plain reads of the reader group paired
    /// with its writer group.
    pub writer_is_also_reader: bool,
    /// What to do when the monitor sees two writable servers in one writer
    /// hostgroup.
    pub split_brain: SplitBrain,
    /// Plain reads go to a reader group only when it has a usable server;
    /// with `false` they fail with an ERR instead of going to the writer.
    pub reads_fall_back_to_writer: bool,
}

/// Two servers found writable together in one writer hostgroup, neither
/// the writer in force nor promoted (see [`crate::failover`]; otherwise the
/// writer is elected and the other fenced).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SplitBrain {
    /// Refuse statements for that group with ERR 9002 (they wait for the
    /// group's failover window first) until one server is read-only again
    /// (reads elsewhere go on).
    #[default]
    RefuseWrites,
    /// Keep writing to the configured writer (the first by config order).
    Allow,
}

/// TLS towards the backend.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BackendTls {
    /// Whether and how to verify the backend.
    pub mode: BackendTlsMode,
    /// PEM CA bundle for `verify_ca` / `verify_identity`.
    pub ca_file: Option<PathBuf>,
    /// Name checked against the certificate with `verify_identity`
    /// (default: the server's `host`).
    pub server_name: Option<String>,
}

/// TLS modes towards the backend, named like the mysql client's `--ssl-mode`.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendTlsMode {
    /// Plain TCP (caching_sha2 full authentication then uses RSA).
    Disabled,
    /// TLS without verifying the certificate (self-signed servers).
    #[default]
    Required,
    /// TLS, certificate chain verified against `ca_file`, name not checked.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyIdentity,
}

/// Frontend authentication plugins.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    /// `caching_sha2_password` (MySQL 8+ default).
    #[default]
    CachingSha2Password,
    /// `mysql_native_password` (for old clients; backends never see it).
    MysqlNativePassword,
}

impl AuthPlugin {
    /// The plugin's protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CachingSha2Password => causeway_wire::auth::CACHING_SHA2_PASSWORD,
            Self::MysqlNativePassword => causeway_wire::auth::MYSQL_NATIVE_PASSWORD,
        }
    }
}

/// One user clients may log in as.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// User name (also the backend user unless `backend_user` is set).
    pub name: String,
    /// The password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one line; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// The plugin clients authenticate to the router with.
    pub auth_plugin: AuthPlugin,
    /// Where its statements go when nothing else decides (default: the
    /// first writer hostgroup). Plain reads go to the reader group paired
    /// with it (`hostgroups.writer`).
    pub default_hostgroup: Option<String>,
    /// The user the router logs in to the servers as (default: `name`).
    pub backend_user: Option<String>,
    /// Its password, inline (default: the frontend password).
    pub backend_password: Option<Secret>,
    /// Environment variable holding the backend password.
    pub backend_password_env: Option<String>,
    /// File holding the backend password.
    pub backend_password_file: Option<PathBuf>,
    /// At most this many sessions of this user at once (0: no limit beyond
    /// `frontend.max_connections`); more get ERR 1226.
    pub max_connections: usize,
    /// The consistency of this user's reads in a consistent pair (default:
    /// the pair's scope).
    pub consistency: Option<Scope>,
    /// Its sessions give their backend connections back to the pools
    /// between statements (on, the default), or keep every connection they
    /// open until they end (off).
    pub multiplexing: bool,
    /// At most this many backend connections of its backend user to one
    /// server (0: only the server's `max_connections`); more wait in the
    /// queue.
    pub backend_max_connections: usize,
    /// Its statements whose backend has not finished answering after this
    /// long end (see `query_rules.backend_timeout`, which overrides it).
    /// Unset or `0s`: no timeout; a server the monitor shuns still releases
    /// the statements waiting on it.
    #[serde(default, with = "humantime_serde")]
    pub backend_timeout: Option<Duration>,
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Address of `GET /metrics`.
    pub listen: SocketAddr,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connect_timeout: Duration::from_secs(5),
            tls: BackendTls::default(),
            pool_max_idle: 64,
            pool_idle_timeout: Duration::from_secs(60),
            connect_backoff: Duration::from_millis(250),
            multiplex_delay: Duration::from_millis(100),
            queue_timeout: Duration::from_secs(3),
            queue_max: 10_000,
            max_prepared_statements: 128,
            compression: BackendCompression::Off,
            zstd_level: causeway_wire::compress::DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: None,
            host: "127.0.0.1".into(),
            port: 3306,
            hostgroup: String::new(),
            weight: 1,
            max_connections: 1000,
            max_replication_lag: None,
            tls: None,
            reader: None,
            reader_token_file: None,
            reader_tls: None,
        }
    }
}

impl ServerConfig {
    /// Its name: `name`, or `host:port`.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port))
    }
}

impl Default for ConsistentPair {
    fn default() -> Self {
        ConsistentPair {
            reader: String::new(),
            writer: String::new(),
            scope: Scope::Session,
            max_wait: Duration::from_millis(5),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            writer_is_also_reader: false,
            split_brain: SplitBrain::RefuseWrites,
            reads_fall_back_to_writer: true,
        }
    }
}

impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            name: String::new(),
            password: None,
            password_env: None,
            password_file: None,
            auth_plugin: AuthPlugin::default(),
            default_hostgroup: None,
            backend_user: None,
            backend_password: None,
            backend_password_env: None,
            backend_password_file: None,
            max_connections: 0,
            consistency: None,
            multiplexing: true,
            backend_max_connections: 0,
            backend_timeout: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 6070)),
        }
    }
}

impl Config {
    /// Reads and parses a TOML file (not yet validated).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        read_toml(path)
    }

    /// Parses TOML text; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse_toml(text, path)
    }

    /// Checks everything, collecting every problem before failing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let f = &self.frontend;
        if f.handshake_timeout.is_zero() {
            errors.push("frontend.handshake_timeout must be > 0".to_string());
        }
        if f.idle_timeout.is_zero() {
            errors.push("frontend.idle_timeout must be > 0".to_string());
        }
        if f.max_connections == 0 {
            errors.push("frontend.max_connections must be > 0".to_string());
        }
        if f.net_read_timeout.is_zero() {
            errors.push("frontend.net_read_timeout must be > 0".to_string());
        }
        if f.max_handshakes == 0 || f.max_handshakes_per_address == 0 {
            errors.push(
                "frontend.max_handshakes and max_handshakes_per_address must be > 0".to_string(),
            );
        }
        if f.failed_login_max_delay < f.failed_login_delay {
            errors.push(
                "frontend.failed_login_max_delay must be at least failed_login_delay".to_string(),
            );
        }
        if f.max_buffered < (16 << 20) + 1024 {
            errors.push(
                "frontend.max_buffered must hold at least one whole 16 MiB chunk (16778240)"
                    .to_string(),
            );
        }
        if f.max_packet_size < 1024 {
            errors.push("frontend.max_packet_size must be at least 1024".to_string());
        }
        if f.tls.cert_file.is_some() != f.tls.key_file.is_some() {
            errors.push("frontend.tls: give both cert_file and key_file, or neither".to_string());
        }
        if f.tls.required && !f.tls.enabled {
            errors.push("frontend.tls.required needs frontend.tls.enabled".to_string());
        }
        let b = &self.backend;
        if b.connect_timeout.is_zero() {
            errors.push("backend.connect_timeout must be > 0".to_string());
        }
        if b.queue_timeout.is_zero() {
            errors.push("backend.queue_timeout must be > 0".to_string());
        }
        if b.queue_max == 0 {
            errors.push("backend.queue_max must be > 0".to_string());
        }
        if b.max_prepared_statements == 0 {
            errors.push("backend.max_prepared_statements must be > 0".to_string());
        }
        if !(1..=22).contains(&b.zstd_level) {
            errors.push("backend.zstd_level must be between 1 and 22".to_string());
        }
        check_tls(&b.tls, "backend.tls", &mut errors);
        self.validate_topology(&mut errors);
        if self.users.is_empty() {
            errors.push("no [[users]]: nobody could log in".to_string());
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                errors.push(format!("users[{i}].name must not be empty"));
            }
            if sources_given(&u.password, &u.password_env, &u.password_file) > 1 {
                errors.push(format!(
                    "users[{i}] ({}): give at most one of password, password_env, password_file",
                    u.name
                ));
            }
            if self.users[..i].iter().any(|o| o.name == u.name) {
                errors.push(format!("users[{i}]: user {:?} is defined twice", u.name));
            }
            let backend = (
                &u.backend_password,
                &u.backend_password_env,
                &u.backend_password_file,
            );
            if sources_given(backend.0, backend.1, backend.2) > 1 {
                errors.push(format!(
                    "users[{i}] ({}): give at most one of backend_password, \
                     backend_password_env, backend_password_file",
                    u.name
                ));
            }
            if let Some(hg) = &u.default_hostgroup {
                if self.hostgroup(hg).is_none() {
                    errors.push(format!(
                        "users[{i}] ({}): default_hostgroup {hg:?} is not a hostgroup",
                        u.name
                    ));
                }
            }
        }
        if let Err(rule_errors) = Rules::compile(&self.query_rules) {
            errors.extend(rule_errors);
        }
        for (i, r) in self.query_rules.iter().enumerate() {
            if let Some(hg) = &r.destination {
                if self.hostgroup(hg).is_none() {
                    errors.push(format!(
                        "query_rules[{i}]: destination {hg:?} is not a hostgroup"
                    ));
                }
            }
        }
        errors.extend(self.monitor.validate());
        errors.extend(
            self.admin
                .validate(self.users.iter().map(|u| u.name.as_str())),
        );
        errors.extend(self.stats.validate());
        errors.extend(self.query_log.validate());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Settings that are valid but probably not meant (for `--check` and
    /// the start-up log).
    pub fn warnings(&self) -> Vec<String> {
        self.monitor.warnings()
    }

    /// The hostgroup called `name`.
    pub fn hostgroup(&self, name: &str) -> Option<&HostgroupConfig> {
        self.hostgroups.iter().find(|h| h.name == name)
    }

    fn validate_topology(&self, errors: &mut Vec<String>) {
        if self.hostgroups.is_empty() {
            errors.push("no [[hostgroups]]: define at least a writer hostgroup".to_string());
        }
        for (i, h) in self.hostgroups.iter().enumerate() {
            if h.name.is_empty() {
                errors.push(format!("hostgroups[{i}].name must not be empty"));
            }
            if self.hostgroups[..i].iter().any(|o| o.name == h.name) {
                errors.push(format!("hostgroups[{i}]: {:?} is defined twice", h.name));
            }
            match (h.role, &h.writer) {
                (Role::Writer, Some(_)) => errors.push(format!(
                    "hostgroups[{i}] ({}): only a reader hostgroup names a writer",
                    h.name
                )),
                (Role::Reader, _) if h.failover != FailoverConfig::default() => {
                    errors.push(format!(
                        "hostgroups[{i}] ({}): only a writer hostgroup has failover settings",
                        h.name
                    ))
                }
                (Role::Reader, Some(w))
                    if self.hostgroup(w).map(|g| g.role) != Some(Role::Writer) =>
                {
                    errors.push(format!(
                        "hostgroups[{i}] ({}): writer {w:?} is not a writer hostgroup",
                        h.name
                    ));
                }
                _ => {}
            }
        }
        if !self.hostgroups.iter().any(|h| h.role == Role::Writer) {
            errors.push("no writer hostgroup: writes would have nowhere to go".to_string());
        }
        if self.servers.is_empty() {
            errors.push("no [[servers]]".to_string());
        }
        for (i, srv) in self.servers.iter().enumerate() {
            let name = srv.name();
            if srv.host.is_empty() {
                errors.push(format!("servers[{i}] ({name}): host must not be empty"));
            }
            if self.servers[..i].iter().any(|o| o.name() == name) {
                errors.push(format!(
                    "servers[{i}]: {name:?} is defined twice (names default to host:port)"
                ));
            }
            if self.hostgroup(&srv.hostgroup).is_none() {
                errors.push(format!(
                    "servers[{i}] ({name}): hostgroup {:?} is not a hostgroup",
                    srv.hostgroup
                ));
            }
            if srv.max_connections == 0 {
                errors.push(format!(
                    "servers[{i}] ({name}): max_connections must be > 0"
                ));
            }
            if let Some(tls) = &srv.tls {
                check_tls(tls, &format!("servers[{i}].tls"), errors);
            }
            if let Some(tls) = &srv.reader_tls {
                if srv.reader.is_none() {
                    errors.push(format!(
                        "servers[{i}] ({name}): reader_tls without a reader address"
                    ));
                }
                check_tls(tls, &format!("servers[{i}].reader_tls"), errors);
            }
            if let Some(addr) = &srv.reader {
                if addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    errors.push(format!(
                        "servers[{i}] ({name}): reader {addr:?} is not host:port"
                    ));
                }
            }
        }
        for (i, p) in self.consistent_pairs.iter().enumerate() {
            let reader = self.hostgroup(&p.reader).map(|g| g.role);
            let writer = self.hostgroup(&p.writer).map(|g| g.role);
            if reader != Some(Role::Reader) {
                errors.push(format!(
                    "consistent_pairs[{i}]: reader {:?} is not a reader hostgroup",
                    p.reader
                ));
            }
            if writer != Some(Role::Writer) {
                errors.push(format!(
                    "consistent_pairs[{i}]: writer {:?} is not a writer hostgroup",
                    p.writer
                ));
            }
            if self.consistent_pairs[..i]
                .iter()
                .any(|o| o.reader == p.reader)
            {
                errors.push(format!(
                    "consistent_pairs[{i}]: reader {:?} is already paired",
                    p.reader
                ));
            }
        }
    }
}

fn check_tls(tls: &BackendTls, what: &str, errors: &mut Vec<String>) {
    let verifies = matches!(
        tls.mode,
        BackendTlsMode::VerifyCa | BackendTlsMode::VerifyIdentity
    );
    if verifies && tls.ca_file.is_none() {
        errors.push(format!(
            "{what}.mode verify_ca / verify_identity needs {what}.ca_file"
        ));
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
