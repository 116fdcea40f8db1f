//! The response state machine fed arbitrary packet sequences. Input: a
//! command selector byte, 4 bytes of capabilities, then packets as
//! `u8 length, bytes`.
#![no_main]

use causeway_wire::{CapabilityFlags, ResponseTracker};
use libfuzzer_sys::fuzz_target;

const COMMANDS: [&[u8]; 8] = [
    b"\x03SELECT 1",
    b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00",
    b"\x17\x01\x00\x00\x00\x01\x01\x00\x00\x00",
    b"\x1c\x01\x00\x00\x00\x01\x00\x00\x00",
    b"\x16SELECT ?",
    b"\x04t\0",
    b"\x11u\0\0\0",
    b"\x0e",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let cmd = COMMANDS[usize::from(data[0]) % COMMANDS.len()];
    let caps =
        CapabilityFlags::from_bits_retain(u32::from_le_bytes([data[1], data[2], data[3], data[4]]));
    let mut tracker = ResponseTracker::for_command(cmd, caps);
    let mut rest = &data[5..];
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        match tracker.feed(packet) {
            Ok(step) if step.done => {
                assert!(tracker.is_done());
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
