//! The primary's executed set for `global` reads, fetched once per batch.
//!
//! A `global` read must see every transaction committed on the primary
//! before the read began, so it needs `@@global.gtid_executed` from the
//! primary as of a moment *after* it arrived: one round trip. Concurrent
//! global reads share it: one task per (server, backend user) takes every
//! request queued while its previous fetch ran and answers all of them with
//! one new fetch. A request never gets an answer from a fetch that started
//! before it was queued.
//!
//! ```text
//! requests --queue--> [task] recv one, drain the rest --> SELECT @@global.gtid_executed --> reply to all
//! ```
//! Cost: a global read waits for one fetch (a round trip to the primary,
//! plus at most the rest of the fetch already running when it arrived),
//! then reads on a replica that has that set; under load, one fetch serves
//! every global read that arrived during the previous one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use causeway_gtid::GtidSet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::backend::connect::Endpoint;
use crate::monitor::Conn;

const SQL: &str = "SELECT @@global.gtid_executed";

type Reply = oneshot::Sender<Result<GtidSet, String>>;
/// A fetch task's queue and handle.
type Task = (mpsc::UnboundedSender<Reply>, AbortHandle);

/// The fetch tasks, by server and user.
#[derive(Default)]
pub struct GlobalSets {
    tasks: Mutex<HashMap<(String, String), Task>>,
}

impl std::fmt::Debug for GlobalSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalSets").finish_non_exhaustive()
    }
}

/// How to reach the primary, as one user.
#[derive(Clone)]
pub struct FetchLogin {
    /// The primary now.
    pub endpoint: Endpoint,
    /// The backend user.
    pub user: String,
    /// Its password.
    pub password: Vec<u8>,
    /// Bound on the fetch's login and query.
    pub timeout: Duration,
}

impl std::fmt::Debug for FetchLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchLogin")
            .field("server", &self.endpoint.name)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl GlobalSets {
    /// The primary's executed set, fetched after this call began. Needs a
    /// Tokio runtime.
    pub async fn fetch(&self, login: &FetchLogin) -> Result<GtidSet, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            let ep = &login.endpoint;
            let key = (
                format!("{}@{}:{}", ep.name, ep.host, ep.port),
                login.user.clone(),
            );
            let alive = tasks.get(&key).is_some_and(|(q, _)| !q.is_closed());
            if !alive {
                let (q, requests) = mpsc::unbounded_channel();
                let task = tokio::spawn(serve(login.clone(), requests)).abort_handle();
                tasks.insert(key.clone(), (q, task));
            }
            if let Some((q, _)) = tasks.get(&key) {
                q.send(tx)
                    .map_err(|_| "the fetch task stopped".to_string())?;
            }
        }
        tokio::time::timeout(login.timeout * 2, rx)
            .await
            .map_err(|_| format!("no answer from the primary within {:?}", login.timeout * 2))?
            .map_err(|_| "the fetch task stopped".to_string())?
    }
}

impl Drop for GlobalSets {
    fn drop(&mut self) {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, task) in tasks.values() {
            task.abort();
        }
    }
}

/// Answers batches of requests with one fetch each, on one kept connection.
async fn serve(login: FetchLogin, mut requests: mpsc::UnboundedReceiver<Reply>) {
    let mut conn: Option<Conn> = None;
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = requests.try_recv() {
            batch.push(more);
        }
        let res = fetch_once(&mut conn, &login).await;
        if res.is_err() {
            conn = None;
        }
        for reply in batch {
            let _ = reply.send(res.clone());
        }
    }
}

async fn fetch_once(conn: &mut Option<Conn>, login: &FetchLogin) -> Result<GtidSet, String> {
    let c = match conn {
        Some(c) => c,
        None => {
            let ep = Endpoint {
                connect_timeout: login.timeout,
                ..login.endpoint.clone()
            };
            let opened = Conn::open(&ep, &login.user, &login.password)
                .await
                .map_err(|e| e.report())?;
            conn.insert(opened)
        }
    };
    let result = c.query(SQL, login.timeout).await?;
    let text = result
        .rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        .unwrap_or_default();
    GtidSet::parse(&text).map_err(|e| format!("{SQL} returned {text:?}: {e}"))
}
