//! Connection phase packets: the server's Initial Handshake v10, the client's
//! SSLRequest and HandshakeResponse41, and the auth exchange packets
//! (AuthSwitchRequest/Response, AuthMoreData, caching_sha2 status bytes).
//!
//! ```text
//! server                         client
//! HandshakeV10        ------>
//!                     <------    [SSLRequest, then TLS]  HandshakeResponse41
//! AuthSwitchRequest   ------>    (optional)
//!                     <------    AuthSwitchResponse
//! AuthMoreData        <----->    (plugin specific, e.g. caching_sha2 full auth)
//! OK | ERR            ------>
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::buf::{put_lenenc_bytes, put_lenenc_int, put_nul_str, sub, Reader};
use crate::error::{CodecError, Result};
use crate::flags::{CapabilityFlags, StatusFlags};
use crate::generic::{EOF_HEADER, ERR_HEADER, OK_HEADER};

/// Protocol version byte of the v10 handshake.
pub const PROTOCOL_VERSION: u8 = 10;
/// Header byte of AuthMoreData.
pub const AUTH_MORE_DATA_HEADER: u8 = 0x01;
/// Header byte of AuthSwitchRequest.
pub const AUTH_SWITCH_HEADER: u8 = EOF_HEADER;
/// Length of an SSLRequest payload.
pub const SSL_REQUEST_LEN: usize = 32;

/// caching_sha2_password: the client asks for the server's RSA public key.
pub const CACHING_SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password: fast authentication succeeded (AuthMoreData payload).
pub const CACHING_SHA2_FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password: the server needs the full password (AuthMoreData payload).
pub const CACHING_SHA2_PERFORM_FULL_AUTH: u8 = 0x04;

/// The server's Initial Handshake Packet, protocol version 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeV10 {
    /// Human-readable server version, e.g. `9.7.0`.
    pub server_version: Bytes,
    /// Connection (thread) id.
    pub connection_id: u32,
    /// The auth nonce ("scramble"), both parts joined, trailing NUL removed;
    /// 20 bytes from MySQL.
    pub auth_plugin_data: Bytes,
    /// Server capabilities.
    pub capabilities: CapabilityFlags,
    /// Server default collation id (low byte).
    pub charset: u8,
    /// Server status flags.
    pub status: StatusFlags,
    /// Default auth plugin, e.g. `caching_sha2_password`.
    pub auth_plugin_name: Bytes,
}

impl HandshakeV10 {
    /// Decodes the handshake (client side, facing a MySQL backend). An ERR
    /// packet in its place (e.g. "host is blocked") yields `UnexpectedHeader`;
    /// check [`crate::generic::is_err`] first to report it.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        let version = r.u8("protocol version")?;
        if version != PROTOCOL_VERSION {
            return Err(CodecError::UnexpectedHeader {
                what: "handshake v10",
                header: version,
            });
        }
        let server_version = sub(payload, r.nul_str("server version")?);
        let connection_id = r.u32("connection id")?;
        let part1 = r.take(8, "auth plugin data part 1")?;
        r.u8("filler")?;
        let mut caps = u32::from(r.u16("capability flags")?);
        let mut this = Self {
            server_version,
            connection_id,
            auth_plugin_data: Bytes::copy_from_slice(part1),
            capabilities: CapabilityFlags::from_bits_retain(caps),
            charset: 0,
            status: StatusFlags::empty(),
            auth_plugin_name: Bytes::new(),
        };
        if r.is_empty() {
            return Ok(this);
        }
        this.charset = r.u8("character set")?;
        this.status = StatusFlags::from_bits_retain(r.u16("status flags")?);
        caps |= u32::from(r.u16("capability flags upper")?) << 16;
        this.capabilities = CapabilityFlags::from_bits_retain(caps);
        let data_len = r.u8("auth plugin data length")?;
        r.take(10, "reserved")?;
        if this
            .capabilities
            .contains(CapabilityFlags::SECURE_CONNECTION)
        {
            let len = usize::from(data_len).saturating_sub(8).max(13);
            // Some servers send fewer bytes than announced at the very end.
            let len = len.min(r.remaining());
            let mut part2 = r.take(len, "auth plugin data part 2")?;
            if let [head @ .., 0] = part2 {
                part2 = head;
            }
            let mut nonce = Vec::with_capacity(8 + part2.len());
            nonce.extend_from_slice(part1);
            nonce.extend_from_slice(part2);
            this.auth_plugin_data = Bytes::from(nonce);
        }
        if this.capabilities.contains(CapabilityFlags::PLUGIN_AUTH) {
            // MySQL < 5.5.10 omitted the terminator; accept end of packet.
            this.auth_plugin_name = sub(payload, r.nul_str_or_eof());
        }
        Ok(this)
    }

    /// Encodes the handshake (server side, the proxy facing its clients).
    /// The nonce is padded with zeros to 8 bytes for part 1.
    pub fn encode(&self, dst: &mut BytesMut) {
        let caps = self.capabilities.bits();
        let data = &self.auth_plugin_data[..];
        let (part1, part2) = data.split_at(data.len().min(8));
        dst.put_u8(PROTOCOL_VERSION);
        put_nul_str(dst, &self.server_version);
        dst.put_u32_le(self.connection_id);
        dst.put_slice(part1);
        dst.put_bytes(0, 8 - part1.len());
        dst.put_u8(0);
        dst.put_u16_le(caps as u16);
        dst.put_u8(self.charset);
        dst.put_u16_le(self.status.bits());
        dst.put_u16_le((caps >> 16) as u16);
        if self.capabilities.contains(CapabilityFlags::PLUGIN_AUTH) {
            dst.put_u8((8 + part2.len() + 1).min(255) as u8);
        } else {
            dst.put_u8(0);
        }
        dst.put_bytes(0, 10);
        if self
            .capabilities
            .contains(CapabilityFlags::SECURE_CONNECTION)
        {
            dst.put_slice(part2);
            // Part 2 is at least 13 bytes including its NUL terminator.
            dst.put_bytes(0, 13usize.saturating_sub(part2.len()).max(1));
        }
        if self.capabilities.contains(CapabilityFlags::PLUGIN_AUTH) {
            put_nul_str(dst, &self.auth_plugin_name);
        }
    }
}

/// The short SSLRequest a client sends before switching to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    /// Client capabilities (includes `SSL`).
    pub capabilities: CapabilityFlags,
    /// Client's max packet size.
    pub max_packet_size: u32,
    /// Client collation id (low byte).
    pub charset: u8,
}

impl SslRequest {
    /// Encodes the 32-byte SSLRequest.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u32_le(self.capabilities.bits());
        dst.put_u32_le(self.max_packet_size);
        dst.put_u8(self.charset);
        dst.put_bytes(0, 23);
    }
}

/// HandshakeResponse41: the client's credentials and options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    /// Client capabilities.
    pub capabilities: CapabilityFlags,
    /// Client's max packet size.
    pub max_packet_size: u32,
    /// Client collation id (low byte).
    pub charset: u8,
    /// User name.
    pub username: Bytes,
    /// Plugin-specific auth response (e.g. the 20-byte native scramble).
    pub auth_response: Bytes,
    /// Initial schema (`CONNECT_WITH_DB`).
    pub database: Option<Bytes>,
    /// Auth plugin the response was computed with (`PLUGIN_AUTH`).
    pub auth_plugin_name: Option<Bytes>,
    /// Connection attributes, in order (`CONNECT_ATTRS`).
    pub connect_attrs: Vec<(Bytes, Bytes)>,
    /// zstd compression level (`ZSTD_COMPRESSION_ALGORITHM`).
    pub zstd_level: Option<u8>,
}

/// The first packet a client sends: an SSLRequest or a full response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHandshake {
    /// Switch to TLS, then the full response follows.
    SslRequest(SslRequest),
    /// The handshake response.
    Response(HandshakeResponse),
}

impl ClientHandshake {
    /// Decodes the client's first packet (server side).
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let caps = Reader::new(payload).u32("capability flags")?;
        let caps = CapabilityFlags::from_bits_retain(caps);
        if payload.len() == SSL_REQUEST_LEN && caps.contains(CapabilityFlags::SSL) {
            let mut r = Reader::new(payload);
            r.u32("capability flags")?;
            return Ok(Self::SslRequest(SslRequest {
                capabilities: caps,
                max_packet_size: r.u32("max packet size")?,
                charset: r.u8("character set")?,
            }));
        }
        HandshakeResponse::decode(payload).map(Self::Response)
    }
}

impl HandshakeResponse {
    /// Decodes HandshakeResponse41 (server side). The pre-4.1 response is
    /// rejected as unsupported.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        let caps = CapabilityFlags::from_bits_retain(r.u32("capability flags")?);
        if !caps.contains(CapabilityFlags::PROTOCOL_41) {
            return Err(CodecError::Unsupported("pre-4.1 handshake response"));
        }
        let max_packet_size = r.u32("max packet size")?;
        let charset = r.u8("character set")?;
        r.take(23, "filler")?;
        let username = sub(payload, r.nul_str("user name")?);
        let auth = if caps.contains(CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            r.lenenc_bytes("auth response")?
        } else if caps.contains(CapabilityFlags::SECURE_CONNECTION) {
            let len = r.u8("auth response length")?;
            r.take(usize::from(len), "auth response")?
        } else {
            r.nul_str("auth response")?
        };
        let mut this = Self {
            capabilities: caps,
            max_packet_size,
            charset,
            username,
            auth_response: sub(payload, auth),
            ..Self::default()
        };
        // Trailing optional fields: clients that set a flag but send nothing
        // are accepted, as the server does.
        if caps.contains(CapabilityFlags::CONNECT_WITH_DB) && !r.is_empty() {
            this.database = Some(sub(payload, r.nul_str_or_eof()));
        }
        if caps.contains(CapabilityFlags::PLUGIN_AUTH) && !r.is_empty() {
            this.auth_plugin_name = Some(sub(payload, r.nul_str_or_eof()));
        }
        if caps.contains(CapabilityFlags::CONNECT_ATTRS) && !r.is_empty() {
            this.connect_attrs = read_connect_attrs(&mut r, payload)?;
        }
        if caps.contains(CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM) && !r.is_empty() {
            this.zstd_level = Some(r.u8("zstd level")?);
        }
        Ok(this)
    }

    /// Encodes HandshakeResponse41 (client side, the proxy facing a backend).
    /// Fails if the auth response does not fit a 1-byte length without
    /// `PLUGIN_AUTH_LENENC_CLIENT_DATA`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        let caps = self.capabilities;
        dst.put_u32_le(caps.bits());
        dst.put_u32_le(self.max_packet_size);
        dst.put_u8(self.charset);
        dst.put_bytes(0, 23);
        put_nul_str(dst, &self.username);
        if caps.contains(CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            put_lenenc_bytes(dst, &self.auth_response);
        } else if caps.contains(CapabilityFlags::SECURE_CONNECTION) {
            let len =
                u8::try_from(self.auth_response.len()).map_err(|_| CodecError::InvalidValue {
                    what: "auth response length",
                    value: self.auth_response.len() as u64,
                })?;
            dst.put_u8(len);
            dst.put_slice(&self.auth_response);
        } else {
            put_nul_str(dst, &self.auth_response);
        }
        if caps.contains(CapabilityFlags::CONNECT_WITH_DB) {
            put_nul_str(dst, self.database.as_deref().unwrap_or_default());
        }
        if caps.contains(CapabilityFlags::PLUGIN_AUTH) {
            put_nul_str(dst, self.auth_plugin_name.as_deref().unwrap_or_default());
        }
        if caps.contains(CapabilityFlags::CONNECT_ATTRS) {
            put_connect_attrs(dst, &self.connect_attrs);
        }
        if caps.contains(CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM) {
            dst.put_u8(self.zstd_level.unwrap_or(3));
        }
        Ok(())
    }
}

/// Reads a connection-attribute block: lenenc total length, then pairs of
/// lenenc strings. `base` is the payload `r` reads from (for zero-copy slices).
pub(crate) fn read_connect_attrs(r: &mut Reader<'_>, base: &Bytes) -> Result<Vec<(Bytes, Bytes)>> {
    let mut attrs = Reader::new(r.lenenc_bytes("connect attrs")?);
    let mut out = Vec::new();
    while !attrs.is_empty() {
        let k = attrs.lenenc_bytes("connect attr key")?;
        let v = attrs.lenenc_bytes("connect attr value")?;
        out.push((sub(base, k), sub(base, v)));
    }
    Ok(out)
}

/// Writes a connection-attribute block.
pub(crate) fn put_connect_attrs(dst: &mut BytesMut, attrs: &[(Bytes, Bytes)]) {
    let mut block = BytesMut::new();
    for (k, v) in attrs {
        put_lenenc_bytes(&mut block, k);
        put_lenenc_bytes(&mut block, v);
    }
    put_lenenc_int(dst, block.len() as u64);
    dst.put_slice(&block);
}

/// AuthSwitchRequest: the server asks the client to authenticate with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitchRequest {
    /// Plugin to switch to.
    pub plugin_name: Bytes,
    /// Plugin data; for the SHA/native plugins a fresh 20-byte nonce and a NUL.
    pub plugin_data: Bytes,
}

impl AuthSwitchRequest {
    /// Decodes `0xFE plugin_name NUL plugin_data`. The pre-4.1 bare `0xFE`
    /// (switch to `mysql_old_password`) is unsupported.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("auth switch header")?;
        if header != AUTH_SWITCH_HEADER {
            return Err(CodecError::UnexpectedHeader {
                what: "auth switch request",
                header,
            });
        }
        if r.is_empty() {
            return Err(CodecError::Unsupported("old password auth switch"));
        }
        let plugin_name = sub(payload, r.nul_str("auth plugin name")?);
        Ok(Self {
            plugin_name,
            plugin_data: sub(payload, r.rest()),
        })
    }

    /// Encodes the request.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(AUTH_SWITCH_HEADER);
        put_nul_str(dst, &self.plugin_name);
        dst.put_slice(&self.plugin_data);
    }

    /// The nonce: plugin data without its trailing NUL.
    pub fn nonce(&self) -> &[u8] {
        match &self.plugin_data[..] {
            [head @ .., 0] => head,
            all => all,
        }
    }
}

/// AuthMoreData: `0x01` followed by plugin-specific data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMoreData {
    /// The data after the header byte.
    pub data: Bytes,
}

impl AuthMoreData {
    /// Decodes AuthMoreData.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("auth more data header")?;
        if header != AUTH_MORE_DATA_HEADER {
            return Err(CodecError::UnexpectedHeader {
                what: "auth more data",
                header,
            });
        }
        Ok(Self {
            data: sub(payload, r.rest()),
        })
    }

    /// Encodes AuthMoreData.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(AUTH_MORE_DATA_HEADER);
        dst.put_slice(&self.data);
    }

    /// caching_sha2 "fast auth success" (`01 03`); an OK packet follows.
    pub fn fast_auth_success() -> Self {
        Self {
            data: Bytes::from_static(&[CACHING_SHA2_FAST_AUTH_SUCCESS]),
        }
    }

    /// caching_sha2 "perform full authentication" (`01 04`).
    pub fn perform_full_auth() -> Self {
        Self {
            data: Bytes::from_static(&[CACHING_SHA2_PERFORM_FULL_AUTH]),
        }
    }

    /// The caching_sha2 status byte, when this is a one-byte status message.
    pub fn caching_sha2_status(&self) -> Option<u8> {
        match &self.data[..] {
            [b @ (CACHING_SHA2_FAST_AUTH_SUCCESS | CACHING_SHA2_PERFORM_FULL_AUTH)] => Some(*b),
            _ => None,
        }
    }
}

/// What a server packet in the authentication phase is (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPacketKind {
    /// OK: authenticated.
    Ok,
    /// ERR: refused.
    Err,
    /// AuthSwitchRequest.
    Switch,
    /// AuthMoreData.
    MoreData,
}

impl AuthPacketKind {
    /// Classifies a server packet received during authentication.
    pub fn classify(payload: &[u8]) -> Result<Self> {
        match payload.first() {
            Some(&OK_HEADER) => Ok(Self::Ok),
            Some(&ERR_HEADER) => Ok(Self::Err),
            Some(&AUTH_SWITCH_HEADER) => Ok(Self::Switch),
            Some(&AUTH_MORE_DATA_HEADER) => Ok(Self::MoreData),
            Some(&header) => Err(CodecError::UnexpectedHeader {
                what: "authentication packet",
                header,
            }),
            None => Err(CodecError::EmptyPacket {
                what: "authentication packet",
            }),
        }
    }
}

#[cfg(test)]
mod tests;
