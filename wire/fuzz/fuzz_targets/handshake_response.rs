//! The client's first packet: SSLRequest or HandshakeResponse41.
#![no_main]

use bytes::{Bytes, BytesMut};
use causeway_wire::handshake::ClientHandshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    match ClientHandshake::decode(&payload) {
        Ok(ClientHandshake::Response(r)) => {
            assert!(r.username.len() < data.len());
            let _ = r.encode(&mut BytesMut::new());
        }
        Ok(ClientHandshake::SslRequest(s)) => s.encode(&mut BytesMut::new()),
        Err(_) => {}
    }
});
