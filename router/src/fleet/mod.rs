//! A fleet of routers sharing one configuration in etcd.
//!
//! | module | what |
//! |---|---|
//! | [`view`] | registrations and their flags, the peers' acknowledged sets (pure) |
//! | [`diff`] | the line diff of `fleet diff` (pure) |
//! | [`state`] | what this router knows of the fleet (shared) |
//! | [`etcd`] | the etcd connection and its few requests |
//! | [`agent`] | the running link: document followed, registration, publishing, watching |
//! | [`cli`] | `causeway-router fleet put / get / diff / status` |

pub mod agent;
pub mod cli;
pub mod diff;
pub mod etcd;
pub mod state;
pub mod view;

use std::net::SocketAddr;

use anyhow::Context;

use crate::config::EtcdConfig;

/// The first document, read before the router starts: the connection it
/// was read on (none when it came from the cache), its text and its
/// revision.
pub struct Initial {
    /// The connection (the agent goes on with it).
    pub client: Option<etcd_client::Client>,
    /// The document.
    pub text: String,
    /// Its revision.
    pub revision: i64,
}

impl std::fmt::Debug for Initial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initial")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// Reads the configuration document; a router cannot start without one
/// (see [`start_document`] for the cache).
pub async fn initial(cfg: &EtcdConfig) -> anyhow::Result<Initial> {
    let mut client = etcd::connect(cfg).await?;
    let (v, _) = etcd::get(&mut client, &cfg.key).await?;
    let v = v.with_context(|| {
        format!(
            "etcd holds no configuration at {} (publish one with `causeway-router fleet put FILE`)",
            cfg.key
        )
    })?;
    let text = String::from_utf8(v.value)
        .map_err(|_| anyhow::anyhow!("etcd:{}: not UTF-8 text", cfg.key))?;
    Ok(Initial {
        client: Some(client),
        text,
        revision: v.mod_revision,
    })
}

/// The document a router starts from: etcd's latest when it can be read
/// and `usable` says it parses and validates; else the cached last good
/// one, when `etcd.cache_file` holds one (a warning says why); else the
/// error.
pub async fn start_document(
    cfg: &EtcdConfig,
    usable: impl Fn(&Initial) -> anyhow::Result<()>,
) -> anyhow::Result<Initial> {
    let why = match initial(cfg).await {
        Ok(first) => match usable(&first) {
            Ok(()) => return Ok(first),
            Err(e) => e.context(format!("etcd:{}@{}", cfg.key, first.revision)),
        },
        Err(e) => e,
    };
    let Some(cached) = read_cache(cfg) else {
        return Err(why);
    };
    usable(&cached).context("the cached configuration")?;
    tracing::warn!(error = %format!("{why:#}"), revision = cached.revision,
        "starting from the cached configuration; etcd is followed once it answers");
    Ok(cached)
}

/// The cached document, when `etcd.cache_file` names one for this key.
fn read_cache(cfg: &EtcdConfig) -> Option<Initial> {
    let path = cfg.cache_file.as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    let (header, doc) = cli::split_header(&text);
    match header {
        Some((revision, key)) if key == cfg.key => Some(Initial {
            client: None,
            text: doc.to_string(),
            revision,
        }),
        _ => {
            tracing::warn!(path = %path.display(), "the cache file is not a configuration of this key; ignored");
            None
        }
    }
}

/// Keeps `text` at `revision` as the last good document (written whole,
/// then renamed: a crash leaves the former one).
pub fn write_cache(cfg: &EtcdConfig, text: &str, revision: i64) {
    let Some(path) = &cfg.cache_file else { return };
    let tmp = path.with_extension("tmp");
    let doc = format!(
        "# causeway fleet: revision {revision} of {}\n{text}",
        cfg.key
    );
    let res = std::fs::write(&tmp, doc).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "could not write the configuration cache");
    }
}

/// This router's id: the configured one, else host name and listen port.
pub fn router_id(cfg: &EtcdConfig, listen: SocketAddr) -> String {
    if let Some(id) = &cfg.router_id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "router".to_string());
    format!("{host}:{}", listen.port())
}

/// What this router registers, apart from its configuration revision.
pub fn registration(
    id: String,
    address: SocketAddr,
    admin: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> view::Registration {
    view::Registration {
        id,
        address: address.to_string(),
        admin: admin.map(|a| a.to_string()),
        metrics: metrics.map(|a| a.to_string()),
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        ..view::Registration::default()
    }
}

/// Waits until no other live router holds `id` (a router restarted under
/// the same id waits for its former lease to expire); fails when one
/// keeps it past the lease's time to live.
pub async fn claim_id(
    client: &mut etcd_client::Client,
    cfg: &EtcdConfig,
    id: &str,
) -> anyhow::Result<()> {
    let key = format!("{}{id}", cfg.routers_prefix());
    let deadline = tokio::time::Instant::now() + cfg.lease_ttl + std::time::Duration::from_secs(2);
    let mut warned = false;
    loop {
        let (v, _) = etcd::get(client, &key).await?;
        let Some(v) = v else { return Ok(()) };
        let other: view::Registration = serde_json::from_slice(&v.value).unwrap_or_default();
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "router id {id:?} is held by a live router (pid {} serving {}): give each router \
                 its own id (--router-id or etcd.router_id)",
                other.pid,
                other.address
            );
        }
        if !warned {
            tracing::warn!(
                id,
                other_pid = other.pid,
                "router id registered; waiting for its lease to expire"
            );
            warned = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_document_with_its_revision_and_key() {
        let dir = std::env::temp_dir().join(format!("causeway-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = EtcdConfig {
            key: "/c/config".into(),
            cache_file: Some(dir.join("cache.toml")),
            ..EtcdConfig::default()
        };
        assert!(read_cache(&cfg).is_none(), "no cache yet");
        write_cache(&cfg, "[frontend]\n", 42);
        let c = read_cache(&cfg).unwrap();
        assert_eq!((c.text.as_str(), c.revision), ("[frontend]\n", 42));
        assert!(c.client.is_none());
        // Another key's cache is not taken.
        cfg.key = "/other/config".into();
        assert!(read_cache(&cfg).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
