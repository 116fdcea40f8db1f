use super::*;
use crate::error::Side;

fn key(user: &str) -> PoolKey {
    PoolKey {
        user: Arc::from(user),
        caps: CapabilityFlags::PROTOCOL_41,
        charset: 255,
    }
}

fn want(user: &str, max: usize) -> Want {
    Want {
        key: key(user),
        prefer: None,
        no_schema: false,
        limits: Limits {
            max,
            user_max: 0,
            queue_max: 100,
        },
    }
}

fn conn(lease: Lease, user: &str) -> Conn {
    let (a, _b) = tokio::io::duplex(64);
    Conn {
        id: next_conn_id(),
        io: PacketIo::new(Box::new(a), Side::Backend, 1024),
        server: Arc::from("s"),
        thread_id: 1,
        nonce: Bytes::new(),
        key: key(user),
        state: ConnState::default(),
        trackers: true,
        stmts: StmtCache::default(),
        lease,
    }
}

fn open(pool: &Arc<ServerPool>, w: &Want) -> Conn {
    let mut evicted = None;
    match pool.try_acquire(w, &mut evicted) {
        Ok(Some(Grant::Open(l))) => conn(l, &w.key.user),
        other => panic!("expected room, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_count_connections_wherever_they_drop() {
    let pool = ServerPool::new("s");
    let w = want("app", 10);
    let a = open(&pool, &w);
    let b = open(&pool, &w);
    assert_eq!(pool.stats().open, 2);
    drop(a);
    assert_eq!(pool.stats().open, 1);
    assert!(pool.give_back(b, 8).is_none());
    assert_eq!(pool.stats().open, 1, "idle still counts");
    assert_eq!(pool.in_use(), 0, "but is not in use");
    let reaped = pool.reap(Duration::ZERO);
    assert_eq!(reaped.len(), 1);
    drop(reaped);
    assert_eq!(pool.stats().open, 0);
}

#[tokio::test]
async fn idle_connections_match_the_key_and_the_session_gets_its_own_back() {
    let pool = ServerPool::new("s");
    let w = want("app", 10);
    let a = open(&pool, &w);
    let b = open(&pool, &w);
    let (ida, idb) = (a.id, b.id);
    pool.give_back(a, 8);
    pool.give_back(b, 8);
    let mut ev = None;
    assert!(matches!(
        pool.try_acquire(&want("other", 10), &mut ev),
        Ok(Some(Grant::Open(_)))
    ));
    // Its own first, else the most recently used.
    let mine = Want {
        prefer: Some(ida),
        ..w.clone()
    };
    let Ok(Some(Grant::Conn(c))) = pool.try_acquire(&mine, &mut ev) else {
        panic!("expected a connection");
    };
    assert_eq!(c.id, ida);
    pool.give_back(*c, 8);
    let Ok(Some(Grant::Conn(c))) = pool.try_acquire(&w, &mut ev) else {
        panic!("expected a connection");
    };
    assert_eq!(c.id, ida, "most recently given back");
    let _keep = c;
    // A session without a schema never gets a connection that has one.
    let Ok(Some(Grant::Conn(mut c))) = pool.try_acquire(&w, &mut ev) else {
        panic!("expected a connection");
    };
    assert_eq!(c.id, idb);
    c.state.schema = Some("db".into());
    pool.give_back(*c, 8);
    let bare = Want {
        no_schema: true,
        ..w.clone()
    };
    assert!(matches!(
        pool.try_acquire(&bare, &mut ev),
        Ok(Some(Grant::Open(_)))
    ));
}

#[tokio::test]
async fn a_full_server_evicts_idle_connections_of_other_keys_then_queues() {
    let pool = ServerPool::new("s");
    let w = want("app", 2);
    let a = open(&pool, &want("other", 2));
    let _b = open(&pool, &w);
    pool.give_back(a, 8);
    let mut ev = None;
    let g = pool.try_acquire(&w, &mut ev);
    assert!(matches!(g, Ok(Some(Grant::Open(_)))), "{g:?}");
    assert!(ev.is_some(), "the other user's idle connection makes room");
    drop(ev.take());
    assert_eq!(pool.stats().open, 2);
    assert!(
        matches!(pool.try_acquire(&w, &mut ev), Ok(None)),
        "full: wait"
    );
    drop(g);
}

#[tokio::test]
async fn waiters_get_released_connections_of_their_key_or_the_room_of_others() {
    let pool = ServerPool::new("s");
    let w = want("app", 1);
    let a = open(&pool, &w);
    let rx = pool.enqueue(w.clone()).unwrap();
    assert!(pool.has_waiters());
    let id = a.id;
    assert!(pool.give_back(a, 8).is_none());
    let Ok(Grant::Conn(c)) = rx.await else {
        panic!("expected the released connection");
    };
    assert_eq!(c.id, id);
    // A waiter of another user: the released connection must close so it
    // can open its own.
    let rx = pool.enqueue(want("other", 1)).unwrap();
    let back = pool.give_back(*c, 8).expect("closed, not kept");
    drop(back);
    let Ok(Grant::Open(l)) = rx.await else {
        panic!("expected room");
    };
    assert_eq!(pool.stats().open, 1);
    drop(l);
    assert_eq!(pool.stats().open, 0);
}

#[tokio::test]
async fn per_user_limits_hold_within_the_server_limit() {
    let pool = ServerPool::new("s");
    let mut w = want("app", 10);
    w.limits.user_max = 1;
    let _a = open(&pool, &w);
    let mut ev = None;
    assert!(matches!(pool.try_acquire(&w, &mut ev), Ok(None)));
    assert!(matches!(
        pool.try_acquire(&want("other", 10), &mut ev),
        Ok(Some(Grant::Open(_)))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded_in_time_and_length() {
    let pool = ServerPool::new("s");
    let mut w = want("app", 1);
    w.limits.queue_max = 1;
    let _a = open(&pool, &w);
    let mut ev = None;
    let waiting = {
        let pool = pool.clone();
        let w = w.clone();
        tokio::spawn(async move {
            let mut ev = None;
            pool.acquire(&w, Duration::from_secs(2), &mut ev)
                .await
                .map(|_| ())
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(pool.stats().waiting, 1);
    let e = pool.acquire(&w, Duration::from_secs(2), &mut ev).await;
    assert_eq!(e.unwrap_err(), Refused::QueueFull(1));
    assert_eq!(
        waiting.await.unwrap().unwrap_err(),
        Refused::Timeout(Duration::from_secs(2))
    );
    assert_eq!(pool.stats().timeouts, 1);
}

#[tokio::test]
async fn failed_connects_back_off_and_a_full_server_is_learned() {
    let pool = ServerPool::new("s");
    let w = want("app", 10);
    let base = Duration::from_secs(100);
    pool.failed(base);
    let mut ev = None;
    let Err(Refused::Backoff(first)) = pool.try_acquire(&w, &mut ev) else {
        panic!("expected backoff");
    };
    assert!(first <= base && first > base / 2, "{first:?}");
    for _ in 0..10 {
        pool.failed(base);
    }
    let Err(Refused::Backoff(capped)) = pool.try_acquire(&w, &mut ev) else {
        panic!("expected backoff");
    };
    assert!(capped <= base * 16 && capped > base * 8, "{capped:?}");
    pool.connected();
    // Two open, the third refused by the server with 1040: two is the limit.
    let a = open(&pool, &w);
    let b = open(&pool, &w);
    let c = open(&pool, &w);
    pool.server_full(Duration::from_secs(60));
    drop(c);
    assert!(matches!(pool.try_acquire(&w, &mut ev), Ok(None)));
    drop(a);
    assert!(matches!(
        pool.try_acquire(&w, &mut ev),
        Ok(Some(Grant::Open(_)))
    ));
    drop(b);
}

#[tokio::test]
async fn pools_survive_reloads_by_name() {
    let pools = Pools::new();
    let (first, gone) = pools.for_servers(["a", "b"].into_iter());
    assert!(gone.is_empty());
    let c = open(&first[1], &want("app", 10));
    first[1].give_back(c, 8);
    let (second, gone) = pools.for_servers(["b", "c"].into_iter());
    assert!(Arc::ptr_eq(&first[1], &second[0]));
    assert!(gone.is_empty(), "b kept its idle connection");
    let (_, gone) = pools.for_servers(["c"].into_iter());
    assert_eq!(gone.len(), 1, "b's idle connection is closed");
    assert_eq!(pools.stats().len(), 1);
}

#[tokio::test]
async fn room_is_not_held_back_for_waiters_that_cannot_use_it() {
    let pool = ServerPool::new("s");
    // "app" may have one connection; it has it, and a second request waits.
    let mut w = want("app", 10);
    w.limits.user_max = 1;
    let a = open(&pool, &w);
    let rx = pool.enqueue(w.clone()).unwrap();
    // Another user with room goes ahead: the waiter does not need room.
    let mut ev = None;
    let other = pool.try_acquire(&want("other", 10), &mut ev);
    assert!(matches!(other, Ok(Some(Grant::Open(_)))), "{other:?}");
    let o = match other {
        Ok(Some(Grant::Open(l))) => conn(l, "other"),
        _ => unreachable!(),
    };
    // "other"'s connection given back: closing it would not help "app"
    // (its own limit holds it), so it stays idle.
    assert!(pool.give_back(o, 8).is_none());
    assert_eq!(pool.stats().idle, 1);
    // "app"'s own, given back, goes to its waiter.
    assert!(pool.give_back(a, 8).is_none());
    assert!(matches!(rx.await, Ok(Grant::Conn(_))));
}

#[tokio::test]
async fn room_a_learned_limit_frees_goes_to_the_first_waiter() {
    let pool = ServerPool::new("s");
    let w = want("app", 10);
    let a = open(&pool, &w);
    let b = open(&pool, &w);
    // A third connect was refused with 1040: two is the limit, briefly.
    pool.server_full(Duration::from_millis(30));
    let rx = pool.enqueue(w.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The hold expired: the next request finds the waiter served first.
    let mut ev = None;
    let g = pool.try_acquire(&w, &mut ev);
    assert!(matches!(g, Ok(Some(Grant::Open(_)))), "{g:?}");
    assert!(
        matches!(rx.await, Ok(Grant::Open(_))),
        "the waiter got room"
    );
    drop((a, b, g));
}

#[tokio::test]
async fn a_retired_pool_takes_nothing_back() {
    let pools = Pools::new();
    let (first, _) = pools.for_servers(["a"].into_iter());
    let c = open(&first[0], &want("app", 10));
    let (_, gone) = pools.for_servers(["b"].into_iter());
    assert!(gone.is_empty());
    // A session that held it gives it back after the reload: closed.
    assert!(first[0].give_back(c, 8).is_some());
    assert_eq!(first[0].stats().idle, 0);
}

#[tokio::test]
async fn an_offline_pool_closes_its_idle_connections_until_online_again() {
    let pools = Pools::new();
    let (p, _) = pools.for_servers(["a"].into_iter());
    let p = &p[0];
    let idle = open(p, &want("app", 10));
    let held = open(p, &want("app", 10));
    assert!(p.give_back(idle, 8).is_none());
    assert_eq!(p.stats().idle, 1);
    let closed = p.set_offline(true);
    assert_eq!(
        closed.len(),
        1,
        "the idle connection is handed over to be closed"
    );
    assert!(
        p.give_back(held, 8).is_some(),
        "given back while offline: closed"
    );
    assert!(p.set_offline(false).is_empty());
    let again = open(p, &want("app", 10));
    assert!(p.give_back(again, 8).is_none(), "online: pooled again");
}
