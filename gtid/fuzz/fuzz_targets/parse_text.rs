//! MySQL GTID text: never panics; whatever parses formats back to itself.
#![no_main]

use causeway_gtid::{Gtid, GtidSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = GtidSet::parse_bytes(data) {
        let text = set.to_string();
        let back = GtidSet::parse(&text).expect("formatted set parses");
        assert_eq!(back, set);
        assert_eq!(back.to_string(), text);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(g) = Gtid::parse(s) {
            assert_eq!(Gtid::parse(&g.to_string()), Ok(g));
        }
    }
});
