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

/// The whole configuration of one router.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The client-facing side.
    pub frontend: FrontendConfig,
    /// The MySQL server every session is passed through to.
    pub backend: BackendConfig,
    /// Users clients may log in as (the router logs in to the backend with
    /// the same name and password).
    pub users: Vec<UserConfig>,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Client-facing side.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// Address clients connect to.
    pub listen: SocketAddr,
    /// A client must finish the handshake (TLS and authentication included)
    /// within this time.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A session idle (no command) for this long is closed, like MySQL's
    /// `wait_timeout`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A write to a client (a result, an ERR) that cannot complete within
    /// this time, because the client stopped reading, ends the session,
    /// like MySQL's `net_write_timeout`. Also bounds writes to the backend
    /// and closing either connection.
    #[serde(with = "humantime_serde")]
    pub net_write_timeout: Duration,
    /// At most this many client sessions at once; more are refused with
    /// ERR 1040 "Too many connections".
    pub max_connections: usize,
    /// Largest logical packet accepted from a client, in bytes (MySQL's
    /// `max_allowed_packet` upper bound is 1 GiB).
    pub max_packet_size: usize,
    /// When a `caching_sha2_password` login must do full authentication
    /// (password over TLS or RSA) instead of the fast scramble path.
    pub caching_sha2_full_auth: FullAuth,
    /// PKCS#8 PEM private key for the caching_sha2 RSA exchange (e.g. a
    /// MySQL `private_key.pem`); generated at first use when unset.
    pub rsa_private_key_file: Option<PathBuf>,
    /// TLS towards clients.
    pub tls: FrontendTls,
}

/// When caching_sha2_password logins take the full-authentication path.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullAuth {
    /// Like MySQL: the first login of each user since the router started,
    /// then the fast path.
    #[default]
    FirstLogin,
    /// Every login.
    Always,
    /// Never (the router knows the passwords, so the fast path always works).
    Never,
}

/// TLS towards clients.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendTls {
    /// Offer TLS to clients (`CLIENT_SSL`).
    pub enabled: bool,
    /// Refuse clients that do not switch to TLS (like
    /// `require_secure_transport`).
    pub required: bool,
    /// PEM certificate chain; with `key_file`. Unset: a self-signed
    /// certificate is generated at startup (and a warning logged).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// The backend MySQL server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TCP connect plus greeting timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// TLS towards the backend.
    pub tls: BackendTls,
}

/// TLS towards the backend.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BackendTls {
    /// Whether and how to verify the backend.
    pub mode: BackendTlsMode,
    /// PEM CA bundle for `verify_ca` / `verify_identity`.
    pub ca_file: Option<PathBuf>,
    /// Name checked against the certificate with `verify_identity`
    /// (default: `backend.host`).
    pub server_name: Option<String>,
}

/// TLS modes towards the backend, named like the mysql client's `--ssl-mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// User name (also used towards the backend).
    pub name: String,
    /// The password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one line; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// The plugin clients authenticate to the router with.
    pub auth_plugin: AuthPlugin,
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Address of `GET /metrics`.
    pub listen: SocketAddr,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6033)),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(8 * 3600),
            net_write_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_packet_size: 1 << 30,
            caching_sha2_full_auth: FullAuth::FirstLogin,
            rsa_private_key_file: None,
            tls: FrontendTls::default(),
        }
    }
}

impl Default for FrontendTls {
    fn default() -> Self {
        FrontendTls {
            enabled: true,
            required: false,
            cert_file: None,
            key_file: None,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            host: "127.0.0.1".into(),
            port: 3306,
            connect_timeout: Duration::from_secs(5),
            tls: BackendTls::default(),
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
        if b.host.is_empty() {
            errors.push("backend.host must not be empty".to_string());
        }
        if b.connect_timeout.is_zero() {
            errors.push("backend.connect_timeout must be > 0".to_string());
        }
        let verifies = matches!(
            b.tls.mode,
            BackendTlsMode::VerifyCa | BackendTlsMode::VerifyIdentity
        );
        if verifies && b.tls.ca_file.is_none() {
            errors.push(
                "backend.tls.mode verify_ca / verify_identity needs backend.tls.ca_file"
                    .to_string(),
            );
        }
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

    const MINIMAL: &str = "[[users]]\nname = \"app\"\npassword = \"pw\"\n";

    #[test]
    fn defaults_listen_on_6033_and_validate_with_a_user() {
        let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.frontend.listen.port(), 6033);
        assert_eq!(c.backend.port, 3306);
        assert_eq!(c.users[0].auth_plugin, AuthPlugin::CachingSha2Password);
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/router.toml");
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.frontend.idle_timeout, Duration::from_secs(8 * 3600));
    }

    // The message format (`path:line:column: message`) is
    // causeway_common::config's; here: unknown keys are refused.
    #[test]
    fn unknown_key_is_refused_at_its_line() {
        let err = Config::from_toml("[backend]\nport = 3306\nprot = 1\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn validate_collects_every_error() {
        let text = "[frontend]\nidle_timeout = \"0s\"\n[frontend.tls]\ncert_file = \"c.pem\"\n\
                    [[users]]\nname = \"a\"\npassword = \"x\"\npassword_env = \"Y\"\n\
                    [[users]]\nname = \"a\"\n";
        let c = Config::from_toml(text, Path::new("r.toml")).unwrap();
        let ConfigError::Invalid(errors) = c.validate().unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::from_toml(MINIMAL, Path::new("r.toml")).unwrap();
        assert!(!format!("{c:?}").contains("\"pw\""));
    }
}
