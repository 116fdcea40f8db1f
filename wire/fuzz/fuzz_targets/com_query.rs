//! COM_QUERY with query attributes negotiated.
#![no_main]

use bytes::{BufMut, BytesMut};
use causeway_wire::command::ComQuery;
use causeway_wire::CapabilityFlags;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = BytesMut::with_capacity(data.len() + 1);
    p.put_u8(0x03);
    p.put_slice(data);
    let p = p.freeze();
    let caps = CapabilityFlags::PROTOCOL_41 | CapabilityFlags::QUERY_ATTRIBUTES;
    if let Ok(q) = ComQuery::decode(&p, caps) {
        assert!(q.attributes.len() <= data.len() * 8);
        let mut out = BytesMut::new();
        if q.encode(caps, &mut out).is_ok() {
            let again = ComQuery::decode(&out.freeze(), caps).unwrap();
            assert_eq!(again.query, q.query);
            assert_eq!(again.attributes.len(), q.attributes.len());
        }
    }
});
