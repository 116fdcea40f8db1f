//! A fleet router's link to etcd, for as long as the router runs: the
//! configuration document followed, the router registered under a lease,
//! the GTIDs it acknowledged published, the other routers watched.
//!
//! ```text
//! connect ──> lease (lease_ttl) ──> get document: a later revision ──> reload_document
//!         ──> list routers/ and acknowledged/ (this router's own: inherited) ──> caught up
//!         ──> register (leased)
//!         ──> watch document, routers/, acknowledged/ from the revision read
//!               document put ──> reload_document ──> in force, or refused (kept, reported)
//!               routers/ID, acknowledged/ID ──> the fleet view, the peers' sets
//!               record changed ──> register again
//!               every publish_interval: own ∪ inherited changed ──> put acknowledged/ID (not
//!                 leased); keys of stopped routers every server has ──> deleted (CAS)
//!               keepalive every lease_ttl/3; none answered for lease_ttl ──> error
//!         any error ──> link down (the configuration in force stays) ──> backoff 0.5 s … 10 s
//!                   ──> reconnect, new lease, catch up from a fresh read
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, EventType, WatchOptions, WatchStream};

use super::etcd;
use super::state::Link;
use super::view::{self, Registration};
use crate::config::EtcdConfig;
use crate::metrics::KindLabels;
use crate::shared::Shared;

/// Follows etcd until the router stops. `client` is the connection the
/// router read its first document with (none when it started from its
/// cache: the agent connects).
pub async fn run(shared: Arc<Shared>, cfg: EtcdConfig, base: Registration, client: Option<Client>) {
    let mut client = client;
    let mut backoff = Duration::from_millis(500);
    loop {
        let c = match client.take() {
            Some(c) => Ok(c),
            None => etcd::connect(&cfg).await,
        };
        let started = Instant::now();
        let err = match c {
            Ok(c) => match follow(&shared, &cfg, &base, c).await {
                Ok(never) => match never {},
                Err(e) => e,
            },
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        shared.fleet.set_lease(None);
        let why = format!("{err:#}");
        let was_up = matches!(shared.fleet.snapshot().link, Link::Up(_));
        shared
            .fleet
            .set_link(Link::Down(std::time::SystemTime::now(), why.clone()));
        shared.metrics.fleet_etcd_connected.set(0);
        if was_up {
            tracing::error!(error = %why, "lost etcd; the configuration in force stays; reconnecting");
        } else {
            tracing::warn!(error = %why, retry_in = ?backoff, "etcd unreachable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// When a document at some revision is put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A new revision seen (watch, catch-up): only one later than the
    /// one in force, and not the one refused last.
    Newer,
    /// Asked for (SIGHUP, RELOAD): the one in force too (its secrets and
    /// certificates are read again), never an older one.
    Asked,
}

/// Puts the document at `rev` in force, or records why not (and returns
/// it). One at a time, recorded before the next.
pub async fn apply(
    shared: &Shared,
    cfg: &EtcdConfig,
    text: &[u8],
    rev: i64,
    when: When,
) -> anyhow::Result<()> {
    let _one = shared.fleet.apply_lock.lock().await;
    shared.fleet.saw_revision(rev);
    let in_force = shared.fleet.applied_revision();
    let skip = match when {
        When::Newer => rev <= in_force || shared.fleet.refused_revision() == Some(rev),
        When::Asked => rev < in_force,
    };
    if skip {
        return Ok(());
    }
    let origin = std::path::PathBuf::from(format!("etcd:{}@{rev}", cfg.key));
    let res = match std::str::from_utf8(text) {
        Ok(t) => {
            let r = shared.reload_document(t, &origin).await;
            if r.is_ok() {
                super::write_cache(cfg, t, rev);
            }
            r
        }
        Err(_) => {
            shared.metrics.reload_failures.inc();
            Err(anyhow::anyhow!("{}: not UTF-8 text", origin.display()))
        }
    };
    match &res {
        Ok(()) => {
            shared.fleet.applied(rev);
            shared.metrics.fleet_config_revision.set(rev);
            tracing::info!(key = %cfg.key, revision = rev, "configuration revision in force");
        }
        Err(e) => {
            // reload_document logged it whole.
            shared.fleet.refused(rev, format!("{e:#}"));
        }
    }
    res
}

/// Reads the document again on a connection of its own (SIGHUP, admin
/// RELOAD) and puts it in force, unless a later one is already.
pub async fn refetch(shared: &Shared, cfg: &EtcdConfig) -> anyhow::Result<()> {
    let mut client = etcd::connect(cfg).await?;
    let (doc, _) = etcd::get(&mut client, &cfg.key).await?;
    let v = doc.with_context(|| format!("etcd holds nothing at {}", cfg.key))?;
    apply(shared, cfg, &v.value, v.mod_revision, When::Asked).await
}

/// At exit: the registration's lease is revoked, so the router leaves
/// the fleet view at once (its acknowledged GTIDs stay, they have no
/// lease). Bounded: a router that cannot reach etcd leaves when the lease
/// expires.
pub async fn leave(shared: &Shared, cfg: &EtcdConfig) {
    let Some(lease) = shared.fleet.lease() else {
        return;
    };
    let revoke = async {
        let mut c = etcd::connect(cfg).await?;
        c.lease_revoke(lease).await?;
        Ok::<_, anyhow::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), revoke).await {
        Ok(Ok(())) => tracing::info!("left the fleet (lease revoked)"),
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "could not revoke the lease; the registration expires with it")
        }
        Err(_) => tracing::warn!(
            "etcd did not answer the lease revocation; the registration expires with the lease"
        ),
    }
}

enum Never {}

async fn follow(
    shared: &Arc<Shared>,
    cfg: &EtcdConfig,
    base: &Registration,
    mut client: Client,
) -> anyhow::Result<Never> {
    let id = base.id.as_str();
    let ttl = cfg.lease_ttl.as_secs().max(2) as i64;
    let lease = client
        .lease_grant(ttl, None)
        .await
        .context("granting the router's lease")?
        .id();
    let (mut keeper, mut kept) = client
        .lease_keep_alive(lease)
        .await
        .context("keeping the lease alive")?;
    shared
        .fleet
        .set_link(Link::Up(std::time::SystemTime::now()));
    shared.fleet.set_lease(Some(lease));
    shared.metrics.fleet_etcd_connected.set(1);
    tracing::info!(lease, "connected to etcd");

    // Catch up: the document, the routers, the acknowledged sets.
    let (doc, rev) = etcd::get(&mut client, &cfg.key).await?;
    match doc {
        Some(v) => {
            let _ = apply(shared, cfg, &v.value, v.mod_revision, When::Newer).await;
        }
        None => {
            tracing::warn!(key = %cfg.key, "the configuration key is missing in etcd; the configuration in force stays")
        }
    }
    let routers_prefix = cfg.routers_prefix();
    let acked_prefix = cfg.acknowledged_prefix();
    let (regs, _) = etcd::list(&mut client, &routers_prefix).await?;
    shared.fleet.set_routers(
        regs.into_iter()
            .filter_map(|(k, v, _)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect(),
    );
    shared
        .metrics
        .fleet_routers
        .set(shared.fleet.router_count() as i64);
    let (acks, _) = etcd::list(&mut client, &acked_prefix).await?;
    shared.fleet.peers(|p| {
        let before: Vec<String> = p.routers().map(str::to_string).collect();
        for r in before {
            if !acks.iter().any(|(k, ..)| *k == r) {
                p.remove(&r);
            }
        }
        for (router, doc, rev) in &acks {
            let (sets, bad) = view::parse_published(doc);
            if !bad.is_empty() {
                tracing::warn!(router = %router, problems = ?bad, "unreadable acknowledged sets");
            }
            if router == id {
                // What this router published before it (re)started: still
                // needed until every server has it.
                p.inherit(sets);
            } else {
                p.set(router, sets, !bad.is_empty(), *rev);
            }
        }
    });
    shared.fleet.set_caught_up();

    let from = rev + 1;
    let mut doc_watch = watch(&mut client, &cfg.key, from, false).await?;
    let mut routers_watch = watch(&mut client, &routers_prefix, from, true).await?;
    let mut acked_watch = watch(&mut client, &acked_prefix, from, true).await?;

    let my_key = format!("{routers_prefix}{id}");
    let my_acked = format!("{acked_prefix}{id}");
    let mut record = shared.fleet.record_changes();
    register(shared, &mut client, &my_key, base, lease).await?;
    let mut published = String::new();
    let mut keepalive = tokio::time::interval(Duration::from_secs((ttl / 3).max(1) as u64));
    let mut publish = tokio::time::interval(cfg.publish_interval);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut membership = shared.writers.subscribe();
    let mut answered = Instant::now();
    loop {
        tokio::select! {
            _ = keepalive.tick() => {
                // An etcd that stopped answering (a stalled process, a
                // partition that keeps the socket open) shows here first.
                anyhow::ensure!(
                    answered.elapsed() < cfg.lease_ttl,
                    "etcd answered no lease keepalive for {:?}",
                    answered.elapsed()
                );
                keeper.keep_alive().await.context("sending a lease keepalive")?;
                count(shared, "keepalive");
            }
            m = kept.message() => {
                let m = m.context("lease keepalive stream")?
                    .context("etcd closed the lease keepalive stream")?;
                anyhow::ensure!(m.ttl() > 0, "the router's lease expired");
                answered = Instant::now();
            }
            w = doc_watch.message() => {
                for ev in events(w, &cfg.key)? {
                    match ev {
                        (_, Some((value, rev))) => {
                            let _ = apply(shared, cfg, &value, rev, When::Newer).await;
                        }
                        (_, None) => tracing::warn!(key = %cfg.key,
                            "the configuration key was deleted in etcd; the configuration in force stays"),
                    }
                }
            }
            w = routers_watch.message() => {
                let mut gone = false;
                for (k, v) in events(w, &routers_prefix)? {
                    gone |= k == id && v.is_none();
                    let reg = v.and_then(|(v, _)| serde_json::from_slice(&v).ok());
                    shared.fleet.router_event(&k, reg);
                }
                if gone {
                    // Deleted by hand while this router lives: back.
                    register(shared, &mut client, &my_key, base, lease).await?;
                }
                shared.metrics.fleet_routers.set(shared.fleet.router_count() as i64);
            }
            w = acked_watch.message() => {
                let evs = events(w, &acked_prefix)?;
                shared.fleet.peers(|p| {
                    for (router, v) in evs {
                        if router == id {
                            if v.is_none() {
                                // Deleted by someone: published again below.
                                published.clear();
                            }
                            continue;
                        }
                        match v {
                            Some((doc, rev)) => {
                                let (sets, bad) = view::parse_published(&doc);
                                if !bad.is_empty() {
                                    tracing::warn!(router = %router, problems = ?bad,
                                        "unreadable acknowledged sets from a router; its former sets are kept");
                                }
                                p.set(&router, sets, !bad.is_empty(), rev);
                            }
                            None => p.remove(&router),
                        }
                    }
                });
            }
            r = record.changed() => {
                r.context("the router is stopping")?;
                register(shared, &mut client, &my_key, base, lease).await?;
            }
            _ = publish.tick() => {
                publish_acked(shared, &mut client, &my_acked, &mut published).await?;
                // Other routers' keys every server has: gone.
                for (router, rev) in shared.fleet.removable() {
                    let key = format!("{acked_prefix}{router}");
                    if etcd::delete_if(&mut client, &key, rev).await? {
                        count(shared, "cleanup");
                        tracing::info!(router = %router,
                            "deleted a stopped router's acknowledged GTIDs: every server has them");
                    }
                }
            }
            r = membership.changed() => {
                r.context("the router is stopping")?;
                // A writer hostgroup without a writer: what this router
                // acknowledged goes out now, not at the next tick.
                let lost_writer = shared.current().members.writer.iter().any(Option::is_none);
                if lost_writer {
                    publish_acked(shared, &mut client, &my_acked, &mut published).await?;
                }
            }
        }
    }
}

fn count(shared: &Shared, kind: &'static str) {
    shared
        .metrics
        .fleet_etcd_writes
        .get_or_create(&KindLabels { kind })
        .inc();
}

async fn register(
    shared: &Shared,
    client: &mut Client,
    key: &str,
    base: &Registration,
    lease: i64,
) -> anyhow::Result<()> {
    let rec = shared.fleet.record(base);
    let doc = serde_json::to_vec(&rec).context("encoding the registration")?;
    etcd::put_leased(client, key, doc, lease).await?;
    count(shared, "registration");
    Ok(())
}

/// Publishes what this router acknowledged (and inherited) when it
/// differs from what it published last (`published`).
async fn publish_acked(
    shared: &Shared,
    client: &mut Client,
    key: &str,
    published: &mut String,
) -> anyhow::Result<()> {
    let mut sets = shared.writers.acknowledged();
    for (c, s) in shared.fleet.inherited() {
        sets.entry(c).or_default().union_with(&s);
    }
    let doc = view::publish(&sets);
    if doc == *published || (published.is_empty() && doc == "{}") {
        return Ok(());
    }
    etcd::put(client, key, doc.clone()).await?;
    *published = doc;
    count(shared, "acknowledged");
    Ok(())
}

async fn watch(
    client: &mut Client,
    key: &str,
    from: i64,
    prefix: bool,
) -> anyhow::Result<WatchStream> {
    let mut opts = WatchOptions::new().with_start_revision(from);
    if prefix {
        opts = opts.with_prefix();
    }
    client
        .watch(key, Some(opts))
        .await
        .with_context(|| format!("watching {key} in etcd"))
}

/// The events of one watch response: (key without `prefix`, the value and
/// its revision, or `None` when deleted).
#[allow(clippy::type_complexity)]
fn events(
    w: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    prefix: &str,
) -> anyhow::Result<Vec<(String, Option<(Vec<u8>, i64)>)>> {
    let w = w
        .with_context(|| format!("watching {prefix}"))?
        .with_context(|| format!("etcd ended the watch of {prefix}"))?;
    anyhow::ensure!(
        !w.canceled(),
        "etcd cancelled the watch of {prefix}: {}",
        w.cancel_reason()
    );
    Ok(w.events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            let k = String::from_utf8_lossy(kv.key());
            let k = k.strip_prefix(prefix).unwrap_or(&k).to_string();
            Some(match ev.event_type() {
                EventType::Put => (k, Some((kv.value().to_vec(), kv.mod_revision()))),
                EventType::Delete => (k, None),
            })
        })
        .collect())
}
