//! Point-in-time restore from a backup (and archived segments), and the verification
//! of a backup (docs/backup.md).
//!
//! A restore writes a new store holding the backup's log (continued by the archived
//! segments that follow it) up to a point: a position, or the last event at or before a
//! time. The log is cut at the start of a record, never inside a multi-event append (an
//! append is atomic: a point inside one moves back to where it begins, and the restore
//! says so); lifecycle entries after the point go with the events. Index files of the
//! segments restored whole are copied; the others are built when the restored store is
//! first opened writable. The backup's snapshot is kept when it covers no event after
//! the point, otherwise left out (the first open replays the log). The destination is
//! marked incomplete until everything is synced, as a backup is.

use super::backup::{self, MarkerState};
use super::envelope::{self, Envelope};
use super::{is_marker, segindex, snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::wal::record::{self, RecordRef};
use crate::wal::segment;
use crate::wal::vfs::{self, Kind, OpenMode, Vfs};
use std::path::{Path, PathBuf};

/// Where a restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Everything the backup (and archive) holds.
    End,
    /// The events before this position.
    Position(u64),
    /// The events whose timestamp is at or before this time (µs since the epoch).
    Time(u64),
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreInfo {
    /// The restored store holds exactly the positions before this one.
    pub position: u64,
    /// The position the backup's marker names.
    pub backup_position: u64,
    /// Segments taken from the archive directory (after or instead of the backup's last).
    pub archived_segments: u64,
    /// Segments written to the restored store.
    pub segments: u64,
    /// Whether the point fell inside a multi-event append and moved back to its start.
    pub moved_to_append_start: bool,
}

/// What `verify_backup` found.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyInfo {
    /// The backup is consistent at this position (its marker's).
    pub position: u64,
    pub records: u64,
    pub segments: u64,
    pub index_pages: u64,
}

/// One record of a log being scanned.
struct Seen {
    /// Index of its segment in the scanned list, and its offset there.
    segment: usize,
    offset: u64,
    /// Its position (for a marker record: the last position it ends).
    position: u64,
    /// Its timestamp, for an event or a lifecycle entry.
    timestamp_us: Option<u64>,
    batch_continues: bool,
}

/// Scans the segments `paths` in order, checking every record (framing, CRC, key order),
/// calling `visit` for each; `visit` returning `false` stops the scan. Returns the next
/// position after the last record scanned.
fn scan(
    vfs: &dyn Vfs,
    paths: &[PathBuf],
    visit: &mut dyn FnMut(&Seen, &[u8]) -> Result<bool>,
) -> Result<u64> {
    let mut next = 0u64;
    for (i, path) in paths.iter().enumerate() {
        let name = path.display();
        let bytes =
            vfs::read_file(vfs, path).map_err(|e| Error::io(format!("reading {name}"), e))?;
        let mut at = 0usize;
        while at < bytes.len() {
            let d = record::decode(&bytes[at..]).map_err(|e| {
                Error::corrupt(format!(
                    "{name} offset {at}: {} (the log is whole up to position {next})",
                    e.describe()
                ))
                .at_position(next)
            })?;
            let rec = d.record;
            let keyed = rec.key.len() == 8 && rec.value.first() != Some(&b'{');
            let key = keyed.then(|| u64::from_le_bytes(rec.key.try_into().unwrap()));
            let position = key.unwrap_or(next);
            if position < next {
                return Err(Error::corrupt(format!(
                    "{name} offset {at}: the record has the key of position {position}, which comes before position {next}"
                ))
                .at_position(next));
            }
            let seen = Seen {
                segment: i,
                offset: at as u64,
                position,
                timestamp_us: timestamp_of(&rec).map_err(|e| {
                    e.prefixed(format!("{name} offset {at}: "))
                        .at_position(position)
                })?,
                batch_continues: rec.batch_continues(),
            };
            if !visit(&seen, &bytes[at..at + d.len])? {
                return Ok(next);
            }
            next = position + 1;
            at += d.len;
        }
    }
    Ok(next)
}

/// A record's timestamp (an event's or a lifecycle entry's); `None` for a marker.
fn timestamp_of(rec: &RecordRef<'_>) -> Result<Option<u64>> {
    if is_marker(rec) {
        return Ok(None);
    }
    Ok(Some(match envelope::decode(rec.value)? {
        Envelope::Binary(e) => e.timestamp_us,
        Envelope::Legacy(l) => l.timestamp.saturating_mul(1_000_000),
        Envelope::Lifecycle { timestamp_us, .. } => timestamp_us,
    }))
}

/// The position a complete backup in `dir` names; the errors a restore and a verify
/// give for a directory that is not one.
fn backup_position(vfs: &dyn Vfs, dir: &Path) -> Result<u64> {
    match backup::read_marker(vfs, dir)? {
        Some(MarkerState::Complete { position }) => Ok(position),
        Some(MarkerState::Incomplete { what }) => Err(backup::incomplete(dir, &what)),
        None => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} is not a backup (it has no {} file)",
                dir.display(),
                backup::MARKER
            ),
        )),
    }
}

/// The segment ids in `dir`, ascending (none when the folder is missing).
fn segment_ids(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<u64>> {
    match segment::list(vfs, dir) {
        Ok(ids) => Ok(ids),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// The log a restore reads: the backup's segments, then the archived segments that
/// continue it (the archive's copy of the backup's last segment replaces it when it
/// starts with the same bytes and is longer). Returns the paths (with their ids and
/// whether they come from the backup).
fn restore_sources(
    vfs: &dyn Vfs,
    backup: &Path,
    archive: Option<&Path>,
) -> Result<Vec<(u64, PathBuf, bool)>> {
    let log = backup.join("events");
    let mut out: Vec<(u64, PathBuf, bool)> = segment_ids(vfs, &log)?
        .into_iter()
        .map(|id| (id, segment::path(&log, id), true))
        .collect();
    let Some(archive) = archive else {
        return Ok(out);
    };
    if !matches!(vfs.stat(archive), Ok(s) if s.kind == Kind::Dir) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no archive directory at {}", archive.display()),
        ));
    }
    if let Some((last, path, _)) = out.last().cloned() {
        let archived = segment::path(archive, last);
        let read = |p: &Path| {
            vfs::read_file(vfs, p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        if vfs.stat(&archived).is_ok() {
            let (mine, theirs) = (read(&path)?, read(&archived)?);
            if theirs.len() > mine.len() && theirs.starts_with(&mine) {
                *out.last_mut().unwrap() = (last, archived, false);
            }
        }
    }
    let mut next = out.last().map_or(0, |l| l.0 + 1);
    for id in segment_ids(vfs, archive)? {
        if id < next {
            continue;
        }
        if id != next {
            break; // a gap: what follows cannot continue the log
        }
        out.push((id, segment::path(archive, id), false));
        next += 1;
    }
    Ok(out)
}

/// Where the restored log ends.
struct Cut {
    /// Index (in the sources) of the segment the cut is in, and the bytes kept of it;
    /// `None`: the whole log is kept.
    at: Option<(usize, u64)>,
    /// The position the restored store's next event gets.
    position: u64,
    /// The position of the last record kept (a marker must follow when it is not
    /// `position - 1`).
    last_kept: Option<u64>,
    moved: bool,
}

/// Finds the cut for `point` in the log `paths`.
fn find_cut(vfs: &dyn Vfs, paths: &[PathBuf], point: RestorePoint) -> Result<Cut> {
    // The first record of the current append (segment, offset, position), and the last
    // record before it.
    let mut batch_start: Option<(usize, u64, u64)> = None;
    let mut before_batch: Option<u64> = None;
    let mut last: Option<u64> = None;
    let mut found: Option<Cut> = None;
    let end = scan(vfs, paths, &mut |r, _| {
        if batch_start.is_none() {
            batch_start = Some((r.segment, r.offset, r.position));
            before_batch = last;
        }
        let past = match point {
            RestorePoint::End => false,
            RestorePoint::Position(n) => r.position >= n,
            RestorePoint::Time(t) => r.timestamp_us.is_some_and(|ts| ts > t),
        };
        if past {
            let (seg, off, first) = batch_start.expect("set above");
            let moved = (seg, off) != (r.segment, r.offset);
            let position = match point {
                RestorePoint::Position(n) if !moved => n,
                _ => first,
            };
            found = Some(Cut {
                at: Some((seg, off)),
                position,
                last_kept: before_batch,
                moved,
            });
            return Ok(false);
        }
        last = Some(r.position);
        if !r.batch_continues {
            batch_start = None;
        }
        Ok(true)
    })?;
    if let Some(c) = found {
        return Ok(c);
    }
    if let RestorePoint::Position(n) = point {
        if n > end {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {n} is past the end of what can be restored (position {end})"),
            ));
        }
    }
    Ok(Cut {
        at: None,
        position: end,
        last_kept: last,
        moved: false,
    })
}

/// Restores the backup in `backup` (continued by the archived segments in `archive`)
/// into the new store directory `dest`, up to `point`.
pub fn restore(
    vfs: &dyn Vfs,
    backup: &Path,
    archive: Option<&Path>,
    dest: &Path,
    point: RestorePoint,
) -> Result<RestoreInfo> {
    let backup_position = backup_position(vfs, backup)?;
    let sources = restore_sources(vfs, backup, archive)?;
    let paths: Vec<PathBuf> = sources.iter().map(|s| s.1.clone()).collect();
    // Everything is read and checked before the destination is touched.
    let cut = find_cut(vfs, &paths, point)?;
    prepare_dest(vfs, dest)?;
    let (to_log, to_idx) = (dest.join("events"), dest.join("index"));
    let keep = match cut.at {
        Some((seg, off)) => sources[..seg]
            .iter()
            .map(|s| (s.0, s.1.clone(), None, s.2))
            .chain((off > 0).then(|| {
                let s = &sources[seg];
                (s.0, s.1.clone(), Some(off), s.2)
            }))
            .collect::<Vec<_>>(),
        None => sources
            .iter()
            .map(|s| (s.0, s.1.clone(), None, s.2))
            .collect(),
    };
    for (i, (id, from, limit, from_backup)) in keep.iter().enumerate() {
        let to = segment::path(&to_log, *id);
        copy_file(vfs, from, *limit, &to)?;
        // Index files of segments restored whole and not last stay valid.
        let idx = backup.join("index").join(segindex::file_name(*id));
        if *from_backup && limit.is_none() && i + 1 < keep.len() && vfs.stat(&idx).is_ok() {
            copy_file(vfs, &idx, None, &to_idx.join(segindex::file_name(*id)))?;
        }
    }
    if cut.position > 0 && cut.last_kept.is_none_or(|l| l + 1 < cut.position) {
        // The positions between the last record kept and the point were emptied (by a
        // compaction): a marker keeps them from being handed out again.
        let id = keep.last().map_or(0, |k| k.0);
        append_marker(vfs, &segment::path(&to_log, id), cut.position - 1)?;
    }
    if let Some((n, path)) = snapshot::list(vfs, &backup.join("snapshots"))
        .into_iter()
        .next()
    {
        if n <= cut.position {
            let name = path.file_name().expect("a listed file").to_owned();
            copy_file(vfs, &path, None, &dest.join("snapshots").join(name))?;
        }
    }
    // The subjects' keys: all of the backup's (a key of an event after the point is
    // one more key, of no use and no harm).
    let keys = super::keys::path(backup);
    if vfs.stat(&keys).is_ok() {
        copy_file(vfs, &keys, None, &super::keys::path(dest))?;
    }
    for sub in ["events", "index", "snapshots"] {
        let d = dest.join(sub);
        vfs.sync_dir(&d)
            .map_err(|e| Error::io(format!("syncing {}", d.display()), e))?;
    }
    let marker = dest.join(backup::MARKER);
    vfs.remove_file(&marker)
        .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    vfs.sync_dir(dest)
        .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    Ok(RestoreInfo {
        position: cut.position,
        backup_position,
        archived_segments: keep.iter().filter(|k| !k.3).count() as u64,
        segments: keep.len() as u64,
        moved_to_append_start: cut.moved,
    })
}

/// A restore's destination: missing, an empty directory, or one an interrupted restore
/// left (its files are removed). Created and marked incomplete, with its folders.
fn prepare_dest(vfs: &dyn Vfs, dest: &Path) -> Result<()> {
    if let Some(names) = backup::dest_names(vfs, dest, "restore")? {
        let retry = matches!(
            backup::read_marker(vfs, dest),
            Ok(Some(MarkerState::Incomplete { ref what })) if what == "restore"
        );
        if retry {
            clear_restore(vfs, dest)?;
        } else if !names.is_empty() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "the restore destination {} is not empty: restore into a new directory",
                    dest.display()
                ),
            ));
        }
    }
    backup::create_marked(vfs, dest, "restore")
}

/// Removes what an interrupted restore into `dest` wrote in its folders.
fn clear_restore(vfs: &dyn Vfs, dest: &Path) -> Result<()> {
    for sub in ["events", "index", "snapshots"] {
        let dir = dest.join(sub);
        let names = match vfs.list_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        for name in names {
            let p = dir.join(name);
            vfs.remove_file(&p)
                .map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
    }
    let keys = super::keys::path(dest);
    match vfs.remove_file(&keys) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", keys.display()), e))
        }
        _ => Ok(()),
    }
}

/// Copies `from` (its first `limit` bytes when given) to the new file `to`, synced.
fn copy_file(vfs: &dyn Vfs, from: &Path, limit: Option<u64>, to: &Path) -> Result<()> {
    let src = vfs
        .open(from, OpenMode::Read)
        .map_err(|e| Error::io(format!("opening {}", from.display()), e))?;
    let len = match limit {
        Some(l) => l,
        None => src
            .len()
            .map_err(|e| Error::io(format!("reading {}", from.display()), e))?,
    };
    let io = |what: &str, e| Error::io(format!("{what} {}", to.display()), e);
    let out = vfs
        .open(to, OpenMode::CreateNew)
        .map_err(|e| io("creating", e))?;
    let mut buf = vec![0u8; (1usize << 20).min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let want = (len - at).min(buf.len() as u64) as usize;
        let got = vfs::read_at_most(&*src, &mut buf[..want], at)
            .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        if got < want {
            return Err(Error::corrupt(format!(
                "{} ends at {} before {len} bytes",
                from.display(),
                at + got as u64
            )));
        }
        vfs::write_all_at(&*out, &buf[..want], at).map_err(|e| io("writing", e))?;
        at += want as u64;
    }
    out.sync_all().map_err(|e| io("syncing", e))
}

/// Appends a marker record for `position` to the segment at `path` (created if
/// missing), synced.
fn append_marker(vfs: &dyn Vfs, path: &Path, position: u64) -> Result<()> {
    let key = position.to_le_bytes();
    let bytes = RecordRef {
        tombstone: true,
        ..RecordRef::put(&key, &[])
    }
    .encode();
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let f = match vfs.open(path, OpenMode::ReadWrite) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vfs
            .open(path, OpenMode::CreateNew)
            .map_err(|e| io("creating", e))?,
        Err(e) => return Err(io("opening", e)),
    };
    let at = f.len().map_err(|e| io("reading", e))?;
    vfs::write_all_at(&*f, &bytes, at).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))
}

/// Checks every record and index page of the complete backup in `dir`: every record's
/// framing, CRC and envelope, positions in order up to the marker's position, no append
/// left open at the end; every index file's pages and header against its segment; the
/// snapshot's checksum. The first damage is an error naming the file, the offset (or
/// page) and the position the backup is whole up to.
pub fn verify_backup(vfs: &dyn Vfs, dir: &Path) -> Result<VerifyInfo> {
    let position = backup_position(vfs, dir)?;
    let log = dir.join("events");
    let ids = segment_ids(vfs, &log)?;
    let paths: Vec<PathBuf> = ids.iter().map(|&id| segment::path(&log, id)).collect();
    if ids.iter().enumerate().any(|(i, &id)| id != i as u64) {
        return Err(Error::corrupt(format!(
            "{}: segments are missing (found {:?})",
            log.display(),
            ids
        )));
    }
    // Per segment: its first position, the position after it, where its last record
    // ends and that record's CRC.
    let mut spans: Vec<(u64, u64, u64, u32)> = vec![(0, 0, 0, 0); ids.len()];
    let mut records = 0u64;
    let mut open_batch: Option<(usize, u64)> = None;
    let end = scan(vfs, &paths, &mut |r, bytes| {
        records += 1;
        let span = &mut spans[r.segment];
        span.1 = r.position + 1;
        span.2 = r.offset + bytes.len() as u64;
        span.3 = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        open_batch = r.batch_continues.then_some((r.segment, r.offset));
        Ok(true)
    })?;
    if let Some((seg, off)) = open_batch {
        return Err(Error::corrupt(format!(
            "{} offset {off}: the log ends inside an append (its last record says more follow)",
            paths[seg].display()
        )));
    }
    if end != position {
        return Err(Error::corrupt(format!(
            "the log ends at position {end}, the backup's marker says {position}"
        )));
    }
    let mut start = 0;
    for span in spans.iter_mut() {
        span.0 = start;
        start = span.1.max(start);
    }
    let index_pages = verify_index_files(vfs, dir, &ids, &spans)?;
    if let Some((_, path)) = snapshot::list(vfs, &dir.join("snapshots"))
        .into_iter()
        .next()
    {
        vfs::read_file(vfs, &path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
            .and_then(|b| snapshot::decode(&b))
            .map_err(|e| e.prefixed(format!("{}: ", path.display())))?;
    }
    let keys = super::keys::path(dir);
    match vfs::read_file(vfs, &keys) {
        Ok(b) => {
            super::keys::check(&b).map_err(|e| e.prefixed(format!("{}: ", keys.display())))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", keys.display()), e)),
    }
    Ok(VerifyInfo {
        position,
        records,
        segments: ids.len() as u64,
        index_pages,
    })
}

/// Checks the index files of a backup: every page, and the header against the segment
/// it indexes (`spans`: per segment its first position, the position after it, where its
/// last record ends, that record's CRC). The last segment has none. Returns the pages.
fn verify_index_files(
    vfs: &dyn Vfs,
    dir: &Path,
    ids: &[u64],
    spans: &[(u64, u64, u64, u32)],
) -> Result<u64> {
    let mut pages = 0;
    for (&id, &(first, after, records_end, crc)) in ids.iter().zip(spans) {
        let path = dir.join("index").join(segindex::file_name(id));
        let bytes = match vfs::read_file(vfs, &path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if Some(&id) == ids.last() {
            return Err(Error::corrupt(format!(
                "{}: the log's last segment has an index file",
                path.display()
            )));
        }
        let name = path.display();
        let (s, n) = segindex::check_file(id, &bytes)
            .map_err(|e| e.prefixed(format!("{name}: ")).at_position(first))?;
        pages += n;
        let seg_len = vfs
            .stat(&segment::path(&dir.join("events"), id))
            .map(|s| s.len)
            .unwrap_or(0);
        if s.first != first || s.end() != after || s.segment_len != seg_len {
            return Err(Error::corrupt(format!(
                "{name}: it indexes positions {} to {} in {} bytes; the segment has positions {first} to {after} in {seg_len}",
                s.first,
                s.end(),
                s.segment_len
            ))
            .at_position(first));
        }
        if s.segment_len == records_end && s.last_crc != crc {
            return Err(Error::corrupt(format!(
                "{name}: the segment's last record is not the one it indexed"
            ))
            .at_position(first));
        }
    }
    Ok(pages)
}
