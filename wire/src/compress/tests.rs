use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::packet::encode_packet;

fn zstd3() -> Algorithm {
    Algorithm::Zstd(3)
}

/// Encodes `plain` with one stream and decodes it with another, feeding the
/// wire bytes in pieces of `step`.
fn round_trip(algorithm: Algorithm, plain: &[u8], step: usize) -> Vec<u8> {
    let mut tx = CompressedStream::new(algorithm, MAX_FRAME);
    let mut wire = BytesMut::new();
    tx.encode(plain, &mut wire);
    let mut rx = CompressedStream::new(algorithm, MAX_FRAME);
    rx.check_sequence(true);
    let mut src = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in wire.chunks(step.max(1)) {
        src.extend_from_slice(piece);
        while rx.decode(&mut src, &mut out).unwrap() {}
    }
    assert!(src.is_empty());
    out.to_vec()
}

#[test]
fn mysql_documented_zlib_frame_decodes() {
    // net_serv.cc, "Example: One MySQL Packet".
    let frame: &[u8] = &[
        0x22, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x78, 0x9c, 0xd3, 0x63, 0x60, 0x60, 0x60, 0x2e,
        0x4e, 0xcd, 0x49, 0x4d, 0x2e, 0x51, 0x50, 0x32, 0x30, 0x34, 0x32, 0x36, 0x31, 0x35, 0x33,
        0xb7, 0xb0, 0xc4, 0xcd, 0x52, 0x02, 0x00, 0x0c, 0xd1, 0x0a, 0x6c,
    ];
    let mut rx = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    rx.check_sequence(true);
    let (mut src, mut out) = (BytesMut::from(frame), BytesMut::new());
    assert!(rx.decode(&mut src, &mut out).unwrap());
    let mut expected = BytesMut::new();
    encode_packet(
        0,
        b"\x03select \"012345678901234567890123456789012345\"",
        &mut expected,
    );
    assert_eq!(out, expected);
    // The answer goes out as compressed sequence id 1.
    let mut wire = BytesMut::new();
    rx.encode(b"\x01\x00\x00\x01\x01", &mut wire);
    assert_eq!(wire[3], 1);
}

#[test]
fn mysql_documented_stored_frame_decodes_and_short_payloads_are_stored() {
    // net_serv.cc, "Uncompressed Payload": SELECT 1.
    let frame: &[u8] = b"\x0d\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x03SELECT 1";
    let mut rx = CompressedStream::new(zstd3(), MAX_FRAME);
    let (mut src, mut out) = (BytesMut::from(frame), BytesMut::new());
    assert!(rx.decode(&mut src, &mut out).unwrap());
    assert_eq!(&out[..], &frame[7..]);
    let mut tx = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    let mut wire = BytesMut::new();
    tx.encode(&frame[7..], &mut wire);
    assert_eq!(&wire[..], frame);
}

#[test]
fn large_input_is_split_into_frames_of_at_most_16_mib() {
    let plain: Vec<u8> = (0..MAX_FRAME + 1000).map(|i| (i % 251) as u8).collect();
    for algorithm in [Algorithm::Zlib, zstd3()] {
        let mut tx = CompressedStream::new(algorithm, MAX_FRAME);
        let mut wire = BytesMut::new();
        tx.encode(&plain, &mut wire);
        assert!(wire.len() < plain.len() / 4, "compressible input shrinks");
        assert_eq!(round_trip(algorithm, &plain, 1 << 20), plain);
    }
}

#[test]
fn incompressible_input_is_stored() {
    let mut x = 0x1234_5678u32;
    let plain: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut tx = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    let mut wire = BytesMut::new();
    tx.encode(&plain, &mut wire);
    assert_eq!(&wire[4..7], &[0, 0, 0]);
    assert_eq!(&wire[7..], &plain[..]);
}

fn frame(seq: u8, declared: usize, body: &[u8]) -> BytesMut {
    let mut f = BytesMut::new();
    put_u24(&mut f, body.len());
    f.put_u8(seq);
    put_u24(&mut f, declared);
    f.put_slice(body);
    f
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(flate2::Compression::new(6), true);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Finish)
        .unwrap();
    out
}

#[test]
fn lies_and_garbage_are_errors_not_panics() {
    let data = vec![b'a'; 1000];
    let body = zlib(&data);
    let cases = [
        ("declared longer", frame(0, 1001, &body)),
        ("declared shorter", frame(0, 999, &body)),
        ("garbage", frame(0, 1000, &[0x78, 0x9c, 1, 2, 3, 4, 5])),
        ("truncated stream", frame(0, 1000, &body[..body.len() - 4])),
    ];
    for (what, mut src) in cases {
        let mut rx = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
        let e = rx.decode(&mut src, &mut BytesMut::new()).unwrap_err();
        assert!(matches!(e, CodecError::Uncompress(_)), "{what}: {e:?}");
    }
    let mut src = frame(0, 1000, b"\x28\xb5\x2f\xfdgarbage");
    let mut rx = CompressedStream::new(zstd3(), MAX_FRAME);
    let e = rx.decode(&mut src, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(e, CodecError::Uncompress(_)), "{e:?}");
}

#[test]
fn a_bomb_is_refused_before_inflating() {
    // 16 MiB of zeros in a few KiB, for a leg that accepts 1 MiB.
    let body = zlib(&vec![0u8; MAX_FRAME]);
    let mut src = frame(0, MAX_FRAME, &body);
    let mut rx = CompressedStream::new(Algorithm::Zlib, 1 << 20);
    let e = rx.decode(&mut src, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(e, CodecError::TooLarge { .. }), "{e:?}");
    // A header alone is enough to refuse: nothing is waited for.
    let mut src = frame(0, MAX_FRAME, &[]);
    let e = rx.decode(&mut src, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(e, CodecError::TooLarge { .. }), "{e:?}");
}

#[test]
fn frame_sequence_is_checked_when_armed() {
    let mut rx = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    rx.check_sequence(true);
    let mut src = frame(1, 0, b"\x01\x00\x00\x00\x0e");
    let e = rx.decode(&mut src, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(
        e,
        CodecError::OutOfSequence {
            expected: 0,
            got: 1
        }
    ));
    rx.check_sequence(false);
    let mut src = frame(7, 0, b"\x01\x00\x00\x00\x0e");
    assert!(rx.decode(&mut src, &mut BytesMut::new()).unwrap());
}

/// The ids of the packets in frames `wire` (all stored or compressed).
fn ids_in(algorithm: Algorithm, wire: &mut BytesMut) -> (Vec<u8>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut rx = CompressedStream::new(algorithm, MAX_FRAME);
    let mut plain = BytesMut::new();
    while let Some(&seq) = wire.get(3) {
        frames.push(seq);
        assert!(rx.decode(wire, &mut plain).unwrap());
    }
    let mut packets = Vec::new();
    let mut codec = crate::packet::ChunkDecoder::default();
    while let Some(c) = codec.decode(&mut plain).unwrap() {
        packets.push(c.seq);
    }
    (frames, packets)
}

#[test]
fn sequence_ids_follow_mysqls_net() {
    let mut s = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    // A command read in frame 0: the answer's packets are 1.. in frames 1..
    s.reset();
    let mut src = frame(0, 0, b"\x01\x00\x00\x00\x0e");
    s.decode(&mut src, &mut BytesMut::new()).unwrap();
    assert_eq!(s.next_read_id(), 0);
    let mut answer = BytesMut::new();
    for (id, row) in [(1u8, &b"\x01"[..]), (2, b"\x03def"), (3, b"\x011")] {
        s.note_write(id, false);
        encode_packet(id, row, &mut answer);
    }
    let mut wire = BytesMut::new();
    s.encode_packets(&mut answer, &mut wire);
    assert_eq!(ids_in(Algorithm::Zlib, &mut wire), (vec![1], vec![1, 2, 3]));
    // The next flush starts with the id of its frame, as after net_flush.
    let mut more = BytesMut::new();
    encode_packet(4, b"\xfe\x00\x00\x02\x00\x00\x00", &mut more);
    encode_packet(5, b"\x01", &mut more);
    let mut wire = BytesMut::new();
    s.encode_packets(&mut more, &mut wire);
    assert_eq!(ids_in(Algorithm::Zlib, &mut wire), (vec![2], vec![2, 3]));
    // A 16 MiB chunk cannot end in its first frame: its id follows on (and
    // it has frames of its own).
    let mut big = BytesMut::new();
    encode_packet(6, &vec![7u8; MAX_FRAME + 10], &mut big);
    let mut wire = BytesMut::new();
    s.encode_packets(&mut big, &mut wire);
    assert_eq!(
        ids_in(Algorithm::Zlib, &mut wire),
        (vec![3, 4, 5], vec![4, 5])
    );
}

#[test]
fn frames_group_small_packets_and_keep_large_ones_apart() {
    let mut s = CompressedStream::new(Algorithm::Zstd(1), MAX_FRAME);
    let mut packets = BytesMut::new();
    let mut id = 1u8;
    for len in [100, 9000, 9000, 100_000, 10, 20_000, 5] {
        id = encode_packet(id, &vec![b'r'; len], &mut packets);
    }
    let total = packets.len();
    let mut wire = BytesMut::new();
    s.encode_packets(&mut packets, &mut wire);
    let mut sizes = Vec::new();
    let mut plain = BytesMut::new();
    let mut rx = CompressedStream::new(Algorithm::Zstd(1), MAX_FRAME);
    while !wire.is_empty() {
        let before = plain.len();
        assert!(rx.decode(&mut wire, &mut plain).unwrap());
        sizes.push(plain.len() - before);
    }
    assert_eq!(sizes, vec![9108, 9004, 100_004, 14, 20_004, 9]);
    assert_eq!(plain.len(), total);
}

#[test]
fn towards_a_server_a_packet_numbered_0_starts_a_command() {
    let mut s = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    let frame_of = |s: &mut CompressedStream| {
        let mut p = BytesMut::new();
        encode_packet(0, b"\x0e", &mut p);
        let mut wire = BytesMut::new();
        s.encode_packets(&mut p, &mut wire);
        wire[3]
    };
    s.note_write(0, true);
    assert_eq!(frame_of(&mut s), 0);
    // Also right after another command (one without an answer).
    s.note_write(0, true);
    assert_eq!(frame_of(&mut s), 0);
    // Not after a written 255: the id wrapped, the command goes on.
    for plain in 1..=255u8 {
        s.note_write(plain, true);
    }
    assert_eq!(frame_of(&mut s), 1);
    s.note_write(0, true);
    assert_eq!(frame_of(&mut s), 2);
    // Towards a client, never.
    let mut c = CompressedStream::new(Algorithm::Zlib, MAX_FRAME);
    c.note_write(0, false);
    assert_eq!(frame_of(&mut c), 0);
    c.note_write(0, false);
    assert_eq!(frame_of(&mut c), 1);
}

#[test]
fn negotiation_prefers_zlib_when_both_are_asked_for() {
    let both = CapabilityFlags::COMPRESS | CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM;
    let zstd = CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM;
    assert_eq!(
        Algorithm::negotiate(both, both, Some(7)),
        Some(Algorithm::Zlib)
    );
    assert_eq!(
        Algorithm::negotiate(both, zstd, Some(7)),
        Some(Algorithm::Zstd(7))
    );
    assert_eq!(
        Algorithm::negotiate(both, zstd, None),
        Some(Algorithm::Zstd(3))
    );
    assert_eq!(
        Algorithm::negotiate(zstd, CapabilityFlags::COMPRESS, None),
        None
    );
    assert_eq!(
        Algorithm::negotiate(CapabilityFlags::empty(), both, None),
        None
    );
}

#[test]
fn frames_on_an_uncompressed_leg_are_recognised() {
    let mut com_query = BytesMut::new();
    encode_packet(0, b"\x03SELECT 1", &mut com_query);
    for algorithm in [Algorithm::Zlib, zstd3()] {
        let mut tx = CompressedStream::new(algorithm, MAX_FRAME);
        for plain in [&com_query[..], &[b'x'; 300][..]] {
            let mut wire = BytesMut::new();
            tx.reset();
            tx.encode(plain, &mut wire);
            // What an uncompressed reader takes for a packet's payload.
            let (len, _) = crate::packet::parse_header([wire[0], wire[1], wire[2], wire[3]]);
            assert!(
                looks_like_frame(&wire[4..4 + len]),
                "{algorithm:?} {plain:?}"
            );
        }
    }
    assert!(!looks_like_frame(b"\x03SELECT 1"));
    assert!(!looks_like_frame(b"\x0e"));
    assert!(!looks_like_frame(b"\x16SELECT ?"));
    assert!(!looks_like_frame(b""));
}

proptest! {
    #[test]
    fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000),
                   repeat in 1usize..40, step in 1usize..700, zstd in any::<bool>(), level in 1u8..10) {
        let plain: Vec<u8> = data.iter().copied().cycle().take(data.len() * repeat).collect();
        let algorithm = if zstd { Algorithm::Zstd(level) } else { Algorithm::Zlib };
        prop_assert_eq!(round_trip(algorithm, &plain, step), plain);
    }

    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), zstd in any::<bool>()) {
        let algorithm = if zstd { zstd3() } else { Algorithm::Zlib };
        let mut rx = CompressedStream::new(algorithm, 1 << 16);
        let mut src = BytesMut::from(&bytes[..]);
        let mut out = BytesMut::new();
        while let Ok(true) = rx.decode(&mut src, &mut out) {}
        prop_assert!(out.len() <= bytes.len().max(1) * (1 << 16));
        let _ = looks_like_frame(&bytes);
    }
}
