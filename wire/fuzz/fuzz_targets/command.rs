//! Every client command through the dispatcher. Input: 4 bytes of
//! capabilities, 1 byte of prepared parameter count, then the payload.
#![no_main]

use bytes::{Bytes, BytesMut};
use causeway_wire::command::{ClientCommand, ParamType};
use causeway_wire::{CapabilityFlags, ColumnType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let caps =
        CapabilityFlags::from_bits_retain(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    let num_params = u16::from(data[4]);
    let payload = Bytes::copy_from_slice(&data[5..]);
    let Ok(cmd) = ClientCommand::decode(&payload, caps) else {
        return;
    };
    let _ = cmd.encode(caps, &mut BytesMut::new());
    if let ClientCommand::StmtExecute(exec) = cmd {
        let _ = exec.params(caps, num_params, None);
        let types = [ParamType {
            ty: ColumnType::LONGLONG,
            unsigned: true,
        }; 8];
        let _ = exec.params(caps, num_params % 8, Some(&types));
    }
});
