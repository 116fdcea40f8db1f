//! The etcd connection: endpoints, TLS, authentication, bounded requests;
//! and the few reads and writes the fleet makes.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp,
};

use crate::config::EtcdConfig;

/// Connects to etcd as `cfg` says (TLS and user when configured).
pub async fn connect(cfg: &EtcdConfig) -> anyhow::Result<Client> {
    let urls = cfg.urls().map_err(anyhow::Error::msg)?;
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.timeout)
        .with_timeout(cfg.timeout)
        .with_keep_alive(Duration::from_secs(5), cfg.timeout)
        .with_keep_alive_while_idle(true)
        // A member cut from the others' quorum answers nothing fresh:
        // requests and watches on it fail instead of stalling.
        .with_require_leader(true)
        // etcd's auth tokens expire; the client gets a new one.
        .with_auto_token_refresh(true);
    if let Some(user) = &cfg.user {
        let password = cfg.resolve_password()?.unwrap_or_default();
        if !cfg.tls() {
            tracing::warn!(user = %user, "the etcd password goes over plain http: configure TLS (etcd.ca_file)");
        }
        opts = opts.with_user(user.clone(), password);
    }
    if cfg.tls() {
        let mut tls = TlsOptions::new();
        // validate() requires it with TLS.
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            let c = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let k = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            tls = tls.identity(Identity::from_pem(c, k));
        }
        opts = opts.with_tls(tls);
    }
    let endpoints = urls.join(", ");
    tokio::time::timeout(cfg.timeout * 2, Client::connect(urls, Some(opts)))
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to etcd at {endpoints}"))
}

/// A value and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The bytes.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// The value under `key`, and the store's revision the read saw.
pub async fn get(client: &mut Client, key: &str) -> anyhow::Result<(Option<Value>, i64)> {
    let resp = client
        .get(key, None)
        .await
        .with_context(|| format!("reading {key} from etcd"))?;
    let rev = resp.header().map_or(0, |h| h.revision());
    let v = resp.kvs().first().map(|kv| Value {
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    });
    Ok((v, rev))
}

/// Every key under `prefix` with its value and revision (the prefix
/// stripped), and the store's revision the read saw.
#[allow(clippy::type_complexity)]
pub async fn list(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<(Vec<(String, Vec<u8>, i64)>, i64)> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .with_context(|| format!("listing {prefix} in etcd"))?;
    let rev = resp.header().map_or(0, |h| h.revision());
    let items = resp
        .kvs()
        .iter()
        .map(|kv| {
            let k = String::from_utf8_lossy(kv.key());
            (
                k.strip_prefix(prefix).unwrap_or(&k).to_string(),
                kv.value().to_vec(),
                kv.mod_revision(),
            )
        })
        .collect();
    Ok((items, rev))
}

/// Puts `value` under `key` attached to `lease`.
pub async fn put_leased(
    client: &mut Client,
    key: &str,
    value: impl Into<Vec<u8>>,
    lease: i64,
) -> anyhow::Result<()> {
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .with_context(|| format!("writing {key} to etcd"))?;
    Ok(())
}

/// Puts `value` under `key` (no lease: it outlives the router).
pub async fn put(client: &mut Client, key: &str, value: impl Into<Vec<u8>>) -> anyhow::Result<()> {
    client
        .put(key, value, None)
        .await
        .with_context(|| format!("writing {key} to etcd"))?;
    Ok(())
}

/// Deletes `key` only if its last change is `rev`; whether it did.
pub async fn delete_if(client: &mut Client, key: &str, rev: i64) -> anyhow::Result<bool> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::delete(key, None)]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("deleting {key} from etcd"))?;
    Ok(resp.succeeded())
}

/// How a compare-and-swap put ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// Written; the new revision.
    Written(i64),
    /// The key's revision was not the one expected: this one is (0: the
    /// key does not exist).
    Conflict(i64),
}

/// Puts `value` under `key` only if the key's last change is `expected`
/// (0: only if the key does not exist).
pub async fn put_if(
    client: &mut Client,
    key: &str,
    value: impl Into<Vec<u8>>,
    expected: i64,
) -> anyhow::Result<Cas> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("writing {key} to etcd"))?;
    if resp.succeeded() {
        return Ok(Cas::Written(resp.header().map_or(0, |h| h.revision())));
    }
    let now = resp
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => {
                Some(g.kvs().first().map_or(0, |kv| kv.mod_revision()))
            }
            _ => None,
        })
        .unwrap_or(0);
    Ok(Cas::Conflict(now))
}
