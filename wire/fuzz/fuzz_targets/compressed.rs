//! The compressed protocol: frames from the network under a frame limit,
//! zlib or zstd. Never a panic, never more out than the limit per frame, and
//! what decodes re-encodes to frames that decode to the same bytes.
#![no_main]

use bytes::BytesMut;
use causeway_wire::compress::{looks_like_frame, Algorithm, CompressedStream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let algorithm = if mode & 1 == 0 {
        Algorithm::Zlib
    } else {
        Algorithm::Zstd(mode >> 4 | 1)
    };
    let limit = 64 * 1024;
    let mut rx = CompressedStream::new(algorithm, limit);
    rx.check_sequence(mode & 2 != 0);
    let mut src = BytesMut::from(rest);
    let mut out = BytesMut::new();
    let mut frames = 0;
    while let Ok(true) = rx.decode(&mut src, &mut out) {
        frames += 1;
    }
    assert!(out.len() <= frames * limit);
    let mut wire = BytesMut::new();
    CompressedStream::new(algorithm, limit).encode(&out, &mut wire);
    let mut again = BytesMut::new();
    let mut rx = CompressedStream::new(algorithm, usize::MAX);
    while rx.decode(&mut wire, &mut again).unwrap() {}
    assert_eq!(again, out);
    let _ = looks_like_frame(rest);
});
