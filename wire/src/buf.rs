//! Primitive readers and writers: fixed-width little-endian integers,
//! length-encoded integers and strings, NUL-terminated strings.
//!
//! [`Reader`] borrows a byte slice and never allocates; decoders that want
//! owned, zero-copy fields convert the returned sub-slices with
//! [`Bytes::slice_ref`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{CodecError, Result};

/// Reads the length-encoded integer at the start of `buf`.
///
/// Returns the value and how many bytes it occupied. `0xfb` (NULL in rows) and
/// `0xff` are rejected: they are not integers.
pub fn read_lenenc_int(buf: &[u8], what: &'static str) -> Result<(u64, usize)> {
    let Some(&first) = buf.first() else {
        return Err(CodecError::Truncated { what, needed: 1 });
    };
    let width = match first {
        0..=0xfa => return Ok((u64::from(first), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        prefix => return Err(CodecError::InvalidLenenc { what, prefix }),
    };
    let Some(bytes) = buf.get(1..1 + width) else {
        return Err(CodecError::Truncated {
            what,
            needed: 1 + width - buf.len(),
        });
    };
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    Ok((u64::from_le_bytes(le), 1 + width))
}

/// The number of bytes [`put_lenenc_int`] writes for `value`.
pub fn lenenc_int_len(value: u64) -> usize {
    match value {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 9,
    }
}

/// Appends `value` as a length-encoded integer.
pub fn put_lenenc_int(dst: &mut BytesMut, value: u64) {
    match value {
        0..=250 => dst.put_u8(value as u8),
        251..=0xffff => {
            dst.put_u8(0xfc);
            dst.put_u16_le(value as u16);
        }
        0x1_0000..=0xff_ffff => {
            dst.put_u8(0xfd);
            dst.put_uint_le(value, 3);
        }
        _ => {
            dst.put_u8(0xfe);
            dst.put_u64_le(value);
        }
    }
}

/// Appends a length-encoded string (length prefix, then the bytes).
pub fn put_lenenc_bytes(dst: &mut BytesMut, bytes: &[u8]) {
    put_lenenc_int(dst, bytes.len() as u64);
    dst.put_slice(bytes);
}

/// Appends `bytes` followed by a NUL terminator.
pub fn put_nul_str(dst: &mut BytesMut, bytes: &[u8]) {
    dst.put_slice(bytes);
    dst.put_u8(0);
}

/// A forward-only cursor over a borrowed payload.
///
/// Every method checks bounds and returns [`CodecError::Truncated`] rather than
/// panicking; lengths read from the wire are checked against what remains
/// before anything is sliced, so nothing is ever allocated from them.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Consumes exactly `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(CodecError::Truncated {
                what,
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Consumes exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Consumes one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Consumes a little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Consumes a little-endian 3-byte integer.
    pub fn u24(&mut self, what: &'static str) -> Result<u32> {
        let [a, b, c] = self.array(what)?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    /// Consumes a little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Consumes a little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Consumes a length-encoded integer.
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64> {
        let (value, used) = read_lenenc_int(self.buf, what)?;
        self.buf = &self.buf[used..];
        Ok(value)
    }

    /// Consumes a length-encoded string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated {
            what,
            needed: usize::MAX,
        })?;
        self.take(len, what)
    }

    /// Consumes a NUL-terminated string and its terminator; returns the string.
    pub fn nul_str(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(CodecError::MissingNul { what });
        };
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Consumes a string terminated by NUL or by the end of the input.
    pub fn nul_str_or_eof(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                s
            }
            None => self.rest(),
        }
    }

    /// Consumes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails with [`CodecError::TrailingBytes`] unless everything was consumed.
    pub fn finish(&self, what: &'static str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }
}

/// Converts a sub-slice of `base` (as returned by a [`Reader`] over `base`)
/// into a zero-copy [`Bytes`] handle.
pub(crate) fn sub(base: &Bytes, slice: &[u8]) -> Bytes {
    if slice.is_empty() {
        Bytes::new()
    } else {
        base.slice_ref(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lenenc_boundaries() {
        for (value, expect) in [
            (0u64, vec![0x00]),
            (250, vec![0xfa]),
            (251, vec![0xfc, 0xfb, 0x00]),
            (0xffff, vec![0xfc, 0xff, 0xff]),
            (0x1_0000, vec![0xfd, 0x00, 0x00, 0x01]),
            (0xff_ffff, vec![0xfd, 0xff, 0xff, 0xff]),
            (
                0x100_0000,
                vec![0xfe, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
            ),
        ] {
            let mut b = BytesMut::new();
            put_lenenc_int(&mut b, value);
            assert_eq!(&b[..], &expect[..], "value {value}");
            assert_eq!(lenenc_int_len(value), expect.len());
            assert_eq!(read_lenenc_int(&b, "x").unwrap(), (value, expect.len()));
        }
    }

    #[test]
    fn lenenc_rejects_null_and_ff_and_truncation() {
        assert!(matches!(
            read_lenenc_int(&[0xfb], "x"),
            Err(CodecError::InvalidLenenc { prefix: 0xfb, .. })
        ));
        assert!(matches!(
            read_lenenc_int(&[0xff], "x"),
            Err(CodecError::InvalidLenenc { prefix: 0xff, .. })
        ));
        assert!(matches!(
            read_lenenc_int(&[0xfe, 1, 2], "x"),
            Err(CodecError::Truncated { needed: 6, .. })
        ));
        assert!(matches!(
            read_lenenc_int(&[], "x"),
            Err(CodecError::Truncated { needed: 1, .. })
        ));
    }

    #[test]
    fn huge_lenenc_string_length_is_an_error_not_an_allocation() {
        let data = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'a'];
        let mut r = Reader::new(&data);
        assert!(matches!(
            r.lenenc_bytes("s"),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn nul_strings() {
        let mut r = Reader::new(b"abc\0def");
        assert_eq!(r.nul_str("a").unwrap(), b"abc");
        assert!(matches!(
            r.clone().nul_str("b"),
            Err(CodecError::MissingNul { .. })
        ));
        assert_eq!(r.nul_str_or_eof(), b"def");
        assert!(r.is_empty());
        r.finish("x").unwrap();
    }

    proptest! {
        #[test]
        fn lenenc_round_trip(v in any::<u64>()) {
            let mut b = BytesMut::new();
            put_lenenc_int(&mut b, v);
            prop_assert_eq!(read_lenenc_int(&b, "x").unwrap(), (v, lenenc_int_len(v)));
        }

        #[test]
        fn lenenc_bytes_round_trip(s in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = BytesMut::new();
            put_lenenc_bytes(&mut b, &s);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.lenenc_bytes("s").unwrap(), &s[..]);
            prop_assert!(r.is_empty());
        }
    }
}
