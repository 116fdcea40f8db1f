//! Where a router of a fleet finds its configuration: an etcd key. Given
//! on the command line (`--config-etcd`, `--config-key`, ...), in the
//! environment, or as the only table of a local file:
//!
//! ```toml
//! [etcd]
//! endpoints = ["https://etcd1:2379", "https://etcd2:2379"]
//! key = "/causeway/prod/config"
//! user = "causeway"
//! password_env = "CAUSEWAY_ETCD_PASSWORD"
//! ca_file = "/etc/causeway/etcd-ca.pem"
//! ```
//!
//! The document under `key` is the same TOML as a configuration file.
//! Each router also writes, under `key`, its registration
//! (`key/routers/ID`) and the GTIDs it acknowledged
//! (`key/acknowledged/ID`), both attached to its lease.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use causeway_common::config::ConfigError;
use causeway_common::secret::{resolve_secret, sources_given, Secret, SecretError};
use serde::Deserialize;

/// The `[etcd]` table: how to reach etcd and which key holds the
/// configuration.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://host:port`, `https://host:port`, or
    /// `host:port` for plain HTTP).
    pub endpoints: Vec<String>,
    /// The key holding the configuration document.
    pub key: String,
    /// etcd user (etcd's own authentication); none when etcd has auth off.
    pub user: Option<String>,
    /// Its password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) that etcd's server certificate must chain to;
    /// setting it, or a client certificate, turns TLS on.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's certificate authentication.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Bound on connecting to etcd and on each request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The router's registration lives this long after its last keepalive:
    /// a router that dies leaves the fleet view after at most this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// The acknowledged GTIDs are published at most this often (and at
    /// once when a writer hostgroup loses its writer).
    #[serde(with = "humantime_serde")]
    pub publish_interval: Duration,
    /// This router's name in the fleet (default: host name and listen
    /// port). Two live routers must not share one.
    pub router_id: Option<String>,
    /// The last document put in force is kept in this file (with its
    /// revision on the first line): a router that starts while etcd is
    /// unreachable, or while the latest revision is one it refuses, starts
    /// from it and catches up once etcd answers. None: no cache.
    pub cache_file: Option<PathBuf>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            key: String::new(),
            user: None,
            password: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(10),
            publish_interval: Duration::from_millis(100),
            router_id: None,
            cache_file: None,
        }
    }
}

/// What a router's command line sets over its configuration: applied to
/// the configuration it starts with and to every one reloaded (the routers
/// of a fleet share one document but listen on their own addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `frontend.listen`.
    pub listen: Option<SocketAddr>,
    /// `metrics.enabled` and `metrics.listen`.
    pub metrics_listen: Option<Listen>,
    /// `admin.enabled` and `admin.listen`.
    pub admin_listen: Option<Listen>,
}

/// A listener's address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Not listening.
    Off,
    /// Listening there.
    At(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(v: &str) -> Result<Self, String> {
        if v.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        v.parse()
            .map(Listen::At)
            .map_err(|_| format!("{v:?} is not host:port or \"off\""))
    }
}

impl Overrides {
    /// Sets what the command line gave.
    pub fn apply(&self, cfg: &mut super::Config) {
        if let Some(v) = self.listen {
            cfg.frontend.listen = v;
        }
        let (m, a) = (&mut cfg.metrics, &mut cfg.admin);
        set(self.metrics_listen, &mut m.enabled, &mut m.listen);
        set(self.admin_listen, &mut a.enabled, &mut a.listen);
    }
}

/// A listener's `enabled` and `listen` as `over` says (unchanged when
/// `None`).
fn set(over: Option<Listen>, enabled: &mut bool, listen: &mut SocketAddr) {
    match over {
        Some(Listen::Off) => *enabled = false,
        Some(Listen::At(a)) => {
            *enabled = true;
            *listen = a;
        }
        None => {}
    }
}

/// A local file that holds only `[etcd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bootstrap {
    etcd: EtcdConfig,
}

impl EtcdConfig {
    /// Reads `[etcd]` from a file that holds nothing else; `None` when the
    /// file has no `[etcd]` table (an ordinary configuration file).
    pub fn from_bootstrap(text: &str, path: &std::path::Path) -> Result<Option<Self>, ConfigError> {
        let has_etcd = text
            .parse::<toml::Table>()
            .map(|t| t.contains_key("etcd"))
            .unwrap_or(false);
        if !has_etcd {
            return Ok(None);
        }
        let b: Bootstrap =
            causeway_common::config::parse_toml(text, path).map_err(|e| match e {
                ConfigError::Parse {
                    path,
                    line,
                    column,
                    message,
                } => ConfigError::Parse {
                    path,
                    line,
                    column,
                    message: format!(
                        "{message} (a file with an [etcd] table holds only that table: the \
                     configuration itself lives in etcd)"
                    ),
                },
                e => e,
            })?;
        Ok(Some(b.etcd))
    }

    /// Checks everything, collecting every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.endpoints.is_empty() {
            errors.push("etcd.endpoints: give at least one etcd endpoint".to_string());
        }
        for e in &self.endpoints {
            if let Err(why) = endpoint_url(e, self.tls()) {
                errors.push(format!("etcd.endpoints: {why}"));
            }
        }
        if !self.key.starts_with('/') || self.key.len() < 2 {
            errors.push(format!(
                "etcd.key {:?} must be an absolute key such as \"/causeway/prod/config\"",
                self.key
            ));
        }
        if sources_given(&self.password, &self.password_env, &self.password_file) > 1 {
            errors.push(
                "etcd: give at most one of password, password_env, password_file".to_string(),
            );
        }
        if self.user.is_none()
            && sources_given(&self.password, &self.password_env, &self.password_file) > 0
        {
            errors.push("etcd: a password without etcd.user".to_string());
        }
        if self.tls() && self.ca_file.is_none() {
            errors.push(
                "etcd: TLS needs etcd.ca_file, the CA etcd's certificate chains to (for a public \
                 CA: /etc/ssl/certs/ca-certificates.crt)"
                    .to_string(),
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push("etcd: cert_file and key_file go together".to_string());
        }
        if self.timeout.is_zero() {
            errors.push("etcd.timeout must be > 0".to_string());
        }
        if self.lease_ttl < Duration::from_secs(2) {
            errors.push("etcd.lease_ttl must be at least 2s".to_string());
        }
        if self.publish_interval.is_zero() {
            errors.push("etcd.publish_interval must be > 0".to_string());
        }
        if let Some(id) = &self.router_id {
            if id.is_empty() || id.contains('/') {
                errors.push(format!(
                    "etcd.router_id {id:?} must be non-empty and hold no '/'"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The endpoints as URLs.
    pub fn urls(&self) -> Result<Vec<String>, String> {
        let tls = self.tls();
        self.endpoints
            .iter()
            .map(|e| endpoint_url(e, tls))
            .collect()
    }

    /// The etcd password, when a user is set.
    pub fn resolve_password(&self) -> Result<Option<String>, SecretError> {
        resolve_secret(
            "etcd password",
            &self.password,
            &self.password_env,
            &self.password_file,
        )
    }

    /// Where routers register.
    pub fn routers_prefix(&self) -> String {
        format!("{}/routers/", self.key)
    }

    /// Where routers publish what they acknowledged.
    pub fn acknowledged_prefix(&self) -> String {
        format!("{}/acknowledged/", self.key)
    }
}

/// `host:port` → `http://host:port` (`https` with TLS); a URL stays, but
/// its scheme must agree with the TLS settings.
fn endpoint_url(e: &str, tls: bool) -> Result<String, String> {
    let (scheme, rest) = match e.split_once("://") {
        Some((s, r)) => (s, r),
        None => (if tls { "https" } else { "http" }, e),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("{e:?}: the scheme must be http or https"));
    }
    if scheme == "http" && tls {
        return Err(format!(
            "{e:?} is plain http but TLS is configured (ca_file, cert_file or another https endpoint)"
        ));
    }
    let port_ok = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("{e:?} is not host:port or a URL with a port"));
    }
    Ok(format!("{scheme}://{}", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(endpoints: &[&str]) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            key: "/causeway/test/config".into(),
            ..EtcdConfig::default()
        }
    }

    #[test]
    fn endpoints_become_urls_with_the_scheme_tls_asks_for() {
        assert_eq!(
            conf(&["127.0.0.1:2379", "http://e2:2379/"]).urls().unwrap(),
            ["http://127.0.0.1:2379", "http://e2:2379"]
        );
        let mut c = conf(&["e1:2379"]);
        c.ca_file = Some("/ca.pem".into());
        assert_eq!(c.urls().unwrap(), ["https://e1:2379"]);
        c.endpoints.push("http://e2:2379".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("plain http but TLS"), "{err}");
    }

    #[test]
    fn every_problem_is_reported() {
        let c = EtcdConfig {
            endpoints: vec!["nope".into(), "ftp://x:1".into()],
            key: "relative".into(),
            password: Some(Secret("pw".into())),
            cert_file: Some("/c.pem".into()),
            lease_ttl: Duration::from_secs(1),
            router_id: Some("a/b".into()),
            ..EtcdConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        for want in [
            "\"nope\" is not host:port",
            "scheme must be http or https",
            "must be an absolute key",
            "a password without etcd.user",
            "cert_file and key_file go together",
            "lease_ttl must be at least 2s",
            "TLS needs etcd.ca_file",
            "router_id \"a/b\"",
        ] {
            assert!(err.contains(want), "{want:?} missing from {err}");
        }
        assert!(conf(&["127.0.0.1:2379"]).validate().is_ok());
    }

    #[test]
    fn the_command_line_sets_its_listeners_over_the_document() {
        let mut cfg = super::super::Config::default();
        let before = cfg.clone();
        Overrides::default().apply(&mut cfg);
        assert_eq!(cfg, before, "nothing given, nothing changed");
        let at: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        Overrides {
            listen: Some(at),
            metrics_listen: Some(Listen::At(at)),
            admin_listen: Some(Listen::Off),
        }
        .apply(&mut cfg);
        assert_eq!(cfg.frontend.listen, at);
        assert!(cfg.metrics.enabled && cfg.metrics.listen == at);
        assert!(!cfg.admin.enabled && cfg.admin.listen == before.admin.listen);
    }

    #[test]
    fn a_bootstrap_file_holds_only_the_etcd_table() {
        let p = std::path::Path::new("router.toml");
        assert!(EtcdConfig::from_bootstrap("[frontend]\n", p)
            .unwrap()
            .is_none());
        let c = EtcdConfig::from_bootstrap(
            "[etcd]\nendpoints = [\"127.0.0.1:2379\"]\nkey = \"/c\"\nlease_ttl = \"3s\"\n",
            p,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(3));
        let err = EtcdConfig::from_bootstrap("[etcd]\nkey = \"/c\"\n[frontend]\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("router.toml:3"), "{err}");
        assert!(err.contains("holds only that table"), "{err}");
    }
}
