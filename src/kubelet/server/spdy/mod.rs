//! SPDY/3.1 as kubectl speaks it for exec, attach and port-forward (`k8s.io/apimachinery`'s
//! httpstream/spdy over moby/spdystream): frame encoding and decoding with zlib header
//! compression (`frame`), the name/value header blocks (`headers`), the server session with
//! stream state and flow control (`session`), the HTTP upgrade handshake (`upgrade`) and exec
//! and attach over a session (`remotecommand`). Only `session` does I/O, on a byte stream it is
//! given; nothing here touches containers.

mod dictionary;
pub mod frame;
pub mod headers;
pub mod remotecommand;
pub mod session;
pub mod upgrade;

pub use frame::{Frame, FrameCodec, RstStatus, Setting, StreamId};
pub use headers::HeaderBlock;

/// What can go wrong while encoding or decoding SPDY frames.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported spdy version {version}")]
    UnsupportedVersion { version: u16 },
    #[error("spdy {frame} frame too short: {length} bytes")]
    FrameTooShort { frame: &'static str, length: usize },
    #[error("spdy frame payload of {length} bytes exceeds the 24-bit length field")]
    FrameTooLarge { length: usize },
    #[error("spdy stream id {id} does not fit in 31 bits")]
    InvalidStreamId { id: u32 },
    #[error("spdy header block truncated at byte {offset}")]
    HeaderBlockTruncated { offset: usize },
    #[error("spdy header block declares {count} pairs in {length} bytes")]
    HeaderBlockCount { count: u32, length: usize },
    #[error("spdy header block decompresses beyond {limit} bytes")]
    HeaderBlockTooLarge { limit: usize },
    #[error("spdy header name or value is not utf-8: {source}")]
    HeaderNotUtf8 {
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error("spdy header block decompression failed: {source}")]
    Decompress {
        #[source]
        source: flate2::DecompressError,
    },
    #[error("spdy header block compression failed: {source}")]
    Compress {
        #[source]
        source: flate2::CompressError,
    },
    #[error("spdy header block decompression made no progress")]
    DecompressStalled,
}
