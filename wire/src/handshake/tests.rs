use super::*;
use proptest::prelude::*;

const NONCE: &[u8; 20] =
    b"\x1a\x2b\x3c\x4d\x5e\x6f\x70\x01\x11\x22\x33\x44\x55\x66\x77\x08\x19\x2a\x3b\x4c";

/// A MySQL 8.x/9.x style handshake, hand-built from the protocol docs:
/// version "9.7.0", thread 12, caps 0xdfffffff, utf8mb4_0900_ai_ci,
/// autocommit, 21 bytes of auth data, caching_sha2_password.
fn mysql_handshake() -> Bytes {
    let mut b = Vec::new();
    b.push(0x0a);
    b.extend_from_slice(b"9.7.0\0");
    b.extend_from_slice(&12u32.to_le_bytes());
    b.extend_from_slice(&NONCE[..8]);
    b.push(0);
    b.extend_from_slice(&[0xff, 0xff]);
    b.push(0xff);
    b.extend_from_slice(&[0x02, 0x00]);
    b.extend_from_slice(&[0xff, 0xdf]);
    b.push(21);
    b.extend_from_slice(&[0; 10]);
    b.extend_from_slice(&NONCE[8..]);
    b.push(0);
    b.extend_from_slice(b"caching_sha2_password\0");
    Bytes::from(b)
}

#[test]
fn decodes_a_mysql_handshake() {
    let raw = mysql_handshake();
    let hs = HandshakeV10::decode(&raw).unwrap();
    assert_eq!(&hs.server_version[..], b"9.7.0");
    assert_eq!(hs.connection_id, 12);
    assert_eq!(&hs.auth_plugin_data[..], &NONCE[..]);
    assert_eq!(hs.capabilities.bits(), 0xdfff_ffff);
    assert!(hs.capabilities.contains(
        CapabilityFlags::PROTOCOL_41
            | CapabilityFlags::PLUGIN_AUTH
            | CapabilityFlags::SESSION_TRACK
            | CapabilityFlags::DEPRECATE_EOF
            | CapabilityFlags::QUERY_ATTRIBUTES
    ));
    assert_eq!(hs.charset, 255);
    assert_eq!(hs.status, StatusFlags::AUTOCOMMIT);
    assert_eq!(&hs.auth_plugin_name[..], b"caching_sha2_password");
    let mut out = BytesMut::new();
    hs.encode(&mut out);
    assert_eq!(out.freeze(), raw, "re-encoding is byte-identical");
}

#[test]
fn handshake_without_terminated_plugin_name() {
    let mut raw = mysql_handshake().to_vec();
    raw.pop();
    let hs = HandshakeV10::decode(&Bytes::from(raw)).unwrap();
    assert_eq!(&hs.auth_plugin_name[..], b"caching_sha2_password");
}

#[test]
fn handshake_errors() {
    assert!(matches!(
        HandshakeV10::decode(&Bytes::from_static(b"\xff\x69\x04blocked")),
        Err(CodecError::UnexpectedHeader { header: 0xff, .. })
    ));
    let raw = mysql_handshake();
    for cut in [0, 1, 5, 10, 15, 20] {
        assert!(
            HandshakeV10::decode(&raw.slice(..cut)).is_err(),
            "cut {cut}"
        );
    }
}

fn full_caps() -> CapabilityFlags {
    CapabilityFlags::PROTOCOL_41
        | CapabilityFlags::SECURE_CONNECTION
        | CapabilityFlags::PLUGIN_AUTH
        | CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CONNECT_WITH_DB
        | CapabilityFlags::CONNECT_ATTRS
        | CapabilityFlags::DEPRECATE_EOF
        | CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM
}

#[test]
fn handshake_response_full_round_trip() {
    let resp = HandshakeResponse {
        capabilities: full_caps(),
        max_packet_size: 16 * 1024 * 1024,
        charset: 255,
        username: Bytes::from_static(b"app"),
        auth_response: Bytes::from(vec![7u8; 32]),
        database: Some(Bytes::from_static(b"shop")),
        auth_plugin_name: Some(Bytes::from_static(b"caching_sha2_password")),
        connect_attrs: vec![
            (
                Bytes::from_static(b"_client_name"),
                Bytes::from_static(b"libmysql"),
            ),
            (Bytes::from_static(b"_pid"), Bytes::from_static(b"4242")),
        ],
        zstd_level: Some(3),
    };
    let mut b = BytesMut::new();
    resp.encode(&mut b).unwrap();
    let b = b.freeze();
    // Hand-check the fixed prefix and the lenenc auth response.
    assert_eq!(&b[..4], &full_caps().bits().to_le_bytes());
    assert_eq!(&b[4..8], &(16u32 << 20).to_le_bytes());
    assert_eq!(b[8], 255);
    assert_eq!(&b[9..32], &[0u8; 23]);
    assert_eq!(&b[32..36], b"app\0");
    assert_eq!(b[36], 32);
    match ClientHandshake::decode(&b).unwrap() {
        ClientHandshake::Response(got) => assert_eq!(got, resp),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn handshake_response_with_one_byte_auth_length() {
    let caps = CapabilityFlags::PROTOCOL_41 | CapabilityFlags::SECURE_CONNECTION;
    let resp = HandshakeResponse {
        capabilities: caps,
        username: Bytes::from_static(b"root"),
        auth_response: Bytes::from(vec![1u8; 20]),
        ..Default::default()
    };
    let mut b = BytesMut::new();
    resp.encode(&mut b).unwrap();
    assert_eq!(b[32 + 5], 20);
    assert_eq!(HandshakeResponse::decode(&b.freeze()).unwrap(), resp);

    let too_long = HandshakeResponse {
        auth_response: Bytes::from(vec![0u8; 256]),
        ..resp
    };
    assert!(too_long.encode(&mut BytesMut::new()).is_err());
}

#[test]
fn handshake_response_tolerates_missing_optional_fields() {
    // CONNECT_WITH_DB and PLUGIN_AUTH set but the packet ends after the auth data.
    let caps = full_caps();
    let mut b = BytesMut::new();
    b.put_u32_le(caps.bits());
    b.put_u32_le(0);
    b.put_u8(33);
    b.put_bytes(0, 23);
    b.put_slice(b"u\0");
    b.put_u8(0);
    let r = HandshakeResponse::decode(&b.freeze()).unwrap();
    assert_eq!(r.database, None);
    assert_eq!(r.auth_plugin_name, None);
    assert!(r.connect_attrs.is_empty());
}

#[test]
fn pre_41_response_is_unsupported() {
    let b = Bytes::from_static(&[0x00, 0x00, 0x00, 0x00, 0, 0, 0]);
    assert!(matches!(
        HandshakeResponse::decode(&b),
        Err(CodecError::Unsupported(_))
    ));
}

#[test]
fn ssl_request_is_recognised() {
    let req = SslRequest {
        capabilities: CapabilityFlags::PROTOCOL_41 | CapabilityFlags::SSL,
        max_packet_size: 1 << 24,
        charset: 255,
    };
    let mut b = BytesMut::new();
    req.encode(&mut b);
    assert_eq!(b.len(), 32);
    assert_eq!(
        ClientHandshake::decode(&b.freeze()).unwrap(),
        ClientHandshake::SslRequest(req)
    );
}

#[test]
fn auth_switch_and_more_data() {
    let raw = Bytes::from_static(b"\xfemysql_native_password\0abcdefghijklmnopqrst\0");
    let sw = AuthSwitchRequest::decode(&raw).unwrap();
    assert_eq!(&sw.plugin_name[..], b"mysql_native_password");
    assert_eq!(sw.nonce(), b"abcdefghijklmnopqrst");
    let mut b = BytesMut::new();
    sw.encode(&mut b);
    assert_eq!(b.freeze(), raw);
    assert!(matches!(
        AuthSwitchRequest::decode(&Bytes::from_static(b"\xfe")),
        Err(CodecError::Unsupported(_))
    ));

    let mut b = BytesMut::new();
    AuthMoreData::fast_auth_success().encode(&mut b);
    assert_eq!(&b[..], &[0x01, 0x03]);
    let more = AuthMoreData::decode(&b.freeze()).unwrap();
    assert_eq!(
        more.caching_sha2_status(),
        Some(CACHING_SHA2_FAST_AUTH_SUCCESS)
    );
    let mut b = BytesMut::new();
    AuthMoreData::perform_full_auth().encode(&mut b);
    assert_eq!(&b[..], &[0x01, 0x04]);
    let pem =
        AuthMoreData::decode(&Bytes::from_static(b"\x01-----BEGIN PUBLIC KEY-----\n")).unwrap();
    assert_eq!(pem.caching_sha2_status(), None);

    assert_eq!(
        AuthPacketKind::classify(&[0x00, 0, 0]).unwrap(),
        AuthPacketKind::Ok
    );
    assert_eq!(
        AuthPacketKind::classify(&[0x01, 3]).unwrap(),
        AuthPacketKind::MoreData
    );
    assert_eq!(
        AuthPacketKind::classify(b"\xfex\0").unwrap(),
        AuthPacketKind::Switch
    );
    assert_eq!(
        AuthPacketKind::classify(&[0xff, 0, 0]).unwrap(),
        AuthPacketKind::Err
    );
    assert!(AuthPacketKind::classify(&[0x05]).is_err());
    assert!(AuthPacketKind::classify(&[]).is_err());
}

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn nul_free(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(1u8..=255, 0..max).prop_map(Bytes::from)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let b = Bytes::from(data);
        let _ = HandshakeV10::decode(&b);
        let _ = ClientHandshake::decode(&b);
        let _ = AuthSwitchRequest::decode(&b);
        let _ = AuthMoreData::decode(&b);
        let _ = AuthPacketKind::classify(&b);
    }

    #[test]
    fn handshake_v10_round_trip(
        version in nul_free(20), id in any::<u32>(), nonce in proptest::collection::vec(1u8..=255, 20),
        caps in any::<u32>(), charset in any::<u8>(), status in any::<u16>(), plugin in nul_free(30),
    ) {
        let caps = CapabilityFlags::from_bits_retain(caps)
            | CapabilityFlags::SECURE_CONNECTION | CapabilityFlags::PLUGIN_AUTH;
        let hs = HandshakeV10 {
            server_version: version, connection_id: id, auth_plugin_data: Bytes::from(nonce),
            capabilities: caps, charset, status: StatusFlags::from_bits_retain(status),
            auth_plugin_name: plugin,
        };
        let mut b = BytesMut::new();
        hs.encode(&mut b);
        prop_assert_eq!(HandshakeV10::decode(&b.freeze()).unwrap(), hs);
    }

    #[test]
    fn handshake_response_round_trip(
        caps in any::<u32>(), max in any::<u32>(), charset in any::<u8>(), user in nul_free(20),
        auth in bytes_strategy(40), db in nul_free(20), plugin in nul_free(20),
        attrs in proptest::collection::vec((bytes_strategy(10), bytes_strategy(10)), 0..4),
        zstd in any::<u8>(),
    ) {
        let mut caps = CapabilityFlags::from_bits_retain(caps) | CapabilityFlags::PROTOCOL_41;
        // Without SECURE_CONNECTION / LENENC the auth response is NUL-terminated.
        let auth = if caps.intersects(CapabilityFlags::SECURE_CONNECTION | CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            auth
        } else {
            Bytes::from(auth.iter().copied().filter(|&b| b != 0).collect::<Vec<_>>())
        };
        // Empty trailing optional strings are indistinguishable from absent ones.
        if db.is_empty() { caps.remove(CapabilityFlags::CONNECT_WITH_DB); }
        let resp = HandshakeResponse {
            capabilities: caps,
            max_packet_size: max,
            charset,
            username: user,
            auth_response: auth,
            database: caps.contains(CapabilityFlags::CONNECT_WITH_DB).then_some(db),
            auth_plugin_name: caps.contains(CapabilityFlags::PLUGIN_AUTH).then_some(plugin),
            connect_attrs: if caps.contains(CapabilityFlags::CONNECT_ATTRS) { attrs } else { vec![] },
            zstd_level: caps.contains(CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM).then_some(zstd),
        };
        let mut b = BytesMut::new();
        resp.encode(&mut b).unwrap();
        let b = b.freeze();
        // A 32-byte packet with SSL set is by definition an SSLRequest.
        prop_assume!(!(b.len() == SSL_REQUEST_LEN && caps.contains(CapabilityFlags::SSL)));
        match ClientHandshake::decode(&b).unwrap() {
            ClientHandshake::Response(got) => prop_assert_eq!(got, resp),
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }
}
