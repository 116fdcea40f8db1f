//! ProxySQL reader lines: never panics; a decoded view re-encodes exactly.
#![no_main]

use causeway_gtid::delta::proxysql::{Decoder, Dialect, Encoder};
use causeway_gtid::GtidSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut view = GtidSet::new();
    let mut dec = Decoder::with_max_line_len(1 << 16);
    if dec.feed(data, &mut view).is_ok() {
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
