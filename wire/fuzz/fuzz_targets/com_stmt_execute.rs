//! COM_STMT_EXECUTE parameter parsing. Input: parameter count, a flag byte
//! (bit 0: query attributes), then the payload after the command byte.
#![no_main]

use bytes::{BufMut, BytesMut};
use causeway_wire::command::{ComStmtExecute, ParamType};
use causeway_wire::{CapabilityFlags, ColumnType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let num_params = u16::from(data[0]);
    let mut caps = CapabilityFlags::PROTOCOL_41;
    if data[1] & 1 != 0 {
        caps |= CapabilityFlags::QUERY_ATTRIBUTES;
    }
    let mut p = BytesMut::new();
    p.put_u8(0x17);
    p.put_slice(&data[2..]);
    let Ok(exec) = ComStmtExecute::decode(&p.freeze()) else {
        return;
    };
    let types = [ParamType {
        ty: ColumnType::VAR_STRING,
        unsigned: false,
    }; 4];
    let prev = (data[1] & 2 != 0).then_some(&types[..]);
    if let Ok(params) = exec.params(caps, num_params, prev) {
        let rebuilt = ComStmtExecute::new(exec.statement_id, exec.flags, &params, caps);
        assert!(rebuilt.is_ok());
    }
});
