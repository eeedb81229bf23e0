//! The protobuf wire format: varints, tags and length-delimited fields, read without copying
//! and without ever indexing past the end of the input.

use thiserror::Error;

/// A malformed byte sequence at the wire level.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("truncated varint at byte {offset}")]
    TruncatedVarint { offset: usize },
    #[error("varint longer than 10 bytes at byte {offset}")]
    VarintTooLong { offset: usize },
    #[error("field of {length} bytes at byte {offset} runs past the end ({available} bytes left)")]
    Truncated {
        offset: usize,
        length: u64,
        available: usize,
    },
    #[error("field number 0 at byte {offset}")]
    ZeroFieldNumber { offset: usize },
    #[error("field number {number} at byte {offset} is out of range")]
    FieldNumberOutOfRange { offset: usize, number: u64 },
    #[error("unsupported wire type {wire_type} at byte {offset}")]
    UnsupportedWireType { offset: usize, wire_type: u8 },
}

/// The wire type of a field, as carried in the low three bits of its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub fn code(self) -> u8 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::Fixed32 => 5,
        }
    }
}

/// The payload of one field occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            WireValue::Varint(_) => WireType::Varint,
            WireValue::Fixed64(_) => WireType::Fixed64,
            WireValue::Len(_) => WireType::Len,
            WireValue::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// One field occurrence: its number and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireField<'a> {
    pub number: u32,
    pub value: WireValue<'a>,
}

/// Iterates over the fields of one message's bytes.
pub struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> FieldReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        FieldReader { buf, pos: 0 }
    }

    fn read_varint(&mut self) -> Result<u64, WireError> {
        let (value, used) = varint(self.buf.get(self.pos..).unwrap_or_default())
            .map_err(|e| e.shifted(self.pos))?;
        self.pos += used;
        Ok(value)
    }

    fn take(&mut self, length: u64) -> Result<&'a [u8], WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let truncated = WireError::Truncated {
            offset: self.pos,
            length,
            available: rest.len(),
        };
        let n = usize::try_from(length).map_err(|_| truncated.clone())?;
        let bytes = rest.get(..n).ok_or(truncated)?;
        self.pos += n;
        Ok(bytes)
    }

    fn next_field(&mut self) -> Result<WireField<'a>, WireError> {
        let offset = self.pos;
        let tag = self.read_varint()?;
        let number = tag >> 3;
        if number == 0 {
            return Err(WireError::ZeroFieldNumber { offset });
        }
        let number = u32::try_from(number)
            .ok()
            .filter(|n| *n < (1 << 29))
            .ok_or(WireError::FieldNumberOutOfRange { offset, number })?;
        let value = match tag & 7 {
            0 => WireValue::Varint(self.read_varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let length = self.read_varint()?;
                WireValue::Len(self.take(length)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            other => {
                return Err(WireError::UnsupportedWireType {
                    offset,
                    wire_type: other as u8,
                });
            }
        };
        Ok(WireField { number, value })
    }
}

impl<'a> Iterator for FieldReader<'a> {
    type Item = Result<WireField<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // Stop after the first error: the rest of the buffer cannot be framed.
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

impl WireError {
    fn shifted(self, by: usize) -> WireError {
        match self {
            WireError::TruncatedVarint { offset } => WireError::TruncatedVarint {
                offset: offset + by,
            },
            WireError::VarintTooLong { offset } => WireError::VarintTooLong {
                offset: offset + by,
            },
            other => other,
        }
    }
}

/// Decodes one varint at the start of `buf`, returning it and the number of bytes used.
pub fn varint(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate() {
        if i >= 10 {
            return Err(WireError::VarintTooLong { offset: 0 });
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() > 10 {
        return Err(WireError::VarintTooLong { offset: 0 });
    }
    Err(WireError::TruncatedVarint { offset: 0 })
}

/// Decodes a packed run of varints (a `repeated int32 ... [packed=true]` payload).
pub fn packed_varints(buf: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
        let (v, used) = varint(rest).map_err(|e| e.shifted(pos))?;
        out.push(v);
        pos += used;
    }
    Ok(out)
}

/// Decodes a packed run of fixed-width little-endian values of `width` bytes (4 or 8).
pub fn packed_fixed(buf: &[u8], width: usize) -> Result<Vec<u64>, WireError> {
    if width == 0 || !buf.len().is_multiple_of(width) {
        return Err(WireError::Truncated {
            offset: buf.len() - buf.len() % width.max(1),
            length: width as u64,
            available: buf.len() % width.max(1),
        });
    }
    Ok(buf
        .chunks_exact(width)
        .map(|c| {
            c.iter()
                .rev()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_or_fail_cleanly() {
        type Decoded = Result<(u64, usize), WireError>;
        let cases: &[(&[u8], Decoded)] = &[
            (&[0x00], Ok((0, 1))),
            (&[0x01], Ok((1, 1))),
            (&[0xac, 0x02], Ok((300, 2))),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                Ok((u64::MAX, 10)),
            ),
            (&[], Err(WireError::TruncatedVarint { offset: 0 })),
            (&[0x80], Err(WireError::TruncatedVarint { offset: 0 })),
            (&[0x80; 11], Err(WireError::VarintTooLong { offset: 0 })),
        ];
        for (input, want) in cases {
            assert_eq!(&varint(input), want, "input {input:?}");
        }
    }

    #[test]
    fn field_reader_reads_every_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: len "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        let fields: Vec<_> = FieldReader::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            fields,
            vec![
                WireField {
                    number: 1,
                    value: WireValue::Varint(150)
                },
                WireField {
                    number: 2,
                    value: WireValue::Fixed64(1)
                },
                WireField {
                    number: 3,
                    value: WireValue::Len(b"hi")
                },
                WireField {
                    number: 4,
                    value: WireValue::Fixed32(2)
                },
            ]
        );
    }

    #[test]
    fn field_reader_rejects_malformed_input() {
        let cases: &[(&[u8], WireError)] = &[
            (&[0x00], WireError::ZeroFieldNumber { offset: 0 }),
            (
                &[0x0a, 0x05, b'a'],
                WireError::Truncated {
                    offset: 2,
                    length: 5,
                    available: 1,
                },
            ),
            (
                &[0x0b],
                WireError::UnsupportedWireType {
                    offset: 0,
                    wire_type: 3,
                },
            ),
            (&[0x08], WireError::TruncatedVarint { offset: 1 }),
            (
                &[0x09, 1, 2],
                WireError::Truncated {
                    offset: 1,
                    length: 8,
                    available: 2,
                },
            ),
        ];
        for (input, want) in cases {
            let got: Result<Vec<_>, _> = FieldReader::new(input).collect();
            assert_eq!(got.as_ref().err(), Some(want), "input {input:?}");
        }
    }

    #[test]
    fn packed_runs_decode() {
        assert_eq!(
            packed_varints(&[1, 0xac, 0x02, 3]).unwrap(),
            vec![1, 300, 3]
        );
        assert!(packed_varints(&[0x80]).is_err());
        assert_eq!(
            packed_fixed(&[1, 0, 0, 0, 2, 0, 0, 0], 4).unwrap(),
            vec![1, 2]
        );
        assert!(packed_fixed(&[1, 0, 0], 4).is_err());
    }
}
