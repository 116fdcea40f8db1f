//! The hub between the tracker and the subscribers: holds the announced
//! view and fans updates out with bounded memory.
//!
//! Each subscriber gets, atomically, a snapshot of the view and a receiver of
//! every later update, so it sees each GTID exactly once and in order. The
//! channel is bounded: a subscriber that falls more than `capacity` updates
//! behind is not buffered for; it gets a fresh snapshot instead
//! ([`Subscription::next`] handles that).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_gtid::delta::binary::ResetReason;
use causeway_gtid::{GtidSet, Uuid};
use tokio::sync::broadcast;

/// One update for every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// GTIDs that became visible, in order of announcement.
    Delta {
        /// The view's epoch.
        epoch: u64,
        /// Sequence number within the epoch, from 1.
        seq: u64,
        /// The new GTIDs.
        delta: Arc<GtidSet>,
    },
    /// The view is this age: it holds every GTID the server binlogged
    /// before `now - view_age`.
    Heartbeat {
        /// The view's epoch.
        epoch: u64,
        /// Last sequence number sent in this epoch.
        seq: u64,
        /// Age of the view.
        view_age: Duration,
    },
    /// The old view is void; `snapshot` replaces it.
    Reset {
        /// The new epoch.
        epoch: u64,
        /// Why.
        reason: ResetReason,
        /// Why, for logs.
        detail: String,
        /// The new view.
        snapshot: Arc<GtidSet>,
    },
}

/// A snapshot as a subscriber first sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The server's UUID.
    pub server_uuid: Uuid,
    /// The view's epoch.
    pub epoch: u64,
    /// Sequence number of the last delta included.
    pub seq: u64,
    /// The view.
    pub set: Arc<GtidSet>,
}

#[derive(Debug)]
struct State {
    server_uuid: Uuid,
    epoch: u64,
    seq: u64,
    view: Arc<GtidSet>,
}

/// The shared fan-out point.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    tx: broadcast::Sender<Update>,
}

/// What a subscriber reads next.
#[derive(Debug)]
pub enum Next {
    /// An update, in order.
    Update(Update),
    /// The subscriber fell behind: start over from this snapshot.
    Resnapshot(Snapshot),
}

/// One subscriber's view of the hub.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Update>,
}

impl Hub {
    /// A hub for `server_uuid` starting from `view`, epoch 1.
    pub fn new(server_uuid: Uuid, view: GtidSet, capacity: usize) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Arc::new(Hub {
            state: Mutex::new(State {
                server_uuid,
                epoch: 1,
                seq: 0,
                view: Arc::new(view),
            }),
            tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-written
        // (every update below is a plain assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes: the current snapshot, and every update after it.
    pub fn subscribe(self: &Arc<Self>) -> (Snapshot, Subscription) {
        let st = self.lock();
        let rx = self.tx.subscribe();
        let snap = Snapshot {
            server_uuid: st.server_uuid,
            epoch: st.epoch,
            seq: st.seq,
            set: st.view.clone(),
        };
        drop(st);
        (
            snap,
            Subscription {
                hub: self.clone(),
                rx,
            },
        )
    }

    /// Announces newly visible GTIDs.
    pub fn publish_delta(&self, delta: GtidSet) {
        if delta.is_empty() {
            return;
        }
        let mut st = self.lock();
        st.seq += 1;
        // In place unless a subscriber still holds the previous snapshot.
        Arc::make_mut(&mut st.view).union_with(&delta);
        let update = Update::Delta {
            epoch: st.epoch,
            seq: st.seq,
            delta: Arc::new(delta),
        };
        // No receiver is not an error: nobody is subscribed yet.
        let _ = self.tx.send(update);
    }

    /// Tells subscribers how fresh the view is.
    pub fn publish_heartbeat(&self, view_age: Duration) {
        let st = self.lock();
        let _ = self.tx.send(Update::Heartbeat {
            epoch: st.epoch,
            seq: st.seq,
            view_age,
        });
    }

    /// Replaces the view (new epoch).
    pub fn publish_reset(
        &self,
        server_uuid: Uuid,
        view: GtidSet,
        reason: ResetReason,
        detail: String,
    ) {
        let mut st = self.lock();
        st.epoch += 1;
        st.seq = 0;
        st.server_uuid = server_uuid;
        st.view = Arc::new(view);
        let _ = self.tx.send(Update::Reset {
            epoch: st.epoch,
            reason,
            detail,
            snapshot: st.view.clone(),
        });
    }

    /// The announced view now.
    pub fn view(&self) -> Arc<GtidSet> {
        self.lock().view.clone()
    }

    /// The server UUID and the epoch now.
    pub fn identity(&self) -> (Uuid, u64) {
        let st = self.lock();
        (st.server_uuid, st.epoch)
    }
}

impl Subscription {
    /// The next thing to send; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Next> {
        match self.rx.recv().await {
            Ok(u) => Some(Next::Update(u)),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let (snap, sub) = self.hub.subscribe();
                *self = sub;
                Some(Next::Resnapshot(snap))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(t: &str) -> GtidSet {
        GtidSet::parse(t).unwrap()
    }

    #[tokio::test]
    async fn snapshot_plus_updates_reproduce_the_view() {
        let hub = Hub::new(U.parse().unwrap(), set(&format!("{U}:1-5")), 16);
        hub.publish_delta(set(&format!("{U}:6")));
        let (snap, mut sub) = hub.subscribe();
        assert_eq!(*snap.set, set(&format!("{U}:1-6")));
        assert_eq!(snap.seq, 1);
        hub.publish_delta(set(&format!("{U}:7-8")));
        hub.publish_heartbeat(Duration::from_millis(3));
        let mut view = (*snap.set).clone();
        for _ in 0..2 {
            match sub.next().await.unwrap() {
                Next::Update(Update::Delta { seq, delta, .. }) => {
                    assert_eq!(seq, 2);
                    view.union_with(&delta);
                }
                Next::Update(Update::Heartbeat { view_age, seq, .. }) => {
                    assert_eq!(seq, 2);
                    assert_eq!(view_age, Duration::from_millis(3));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(view, *hub.view());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_a_snapshot_not_a_backlog() {
        let hub = Hub::new(U.parse().unwrap(), GtidSet::default(), 4);
        let (_, mut sub) = hub.subscribe();
        for g in 1..=100u64 {
            hub.publish_delta(set(&format!("{U}:{g}")));
        }
        match sub.next().await.unwrap() {
            Next::Resnapshot(s) => {
                assert_eq!(*s.set, set(&format!("{U}:1-100")));
                assert_eq!(s.seq, 100);
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        hub.publish_delta(set(&format!("{U}:101")));
        assert!(matches!(
            sub.next().await.unwrap(),
            Next::Update(Update::Delta { seq: 101, .. })
        ));
    }

    #[tokio::test]
    async fn reset_starts_a_new_epoch() {
        let hub = Hub::new(U.parse().unwrap(), set(&format!("{U}:1-5")), 4);
        let (_, mut sub) = hub.subscribe();
        hub.publish_reset(
            U.parse().unwrap(),
            GtidSet::default(),
            ResetReason::SetShrank,
            "test".into(),
        );
        match sub.next().await.unwrap() {
            Next::Update(Update::Reset {
                epoch, snapshot, ..
            }) => {
                assert_eq!(epoch, 2);
                assert!(snapshot.is_empty());
            }
            other => panic!("expected a reset, got {other:?}"),
        }
        assert_eq!(hub.identity().1, 2);
    }
}
