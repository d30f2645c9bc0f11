//! Checkpoints: the indexes and every projection's state as of one position, in one
//! checksummed file, written atomically (temporary file, fsync, rename, directory fsync),
//! so that opening a large store replays only the log's tail.

use super::index::{FastMap, Index, StreamEntry};
use crate::error::{Error, Result};
use crate::wal::vfs::{self, OpenMode, Vfs};
use crate::wal::Position;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EVSSNAP3";
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
/// Snapshots kept besides the newest.
const KEEP: usize = 1;

/// What a snapshot holds.
pub struct Snapshot {
    pub index: Index,
    /// The WAL position just past the last event it covers.
    pub wal_end: Position,
    /// The stored CRC of the last covered event's record: ties the snapshot to that record.
    pub last_record_crc: u32,
    pub projections: HashMap<String, Vec<u8>>,
}

fn file_name(events: u64) -> String {
    format!("{PREFIX}{events:020}{SUFFIX}")
}

/// Snapshot files in `dir`, newest (most events) first.
pub fn list(vfs: &dyn Vfs, dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = vfs
        .list_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|name| {
            let n = name
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse()
                .ok()?;
            Some((n, dir.join(name)))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// Removes temporary files that a crashed or failed snapshot write left behind.
pub fn remove_leftovers(vfs: &dyn Vfs, dir: &Path) {
    let Ok(names) = vfs.list_dir(dir) else { return };
    let mut removed = false;
    for name in names {
        if name.starts_with(PREFIX) && name.ends_with(".tmp") {
            removed |= vfs.remove_file(&dir.join(name)).is_ok();
        }
    }
    if removed {
        let _ = vfs.sync_dir(dir);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes a snapshot of `index` (whose last event ends at `wal_end`) and `projections`:
/// its stream table and what it holds in memory (the sealed segments' events are in their
/// index files).
pub fn encode(
    index: &Index,
    wal_end: Position,
    last_record_crc: u32,
    projections: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let tail = index.len() - index.base.min(index.len());
    let mut out = Vec::with_capacity(64 + index.streams.len() * 48 + tail as usize * 20);
    out.extend_from_slice(MAGIC);
    put_u64(&mut out, index.len());
    put_u64(&mut out, wal_end.segment_id);
    put_u64(&mut out, wal_end.offset);
    put_u64(&mut out, last_record_crc as u64);
    let last = index.last_wal().map_or(u64::MAX, super::index::pack);
    put_u64(&mut out, last);
    put_u64(&mut out, index.last_timestamp());
    put_u64(&mut out, index.base);
    put_u64(&mut out, index.streams.len() as u64);
    for s in &index.streams {
        put_bytes(&mut out, s.name.as_bytes());
        put_u64(&mut out, s.count);
        put_u64(&mut out, s.first);
        put_u64(&mut out, s.last);
        put_u64(&mut out, s.tail.len() as u64);
        for &p in &s.tail {
            put_u64(&mut out, p);
        }
    }
    put_u64(&mut out, index.type_counts.len() as u64);
    for (name, &count) in &index.type_counts {
        put_bytes(&mut out, name.as_bytes());
        put_u64(&mut out, count);
    }
    put_u64(&mut out, tail);
    for (w, t, sid) in index.tail_events() {
        put_u64(&mut out, w);
        put_u64(&mut out, t);
        put_u32(&mut out, sid);
    }
    put_u64(&mut out, projections.len() as u64);
    for (name, bytes) in projections {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, bytes);
    }
    let crc = crc32c::crc32c(&out[MAGIC.len()..]);
    put_u32(&mut out, crc);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::corrupt("the snapshot is cut short"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }

    fn counted(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        self.bytes(n)
    }

    fn string(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.counted()?)
            .map_err(|_| Error::corrupt("a snapshot name is not UTF-8"))
    }

    /// A count of items of at least `min_size` bytes each that must fit in what is left.
    fn count(&mut self, min_size: u64) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.at) as u64;
        if n.saturating_mul(min_size) > left {
            return Err(Error::corrupt("a snapshot count runs past its end"));
        }
        Ok(n as usize)
    }
}

/// Decodes and checks a snapshot file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::corrupt("not a snapshot file (bad magic)"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(&body[MAGIC.len()..]) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(Error::corrupt("the snapshot fails its checksum"));
    }
    let mut r = Reader {
        buf: body,
        at: MAGIC.len(),
    };
    let n = r.u64()?;
    let wal_end = Position {
        segment_id: r.u64()?,
        offset: r.u64()?,
    };
    let last_record_crc = r.u64()? as u32;
    let last_wal = match r.u64()? {
        u64::MAX => None,
        w => Some(super::index::unpack(w)),
    };
    let last_timestamp = r.u64()?;
    let base = r.u64()?;
    if base > n {
        return Err(Error::corrupt(
            "the snapshot's memory part starts past its end",
        ));
    }
    let n_streams = r.count(40)?;
    let mut streams = Vec::with_capacity(n_streams);
    for _ in 0..n_streams {
        let name = r.string()?;
        let (count, first, last) = (r.u64()?, r.u64()?, r.u64()?);
        let tail_len = r.count(8)?;
        let tail = (0..tail_len).map(|_| r.u64()).collect::<Result<_>>()?;
        streams.push(StreamEntry {
            name: name.into(),
            count,
            first,
            last,
            tail,
        });
    }
    let mut type_counts = FastMap::default();
    for _ in 0..r.count(16)? {
        let name = r.string()?;
        type_counts.insert(name.into(), r.u64()?);
    }
    let tail_len = r.count(20)?;
    if tail_len as u64 != n - base {
        return Err(Error::corrupt("the snapshot's event counts disagree"));
    }
    let mut tail = Vec::with_capacity(tail_len);
    for _ in 0..tail_len {
        tail.push((r.u64()?, r.u64()?, r.u32()?));
    }
    if let Some(w) = last_wal {
        if wal_end.segment_id != w.segment_id || wal_end.offset <= w.offset {
            return Err(Error::corrupt("the snapshot ends before its last event"));
        }
    }
    let index = Index::from_parts(base, streams, type_counts, tail, last_timestamp, last_wal)?;
    let mut projections = HashMap::new();
    for _ in 0..r.count(16)? {
        let name = r.string()?.to_owned();
        projections.insert(name, r.counted()?.to_vec());
    }
    Ok(Snapshot {
        index,
        wal_end,
        last_record_crc,
        projections,
    })
}

/// Writes a snapshot covering `events` events atomically into `dir`, then removes all but
/// the newest few older ones. A failed write leaves no temporary file behind.
pub fn write(vfs: &dyn Vfs, dir: &Path, events: u64, bytes: &[u8]) -> Result<PathBuf> {
    vfs::create_dir_all_durable(vfs, dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(file_name(events));
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nth = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{}.{}-{nth}.tmp",
        file_name(events),
        std::process::id()
    ));
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let written = vfs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))
        .and_then(|f| {
            vfs::write_all_at(&*f, bytes, 0).map_err(|e| io("writing", e))?;
            f.sync_all().map_err(|e| io("syncing", e))
        })
        .and_then(|_| vfs.rename(&tmp, &path).map_err(|e| io("renaming", e)));
    if let Err(e) = written {
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    for (_, old) in list(vfs, dir).into_iter().skip(1 + KEEP) {
        let _ = vfs.remove_file(&old);
    }
    Ok(path)
}
