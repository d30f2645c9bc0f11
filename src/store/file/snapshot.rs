//! Checkpoints: the indexes and every projection's state as of one position, in one
//! checksummed file, written atomically (temporary file, fsync, rename, directory fsync),
//! so that opening a large store replays only the log's tail.

use super::index::{Index, StreamEntry};
use crate::error::{Error, Result};
use crate::store::FastMap;
use crate::wal::vfs::{self, OpenMode, Vfs};
use crate::wal::Position;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EVSSNAP3";
/// A snapshot of a store that has lifecycle entries: `MAGIC`'s layout, then the removal
/// state (docs/lifecycle.md). Written only then, so that a version of evstore that
/// cannot honour removals never loads one (it rebuilds from the log and refuses the log's
/// lifecycle entries instead).
const MAGIC_LIFECYCLE: &[u8; 8] = b"EVSSNAP4";
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

/// Bytes of an encoding gathered before they are handed on.
const CHUNK: usize = 1 << 20;

/// Where an encoding goes, in pieces of about `CHUNK` bytes, with the running CRC of
/// everything after the magic: a snapshot is never one buffer as large as the stream table.
struct Out<'a> {
    buf: Vec<u8>,
    crc: u32,
    /// Whether the magic went out already.
    started: bool,
    sink: &'a mut dyn FnMut(&[u8]) -> Result<()>,
}

impl Out<'_> {
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// Hands on what is gathered once it is a chunk.
    fn spill(&mut self) -> Result<()> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let skip = if self.started { 0 } else { MAGIC.len() };
        self.crc = crc32c::crc32c_append(self.crc, &self.buf[skip..]);
        self.started = true;
        (self.sink)(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Encodes a snapshot of `index` (whose last event ends at `wal_end`) and `projections`
/// into `sink`, piece by piece: its stream table and what it holds in memory (the sealed
/// segments' events are in their index files).
pub fn encode_into(
    index: &Index,
    wal_end: Position,
    last_record_crc: u32,
    projections: &[(String, Vec<u8>)],
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let tail = index.len() - index.base.min(index.len());
    let mut out = Out {
        buf: Vec::with_capacity(CHUNK + 64 * 1024),
        crc: 0,
        started: false,
        sink,
    };
    let life = !index.life.is_empty();
    out.buf
        .extend_from_slice(if life { MAGIC_LIFECYCLE } else { MAGIC });
    out.u64(index.len());
    out.u64(wal_end.segment_id);
    out.u64(wal_end.offset);
    out.u64(last_record_crc as u64);
    out.u64(index.last_wal().map_or(u64::MAX, super::index::pack));
    out.u64(index.last_timestamp());
    out.u64(index.base);
    out.u64(index.streams.len() as u64);
    for s in &index.streams {
        out.bytes(s.name.as_bytes());
        out.u64(s.count);
        out.u64(s.first);
        out.u64(s.last);
        out.u64(s.tail.len() as u64);
        for &p in &s.tail {
            out.u64(p);
        }
        out.spill()?;
    }
    out.u64(index.type_counts.len() as u64);
    for (name, &count) in &index.type_counts {
        out.bytes(name.as_bytes());
        out.u64(count);
        out.spill()?;
    }
    out.u64(tail);
    for (w, t, sid) in index.tail_events() {
        out.u64(w);
        out.u64(t);
        out.u32(sid);
        out.spill()?;
    }
    out.u64(projections.len() as u64);
    for (name, bytes) in projections {
        out.bytes(name.as_bytes());
        out.bytes(bytes);
        out.spill()?;
    }
    if life {
        let mut state = Vec::new();
        index.life.encode_into(&mut state);
        out.bytes(&state);
    }
    out.flush()?;
    let crc = out.crc;
    (out.sink)(&crc.to_le_bytes())
}

/// `encode_into` a buffer.
pub fn encode(
    index: &Index,
    wal_end: Position,
    last_record_crc: u32,
    projections: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let mut all = Vec::new();
    let mut sink = |b: &[u8]| {
        all.extend_from_slice(b);
        Ok(())
    };
    encode_into(index, wal_end, last_record_crc, projections, &mut sink)
        .expect("a buffer takes every piece");
    all
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
    if bytes.len() < MAGIC.len() + 4 {
        return Err(Error::corrupt("not a snapshot file (bad magic)"));
    }
    let life = match &bytes[..MAGIC.len()] {
        m if m == MAGIC => false,
        m if m == MAGIC_LIFECYCLE => true,
        _ => return Err(Error::corrupt("not a snapshot file (bad magic)")),
    };
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
    let mut index = Index::from_parts(base, streams, type_counts, tail, last_timestamp, last_wal)?;
    let mut projections = HashMap::new();
    for _ in 0..r.count(16)? {
        let name = r.string()?.to_owned();
        projections.insert(name, r.counted()?.to_vec());
    }
    // A snapshot without the section (of a store that had no lifecycle entry, or of an
    // older version) has nothing removed.
    if life {
        index.life = super::lifecycle::LifeState::decode(r.counted()?)?;
        if index.life.is_empty() || r.at != body.len() {
            return Err(Error::corrupt(
                "the snapshot's lifecycle state is malformed",
            ));
        }
    }
    Ok(Snapshot {
        index,
        wal_end,
        last_record_crc,
        projections,
    })
}

/// A snapshot written to its temporary file, not yet durable nor under its name.
pub struct Written<'a> {
    vfs: &'a dyn Vfs,
    dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
    file: crate::wal::vfs::FileRef,
}

/// Writes a snapshot covering `events` events into a temporary file in `dir`, its bytes
/// coming from `encode` piece by piece; `Written::finish` makes it durable and gives it
/// its name. A failure leaves no temporary file behind.
pub fn begin<'a>(
    vfs: &'a dyn Vfs,
    dir: &Path,
    events: u64,
    encode: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<Written<'a>> {
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
    let file = vfs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))?;
    let mut off = 0u64;
    let mut sink = |b: &[u8]| -> Result<()> {
        vfs::write_all_at(&*file, b, off).map_err(|e| io("writing", e))?;
        off += b.len() as u64;
        Ok(())
    };
    if let Err(e) = encode(&mut sink) {
        drop(file);
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    Ok(Written {
        vfs,
        dir: dir.to_path_buf(),
        tmp,
        path,
        file,
    })
}

impl Written<'_> {
    /// Syncs the file, renames it to its name, syncs the directory, then removes all but
    /// the newest few older snapshots.
    pub fn finish(self) -> Result<PathBuf> {
        let (vfs, tmp) = (self.vfs, &self.tmp);
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let done = self
            .file
            .sync_all()
            .map_err(|e| io("syncing", e))
            .and_then(|_| vfs.rename(tmp, &self.path).map_err(|e| io("renaming", e)));
        drop(self.file);
        if let Err(e) = done {
            let _ = vfs.remove_file(tmp);
            return Err(e);
        }
        vfs.sync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))?;
        for (_, old) in list(vfs, &self.dir).into_iter().skip(1 + KEEP) {
            let _ = vfs.remove_file(&old);
        }
        Ok(self.path)
    }
}

/// Writes a snapshot of `bytes` covering `events` events atomically into `dir` (see
/// `begin`).
pub fn write(vfs: &dyn Vfs, dir: &Path, events: u64, bytes: &[u8]) -> Result<PathBuf> {
    begin(vfs, dir, events, |sink| sink(bytes))?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_of_several_chunks_decodes_to_the_same_index() {
        let mut ix = Index::default();
        let mut offset = 0;
        for i in 0..60_000u64 {
            let stream = if i % 9 == 0 {
                String::new()
            } else {
                format!("stream-{}", i % 20_000)
            };
            let at = Position {
                segment_id: 0,
                offset,
            };
            offset += 100 + i % 7;
            let version = ix.stream_len(&stream);
            ix.push(
                at,
                1_000 + i / 3,
                &stream,
                version,
                if i % 2 == 0 { "A" } else { "B" },
            );
        }
        let wal_end = Position {
            segment_id: 0,
            offset,
        };
        let projections = vec![("p".to_string(), vec![7u8; 3 * CHUNK])];
        let bytes = encode(&ix, wal_end, 42, &projections);
        assert!(bytes.len() > 4 * CHUNK);
        let snap = decode(&bytes).unwrap();
        assert_eq!(snap.index, ix);
        assert_eq!((snap.wal_end, snap.last_record_crc), (wal_end, 42));
        assert_eq!(snap.projections["p"], projections[0].1);
        let mut bad = bytes.clone();
        bad[CHUNK + 5] ^= 1;
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn the_removal_state_rides_in_the_snapshot_and_an_old_one_has_none() {
        use crate::store::lifecycle::LifecycleOp;
        let mut ix = Index::default();
        let at = |offset| Position {
            segment_id: 0,
            offset,
        };
        ix.push(at(0), 10, "s", 0, "T");
        ix.push(at(50), 11, "s", 1, "T");
        let old = encode(&ix, at(100), 7, &[]);
        assert_eq!(&old[..8], MAGIC);
        ix.push_entry(at(100), 12);
        let op = LifecycleOp::Truncate {
            stream: "s".into(),
            before_version: 1,
            version: 1,
        };
        ix.apply_lifecycle(&op, 2, 12);
        let new = encode(&ix, at(140), 7, &[]);
        assert_eq!(&new[..8], MAGIC_LIFECYCLE);
        let back = decode(&new).unwrap();
        assert_eq!(back.index, ix);
        assert_eq!(
            back.index.life.removals.stream("s").unwrap().removed_before,
            1
        );
        // A snapshot written before lifecycle entries existed loads with none.
        assert!(decode(&old).unwrap().index.life.is_empty());
    }
}
