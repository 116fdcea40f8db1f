use super::*;

fn sample<'a>(digest: &'a str, user: &'a str, hostgroup: &'a str, ms: u64) -> Sample<'a> {
    Sample {
        digest,
        schema: Some(b"shop"),
        user,
        hostgroup,
        took: Duration::from_millis(ms),
        rows: 1,
        error: false,
        read: None,
        at: Instant::now(),
    }
}

fn row<'a>(rows: &'a [DigestRow], digest: &str, hostgroup: &str) -> &'a DigestRow {
    rows.iter()
        .find(|r| r.digest == digest && r.hostgroup == hostgroup)
        .unwrap_or_else(|| panic!("no row {digest} in {hostgroup}: {rows:#?}"))
}

#[test]
fn statements_are_counted_by_digest_schema_user_and_hostgroup() {
    let d = Digests::new(100);
    let q = "SELECT * FROM t WHERE id = ?";
    for ms in [1, 2, 3, 10] {
        assert!(d.record(&Sample {
            read: Some(Served::Replica),
            ..sample(q, "app", "replicas", ms)
        }));
    }
    d.record(&Sample {
        read: Some(Served::Writer),
        rows: 0,
        error: true,
        ..sample(q, "app", "primary", 5)
    });
    d.record(&sample(q, "other", "replicas", 1));
    d.record(&Sample {
        schema: None,
        ..sample(q, "app", "replicas", 1)
    });
    d.record(&sample("INSERT INTO t VALUES (?)", "app", "primary", 4));
    assert_eq!(d.len(), 5);
    let rows = d.snapshot();
    assert_eq!(rows.len(), 5);
    let r = rows
        .iter()
        .find(|r| r.hostgroup == "replicas" && r.user == "app" && r.schema == "shop")
        .unwrap();
    assert_eq!(r.digest, q);
    assert_eq!(r.count, 4);
    assert_eq!(r.sum_ms, 16.0);
    assert_eq!(r.min_ms, 1.0);
    assert_eq!(r.max_ms, 10.0);
    assert!((2.0..=2.5).contains(&r.p50_ms), "{}", r.p50_ms);
    assert_eq!(r.p99_ms, 10.0, "kept within max");
    assert_eq!((r.rows_sent, r.errors), (4, 0));
    assert_eq!((r.replica_reads, r.writer_reads), (4, 0));
    assert!(r.first_seen <= r.last_seen);
    let w = row(&rows, q, "primary");
    assert_eq!((w.count, w.errors, w.rows_sent), (1, 1, 0));
    assert_eq!((w.replica_reads, w.writer_reads), (0, 1));
    assert!(rows.iter().any(|r| r.schema.is_empty()));
    assert!(rows.iter().any(|r| r.user == "other"));
}

#[test]
fn past_the_bound_new_keys_fold_into_other() {
    let d = Digests::new(3);
    for i in 0..10 {
        let text = format!("SELECT {i}");
        d.record(&sample(&text, "app", "primary", 1));
    }
    // A key already kept is still counted in its own row.
    d.record(&sample("SELECT 0", "app", "primary", 1));
    assert_eq!(d.len(), 3);
    assert_eq!(d.folded(), 7);
    let rows = d.snapshot();
    assert_eq!(rows.len(), 4);
    let other = rows.last().unwrap();
    assert_eq!(other.digest, OTHER);
    assert_eq!(other.count, 7);
    assert_eq!((other.user.as_str(), other.hostgroup.as_str()), ("", ""));
    assert_eq!(row(&rows, "SELECT 0", "primary").count, 2);
    // A higher bound lets new keys in again.
    d.set_max(4);
    assert!(d.record(&sample("SELECT 42", "app", "primary", 1)));
    assert!(!d.record(&sample("SELECT 43", "app", "primary", 1)));
}

#[test]
fn reset_forgets_everything() {
    let d = Digests::new(2);
    for text in ["SELECT 1", "SELECT 2", "SELECT 3"] {
        d.record(&sample(text, "app", "primary", 1));
    }
    assert_eq!(d.snapshot().len(), 3);
    d.reset();
    assert!(d.is_empty());
    assert_eq!(d.folded(), 0);
    assert!(d.snapshot().is_empty());
    // Room again for two keys.
    assert!(d.record(&sample("SELECT 3", "app", "primary", 1)));
    assert!(d.record(&sample("SELECT 4", "app", "primary", 1)));
    assert_eq!(d.snapshot().len(), 2);
}

#[test]
fn long_digests_are_cut_and_share_a_row() {
    let d = Digests::new(10);
    // The character at the bound is not split.
    let long = format!("{}é", "x".repeat(MAX_DIGEST_LEN - 1));
    let longer = format!("{long} FROM t");
    d.record(&sample(&long, "app", "primary", 1));
    d.record(&sample(&longer, "app", "primary", 1));
    let rows = d.snapshot();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].digest.len(), MAX_DIGEST_LEN - 1);
    assert_eq!(rows[0].count, 2);
    assert_eq!(truncated("abc", 2), "ab");
    assert_eq!(truncated("aé", 2), "a");
}

#[test]
fn equal_hashes_of_different_keys_stay_apart() {
    // Two keys forced into one chain: each finds its own entry.
    let mut shard = Shard::default();
    let a = sample("SELECT a", "app", "primary", 1);
    let b = sample("SELECT b", "app", "primary", 1);
    for s in [&a, &b] {
        let key = Key {
            digest: s.digest.into(),
            schema: s.schema.map(Into::into),
            user: s.user.into(),
            hostgroup: s.hostgroup.into(),
        };
        let mut c = Counts::new(s.at);
        c.add(s);
        shard.insert(7, key, c);
    }
    shard.find(7, &a, "SELECT a").unwrap().add(&a);
    assert_eq!(shard.find(7, &a, "SELECT a").unwrap().count, 2);
    assert_eq!(shard.find(7, &b, "SELECT b").unwrap().count, 1);
    let c = sample("SELECT c", "app", "primary", 1);
    assert!(shard.find(7, &c, "SELECT c").is_none());
    assert!(shard.find(8, &a, "SELECT a").is_none());
}

#[test]
fn concurrent_sessions_count_every_statement() {
    let d = std::sync::Arc::new(Digests::new(1000));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let text = format!("SELECT {}", i % 50);
                    let user = format!("u{}", t % 2);
                    d.record(&sample(&text, &user, "primary", 1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rows = d.snapshot();
    assert_eq!(rows.len(), 100);
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 4000);
}

#[test]
fn top_picks_the_costliest_across_shards() {
    let d = Digests::new(1000);
    let names: Vec<String> = (0..100u64).map(|i| format!("SELECT {i}")).collect();
    for (i, name) in names.iter().enumerate() {
        for _ in 0..3 {
            d.record(&sample(name, "app", "primary", i as u64 + 1));
        }
    }
    let top = d.top(5);
    let got: Vec<&str> = top.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(
        got,
        [
            "SELECT 99",
            "SELECT 98",
            "SELECT 97",
            "SELECT 96",
            "SELECT 95"
        ]
    );
}
