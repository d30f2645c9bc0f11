//! Checkpoints: the indexes and every projection's state as of one position, in one
//! checksummed file, written atomically (temporary file, fsync, rename, directory fsync),
//! so that opening a large store replays only the log's tail.

use super::index::Index;
use crate::error::{Error, Result};
use crate::wal::vfs::{self, OpenMode, Vfs};
use crate::wal::Position;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EVSSNAP2";
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

/// Encodes a snapshot of `index` (whose last event ends at `wal_end`) and `projections`.
pub fn encode(
    index: &Index,
    wal_end: Position,
    last_record_crc: u32,
    projections: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + index.wal.len() * 24);
    out.extend_from_slice(MAGIC);
    put_u64(&mut out, index.len());
    put_u64(&mut out, wal_end.segment_id);
    put_u64(&mut out, wal_end.offset);
    put_u64(&mut out, last_record_crc as u64);
    for &w in &index.wal {
        put_u64(&mut out, w);
    }
    for &t in &index.timestamps {
        put_u64(&mut out, t);
    }
    let mut names: Vec<(&str, u32)> = index.stream_ids.iter().map(|(k, &v)| (&**k, v)).collect();
    names.sort_by_key(|&(_, id)| id);
    put_u64(&mut out, names.len() as u64);
    for (name, id) in names {
        put_bytes(&mut out, name.as_bytes());
        let positions = &index.streams[id as usize];
        put_u64(&mut out, positions.len() as u64);
        for &p in positions {
            put_u64(&mut out, p);
        }
    }
    put_u64(&mut out, index.type_counts.len() as u64);
    for (name, &count) in &index.type_counts {
        put_bytes(&mut out, name.as_bytes());
        put_u64(&mut out, count);
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
    if n.saturating_mul(16) > (body.len() - r.at) as u64 {
        return Err(Error::corrupt(
            "the snapshot's event count runs past its end",
        ));
    }
    let wal: Vec<u64> = (0..n).map(|_| r.u64()).collect::<Result<_>>()?;
    let timestamps: Vec<u64> = (0..n).map(|_| r.u64()).collect::<Result<_>>()?;
    // A checksum proves only that the file is as written: check that it makes sense too.
    if wal.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::corrupt(
            "the snapshot's log positions are not increasing",
        ));
    }
    if timestamps.windows(2).any(|t| t[0] > t[1]) {
        return Err(Error::corrupt("the snapshot's timestamps decrease"));
    }
    if let Some(&last) = wal.last() {
        if super::index::pack(wal_end) <= last {
            return Err(Error::corrupt("the snapshot ends before its last event"));
        }
    }
    let mut index = Index {
        wal,
        timestamps,
        ..Index::default()
    };
    for id in 0..r.count(16)? {
        let name = r.string()?;
        let count = r.count(8)?;
        let positions: Vec<u64> = (0..count).map(|_| r.u64()).collect::<Result<_>>()?;
        if positions.iter().any(|&p| p >= n) || positions.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::corrupt(
                "a snapshot stream names positions out of order or past its events",
            ));
        }
        if index.stream_ids.contains_key(name) {
            return Err(Error::corrupt("a snapshot names a stream twice"));
        }
        index.stream_ids.insert(name.into(), id as u32);
        index.streams.push(positions);
    }
    for _ in 0..r.count(16)? {
        let name = r.string()?;
        index.type_counts.insert(name.into(), r.u64()?);
    }
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
