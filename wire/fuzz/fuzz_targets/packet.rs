//! Packet framing: logical and raw-chunk decoders under a payload limit.
#![no_main]

use bytes::BytesMut;
use causeway_wire::packet::encode_packet;
use causeway_wire::{ChunkDecoder, PacketCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let limit = usize::from(limit) * 16;
    let mut codec = PacketCodec::new(limit);
    if limit % 32 == 0 {
        codec.set_sequence(Some(0));
    }
    let mut src = BytesMut::from(rest);
    while let Ok(Some(p)) = codec.decode(&mut src) {
        assert!(p.payload.len() <= limit);
        let mut wire = BytesMut::new();
        encode_packet(p.seq, &p.payload, &mut wire);
        let again = PacketCodec::new(usize::MAX).decode(&mut wire).unwrap();
        assert_eq!(again.as_ref(), Some(&p));
    }
    let mut raw = ChunkDecoder::new(limit);
    let mut src = BytesMut::from(rest);
    while let Ok(Some(c)) = raw.decode(&mut src) {
        assert!(c.payload.len() <= limit);
    }
});
