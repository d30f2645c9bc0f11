//! One WAL record in nori-wal's encoding: klen and vlen as LEB128 varints, a flags byte,
//! an optional ttl varint, key, value, and a little-endian CRC-32C over all of it.

/// Flag bit 0: the record is a tombstone (a delete).
pub const FLAG_TOMBSTONE: u8 = 0b0000_0001;
/// Flag bit 1: a ttl varint follows the flags byte.
pub const FLAG_TTL: u8 = 0b0000_0010;
/// Bits 2-3: the compression of the value.
pub const COMPRESSION_MASK: u8 = 0b0000_1100;
/// Bits 4-7: reserved; nori-wal ignores them, evstore may use them.
pub const RESERVED_MASK: u8 = 0b1111_0000;
/// Bit 4, evstore's use of a reserved bit: the next record belongs to the same atomic
/// batch. The last record of a batch has it clear, so a batch cut short by a crash is seen.
pub const FLAG_BATCH_CONTINUES: u8 = 0b0001_0000;

/// A u64 never needs more than ten LEB128 bytes.
pub const MAX_VARINT_LEN: usize = 10;
/// Bytes a record needs around its key and value at most (two lengths, flags, ttl, crc).
pub const MAX_OVERHEAD: usize = 3 * MAX_VARINT_LEN + 1 + 4;

/// How a record's value is compressed (bits 2-3 of the flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1 << 2,
            Compression::Zstd => 2 << 2,
        }
    }
}

/// A record to write. The value is stored as given (compression is only declared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub tombstone: bool,
    pub ttl_ms: Option<u64>,
    pub compression: Compression,
    /// Bits 4-7 of the flags byte (only the high nibble is kept).
    pub reserved: u8,
}

impl<'a> RecordRef<'a> {
    /// A plain put of `value` under `key`.
    pub fn put(key: &'a [u8], value: &'a [u8]) -> Self {
        RecordRef {
            key,
            value,
            tombstone: false,
            ttl_ms: None,
            compression: Compression::None,
            reserved: 0,
        }
    }

    /// The flags byte this record is written with.
    pub fn flags(&self) -> u8 {
        let mut f = self.compression.bits() | (self.reserved & RESERVED_MASK);
        if self.tombstone {
            f |= FLAG_TOMBSTONE;
        }
        if self.ttl_ms.is_some() {
            f |= FLAG_TTL;
        }
        f
    }

    /// The number of bytes `encode_into` appends.
    pub fn encoded_len(&self) -> usize {
        varint_len(self.key.len() as u64)
            + varint_len(self.value.len() as u64)
            + 1
            + self.ttl_ms.map_or(0, varint_len)
            + self.key.len()
            + self.value.len()
            + 4
    }

    /// Appends the record's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.encoded_len());
        put_varint(out, self.key.len() as u64);
        put_varint(out, self.value.len() as u64);
        out.push(self.flags());
        if let Some(ttl) = self.ttl_ms {
            put_varint(out, ttl);
        }
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
        let crc = super::crc::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// The record as a fresh byte vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }
}

/// A record that owns its bytes (what the public reader hands out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub tombstone: bool,
    pub ttl_ms: Option<u64>,
    pub compression: Compression,
    pub reserved: u8,
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            key: &self.key,
            value: &self.value,
            tombstone: self.tombstone,
            ttl_ms: self.ttl_ms,
            compression: self.compression,
            reserved: self.reserved,
        }
    }
}

impl RecordRef<'_> {
    pub fn to_owned(&self) -> Record {
        Record {
            key: self.key.to_vec(),
            value: self.value.to_vec(),
            tombstone: self.tombstone,
            ttl_ms: self.ttl_ms,
            compression: self.compression,
            reserved: self.reserved,
        }
    }

    /// Whether the next record belongs to the same batch as this one.
    pub fn batch_continues(&self) -> bool {
        self.reserved & FLAG_BATCH_CONTINUES != 0
    }
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the record does (a torn write, or data still to come).
    Incomplete,
    /// A varint longer than ten bytes or past u64.
    BadVarint,
    /// Compression bits set to 3, which no writer uses.
    BadCompression,
    /// The stored CRC does not match the bytes.
    BadChecksum,
}

impl DecodeError {
    pub fn describe(self) -> &'static str {
        match self {
            DecodeError::Incomplete => "the record is cut short",
            DecodeError::BadVarint => "a length varint is longer than 10 bytes",
            DecodeError::BadCompression => "the compression bits are 3 (invalid)",
            DecodeError::BadChecksum => "the CRC-32C does not match",
        }
    }
}

/// A record decoded from a buffer, borrowing its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub record: RecordRef<'a>,
    /// Total bytes the record occupies, CRC included.
    pub len: usize,
}

/// The parsed front of a record: everything before the key.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Bytes of klen, vlen, flags and ttl.
    len: usize,
    klen: u64,
    vlen: u64,
    flags: u8,
    compression: Compression,
    ttl_ms: Option<u64>,
}

impl Header {
    /// The whole record's length, when it fits in a usize.
    fn record_len(&self) -> Option<usize> {
        let body = self.klen.checked_add(self.vlen)?.checked_add(4)?;
        usize::try_from(body).ok()?.checked_add(self.len)
    }
}

#[inline(always)]
fn parse_header(buf: &[u8]) -> Result<Header, DecodeError> {
    let (klen, at) = get_varint(buf, 0)?;
    let (vlen, mut at) = get_varint(buf, at)?;
    let flags = *buf.get(at).ok_or(DecodeError::Incomplete)?;
    at += 1;
    let compression = match (flags & COMPRESSION_MASK) >> 2 {
        0 => Compression::None,
        1 => Compression::Lz4,
        2 => Compression::Zstd,
        _ => return Err(DecodeError::BadCompression),
    };
    let ttl_ms = if flags & FLAG_TTL != 0 {
        let (ttl, n) = get_varint(buf, at)?;
        at = n;
        Some(ttl)
    } else {
        None
    };
    Ok(Header {
        len: at,
        klen,
        vlen,
        flags,
        compression,
        ttl_ms,
    })
}

/// The total length of the record that starts `buf`, as far as its header tells, even when
/// the rest is not in `buf` yet. `None` when the header itself is incomplete or invalid.
pub fn peek_len(buf: &[u8]) -> Option<usize> {
    parse_header(buf).ok()?.record_len()
}

/// Where the parts of a record that passed its checks lie, from its first byte: what a
/// reader keeps to hand the record out (again) without parsing or checking it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    key_start: usize,
    key_end: usize,
    value_end: usize,
    flags: u8,
    compression: Compression,
    ttl_ms: Option<u64>,
}

impl Checked {
    /// The whole record's length, CRC included.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.value_end + 4
    }

    /// The record in `rec` (the bytes it was checked in, from its first byte); `None` if
    /// `rec` is shorter than the record.
    #[inline]
    pub(crate) fn split<'a>(&self, rec: &'a [u8]) -> Option<Decoded<'a>> {
        let value = rec.get(self.key_end..self.value_end)?;
        Some(Decoded {
            record: RecordRef {
                key: &rec[self.key_start..self.key_end],
                value,
                tombstone: self.flags & FLAG_TOMBSTONE != 0,
                ttl_ms: self.ttl_ms,
                compression: self.compression,
                reserved: self.flags & RESERVED_MASK,
            },
            len: self.len(),
        })
    }
}

/// Locates the parts of the record `h` starts in `buf`, checking its CRC when `verify`.
/// (Always inlined: the scanner's per-record step calls it, and a call measured ~30
/// instructions an event of `evs_cursor_next`.)
#[inline(always)]
fn locate(buf: &[u8], h: &Header, verify: bool) -> Result<Checked, DecodeError> {
    let total = h.record_len().ok_or(DecodeError::Incomplete)?;
    if total > buf.len() {
        return Err(DecodeError::Incomplete);
    }
    // total = h.len + klen + vlen + 4 fits in buf: none of these sums overflows.
    let key_end = h.len + h.klen as usize;
    let value_end = key_end + h.vlen as usize;
    if verify {
        let stored = u32::from_le_bytes(buf[value_end..total].try_into().unwrap());
        if super::crc::crc32c(&buf[..value_end]) != stored {
            return Err(DecodeError::BadChecksum);
        }
    }
    Ok(Checked {
        key_start: h.len,
        key_end,
        value_end,
        flags: h.flags,
        compression: h.compression,
        ttl_ms: h.ttl_ms,
    })
}

#[inline]
fn split<'a>(buf: &'a [u8], h: &Header, verify: bool) -> Result<Decoded<'a>, DecodeError> {
    let c = locate(buf, h, verify)?;
    c.split(buf).ok_or(DecodeError::Incomplete)
}

/// The key of the record that starts `buf`, without checking its CRC (a reader that
/// must know which record it is looking at before it decodes it); `None` when the
/// header or key is not whole in `buf`.
pub fn peek_key(buf: &[u8]) -> Option<&[u8]> {
    let h = parse_header(buf).ok()?;
    buf.get(h.len..h.len.checked_add(usize::try_from(h.klen).ok()?)?)
}

/// Decodes the record at the start of `buf`, checking its CRC.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    split(buf, &parse_header(buf)?, true)
}

/// Checks the record at the start of `buf` as `decode` does, and returns where its parts
/// are, for `Checked::split` to hand out without parsing or checking it again.
#[inline]
pub(crate) fn check(buf: &[u8]) -> Result<Checked, DecodeError> {
    locate(buf, &parse_header(buf)?, true)
}

/// Decodes a record that `decode` already accepted, without checking the CRC again.
pub fn decode_verified(buf: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    split(buf, &parse_header(buf)?, false)
}

/// The bytes the LEB128 encoding of `v` takes.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `at`; returns the value and the offset just past it.
#[inline(always)]
pub fn get_varint(buf: &[u8], at: usize) -> Result<(u64, usize), DecodeError> {
    // Most varints of a record (lengths, flags' neighbours, versions) are one byte.
    match buf.get(at) {
        Some(&b) if b < 0x80 => return Ok((b as u64, at + 1)),
        None => return Err(DecodeError::Incomplete),
        _ => {}
    }
    // Then two-byte ones (a record's value length, 128 to 16383 bytes).
    if let Some(&[b0, b1]) = buf.get(at..at.wrapping_add(2)) {
        if b1 < 0x80 {
            return Ok((u64::from(b0 & 0x7f) | u64::from(b1) << 7, at + 2));
        }
    }
    // A varint of up to 8 bytes (values below 2^56: lengths, versions, timestamps)
    // decodes from one little-endian word: its length is where the first byte without
    // the continuation bit is, and its 7-bit groups are packed together in three steps.
    // Inline: every event's timestamp is one (8 bytes), and a call cost as much again.
    if let Some(word) = buf
        .get(at..)
        .and_then(|b| b.first_chunk::<8>())
        .map(|b| u64::from_le_bytes(*b))
    {
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            let len = (stops.trailing_zeros() / 8 + 1) as usize;
            let mut x = if len == 8 {
                word
            } else {
                word & ((1u64 << (8 * len)) - 1)
            };
            x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
            x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
            x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
            return Ok((x, at + len));
        }
    }
    get_varint_long(buf, at)
}

/// A varint of 9 or 10 bytes, or one within 8 bytes of the end of `buf`: a byte at a time.
#[inline(never)]
fn get_varint_long(buf: &[u8], at: usize) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let byte = *buf.get(at + i).ok_or(DecodeError::Incomplete)?;
        let bits = (byte & 0x7f) as u64;
        if i == MAX_VARINT_LEN - 1 && bits > 1 {
            return Err(DecodeError::BadVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, at + i + 1));
        }
    }
    Err(DecodeError::BadVarint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_check_value_of_the_format_document() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn put_example_of_the_format_document_encodes_byte_for_byte() {
        let bytes = RecordRef::put(&[0x01], b"hi").encode();
        assert_eq!(
            bytes,
            [0x01, 0x02, 0x00, 0x01, 0x68, 0x69, 0xa5, 0xf4, 0x85, 0x69]
        );
        let d = decode(&bytes).unwrap();
        assert_eq!(d.len, 10);
        assert_eq!(d.record.key, &[0x01]);
        assert_eq!(d.record.value, b"hi");
    }

    #[test]
    fn varint_edge_cases() {
        for (v, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), len, "{v}");
            assert_eq!(varint_len(v), len, "{v}");
            assert_eq!(get_varint(&b, 0), Ok((v, len)));
        }
        let mut b = Vec::new();
        put_varint(&mut b, 128);
        assert_eq!(b, [0x80, 0x01]);
    }

    #[test]
    fn an_eleven_byte_varint_is_an_error() {
        let b = [0xffu8; 10]
            .iter()
            .copied()
            .chain([0x01])
            .collect::<Vec<_>>();
        assert_eq!(get_varint(&b, 0), Err(DecodeError::BadVarint));
        // ten bytes whose last one carries bits past u64
        let mut b = vec![0xffu8; 9];
        b.push(0x02);
        assert_eq!(get_varint(&b, 0), Err(DecodeError::BadVarint));
    }

    #[test]
    fn compression_bits_three_is_an_error_and_one_two_decode() {
        let mut r = RecordRef::put(b"k", b"v");
        r.compression = Compression::Zstd;
        let mut bytes = r.encode();
        assert_eq!(
            decode(&bytes).unwrap().record.compression,
            Compression::Zstd
        );
        bytes[2] |= COMPRESSION_MASK;
        assert_eq!(decode(&bytes), Err(DecodeError::BadCompression));
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_bit_flip_is_caught() {
        let mut r = RecordRef::put(b"key", b"some value");
        r.ttl_ms = Some(300);
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(DecodeError::Incomplete),
                "cut {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&b).map(|d| d.record != r).unwrap_or(true),
                "bit {bit}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(key in proptest::collection::vec(any::<u8>(), 0..64),
                      value in proptest::collection::vec(any::<u8>(), 0..2048),
                      tombstone in any::<bool>(),
                      ttl in proptest::option::of(any::<u64>()),
                      reserved in 0u8..16) {
            let r = RecordRef { key: &key, value: &value, tombstone, ttl_ms: ttl,
                                compression: Compression::None, reserved: reserved << 4 };
            let mut bytes = r.encode();
            prop_assert_eq!(bytes.len(), r.encoded_len());
            bytes.extend_from_slice(b"trailing");
            let d = decode(&bytes).unwrap();
            prop_assert_eq!(d.record, r);
            prop_assert_eq!(d.len, r.encoded_len());
        }

        #[test]
        fn varints_decode_at_any_offset_with_or_without_bytes_after(
            v in prop_oneof![any::<u64>(), 0u64..(1 << 21), (1u64 << 49)..(1 << 56)],
            before in proptest::collection::vec(any::<u8>(), 0..9),
            after in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut b = before.clone();
            put_varint(&mut b, v);
            let end = b.len();
            prop_assert_eq!(get_varint(&b, before.len()), Ok((v, end)));
            b.extend_from_slice(&after);
            prop_assert_eq!(get_varint(&b, before.len()), Ok((v, end)));
            // Cut short anywhere inside: incomplete, never a wrong value.
            for cut in before.len()..end {
                prop_assert_eq!(get_varint(&b[..cut], before.len()), Err(DecodeError::Incomplete));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(d) = decode(&bytes) {
                prop_assert!(d.len <= bytes.len());
            }
        }
    }
}
