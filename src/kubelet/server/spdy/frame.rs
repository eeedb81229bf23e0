//! SPDY/3.1 frames: the eight control frames kubectl's spdystream uses plus DATA, encoded to and
//! decoded from bytes. Header blocks pass through the connection's shared zlib contexts, so one
//! [`FrameCodec`] serves exactly one connection and must see every frame in order.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SpdyError;
use super::headers::{HeaderBlock, HeaderCompressor, HeaderDecompressor};

const VERSION: u16 = 3;
const HEADER_LEN: usize = 8;
const MAX_LENGTH: usize = (1 << 24) - 1;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// A 31-bit SPDY stream identifier (client-initiated streams are odd, server ones even).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

/// RST_STREAM status codes (SPDY/3 section 2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: Self = Self(1);
    pub const INVALID_STREAM: Self = Self(2);
    pub const REFUSED_STREAM: Self = Self(3);
    pub const CANCEL: Self = Self(5);
    pub const INTERNAL_ERROR: Self = Self(6);
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    pub const STREAM_IN_USE: Self = Self(8);
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
}

/// One SETTINGS entry (flags, 24-bit id, value). Id 7 is the initial window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

impl Setting {
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// A decoded SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: StreamId,
        associated_to: StreamId,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: HeaderBlock,
    },
    SynReply {
        stream_id: StreamId,
        fin: bool,
        headers: HeaderBlock,
    },
    RstStream {
        stream_id: StreamId,
        status: RstStatus,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: StreamId,
        status: u32,
    },
    Headers {
        stream_id: StreamId,
        fin: bool,
        headers: HeaderBlock,
    },
    WindowUpdate {
        stream_id: StreamId,
        delta: u32,
    },
    Data {
        stream_id: StreamId,
        fin: bool,
        data: Bytes,
    },
}

/// Encodes and decodes the frames of one connection (owns both zlib header contexts).
pub struct FrameCodec {
    compressor: HeaderCompressor,
    decompressor: HeaderDecompressor,
}

impl FrameCodec {
    pub fn new() -> Result<Self, SpdyError> {
        Ok(Self {
            compressor: HeaderCompressor::new()?,
            decompressor: HeaderDecompressor::new(),
        })
    }

    /// Takes one whole frame off the front of `buf`; `Ok(None)` means more bytes are needed.
    /// Control frames of unknown types are consumed and skipped, as SPDY/3 requires.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            let Some(head) = buf.get(..HEADER_LEN) else {
                return Ok(None);
            };
            let mut head = head;
            let word = head.get_u32();
            let flags = head.get_u8();
            let length = usize::from(head.get_u8()) << 16 | usize::from(head.get_u16());
            if buf.len() < HEADER_LEN + length {
                return Ok(None);
            }
            buf.advance(HEADER_LEN);
            let payload = buf.split_to(length).freeze();
            if word & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: StreamId(word & STREAM_ID_MASK),
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            // The top 16 bits less the control bit: always fits in u16.
            let version = u16::try_from((word >> 16) & 0x7fff).unwrap_or(u16::MAX);
            if version != VERSION {
                return Err(SpdyError::UnsupportedVersion { version });
            }
            let frame_type = u16::try_from(word & 0xffff).unwrap_or(u16::MAX);
            if let Some(frame) = self.decode_control(frame_type, flags, payload)? {
                return Ok(Some(frame));
            }
        }
    }

    fn decode_control(
        &mut self,
        frame_type: u16,
        flags: u8,
        mut payload: Bytes,
    ) -> Result<Option<Frame>, SpdyError> {
        let fin = flags & FLAG_FIN != 0;
        let need = |frame: &'static str, min: usize, payload: &Bytes| {
            if payload.len() < min {
                Err(SpdyError::FrameTooShort {
                    frame,
                    length: payload.len(),
                })
            } else {
                Ok(())
            }
        };
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need("SYN_STREAM", 10, &payload)?;
                let stream_id = StreamId(payload.get_u32() & STREAM_ID_MASK);
                let associated_to = StreamId(payload.get_u32() & STREAM_ID_MASK);
                let priority = payload.get_u8() >> 5;
                let _slot = payload.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.decompressor.decompress(&payload)?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need("SYN_REPLY", 4, &payload)?;
                let stream_id = StreamId(payload.get_u32() & STREAM_ID_MASK);
                let headers = self.decompressor.decompress(&payload)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need("RST_STREAM", 8, &payload)?;
                Frame::RstStream {
                    stream_id: StreamId(payload.get_u32() & STREAM_ID_MASK),
                    status: RstStatus(payload.get_u32()),
                }
            }
            TYPE_SETTINGS => {
                need("SETTINGS", 4, &payload)?;
                let count = payload.get_u32();
                let fits = usize::try_from(count)
                    .ok()
                    .and_then(|c| c.checked_mul(8))
                    .is_some_and(|bytes| bytes <= payload.len());
                if !fits {
                    return Err(SpdyError::FrameTooShort {
                        frame: "SETTINGS",
                        length: payload.len(),
                    });
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = payload.get_u32();
                        Setting {
                            flags: u8::try_from(word >> 24).unwrap_or(0),
                            id: word & 0x00ff_ffff,
                            value: payload.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            TYPE_PING => {
                need("PING", 4, &payload)?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            TYPE_GOAWAY => {
                need("GOAWAY", 8, &payload)?;
                Frame::GoAway {
                    last_good_stream_id: StreamId(payload.get_u32() & STREAM_ID_MASK),
                    status: payload.get_u32(),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8, &payload)?;
                Frame::WindowUpdate {
                    stream_id: StreamId(payload.get_u32() & STREAM_ID_MASK),
                    delta: payload.get_u32() & STREAM_ID_MASK,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let mut payload = BytesMut::new();
        let (frame_type, flags) = match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                out.put_u32(checked(*stream_id)?);
                put_flags_length(out, fin_flag(*fin), data.len())?;
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                payload.put_u32(checked(*stream_id)?);
                payload.put_u32(checked(*associated_to)?);
                payload.put_u8((priority & 0x07) << 5);
                payload.put_u8(0);
                payload.extend_from_slice(&self.compressor.compress(headers)?);
                let uni = if *unidirectional {
                    FLAG_UNIDIRECTIONAL
                } else {
                    0
                };
                (TYPE_SYN_STREAM, fin_flag(*fin) | uni)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                payload.put_u32(checked(*stream_id)?);
                payload.extend_from_slice(&self.compressor.compress(headers)?);
                let frame_type = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                (frame_type, fin_flag(*fin))
            }
            Frame::RstStream { stream_id, status } => {
                payload.put_u32(checked(*stream_id)?);
                payload.put_u32(status.0);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { clear, entries } => {
                payload.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for entry in entries {
                    payload.put_u32(u32::from(entry.flags) << 24 | (entry.id & 0x00ff_ffff));
                    payload.put_u32(entry.value);
                }
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                (TYPE_SETTINGS, flags)
            }
            Frame::Ping { id } => {
                payload.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                payload.put_u32(checked(*last_good_stream_id)?);
                payload.put_u32(*status);
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.put_u32(checked(*stream_id)?);
                payload.put_u32(delta & STREAM_ID_MASK);
                (TYPE_WINDOW_UPDATE, 0)
            }
        };
        out.put_u16(0x8000 | VERSION);
        out.put_u16(frame_type);
        put_flags_length(out, flags, payload.len())?;
        out.extend_from_slice(&payload);
        Ok(())
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn checked(id: StreamId) -> Result<u32, SpdyError> {
    if id.0 & !STREAM_ID_MASK != 0 {
        return Err(SpdyError::InvalidStreamId { id: id.0 });
    }
    Ok(id.0)
}

fn put_flags_length(out: &mut BytesMut, flags: u8, length: usize) -> Result<(), SpdyError> {
    if length > MAX_LENGTH {
        return Err(SpdyError::FrameTooLarge { length });
    }
    let length = u32::try_from(length).map_err(|_| SpdyError::FrameTooLarge { length })?;
    out.put_u32(u32::from(flags) << 24 | length);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut tx = FrameCodec::new().unwrap();
        let mut rx = FrameCodec::new().unwrap();
        let mut wire = BytesMut::new();
        for frame in frames {
            tx.encode(frame, &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = rx.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert!(wire.is_empty());
        decoded
    }

    #[test]
    fn every_frame_type_round_trips() {
        let headers = HeaderBlock::new()
            .with("streamtype", "data")
            .with("port", "8080")
            .with("requestid", "1");
        let frames = vec![
            Frame::SynStream {
                stream_id: StreamId(1),
                associated_to: StreamId(0),
                priority: 7,
                fin: false,
                unidirectional: true,
                headers: headers.clone(),
            },
            Frame::SynReply {
                stream_id: StreamId(1),
                fin: true,
                headers: HeaderBlock::new(),
            },
            Frame::Headers {
                stream_id: StreamId(3),
                fin: false,
                headers,
            },
            Frame::RstStream {
                stream_id: StreamId(5),
                status: RstStatus::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: Setting::INITIAL_WINDOW_SIZE,
                    value: 65536,
                }],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good_stream_id: StreamId(7),
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: StreamId(1),
                delta: 4096,
            },
            Frame::Data {
                stream_id: StreamId(1),
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: StreamId(3),
                fin: false,
                data: Bytes::new(),
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn wire_layout_matches_spdy3() {
        let mut codec = FrameCodec::new().unwrap();
        let cases: [(Frame, &[u8]); 4] = [
            (
                Frame::Ping { id: 1 },
                b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
            ),
            (
                Frame::Data {
                    stream_id: StreamId(3),
                    fin: true,
                    data: Bytes::from_static(b"ab"),
                },
                b"\x00\x00\x00\x03\x01\x00\x00\x02ab",
            ),
            (
                Frame::RstStream {
                    stream_id: StreamId(1),
                    status: RstStatus::REFUSED_STREAM,
                },
                b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x03",
            ),
            (
                Frame::WindowUpdate {
                    stream_id: StreamId(1),
                    delta: 0x10000,
                },
                b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x01\x00\x00",
            ),
        ];
        for (frame, wire) in cases {
            let mut out = BytesMut::new();
            codec.encode(&frame, &mut out).unwrap();
            assert_eq!(&out[..], wire, "{frame:?}");
        }
    }

    #[test]
    fn partial_input_waits_for_more_bytes() {
        let mut tx = FrameCodec::new().unwrap();
        let mut rx = FrameCodec::new().unwrap();
        let mut wire = BytesMut::new();
        tx.encode(
            &Frame::Data {
                stream_id: StreamId(1),
                fin: false,
                data: Bytes::from_static(b"0123456789"),
            },
            &mut wire,
        )
        .unwrap();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert_eq!(rx.decode(&mut buf).unwrap(), None, "byte {i}");
            buf.put_u8(*byte);
        }
        assert!(matches!(
            rx.decode(&mut buf).unwrap(),
            Some(Frame::Data { .. })
        ));
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut rx = FrameCodec::new().unwrap();
        let mut buf = BytesMut::from(
            &b"\x80\x03\x00\x0a\x00\x00\x00\x02xy\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x02"
                [..],
        );
        assert_eq!(rx.decode(&mut buf).unwrap(), Some(Frame::Ping { id: 2 }));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: [&[u8]; 4] = [
            // SPDY/2
            b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
            // PING with 2 bytes
            b"\x80\x03\x00\x06\x00\x00\x00\x02\x00\x01",
            // SETTINGS claiming 2 entries with room for none
            b"\x80\x03\x00\x04\x00\x00\x00\x04\x00\x00\x00\x02",
            // SYN_STREAM whose header block is not zlib
            b"\x80\x03\x00\x01\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff",
        ];
        for bytes in cases {
            let mut rx = FrameCodec::new().unwrap();
            let mut buf = BytesMut::from(bytes);
            assert!(rx.decode(&mut buf).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn stream_ids_beyond_31_bits_are_refused() {
        let mut codec = FrameCodec::new().unwrap();
        let frame = Frame::Ping { id: 0 };
        let mut out = BytesMut::new();
        assert!(codec.encode(&frame, &mut out).is_ok());
        let bad = Frame::RstStream {
            stream_id: StreamId(0x8000_0001),
            status: RstStatus::CANCEL,
        };
        assert!(codec.encode(&bad, &mut out).is_err());
    }
}
