use super::*;
use crate::error::Error;
use crate::source::Gtid;

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

fn set(s: &str) -> GtidSet {
    GtidSet::parse(s).unwrap()
}

fn hello() -> Message {
    Message::Hello(Hello {
        protocol_version: VERSION,
        server_uuid: Uuid::parse_str(U1).unwrap(),
        reader_instance: 0xdead_beef,
        epoch: 3,
    })
}

/// Encodes `msgs`, then decodes them back one frame at a time.
fn round_trip(msgs: &[Message]) -> (Vec<u8>, Vec<Message>) {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    for m in msgs {
        enc.encode(m, &mut buf);
    }
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let mut rest = &buf[..];
    while let Some((m, n)) = dec.decode(rest).unwrap() {
        out.push(m);
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    (buf, out)
}

#[test]
fn every_message_round_trips() {
    let msgs = vec![
        hello(),
        Message::Snapshot(set(&format!("{U1}:1-100:200:aa:1-5,{U2}:7"))),
        Message::Delta(set(&format!("{U1}:101-105:aa:6"))),
        Message::Delta(set(&format!("{U1}:150:bb:1,{U2}:8"))),
        Message::Heartbeat(Heartbeat {
            view_age: Duration::from_micros(1500),
            sequence: 2,
        }),
        Message::Reset(Reset {
            reason: ResetReason::SetShrank,
            detail: "gtid_executed shrank".into(),
        }),
        hello(),
        Message::Snapshot(GtidSet::new()),
        Message::Delta(set(&format!("{U2}:1"))),
    ];
    let (_, back) = round_trip(&msgs);
    assert_eq!(back, msgs);
}

#[test]
fn after_a_reset_a_snapshot_without_hello_is_refused() {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    enc.encode(&hello(), &mut buf);
    enc.encode(&Message::Snapshot(set(&format!("{U1}:1-3"))), &mut buf);
    enc.encode(
        &Message::Reset(Reset {
            reason: ResetReason::ServerChanged,
            detail: String::new(),
        }),
        &mut buf,
    );
    enc.encode(&Message::Snapshot(set(&format!("{U2}:1"))), &mut buf);
    let mut dec = Decoder::new();
    let mut rest = &buf[..];
    for _ in 0..3 {
        let (_, n) = dec.decode(rest).unwrap().unwrap();
        rest = &rest[n..];
    }
    assert!(
        dec.decode(rest).is_err(),
        "the new epoch's Hello is required"
    );
}

#[test]
fn snapshot_plus_deltas_reproduce_the_set() {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    enc.encode(&hello(), &mut buf);
    let mut truth = set(&format!("{U1}:1-10"));
    enc.encode(&Message::Snapshot(truth.clone()), &mut buf);
    for gno in [11, 13, 12, 40, 14] {
        let d: GtidSet = [Gtid::parse(&format!("{U1}:{gno}")).unwrap()]
            .into_iter()
            .collect();
        truth.union_with(&d);
        enc.encode(&Message::Delta(d), &mut buf);
    }
    let mut dec = Decoder::new();
    let mut view = GtidSet::new();
    let mut rest = &buf[..];
    while let Some((m, n)) = dec.decode(rest).unwrap() {
        m.apply_to(&mut view);
        rest = &rest[n..];
    }
    assert_eq!(view, truth);
    assert_eq!(view.to_string(), format!("{U1}:1-14:40"));
    assert_eq!(dec.sequence(), 5);
}

#[test]
fn one_transaction_delta_is_eight_bytes() {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    enc.encode(
        &Message::Snapshot(set(&format!("{U1}:1-1000000"))),
        &mut buf,
    );
    buf.clear();
    enc.encode(&Message::Delta(set(&format!("{U1}:1000001"))), &mut buf);
    assert_eq!(buf, [7, VERSION, KIND_DELTA, 1, 0, 1, 2, 0]);
    assert_eq!(enc.sequence(), 1);
}

#[test]
fn partial_input_waits_for_more() {
    let mut buf = Vec::new();
    Encoder::new().encode(&hello(), &mut buf);
    let mut dec = Decoder::new();
    for cut in 0..buf.len() {
        assert_eq!(dec.decode(&buf[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(dec.decode(&buf).unwrap().is_some());
}

#[test]
fn order_is_enforced() {
    let mut enc = Encoder::new();
    let mut delta = Vec::new();
    enc.encode(&Message::Delta(set(&format!("{U1}:1"))), &mut delta);
    let mut dec = Decoder::new();
    assert_eq!(
        dec.decode(&delta),
        Err(Error::Protocol("delta before a snapshot"))
    );
    // Failed streams stay failed.
    let mut h = Vec::new();
    Encoder::new().encode(&hello(), &mut h);
    assert!(dec.decode(&h).is_err());

    let mut dec = Decoder::new();
    dec.decode(&h).unwrap();
    assert_eq!(
        dec.decode(&h),
        Err(Error::Protocol("hello after the stream started"))
    );
}

#[test]
fn heartbeat_sequence_is_checked() {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    enc.encode(&hello(), &mut buf);
    enc.encode(&Message::Snapshot(GtidSet::new()), &mut buf);
    enc.encode(&Message::Delta(set(&format!("{U1}:1"))), &mut buf);
    enc.encode(
        &Message::Heartbeat(Heartbeat {
            view_age: Duration::ZERO,
            sequence: 7,
        }),
        &mut buf,
    );
    let mut dec = Decoder::new();
    let mut rest = &buf[..];
    let err = loop {
        match dec.decode(rest) {
            Ok(Some((_, n))) => rest = &rest[n..],
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        Error::SequenceMismatch {
            expected: 1,
            got: 7
        }
    );
}

#[test]
fn hostile_frames_are_refused() {
    let mut dec = Decoder::with_max_frame_len(1024);
    assert_eq!(
        dec.decode(&[0xff, 0xff, 0x7f]),
        Err(Error::FrameTooLarge {
            len: 0x1f_ffff,
            max: 1024
        })
    );
    assert_eq!(
        Decoder::new().decode(&[2, 9, KIND_HELLO]),
        Err(Error::UnsupportedVersion(9))
    );
    assert!(matches!(
        Decoder::new().decode(&[2, VERSION, 99]),
        Err(Error::Frame {
            pos: 2,
            reason: "unknown message kind"
        })
    ));
    // After a hello: a snapshot claiming 2^60 sources in a 4-byte frame.
    let mut dec = Decoder::new();
    let mut h = Vec::new();
    Encoder::new().encode(&hello(), &mut h);
    dec.decode(&h).unwrap();
    let mut f = vec![VERSION, KIND_SNAPSHOT];
    varint::put(&mut f, 1 << 60);
    let mut framed = vec![f.len() as u8];
    framed.extend(f);
    assert!(matches!(
        dec.decode(&framed),
        Err(Error::Frame {
            reason: "source count exceeds the frame",
            ..
        })
    ));
}

#[test]
fn source_table_is_checked() {
    let mut h = Vec::new();
    Encoder::new().encode(&hello(), &mut h);
    let frame = |payload: &[u8]| {
        let mut f = vec![(payload.len() + 2) as u8, VERSION, KIND_SNAPSHOT];
        f.extend_from_slice(payload);
        f
    };
    let cases: [(&[u8], &str); 4] = [
        (&[1, 5, 1, 0, 0], "unknown source index"),
        (&[1, 0, 7, 0, 0, 0, 0], "unknown source kind"),
        (
            &[
                1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0,
            ],
            "source without intervals",
        ),
        (
            &[
                1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 1, 0,
            ],
            "gno out of range",
        ),
    ];
    for (payload, reason) in cases {
        let mut dec = Decoder::new();
        dec.decode(&h).unwrap();
        match dec.decode(&frame(payload)) {
            Err(Error::Frame { reason: r, .. }) => assert_eq!(r, reason),
            other => panic!("{reason}: got {other:?}"),
        }
    }
}

#[test]
fn reset_detail_is_bounded() {
    let long = "é".repeat(MAX_RESET_DETAIL);
    let msgs = [
        hello(),
        Message::Reset(Reset {
            reason: ResetReason::ServerChanged,
            detail: long,
        }),
    ];
    let (_, back) = round_trip(&msgs);
    let Message::Reset(r) = &back[1] else {
        panic!()
    };
    assert!(r.detail.len() <= MAX_RESET_DETAIL);
    assert_eq!(r.detail.len() % 2, 0, "cut on a char boundary");
}

#[test]
fn auth_frame_round_trips_and_rejects_garbage() {
    let mut out = Vec::new();
    encode_auth(b"s3cret", &mut out);
    out.extend_from_slice(b"rest");
    // Byte by byte: incomplete until the whole frame is there.
    for cut in 0..out.len() - 4 {
        assert_eq!(decode_auth(&out[..cut]).unwrap(), None, "cut at {cut}");
    }
    let (token, used) = decode_auth(&out).unwrap().unwrap();
    assert_eq!(token, b"s3cret");
    assert_eq!(&out[used..], b"rest");

    let mut empty = Vec::new();
    encode_auth(b"", &mut empty);
    assert_eq!(
        decode_auth(&empty).unwrap(),
        Some((Vec::new(), empty.len()))
    );

    // A Hello where an Auth belongs, another version, an absurd length.
    let mut hello_frame = Vec::new();
    Encoder::new().encode(&hello(), &mut hello_frame);
    assert!(decode_auth(&hello_frame).is_err());
    assert!(decode_auth(&[0x03, VERSION + 1, 6, b'x']).is_err());
    assert!(decode_auth(&[0xff, 0xff, 0x03]).is_err());
    assert!(decode_auth(b"GET / HTTP/1.1\r\n").is_err());
}

#[test]
fn a_refusal_may_come_before_hello_and_ends_the_stream() {
    let mut out = Vec::new();
    let mut enc = Encoder::new();
    enc.encode(
        &Message::Reset(Reset {
            reason: ResetReason::Refused,
            detail: "bad token".into(),
        }),
        &mut out,
    );
    let mut dec = Decoder::new();
    let (msg, used) = dec.decode(&out).unwrap().unwrap();
    assert_eq!(used, out.len());
    assert!(matches!(
        msg,
        Message::Reset(Reset {
            reason: ResetReason::Refused,
            ..
        })
    ));
    // Nothing may follow a refusal.
    let mut more = Vec::new();
    enc.encode(&hello(), &mut more);
    assert!(dec.decode(&more).is_err());

    // Any other reset before hello is a protocol violation.
    let mut other = Vec::new();
    Encoder::new().encode(
        &Message::Reset(Reset {
            reason: ResetReason::SetShrank,
            detail: String::new(),
        }),
        &mut other,
    );
    assert!(Decoder::new().decode(&other).is_err());
}
