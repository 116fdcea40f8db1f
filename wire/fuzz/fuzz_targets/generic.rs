//! OK / ERR / EOF / PREPARE_OK and session-state parsing and GTID stripping.
//! Input: 4 bytes of capabilities, then the payload.
#![no_main]

use bytes::{Bytes, BytesMut};
use causeway_wire::command::StmtPrepareOk;
use causeway_wire::session_state::{strip_gtids, SessionStateIter};
use causeway_wire::{CapabilityFlags, EofPacket, ErrPacket, OkPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let caps =
        CapabilityFlags::from_bits_retain(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    let payload = Bytes::copy_from_slice(&data[4..]);
    if let Ok(ok) = OkPacket::decode(&payload, caps) {
        for entry in ok.session_state() {
            if entry.is_err() {
                break;
            }
        }
        let _ = ok.gtids();
        if let Ok(Some(stripped)) = ok.without_gtids() {
            assert!(stripped.session_state.len() < ok.session_state.len());
            stripped.encode(caps, &mut BytesMut::new());
        }
        ok.encode(caps, &mut BytesMut::new());
    }
    if let Ok(err) = ErrPacket::decode(&payload) {
        err.encode(caps, &mut BytesMut::new());
    }
    let _ = EofPacket::decode(&payload);
    let _ = StmtPrepareOk::decode(&payload);
    for _ in SessionStateIter::new(&payload) {}
    let _ = strip_gtids(&payload);
});
