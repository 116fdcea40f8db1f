//! Property tests: set-algebra laws against a `BTreeSet` model, and round
//! trips through the text form and both stream encodings.

use std::collections::BTreeSet;

use causeway_gtid::delta::{binary, proxysql};
use causeway_gtid::{Gtid, GtidSet, Interval, SourceId, Tag, Uuid, MAX_GNO};
use proptest::prelude::*;

fn source(k: u8) -> SourceId {
    // Three uuids (one sorting first despite a high first byte in text
    // order) times {untagged, tag "a", tag "b"}.
    let uuid = Uuid::from_bytes([[0x3e, 0x00, 0xff][usize::from(k % 3)]; 16]);
    match k / 3 % 3 {
        0 => SourceId::new(uuid),
        1 => SourceId::tagged(uuid, Tag::new("a").unwrap()),
        _ => SourceId::tagged(uuid, Tag::new("B").unwrap()),
    }
}

/// (source, start, len) triples; gnos mostly small so sets collide, with
/// some near the top of the range.
fn pieces() -> impl Strategy<Value = Vec<(u8, u64, u64)>> {
    let start = prop_oneof![8 => 1u64..120, 1 => (MAX_GNO - 40)..=MAX_GNO];
    prop::collection::vec((0u8..9, start, 0u64..12), 0..12)
}

fn build(p: &[(u8, u64, u64)]) -> GtidSet {
    let mut s = GtidSet::new();
    for &(k, start, len) in p {
        let end = start.saturating_add(len).min(MAX_GNO);
        s.insert_interval(source(k), Interval::new(start, end).unwrap());
    }
    s
}

fn model(s: &GtidSet) -> BTreeSet<(SourceId, u64)> {
    s.iter()
        .flat_map(|(id, ivs)| {
            ivs.iter()
                .flat_map(move |iv| (iv.start()..=iv.end()).map(move |g| (*id, g)))
        })
        .collect()
}

fn canonical(s: &GtidSet) -> bool {
    s.iter()
        .all(|(_, ivs)| !ivs.is_empty() && ivs.windows(2).all(|w| w[0].end() + 1 < w[1].start()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn operations_match_the_model(a in pieces(), b in pieces()) {
        let (a, b) = (build(&a), build(&b));
        let (ma, mb) = (model(&a), model(&b));
        let u = a.union(&b);
        let i = a.intersection(&b);
        let d = a.difference(&b);
        prop_assert!(canonical(&a) && canonical(&u) && canonical(&i) && canonical(&d));
        prop_assert_eq!(model(&u), ma.union(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&i), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&d), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
        prop_assert_eq!(a.count(), ma.len() as u128);
        prop_assert_eq!(a.is_empty(), ma.is_empty());
    }

    #[test]
    fn algebra_identities(a in pieces(), b in pieces(), c in pieces()) {
        let (a, b, c) = (build(&a), build(&b), build(&c));
        prop_assert_eq!(a.union(&a), a.clone());
        prop_assert_eq!(a.intersection(&a), a.clone());
        prop_assert!(a.difference(&a).is_empty());
        prop_assert_eq!(a.union(&b), b.union(&a));
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
        prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
        prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
        prop_assert!(a.difference(&b).intersection(&b).is_empty());
        prop_assert!(a.is_subset(&a.union(&b)) && a.intersection(&b).is_subset(&a));
        prop_assert_eq!(a.is_subset(&b), a.difference(&b).is_empty());
        prop_assert_eq!(a.is_subset(&b), a.union(&b) == b);
        prop_assert_eq!(
            a.intersection(&b.union(&c)),
            a.intersection(&b).union(&a.intersection(&c))
        );
        let mut e = a.clone();
        e.union_with(&b);
        e.subtract(&b);
        prop_assert_eq!(e, a.difference(&b));
    }

    #[test]
    fn contains_agrees_with_subset_on_singletons(a in pieces(), k in 0u8..9, g in 1u64..140) {
        let a = build(&a);
        let gtid = Gtid::new(source(k), g).unwrap();
        let single: GtidSet = [gtid].into_iter().collect();
        prop_assert_eq!(a.contains(&gtid), single.is_subset(&a));
        prop_assert_eq!(a.contains(&gtid), model(&a).contains(&(source(k), g)));
    }

    #[test]
    fn text_round_trip(a in pieces()) {
        let a = build(&a);
        let text = a.to_string();
        let back = GtidSet::parse(&text).unwrap();
        prop_assert_eq!(&back, &a);
        prop_assert_eq!(back.to_string(), text.clone());
        prop_assert_eq!(GtidSet::parse(&text.to_uppercase()).unwrap(), a.clone());
        prop_assert_eq!(GtidSet::parse(&a.display_with(",").to_string()).unwrap(), a.clone());
        for (id, ivs) in a.iter() {
            let g = Gtid::new(*id, ivs[0].start()).unwrap();
            prop_assert_eq!(Gtid::parse(&g.to_string()).unwrap(), g);
        }
    }

    #[test]
    fn parser_never_panics(s in "[0-9a-fA-F:,\\- \\n_x+]{0,80}") {
        if let Ok(set) = GtidSet::parse(&s) {
            prop_assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
        }
        let _ = Gtid::parse(&s);
    }

    #[test]
    fn binary_stream_reproduces_the_set(
        snap in pieces(),
        steps in prop::collection::vec(pieces(), 0..8),
        split in 1usize..64,
    ) {
        let mut truth = build(&snap);
        let mut enc = binary::Encoder::new();
        let mut buf = Vec::new();
        enc.encode(&binary::Message::Hello(binary::Hello {
            protocol_version: binary::VERSION,
            server_uuid: Uuid::nil(),
            reader_instance: 1,
            epoch: 0,
        }), &mut buf);
        enc.encode(&binary::Message::Snapshot(truth.clone()), &mut buf);
        for step in &steps {
            let next = truth.union(&build(step));
            let delta = causeway_gtid::delta::diff(&truth, &next).unwrap();
            enc.encode(&binary::Message::Delta(delta), &mut buf);
            truth = next;
        }
        enc.heartbeat(std::time::Duration::from_millis(5), &mut buf);

        // Feed in chunks of `split` bytes, as a socket would deliver them.
        let mut dec = binary::Decoder::new();
        let mut view = GtidSet::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut frames = 0;
        for chunk in buf.chunks(split) {
            pending.extend_from_slice(chunk);
            while let Some((m, n)) = dec.decode(&pending).unwrap() {
                m.apply_to(&mut view);
                pending.drain(..n);
                frames += 1;
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(frames, steps.len() + 3);
        prop_assert_eq!(view, truth);
    }

    #[test]
    fn binary_decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        prefix_hello in any::<bool>(),
    ) {
        let mut dec = binary::Decoder::with_max_frame_len(1 << 16);
        let mut input = Vec::new();
        if prefix_hello {
            binary::Encoder::new().encode(&binary::Message::Hello(binary::Hello {
                protocol_version: 1, server_uuid: Uuid::nil(), reader_instance: 0, epoch: 0,
            }), &mut input);
            input.extend_from_slice(&[0x20, 1, 2]); // a snapshot frame header
        }
        input.extend_from_slice(&bytes);
        let mut rest = &input[..];
        while let Ok(Some((_, n))) = dec.decode(rest) {
            prop_assert!(n > 0 && n <= rest.len());
            rest = &rest[n..];
        }
    }

    #[test]
    fn proxysql_stream_reproduces_the_untagged_set(
        snap in pieces(),
        steps in prop::collection::vec(pieces(), 0..6),
        batched in any::<bool>(),
    ) {
        let dialect = if batched { proxysql::Dialect::Batched } else { proxysql::Dialect::PerTransaction };
        let mut enc = proxysql::Encoder::new(dialect);
        let mut truth = build(&snap);
        let mut out = Vec::new();
        let mut skipped = enc.snapshot(&truth, &mut out);
        for step in &steps {
            let next = truth.union(&build(step));
            skipped += enc.delta(&next.difference(&truth), &mut out);
            truth = next;
        }
        let mut view = GtidSet::new();
        proxysql::Decoder::new().feed(&out, &mut view).unwrap();
        let untagged: GtidSet = truth
            .iter()
            .filter(|(id, _)| id.tag().is_none())
            .flat_map(|(id, ivs)| ivs.iter().map(move |iv| (*id, *iv)))
            .fold(GtidSet::new(), |mut s, (id, iv)| { s.insert_interval(id, iv); s });
        prop_assert_eq!(&view, &untagged);
        prop_assert_eq!(skipped > 0, truth != untagged, "tagged intervals are counted when left out");
        prop_assert!(view.is_subset(&truth), "a lower bound, never more");
    }

    #[test]
    fn proxysql_decoder_never_panics(s in "(ST=|I[1-5]=)?[0-9a-f:,\\-x]{0,60}\\n?") {
        let mut view = GtidSet::new();
        let _ = proxysql::Decoder::new().feed(s.as_bytes(), &mut view);
    }
}
