//! ProxySQL reader lines: never panics; a decoded view re-encodes exactly;
//! feeding the same bytes in two pieces (a socket read boundary, chosen by
//! the first byte) changes nothing.
#![no_main]

use causeway_gtid::delta::proxysql::{Decoder, Dialect, Encoder};
use causeway_gtid::GtidSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut view = GtidSet::new();
    let mut dec = Decoder::with_max_line_len(1 << 16);
    let whole = dec.feed(data, &mut view);

    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut split_view = GtidSet::new();
    let mut split = Decoder::with_max_line_len(1 << 16);
    let first = split.feed(&data[..cut], &mut split_view);
    let second = first.and_then(|a| Ok(a + split.feed(&data[cut..], &mut split_view)?));
    assert_eq!(
        whole.is_ok(),
        second.is_ok(),
        "a read boundary changed the outcome"
    );
    if let (Ok(a), Ok(b)) = (&whole, &second) {
        assert_eq!(a, b);
        assert_eq!(view, split_view);
    }

    if whole.is_ok() {
        let mut out = Vec::new();
        let skipped = Encoder::new(Dialect::Batched).snapshot(&view, &mut out);
        assert_eq!(skipped, 0, "the protocol never yields tagged gtids");
        let mut back = GtidSet::new();
        Decoder::new()
            .feed(&out, &mut back)
            .expect("encoded snapshot decodes");
        assert_eq!(back, view);
    }
});
