//! `format(parse(x))` against what MySQL 9.7.4 itself prints for the same
//! text: each expected output below was captured with
//! `SELECT GTID_SUBTRACT(x, '')` (which formats with the same
//! `Gtid_set::to_string` as `@@gtid_executed`); `None` = MySQL rejected it.

use causeway_gtid::GtidSet;

/// Inputs where this crate refuses on purpose what MySQL accepts: MySQL
/// silently drops reversed intervals (a smaller set than written), and reads
/// `010` as 10 in 9.7 but as octal 8 in 8.x.
const STRICTER: [&str; 3] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3",
    "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-0",
    "3e11fa47-71ca-11e1-9e33-c80aa9429562:010",
];

#[rustfmt::skip]
const MYSQL_9_7_4: &[(&str, Option<&str>)] = &[
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9")),
    ("4e11fa47-71ca-11e1-9e33-c80aa9429562:1-5, 3e11fa47-71ca-11e1-9e33-c80aa9429562:7-9:1-5:6", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:bb:7,3e11fa47-71ca-11e1-9e33-c80aa9429562:AA:1-3,3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:aa:1-3:bb:7")),
    (" \n 3e11fa47-71ca-11e1-9e33-c80aa9429562 : 1 - 5 : aa : 3 ,\n\t 4e11fa47-71ca-11e1-9e33-c80aa9429562:2 \n", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:aa:3,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:2")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3", Some("")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:010", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:10")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:0x10", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562", Some("")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa", Some("")),
    ("", Some("")),
    (",,", Some("")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:9223372036854775806", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:9223372036854775806")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:9223372036854775807", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1:bb:2", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1:bb:2")),
    ("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-3", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:5", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:5")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:aa:1-3:bb:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:x:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:aa:1-3:bb:7,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:x:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:_:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:_:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:a1:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:a1:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1a", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:+5", None),
    ("3e11fa4771ca11e19e33c80aa9429562:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1")),
    ("{3e11fa47-71ca-11e1-9e33-c80aa9429562}:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:3,3e11fa47-71ca-11e1-9e33-c80aa9429562:9", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:3")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1:Tag:2:TAG:3", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1:tag:2-3")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa: 1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa :1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1 -5", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:bb:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:bb:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:5-0", Some("")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:3-3", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:3")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:aa", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa,4e11fa47-71ca-11e1-9e33-c80aa9429562:1", Some("4e11fa47-71ca-11e1-9e33-c80aa9429562:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1,", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562::1", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1:", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:-1", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1a:2", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562: 1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1 2", None),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1-3:1-2", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1-3")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:Z9_:4", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:z9_:4")),
    ("3e11fa4771ca11e19e33c80aa9429562:1-3", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3")),
    ("{3e11fa47-71ca-11e1-9e33-c80aa9429562}:aa:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:aa:1")),
    ("3e11fa4771ca11e19e33c80aa9429562:tag:4,3e11fa47-71ca-11e1-9e33-c80aa9429562:1", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1:tag:4")),
    (" {4e11fa47-71ca-11e1-9e33-c80aa9429562} :2", Some("4e11fa47-71ca-11e1-9e33-c80aa9429562:2")),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9:11,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:aa:5,\n", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9:11,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:aa:5")),
];

#[test]
fn formatting_matches_mysql() {
    let mut checked = 0;
    for &(input, mysql) in MYSQL_9_7_4 {
        let ours = GtidSet::parse(input);
        if STRICTER.contains(&input) {
            assert!(ours.is_err(), "{input:?} must be refused");
            continue;
        }
        match (mysql, ours) {
            (Some(expected), Ok(set)) => assert_eq!(set.to_string(), expected, "{input:?}"),
            (None, Err(_)) => {}
            (m, o) => panic!("{input:?}: mysql {m:?}, ours {o:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, MYSQL_9_7_4.len() - STRICTER.len());
}

/// `SELECT @@gtid_executed` on MySQL 9.7.4 after 5 untagged transactions and
/// one each with `SET gtid_next='AUTOMATIC:Batch_1'` and `'AUTOMATIC:aa'`.
#[test]
fn gtid_executed_capture_round_trips() {
    let captured = "8b53b56d-e589-11f1-83d0-02fc00000001:1-5:aa:1:batch_1:1";
    let set = GtidSet::parse(captured).unwrap();
    assert_eq!(set.to_string(), captured);
    assert_eq!(set.count(), 7);
    assert_eq!(set.source_count(), 3);
}
