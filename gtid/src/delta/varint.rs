//! LEB128 varints and zigzag, with bounds-checked reading.

/// Appends `v` as an unsigned LEB128 varint (1..=10 bytes).
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag-maps a signed value so small magnitudes encode in few bytes.
pub(crate) const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Why a varint could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More than 64 bits.
    Overflow,
}

/// Reads a varint from the front of `b`: `(value, bytes used)`.
pub(crate) fn get(b: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        v |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    if b.len() >= 10 {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_edges() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(get(&b), Ok((v, b.len())), "{v}");
            assert_eq!(get(&b[..b.len() - 1]), Err(VarintError::Truncated));
        }
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-1), 1);
    }

    #[test]
    fn rejects_overlong() {
        assert_eq!(get(&[0xff; 10]), Err(VarintError::Overflow));
        assert_eq!(
            get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overflow)
        );
        assert_eq!(get(&[]), Err(VarintError::Truncated));
    }
}
