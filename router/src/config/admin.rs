//! The `[admin]` section of the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use causeway_common::secret::Secret;
use serde::Deserialize;

use super::AuthPlugin;

/// The `[admin]` section: the operators' SQL interface (MySQL protocol).
///
/// ```toml
/// [admin]
/// listen = "127.0.0.1:6032"
/// [[admin.users]]
/// name = "admin"
/// password_env = "CAUSEWAY_ADMIN_PASSWORD"
/// ```
/// It listens only when `enabled` and at least one admin user is defined.
/// Admin users are not application users: they log in to this listener
/// only, and no application user logs in here.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin interface (when it has users).
    pub enabled: bool,
    /// Where it listens (changes at restart only).
    pub listen: SocketAddr,
    /// At most this many admin sessions at once; more get ERR 1040.
    pub max_connections: usize,
    /// A query on the admin tables that runs longer ends with ERR 3024.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Who may log in.
    pub users: Vec<AdminUserConfig>,
}

/// Which listener a client came in through: each has its own users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// The application port: `[[users]]`.
    App,
    /// The admin interface: `[[admin.users]]`.
    Admin,
}

/// One operator who may log in to the admin interface.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminUserConfig {
    /// User name (not an application user's).
    pub name: String,
    /// The password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// The plugin it authenticates with.
    pub auth_plugin: AuthPlugin,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 6032)),
            max_connections: 64,
            query_timeout: Duration::from_secs(10),
            users: Vec::new(),
        }
    }
}

impl AdminConfig {
    /// Whether the listener runs.
    pub fn serves(&self) -> bool {
        self.enabled && !self.users.is_empty()
    }

    /// Problems with the section (`app_users`: the application users'
    /// names, which admin users must not reuse).
    pub fn validate<'a>(&self, app_users: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_connections == 0 {
            errors.push("admin.max_connections must be > 0".to_string());
        }
        if self.query_timeout.is_zero() {
            errors.push("admin.query_timeout must be > 0".to_string());
        }
        let app: std::collections::HashSet<&str> = app_users.collect();
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                errors.push(format!("admin.users[{i}].name must not be empty"));
            }
            if !seen.insert(u.name.as_str()) {
                errors.push(format!(
                    "admin.users[{i}]: user {:?} is defined twice",
                    u.name
                ));
            }
            if app.contains(u.name.as_str()) {
                errors.push(format!(
                    "admin.users[{i}]: {:?} is also an application user ([[users]]); give \
                     operators their own names",
                    u.name
                ));
            }
            if causeway_common::secret::sources_given(
                &u.password,
                &u.password_env,
                &u.password_file,
            ) != 1
            {
                errors.push(format!(
                    "admin.users[{i}] ({}): give exactly one of password, password_env, \
                     password_file",
                    u.name
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    const BASE: &str = "[[hostgroups]]\nname = \"w\"\n[[servers]]\nhostgroup = \"w\"\n\
                        [[users]]\nname = \"app\"\npassword = \"pw\"\n";

    #[test]
    fn the_admin_listener_needs_users_and_their_own_names() {
        let c = Config::from_toml(BASE, Path::new("r.toml")).unwrap();
        assert!(!c.admin.serves(), "no admin users: no listener");
        assert_eq!(c.admin.listen.port(), 6032);
        let text = format!(
            "{BASE}[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.users]]\nname = \"ops\"\n\
             password = \"x\"\n"
        );
        let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
        c.validate().unwrap();
        assert!(c.admin.serves());
        let text = format!(
            "{BASE}[[admin.users]]\nname = \"app\"\npassword = \"x\"\n\
             [[admin.users]]\nname = \"nopw\"\n"
        );
        let c = Config::from_toml(&text, Path::new("r.toml")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("also an application user"), "{err}");
        assert!(
            err.contains("admin.users[1] (nopw): give exactly one"),
            "{err}"
        );
    }
}
