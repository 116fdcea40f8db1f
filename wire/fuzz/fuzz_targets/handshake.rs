//! The server's Initial Handshake v10 and the auth-phase packets a client reads,
//! the RSA public key a server sends in them included.
#![no_main]

use bytes::{Bytes, BytesMut};
use causeway_wire::auth::parse_public_key_pem;
use causeway_wire::handshake::{AuthMoreData, AuthPacketKind, AuthSwitchRequest, HandshakeV10};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(hs) = HandshakeV10::decode(&payload) {
        hs.encode(&mut BytesMut::new());
    }
    let _ = AuthPacketKind::classify(data);
    if let Ok(sw) = AuthSwitchRequest::decode(&payload) {
        let _ = sw.nonce();
    }
    if let Ok(more) = AuthMoreData::decode(&payload) {
        let _ = more.caching_sha2_status();
        let _ = parse_public_key_pem(&more.data);
    }
});
