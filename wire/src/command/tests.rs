use super::*;
use crate::flags::{cursor, ColumnType};
use proptest::prelude::*;

const QA: CapabilityFlags = CapabilityFlags::PROTOCOL_41
    .union(CapabilityFlags::SECURE_CONNECTION)
    .union(CapabilityFlags::QUERY_ATTRIBUTES);
const NO_QA: CapabilityFlags =
    CapabilityFlags::PROTOCOL_41.union(CapabilityFlags::SECURE_CONNECTION);

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn param(ty: ColumnType, name: &'static [u8], value: Option<&'static [u8]>) -> BinaryParam {
    BinaryParam {
        ty: ParamType {
            ty,
            unsigned: false,
        },
        name: b(name),
        value: value.map(b),
    }
}

fn encode(cmd: &ClientCommand, caps: CapabilityFlags) -> Bytes {
    let mut out = BytesMut::new();
    cmd.encode(caps, &mut out).unwrap();
    out.freeze()
}

#[test]
fn com_query_plain_and_with_empty_attributes() {
    let plain = b(b"\x03SELECT 1");
    assert_eq!(
        ClientCommand::decode(&plain, NO_QA).unwrap(),
        ClientCommand::Query(ComQuery::new("SELECT 1"))
    );
    // What libmysql sends with QA negotiated and no attributes: count 0, sets 1.
    let qa = b(b"\x03\x00\x01SELECT 1");
    let q = ClientCommand::decode(&qa, QA).unwrap();
    assert_eq!(q, ClientCommand::Query(ComQuery::new("SELECT 1")));
    assert_eq!(encode(&q, QA), qa);
    assert_eq!(encode(&q, NO_QA), plain);
}

#[test]
fn com_query_with_attributes() {
    // mysql> query_attributes traceparent 00-abc n NULL; SELECT 1
    let mut raw = BytesMut::from(&b"\x03\x02\x01"[..]);
    raw.put_u8(0b10); // second attribute is NULL
    raw.put_u8(1); // new params bound
    raw.put_slice(&[0xfd, 0x00]); // VAR_STRING
    raw.put_slice(b"\x0btraceparent");
    raw.put_slice(&[0x06, 0x00]); // NULL type
    raw.put_slice(b"\x01n");
    raw.put_slice(b"\x0600-abc");
    raw.put_slice(b"SELECT 1");
    let raw = raw.freeze();
    let ClientCommand::Query(q) = ClientCommand::decode(&raw, QA).unwrap() else {
        panic!("not a query");
    };
    assert_eq!(&q.query[..], b"SELECT 1");
    assert_eq!(
        q.attributes,
        vec![
            param(ColumnType::VAR_STRING, b"traceparent", Some(b"00-abc")),
            param(ColumnType::NULL, b"n", None),
        ]
    );
    assert_eq!(encode(&ClientCommand::Query(q), QA), raw);
}

#[test]
fn com_query_attribute_errors() {
    // Two attributes announced in two sets.
    assert!(matches!(
        ComQuery::decode(&b(b"\x03\x01\x02\x00\x01"), QA),
        Err(CodecError::InvalidValue { .. })
    ));
    // Huge count: rejected before any allocation or loop.
    let raw = b(b"\x03\xfe\xff\xff\xff\xff\xff\xff\xff\x7f\x01\x00");
    assert!(matches!(
        ComQuery::decode(&raw, QA),
        Err(CodecError::Truncated { .. })
    ));
    // Unknown parameter type.
    assert!(matches!(
        ComQuery::decode(&b(b"\x03\x01\x01\x00\x01\x14\x00\x00\x00"), QA),
        Err(CodecError::InvalidValue { .. })
    ));
}

#[test]
fn simple_commands() {
    let cases: Vec<(&'static [u8], ClientCommand)> = vec![
        (b"\x01", ClientCommand::Quit),
        (b"\x02shop", ClientCommand::InitDb(b(b"shop"))),
        (b"\x09", ClientCommand::Statistics),
        (b"\x0c\x2a\x00\x00\x00", ClientCommand::ProcessKill(42)),
        (b"\x0e", ClientCommand::Ping),
        (
            b"\x1b\x01\x00",
            ClientCommand::SetOption(MULTI_STATEMENTS_OFF),
        ),
        (b"\x1f", ClientCommand::ResetConnection),
        (b"\x19\x07\x00\x00\x00", ClientCommand::StmtClose(7)),
        (b"\x1a\x07\x00\x00\x00", ClientCommand::StmtReset(7)),
        (
            b"\x04t1\0c%",
            ClientCommand::FieldList(ComFieldList {
                table: b(b"t1"),
                wildcard: b(b"c%"),
            }),
        ),
        (
            b"\x16SELECT ?",
            ClientCommand::StmtPrepare(ComStmtPrepare {
                query: b(b"SELECT ?"),
            }),
        ),
        (
            b"\x1c\x07\x00\x00\x00\x64\x00\x00\x00",
            ClientCommand::StmtFetch(ComStmtFetch {
                statement_id: 7,
                num_rows: 100,
            }),
        ),
        (
            b"\x18\x07\x00\x00\x00\x01\x00chunk",
            ClientCommand::StmtSendLongData(ComStmtSendLongData {
                statement_id: 7,
                param_id: 1,
                data: b(b"chunk"),
            }),
        ),
        (
            b"\x1e\x00\x01",
            ClientCommand::Other {
                command: 0x1e,
                body: b(b"\x00\x01"),
            },
        ),
    ];
    for (raw, expect) in cases {
        let raw = Bytes::from_static(raw);
        let got = ClientCommand::decode(&raw, NO_QA).unwrap();
        assert_eq!(got, expect, "{raw:?}");
        assert_eq!(got.command_byte(), raw[0]);
        assert_eq!(encode(&got, NO_QA), raw, "re-encode {raw:?}");
    }
}

#[test]
fn malformed_simple_commands() {
    for raw in [
        &b""[..],
        b"\x0e\x00",
        b"\x0c\x01",
        b"\x1b\x01",
        b"\x19\x01\x00\x00\x00\x00",
        b"\x1c\x01\x00\x00\x00",
        b"\x04no-nul",
        b"\x18\x01\x00\x00\x00\x01",
    ] {
        assert!(
            ClientCommand::decode(&Bytes::copy_from_slice(raw), NO_QA).is_err(),
            "{raw:?}"
        );
    }
}

#[test]
fn com_change_user_round_trip() {
    let caps = NO_QA | CapabilityFlags::PLUGIN_AUTH | CapabilityFlags::CONNECT_ATTRS;
    let cu = ComChangeUser {
        username: b(b"app"),
        auth_response: Bytes::from(vec![9u8; 32]),
        database: b(b"shop"),
        charset: Some(255),
        auth_plugin_name: Some(b(b"caching_sha2_password")),
        connect_attrs: vec![(b(b"_client_name"), b(b"libmysql"))],
    };
    let raw = encode(&ClientCommand::ChangeUser(cu.clone()), caps);
    assert_eq!(&raw[..5], b"\x11app\0");
    assert_eq!(raw[5], 32);
    assert_eq!(&raw[38..43], b"shop\0");
    assert_eq!(&raw[43..45], &[0xff, 0x00]);
    assert_eq!(
        ClientCommand::decode(&raw, caps).unwrap(),
        ClientCommand::ChangeUser(cu)
    );
    // Minimal form: no charset and nothing after the schema.
    let min = ComChangeUser::decode(&b(b"\x11u\0\x00db\0"), caps).unwrap();
    assert_eq!((min.charset, &min.database[..]), (None, &b"db"[..]));
}

/// A statement prepared with two parameters (`WHERE id = ? AND name = ?`).
fn execute_two_params() -> Bytes {
    let mut raw = BytesMut::new();
    raw.put_u8(0x17);
    raw.put_u32_le(5);
    raw.put_u8(cursor::NO_CURSOR);
    raw.put_u32_le(1);
    raw.put_u8(0b00); // no NULLs
    raw.put_u8(1); // bound
    raw.put_slice(&[0x08, 0x80]); // LONGLONG unsigned
    raw.put_slice(&[0xfd, 0x00]); // VAR_STRING
    raw.put_u64_le(42);
    raw.put_slice(b"\x03abc");
    raw.freeze()
}

#[test]
fn com_stmt_execute_params() {
    let raw = execute_two_params();
    let ClientCommand::StmtExecute(exec) = ClientCommand::decode(&raw, NO_QA).unwrap() else {
        panic!("not an execute");
    };
    assert_eq!((exec.statement_id, exec.iteration_count), (5, 1));
    assert!(!exec.opens_cursor());
    let params = exec.params(NO_QA, 2, None).unwrap();
    assert!(params.new_params_bound);
    assert_eq!(params.params[0].as_u64(), Some(42));
    assert!(params.params[0].ty.unsigned);
    assert_eq!(params.params[1].value.as_deref(), Some(&b"abc"[..]));
    // Too few parameters announced leaves the values unread: that is fine;
    // too many runs out of bytes.
    assert!(exec.params(NO_QA, 9, None).is_err());

    let rebuilt = ComStmtExecute::new(5, 0, &params, NO_QA).unwrap();
    let mut out = BytesMut::new();
    rebuilt.encode(&mut out);
    assert_eq!(out.freeze(), raw);
}

#[test]
fn com_stmt_execute_without_rebinding_uses_previous_types() {
    let mut raw = BytesMut::new();
    raw.put_u8(0x17);
    raw.put_u32_le(5);
    raw.put_u8(0);
    raw.put_u32_le(1);
    raw.put_u8(0b01); // first parameter NULL
    raw.put_u8(0); // not rebound
    raw.put_u32_le(0xffff_fff6); // LONG -10
    let exec = ComStmtExecute::decode(&raw.freeze()).unwrap();
    assert!(matches!(
        exec.params(NO_QA, 2, None),
        Err(CodecError::Protocol(_))
    ));
    let types = [
        ParamType {
            ty: ColumnType::DOUBLE,
            unsigned: false,
        },
        ParamType {
            ty: ColumnType::LONG,
            unsigned: false,
        },
    ];
    let params = exec.params(NO_QA, 2, Some(&types)).unwrap();
    assert!(!params.new_params_bound);
    assert_eq!(params.params[0].value, None);
    assert_eq!(params.params[1].as_i64(), Some(-10));
    assert_eq!(params.types(), types);
}

#[test]
fn com_stmt_execute_with_query_attributes_and_cursor() {
    // One statement parameter plus one attribute; count sent explicitly.
    let params = ExecuteParams {
        new_params_bound: true,
        params: vec![
            BinaryParam {
                ty: ParamType {
                    ty: ColumnType::DOUBLE,
                    unsigned: false,
                },
                name: Bytes::new(),
                value: Some(Bytes::copy_from_slice(&1.5f64.to_le_bytes())),
            },
            param(ColumnType::STRING, b"trace", Some(b"t1")),
        ],
    };
    let exec = ComStmtExecute::new(9, cursor::READ_ONLY, &params, QA).unwrap();
    assert!(exec.opens_cursor());
    assert_ne!(exec.flags & cursor::PARAMETER_COUNT_AVAILABLE, 0);
    let mut out = BytesMut::new();
    exec.encode(&mut out);
    let out = out.freeze();
    assert_eq!(out[10], 2, "parameter count follows the header");
    let back = ComStmtExecute::decode(&out).unwrap();
    let got = back.params(QA, 1, None).unwrap();
    assert_eq!(got, params);
    assert_eq!(got.params[0].as_f64(), Some(1.5));
    // No parameters, no attributes: nothing follows the header.
    let none = ComStmtExecute::decode(&b(b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00")).unwrap();
    assert_eq!(none.params(QA, 0, None).unwrap(), ExecuteParams::default());
}

#[test]
fn temporal_and_integer_values() {
    let datetime = param(
        ColumnType::DATETIME,
        b"",
        Some(b"\xe9\x07\x0b\x15\x08\x2a\x00"),
    );
    let mut out = BytesMut::new();
    put_value(&mut out, datetime.ty.ty, datetime.value.as_deref().unwrap()).unwrap();
    assert_eq!(out[0], 7);
    let mut r = Reader::new(&out);
    assert_eq!(read_value(&mut r, ColumnType::DATETIME).unwrap(), &out[1..]);
    assert!(put_value(&mut BytesMut::new(), ColumnType::LONG, b"\x01").is_err());
    let tiny = param(ColumnType::TINY, b"", Some(b"\xff"));
    assert_eq!((tiny.as_i64(), tiny.as_u64()), (Some(-1), Some(255)));
    assert_eq!(param(ColumnType::STRING, b"", Some(b"1")).as_i64(), None);
}

#[test]
fn prepare_ok_and_statement_id_rewrite() {
    let ok = StmtPrepareOk {
        statement_id: 1,
        num_columns: 3,
        num_params: 2,
        warnings: 0,
        metadata_follows: None,
    };
    let mut out = BytesMut::new();
    ok.encode(&mut out);
    assert_eq!(&out[..], &[0x00, 1, 0, 0, 0, 3, 0, 2, 0, 0x00, 0, 0]);
    assert_eq!(StmtPrepareOk::decode(&out).unwrap(), ok);
    set_statement_id(&mut out, 0xdead_beef).unwrap();
    assert_eq!(
        StmtPrepareOk::decode(&out).unwrap().statement_id,
        0xdead_beef
    );

    let mut exec = BytesMut::from(&execute_two_params()[..]);
    set_statement_id(&mut exec, 77).unwrap();
    assert_eq!(statement_id(&exec).unwrap(), 77);
    assert!(set_statement_id(&mut BytesMut::from(&b"\x03SELECT"[..]), 1).is_err());
    assert!(set_statement_id(&mut BytesMut::from(&b"\x19\x01"[..]), 1).is_err());
    assert!(set_statement_id(&mut BytesMut::new(), 1).is_err());
    // Old servers end the packet after the parameter count.
    assert_eq!(
        StmtPrepareOk::decode(&[0, 2, 0, 0, 0, 0, 0, 0, 0])
            .unwrap()
            .statement_id,
        2
    );
}

fn arb_param() -> impl Strategy<Value = BinaryParam> {
    let ty = prop_oneof![
        Just((ColumnType::TINY, 1usize)),
        Just((ColumnType::LONG, 4)),
        Just((ColumnType::LONGLONG, 8)),
        Just((ColumnType::DOUBLE, 8)),
        Just((ColumnType::DATETIME, 7)),
        Just((ColumnType::VAR_STRING, 300)),
        Just((ColumnType::BLOB, 3)),
    ];
    (
        ty,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..12),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|((ty, len), unsigned, name, mut value, null)| {
            let fixed = matches!(
                ty,
                ColumnType::TINY | ColumnType::LONG | ColumnType::LONGLONG | ColumnType::DOUBLE
            );
            value.resize(if fixed { len } else { value.len().min(len) }, 7);
            BinaryParam {
                ty: ParamType { ty, unsigned },
                name: Bytes::from(name),
                value: (!null).then(|| Bytes::from(value)),
            }
        })
}

proptest! {
    #[test]
    fn random_commands_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120), caps in any::<u32>(), n in any::<u16>()) {
        let caps = CapabilityFlags::from_bits_retain(caps);
        let raw = Bytes::from(data);
        if let Ok(ClientCommand::StmtExecute(e)) = ClientCommand::decode(&raw, caps) {
            let _ = e.params(caps, n % 64, None);
        }
        // Force each decoder to see the random body.
        for cmd in 0u8..=0x22 {
            let mut p = BytesMut::new();
            p.put_u8(cmd);
            p.put_slice(&raw);
            let p = p.freeze();
            if let Ok(ClientCommand::StmtExecute(e)) = ClientCommand::decode(&p, caps) {
                let types = [ParamType { ty: ColumnType::STRING, unsigned: false }; 4];
                let _ = e.params(caps, n % 8, Some(&types));
            }
            let _ = StmtPrepareOk::decode(&p);
        }
    }

    #[test]
    fn query_attributes_round_trip(attrs in proptest::collection::vec(arb_param(), 0..6), q in proptest::collection::vec(any::<u8>(), 0..40)) {
        let query = ComQuery { attributes: attrs, query: Bytes::from(q) };
        let raw = encode(&ClientCommand::Query(query.clone()), QA);
        prop_assert_eq!(ClientCommand::decode(&raw, QA).unwrap(), ClientCommand::Query(query));
    }

    #[test]
    fn execute_round_trip(params in proptest::collection::vec(arb_param(), 0..6), qa in any::<bool>(), id in any::<u32>()) {
        let caps = if qa { QA } else { NO_QA };
        let params: Vec<_> = if qa { params } else {
            params.into_iter().map(|mut p| { p.name = Bytes::new(); p }).collect()
        };
        let params = ExecuteParams { new_params_bound: !params.is_empty(), params };
        let exec = ComStmtExecute::new(id, 0, &params, caps).unwrap();
        let mut out = BytesMut::new();
        exec.encode(&mut out);
        let back = ComStmtExecute::decode(&out.freeze()).unwrap();
        prop_assert_eq!(back.statement_id, id);
        let n = params.params.len() as u16;
        prop_assert_eq!(back.params(caps, n, None).unwrap(), params);
    }
}
