//! `tokio_util::codec` adapter (feature `tokio`): use [`PacketCodec`] with
//! `Framed`, `FramedRead` or `FramedWrite`. The codec itself stays pure; this
//! only forwards to its inherent methods.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::CodecError;
use crate::packet::{Packet, PacketCodec};

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        PacketCodec::decode(self, src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        PacketCodec::decode_eof(self, src)
    }
}

impl Encoder<Packet> for PacketCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        PacketCodec::encode(self, &item, dst)
    }
}

impl Encoder<&Packet> for PacketCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        PacketCodec::encode(self, item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn works_through_the_tokio_util_traits() {
        let mut codec = PacketCodec::default();
        let mut buf = BytesMut::new();
        Encoder::encode(&mut codec, Packet::new(0, vec![0x0e]), &mut buf).unwrap();
        Encoder::encode(&mut codec, &Packet::new(1, vec![0x01]), &mut buf).unwrap();
        assert_eq!(&buf[..], &[1, 0, 0, 0, 0x0e, 1, 0, 0, 1, 0x01]);
        let first = Decoder::decode(&mut codec, &mut buf).unwrap().unwrap();
        assert_eq!(first, Packet::new(0, vec![0x0e]));
        buf.truncate(buf.len() - 1);
        assert!(Decoder::decode_eof(&mut codec, &mut buf).is_err());
    }
}
