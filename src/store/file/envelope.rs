//! The event envelope: how an event sits in a WAL record's value. Our binary format starts
//! with a format byte that is never `{`, so the legacy JSON envelopes of the reference
//! program (which always start with `{`) are told apart by the first byte.

use crate::error::{Error, Result};
use crate::store::as_text;
use crate::store::lifecycle::LifecycleOp;
use crate::wal::record::{get_varint, put_varint};

/// The first byte of evstore's binary envelope, version 1.
pub const FORMAT_BINARY_V1: u8 = 0x01;
/// Version 2: version 1 with the event's 16-byte id after the format byte. Written only
/// for events that have an id, so that logs without ids stay readable by older versions.
pub const FORMAT_BINARY_V2: u8 = 0x02;

/// A lifecycle entry (docs/lifecycle.md): `[0x03][flags][id?][timestamp varint][op]`,
/// where flags bit 0 says a 16-byte id follows. Older versions of evstore do not know the
/// byte and refuse the log (they open nothing; nothing is lost).
pub const FORMAT_LIFECYCLE: u8 = 0x03;
/// Bit 0 of a lifecycle entry's flags: it has an id.
const LIFECYCLE_HAS_ID: u8 = 0x01;

/// An event that names a data subject (`store::subjects`):
/// `[0x04][flags][id?][timestamp][stream][version][type][schema][subject]` in the clear
/// (as format 1, flags bit 0 saying a 16-byte id follows), then the nonce, then the
/// metadata's length, the metadata and the payload sealed with the subject's key, then
/// the tag. Older versions of evstore refuse the byte (they open nothing).
pub const FORMAT_SEALED: u8 = 0x04;
/// Bit 0 of a sealed event's flags: it has an id.
const SEALED_HAS_ID: u8 = 0x01;

/// Appends a lifecycle entry's envelope to `out`.
pub fn encode_lifecycle(
    out: &mut Vec<u8>,
    id: Option<&[u8; 16]>,
    timestamp_us: u64,
    op: &LifecycleOp,
) {
    out.push(FORMAT_LIFECYCLE);
    match id {
        Some(id) => {
            out.push(LIFECYCLE_HAS_ID);
            out.extend_from_slice(id);
        }
        None => out.push(0),
    }
    put_varint(out, timestamp_us);
    op.encode_into(out);
}

/// An event's fields as stored, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    pub timestamp_us: u64,
    pub stream: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
    pub id: Option<[u8; 16]>,
    /// The data subject: the envelope is `FORMAT_SEALED`. Decoded, `payload` then holds
    /// the sealed bytes (nonce, ciphertext, tag) and `metadata` is empty.
    pub subject: Option<&'a str>,
    /// Decoded sealed envelopes: where the nonce starts (the bytes before it are bound in
    /// as associated data). 0 otherwise.
    pub sealed_at: usize,
}

impl EnvelopeRef<'_> {
    pub fn encoded_len(&self) -> usize {
        1 + 16
            + 6 * 10
            + self.stream.len()
            + self.event_type.len()
            + self.metadata.len()
            + self.payload.len()
            + self.subject.map_or(0, |s| s.len() + 1 + 10 + 12 + 16)
    }

    /// Appends the binary envelope to `out`. An event with a subject is left for the
    /// caller to seal: returns where its nonce goes in `out` (`NONCE_LEN` zero bytes
    /// there, then the metadata's length, the metadata and the payload in the clear).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Option<usize> {
        out.reserve(self.encoded_len());
        match (&self.id, self.subject) {
            (Some(id), Some(_)) => {
                out.extend_from_slice(&[FORMAT_SEALED, SEALED_HAS_ID]);
                out.extend_from_slice(id);
            }
            (None, Some(_)) => out.extend_from_slice(&[FORMAT_SEALED, 0]),
            (Some(id), None) => {
                out.push(FORMAT_BINARY_V2);
                out.extend_from_slice(id);
            }
            (None, None) => out.push(FORMAT_BINARY_V1),
        }
        put_varint(out, self.timestamp_us);
        put_varint(out, self.stream.len() as u64);
        out.extend_from_slice(self.stream.as_bytes());
        put_varint(out, self.stream_version);
        put_varint(out, self.event_type.len() as u64);
        out.extend_from_slice(self.event_type.as_bytes());
        put_varint(out, self.schema_version as u64);
        let sealed_at = self.subject.map(|s| {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
            let at = out.len();
            out.extend_from_slice(&[0u8; crate::store::subjects::NONCE_LEN]);
            at
        });
        put_varint(out, self.metadata.len() as u64);
        out.extend_from_slice(self.metadata);
        out.extend_from_slice(self.payload);
        sealed_at
    }
}

/// Splits an opened sealed event (metadata's length, metadata, payload) into metadata
/// and payload.
pub fn split_opened(plain: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut at = 0;
    let n = varint(plain, &mut at, "metadata length")?;
    let metadata = take(plain, &mut at, n, "metadata")?;
    Ok((metadata, &plain[at..]))
}

/// An event of the reference program, which owns its (decoded) bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LegacyEnvelope {
    pub event_id: u64,
    pub event_type: String,
    /// Whole seconds since the Unix epoch.
    pub timestamp: u64,
    pub payload: Vec<u8>,
}

/// A decoded WAL value.
#[derive(Debug)]
pub enum Envelope<'a> {
    Binary(EnvelopeRef<'a>),
    Legacy(LegacyEnvelope),
    /// A lifecycle entry: its position holds no event.
    Lifecycle {
        id: Option<[u8; 16]>,
        timestamp_us: u64,
        op: LifecycleOp,
    },
}

fn take<'a>(buf: &'a [u8], at: &mut usize, len: u64, what: &str) -> Result<&'a [u8]> {
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| at.checked_add(l))
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| Error::corrupt(format!("envelope: the {what} runs past the record")))?;
    let s = &buf[*at..end];
    *at = end;
    Ok(s)
}

fn varint(buf: &[u8], at: &mut usize, what: &str) -> Result<u64> {
    let (v, n) = get_varint(buf, *at)
        .map_err(|_| Error::corrupt(format!("envelope: bad varint for the {what}")))?;
    *at = n;
    Ok(v)
}

fn utf8<'a>(b: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| Error::corrupt(format!("envelope: the {what} is not UTF-8")))
}

/// Decodes a WAL value in either format.
pub fn decode(value: &[u8]) -> Result<Envelope<'_>> {
    match value.first() {
        Some(&FORMAT_BINARY_V1) => decode_binary(value, 1, None).map(Envelope::Binary),
        Some(&FORMAT_BINARY_V2) => {
            let id = value
                .get(1..17)
                .ok_or_else(|| Error::corrupt("envelope: the event id runs past the record"))?;
            decode_binary(value, 17, Some(id.try_into().unwrap())).map(Envelope::Binary)
        }
        Some(&FORMAT_LIFECYCLE) => decode_lifecycle(value),
        Some(&FORMAT_SEALED) => decode_sealed(value).map(Envelope::Binary),
        Some(b'{') => serde_json::from_slice::<LegacyEnvelope>(value)
            .map(Envelope::Legacy)
            .map_err(|e| Error::corrupt(format!("legacy JSON envelope: {e}"))),
        Some(b) => Err(Error::corrupt(format!(
            "unknown envelope format byte 0x{b:02x}"
        ))),
        None => Err(Error::corrupt("empty envelope")),
    }
}

fn decode_lifecycle(value: &[u8]) -> Result<Envelope<'_>> {
    let flags = *value
        .get(1)
        .ok_or_else(|| Error::corrupt("lifecycle entry: no flags byte"))?;
    if flags & !LIFECYCLE_HAS_ID != 0 {
        return Err(Error::corrupt(format!(
            "lifecycle entry: unknown flags 0x{flags:02x}"
        )));
    }
    let mut at = 2;
    let id = if flags & LIFECYCLE_HAS_ID != 0 {
        let id: [u8; 16] = take(value, &mut at, 16, "entry id")?.try_into().unwrap();
        Some(id)
    } else {
        None
    };
    let timestamp_us = varint(value, &mut at, "timestamp")?;
    let op = LifecycleOp::decode(&value[at..])?;
    Ok(Envelope::Lifecycle {
        id,
        timestamp_us,
        op,
    })
}

/// A sealed event's id, if it has one, and where its clear fields start.
fn sealed_start(value: &[u8]) -> Result<(Option<[u8; 16]>, usize)> {
    match value.get(1) {
        Some(&0) => Ok((None, 2)),
        Some(&SEALED_HAS_ID) => {
            let id = value
                .get(2..18)
                .ok_or_else(|| Error::corrupt("envelope: the event id runs past the record"))?;
            Ok((Some(id.try_into().unwrap()), 18))
        }
        Some(f) => Err(Error::corrupt(format!(
            "sealed event: unknown flags 0x{f:02x}"
        ))),
        None => Err(Error::corrupt("sealed event: no flags byte")),
    }
}

fn decode_sealed(value: &[u8]) -> Result<EnvelopeRef<'_>> {
    match decode_sealed_fast(value) {
        Some(e) => Ok(e),
        None => Err(decode_sealed_checked(value)
            .err()
            .unwrap_or_else(|| Error::corrupt("sealed event: it does not decode"))),
    }
}

/// `decode_sealed` in one pass that only says whether the envelope decodes (every check
/// of `decode_sealed_checked`, none of its messages): the readers' path.
#[inline]
fn decode_sealed_fast(value: &[u8]) -> Option<EnvelopeRef<'_>> {
    let (id, start) = match value.get(1)? {
        0 => (None, 2),
        &SEALED_HAS_ID => (Some(value.get(2..18)?.try_into().ok()?), 18),
        _ => return None,
    };
    let (mut e, at) = decode_head_fast(value, start, id)?;
    let (n, at) = get_varint(value, at).ok()?;
    let (subject, at) = take_fast(value, at, n)?;
    let sealed = value.get(at..)?;
    let short = sealed.len() < crate::store::subjects::NONCE_LEN + crate::store::subjects::TAG_LEN;
    if subject.is_empty() || short {
        return None;
    }
    e.subject = Some(as_text(subject)?);
    e.payload = sealed;
    e.sealed_at = at;
    Some(e)
}

/// `decode_sealed` field by field, saying which one is wrong: for damage.
#[cold]
fn decode_sealed_checked(value: &[u8]) -> Result<EnvelopeRef<'_>> {
    let (id, start) = sealed_start(value)?;
    let (mut e, mut at) = decode_head(value, start, id)?;
    let n = varint(value, &mut at, "subject length")?;
    let subject = utf8(take(value, &mut at, n, "subject")?, "subject")?;
    if subject.is_empty() {
        return Err(Error::corrupt("sealed event: an empty subject"));
    }
    let sealed = &value[at..];
    if sealed.len() < crate::store::subjects::NONCE_LEN + crate::store::subjects::TAG_LEN {
        return Err(Error::corrupt(
            "sealed event: shorter than its nonce and tag",
        ));
    }
    e.subject = Some(subject);
    e.payload = sealed;
    e.sealed_at = at;
    Ok(e)
}

/// The event id an envelope carries (formats 2 and sealed), without decoding the rest.
pub fn peek_id(value: &[u8]) -> Option<[u8; 16]> {
    match value.first() {
        Some(&FORMAT_BINARY_V2) => value.get(1..17)?.try_into().ok(),
        Some(&FORMAT_SEALED) => sealed_start(value).ok()?.0,
        _ => None,
    }
}

/// What a reader needs to judge an event of the binary formats without decoding all of
/// it: its timestamp, stream (bytes, not checked as UTF-8: the full decode does that)
/// and version. `None` for anything else (a legacy or lifecycle value).
pub fn peek_stream(value: &[u8]) -> Result<Option<(u64, &[u8], u64)>> {
    let mut at = match value.first() {
        Some(&FORMAT_BINARY_V1) => 1,
        Some(&FORMAT_BINARY_V2) => 17,
        Some(&FORMAT_SEALED) => sealed_start(value)?.1,
        _ => return Ok(None),
    };
    let timestamp_us = varint(value, &mut at, "timestamp")?;
    let n = varint(value, &mut at, "stream length")?;
    let stream = take(value, &mut at, n, "stream")?;
    let stream_version = varint(value, &mut at, "stream version")?;
    Ok(Some((timestamp_us, stream, stream_version)))
}

/// The binary envelope's fields from `start` on (after the format byte and the id).
#[inline]
pub(crate) fn decode_binary(
    buf: &[u8],
    start: usize,
    id: Option<[u8; 16]>,
) -> Result<EnvelopeRef<'_>> {
    match decode_binary_fast(buf, start, id) {
        Some(e) => Ok(e),
        None => Err(decode_binary_checked(buf, start, id)
            .err()
            .unwrap_or_else(|| Error::corrupt("envelope: it does not decode"))),
    }
}

/// `decode_binary` in one pass that only says whether the envelope decodes (every check
/// of `decode_binary_checked`, none of its messages): the readers' hot path, where a
/// `Result` with a message per field cost a call and a copy each.
#[inline(always)]
pub(crate) fn decode_binary_fast(
    buf: &[u8],
    start: usize,
    id: Option<[u8; 16]>,
) -> Option<EnvelopeRef<'_>> {
    let (mut e, at) = decode_head_fast(buf, start, id)?;
    let (n, at) = get_varint(buf, at).ok()?;
    let (metadata, at) = take_fast(buf, at, n)?;
    e.metadata = metadata;
    e.payload = buf.get(at..)?;
    Some(e)
}

/// `decode_head` in one pass without messages (as `decode_binary_fast`).
#[inline(always)]
fn decode_head_fast(
    buf: &[u8],
    start: usize,
    id: Option<[u8; 16]>,
) -> Option<(EnvelopeRef<'_>, usize)> {
    let (timestamp_us, at) = get_varint(buf, start).ok()?;
    let (n, at) = get_varint(buf, at).ok()?;
    let (stream, at) = take_fast(buf, at, n)?;
    let (stream_version, at) = get_varint(buf, at).ok()?;
    let (n, at) = get_varint(buf, at).ok()?;
    let (event_type, at) = take_fast(buf, at, n)?;
    let (schema_version, at) = get_varint(buf, at).ok()?;
    let e = EnvelopeRef {
        timestamp_us,
        stream: as_text(stream)?,
        stream_version,
        event_type: as_text(event_type)?,
        schema_version: u32::try_from(schema_version).ok()?,
        metadata: &[],
        payload: &[],
        id,
        subject: None,
        sealed_at: 0,
    };
    Some((e, at))
}

/// `len` bytes of `buf` from `at`, and the offset after them.
#[inline(always)]
fn take_fast(buf: &[u8], at: usize, len: u64) -> Option<(&[u8], usize)> {
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(at..end)?, end))
}

/// `decode_binary` field by field, saying which one is wrong: for damage.
#[cold]
fn decode_binary_checked(
    buf: &[u8],
    start: usize,
    id: Option<[u8; 16]>,
) -> Result<EnvelopeRef<'_>> {
    let (mut e, mut at) = decode_head(buf, start, id)?;
    let n = varint(buf, &mut at, "metadata length")?;
    e.metadata = take(buf, &mut at, n, "metadata")?;
    e.payload = &buf[at..];
    Ok(e)
}

/// The fields every binary envelope starts with, up to its schema version; and where
/// the rest starts.
fn decode_head(buf: &[u8], start: usize, id: Option<[u8; 16]>) -> Result<(EnvelopeRef<'_>, usize)> {
    let mut at = start;
    let timestamp_us = varint(buf, &mut at, "timestamp")?;
    let n = varint(buf, &mut at, "stream length")?;
    let stream = utf8(take(buf, &mut at, n, "stream")?, "stream")?;
    let stream_version = varint(buf, &mut at, "stream version")?;
    let n = varint(buf, &mut at, "type length")?;
    let event_type = utf8(take(buf, &mut at, n, "event type")?, "event type")?;
    let schema_version = u32::try_from(varint(buf, &mut at, "schema version")?)
        .map_err(|_| Error::corrupt("envelope: schema version past u32"))?;
    let e = EnvelopeRef {
        timestamp_us,
        stream,
        stream_version,
        event_type,
        schema_version,
        metadata: &[],
        payload: &[],
        id,
        subject: None,
        sealed_at: 0,
    };
    Ok((e, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_json_of_the_format_document_decodes() {
        let v = br#"{"event_id":7,"event_type":"AccountOpened","timestamp":1700000000,"payload":[123,125]}"#;
        match decode(v).unwrap() {
            Envelope::Legacy(l) => {
                assert_eq!(l.event_id, 7);
                assert_eq!(l.event_type, "AccountOpened");
                assert_eq!(l.timestamp, 1_700_000_000);
                assert_eq!(l.payload, b"{}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_and_truncated_envelopes_are_corrupt_not_panics() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0x7f]).is_err());
        assert!(decode(&[FORMAT_BINARY_V1, 0x80]).is_err());
        assert!(decode(b"{not json").is_err());
    }

    #[test]
    fn lifecycle_entries_round_trip_and_a_cut_one_is_refused() {
        let op = LifecycleOp::Truncate {
            stream: "s-1".into(),
            before_version: 3,
            version: 8,
        };
        for id in [None, Some([7u8; 16])] {
            let mut buf = Vec::new();
            encode_lifecycle(&mut buf, id.as_ref(), 1_700_000_000_000_123, &op);
            match decode(&buf).unwrap() {
                Envelope::Lifecycle {
                    id: got,
                    timestamp_us,
                    op: o,
                } => {
                    assert_eq!((got, timestamp_us, &o), (id, 1_700_000_000_000_123, &op));
                }
                other => panic!("{other:?}"),
            }
            for cut in 1..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
            }
        }
        // Flags this version does not know are refused, not ignored.
        assert!(decode(&[FORMAT_LIFECYCLE, 0x02, 0, 1, 0, 0, 0]).is_err());
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_naming_the_field() {
        for (stream, ty, field) in [
            (&b"acc\xff-1"[..], &b"Opened"[..], "stream"),
            (b"acc-1", b"Op\xc3", "event type"),
            (b"acc-\xe2\x82", b"Opened", "stream"),
        ] {
            let mut buf = vec![FORMAT_BINARY_V1];
            put_varint(&mut buf, 1_700_000_000_000_000);
            put_varint(&mut buf, stream.len() as u64);
            buf.extend_from_slice(stream);
            put_varint(&mut buf, 3);
            put_varint(&mut buf, ty.len() as u64);
            buf.extend_from_slice(ty);
            buf.extend_from_slice(&[0, 0]);
            buf.extend_from_slice(b"payload");
            let e = decode(&buf).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Corrupt);
            assert!(
                e.message.contains(&format!("the {field} is not UTF-8")),
                "{}",
                e.message
            );
        }
    }

    proptest! {
        #[test]
        fn binary_round_trip(ts in any::<u64>(), stream in ".{0,20}", ver in any::<u64>(),
                             ty in ".{1,20}", schema in any::<u32>(),
                             meta in proptest::collection::vec(any::<u8>(), 0..50),
                             payload in proptest::collection::vec(any::<u8>(), 0..200),
                             id in proptest::option::of(any::<u128>())) {
            let e = EnvelopeRef { timestamp_us: ts, stream: &stream, stream_version: ver,
                                  event_type: &ty, schema_version: schema, metadata: &meta,
                                  payload: &payload, id: id.map(u128::to_le_bytes),
                                  subject: None, sealed_at: 0 };
            let mut buf = Vec::new();
            e.encode_into(&mut buf);
            prop_assert_ne!(buf[0], b'{');
            match decode(&buf).unwrap() {
                Envelope::Binary(d) => prop_assert_eq!(d, e),
                other => prop_assert!(false, "{other:?}"),
            }
            prop_assert_eq!(peek_stream(&buf).unwrap(), Some((ts, stream.as_bytes(), ver)));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes);
        }

        /// The readers' one-pass decoders accept exactly what the field-by-field ones
        /// accept, with the same fields: sealed events (whole, cut, with a byte changed)
        /// and bytes after the sealed format byte.
        #[test]
        fn the_fast_sealed_decode_agrees_with_the_checked_one(
            stream in ".{0,12}", ty in ".{1,12}", subject in ".{0,12}",
            sealed in proptest::collection::vec(any::<u8>(), 0..60),
            id in proptest::option::of(any::<u128>()),
            cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(),
            bit in 0u8..8, noise in proptest::collection::vec(any::<u8>(), 0..60)) {
            let e = EnvelopeRef { timestamp_us: 7, stream: &stream, stream_version: 3,
                                  event_type: &ty, schema_version: 1, metadata: &[],
                                  payload: &[], id: id.map(u128::to_le_bytes),
                                  subject: Some(&subject), sealed_at: 0 };
            let mut whole = Vec::new();
            let at = e.encode_into(&mut whole).expect("a subject: sealed");
            whole.truncate(at);
            whole.extend_from_slice(&sealed);
            let mut flipped = whole.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            let mut other = vec![FORMAT_SEALED];
            other.extend_from_slice(&noise);
            for buf in [&whole[..], &whole[..cut.index(whole.len() + 1)], &flipped[..], &other[..]] {
                let fast = decode_sealed_fast(buf);
                match decode_sealed_checked(buf) {
                    Ok(d) => prop_assert_eq!(fast, Some(d)),
                    Err(_) => prop_assert!(fast.is_none()),
                }
            }
        }
    }
}
