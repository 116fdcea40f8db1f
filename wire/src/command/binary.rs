//! Binary-protocol parameter values, shared by COM_STMT_EXECUTE parameters
//! and COM_QUERY query attributes.
//!
//! A parameter block is:
//! ```text
//! null_bitmap[(n + 7) / 8]  u8 new_params_bound
//! if bound: n × (u16 type|flags [lenenc name if names])
//! values of the non-NULL parameters, each in its type's binary form
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::buf::{put_lenenc_bytes, sub, Reader};
use crate::error::{CodecError, Result};
use crate::flags::ColumnType;

/// The unsigned flag in a parameter's type word.
const UNSIGNED_FLAG: u8 = 0x80;

/// A parameter's declared type: type byte and the unsigned flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    /// The column type.
    pub ty: ColumnType,
    /// Whether an integer is unsigned.
    pub unsigned: bool,
}

/// One bound parameter or query attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryParam {
    /// Declared type.
    pub ty: ParamType,
    /// Name (query attributes); empty for positional parameters.
    pub name: Bytes,
    /// The value's bytes in binary-protocol form, without the length prefix
    /// of string and temporal types; `None` for NULL.
    pub value: Option<Bytes>,
}

impl BinaryParam {
    /// The value as a signed integer, for the integer types.
    pub fn as_i64(&self) -> Option<i64> {
        let v = self.value.as_deref()?;
        Some(match (self.ty.ty, v.len()) {
            (ColumnType::TINY, 1) => i64::from(v[0] as i8),
            (ColumnType::SHORT | ColumnType::YEAR, 2) => {
                i64::from(i16::from_le_bytes([v[0], v[1]]))
            }
            (ColumnType::LONG | ColumnType::INT24, 4) => {
                i64::from(i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            }
            (ColumnType::LONGLONG, 8) => i64::from_le_bytes(v.try_into().ok()?),
            _ => return None,
        })
    }

    /// The value as an unsigned integer, for the integer types.
    pub fn as_u64(&self) -> Option<u64> {
        let v = self.value.as_deref()?;
        let mut le = [0u8; 8];
        match (self.ty.ty, v.len()) {
            (ColumnType::TINY, 1)
            | (ColumnType::SHORT | ColumnType::YEAR, 2)
            | (ColumnType::LONG | ColumnType::INT24, 4)
            | (ColumnType::LONGLONG, 8) => le[..v.len()].copy_from_slice(v),
            _ => return None,
        }
        Some(u64::from_le_bytes(le))
    }

    /// The value as a float, for FLOAT and DOUBLE.
    pub fn as_f64(&self) -> Option<f64> {
        let v = self.value.as_deref()?;
        match (self.ty.ty, v.len()) {
            (ColumnType::FLOAT, 4) => Some(f64::from(f32::from_le_bytes(v.try_into().ok()?))),
            (ColumnType::DOUBLE, 8) => Some(f64::from_le_bytes(v.try_into().ok()?)),
            _ => None,
        }
    }
}

/// How a value of type `ty` is laid out in the binary protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Fixed(usize),
    ByteLen,
    Lenenc,
}

fn layout(ty: ColumnType) -> Result<Layout> {
    Ok(match ty {
        ColumnType::NULL => Layout::Fixed(0),
        ColumnType::TINY => Layout::Fixed(1),
        ColumnType::SHORT | ColumnType::YEAR => Layout::Fixed(2),
        ColumnType::LONG | ColumnType::INT24 | ColumnType::FLOAT => Layout::Fixed(4),
        ColumnType::LONGLONG | ColumnType::DOUBLE => Layout::Fixed(8),
        ColumnType::DATE
        | ColumnType::NEWDATE
        | ColumnType::DATETIME
        | ColumnType::DATETIME2
        | ColumnType::TIMESTAMP
        | ColumnType::TIMESTAMP2
        | ColumnType::TIME
        | ColumnType::TIME2 => Layout::ByteLen,
        ColumnType::DECIMAL
        | ColumnType::NEWDECIMAL
        | ColumnType::VARCHAR
        | ColumnType::BIT
        | ColumnType::JSON
        | ColumnType::VECTOR
        | ColumnType::ENUM
        | ColumnType::SET
        | ColumnType::TINY_BLOB
        | ColumnType::MEDIUM_BLOB
        | ColumnType::LONG_BLOB
        | ColumnType::BLOB
        | ColumnType::VAR_STRING
        | ColumnType::STRING
        | ColumnType::GEOMETRY => Layout::Lenenc,
        ColumnType(other) => {
            return Err(CodecError::InvalidValue {
                what: "parameter type",
                value: u64::from(other),
            })
        }
    })
}

/// Reads one binary-protocol value of type `ty`.
pub fn read_value<'a>(r: &mut Reader<'a>, ty: ColumnType) -> Result<&'a [u8]> {
    match layout(ty)? {
        Layout::Fixed(n) => r.take(n, "parameter value"),
        Layout::ByteLen => {
            let n = r.u8("temporal value length")?;
            r.take(usize::from(n), "temporal value")
        }
        Layout::Lenenc => r.lenenc_bytes("parameter value"),
    }
}

/// Appends one binary-protocol value of type `ty`.
pub fn put_value(dst: &mut BytesMut, ty: ColumnType, value: &[u8]) -> Result<()> {
    match layout(ty)? {
        Layout::Fixed(n) if n == value.len() => dst.put_slice(value),
        Layout::Fixed(_) => {
            return Err(CodecError::InvalidValue {
                what: "fixed-width value length",
                value: value.len() as u64,
            })
        }
        Layout::ByteLen => {
            let n = u8::try_from(value.len()).map_err(|_| CodecError::InvalidValue {
                what: "temporal value length",
                value: value.len() as u64,
            })?;
            dst.put_u8(n);
            dst.put_slice(value);
        }
        Layout::Lenenc => put_lenenc_bytes(dst, value),
    }
    Ok(())
}

/// Parses a parameter block of `count` parameters.
///
/// `with_names`: each bound type is followed by a lenenc name
/// (`CLIENT_QUERY_ATTRIBUTES`). `prev_types`: the types bound by an earlier
/// execute, used when the block does not rebind (`new_params_bound == 0`).
/// Returns whether types were bound, and the parameters.
pub(crate) fn read_params(
    r: &mut Reader<'_>,
    base: &Bytes,
    count: u64,
    with_names: bool,
    prev_types: Option<&[ParamType]>,
) -> Result<(bool, Vec<BinaryParam>)> {
    if count == 0 {
        return Ok((false, Vec::new()));
    }
    // The bitmap alone needs a bit per parameter: bounds the loops below.
    if count > (r.remaining() as u64).saturating_mul(8) {
        return Err(CodecError::Truncated {
            what: "parameter null bitmap",
            needed: usize::try_from(count.div_ceil(8)).unwrap_or(usize::MAX) - r.remaining(),
        });
    }
    let count = count as usize;
    let bitmap = r.take(count.div_ceil(8), "parameter null bitmap")?;
    let bound = r.u8("new params bound flag")? != 0;
    let mut params = Vec::with_capacity(count.min(r.remaining() + 1));
    for i in 0..count {
        let (ty, name) = if bound {
            let ty = ColumnType(r.u8("parameter type")?);
            let flags = r.u8("parameter flags")?;
            let name = if with_names {
                sub(base, r.lenenc_bytes("parameter name")?)
            } else {
                Bytes::new()
            };
            let unsigned = flags & UNSIGNED_FLAG != 0;
            (ParamType { ty, unsigned }, name)
        } else {
            let prev = prev_types
                .and_then(|t| t.get(i))
                .ok_or(CodecError::Protocol(
                    "execute without bound types and no earlier types",
                ))?;
            (*prev, Bytes::new())
        };
        params.push(BinaryParam {
            ty,
            name,
            value: None,
        });
    }
    for (i, p) in params.iter_mut().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) == 0 {
            p.value = Some(sub(base, read_value(r, p.ty.ty)?));
        }
    }
    Ok((bound, params))
}

/// Writes a parameter block (the inverse of `read_params`).
pub(crate) fn put_params(
    dst: &mut BytesMut,
    params: &[BinaryParam],
    bound: bool,
    with_names: bool,
) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    let mut bitmap = vec![0u8; params.len().div_ceil(8)];
    for (i, p) in params.iter().enumerate() {
        if p.value.is_none() {
            bitmap[i / 8] |= 1 << (i % 8);
        }
    }
    dst.put_slice(&bitmap);
    dst.put_u8(u8::from(bound));
    if bound {
        for p in params {
            dst.put_u8(p.ty.ty.0);
            dst.put_u8(if p.ty.unsigned { UNSIGNED_FLAG } else { 0 });
            if with_names {
                put_lenenc_bytes(dst, &p.name);
            }
        }
    }
    for p in params {
        if let Some(v) = &p.value {
            put_value(dst, p.ty.ty, v)?;
        }
    }
    Ok(())
}
