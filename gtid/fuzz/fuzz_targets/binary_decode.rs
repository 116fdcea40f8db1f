//! Causeway binary stream: never panics, never loops, bounded allocation.
//! An odd first byte prepends a valid Hello so later states are reached.
#![no_main]

use causeway_gtid::delta::binary::{Decoder, Encoder, Hello, Message, VERSION};
use causeway_gtid::{GtidSet, Uuid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        Encoder::new().encode(
            &Message::Hello(Hello {
                protocol_version: VERSION,
                server_uuid: Uuid::nil(),
                reader_instance: 0,
                epoch: 0,
            }),
            &mut input,
        );
    }
    input.extend_from_slice(data.get(1..).unwrap_or_default());
    let mut dec = Decoder::with_max_frame_len(1 << 20);
    let mut view = GtidSet::new();
    let mut rest = &input[..];
    while let Ok(Some((msg, n))) = dec.decode(rest) {
        assert!(n > 0 && n <= rest.len());
        msg.apply_to(&mut view);
        rest = &rest[n..];
    }
});
