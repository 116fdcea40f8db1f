//! Reader configuration: an optional TOML file, overridden by flags and
//! environment variables (see `main.rs`). Every field has a default; unknown
//! keys are rejected with their line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use causeway_common::config::ConfigError;
use causeway_common::config::{parse_toml, read_toml};
use causeway_common::secret::sources_given;
pub use causeway_common::secret::Secret;
use serde::Deserialize;

/// The whole configuration of one reader.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The mysqld this reader follows.
    pub mysql: MysqlConfig,
    /// Where and how subscribers are served.
    pub publish: PublishConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Connection to the local mysqld.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlConfig {
    /// Host of the mysqld (normally the local one).
    pub host: String,
    /// Port of the mysqld.
    pub port: u16,
    /// A user with REPLICATION SLAVE and REPLICATION CLIENT.
    pub user: String,
    /// The password, given inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (one line; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// TLS to the mysqld.
    pub tls: TlsMode,
    /// Server id used to register as a replica. Must be unique among the
    /// server's replicas; derived from the reader's instance id when unset.
    pub server_id: Option<u32>,
    /// Heartbeat period asked of the server; silence for twice this long
    /// means the connection is dead.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First delay before reconnecting; doubles up to `reconnect_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

/// TLS towards the mysqld.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP (caching_sha2_password then uses the RSA key exchange).
    #[default]
    Disabled,
    /// TLS without verifying the server certificate (sandbox, self-signed).
    Required,
    /// TLS verifying the certificate chain and host name.
    VerifyIdentity,
}

/// Subscriber-facing side.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Causeway's native protocol. Loopback unless configured otherwise.
    pub listen: SocketAddr,
    /// ProxySQL-compatible text protocol (ProxySQL's default port 6020);
    /// `None` disables it.
    pub proxysql_listen: Option<SocketAddr>,
    /// Send batched `I3`/`I4` lines to ProxySQL subscribers instead of one
    /// `I1`/`I2` line per transaction.
    pub proxysql_batched: bool,
    /// Token native subscribers must present (inline; prefer `token_env` /
    /// `token_file`). Without any token, subscribers are not authenticated
    /// and the reader refuses to listen on a non-loopback address.
    pub token: Option<Secret>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// Time between two confirmation queries under load (on average; after
    /// a quiet spell two may go back to back): deltas are coalesced over it.
    /// Zero: a new query as soon as the previous one answered (one in flight
    /// at most), the lowest delay.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Heartbeat period towards subscribers.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// At most this many subscribers at once (both protocols together).
    pub max_subscribers: usize,
    /// Messages buffered per subscriber; one that falls further behind is
    /// sent a fresh snapshot instead.
    pub subscriber_buffer: usize,
    /// A subscriber that cannot take a message for this long is dropped.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// PEM certificate chain: with `tls_key_file`, native subscribers must
    /// speak TLS. (ProxySQL's protocol has no TLS; its port stays plain.)
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `GET /metrics`; `None` disables it.
    pub listen: Option<SocketAddr>,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            host: "127.0.0.1".into(),
            port: 3306,
            user: "causeway_repl".into(),
            password: None,
            password_env: None,
            password_file: None,
            tls: TlsMode::Disabled,
            server_id: None,
            heartbeat: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6021)),
            proxysql_listen: Some(SocketAddr::from(([127, 0, 0, 1], 6020))),
            proxysql_batched: false,
            token: None,
            token_env: None,
            token_file: None,
            flush_interval: Duration::from_millis(1),
            heartbeat: Duration::from_millis(200),
            max_subscribers: 1024,
            subscriber_buffer: 1024,
            write_timeout: Duration::from_secs(5),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 6071))),
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
        let m = &self.mysql;
        if sources_given(&m.password, &m.password_env, &m.password_file) > 1 {
            errors.push(
                "mysql: give at most one of password, password_env, password_file".to_string(),
            );
        }
        if m.heartbeat.is_zero() {
            errors.push("mysql.heartbeat must be > 0".into());
        }
        if m.reconnect_min > m.reconnect_max {
            errors.push("mysql.reconnect_min must be <= mysql.reconnect_max".into());
        }
        if m.server_id == Some(0) {
            errors.push("mysql.server_id must not be 0".into());
        }
        let p = &self.publish;
        let tokens = sources_given(&p.token, &p.token_env, &p.token_file);
        let has_token = tokens > 0;
        if tokens > 1 {
            errors.push("publish: give at most one of token, token_env, token_file".into());
        }
        if !has_token && !p.listen.ip().is_loopback() {
            errors.push(format!(
                "publish.listen = {} is not loopback: set a token so subscribers authenticate",
                p.listen
            ));
        }
        if p.heartbeat.is_zero() {
            errors.push("publish.heartbeat must be > 0".into());
        }
        if p.max_subscribers == 0 {
            errors.push("publish.max_subscribers must be > 0".into());
        }
        if p.subscriber_buffer == 0 {
            errors.push("publish.subscriber_buffer must be > 0".into());
        }
        if p.tls_cert_file.is_some() != p.tls_key_file.is_some() {
            errors.push("publish: tls_cert_file and tls_key_file go together".into());
        }
        if Some(p.listen) == p.proxysql_listen {
            errors.push("publish.listen and publish.proxysql_listen are the same address".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_that_validate() {
        let c = Config::from_toml("", Path::new("r.toml")).unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
        assert!(c.publish.listen.ip().is_loopback());
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dist/reader.example.toml"
        ));
        let c = Config::from_file(path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.publish.listen, Config::default().publish.listen);
        assert!(c.publish.token_file.is_some());
    }

    #[test]
    fn durations_are_typed() {
        let c = Config::from_toml(
            "[publish]\nflush_interval = \"300us\"\n[mysql]\nheartbeat = \"2s\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(c.publish.flush_interval, Duration::from_micros(300));
        assert_eq!(c.mysql.heartbeat, Duration::from_secs(2));
    }

    // The message format (`path:line:column: message`) is
    // causeway_common::config's; here: unknown keys are refused.
    #[test]
    fn unknown_key_is_refused_at_its_line() {
        let err =
            Config::from_toml("[mysql]\nport = 3306\nprot = 1\n", Path::new("c.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn validate_collects_every_error() {
        let mut c = Config::default();
        c.publish.listen = "0.0.0.0:6021".parse().unwrap();
        c.publish.heartbeat = Duration::ZERO;
        c.mysql.server_id = Some(0);
        let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("server_id"));
        assert!(errors.iter().any(|e| e.contains("not loopback")));
    }

    #[test]
    fn a_token_allows_a_public_listener() {
        let mut c = Config::default();
        c.publish.listen = "0.0.0.0:6021".parse().unwrap();
        c.publish.token = Some(Secret("t".into()));
        c.validate().unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let mut c = Config::default();
        c.mysql.password = Some(Secret("hunter2".into()));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
