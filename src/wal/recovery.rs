//! Recovery on open: walk every segment in order, find where the records end, truncate a
//! torn tail of the last segment, and refuse (as corruption) anything that would leave a
//! hole: a bad record with valid records after it, or a damaged segment that is not the last.

use super::record::{self, DecodeError, RecordRef};
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

/// What part of the log recovery reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Range {
    /// Everything before this is trusted (the end of what a checkpoint covers).
    pub start: Position,
    /// The key the record at `start` has, when keys are positions (the event store's
    /// logs): damage with no valid record before it is then searched for valid records
    /// with the key filter too, which keeps the search linear.
    pub start_key: Option<u64>,
    /// A reader's bound (the writer's durable mark): records at or past it are not read.
    pub until: Option<Position>,
}

/// How often, and how long apart, a reader looks again at damage that valid records
/// follow before it calls it corruption: a writer's write in flight can show a later page
/// before an earlier one, for a moment.
const SETTLE_TRIES: u32 = 3;
const SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Recovers the log in `dir`, calling `visit` for each valid record in order. With
/// `writable`, a torn tail is truncated, a sealed segment left unfinished is finalized,
/// and empty segments a crashed rotation left after the last record are removed.
/// Without it (a reader beside a possible writer), an unreadable tail of the last segment
/// is where the log ends for now; damage that valid records follow is corruption for
/// every open.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    writable: bool,
    range: Range,
    visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
) -> Result<Recovered> {
    let ids = segment_ids(vfs, dir, range.start)?;
    let until = range.until.map(|u| u.max(range.start));
    let mut r = Recovery {
        vfs,
        dir,
        writable,
        until,
        next_key: range.start_key,
        info: RecoveryInfo::default(),
        segments: Vec::with_capacity(ids.len()),
    };
    for (i, &id) in ids.iter().enumerate() {
        if id < range.start.segment_id {
            r.covered(id)?;
            continue;
        }
        if until.is_some_and(|u| id > u.segment_id) {
            break;
        }
        let from = if id == range.start.segment_id {
            range.start.offset
        } else {
            0
        };
        if r.segment(id, from, &ids[i + 1..], visit)? == Next::Stop {
            break;
        }
    }
    Ok(Recovered {
        info: r.info,
        segments: r.segments,
    })
}

/// The log's segment ids, ascending; refuses a gap, or a checkpoint's segment missing.
fn segment_ids(vfs: &dyn Vfs, dir: &Path, start: Position) -> Result<Vec<u64>> {
    let ids =
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
    Ok(ids)
}

/// Whether recovery goes on with the next segment.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Go,
    Stop,
}

/// Recovery's state as it walks the segments.
struct Recovery<'a> {
    vfs: &'a dyn Vfs,
    dir: &'a Path,
    writable: bool,
    until: Option<Position>,
    /// The key the next valid record has, when keys are positions: a record found after
    /// damage counts as valid data only if it continues this sequence.
    next_key: Option<u64>,
    info: RecoveryInfo,
    segments: Vec<(u64, u64)>,
}

/// One segment's walk: where its records stop and why.
#[derive(Default)]
struct Walk {
    /// The end of the records, or where bad bytes start.
    end: u64,
    bad: Option<DecodeError>,
    /// Records of a batch whose last record has not been seen yet: the scanner holds their
    /// bytes, so they are visited from its buffer once the batch is complete.
    pending: Vec<Position>,
    /// The key of the first of them, when it is a position.
    first_pending_key: Option<u64>,
}

impl Walk {
    /// Where the valid, complete records end: before an unfinished batch, if any.
    fn valid_end(&self) -> u64 {
        self.pending.first().map_or(self.end, |p| p.offset)
    }
}

impl Recovery<'_> {
    /// A segment a checkpoint covers: complete and finalized when the next one began.
    fn covered(&mut self, id: u64) -> Result<()> {
        let name = segment::path(self.dir, id);
        let st = self
            .vfs
            .stat(&name)
            .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
        if st.kind != Kind::File {
            return Err(Error::corrupt(format!(
                "{} is not a regular file",
                name.display()
            )));
        }
        self.segments.push((id, st.len));
        Ok(())
    }

    /// Recovers segment `id` from offset `from`; `later` are the ids after it.
    fn segment(
        &mut self,
        id: u64,
        from: u64,
        later: &[u64],
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<Next> {
        let name = segment::path(self.dir, id);
        let io_err = |e| Error::io(format!("reading {}", name.display()), e);
        // The segment of a reader's bound is the last one it reads.
        let bounded = self.until.is_some_and(|u| u.segment_id == id);
        let is_last = later.is_empty() || bounded;
        let file = segment::open(self.vfs, self.dir, id, self.writable)
            .map_err(|e| Error::io(format!("opening {}", name.display()), e))?;
        let file_len = file.len().map_err(io_err)?;
        if from > file_len {
            return Err(Error::corrupt(format!(
                "{} is shorter ({file_len} bytes) than the checkpoint says ({from})",
                name.display()
            )));
        }
        let mut scanner = Scanner::new(file.clone(), from, self.scan_limit(&file, id, from)?);
        scanner.set_reread_on_bad(!self.writable);
        self.info.segments_scanned += 1;
        let mut walk = Walk::default();
        let (tail, file_len) = self.walk_settled(&mut scanner, id, &mut walk, visit)?;
        let Some(tail) = tail else {
            if self.writable && !is_last && walk.end < file_len {
                segment::finalize(&*file, walk.end)
                    .map_err(|e| Error::io(format!("finalizing {}", name.display()), e))?;
            }
            self.segments.push((id, walk.end));
            return Ok(if bounded { Next::Stop } else { Next::Go });
        };
        let later_empty = is_last || all_empty(self.vfs, self.dir, later).map_err(io_err)?;
        self.settle_tail(id, tail, &walk, &file, file_len, is_last, later_empty)?;
        self.segments.push((id, walk.valid_end()));
        if !is_last && later_empty && self.writable {
            self.remove_empty(later)?;
        }
        Ok(if later_empty { Next::Stop } else { Next::Go })
    }

    /// How far the scanner may read segment `id` from `from`: the file's last data (past
    /// it are holes or never written preallocation, and reading those would put zero
    /// pages in the page cache, which the file system then reports as data), and no
    /// further than a reader's bound.
    fn scan_limit(&self, file: &super::vfs::FileRef, id: u64, from: u64) -> Result<u64> {
        let name = || segment::path(self.dir, id).display().to_string();
        let len = file
            .len()
            .map_err(|e| Error::io(format!("reading {}", name()), e))?;
        let end = data_end(&**file, from, len)
            .map_err(|e| Error::io(format!("reading {}", name()), e))?;
        Ok(match self.until {
            Some(u) if u.segment_id == id => end.min(u.offset.max(from)),
            _ => end,
        })
    }

    /// Walks the segment and judges what stops the walk (`None`: nothing but its end), with
    /// the file's length then. A reader that finds damage with valid records after it
    /// looks again a few times before it believes it: a writer's write may be in flight.
    fn walk_settled(
        &mut self,
        scanner: &mut Scanner,
        id: u64,
        walk: &mut Walk,
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<(Option<Tail>, u64)> {
        let name = segment::path(self.dir, id);
        let io_err = |e| Error::io(format!("reading {}", name.display()), e);
        let mut tries = 0;
        loop {
            self.walk(scanner, id, walk, visit)?;
            let file = scanner.file().clone();
            let file_len = file.len().map_err(io_err)?;
            let tail = match walk.bad {
                Some(_) => {
                    let expected = walk.first_pending_key.or(self.next_key);
                    classify_tail(&*file, walk.end, file_len, expected).map_err(io_err)?
                }
                None if walk.pending.is_empty() => return Ok((None, file_len)),
                None => Tail::Zeros,
            };
            let in_flight = !self.writable && matches!(tail, Tail::ValidAfter { .. });
            if !in_flight || tries == SETTLE_TRIES {
                return Ok((Some(tail), file_len));
            }
            tries += 1;
            std::thread::sleep(SETTLE_PAUSE);
            scanner.set_limit(self.scan_limit(&file, id, walk.end)?);
        }
    }

    /// Scans on from where `scanner` is, visiting each complete batch, until the records
    /// stop (`walk.end`, `walk.bad`).
    fn walk(
        &mut self,
        scanner: &mut Scanner,
        id: u64,
        walk: &mut Walk,
        visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let name = segment::path(self.dir, id);
        loop {
            let step = scanner
                .next()
                .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
            let (offset, continues, key) = match step {
                Step::Record { offset, decoded } => {
                    let rec = decoded.record;
                    let key = <[u8; 8]>::try_from(rec.key).ok().map(u64::from_le_bytes);
                    let continues = rec.batch_continues();
                    // The usual record, a batch of one with none held: visited as the
                    // scanner handed it out, without splitting it again.
                    if !continues && walk.pending.is_empty() {
                        if let Some(k) = key {
                            self.next_key = Some(k.wrapping_add(1));
                        }
                        let pos = Position {
                            segment_id: id,
                            offset,
                        };
                        visit(pos, &rec)?;
                        self.info.valid_records += 1;
                        self.info.last_valid_position = Some(pos);
                        continue;
                    }
                    (offset, continues, key)
                }
                Step::End { offset } => {
                    (walk.end, walk.bad) = (offset, None);
                    return Ok(());
                }
                Step::Bad { offset, error } => {
                    (walk.end, walk.bad) = (offset, Some(error));
                    return Ok(());
                }
            };
            if let Some(k) = key {
                self.next_key = Some(k.wrapping_add(1));
            }
            let pos = Position {
                segment_id: id,
                offset,
            };
            if continues {
                if walk.pending.is_empty() {
                    scanner.hold(offset);
                    walk.first_pending_key = key;
                }
                walk.pending.push(pos);
                continue;
            }
            let lost = || {
                Error::corrupt(format!(
                    "{}: a batch's record left the buffer",
                    name.display()
                ))
            };
            for p in walk.pending.drain(..) {
                let d = scanner.record_at(p.offset).ok_or_else(lost)?;
                visit(p, &d.record)?;
                self.info.valid_records += 1;
            }
            walk.first_pending_key = None;
            scanner.release();
            let (_, d) = scanner.last_record().ok_or_else(lost)?;
            visit(pos, &d.record)?;
            self.info.valid_records += 1;
            self.info.last_valid_position = Some(pos);
        }
    }

    /// Acts on what follows a segment's valid records: refuses a hole, or damage in a
    /// segment that is not the last; a writer cuts a torn tail (a reader takes it for
    /// bytes not written yet) and finalizes a sealed segment's zero tail.
    #[allow(clippy::too_many_arguments)]
    fn settle_tail(
        &mut self,
        id: u64,
        tail: Tail,
        walk: &Walk,
        file: &super::vfs::FileRef,
        file_len: u64,
        is_last: bool,
        later_empty: bool,
    ) -> Result<()> {
        let here = segment::path(self.dir, id).display().to_string();
        let what = match walk.bad {
            Some(e) => e.describe(),
            None => "a batch is cut short",
        };
        let (end, valid_end) = (walk.end, walk.valid_end());
        match tail {
            Tail::ValidAfter { at } => Err(Error::corrupt(format!(
                "{here}: a damaged record at offset {end} ({what}) is followed by a valid record at offset {at}; refusing to drop it"
            ))),
            Tail::Zeros if walk.pending.is_empty() => {
                // Preallocated space never written: the normal end of an unfinished
                // segment, sealed or not.
                self.info.zero_tail_bytes += file_len - end;
                if self.writable && !is_last {
                    segment::finalize(&**file, end)
                        .map_err(|e| Error::io(format!("finalizing {here}"), e))?;
                }
                Ok(())
            }
            _ if !later_empty => Err(Error::corrupt(format!(
                "{here}: damaged record at offset {valid_end} ({what}) in a segment that is not the last"
            ))),
            // Another process may be writing these bytes right now: the log ends here for
            // this reader; a writer's recovery decides what they are.
            _ if !self.writable => Ok(()),
            tail => {
                let data_end = match tail {
                    Tail::Torn { data_end } => data_end,
                    _ => end,
                };
                self.info.corruption_detected = true;
                self.info.bytes_truncated += data_end.saturating_sub(valid_end);
                cut_tail(&**file, valid_end, file_len)
                    .map_err(|e| Error::io(format!("truncating {here}"), e))
            }
        }
    }

    /// Removes segments after the last record that never received one (a rotation that
    /// crashed): appends continue in the segment before them.
    fn remove_empty(&self, later: &[u64]) -> Result<()> {
        for &id in later {
            let p = segment::path(self.dir, id);
            self.vfs
                .remove_file(&p)
                .map_err(|e| Error::io(format!("removing empty {}", p.display()), e))?;
        }
        self.vfs
            .sync_dir(self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
    }
}

/// Whether every segment in `ids` holds nothing but zeros.
pub(crate) fn all_empty(vfs: &dyn Vfs, dir: &Path, ids: &[u64]) -> io::Result<bool> {
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
/// is payload), and, when keys are positions (`next_key` is the key the damaged record
/// should have had), if its key is `next_key` or a later one the damaged bytes leave room
/// for. Every candidate is filtered by its header and key before its CRC is computed, so
/// with a key to expect the scan is linear in the tail.
fn classify_tail(
    file: &dyn VfsFile,
    from: u64,
    file_len: u64,
    next_key: Option<u64>,
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
            // A record with an 8-byte key starts with its key length, the byte 8 (how the
            // encoder writes it): with a key to expect, other offsets are passed at once.
            if next_key.is_some() && buf[i] != 8 {
                continue;
            }
            if buf[i] == 0 && buf[i..].iter().take(16).all(|&b| b == 0) {
                continue;
            }
            let Ok(d) = record::decode_verified(&buf[i..]) else {
                continue;
            };
            if let Some(next) = next_key {
                let key = <[u8; 8]>::try_from(d.record.key).map(u64::from_le_bytes);
                match key {
                    Ok(k) if k >= next && k - next < data_end - from => {}
                    _ => continue,
                }
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
            if let Some(p) = last_nonzero(&buf[..got]) {
                last = Some(off + p as u64 + 1);
            }
            off += got as u64;
        }
        at = hole.max(at + 1);
    }
    Ok(last)
}

/// The index of the last non-zero byte of `buf`. Sixteen bytes at a time: where the file
/// system cannot tell a preallocated tail from data (no `SEEK_DATA`, or valgrind), the
/// whole zero tail is read and judged here, and a byte at a time cost 7 instructions a
/// byte of it.
fn last_nonzero(buf: &[u8]) -> Option<usize> {
    const W: usize = 16;
    let whole = buf.len() - buf.len() % W;
    if let Some(p) = buf[whole..].iter().rposition(|&b| b != 0) {
        return Some(whole + p);
    }
    let word = buf[..whole]
        .chunks_exact(W)
        .rposition(|c| u128::from_ne_bytes(c.try_into().unwrap()) != 0)?;
    let base = word * W;
    buf[base..base + W]
        .iter()
        .rposition(|&b| b != 0)
        .map(|p| base + p)
}

#[cfg(test)]
mod tests {
    use super::last_nonzero;

    /// Every length up to a few words and every place of the last non-zero byte (with
    /// and without non-zero bytes before it) against the byte-at-a-time answer.
    #[test]
    fn last_nonzero_finds_the_last_non_zero_byte() {
        for len in 0..70 {
            assert_eq!(last_nonzero(&vec![0u8; len]), None, "all zero, {len} bytes");
            for last in 0..len {
                for before in [None, Some(0), last.checked_sub(17)] {
                    let mut buf = vec![0u8; len];
                    if let Some(b) = before.filter(|&b| b < last) {
                        buf[b] = 0xff;
                    }
                    buf[last] = 1;
                    assert_eq!(last_nonzero(&buf), Some(last), "len {len}, last {last}");
                }
            }
        }
    }
}
