use super::*;
use crate::buf::{put_lenenc_bytes, put_lenenc_int};
use crate::generic::{EofPacket, OkPacket};
use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

const CLASSIC: CapabilityFlags = CapabilityFlags::PROTOCOL_41
    .union(CapabilityFlags::TRANSACTIONS)
    .union(CapabilityFlags::MULTI_RESULTS)
    .union(CapabilityFlags::PS_MULTI_RESULTS);
const MODERN: CapabilityFlags = CLASSIC
    .union(CapabilityFlags::DEPRECATE_EOF)
    .union(CapabilityFlags::SESSION_TRACK);

fn ok(status: StatusFlags, caps: CapabilityFlags) -> Vec<u8> {
    let mut b = BytesMut::new();
    OkPacket {
        status,
        ..OkPacket::default()
    }
    .encode(caps, &mut b);
    b.to_vec()
}

fn ok_eof(status: StatusFlags, caps: CapabilityFlags) -> Vec<u8> {
    let mut b = BytesMut::new();
    OkPacket {
        header: EOF_HEADER,
        status,
        ..OkPacket::default()
    }
    .encode(caps, &mut b);
    b.to_vec()
}

fn eof(status: StatusFlags) -> Vec<u8> {
    let mut b = BytesMut::new();
    EofPacket {
        warnings: 0,
        status,
    }
    .encode(&mut b);
    b.to_vec()
}

fn err() -> Vec<u8> {
    b"\xff\x7a\x04#42S02Table 't' doesn't exist".to_vec()
}

fn column_count(n: u64) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_lenenc_int(&mut b, n);
    b.to_vec()
}

fn column_def(name: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    for s in ["def", "test", "t", "t", name, name] {
        put_lenenc_bytes(&mut b, s.as_bytes());
    }
    b.put_u8(0x0c);
    b.put_u16_le(255);
    b.put_u32_le(44);
    b.put_u8(0xfd);
    b.put_u16_le(0);
    b.put_u8(0);
    b.put_u16_le(0);
    b.to_vec()
}

fn text_row(values: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for v in values {
        put_lenenc_bytes(&mut b, v.as_bytes());
    }
    b.to_vec()
}

/// A binary row: header 0x00, NULL bitmap (offset 2), values.
fn binary_row() -> Vec<u8> {
    vec![0x00, 0x00, 0x01, 0x00, 0x00, 0x00]
}

/// One text result set of `cols` columns and `rows` rows ending with `status`.
fn result_set(caps: CapabilityFlags, cols: u64, rows: usize, status: StatusFlags) -> Vec<Vec<u8>> {
    let mut p = vec![column_count(cols)];
    for i in 0..cols {
        p.push(column_def(&format!("c{i}")));
    }
    if !caps.contains(CapabilityFlags::DEPRECATE_EOF) {
        p.push(eof(StatusFlags::AUTOCOMMIT));
    }
    for r in 0..rows {
        let vals: Vec<String> = (0..cols).map(|c| format!("{r}-{c}")).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        p.push(text_row(&refs));
    }
    p.push(end(caps, status));
    p
}

fn end(caps: CapabilityFlags, status: StatusFlags) -> Vec<u8> {
    if caps.contains(CapabilityFlags::DEPRECATE_EOF) {
        ok_eof(status, caps)
    } else {
        eof(status)
    }
}

/// Feeds every packet; asserts the response completes exactly at the last one.
fn run(tracker: &mut ResponseTracker, packets: &[Vec<u8>]) -> Vec<PacketRole> {
    let mut roles = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let step = tracker
            .feed(p)
            .unwrap_or_else(|e| panic!("packet {i}: {e}"));
        roles.push(step.role);
        assert_eq!(step.done, i == packets.len() - 1, "packet {i} done flag");
    }
    assert!(tracker.is_done());
    roles
}

const AC: StatusFlags = StatusFlags::AUTOCOMMIT;
const MORE: StatusFlags = StatusFlags::AUTOCOMMIT.union(StatusFlags::MORE_RESULTS_EXISTS);

#[test]
fn single_ok_and_err() {
    for caps in [CLASSIC, MODERN] {
        let mut t = ResponseTracker::for_command(b"\x03INSERT INTO t VALUES (1)", caps);
        assert_eq!(run(&mut t, &[ok(AC, caps)]), vec![PacketRole::Ok]);
        assert_eq!(t.status(), Some(AC));
        let mut t = ResponseTracker::for_command(b"\x03SELECT * FROM t", caps);
        assert_eq!(run(&mut t, &[err()]), vec![PacketRole::Err]);
    }
}

#[test]
fn text_result_set_both_eof_modes() {
    for caps in [CLASSIC, MODERN] {
        let packets = result_set(caps, 2, 3, AC);
        let mut t = ResponseTracker::for_command(b"\x03SELECT a, b FROM t", caps);
        let roles = run(&mut t, &packets);
        assert_eq!(roles[0], PacketRole::ColumnCount(2));
        assert_eq!(roles[1], PacketRole::ColumnDefinition);
        assert_eq!(roles.iter().filter(|r| **r == PacketRole::Row).count(), 3);
        assert_eq!(*roles.last().unwrap(), PacketRole::ResultSetEnd);
        assert_eq!(
            roles.contains(&PacketRole::MetadataEof),
            !caps.contains(CapabilityFlags::DEPRECATE_EOF)
        );
    }
}

#[test]
fn empty_result_set_and_empty_string_rows() {
    for caps in [CLASSIC, MODERN] {
        let mut t = ResponseTracker::for_command(b"\x03SELECT 1 FROM t WHERE 0", caps);
        run(&mut t, &result_set(caps, 1, 0, AC));
        // A row whose only value is '' starts with 0x00 yet is a row, not OK.
        let mut packets = result_set(caps, 1, 0, AC);
        packets.insert(packets.len() - 1, text_row(&[""]));
        let mut t = ResponseTracker::for_command(b"\x03SELECT ''", caps);
        let roles = run(&mut t, &packets);
        assert_eq!(roles[roles.len() - 2], PacketRole::Row);
    }
}

#[test]
fn multi_results_from_call_and_multi_statements() {
    for caps in [CLASSIC, MODERN] {
        // CALL p(): two result sets then the procedure's final OK.
        let mut packets = result_set(caps, 1, 2, MORE);
        packets.extend(result_set(caps, 3, 1, MORE));
        packets.push(ok(AC, caps));
        let mut t = ResponseTracker::for_command(b"\x03CALL p()", caps);
        run(&mut t, &packets);

        // SELECT 1; INSERT ...; SELECT 2
        let mut packets = result_set(caps, 1, 1, MORE);
        packets.push(ok(MORE, caps));
        packets.extend(result_set(caps, 1, 1, AC));
        let mut t = ResponseTracker::for_command(b"\x03SELECT 1; INSERT; SELECT 2", caps);
        run(&mut t, &packets);

        // An error in the second statement ends everything.
        let packets = vec![ok(MORE, caps), err()];
        let mut t = ResponseTracker::for_command(b"\x03DO 1; bad", caps);
        run(&mut t, &packets);
    }
}

#[test]
fn error_in_the_middle_of_rows() {
    for caps in [CLASSIC, MODERN] {
        let mut packets = result_set(caps, 1, 2, AC);
        let last = packets.len() - 1;
        packets[last] = err();
        let mut t = ResponseTracker::for_command(b"\x03SELECT slow()", caps);
        assert_eq!(*run(&mut t, &packets).last().unwrap(), PacketRole::Err);
    }
}

#[test]
fn local_infile() {
    let mut t =
        ResponseTracker::for_command(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t", MODERN);
    let s = t.feed(b"\xfbf").unwrap();
    assert_eq!(
        s,
        Step {
            role: PacketRole::LocalInfileRequest,
            done: false
        }
    );
    assert!(t.awaiting_client_data());
    let s = t.feed(&ok(AC, MODERN)).unwrap();
    assert!(s.done);
    let mut t =
        ResponseTracker::for_command(b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t", MODERN);
    t.feed(b"\xfbf").unwrap();
    assert!(t.feed(&column_count(1)).is_err());
}

#[test]
fn execute_binary_rows_start_with_zero() {
    for caps in [CLASSIC, MODERN] {
        let mut packets = vec![column_count(1), column_def("id")];
        if !caps.contains(CapabilityFlags::DEPRECATE_EOF) {
            packets.push(eof(AC));
        }
        packets.push(binary_row());
        packets.push(binary_row());
        packets.push(end(caps, AC));
        let mut t = ResponseTracker::for_command(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00", caps);
        let roles = run(&mut t, &packets);
        assert_eq!(roles.iter().filter(|r| **r == PacketRole::Row).count(), 2);
        // An execute that produced no result set.
        let mut t = ResponseTracker::for_command(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00", caps);
        run(&mut t, &[ok(AC, caps)]);
    }
}

#[test]
fn cursor_open_then_fetch() {
    let cur = AC.union(StatusFlags::CURSOR_EXISTS);
    let last = AC.union(StatusFlags::LAST_ROW_SENT);
    let exec = b"\x17\x01\x00\x00\x00\x01\x01\x00\x00\x00";
    assert_eq!(
        ResponseKind::for_command(exec),
        ResponseKind::Execute { cursor: true }
    );
    // Without DEPRECATE_EOF: metadata, then one EOF carrying CURSOR_EXISTS.
    let mut t = ResponseTracker::for_command(exec, CLASSIC);
    run(&mut t, &[column_count(1), column_def("id"), eof(cur)]);
    // With DEPRECATE_EOF: metadata, then OK(0xFE) carrying CURSOR_EXISTS.
    let mut t = ResponseTracker::for_command(exec, MODERN);
    run(
        &mut t,
        &[column_count(1), column_def("id"), ok_eof(cur, MODERN)],
    );
    // The cursor was requested but not opened (e.g. not a SELECT): rows follow.
    let mut t = ResponseTracker::for_command(exec, CLASSIC);
    run(
        &mut t,
        &[
            column_count(1),
            column_def("id"),
            eof(AC),
            binary_row(),
            eof(AC),
        ],
    );

    let fetch = b"\x1c\x01\x00\x00\x00\x02\x00\x00\x00";
    for (caps, status) in [
        (CLASSIC, cur),
        (MODERN, cur),
        (CLASSIC, last),
        (MODERN, last),
    ] {
        let mut t = ResponseTracker::for_command(fetch, caps);
        run(&mut t, &[binary_row(), binary_row(), end(caps, status)]);
        assert_eq!(t.status(), Some(status));
    }
    let mut t = ResponseTracker::for_command(fetch, MODERN);
    run(&mut t, &[err()]);
}

fn prepare_ok(cols: u16, params: u16) -> Vec<u8> {
    let mut b = BytesMut::new();
    StmtPrepareOk {
        statement_id: 1,
        num_columns: cols,
        num_params: params,
        warnings: 0,
        metadata_follows: None,
    }
    .encode(&mut b);
    b.to_vec()
}

#[test]
fn prepare_responses() {
    let prep = b"\x16SELECT a FROM t WHERE b = ? AND c = ?";
    let mut t = ResponseTracker::for_command(prep, CLASSIC);
    let roles = run(
        &mut t,
        &[
            prepare_ok(1, 2),
            column_def("?"),
            column_def("?"),
            eof(AC),
            column_def("a"),
            eof(AC),
        ],
    );
    assert!(matches!(
        roles[0],
        PacketRole::PrepareOk(StmtPrepareOk { num_params: 2, .. })
    ));
    assert_eq!(roles[1], PacketRole::ParamDefinition);
    assert_eq!(roles[4], PacketRole::ColumnDefinition);

    let mut t = ResponseTracker::for_command(prep, MODERN);
    run(
        &mut t,
        &[
            prepare_ok(1, 2),
            column_def("?"),
            column_def("?"),
            column_def("a"),
        ],
    );
    for caps in [CLASSIC, MODERN] {
        let mut t = ResponseTracker::for_command(b"\x16DO 1", caps);
        run(&mut t, &[prepare_ok(0, 0)]);
        let mut t = ResponseTracker::for_command(b"\x16INSERT INTO t VALUES (?)", caps);
        let mut packets = vec![prepare_ok(0, 1), column_def("?")];
        if caps == CLASSIC {
            packets.push(eof(AC));
        }
        run(&mut t, &packets);
        let mut t = ResponseTracker::for_command(b"\x16bad", caps);
        run(&mut t, &[err()]);
    }
    // A missing EOF is a protocol violation, not a hang.
    let mut t = ResponseTracker::for_command(prep, CLASSIC);
    t.feed(&prepare_ok(0, 1)).unwrap();
    t.feed(&column_def("?")).unwrap();
    assert!(matches!(
        t.feed(&column_def("x")),
        Err(CodecError::Protocol(_))
    ));
}

#[test]
fn field_list_and_single_packet_commands() {
    for caps in [CLASSIC, MODERN] {
        let mut t = ResponseTracker::for_command(b"\x04t\0", caps);
        run(&mut t, &[column_def("a"), column_def("b"), end(caps, AC)]);
    }
    let mut t = ResponseTracker::for_command(b"\x09", MODERN);
    run(&mut t, &[b"Uptime: 5  Threads: 1".to_vec()]);
    let mut t = ResponseTracker::for_command(b"\x0e", MODERN);
    run(&mut t, &[ok(AC, MODERN)]);
    // COM_SET_OPTION is answered with an EOF by MySQL (OK(0xFE) with DEPRECATE_EOF).
    let mut t = ResponseTracker::for_command(b"\x1b\x00\x00", CLASSIC);
    run(&mut t, &[eof(AC)]);
    assert_eq!(t.status(), Some(AC));
    let mut t = ResponseTracker::for_command(b"\x1b\x00\x00", MODERN);
    let mut long_ok_eof = BytesMut::new();
    OkPacket {
        header: EOF_HEADER,
        status: MORE,
        info: bytes::Bytes::from_static(b"more than nine bytes"),
        ..OkPacket::default()
    }
    .encode(MODERN, &mut long_ok_eof);
    let long_ok_eof = long_ok_eof.to_vec();
    assert!(long_ok_eof.len() >= 9);
    assert_eq!(run(&mut t, &[long_ok_eof]), vec![PacketRole::ResultSetEnd]);
    assert_eq!(t.status(), Some(MORE));
    for none in [
        &b"\x01"[..],
        b"\x19\x01\x00\x00\x00",
        b"\x18\x01\x00\x00\x00\x00\x00x",
    ] {
        let t = ResponseTracker::for_command(none, MODERN);
        assert!(t.is_done(), "{none:?}");
    }
}

#[test]
fn change_user_and_binlog_stream() {
    let mut t = ResponseTracker::for_command(b"\x11u\0\0\0", MODERN);
    assert!(!t.feed(b"\xfecaching_sha2_password\0nonce").unwrap().done);
    assert!(!t.feed(&[0x01, 0x03]).unwrap().done);
    assert!(t.feed(&ok(AC, MODERN)).unwrap().done);

    let mut t = ResponseTracker::for_command(b"\x1e\x00\x00", CLASSIC);
    for _ in 0..3 {
        assert_eq!(t.feed(b"\x00event bytes").unwrap().role, PacketRole::Other);
    }
    assert!(t.feed(&eof(AC)).unwrap().done);
}

#[test]
fn huge_row_starting_with_0xfe_is_a_row() {
    // First chunk of a row whose first value is ≥ 16 MiB (lenenc prefix 0xFE).
    let mut chunk = vec![0u8; crate::packet::MAX_CHUNK];
    chunk[0] = 0xfe;
    for caps in [CLASSIC, MODERN] {
        let mut t = ResponseTracker::for_command(b"\x03SELECT big", caps);
        t.feed(&column_count(1)).unwrap();
        t.feed(&column_def("big")).unwrap();
        if caps == CLASSIC {
            t.feed(&eof(AC)).unwrap();
        }
        assert_eq!(
            t.feed(&chunk).unwrap(),
            Step {
                role: PacketRole::Row,
                done: false
            }
        );
        assert!(t.feed(&end(caps, AC)).unwrap().done);
    }
}

#[test]
fn optional_metadata_none_skips_definitions() {
    let caps = MODERN | CapabilityFlags::OPTIONAL_RESULTSET_METADATA;
    let mut t = ResponseTracker::for_command(b"\x03SELECT 1", caps);
    run(
        &mut t,
        &[vec![0x01, 0x00], text_row(&["1"]), ok_eof(AC, caps)],
    );
    let mut t = ResponseTracker::for_command(b"\x03SELECT 1", caps);
    run(
        &mut t,
        &[
            vec![0x01, 0x01],
            column_def("1"),
            text_row(&["1"]),
            ok_eof(AC, caps),
        ],
    );
}

#[test]
fn violations_are_errors() {
    let mut t = ResponseTracker::for_command(b"\x0e", MODERN);
    t.feed(&ok(AC, MODERN)).unwrap();
    assert!(matches!(
        t.feed(&ok(AC, MODERN)),
        Err(CodecError::Protocol(_))
    ));
    let mut t = ResponseTracker::for_command(b"\x03x", MODERN);
    assert!(t.feed(&[]).is_err());
    assert!(t.feed(&[0x00]).is_err(), "truncated ok");
    let mut t = ResponseTracker::for_command(b"\x03x", MODERN);
    assert!(t.feed(&[0xfc, 0x00]).is_err(), "truncated column count");
}

proptest! {
    #[test]
    fn random_packets_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..12),
        cmd in proptest::collection::vec(any::<u8>(), 0..12),
        caps in any::<u32>(),
    ) {
        let mut t = ResponseTracker::for_command(&cmd, CapabilityFlags::from_bits_retain(caps));
        for p in &packets {
            if t.feed(p).is_err() { break; }
        }
    }

    #[test]
    fn generated_responses_complete_exactly_at_the_end(
        sets in proptest::collection::vec((1u64..5, 0usize..5, any::<bool>()), 1..4),
        modern in any::<bool>(),
    ) {
        let caps = if modern { MODERN } else { CLASSIC };
        let mut packets = Vec::new();
        for (i, (cols, rows, as_ok)) in sets.iter().enumerate() {
            let status = if i + 1 == sets.len() { AC } else { MORE };
            if *as_ok {
                packets.push(ok(status, caps));
            } else {
                packets.extend(result_set(caps, *cols, *rows, status));
            }
        }
        let mut t = ResponseTracker::for_command(b"\x03CALL p()", caps);
        for (i, p) in packets.iter().enumerate() {
            let step = t.feed(p).unwrap();
            prop_assert_eq!(step.done, i + 1 == packets.len());
        }
    }
}
