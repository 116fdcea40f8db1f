//! The Auth frame a reader reads from each native subscriber
//! (`binlog-reader/src/publish.rs`, `read_auth`): `decode_auth` on a buffer
//! that grows as bytes arrive. Never panics; never asks for more bytes
//! than a maximal frame holds; an answer, once given for a prefix, is the
//! answer for every longer input.
#![no_main]

use causeway_gtid::delta::binary::{decode_auth, encode_auth, MAX_AUTH_TOKEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode_auth(data);
    if let Ok(Some((token, used))) = &whole {
        assert!(token.len() <= MAX_AUTH_TOKEN);
        assert!(*used <= data.len());
        let mut again = Vec::new();
        encode_auth(token, &mut again);
        assert_eq!(
            decode_auth(&again).ok().flatten(),
            Some((token.clone(), again.len()))
        );
    }
    if matches!(whole, Ok(None)) {
        // Still waiting: only a short input may be incomplete.
        assert!(data.len() < MAX_AUTH_TOKEN + 2 + 10);
    }
    // Every prefix either waits, or already says what the whole input says.
    for end in 0..data.len().min(MAX_AUTH_TOKEN + 2 + 10) {
        match decode_auth(&data[..end]) {
            Ok(None) => {}
            Ok(Some(x)) => assert_eq!(whole.as_ref().ok(), Some(&Some(x))),
            Err(_) => assert!(whole.is_err()),
        }
    }
});
