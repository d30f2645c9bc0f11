//! Index files of sealed segments: `<store>/index/<segment>.idx`, written once when a
//! segment seals so that the in-memory index holds only the active segment.
//!
//! A file is rebuilt from its segment whenever it is missing, damaged or does not match
//! the log: it is a cache of what the segment says, never trusted over it. It records the
//! segment's length and the stored CRC of its last record, and every 4 KiB page of it
//! carries its own crc32c (seeded with the segment id and the page number), so a reader
//! checks exactly the pages it reads.
//!
//! The logical content (before paging) is a fixed header, then per event its record's
//! offset (u32) and its timestamp (u64, never decreasing), then a bucket directory and the
//! buckets: for each stream with events in the segment, its name, the version of its first
//! event there and, per event, (position - first position, record offset, record length).

use crate::error::{Error, Result};
use crate::store::FastMap;
use crate::wal::vfs::{self, FileRef, OpenMode, Vfs};
use crate::wal::{segment, Position};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"EVSIDX01";
/// The magic of a file whose segment has empty positions (a compaction erased their
/// records): an offset of `NO_RECORD` says "no record at this position", and the
/// header's last word says where the last record ends (a marker record may follow it).
/// Files of segments without gaps keep the first magic, so older versions read them.
const MAGIC_GAPS: &[u8; 8] = b"EVSIDX02";
/// The offset of a position that holds no record.
const NO_RECORD: u32 = u32::MAX;
const PAGE: usize = 4096;
/// Bytes of content a page holds (its last four are its CRC).
const PAGE_DATA: usize = PAGE - 4;
const HEADER_LEN: usize = 16 * 8;
/// Streams per bucket, on average.
const PER_BUCKET: usize = 4;
/// Open index files kept between reads.
const OPEN_FILES: usize = 32;
/// How many times (a millisecond apart) a read-only store looks again at a segment whose
/// index file does not match it before it reports the damage: its writer's compaction
/// puts the rewritten segment in place a moment before its index file.
const READ_ONLY_WAITS: u32 = 2000;

/// A stream's events in one segment: the version of the first, and per event its
/// position, record offset and record end.
pub type StreamPart = (u64, Vec<(u64, u64, u64)>);

/// What the in-memory index keeps of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub segment_id: u64,
    pub first: u64,
    pub count: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// The segment's length and its last record's stored CRC, when the file was written.
    pub segment_len: u64,
    pub last_crc: u32,
}

impl Sealed {
    pub fn end(&self) -> u64 {
        self.first + self.count
    }

    /// Whether `o` describes the same segment and positions (a compaction rewrites a
    /// segment: its length, last CRC and the timestamps of positions it emptied may
    /// change, never the positions it covers).
    pub fn same_range(&self, o: &Sealed) -> bool {
        self.segment_id == o.segment_id && self.first == o.first && self.count == o.count
    }
}

/// The file's fixed header, as decoded.
#[derive(Debug, Clone, Copy)]
struct Header {
    sealed: Sealed,
    n_buckets: u64,
    logical_len: u64,
    offsets_at: u64,
    ts_at: u64,
    dir_at: u64,
    /// Where the last record ends (the segment's length unless a marker follows it).
    records_end: u64,
}

pub fn file_name(segment_id: u64) -> String {
    format!("{segment_id:06}.idx")
}

/// FNV-1a: a stable hash for bucketing stream names on disk.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn page_crc(segment_id: u64, page: u64, data: &[u8]) -> u32 {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&segment_id.to_le_bytes());
    seed[8..].copy_from_slice(&page.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&seed), data)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// One event of a segment, as the builder takes it.
pub struct BuildEvent<'a> {
    pub offset: u64,
    pub len: u64,
    /// Never decreasing along the segment.
    pub timestamp_us: u64,
    /// The stream and the event's version in it; `None` for an event without a stream.
    pub stream: Option<(&'a str, u64)>,
}

/// Collects a segment's events and encodes its index file.
pub struct Builder<'a> {
    segment_id: u64,
    first: u64,
    offsets: Vec<u32>,
    timestamps: Vec<u64>,
    /// Stream name -> the builder's id, for `push` (events decoded from a segment).
    by_name: FastMap<Box<str>, u32>,
    /// By the builder's stream id: its name, its first version, then (position - first,
    /// offset, length) per event.
    names: Vec<std::borrow::Cow<'a, str>>,
    streams: Vec<(u64, Vec<[u32; 3]>)>,
    /// Set when the segment has empty positions or a marker record after its last
    /// event: where its last record (event or entry) ends.
    records_end: Option<u64>,
}

impl<'a> Builder<'a> {
    pub fn new(segment_id: u64, first: u64) -> Self {
        Builder {
            segment_id,
            first,
            offsets: Vec::new(),
            timestamps: Vec::new(),
            by_name: FastMap::default(),
            names: Vec::new(),
            streams: Vec::new(),
            records_end: None,
        }
    }

    /// The next position holds no record (a compaction erased it), stamped
    /// `timestamp_us` in the index's view of time.
    pub fn push_gap(&mut self, timestamp_us: u64) {
        self.offsets.push(NO_RECORD);
        self.timestamps.push(timestamp_us);
        self.records_end.get_or_insert(0);
    }

    /// Where the segment's last record ends, when a marker record follows it.
    pub fn set_records_end(&mut self, end: u64) {
        self.records_end = Some(end);
    }

    /// Whether a segment of `len` bytes can have an index file (offsets are 32-bit).
    pub fn fits(len: u64) -> bool {
        len <= u32::MAX as u64
    }

    /// A stream of the segment whose first event there has version `first_version`; its
    /// id for `push_local`.
    pub fn add_stream(&mut self, name: &'a str, first_version: u64) -> u32 {
        self.names.push(std::borrow::Cow::Borrowed(name));
        self.streams.push((first_version, Vec::new()));
        (self.streams.len() - 1) as u32
    }

    /// The next event, its stream given by the id `add_stream` returned.
    pub fn push_local(&mut self, stream: Option<u32>, offset: u64, len: u64, timestamp_us: u64) {
        let rel = self.offsets.len() as u32;
        self.offsets.push(offset as u32);
        self.timestamps.push(timestamp_us);
        if let Some(id) = stream {
            self.streams[id as usize]
                .1
                .push([rel, offset as u32, len as u32]);
        }
    }

    /// The next event, its stream given by name.
    pub fn push(&mut self, e: BuildEvent<'_>) {
        let stream = e
            .stream
            .map(|(name, version)| match self.by_name.get(name) {
                Some(&id) => id,
                None => {
                    let id = self.streams.len() as u32;
                    self.by_name.insert(name.into(), id);
                    self.names.push(std::borrow::Cow::Owned(name.to_owned()));
                    self.streams.push((version, Vec::new()));
                    id
                }
            });
        self.push_local(stream, e.offset, e.len, e.timestamp_us);
    }

    /// The summary and the paged file bytes, for a segment `segment_len` long whose last
    /// record's stored CRC is `last_crc`.
    pub fn finish(self, segment_len: u64, last_crc: u32) -> (Sealed, Vec<u8>) {
        let count = self.offsets.len() as u64;
        let sealed = Sealed {
            segment_id: self.segment_id,
            first: self.first,
            count,
            first_ts: self.timestamps.first().copied().unwrap_or(0),
            last_ts: self.timestamps.last().copied().unwrap_or(0),
            segment_len,
            last_crc,
        };
        let n_buckets = (self.streams.len() / PER_BUCKET).max(1).next_power_of_two();
        let names = &self.names;
        // In id order (first appearance), so that a file rebuilt from its segment is
        // the same bytes as the one written when the segment sealed.
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); n_buckets];
        for (id, name) in names.iter().enumerate() {
            buckets[(name_hash(name) as usize) & (n_buckets - 1)].push(id as u32);
        }
        let offsets_at = HEADER_LEN as u64;
        let ts_at = offsets_at + 4 * count;
        let dir_at = ts_at + 8 * count;
        let streams_at = dir_at + 8 * (n_buckets as u64 + 1);
        let mut body = Vec::with_capacity(streams_at as usize + 16 * count as usize);
        body.resize(HEADER_LEN, 0);
        for &o in &self.offsets {
            body.extend_from_slice(&o.to_le_bytes());
        }
        for &t in &self.timestamps {
            body.extend_from_slice(&t.to_le_bytes());
        }
        let mut streams = Vec::new();
        let mut dir = Vec::with_capacity(n_buckets + 1);
        for bucket in &buckets {
            dir.push(streams_at + streams.len() as u64);
            for &id in bucket {
                let name = &*names[id as usize];
                let (first_version, events) = &self.streams[id as usize];
                streams.extend_from_slice(&(name.len() as u32).to_le_bytes());
                streams.extend_from_slice(name.as_bytes());
                streams.extend_from_slice(&first_version.to_le_bytes());
                streams.extend_from_slice(&(events.len() as u32).to_le_bytes());
                for ev in events {
                    for v in ev {
                        streams.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        dir.push(streams_at + streams.len() as u64);
        for d in dir {
            body.extend_from_slice(&d.to_le_bytes());
        }
        body.extend_from_slice(&streams);
        let logical_len = body.len() as u64;
        let (magic, records_end) = match self.records_end {
            None => (MAGIC, 0),
            Some(0) => (MAGIC_GAPS, segment_len),
            Some(e) => (MAGIC_GAPS, e),
        };
        let header = [
            u64::from_le_bytes(*magic),
            self.segment_id,
            segment_len,
            last_crc as u64,
            self.first,
            count,
            sealed.first_ts,
            sealed.last_ts,
            self.streams.len() as u64,
            n_buckets as u64,
            logical_len,
            offsets_at,
            ts_at,
            dir_at,
            streams_at,
            records_end,
        ];
        for (i, v) in header.iter().enumerate() {
            body[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        (sealed, paginate(self.segment_id, &body))
    }
}

/// Splits `body` into pages, each followed by its CRC.
fn paginate(segment_id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / PAGE_DATA * 4 + 4);
    for (i, chunk) in body.chunks(PAGE_DATA).enumerate() {
        out.extend_from_slice(chunk);
        out.extend_from_slice(&page_crc(segment_id, i as u64, chunk).to_le_bytes());
    }
    out
}

fn physical_len(logical: u64) -> u64 {
    let pages = logical.div_ceil(PAGE_DATA as u64);
    logical + 4 * pages
}

fn decode_header(segment_id: u64, b: &[u8]) -> Result<Header> {
    let h: Vec<u64> = (0..16).map(|i| le_u64(b, i * 8)).collect();
    let gaps = h[0] == u64::from_le_bytes(*MAGIC_GAPS);
    if h[0] != u64::from_le_bytes(*MAGIC) && !gaps {
        return Err(Error::corrupt("not an index file (bad magic)"));
    }
    let records_end = if gaps { h[15] } else { h[2] };
    if h[1] != segment_id {
        return Err(Error::corrupt(format!(
            "it indexes segment {} instead of {segment_id}",
            h[1]
        )));
    }
    let count = h[5];
    let n_buckets = h[9];
    let header = Header {
        sealed: Sealed {
            segment_id,
            segment_len: h[2],
            last_crc: h[3] as u32,
            first: h[4],
            count,
            first_ts: h[6],
            last_ts: h[7],
        },
        n_buckets,
        logical_len: h[10],
        offsets_at: h[11],
        ts_at: h[12],
        dir_at: h[13],
        records_end,
    };
    // The layout must be the one the builder writes.
    let sane = count > 0
        && h[3] <= u32::MAX as u64
        && n_buckets.is_power_of_two()
        && header.offsets_at == HEADER_LEN as u64
        && header.ts_at == header.offsets_at + 4 * count
        && header.dir_at == header.ts_at + 8 * count
        && h[14] == header.dir_at + 8 * (n_buckets + 1)
        && h[14] <= header.logical_len
        && records_end <= h[2]
        && (gaps || h[15] == 0)
        && header.sealed.first_ts <= header.sealed.last_ts;
    if !sane {
        return Err(Error::corrupt("its header is inconsistent"));
    }
    Ok(header)
}

/// Where an index file's bytes come from: the file, page by page, or a copy rebuilt in
/// memory from the segment (a read-only store cannot write one, or writing failed).
#[derive(Clone)]
enum Source {
    File(FileRef),
    Memory(Arc<Vec<u8>>),
}

/// One segment's index, ready to answer.
struct Opened {
    header: Header,
    source: Source,
}

impl Opened {
    /// The logical bytes `[at, at + len)`, each page checked.
    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let end = at
            .checked_add(len)
            .filter(|&e| e <= self.header.logical_len)
            .ok_or_else(|| Error::corrupt("a read runs past the index file's end"))?;
        let file = match &self.source {
            Source::Memory(b) => return Ok(b[at as usize..end as usize].to_vec()),
            Source::File(f) => f,
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let first_page = at / PAGE_DATA as u64;
        let last_page = (end - 1) / PAGE_DATA as u64;
        let phys_start = first_page * PAGE as u64;
        let phys_end = ((last_page + 1) * PAGE as u64).min(physical_len(self.header.logical_len));
        let mut raw = vec![0u8; (phys_end - phys_start) as usize];
        let got = vfs::read_at_most(&**file, &mut raw, phys_start)
            .map_err(|e| Error::io("reading an index file", e))?;
        if got < raw.len() {
            return Err(Error::corrupt("the index file is cut short"));
        }
        let mut out = Vec::with_capacity(len as usize);
        for (i, page) in raw.chunks(PAGE).enumerate() {
            let (data, crc) = page.split_at(page.len() - 4);
            let n = first_page + i as u64;
            if page_crc(self.header.sealed.segment_id, n, data) != le_u32(crc, 0) {
                return Err(Error::corrupt(format!("page {n} fails its checksum")));
            }
            let page_start = n * PAGE_DATA as u64;
            let from = at.max(page_start) - page_start;
            let to = end.min(page_start + data.len() as u64) - page_start;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        Ok(out)
    }

    /// The record offset of the position `rel` positions into the segment, and where
    /// it ends; `None` when the position holds no record (a compaction erased it).
    fn locate(&self, rel: u64) -> Result<Option<(u64, u64)>> {
        let h = &self.header;
        let at = le_u32(&self.read(h.offsets_at + 4 * rel, 4)?, 0);
        if at == NO_RECORD {
            return Ok(None);
        }
        let at = at as u64;
        let end = match self.next_record(rel + 1)? {
            Some((_, next)) => next,
            None => h.records_end,
        };
        if end <= at {
            return Err(Error::corrupt("its record offsets are not increasing"));
        }
        Ok(Some((at, end)))
    }

    /// The first position at or after `rel` (relative) that holds a record, and its
    /// record's offset.
    fn next_record(&self, rel: u64) -> Result<Option<(u64, u64)>> {
        let h = &self.header;
        let mut at = rel;
        while at < h.sealed.count {
            let n = (h.sealed.count - at).min(1024);
            let b = self.read(h.offsets_at + 4 * at, 4 * n)?;
            for (i, o) in b.chunks_exact(4).enumerate() {
                let o = le_u32(o, 0);
                if o != NO_RECORD {
                    return Ok(Some((at + i as u64, o as u64)));
                }
            }
            at += n;
        }
        Ok(None)
    }

    /// Every position's timestamp, in order.
    fn timestamps(&self) -> Result<Vec<u64>> {
        let h = &self.header;
        let b = self.read(h.ts_at, 8 * h.sealed.count)?;
        Ok(b.chunks_exact(8).map(|t| le_u64(t, 0)).collect())
    }

    fn timestamp(&self, rel: u64) -> Result<u64> {
        Ok(le_u64(&self.read(self.header.ts_at + 8 * rel, 8)?, 0))
    }

    /// The stream's events in this segment: the version of the first, and per event its
    /// position, record offset and record end.
    fn stream(&self, name: &str) -> Result<Option<StreamPart>> {
        let h = &self.header;
        let bucket = name_hash(name) & (h.n_buckets - 1);
        let d = self.read(h.dir_at + 8 * bucket, 16)?;
        let (from, to) = (le_u64(&d, 0), le_u64(&d, 8));
        if to < from {
            return Err(Error::corrupt("its bucket directory is not increasing"));
        }
        let b = self.read(from, to - from)?;
        let bad = || Error::corrupt("a bucket runs past its end");
        let mut at = 0usize;
        while at < b.len() {
            let name_len = le_u32(b.get(at..at + 4).ok_or_else(bad)?, 0) as usize;
            let name_end = at + 4 + name_len;
            let fixed_end = name_end + 12;
            let fixed = b.get(name_end..fixed_end).ok_or_else(bad)?;
            let first_version = le_u64(fixed, 0);
            let n = le_u32(fixed, 8) as usize;
            let next = fixed_end + 12 * n;
            if next > b.len() {
                return Err(bad());
            }
            if &b[at + 4..name_end] == name.as_bytes() {
                let mut events = Vec::with_capacity(n);
                for e in b[fixed_end..next].chunks_exact(12) {
                    let rel = le_u32(e, 0) as u64;
                    let off = le_u32(e, 4) as u64;
                    let len = le_u32(e, 8) as u64;
                    if rel >= h.sealed.count || len == 0 {
                        return Err(Error::corrupt("a stream entry is out of range"));
                    }
                    events.push((h.sealed.first + rel, off, off + len));
                }
                return Ok(Some((first_version, events)));
            }
            at = next;
        }
        Ok(None)
    }
}

/// Rebuilds a segment's index from the segment itself.
pub type Rebuild = dyn Fn(&Sealed) -> Result<(Sealed, Vec<u8>)> + Send + Sync;

/// The index files of one store, with a few open handles and the copies rebuilt in memory.
/// How many times (a millisecond apart) a read-only store looks again at an index file
/// that does not describe the segment at its name, before it takes it as damaged.
const MISMATCH_TRIES: u32 = 200;

pub struct SegmentFiles {
    vfs: Arc<dyn Vfs>,
    /// `<store>/index`
    dir: PathBuf,
    /// `<store>/events`
    log_dir: PathBuf,
    writable: bool,
    open: Mutex<Vec<(u64, Arc<Opened>)>>,
    rebuilt: Mutex<FastMap<u64, Arc<Opened>>>,
    rebuild: std::sync::OnceLock<Box<Rebuild>>,
}

impl std::fmt::Debug for SegmentFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFiles")
            .field("dir", &self.dir)
            .finish()
    }
}

impl SegmentFiles {
    pub fn new(vfs: Arc<dyn Vfs>, store_dir: &Path, writable: bool) -> Self {
        SegmentFiles {
            vfs,
            dir: store_dir.join("index"),
            log_dir: store_dir.join("events"),
            writable,
            open: Mutex::new(Vec::new()),
            rebuilt: Mutex::new(FastMap::default()),
            rebuild: std::sync::OnceLock::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How a damaged file found while reading is rebuilt (set once the log is open).
    pub fn set_rebuild(&self, f: Box<Rebuild>) {
        let _ = self.rebuild.set(f);
    }

    /// The stored CRC of the last record of segment `id`, `len` bytes long (its last four
    /// bytes).
    pub fn segment_last_crc(&self, id: u64, len: u64) -> Result<u32> {
        let path = segment::path(&self.log_dir, id);
        let io = |e| Error::io(format!("reading {}", path.display()), e);
        let file = self.vfs.open(&path, OpenMode::Read).map_err(io)?;
        let mut b = [0u8; 4];
        if len < 4 || vfs::read_at_most(&*file, &mut b, len - 4).map_err(io)? < 4 {
            return Err(Error::corrupt(format!("{} is cut short", path.display())));
        }
        Ok(u32::from_le_bytes(b))
    }

    /// Opens segment `id`'s index file and checks its header against the segment: it must
    /// be whole, first at `first`, and describe the segment as it is (length, last CRC).
    fn open_checked(&self, id: u64, first: u64) -> Result<Opened> {
        let mut tries = 0;
        loop {
            match self.open_checked_once(id, first) {
                Ok(o) => return Ok(o),
                // A read-only store beside a writer that compacts: the writer renames the
                // rewritten segment, then its index file; between the two the old index
                // file does not describe the segment at its name. Looked at again, a
                // moment later, for a while.
                Err((_, true)) if !self.writable && tries < MISMATCH_TRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// `open_checked`, once; an error says whether it is the segment that does not match
    /// the file (rather than the file itself).
    fn open_checked_once(&self, id: u64, first: u64) -> std::result::Result<Opened, (Error, bool)> {
        let own = |e: Error| (e, false);
        let path = self.dir.join(file_name(id));
        let file = self
            .vfs
            .open(&path, OpenMode::Read)
            .map_err(|e| own(Error::io(format!("opening {}", path.display()), e)))?;
        let mut page = vec![0u8; HEADER_LEN + 4];
        let got = vfs::read_at_most(&*file, &mut page[..HEADER_LEN], 0)
            .map_err(|e| own(Error::io(format!("reading {}", path.display()), e)))?;
        if got < HEADER_LEN {
            return Err(own(Error::corrupt("it is cut short")));
        }
        // The header is decoded only to learn the length; the page read below checks it.
        let header = decode_header(id, &page).map_err(own)?;
        let opened = Opened {
            header,
            source: Source::File(file.clone()),
        };
        let checked = opened.read(0, HEADER_LEN as u64).map_err(own)?;
        let header = decode_header(id, &checked).map_err(own)?;
        let len = file
            .len()
            .map_err(|e| own(Error::io(format!("reading {}", path.display()), e)))?;
        if len != physical_len(header.logical_len) {
            return Err(own(Error::corrupt(format!(
                "it is {len} bytes instead of {}",
                physical_len(header.logical_len)
            ))));
        }
        if header.sealed.first != first {
            return Err(own(Error::corrupt(format!(
                "it starts at position {} instead of {first}",
                header.sealed.first
            ))));
        }
        let seg_path = segment::path(&self.log_dir, id);
        let seg_len = self
            .vfs
            .stat(&seg_path)
            .map_err(|e| own(Error::io(format!("reading {}", seg_path.display()), e)))?
            .len;
        // A sealed segment may be longer than its records (a preallocated tail that was
        // not cut, or bytes added later): what lies past them is the log's business, and
        // a reader that goes there checks it. Shorter, it lost indexed records.
        if seg_len < header.sealed.segment_len {
            return Err((
                Error::corrupt(format!(
                    "it describes {} bytes of the segment, which has {seg_len}",
                    header.sealed.segment_len
                )),
                true,
            ));
        }
        if self
            .segment_last_crc(id, header.sealed.segment_len)
            .map_err(own)?
            != header.sealed.last_crc
        {
            return Err((
                Error::corrupt("the segment's last record is not the one it indexed"),
                true,
            ));
        }
        Ok(Opened {
            header,
            source: Source::File(file),
        })
    }

    /// The index files that check out against the log, in order: the longest run of
    /// segments from the first one, each starting where the one before ended. The log's
    /// last segment is never sealed (appends go on in it). Problems found are reported.
    pub fn load(&self, ignored: &mut Vec<String>) -> Vec<Sealed> {
        let mut sealed: Vec<Sealed> = Vec::new();
        let Ok(ids) = segment::list(&*self.vfs, &self.log_dir) else {
            return sealed;
        };
        let have: std::collections::HashSet<String> = self
            .vfs
            .list_dir(&self.dir)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let mut open = Vec::new();
        for &id in ids.iter().take(ids.len().saturating_sub(1)) {
            if !have.contains(&file_name(id)) {
                break;
            }
            let first = sealed.last().map_or(0, |s| s.end());
            match self.open_checked(id, first) {
                Ok(o) => {
                    sealed.push(o.header.sealed);
                    if open.len() < OPEN_FILES {
                        open.push((id, Arc::new(o)));
                    }
                }
                Err(e) => {
                    ignored.push(format!(
                        "{}: {} (rebuilt from the segment)",
                        self.dir.join(file_name(id)).display(),
                        e.message
                    ));
                    break;
                }
            }
        }
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = open;
        sealed
    }

    /// Segment `id`'s index file as a writer in another process wrote it when the segment
    /// sealed, checked against the segment as `load` checks it (first position `first`);
    /// `None` while it is not there. For a read-only store that follows the writer.
    pub fn take_up(&self, id: u64, first: u64) -> Result<Option<Sealed>> {
        let path = self.dir.join(file_name(id));
        match self.vfs.stat(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        let opened = Arc::new(self.open_checked(id, first)?);
        let sealed = opened.header.sealed;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= OPEN_FILES {
            open.remove(0);
        }
        open.push((id, opened));
        Ok(Some(sealed))
    }

    /// Writes segment `id`'s index file atomically (temporary file, fsync, rename,
    /// directory fsync). A failure leaves no temporary file behind when it can.
    pub fn write(&self, id: u64, bytes: &[u8]) -> Result<()> {
        let tmp = self.prepare(id, bytes)?;
        let path = self.dir.join(file_name(id));
        if let Err(e) = self.vfs.rename(&tmp, &path) {
            let _ = self.vfs.remove_file(&tmp);
            return Err(Error::io(format!("renaming {}", tmp.display()), e));
        }
        self.forget(id);
        self.sync_dir()
    }

    fn forget(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(s, _)| *s != id);
    }

    /// Removes temporary files a crashed or failed write left behind.
    pub fn remove_leftovers(&self) {
        let Ok(names) = self.vfs.list_dir(&self.dir) else {
            return;
        };
        for name in names.iter().filter(|n| n.ends_with(".idx.tmp")) {
            let _ = self.vfs.remove_file(&self.dir.join(name));
        }
    }

    /// Segment `s`'s index, opened (and checked) if it is not open yet.
    fn get(&self, s: &Sealed) -> Result<Arc<Opened>> {
        if let Some(o) = self
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&s.segment_id)
        {
            return Ok(o.clone());
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = open.iter().position(|(id, _)| *id == s.segment_id) {
            let hit = open.remove(i);
            open.push(hit.clone());
            return Ok(hit.1);
        }
        drop(open);
        let opened = self
            .open_checked(s.segment_id, s.first)
            .and_then(|o| {
                if o.header.sealed.same_range(s) {
                    Ok(o)
                } else {
                    Err(Error::corrupt("it changed since the store opened"))
                }
            })
            .map(Arc::new);
        match opened {
            Ok(o) => {
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                if open.len() >= OPEN_FILES {
                    open.remove(0);
                }
                open.push((s.segment_id, o.clone()));
                Ok(o)
            }
            Err(_) => self.rebuild_or_wait(s),
        }
    }

    /// `rebuild`, and for a read-only store that finds segment `s`'s files not matching
    /// (its writer between a compaction's two renames: the rewritten segment in place,
    /// its index file not yet) a look again at the files every millisecond for a while,
    /// until the writer's second rename, before the damage is reported.
    fn rebuild_or_wait(&self, s: &Sealed) -> Result<Arc<Opened>> {
        let mut attempt = 0u32;
        loop {
            let failed = match self.rebuild(s) {
                Ok(o) => return Ok(o),
                Err(e) if self.writable || attempt >= READ_ONLY_WAITS => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
            match self.open_checked(s.segment_id, s.first) {
                Ok(o) if o.header.sealed.same_range(s) => {
                    let o = Arc::new(o);
                    let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                    if open.len() >= OPEN_FILES {
                        open.remove(0);
                    }
                    open.push((s.segment_id, o.clone()));
                    return Ok(o);
                }
                _ if attempt >= READ_ONLY_WAITS => return Err(failed),
                _ => {}
            }
        }
    }

    /// Rebuilds segment `s`'s index from the segment after its file failed a check;
    /// writes it back when the store may, and keeps it in memory when that fails.
    fn rebuild(&self, s: &Sealed) -> Result<Arc<Opened>> {
        self.forget(s.segment_id);
        let Some(rebuild) = self.rebuild.get() else {
            return Err(Error::corrupt(format!(
                "the index file of segment {} is damaged",
                s.segment_id
            )));
        };
        let (fresh, bytes) = rebuild(s)?;
        if !fresh.same_range(s) {
            return Err(Error::corrupt(format!(
                "segment {} no longer holds the events it held when the store opened",
                segment::file_name(s.segment_id)
            )));
        }
        if self.writable && self.write(s.segment_id, &bytes).is_ok() {
            if let Ok(o) = self.get_written(s) {
                return Ok(o);
            }
        }
        self.keep_in_memory(s, &bytes)?;
        self.get(s)
    }

    /// Keeps segment `s`'s index, built from the segment, in memory (a read-only store,
    /// or a file that could not be written).
    pub fn keep_in_memory(&self, s: &Sealed, bytes: &[u8]) -> Result<()> {
        let body = unpaginate(s.segment_id, bytes)?;
        let header = decode_header(s.segment_id, &body)?;
        self.rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                s.segment_id,
                Arc::new(Opened {
                    header,
                    source: Source::Memory(Arc::new(body)),
                }),
            );
        Ok(())
    }

    fn get_written(&self, s: &Sealed) -> Result<Arc<Opened>> {
        let o = Arc::new(self.open_checked(s.segment_id, s.first)?);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.push((s.segment_id, o.clone()));
        Ok(o)
    }

    /// Runs `f` on segment `s`'s index; a damaged file found on the way is rebuilt and
    /// `f` runs again on the rebuilt copy.
    fn with<T>(&self, s: &Sealed, f: impl Fn(&Opened) -> Result<T>) -> Result<T> {
        let o = self.get(s)?;
        match f(&o) {
            Ok(v) => Ok(v),
            Err(e) if e.kind == crate::error::ErrorKind::Corrupt => {
                if matches!(o.source, Source::Memory(_)) {
                    return Err(e);
                }
                f(&*self.rebuild_or_wait(s)?)
            }
            Err(e) => Err(e),
        }
    }

    /// Where the record of `position` of sealed segment `s` is, and where it ends;
    /// `None` when the position holds no record (a compaction erased it).
    pub fn locate(&self, s: &Sealed, position: u64) -> Result<Option<(Position, u64)>> {
        let found = self.with(s, |o| o.locate(position - s.first))?;
        Ok(found.map(|(at, end)| {
            (
                Position {
                    segment_id: s.segment_id,
                    offset: at,
                },
                end,
            )
        }))
    }

    /// The first position of segment `s` at or after `position` that holds a record.
    pub fn next_record(&self, s: &Sealed, position: u64) -> Result<Option<u64>> {
        let rel = position.saturating_sub(s.first);
        let found = self.with(s, |o| o.next_record(rel))?;
        Ok(found.map(|(r, _)| s.first + r))
    }

    /// Every position's timestamp in segment `s` (a compaction keeps them).
    pub fn timestamps(&self, s: &Sealed) -> Result<Vec<u64>> {
        self.with(s, |o| o.timestamps())
    }

    /// Forgets what is open or rebuilt of segment `id`'s index (its file was replaced).
    pub fn reload(&self, id: u64) {
        self.forget(id);
        self.rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Writes segment `id`'s index file as a synced temporary beside it, for `install`;
    /// returns its path.
    pub fn prepare(&self, id: u64, bytes: &[u8]) -> Result<PathBuf> {
        if !self.writable {
            return Err(Error::invalid("a read-only store writes no index files"));
        }
        vfs::create_dir_all_durable(&*self.vfs, &self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let tmp = self.dir.join(format!("{}.tmp", file_name(id)));
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let _ = self.vfs.remove_file(&tmp);
        let written = self
            .vfs
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| io("creating", e))
            .and_then(|f| {
                vfs::write_all_at(&*f, bytes, 0).map_err(|e| io("writing", e))?;
                f.sync_all().map_err(|e| io("syncing", e))
            });
        if let Err(e) = written {
            let _ = self.vfs.remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Renames a file `prepare` wrote into place (the directory is synced by the caller).
    pub fn install(&self, id: u64, tmp: &Path) -> Result<()> {
        let path = self.dir.join(file_name(id));
        self.vfs
            .rename(tmp, &path)
            .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        self.reload(id);
        Ok(())
    }

    /// Syncs the index directory.
    pub fn sync_dir(&self) -> Result<()> {
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
    }

    /// The first position of segment `s` whose timestamp is after `ts`.
    pub fn position_after(&self, s: &Sealed, ts: u64) -> Result<u64> {
        self.with(s, |o| {
            let (mut lo, mut hi) = (0u64, s.count);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if o.timestamp(mid)? <= ts {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok(s.first + lo)
        })
    }

    /// The stream's events in segment `s` (see `Opened::stream`).
    pub fn stream(&self, s: &Sealed, name: &str) -> Result<Option<StreamPart>> {
        self.with(s, |o| o.stream(name))
    }
}

/// Checks every page of segment `segment_id`'s index file `bytes` and decodes its header
/// (a backup's verify): what it says of the segment, and its number of pages.
pub fn check_file(segment_id: u64, bytes: &[u8]) -> Result<(Sealed, u64)> {
    let body = unpaginate(segment_id, bytes)?;
    if body.len() < HEADER_LEN {
        return Err(Error::corrupt("it is cut short"));
    }
    let header = decode_header(segment_id, &body)?;
    Ok((header.sealed, bytes.len().div_ceil(PAGE) as u64))
}

/// The logical content of a paged file, each page checked.
fn unpaginate(segment_id: u64, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, page) in bytes.chunks(PAGE).enumerate() {
        if page.len() < 5 {
            return Err(Error::corrupt("an index page is cut short"));
        }
        let (data, crc) = page.split_at(page.len() - 4);
        if page_crc(segment_id, i as u64, data) != le_u32(crc, 0) {
            return Err(Error::corrupt(format!("index page {i} fails its checksum")));
        }
        out.extend_from_slice(data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(events: usize) -> (Sealed, Vec<u8>) {
        let mut b = Builder::new(3, 100);
        for i in 0..events {
            let name = format!("s{}", i % 7);
            b.push(BuildEvent {
                offset: i as u64 * 10,
                len: 10,
                timestamp_us: 1000 + i as u64 / 3,
                stream: (i % 5 != 0).then_some((name.as_str(), i as u64)),
            });
        }
        b.finish(events as u64 * 10, 77)
    }

    fn opened(bytes: &[u8]) -> Opened {
        let body = unpaginate(3, bytes).unwrap();
        Opened {
            header: decode_header(3, &body).unwrap(),
            source: Source::Memory(Arc::new(body)),
        }
    }

    #[test]
    fn an_index_answers_what_was_built() {
        let (sealed, bytes) = build(5000);
        assert_eq!(sealed.count, 5000);
        assert!(bytes.len() > PAGE * 2);
        let o = opened(&bytes);
        assert_eq!(o.locate(0).unwrap(), Some((0, 10)));
        assert_eq!(o.locate(4999).unwrap(), Some((49990, 50000)));
        assert_eq!(o.timestamp(7).unwrap(), 1002);
        let (first, evs) = o.stream("s1").unwrap().unwrap();
        assert_eq!(first, 1);
        assert_eq!(evs[0], (101, 10, 20));
        assert_eq!(evs[1].0, 108);
        assert!(o.stream("nope").unwrap().is_none());
    }

    #[test]
    fn a_flipped_bit_fails_its_page() {
        let (_, mut bytes) = build(3000);
        bytes[PAGE + 17] ^= 1;
        assert!(unpaginate(3, &bytes).is_err());
        let (_, mut bytes) = build(3000);
        bytes[5] ^= 4;
        assert!(unpaginate(3, &bytes).is_err());
    }
}
