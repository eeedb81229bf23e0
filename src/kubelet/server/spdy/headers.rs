//! SPDY/3 name/value header blocks: the uncompressed layout (32-bit counts and lengths,
//! multiple values joined by NUL) and the per-direction zlib contexts primed with the SPDY/3
//! dictionary. One compressor and one decompressor live for a whole connection, as the
//! protocol requires; a block is never compressed on its own.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::SpdyError;
use super::dictionary::DICTIONARY;

/// A decompressed header block decoding to more than this is refused (a zlib bomb guard).
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The headers of a SYN_STREAM, SYN_REPLY or HEADERS frame: lowercase names in order, each with
/// one or more values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    pairs: Vec<(String, Vec<String>)>,
}

impl HeaderBlock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to `name` (lowercased, as SPDY/3 requires on the wire).
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => self.pairs.push((name, vec![value.to_owned()])),
        }
    }

    /// Builder form of [`HeaderBlock::add`].
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The uncompressed wire layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_len(&mut out, self.pairs.len());
        for (name, values) in &self.pairs {
            put_len(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            let joined = values.join("\0");
            put_len(&mut out, joined.len());
            out.extend_from_slice(joined.as_bytes());
        }
        out
    }

    /// Parses the uncompressed wire layout; names are lowercased and repeated names merged.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SpdyError> {
        let mut reader = Reader { bytes, offset: 0 };
        let count = reader.u32()?;
        // Every pair takes at least 8 bytes: refuse counts the block cannot hold before
        // allocating anything for them.
        if usize::try_from(count).map_or(true, |c| c.saturating_mul(8) > bytes.len()) {
            return Err(SpdyError::HeaderBlockCount {
                count,
                length: bytes.len(),
            });
        }
        let mut block = HeaderBlock::new();
        for _ in 0..count {
            let name = reader.string()?;
            let value = reader.string()?;
            for part in value.split('\0') {
                block.add(&name, part);
            }
        }
        Ok(block)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Header blocks are built from frames capped at 24-bit lengths, so this never saturates in
    // practice; saturating keeps it panic-free.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SpdyError> {
        let end = self
            .offset
            .checked_add(n)
            .ok_or(SpdyError::HeaderBlockTruncated {
                offset: self.offset,
            })?;
        let slice = self
            .bytes
            .get(self.offset..end)
            .ok_or(SpdyError::HeaderBlockTruncated {
                offset: self.offset,
            })?;
        self.offset = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, SpdyError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(word))
    }

    fn string(&mut self) -> Result<String, SpdyError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| SpdyError::HeaderBlockTruncated {
            offset: self.offset,
        })?;
        let raw = self.take(len)?.to_vec();
        String::from_utf8(raw).map_err(|source| SpdyError::HeaderNotUtf8 { source })
    }
}

/// The sending direction's zlib context (dictionary-primed, sync-flushed per block).
pub struct HeaderCompressor {
    deflate: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|source| SpdyError::Compress { source })?;
        Ok(Self { deflate })
    }

    pub fn compress(&mut self, block: &HeaderBlock) -> Result<Vec<u8>, SpdyError> {
        let input = block.to_bytes();
        let start = self.deflate.total_in();
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            let consumed = consumed_since(start, self.deflate.total_in());
            let rest = input.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.deflate
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(|source| SpdyError::Compress { source })?;
            let consumed = consumed_since(start, self.deflate.total_in());
            // A sync flush is complete once all input is taken and zlib left output space over.
            if consumed >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving direction's zlib context; supplies the dictionary when the stream asks for it.
pub struct HeaderDecompressor {
    inflate: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }

    pub fn decompress(&mut self, input: &[u8]) -> Result<HeaderBlock, SpdyError> {
        let start = self.inflate.total_in();
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(256));
        loop {
            let consumed = consumed_since(start, self.inflate.total_in());
            let rest = input.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlockTooLarge {
                        limit: MAX_HEADER_BLOCK,
                    });
                }
                out.reserve(out.len());
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let mut primed = false;
            if let Err(source) = self
                .inflate
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
            {
                if source.needs_dictionary().is_none() {
                    return Err(SpdyError::Decompress { source });
                }
                self.inflate
                    .set_dictionary(DICTIONARY)
                    .map_err(|source| SpdyError::Decompress { source })?;
                primed = true;
            }
            let consumed = consumed_since(start, self.inflate.total_in());
            if consumed >= input.len() && out.len() < out.capacity() {
                return HeaderBlock::from_bytes(&out);
            }
            let progressed = self.inflate.total_in() != in_before
                || self.inflate.total_out() != out_before
                || primed;
            if !progressed && out.len() < out.capacity() {
                return Err(SpdyError::DecompressStalled);
            }
        }
    }
}

fn consumed_since(start: u64, now: u64) -> usize {
    usize::try_from(now.saturating_sub(start)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\x00\x00\x00\x07options"));
        assert!(DICTIONARY.ends_with(b"enq=0."));
    }

    #[test]
    fn header_block_layout_round_trips() {
        let cases = [
            HeaderBlock::new(),
            HeaderBlock::new()
                .with("streamType", "data")
                .with("port", "8080"),
            HeaderBlock::new()
                .with("a", "1")
                .with("a", "2")
                .with("b", ""),
        ];
        for block in cases {
            let bytes = block.to_bytes();
            assert_eq!(HeaderBlock::from_bytes(&bytes).unwrap(), block);
        }
    }

    #[test]
    fn header_block_layout_is_big_endian_with_nul_joined_values() {
        let block = HeaderBlock::new().with("k", "x").with("k", "y");
        assert_eq!(
            block.to_bytes(),
            b"\x00\x00\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x03x\x00y".to_vec()
        );
    }

    #[test]
    fn header_names_are_lowercased_and_lookup_ignores_case() {
        let block = HeaderBlock::new().with("StreamType", "error");
        assert_eq!(block.get("streamtype"), Some("error"));
        assert_eq!(block.get("STREAMTYPE"), Some("error"));
        assert_eq!(block.iter().next().map(|(n, _)| n), Some("streamtype"));
    }

    #[test]
    fn malformed_header_blocks_are_errors() {
        let cases: [&[u8]; 4] = [
            b"",
            b"\x00\x00\x00\x01",
            b"\xff\xff\xff\xff\x00\x00\x00\x00",
            b"\x00\x00\x00\x01\x00\x00\x00\x09abc\x00\x00\x00\x00",
        ];
        for bytes in cases {
            assert!(HeaderBlock::from_bytes(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn compressed_blocks_share_one_context_per_direction() {
        let mut tx = HeaderCompressor::new().unwrap();
        let mut rx = HeaderDecompressor::new();
        let blocks = [
            HeaderBlock::new()
                .with("streamtype", "error")
                .with("requestid", "0"),
            HeaderBlock::new()
                .with("streamtype", "data")
                .with("port", "80")
                .with("requestid", "0"),
            HeaderBlock::new(),
        ];
        for block in &blocks {
            let wire = tx.compress(block).unwrap();
            assert_eq!(&rx.decompress(&wire).unwrap(), block);
        }
    }

    #[test]
    fn compressed_stream_announces_the_dictionary() {
        let mut tx = HeaderCompressor::new().unwrap();
        let wire = tx.compress(&HeaderBlock::new().with("a", "b")).unwrap();
        // zlib header: FDICT bit set, followed by the dictionary's Adler-32.
        assert_eq!(wire.get(1).map(|flg| flg & 0x20), Some(0x20));
        assert_eq!(wire.get(2..6), Some(&0xe3c6_a7c2u32.to_be_bytes()[..]));
    }

    #[test]
    fn garbage_compressed_block_is_an_error() {
        let mut rx = HeaderDecompressor::new();
        assert!(rx.decompress(b"\x00\x01\x02\x03\x04\x05").is_err());
    }
}
