//! The `[monitor]` section: how the router checks its backend servers.

use std::path::PathBuf;
use std::time::Duration;

use causeway_common::secret::{resolve_secret, sources_given, SecretError};
use serde::Deserialize;

use super::Secret;

/// The `[monitor]` section: how the router checks its backend servers.
///
/// ```toml
/// [monitor]
/// interval = "1s"
/// user = "causeway_monitor"
/// password_env = "CAUSEWAY_MONITOR_PASSWORD"
/// shun_after_errors = 3
/// ```
/// The monitor user needs `REPLICATION CLIENT` for `SHOW REPLICA STATUS`
/// (or set `lag_check = false`). A server that refuses the monitor's login
/// or queries (1045 access denied, 1227 a missing privilege, ...) is not
/// shunned: the monitor is misconfigured, the server is not down (see
/// [`crate::health`]); it is logged at error level and shown by
/// `causeway_router_monitor_misconfigured`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Check the servers. When off, every server stays unknown and the
    /// router goes by the configured roles.
    pub enabled: bool,
    /// Time between two checks of one server.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on each step of opening the monitor's connection: TCP connect,
    /// the server's greeting, login.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on each check query.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// The MySQL user the monitor logs in as.
    pub user: String,
    /// Give the password with one of the three below; with none, the
    /// monitor logs in without a password (`--check` warns).
    /// Its password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one line; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// A server is shunned (no new traffic) after this many checks in a row
    /// it did not answer (connect refused or timed out, lost connection,
    /// 1040 too many connections, ...), and back on the first check that
    /// succeeds. Refusals of the monitor's login or queries do not count.
    pub shun_after_errors: u32,
    /// A writable server is also shunned once it has not answered for this
    /// long (from the start of the first failed check in a row), whatever
    /// the count; while a server's checks fail they come every
    /// `shun_after / 4` (at most every `interval`). `0s`: only
    /// `shun_after_errors` counts. Read-only servers are shunned by count
    /// only: their `SHOW REPLICA STATUS` may block while replication is
    /// being reconfigured.
    #[serde(with = "humantime_serde")]
    pub shun_after: Duration,
    /// Read `read_only` and `super_read_only` (a server with either on does
    /// not take writes).
    pub read_only_check: bool,
    /// Read `SHOW REPLICA STATUS`. Needed for shunning replicas that lag
    /// more than their `max_lag` or whose replication stopped.
    pub lag_check: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            user: "causeway_monitor".into(),
            password: None,
            password_env: None,
            password_file: None,
            shun_after_errors: 3,
            shun_after: Duration::from_secs(1),
            read_only_check: true,
            lag_check: true,
        }
    }
}

impl MonitorConfig {
    /// Every problem with this section (empty when it is fine).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (what, d) in [
            ("interval", self.interval),
            ("connect_timeout", self.connect_timeout),
            ("query_timeout", self.query_timeout),
        ] {
            if d.is_zero() {
                errors.push(format!("monitor.{what} must be > 0"));
            }
        }
        if self.shun_after_errors == 0 {
            errors.push("monitor.shun_after_errors must be at least 1".to_string());
        }
        if self.enabled && self.user.is_empty() {
            errors.push("monitor.user must not be empty".to_string());
        }
        if sources_given(&self.password, &self.password_env, &self.password_file) > 1 {
            errors.push(
                "monitor: give at most one of password, password_env, password_file".to_string(),
            );
        }
        errors
    }

    /// Settings that are valid but probably not meant: the monitor is on
    /// and no password source is given, so it logs in without a password
    /// (what a configuration without a `[monitor]` section does).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.enabled
            && sources_given(&self.password, &self.password_env, &self.password_file) == 0
        {
            warnings.push(format!(
                "monitor: no password for the monitor user {:?}: set monitor.password_env or \
                 monitor.password_file (or monitor.password) to its password, or \
                 monitor.enabled = false; without one, a server that refuses the login is \
                 not checked (its role, lag and outages go unseen)",
                self.user
            ));
        }
        warnings
    }

    /// The password from whichever source is given (empty when none is).
    pub fn resolve_password(&self) -> Result<Vec<u8>, SecretError> {
        let pw = resolve_secret(
            "monitor password",
            &self.password,
            &self.password_env,
            &self.password_file,
        )?;
        Ok(pw.map(String::into_bytes).unwrap_or_default())
    }
}
