//! Sequential reading: a cursor over segments (crossing from one to the next, seeing what
//! is appended while it runs) and the public reader that hands out whole batches.

use super::log::Inner;
use super::record::{Decoded, Record};
use super::recovery;
use super::scan::{Scanner, Step};
use super::segment;
use super::Position;
use crate::error::{Error, ErrorKind, Result};
use std::sync::Arc;

/// How every "the log changed under a reader" error begins (see `changed`).
const CHANGED: &str = "the log changed under this read-only store";

/// The error of a reader in another process whose log changed below what it already
/// read: records it counted are gone or different, as after a writer's recovery dropped
/// records that were never made durable. Nothing it reads from then on can be trusted to
/// follow on; a new open reads the log as it is (`EVS_ERR_STALE`).
pub(crate) fn changed(detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Stale,
        format!("{CHANGED} ({detail}); reopen the store to read the log as it is now"),
    )
}

/// Whether `e` is a `changed` error.
pub(crate) fn is_changed(e: &Error) -> bool {
    e.kind == ErrorKind::Stale
}

/// How far a reader may read segment `id` now.
struct Bounds {
    /// Up to here.
    limit: u64,
    /// Reading may go on in the next segment once this one is read up to `limit`.
    has_next: bool,
    /// The file's length.
    len: u64,
}

/// Walks records in log order from a position, borrowing each from its read buffer.
pub(crate) struct SegmentCursor {
    inner: Arc<Inner>,
    segment_id: u64,
    scanner: Option<Scanner>,
    start_offset: u64,
    /// The readable end of the current segment when last asked: below it, no need to ask.
    known_limit: u64,
    /// A reader's bound (the writer's durable mark): no record at or past it is read.
    bound: Option<Position>,
    /// The scanner's segment had a successor when its file was opened: it is sealed, and
    /// the file opened is read to its own end (a compaction may put a shorter copy at the
    /// segment's name meanwhile; this cursor reads on in the file it opened).
    sealed: bool,
}

impl SegmentCursor {
    pub(crate) fn new(inner: Arc<Inner>, from: Position) -> Self {
        SegmentCursor {
            inner,
            segment_id: from.segment_id,
            scanner: None,
            start_offset: from.offset,
            known_limit: 0,
            bound: None,
            sealed: false,
        }
    }

    /// A cursor at `from`, an offset of `file`, a copy of segment `from.segment_id` it
    /// reads that segment in (as it reads a file it opened itself): a read-only store's
    /// offset taken from a file read before (its open's), which a compaction may have
    /// replaced at the segment's name since by a shorter copy whose offsets differ.
    pub(crate) fn in_file(inner: Arc<Inner>, from: Position, file: super::vfs::FileRef) -> Self {
        let mut scanner = Scanner::new(file, from.offset, from.offset);
        scanner.set_reread_on_bad(inner.config.read_only);
        SegmentCursor {
            scanner: Some(scanner),
            ..SegmentCursor::new(inner, from)
        }
    }

    /// Reads no record at or past `bound` (a reader of someone else's log, under the
    /// writer's durable mark); `None`: up to what is written.
    pub(crate) fn set_bound(&mut self, bound: Option<Position>) {
        if bound != self.bound {
            self.bound = bound;
            self.known_limit = 0;
        }
    }

    /// Reads again from `to`, the start of records read before (a batch a follower saw
    /// only in part): in the file this cursor has open when `to` is in it, as a sealed
    /// segment is read (a compaction may have put a shorter copy of the segment at its
    /// name since, whose offsets are not this cursor's); else from the file at the name.
    pub(crate) fn rewind(&mut self, to: Position) {
        let file = match &self.scanner {
            Some(sc) if to.segment_id == self.segment_id && to.offset <= sc.offset() => {
                sc.file().clone()
            }
            _ => {
                *self = SegmentCursor {
                    bound: self.bound,
                    ..SegmentCursor::new(self.inner.clone(), to)
                };
                return;
            }
        };
        // A sealed file is read to its end, known already; else the bounds are asked
        // again before the next read.
        let limit = if self.sealed {
            self.known_limit
        } else {
            to.offset
        };
        let mut scanner = Scanner::new(file, to.offset, limit);
        scanner.set_reread_on_bad(self.inner.config.read_only);
        self.scanner = Some(scanner);
        self.start_offset = to.offset;
        self.known_limit = if self.sealed { limit } else { 0 };
    }

    /// Where the next record will be read from.
    pub(crate) fn position(&self) -> Position {
        Position {
            segment_id: self.segment_id,
            offset: self
                .scanner
                .as_ref()
                .map_or(self.start_offset, |s| s.offset()),
        }
    }

    /// The file the cursor reads its segment from, once it opened one (a sealed
    /// segment's may be an older copy than the one at its name now: see `sealed`).
    pub(crate) fn file(&self) -> Option<super::vfs::FileRef> {
        self.scanner.as_ref().map(|s| s.file().clone())
    }

    /// The record `next` returned last, again (until the next call of `next`): a reader
    /// that looks at a record before it decides to hand it out gets it back here.
    #[inline]
    pub(crate) fn last(&self) -> Option<(Position, Decoded<'_>)> {
        let (offset, d) = self.scanner.as_ref()?.last_record()?;
        Some((
            Position {
                segment_id: self.segment_id,
                offset,
            },
            d,
        ))
    }

    /// How far segment `id` may be read now; `None` when it does not exist.
    fn bounds(&self, id: u64) -> Result<Option<Bounds>> {
        if !self.inner.config.read_only {
            return Ok(self.inner.segment_bounds(id).map(|(len, has_next)| Bounds {
                limit: len,
                has_next,
                len,
            }));
        }
        // Read-only: another process may be writing; ask the file system. The file at
        // the segment's name first, then whether a successor exists: a compaction
        // replaces only a segment that has one, so one that has none after the look at
        // the name was the active segment when looked at.
        let dir = &self.inner.config.dir;
        let vfs = &*self.inner.config.vfs;
        let named = match vfs.stat(&segment::path(dir, id)) {
            Ok(s) => Some(s.len),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("reading {}", segment::file_name(id)), e)),
        };
        let successor = vfs.stat(&segment::path(dir, id + 1)).is_ok();
        // A segment with a successor is sealed: the file this cursor opened is read to its
        // own end, as it was (a compaction may have renamed a shorter copy over its name
        // since; its offsets are not this cursor's). The active segment is the file at its
        // name: a writer's recovery cuts it in place.
        let len = match (&self.scanner, successor, named) {
            (Some(sc), true, _) => sc
                .file()
                .len()
                .map_err(|e| Error::io(format!("reading {}", segment::file_name(id)), e))?,
            (_, _, Some(len)) => len,
            (_, _, None) => return Ok(None),
        };
        let (limit, has_next) = match self.bound {
            // The durable records end in this segment: nothing after them is read yet.
            // Only while it has no successor: the writer's rotation syncs a segment whole
            // before it begins the next, so a bound in a sealed segment is an older mark
            // (read before the writer rotated), and its offset is one of the segment as
            // it was written, not of a shorter copy a compaction may have put at its name.
            Some(b) if b.segment_id == id && !successor => (len.min(b.offset), false),
            Some(b) if b.segment_id < id => (0, false),
            _ => (len, successor),
        };
        Ok(Some(Bounds {
            limit,
            has_next,
            len,
        }))
    }

    /// The next record, or `None` when there is none yet.
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<(Position, Decoded<'_>)>> {
        // The usual case: the next record is whole in the scanner's buffer.
        if self.next_buffered() {
            return Ok(self.last());
        }
        self.next_unbuffered()
    }

    /// Moves past the next record if it is whole in the scanner's buffer, below what is
    /// known to be readable, and passes its checks: `last` then returns it. False, with
    /// nothing read, when the record needs anything else (a read, a look at the
    /// segment's bounds, a check that failed: `next` does all that). The buffer does
    /// not move: records handed out since the last read stay where they are.
    #[inline]
    pub(crate) fn next_buffered(&mut self) -> bool {
        match &mut self.scanner {
            Some(sc) if sc.offset() < self.known_limit => sc.advance_buffered(),
            _ => false,
        }
    }

    /// `next` for a record that is not whole in the buffer (or a scanner not open).
    fn next_unbuffered(&mut self) -> Result<Option<(Position, Decoded<'_>)>> {
        let read_only = self.inner.config.read_only;
        loop {
            if let Some(sc) = &self.scanner {
                if sc.offset() < self.known_limit {
                    break;
                }
                if self.sealed {
                    // Its file is read to its end: on to the next segment.
                    self.segment_id = self.inner_next_segment(self.segment_id);
                    self.scanner = None;
                    self.start_offset = 0;
                    self.known_limit = 0;
                    self.sealed = false;
                    continue;
                }
            }
            let id = self.segment_id;
            let offset = self.position().offset;
            let Bounds {
                limit,
                has_next,
                len,
            } = match self.bounds(id)? {
                Some(b) => b,
                // A log with no segment yet (the writer has not created it).
                None if read_only && offset == 0 => return Ok(None),
                None if read_only => {
                    return Err(changed(format_args!(
                        "segment {} it was reading is gone",
                        segment::file_name(id)
                    )))
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("segment {} no longer exists", segment::file_name(id)),
                    ))
                }
            };
            if offset > len && read_only {
                return Err(changed(format_args!(
                    "segment {} is {len} bytes long, and {offset} of it were read",
                    segment::file_name(id)
                )));
            }
            if offset > limit && !read_only {
                return Err(Error::invalid(format!(
                    "offset {offset} is past the end ({limit}) of segment {}",
                    segment::file_name(id)
                )));
            }
            if offset >= limit {
                if has_next {
                    self.segment_id = self.inner_next_segment(id);
                    self.sealed = false;
                    self.scanner = None;
                    self.start_offset = 0;
                    self.known_limit = 0;
                    continue;
                }
                if !read_only && self.inner.make_visible().is_ok() {
                    if let Some((l, _)) = self.inner.segment_bounds(id) {
                        if l > limit {
                            continue;
                        }
                    }
                }
                return Ok(None);
            }
            if self.scanner.is_none() {
                let file =
                    segment::open(&*self.inner.config.vfs, &self.inner.config.dir, id, false)
                        .map_err(|e| {
                            Error::io(format!("opening segment {}", segment::file_name(id)), e)
                        })?;
                // A sealed segment is read to the end of the file opened, which is the
                // segment as it was when opened (a compaction replaces it by a rename).
                // (`has_next`: no bound stops reading in it.)
                let (limit, sealed) = match has_next {
                    true => match file.len() {
                        Ok(l) if l >= offset => (l, true),
                        _ => (limit, false),
                    },
                    false => (limit, false),
                };
                let mut scanner = Scanner::new(file, offset, limit);
                scanner.set_reread_on_bad(read_only);
                self.scanner = Some(scanner);
                self.sealed = sealed;
                let scanner = self.scanner.as_mut().expect("just set");
                scanner.set_limit(limit);
                self.known_limit = limit;
                break;
            }
            let scanner = self.scanner.as_mut().expect("just set");
            scanner.set_limit(limit);
            self.known_limit = limit;
            break;
        }
        let id = self.segment_id;
        self.next_in_segment(id, read_only)
    }

    /// The next record of segment `id`. Bytes that do not decode at the end of the last
    /// segment are, for a reader of someone else's log, not written yet (the scanner has
    /// read them afresh once already), and damage for the writer's own reader. In a
    /// segment that has a successor they may be the zero tail of preallocation (a
    /// segment a checkpoint covers is not finalized by recovery): reading goes on in the
    /// next segment; anything else there is damage.
    fn next_in_segment(
        &mut self,
        id: u64,
        read_only: bool,
    ) -> Result<Option<(Position, Decoded<'_>)>> {
        // A reader of someone else's log asks before reading: a successor that exists
        // then means this segment was complete when read. The writer's own reader knows
        // its segments' state and asks only when it meets bytes that do not decode.
        let successor_before = read_only.then(|| {
            let dir = &self.inner.config.dir;
            self.inner
                .config
                .vfs
                .stat(&segment::path(dir, id + 1))
                .is_ok()
        });
        let scanner = self.scanner.as_mut().expect("set by next");
        let bad = match scanner
            .next()
            .map_err(|e| Error::io(format!("reading segment {}", segment::file_name(id)), e))?
        {
            Step::Record { .. } => None,
            Step::End { .. } => return Ok(None),
            Step::Bad { offset, error } => Some((offset, error)),
        };
        let Some((offset, error)) = bad else {
            let scanner = self.scanner.as_ref().expect("set by next");
            let (offset, decoded) = scanner.last_record().expect("just returned a record");
            let position = Position {
                segment_id: id,
                offset,
            };
            return Ok(Some((position, decoded)));
        };
        let has_next = successor_before
            .unwrap_or_else(|| self.inner.segment_bounds(id).is_some_and(|(_, more)| more));
        if !has_next && read_only {
            return Ok(None);
        }
        let damaged = || {
            Error::corrupt(format!(
                "segment {}: a damaged record at offset {offset} ({})",
                segment::file_name(id),
                error.describe()
            ))
        };
        if !has_next {
            return Err(damaged());
        }
        // A sealed segment is complete: past its records only zeros may follow.
        let file = self.scanner.as_ref().expect("set by next").file().clone();
        let zeros = file
            .len()
            .and_then(|len| recovery::last_nonzero_end(&*file, offset, len))
            .map_err(|e| Error::io(format!("reading segment {}", segment::file_name(id)), e))?
            .is_none();
        if !zeros {
            // Followed only by empty segments (a rotation a crash cut short), it is where
            // a writer's recovery ends the log too: for a reader, the end for now.
            if read_only && self.later_empty(id)? {
                return Ok(None);
            }
            return Err(damaged());
        }
        self.segment_id = id + 1;
        self.scanner = None;
        self.sealed = false;
        self.start_offset = 0;
        self.known_limit = 0;
        self.next()
    }

    /// Whether every segment after `id` holds nothing but zeros.
    fn later_empty(&self, id: u64) -> Result<bool> {
        let (vfs, dir) = (&*self.inner.config.vfs, &self.inner.config.dir);
        let later: Vec<u64> = (id + 1..)
            .take_while(|&l| vfs.stat(&segment::path(dir, l)).is_ok())
            .collect();
        recovery::all_empty(vfs, dir, &later).map_err(|e| {
            Error::io(
                format!("reading the segments after {}", segment::file_name(id)),
                e,
            )
        })
    }

    fn inner_next_segment(&self, id: u64) -> u64 {
        if self.inner.config.read_only {
            return id + 1;
        }
        self.inner.next_segment(id).unwrap_or(id + 1)
    }
}

/// The public sequential reader: owned records, whole batches only.
pub struct WalReader {
    cursor: SegmentCursor,
    /// Records of a batch whose last record has not been read yet.
    pending: Vec<(Position, Record)>,
    /// Complete records ready to hand out, oldest first.
    ready: std::collections::VecDeque<(Position, Record)>,
}

impl WalReader {
    pub(crate) fn new(inner: Arc<Inner>, from: Position) -> Result<Self> {
        Ok(WalReader {
            cursor: SegmentCursor::new(inner, from),
            pending: Vec::new(),
            ready: Default::default(),
        })
    }

    /// The next record and where it is; `None` when the log has no more (yet). Records
    /// of a batch come out only once the whole batch is in the log.
    pub fn next_record(&mut self) -> Result<Option<(Position, Record)>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(Some(r));
            }
            let (pos, rec) = match self.cursor.next()? {
                Some((pos, d)) => (pos, d.record.to_owned()),
                None => return Ok(None),
            };
            let continues = rec.as_ref().batch_continues();
            self.pending.push((pos, rec));
            if !continues {
                self.ready.extend(self.pending.drain(..));
            }
        }
    }
}
