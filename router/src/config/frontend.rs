//! The `[frontend]` section: the client-facing side (listener, limits,
//! timeouts, logins, TLS towards clients).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Client-facing side.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
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
    /// Once a command has begun to arrive, the rest of each of its packets
    /// must arrive within this time, like MySQL's `net_read_timeout`
    /// (ERR 1159 and the session ends).
    #[serde(with = "humantime_serde")]
    pub net_read_timeout: Duration,
    /// At most this many logged-in client sessions at once; more are
    /// refused with ERR 1040 "Too many connections". Logins in progress
    /// do not count: they have their own limits below.
    pub max_connections: usize,
    /// At most this many connections in the login phase at once, so that
    /// silent or slow sockets never lock out real use: more wait for their
    /// turn (up to `handshake_timeout`, then ERR 1040).
    pub max_handshakes: usize,
    /// At most this many of those from one client address.
    pub max_handshakes_per_address: usize,
    /// After this many failed logins in a row for a user from one client
    /// address, each further attempt's answer is delayed, as MySQL's
    /// `connection_control` does (0: never).
    pub failed_login_threshold: u32,
    /// The first such delay; each further failure adds as much again.
    #[serde(with = "humantime_serde")]
    pub failed_login_delay: Duration,
    /// The delay never exceeds this.
    #[serde(with = "humantime_serde")]
    pub failed_login_max_delay: Duration,
    /// Bytes of partly received client packets held across all sessions
    /// (each session holds at most one chunk of 16 MiB); a session whose
    /// packet would take more gets ERR 1153 and is closed.
    pub max_buffered: usize,
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
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullAuth {
    /// Like MySQL: the first login of each user since the router started,
    /// then the fast path.
    #[default]
    FirstLogin,
    /// Every login.
    Always,
    /// Only when the fast scramble does not match (the router knows the
    /// passwords, so a right scramble always passes the fast path).
    Never,
}

/// TLS towards clients.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
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

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6033)),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(8 * 3600),
            net_write_timeout: Duration::from_secs(60),
            net_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_handshakes: 256,
            max_handshakes_per_address: 64,
            failed_login_threshold: 3,
            failed_login_delay: Duration::from_secs(1),
            failed_login_max_delay: Duration::from_secs(30),
            max_buffered: 256 << 20,
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
