//! Recovery on open: walk every segment in order, find where the records end, truncate a
//! torn tail of the last segment, and refuse (as corruption) anything that would leave a
//! hole: a bad record with valid records after it, or a damaged segment that is not the last.

use super::record::{self, Record, RecordRef};
use super::scan::{Scanner, Step};
use super::segment;
use super::Position;
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
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
/// `writable`, a torn tail is truncated and a non-last segment left unfinished is finalized.
pub(crate) fn recover(
    dir: &Path,
    writable: bool,
    start: Position,
    visit: &mut dyn FnMut(Position, &RecordRef<'_>) -> Result<()>,
) -> Result<Recovered> {
    let ids = segment::list(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
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
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let name = segment::path(dir, id);
        if id < start.segment_id {
            // Covered by a checkpoint: complete and finalized when the next one began.
            let meta = std::fs::metadata(&name)
                .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
            if !meta.is_file() {
                return Err(Error::corrupt(format!(
                    "{} is not a regular file",
                    name.display()
                )));
            }
            let len = meta.len();
            segments.push((id, len));
            continue;
        }
        let from = if id == start.segment_id {
            start.offset
        } else {
            0
        };
        let file = segment::open(dir, id, writable)
            .map_err(|e| Error::io(format!("opening {}", name.display()), e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", name.display()), e))?
            .len();
        if from > file_len {
            return Err(Error::corrupt(format!(
                "{} is shorter ({file_len} bytes) than the checkpoint says ({from})",
                name.display()
            )));
        }
        let mut scanner = Scanner::new(file, from, file_len);
        info.segments_scanned += 1;
        // Records of a batch whose last record has not been seen yet.
        let mut pending: Vec<(Position, Record)> = Vec::new();
        let (end, bad) = loop {
            let step = scanner
                .next()
                .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
            match step {
                Step::Record { offset, decoded } => {
                    let pos = Position {
                        segment_id: id,
                        offset,
                    };
                    let rec = decoded.record;
                    if rec.batch_continues() {
                        pending.push((pos, rec.to_owned()));
                        continue;
                    }
                    for (p, r) in pending.drain(..) {
                        visit(p, &r.as_ref())?;
                        info.valid_records += 1;
                    }
                    visit(pos, &rec)?;
                    info.valid_records += 1;
                    info.last_valid_position = Some(pos);
                }
                Step::End { offset } => break (offset, None),
                Step::Bad { offset, error } => break (offset, Some(error)),
            }
        };
        let file = scanner.file();
        // Where the valid, complete records end: before an unfinished batch, if any.
        let valid_end = pending.first().map_or(end, |(p, _)| p.offset);
        if bad.is_some() || !pending.is_empty() {
            let what = match bad {
                Some(e) => e.describe(),
                None => "a batch is cut short",
            };
            let io_err = |e| Error::io(format!("reading {}", name.display()), e);
            let tail = match bad {
                Some(_) => classify_tail(file, end, file_len).map_err(io_err)?,
                None => Tail::Zeros,
            };
            match tail {
                Tail::ValidAfter { at } => {
                    return Err(Error::corrupt(format!(
                        "{}: a damaged record at offset {end} ({what}) is followed by a valid record at offset {at}; refusing to drop it",
                        name.display()
                    )))
                }
                _ if !is_last => {
                    return Err(Error::corrupt(format!(
                        "{}: damaged record at offset {valid_end} ({what}) in a segment that is not the last",
                        name.display()
                    )))
                }
                Tail::Zeros if pending.is_empty() => info.zero_tail_bytes += file_len - end,
                tail => {
                    let data_end = match tail {
                        Tail::Torn { data_end } => data_end,
                        _ => end,
                    };
                    info.corruption_detected = true;
                    info.bytes_truncated += data_end - valid_end;
                    if writable {
                        cut_tail(file, valid_end, file_len)
                            .map_err(|e| Error::io(format!("truncating {}", name.display()), e))?;
                    }
                }
            }
        }
        let end = valid_end;
        if writable && !is_last && end < file_len {
            segment::finalize(file, end)
                .map_err(|e| Error::io(format!("finalizing {}", name.display()), e))?;
        }
        segments.push((id, end));
    }
    Ok(Recovered { info, segments })
}

/// Cuts a torn tail: the bytes from `end` on become zeros (preallocated) or go (not).
fn cut_tail(file: &File, end: u64, file_len: u64) -> io::Result<()> {
    file.set_len(end)?;
    // Keep the space the segment had, so appends stay on allocated blocks.
    if file_len > end {
        segment::preallocate(file, file_len)?;
    }
    file.sync_all()
}

/// Decides what the bytes `[from, file_len)` are: zeros, a torn write, or a hole.
fn classify_tail(file: &File, from: u64, file_len: u64) -> io::Result<Tail> {
    let data_end = match last_nonzero_end(file, from, file_len)? {
        None => return Ok(Tail::Zeros),
        Some(e) => e,
    };
    // Look for a valid record anywhere after the damaged one, in overlapping windows so
    // that any record up to half a window long is seen whole in one of them.
    const WINDOW: u64 = 64 << 20;
    let mut start = from + 1;
    let mut buf = Vec::new();
    while start < data_end {
        let len = (data_end - start).min(WINDOW);
        buf.resize(len as usize, 0);
        let got = segment::read_at_most(file, &mut buf, start)?;
        buf.truncate(got);
        for i in 0..buf.len() {
            if buf[i] == 0 && buf[i..].iter().take(16).all(|&b| b == 0) {
                continue;
            }
            if record::decode(&buf[i..]).is_ok() {
                return Ok(Tail::ValidAfter {
                    at: start + i as u64,
                });
            }
        }
        if start + len >= data_end {
            break;
        }
        start += WINDOW / 2;
    }
    Ok(Tail::Torn { data_end })
}

/// The offset just past the last non-zero byte in `[from, file_len)`, or `None` if all
/// zero. Skips holes and unwritten (preallocated) extents with SEEK_DATA/SEEK_HOLE, so a
/// preallocated segment's zero tail costs almost nothing to recognize.
fn last_nonzero_end(file: &File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    let mut last = None;
    let mut at = from;
    let mut buf = vec![0u8; 1 << 20];
    while at < file_len {
        let (data, hole) = match data_region(file, at)? {
            None => break,
            Some(r) => r,
        };
        let hole = hole.min(file_len);
        let mut off = data.max(at);
        while off < hole {
            let n = ((hole - off) as usize).min(buf.len());
            let got = segment::read_at_most(file, &mut buf[..n], off)?;
            if got == 0 {
                break;
            }
            if let Some(p) = buf[..got].iter().rposition(|&b| b != 0) {
                last = Some(off + p as u64 + 1);
            }
            off += got as u64;
        }
        at = hole;
    }
    Ok(last)
}

/// The next data region at or after `at`: `(start, end)`; `None` when only holes follow.
/// Where the filesystem cannot tell, everything from `at` to the end counts as data.
fn data_region(file: &File, at: u64) -> io::Result<Option<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let seek = |from: u64, whence| -> io::Result<Option<u64>> {
        // SAFETY: lseek reads only its integer arguments; the descriptor belongs to
        // `file`, which is borrowed for the call and so stays open.
        let r = unsafe { libc::lseek(fd, from as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        }
    };
    let len = file.metadata()?.len();
    match seek(at, libc::SEEK_DATA) {
        Ok(None) => Ok(None),
        Ok(Some(start)) => {
            let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len);
            Ok(Some((start, end.max(start))))
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
            ) =>
        {
            Ok(Some((at, len)))
        }
        Err(e) => Err(e),
    }
}
