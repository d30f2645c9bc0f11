//! The portable export format (docs/export-format.md): JSON lines, one per item of the
//! log, between a header line and an end line whose count and CRC-32C let a reader tell a
//! whole file from one cut short or changed. Payloads and metadata are base64 (standard
//! alphabet, padded), ids 32 hex digits. This module writes and reads the lines; what goes
//! into them and where they go is `import`'s.

use super::ids::hex;
use super::import::{Item, LogEntry};
use super::lifecycle::{LifecycleOp, Rule};
use super::Event;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};

/// The `format` of the header line.
pub const FORMAT: &str = "evstore-export";
/// The format version this library writes. Version 2 added events' subjects, erased
/// events and forget entries; a version-1 reader must not take such a file (it would
/// import personal data unsealed), so the version moved.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this library reads (a version-1 file has no subjects).
const OLDEST_READ: u32 = 1;
/// The longest line a reader takes (an event of 16 MiB in base64, with room to spare).
const MAX_LINE: u64 = 64 << 20;

/// One line of an export.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    /// The first line: what the export covers, the positions `first .. next`.
    Header {
        format: String,
        version: u32,
        engine: String,
        first: u64,
        /// `next - 1`, or none when the export covers no position.
        last: Option<u64>,
        next: u64,
        exported_at_us: u64,
    },
    Event {
        pos: u64,
        ts: u64,
        stream: String,
        version: u64,
        #[serde(rename = "type")]
        event_type: String,
        schema: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The data subject whose key seals the event in a store (not in an export).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// The subject was forgotten: metadata and payload are empty.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        erased: bool,
        metadata: String,
        payload: String,
    },
    Delete {
        pos: u64,
        ts: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        stream: String,
        hard: bool,
        version: u64,
    },
    Truncate {
        pos: u64,
        ts: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        stream: String,
        before: u64,
        version: u64,
    },
    Retention {
        pos: u64,
        ts: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        target: String,
        category: bool,
        max_count: u64,
        max_age_us: u64,
    },
    Forget {
        pos: u64,
        ts: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        subject: String,
    },
    /// The last line: the items between header and end, and the CRC-32C of every byte
    /// before this line (the header's included).
    End { items: u64, crc32c: String },
}

/// What an export's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The engine the export was made from: "file" or "postgresql".
    pub engine: String,
    /// The positions covered: `first .. next` (items are at some of them, the others
    /// were empty in the source).
    pub first: u64,
    pub next: u64,
    pub exported_at_us: u64,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `base64_encode`'s text; anything else (other characters, a bad length or
/// padding, bits left over) is refused.
pub fn base64_decode(text: &str) -> std::result::Result<Vec<u8>, String> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(4) {
        return Err(format!("{} characters, not a multiple of 4", t.len()));
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (gi, group) in t.chunks(4).enumerate() {
        let last = gi == t.len() / 4 - 1;
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(format!("misplaced padding in group {gi}"));
        }
        let mut n = 0u32;
        for (i, &c) in group[..4 - pad].iter().enumerate() {
            let v = value(c).ok_or_else(|| format!("the character {:?}", c as char))?;
            n |= v << (18 - 6 * i);
        }
        let keep = 3 - pad;
        if n & ((1 << (8 * (3 - keep))) - 1) != 0 {
            return Err(format!("bits left over in group {gi}"));
        }
        for i in 0..keep {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

fn id_hex(id: &Option<[u8; 16]>) -> Option<String> {
    id.as_ref().map(hex)
}

fn id_of(text: &Option<String>) -> std::result::Result<Option<[u8; 16]>, String> {
    let Some(t) = text else { return Ok(None) };
    if t.len() != 32 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("the id {t:?} is not 32 hex digits"));
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    if id == [0u8; 16] {
        return Err("an id of all zeros (which is no id)".to_owned());
    }
    Ok(Some(id))
}

impl Line {
    fn of(item: &Item) -> Line {
        match item {
            Item::Event(e) => Line::Event {
                pos: e.position,
                ts: e.timestamp_us,
                stream: e.stream.clone(),
                version: e.stream_version,
                event_type: e.event_type.clone(),
                schema: e.schema_version,
                id: id_hex(&e.id),
                subject: e.subject.clone(),
                erased: e.erased,
                metadata: base64_encode(&e.metadata),
                payload: base64_encode(&e.payload),
            },
            Item::Entry(LogEntry {
                position: pos,
                timestamp_us: ts,
                id,
                op,
            }) => {
                let (pos, ts, id) = (*pos, *ts, id_hex(id));
                match op.clone() {
                    LifecycleOp::Delete {
                        stream,
                        hard,
                        version,
                    } => Line::Delete {
                        pos,
                        ts,
                        id,
                        stream,
                        hard,
                        version,
                    },
                    LifecycleOp::Truncate {
                        stream,
                        before_version,
                        version,
                    } => Line::Truncate {
                        pos,
                        ts,
                        id,
                        stream,
                        before: before_version,
                        version,
                    },
                    LifecycleOp::Retention {
                        target,
                        category,
                        rule,
                    } => Line::Retention {
                        pos,
                        ts,
                        id,
                        target,
                        category,
                        max_count: rule.max_count,
                        max_age_us: rule.max_age_us,
                    },
                    LifecycleOp::Forget { subject } => Line::Forget {
                        pos,
                        ts,
                        id,
                        subject,
                    },
                    // `LogEntry` never holds one (consumers are not moved).
                    LifecycleOp::Consumer(_) => unreachable!("a consumer's record is not exported"),
                }
            }
        }
    }

    /// The item this line holds (`None` for a header or end line).
    fn item(self) -> std::result::Result<Option<Item>, String> {
        let entry = |pos, ts, id: &Option<String>, op| -> std::result::Result<Item, String> {
            Ok(Item::Entry(LogEntry {
                position: pos,
                timestamp_us: ts,
                id: id_of(id)?,
                op,
            }))
        };
        Ok(Some(match self {
            Line::Header { .. } | Line::End { .. } => return Ok(None),
            Line::Event {
                pos,
                ts,
                stream,
                version,
                event_type,
                schema,
                id,
                subject,
                erased,
                metadata,
                payload,
            } => {
                if erased && (subject.is_none() || !metadata.is_empty() || !payload.is_empty()) {
                    return Err(
                        "an erased event names no subject or has metadata or a payload".to_owned(),
                    );
                }
                Item::Event(Event {
                    position: pos,
                    timestamp_us: ts,
                    stream,
                    stream_version: version,
                    event_type,
                    schema_version: schema,
                    id: id_of(&id)?,
                    metadata: base64_decode(&metadata).map_err(|e| format!("metadata: {e}"))?,
                    payload: base64_decode(&payload).map_err(|e| format!("payload: {e}"))?,
                    subject,
                    erased,
                })
            }
            Line::Forget {
                pos,
                ts,
                id,
                subject,
            } => entry(pos, ts, &id, LifecycleOp::Forget { subject })?,
            Line::Delete {
                pos,
                ts,
                id,
                stream,
                hard,
                version,
            } => entry(
                pos,
                ts,
                &id,
                LifecycleOp::Delete {
                    stream,
                    hard,
                    version,
                },
            )?,
            Line::Truncate {
                pos,
                ts,
                id,
                stream,
                before,
                version,
            } => entry(
                pos,
                ts,
                &id,
                LifecycleOp::Truncate {
                    stream,
                    before_version: before,
                    version,
                },
            )?,
            Line::Retention {
                pos,
                ts,
                id,
                target,
                category,
                max_count,
                max_age_us,
            } => entry(
                pos,
                ts,
                &id,
                LifecycleOp::Retention {
                    target,
                    category,
                    rule: Rule {
                        max_count,
                        max_age_us,
                    },
                },
            )?,
        }))
    }
}

/// Writes an export: the header, the items in position order, the end line.
pub struct ExportWriter<W: Write> {
    out: W,
    crc: u32,
    items: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header line of an export of positions `first .. next`.
    pub fn new(out: W, header: &Header) -> Result<Self> {
        let mut w = ExportWriter {
            out,
            crc: 0,
            items: 0,
            bytes: 0,
            buf: Vec::new(),
        };
        w.line(&Line::Header {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            engine: header.engine.clone(),
            first: header.first,
            last: header.next.checked_sub(1).filter(|&l| l >= header.first),
            next: header.next,
            exported_at_us: header.exported_at_us,
        })?;
        Ok(w)
    }

    fn line(&mut self, line: &Line) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, line).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Internal,
                format!("encoding an export line: {e}"),
            )
        })?;
        self.buf.push(b'\n');
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.bytes += self.buf.len() as u64;
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io("writing the export", e))
    }

    pub fn item(&mut self, item: &Item) -> Result<()> {
        self.line(&Line::of(item))?;
        self.items += 1;
        Ok(())
    }

    /// Writes the end line and flushes; returns the bytes written.
    pub fn finish(mut self) -> Result<u64> {
        let end = Line::End {
            items: self.items,
            crc32c: format!("{:08x}", self.crc),
        };
        self.line(&end)?;
        self.out
            .flush()
            .map_err(|e| Error::io("writing the export", e))?;
        Ok(self.bytes)
    }
}

/// Reads an export line by line, checking as it goes: the header first, items in
/// position order inside the header's range, then the end line with the right count and
/// checksum, then nothing. A file cut short (no end line) or changed is `Corrupt`,
/// naming the line.
pub struct ExportReader<R: BufRead> {
    input: R,
    header: Header,
    line_no: u64,
    crc: u32,
    items: u64,
    /// The position of the last item read.
    last: Option<u64>,
    ended: bool,
    buf: Vec<u8>,
    /// The header's format version.
    version: u32,
}

impl<R: BufRead> ExportReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self> {
        let mut r = ExportReader {
            input,
            header: Header {
                engine: String::new(),
                first: 0,
                next: 0,
                exported_at_us: 0,
            },
            line_no: 0,
            crc: 0,
            items: 0,
            last: None,
            ended: false,
            buf: Vec::new(),
            version: FORMAT_VERSION,
        };
        let bad = |what: String| Error::corrupt(format!("the export's first line {what}"));
        match r.read_line()? {
            None => return Err(bad("is missing: the file is empty".to_owned())),
            Some(Line::Header {
                format,
                version,
                engine,
                first,
                last,
                next,
                exported_at_us,
            }) => {
                if format != FORMAT {
                    return Err(bad(format!("has format {format:?}, not {FORMAT:?}")));
                }
                if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
                    return Err(bad(format!(
                        "has format version {version}; this library reads versions {OLDEST_READ} to {FORMAT_VERSION}"
                    )));
                }
                r.version = version;
                if next < first || last != next.checked_sub(1).filter(|&l| l >= first) {
                    return Err(bad(format!(
                        "has an impossible range (first {first}, last {last:?}, next {next})"
                    )));
                }
                r.header = Header {
                    engine,
                    first,
                    next,
                    exported_at_us,
                };
            }
            Some(_) => return Err(bad("is not a header".to_owned())),
        }
        Ok(r)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next line, parsed (`None` at the end of the input); the CRC takes it in
    /// unless it is the end line.
    fn read_line(&mut self) -> Result<Option<Line>> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io("reading the export", e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let at = self.line_no;
        if self.buf.last() != Some(&b'\n') {
            return Err(Error::corrupt(match n as u64 > MAX_LINE {
                true => format!("line {at} of the export is longer than {MAX_LINE} bytes"),
                false => format!(
                    "line {at} of the export ends without a newline: the file was cut short"
                ),
            }));
        }
        let line: Line = serde_json::from_slice(&self.buf).map_err(|e| {
            Error::corrupt(format!(
                "line {at} of the export is not an export line: {e}"
            ))
        })?;
        if !matches!(line, Line::End { .. }) {
            self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        }
        Ok(Some(line))
    }

    /// The next item; `None` once the end line was read and checked.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.ended {
            return Ok(None);
        }
        let Some(line) = self.read_line()? else {
            return Err(Error::corrupt(format!(
                "the export ends after line {} without its end line: the file was cut short",
                self.line_no
            )));
        };
        let at = self.line_no;
        if let Line::End { items, crc32c } = &line {
            let crc = format!("{:08x}", self.crc);
            if *items != self.items || *crc32c != crc {
                return Err(Error::corrupt(format!(
                    "the export's end line (line {at}) says {items} items with CRC-32C {crc32c}; \
                     the file has {} with {crc}: it was changed or cut",
                    self.items
                )));
            }
            if self.read_line()?.is_some() {
                return Err(Error::corrupt(format!(
                    "line {} of the export follows its end line",
                    self.line_no
                )));
            }
            self.ended = true;
            return Ok(None);
        }
        let item = line
            .item()
            .map_err(|e| Error::corrupt(format!("line {at} of the export: {e}")))?
            .ok_or_else(|| Error::corrupt(format!("line {at} of the export is a second header")))?;
        let personal = match &item {
            Item::Event(e) => e.subject.is_some() || e.erased,
            Item::Entry(e) => matches!(e.op, LifecycleOp::Forget { .. }),
        };
        if personal && self.version < 2 {
            return Err(Error::corrupt(format!(
                "line {at} of the export names a data subject, which a version-{} export cannot",
                self.version
            )));
        }
        let pos = item.position();
        if pos < self.header.first || pos >= self.header.next || self.last.is_some_and(|l| pos <= l)
        {
            return Err(Error::corrupt(format!(
                "line {at} of the export is at position {pos}, out of order (after {:?}, in {}..{})",
                self.last, self.header.first, self.header.next
            )));
        }
        self.last = Some(pos);
        self.items += 1;
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_what_it_did_not_write() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let t = base64_encode(&bytes);
            assert_eq!(base64_decode(&t).unwrap(), bytes, "{len}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        for bad in ["Zm8", "Zm9=Zm8=", "Zm=8", "Zm9*", "Zm9=", "Zh=="] {
            assert!(base64_decode(bad).is_err(), "{bad}");
        }
    }

    fn sample() -> Vec<Item> {
        vec![
            Item::Event(Event {
                position: 3,
                timestamp_us: 10,
                stream: "s-ü".into(),
                stream_version: 7,
                event_type: "T".into(),
                schema_version: 2,
                metadata: vec![1, 2],
                payload: vec![0, 255, 10, 13],
                id: Some([9; 16]),
                subject: Some("user-1".into()),
                erased: false,
            }),
            Item::Event(Event {
                position: 4,
                timestamp_us: 10,
                stream: "s-ü".into(),
                stream_version: 8,
                event_type: "T".into(),
                schema_version: 1,
                metadata: vec![],
                payload: vec![],
                id: None,
                subject: Some("user-2".into()),
                erased: true,
            }),
            Item::Entry(LogEntry {
                position: 5,
                timestamp_us: 11,
                id: None,
                op: LifecycleOp::Truncate {
                    stream: "s-ü".into(),
                    before_version: 7,
                    version: 7,
                },
            }),
            Item::Entry(LogEntry {
                position: 6,
                timestamp_us: 12,
                id: None,
                op: LifecycleOp::Forget {
                    subject: "user-2".into(),
                },
            }),
        ]
    }

    fn export(items: &[Item]) -> Vec<u8> {
        let header = Header {
            engine: "file".into(),
            first: 2,
            next: 9,
            exported_at_us: 1,
        };
        let mut out = Vec::new();
        let mut w = ExportWriter::new(&mut out, &header).unwrap();
        items.iter().for_each(|i| w.item(i).unwrap());
        w.finish().unwrap();
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Item>> {
        let mut r = ExportReader::new(bytes)?;
        let mut v = Vec::new();
        while let Some(i) = r.next_item()? {
            v.push(i);
        }
        Ok(v)
    }

    #[test]
    fn an_export_reads_back_and_any_cut_or_change_is_refused() {
        let items = sample();
        let bytes = export(&items);
        assert_eq!(read_all(&bytes).unwrap(), items);
        // Cut anywhere: refused (a cut at a line's end lacks the end line).
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A changed byte inside the items: refused by the checksum or the parse.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let changed = text.replace("\"version\":7", "\"version\":8");
        assert_ne!(changed, text);
        let e = read_all(changed.as_bytes()).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Corrupt, "{}", e.message);
        // An erased event with a payload, a subject in a version-1 export: refused.
        let with_payload = text.replace(
            "\"erased\":true,\"metadata\":\"\"",
            "\"erased\":true,\"metadata\":\"AA==\"",
        );
        assert_ne!(with_payload, text);
        let e = read_all(with_payload.as_bytes()).unwrap_err();
        assert!(e.message.contains("erased event"), "{}", e.message);
        let v1 = text.replace("\"version\":2,", "\"version\":1,");
        assert_ne!(v1, text);
        let e = read_all(v1.as_bytes()).unwrap_err();
        assert!(e.message.contains("version-1"), "{}", e.message);
        // Something after the end line: refused.
        let mut more = bytes.clone();
        more.extend_from_slice(&bytes[bytes.len() - 40..]);
        assert!(read_all(&more).is_err());
    }

    #[test]
    fn items_out_of_order_or_outside_the_header_are_refused() {
        let mut items = sample();
        items.swap(0, 2);
        let e = read_all(&export(&items)).unwrap_err();
        assert!(e.message.contains("out of order"), "{}", e.message);
        let mut late = sample();
        if let Item::Entry(e) = &mut late[2] {
            e.position = 9;
        }
        assert!(read_all(&export(&late)).is_err());
    }
}
