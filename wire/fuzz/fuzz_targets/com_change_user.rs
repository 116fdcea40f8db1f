//! COM_CHANGE_USER under arbitrary capabilities (first 4 bytes).
#![no_main]

use bytes::{BufMut, BytesMut};
use causeway_wire::command::ComChangeUser;
use causeway_wire::CapabilityFlags;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let caps =
        CapabilityFlags::from_bits_retain(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    let mut p = BytesMut::new();
    p.put_u8(0x11);
    p.put_slice(&data[4..]);
    if let Ok(cu) = ComChangeUser::decode(&p.freeze(), caps) {
        let _ = cu.encode(caps, &mut BytesMut::new());
    }
});
