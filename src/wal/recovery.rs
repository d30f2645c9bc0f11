//! Recovery on open: walk every segment in order, find where the records end, truncate a
//! torn tail of the last segment, and refuse (as corruption) anything that would leave a
//! hole: a bad record with valid records after it, or a damaged segment that is not the last.

use super::record::{self, RecordRef};
use super::scan::{Scanner, Step};
use super::segment;
use super::vfs::{self, Kind, Vfs, VfsFile};
use super::Position;
use crate::error::{Error, Result};
use std::io;
use std::path::Path;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// Records that passed their CRC.
    pub valid_records: u64,
    pub segments_scanned: u64,
    /// Bytes of a torn tail that were cut off (zeros of preallocation are not counted).
    pub bytes_truncated: u64,
    /// Where the last valid record starts; `None` for an empty log.
    pub last_valid_position: Option<Position>,
    /// A torn tail was found (and truncated, unless the log was opened read-only).
    pub corruption_detected: bool,
    /// Zero bytes of preallocation found after the last record (the normal state after a
    /// crash with preallocation on; not corruption).
    pub zero_tail_bytes: u64,
}

/// The state of the log after recovery, for the writer to continue from.
pub(crate) struct Recovered {
    pub info: RecoveryInfo,
    /// Segment ids, ascending, with each one's logical end.
    pub segments: Vec<(u64, u64)>,
}

/// How a segment's bytes past its last valid record look.
enum Tail {
    /// Nothing, or only zeros.
    Zeros,
    /// Damaged bytes up to `data_end`, with no valid record among them.
    Torn { data_end: u64 },
    /// A valid record at `at` after the damage: a hole, not a torn write.
    ValidAfter { at: u64 },
}

/// Recovers the log in `dir`, calling `visit` for each valid record in order. With
/// `writable`, a torn tail is truncated, a sealed segment left unfinished is finalized,
/// and empty segments a crashed rotation left after the last record are removed.
/// Without it (a reader beside a possible writer), an unreadable tail of the last segment
/// is where the log ends for now.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    writable: bool,
    start: Position,
    visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
) -> Result<Recovered> {
    let mut ids =
        segment::list(vfs, dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for pair in ids.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::corrupt(format!(
                "segment {} is missing from {} (the log jumps from {} to {})",
                segment::file_name(pair[0] + 1),
                dir.display(),
                segment::file_name(pair[0]),
                segment::file_name(pair[1])
            )));
        }
    }
    if start != Position::default() && !ids.contains(&start.segment_id) {
        return Err(Error::corrupt(format!(
            "segment {} is missing from {}",
            segment::file_name(start.segment_id),
            dir.display()
        )));
    }
    let mut info = RecoveryInfo::default();
    let mut segments = Vec::with_capacity(ids.len());
    // The key of the last valid record, when it is a position (8 bytes): a record found
    // after damage counts as valid data only if it continues this sequence.
    let mut last_key: Option<u64> = None;
    let mut i = 0;
    while i < ids.len() {
        let id = ids[i];
        let is_last = i + 1 == ids.len();
        let name = segment::path(dir, id);
        i += 1;
        if id < start.segment_id {
            // Covered by a checkpoint: complete and finalized when the next one began.
            let st = vfs
                .stat(&name)
                .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
            if st.kind != Kind::File {
                return Err(Error::corrupt(format!(
                    "{} is not a regular file",
                    name.display()
                )));
            }
            segments.push((id, st.len));
            continue;
        }
        let from = if id == start.segment_id {
            start.offset
        } else {
            0
        };
        let file = segment::open(vfs, dir, id, writable)
            .map_err(|e| Error::io(format!("opening {}", name.display()), e))?;
        let file_len = file
            .len()
            .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
        if from > file_len {
            return Err(Error::corrupt(format!(
                "{} is shorter ({file_len} bytes) than the checkpoint says ({from})",
                name.display()
            )));
        }
        // The scanner reads no further than the file's last data: past it are holes or
        // never written preallocation, and reading those would put zero pages in the page
        // cache, which the file system then reports as data (the tail check below would
        // read all of them again).
        let data_end = data_end(&*file, from, file_len)
            .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
        let mut scanner = Scanner::new(file, from, data_end);
        scanner.set_reread_on_bad(!writable);
        info.segments_scanned += 1;
        // Records of a batch whose last record has not been seen yet: the scanner holds
        // their bytes, so they are visited from its buffer once the batch is complete.
        let mut pending: Vec<Position> = Vec::new();
        // The key of the first of them, when it is a position.
        let mut first_pending_key: Option<u64> = None;
        let (end, bad) = loop {
            let step = scanner
                .next()
                .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
            let (offset, continues, key) = match step {
                Step::Record { offset, decoded } => {
                    let rec = decoded.record;
                    let key = <[u8; 8]>::try_from(rec.key).ok().map(u64::from_le_bytes);
                    (offset, rec.batch_continues(), key)
                }
                Step::End { offset } => break (offset, None),
                Step::Bad { offset, error } => break (offset, Some(error)),
            };
            if key.is_some() {
                last_key = key;
            }
            let pos = Position {
                segment_id: id,
                offset,
            };
            if continues {
                if pending.is_empty() {
                    scanner.hold(offset);
                    first_pending_key = key;
                }
                pending.push(pos);
                continue;
            }
            let lost = || {
                Error::corrupt(format!(
                    "{}: a batch's record left the buffer",
                    name.display()
                ))
            };
            for p in pending.drain(..) {
                let d = scanner.record_at(p.offset).ok_or_else(lost)?;
                visit(p, &d.record)?;
                info.valid_records += 1;
            }
            scanner.release();
            let (_, d) = scanner.last_record().ok_or_else(lost)?;
            visit(pos, &d.record)?;
            info.valid_records += 1;
            info.last_valid_position = Some(pos);
        };
        let file = scanner.file();
        // Where the valid, complete records end: before an unfinished batch, if any.
        let valid_end = pending.first().map_or(end, |p| p.offset);
        if bad.is_none() && pending.is_empty() {
            if writable && !is_last && end < file_len {
                segment::finalize(&**file, end)
                    .map_err(|e| Error::io(format!("finalizing {}", name.display()), e))?;
            }
            segments.push((id, end));
            continue;
        }
        let what = match bad {
            Some(e) => e.describe(),
            None => "a batch is cut short",
        };
        let io_err = |e| Error::io(format!("reading {}", name.display()), e);
        // Damage is a torn tail only in the segment that holds the last record: the last
        // one, or one followed only by empty segments (a rotation that crashed before its
        // first record, or a reader seeing a rotation half done).
        let later_empty = if is_last {
            true
        } else {
            all_empty(vfs, dir, &ids[i..]).map_err(io_err)?
        };
        if !writable && later_empty {
            // Another process may be writing these bytes right now: the log ends here
            // for this reader; a writer's recovery decides what they are.
            segments.push((id, valid_end));
            ids.drain(i..).for_each(|later| segments.push((later, 0)));
            break;
        }
        // The previous records' last key, for the "valid data after damage" check: the
        // damaged record itself may have updated it from inside an unfinished batch.
        let key_before = match pending.first() {
            Some(_) => first_pending_key.map(|k| k.wrapping_sub(1)),
            None => last_key,
        }
        .or(last_key);
        let tail = match bad {
            Some(_) => classify_tail(&**file, end, file_len, key_before).map_err(io_err)?,
            None => Tail::Zeros,
        };
        match tail {
            Tail::ValidAfter { at } => {
                return Err(Error::corrupt(format!(
                    "{}: a damaged record at offset {end} ({what}) is followed by a valid record at offset {at}; refusing to drop it",
                    name.display()
                )))
            }
            Tail::Zeros if pending.is_empty() => {
                // Preallocated space never written: the normal end of an unfinished
                // segment, sealed or not.
                info.zero_tail_bytes += file_len - end;
                if writable && !is_last {
                    segment::finalize(&**file, end)
                        .map_err(|e| Error::io(format!("finalizing {}", name.display()), e))?;
                }
            }
            _ if !later_empty => {
                return Err(Error::corrupt(format!(
                    "{}: damaged record at offset {valid_end} ({what}) in a segment that is not the last",
                    name.display()
                )))
            }
            tail => {
                let data_end = match tail {
                    Tail::Torn { data_end } => data_end,
                    _ => end,
                };
                info.corruption_detected = true;
                info.bytes_truncated += data_end.saturating_sub(valid_end);
                cut_tail(&**file, valid_end, file_len)
                    .map_err(|e| Error::io(format!("truncating {}", name.display()), e))?;
            }
        }
        segments.push((id, valid_end));
        if !is_last && later_empty {
            // Segments after the last record that never received one: a rotation that
            // crashed; appends continue in this segment.
            for &later in &ids[i..] {
                let p = segment::path(dir, later);
                vfs.remove_file(&p)
                    .map_err(|e| Error::io(format!("removing empty {}", p.display()), e))?;
            }
            vfs.sync_dir(dir)
                .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
            break;
        }
    }
    Ok(Recovered { info, segments })
}

/// Whether every segment in `ids` holds nothing but zeros.
fn all_empty(vfs: &dyn Vfs, dir: &Path, ids: &[u64]) -> io::Result<bool> {
    for &id in ids {
        let f = segment::open(vfs, dir, id, false)?;
        let len = f.len()?;
        if last_nonzero_end(&*f, 0, len)?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Cuts a torn tail: the bytes from `end` on become zeros (preallocated) or go (not).
fn cut_tail(file: &dyn VfsFile, end: u64, file_len: u64) -> io::Result<()> {
    file.set_len(end)?;
    // Keep the space the segment had, so appends stay on allocated blocks.
    if file_len > end {
        file.allocate(file_len)?;
    }
    file.sync_all()
}

/// Decides what the bytes `[from, file_len)` are: zeros, a torn write, or a hole.
///
/// A valid record after the damage counts only if it starts at or past the end the
/// damaged record's own header claims (a record encoded inside a torn record's payload
/// is payload), and, when keys are positions, if its key comes after `last_key`. Every
/// candidate is filtered by its header and key before its CRC is computed, so the scan
/// is linear in the tail.
fn classify_tail(
    file: &dyn VfsFile,
    from: u64,
    file_len: u64,
    last_key: Option<u64>,
) -> io::Result<Tail> {
    let data_end = match last_nonzero_end(file, from, file_len)? {
        None => return Ok(Tail::Zeros),
        Some(e) => e,
    };
    let mut head = [0u8; record::MAX_OVERHEAD];
    let got = vfs::read_at_most(file, &mut head, from)?;
    let claimed_end = record::peek_len(&head[..got]).map(|l| from.saturating_add(l as u64));
    let mut start = match claimed_end {
        // The damaged record claims to run past everything written: a torn write.
        Some(e) if e >= data_end => return Ok(Tail::Torn { data_end }),
        Some(e) => e,
        None => from + 1,
    };
    // Windows overlap by the longest record a candidate may have, so any such record is
    // whole in one of them.
    const WINDOW: u64 = 64 << 20;
    const OVERLAP: u64 = 32 << 20;
    let mut buf = Vec::new();
    while start < data_end {
        let len = (data_end - start).min(WINDOW);
        buf.resize(len as usize, 0);
        let got = vfs::read_at_most(file, &mut buf, start)?;
        buf.truncate(got);
        let last_window = start + len >= data_end;
        let scan_to = if last_window {
            buf.len()
        } else {
            buf.len().saturating_sub(OVERLAP as usize)
        };
        for i in 0..scan_to {
            if buf[i] == 0 && buf[i..].iter().take(16).all(|&b| b == 0) {
                continue;
            }
            let Ok(d) = record::decode_verified(&buf[i..]) else {
                continue;
            };
            if let (Some(last), Ok(k)) = (last_key, <[u8; 8]>::try_from(d.record.key)) {
                let k = u64::from_le_bytes(k);
                if k <= last || k - last > data_end - from {
                    continue;
                }
            } else if last_key.is_some() {
                continue;
            }
            if record::decode(&buf[i..]).is_ok() {
                return Ok(Tail::ValidAfter {
                    at: start + i as u64,
                });
            }
        }
        if last_window || got == 0 {
            break;
        }
        start += scan_to as u64;
    }
    Ok(Tail::Torn { data_end })
}

/// The end of the last region at or after `from` that may hold non-zero bytes (`from`
/// when there is none), asking the file system only: nothing is read.
fn data_end(file: &dyn VfsFile, from: u64, file_len: u64) -> io::Result<u64> {
    let mut end = from;
    let mut at = from;
    while at < file_len {
        let Some((_, hole)) = file.data_region(at)? else {
            break;
        };
        let hole = hole.min(file_len);
        end = end.max(hole);
        at = hole.max(at + 1);
    }
    Ok(end)
}

/// The offset just past the last non-zero byte in `[from, file_len)`, or `None` if all
/// zero. Skips holes and unwritten (preallocated) extents where the file system tells
/// them apart, so a preallocated segment's zero tail costs almost nothing to recognize.
pub(crate) fn last_nonzero_end(
    file: &dyn VfsFile,
    from: u64,
    file_len: u64,
) -> io::Result<Option<u64>> {
    let mut last = None;
    let mut at = from;
    let mut buf = vec![0u8; 1 << 20];
    while at < file_len {
        let (data, hole) = match file.data_region(at)? {
            None => break,
            Some(r) => r,
        };
        let hole = hole.min(file_len);
        let mut off = data.max(at);
        while off < hole {
            let n = ((hole - off) as usize).min(buf.len());
            let got = vfs::read_at_most(file, &mut buf[..n], off)?;
            if got == 0 {
                break;
            }
            if let Some(p) = buf[..got].iter().rposition(|&b| b != 0) {
                last = Some(off + p as u64 + 1);
            }
            off += got as u64;
        }
        at = hole.max(at + 1);
    }
    Ok(last)
}
