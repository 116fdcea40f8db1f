//! MySQL wire protocol codec. Pure: decoding and encoding of bytes, no sockets.
