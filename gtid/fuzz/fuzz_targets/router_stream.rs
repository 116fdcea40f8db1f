//! The native stream as the router reads it (`router/src/views.rs`,
//! `apply`): `Decoder::new()` (the default frame limit), bytes arriving in
//! arbitrary chunks into a buffer that is decoded as far as it goes and then
//! drained. Whatever the chunking, the messages and the resulting view are
//! those of decoding the whole input at once. Never panics, never loops.
//!
//! Input: one byte choosing the chunk sizes, then the stream.
#![no_main]

use causeway_gtid::delta::binary::{Decoder, Message};
use causeway_gtid::GtidSet;
use libfuzzer_sys::fuzz_target;

/// Decodes `src` in one go: the messages up to the first error, and whether
/// one happened.
fn whole(src: &[u8]) -> (Vec<Message>, bool) {
    let mut dec = Decoder::new();
    let mut msgs = Vec::new();
    let mut used = 0;
    loop {
        match dec.decode(&src[used..]) {
            Ok(Some((msg, n))) => {
                assert!(n > 0 && n <= src.len() - used);
                used += n;
                msgs.push(msg);
            }
            Ok(None) => return (msgs, false),
            Err(_) => return (msgs, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let (expected, expect_err) = whole(stream);

    // The router's loop, chunk sizes 1..=16 drawn from `pattern`.
    let mut dec = Decoder::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut failed = false;
    let mut rest = stream;
    let mut k = 0u32;
    'read: while !rest.is_empty() {
        let size = 1 + (usize::from(pattern.rotate_left(k)) % 16);
        k += 1;
        let n = size.min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut used = 0;
        loop {
            match dec.decode(&buf[used..]) {
                Ok(Some((msg, n))) => {
                    used += n;
                    got.push(msg);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'read;
                }
            }
        }
        buf.drain(..used);
    }
    assert_eq!(got, expected, "chunking changed the messages");
    assert_eq!(failed, expect_err, "chunking changed the outcome");

    let mut view = GtidSet::new();
    for msg in &got {
        msg.apply_to(&mut view);
    }
});
