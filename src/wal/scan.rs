//! A sequential scanner over one segment file: large buffered reads, records of any size,
//! bounded memory. Recovery and the reader both walk segments with it.

use super::record::{self, DecodeError, Decoded};
use super::vfs::{self, FileRef};
use std::io;

/// Bytes read from the file at a time.
pub const CHUNK: usize = 1 << 20;

/// What the scanner found at its current offset.
#[derive(Debug)]
pub enum Step<'a> {
    /// A record that passed its CRC, at `offset` in the segment.
    Record { offset: u64, decoded: Decoded<'a> },
    /// No more bytes before `limit`: `offset` is the end of the records.
    End { offset: u64 },
    /// Bytes at `offset` that are not a whole valid record before `limit`.
    Bad { offset: u64, error: DecodeError },
}

/// Walks the records of one segment from an offset up to a limit (the file's length, or
/// the part of the active segment that has been written).
pub struct Scanner {
    file: FileRef,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// Offset inside `buf` of the next record.
    at: usize,
    limit: u64,
    /// Another process may be writing: bytes that were read before it wrote them may be
    /// stale, so a bad record is read again from the file once before it counts.
    reread_on_bad: bool,
    /// The last record `next` returned: its offset, where it starts in `buf`, where its
    /// parts are.
    last: Option<(u64, usize, record::Checked)>,
    /// Bytes from this file offset on stay buffered (the records of a batch whose last
    /// record is not read yet), so they can be handed out again without copies.
    hold: Option<u64>,
}

impl Scanner {
    pub fn new(file: FileRef, offset: u64, limit: u64) -> Self {
        Scanner {
            file,
            buf: Vec::new(),
            buf_start: offset,
            buf_len: 0,
            at: 0,
            limit,
            reread_on_bad: false,
            last: None,
            hold: None,
        }
    }

    pub fn set_reread_on_bad(&mut self, on: bool) {
        self.reread_on_bad = on;
    }

    /// Drops what is buffered after the current offset.
    fn discard(&mut self) {
        self.buf_len = self.at;
    }

    /// Keeps the bytes from `offset` (at or before the current offset, and still
    /// buffered) in the buffer until `release`: see `record_at`.
    pub fn hold(&mut self, offset: u64) {
        debug_assert!(offset >= self.buf_start && offset <= self.offset());
        self.hold = Some(offset);
    }

    pub fn release(&mut self) {
        self.hold = None;
    }

    /// The record at `offset`, which `next` returned since `hold` was called with an
    /// offset at or before it (decoded again without checking its CRC).
    pub fn record_at(&self, offset: u64) -> Option<Decoded<'_>> {
        let i = usize::try_from(offset.checked_sub(self.buf_start)?).ok()?;
        record::decode_verified(self.buf.get(i..self.buf_len)?).ok()
    }

    /// The file offset of the next record.
    pub fn offset(&self) -> u64 {
        self.buf_start + self.at as u64
    }

    pub fn file(&self) -> &FileRef {
        &self.file
    }

    /// Moves the limit (the writer has written more).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Reads on from the current offset so that at least `need` bytes (or all bytes up to
    /// the limit) are buffered. Returns false when nothing more can be had.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        let offset = self.offset();
        let have = self.buf_len - self.at;
        let want = need.max(CHUNK).min((self.limit - offset) as usize);
        if want <= have {
            return Ok(false);
        }
        // Keep the unread bytes, and the held ones before them.
        let keep_from = self.hold.map_or(offset, |h| h.min(offset));
        let keep = (keep_from - self.buf_start) as usize;
        let held = (offset - keep_from) as usize;
        self.buf.copy_within(keep..self.buf_len, 0);
        if self.buf.is_empty() {
            // A fresh zeroed allocation: calloc takes pages the kernel zeroes, where a
            // resize would write 1 MiB of zeros first (~5 instructions an event).
            self.buf = vec![0; held + want];
        } else if self.buf.len() < held + want {
            self.buf.resize(held + want, 0);
        }
        // Shrink a buffer that grew for one huge record, so memory stays bounded.
        if self.buf.len() > 4 * CHUNK && held + want <= CHUNK {
            self.buf.truncate(CHUNK);
            self.buf.shrink_to_fit();
        }
        let got = vfs::read_at_most(
            &*self.file,
            &mut self.buf[held + have..held + want],
            offset + have as u64,
        )?;
        self.buf_start = keep_from;
        self.at = held;
        self.buf_len = held + have + got;
        Ok(got > 0)
    }

    /// The record `next` returned last, again (without checking its CRC again), until
    /// the next call of `next`.
    #[inline]
    pub fn last_record(&self) -> Option<(u64, Decoded<'_>)> {
        let (offset, start, checked) = self.last?;
        Some((offset, checked.split(self.buf.get(start..self.buf_len)?)?))
    }

    /// Moves past the record at the current offset if it is whole in the buffer, before
    /// the limit, and passes its checks (CRC included): then `last_record` returns it.
    /// False, with nothing read and the offset unchanged, for anything else (`next` then
    /// tells what it is). Never reads the file: the buffer does not move, so the records
    /// handed out since the last call of `next` stay where they are.
    #[inline]
    pub fn advance_buffered(&mut self) -> bool {
        self.last = None;
        let offset = self.offset();
        if offset >= self.limit {
            return false;
        }
        match record::check(&self.buf[self.at..self.buf_len]) {
            Ok(checked) => {
                self.last = Some((offset, self.at, checked));
                self.at += checked.len();
                true
            }
            Err(_) => false,
        }
    }

    /// The record at the current offset, moving past it; or where the records stop.
    pub fn next(&mut self) -> io::Result<Step<'_>> {
        self.last = None;
        let mut reread = self.reread_on_bad;
        loop {
            let offset = self.offset();
            if offset >= self.limit {
                return Ok(Step::End { offset });
            }
            let avail = &self.buf[self.at..self.buf_len];
            match record::check(avail) {
                Ok(checked) => {
                    let start = self.at;
                    self.at += checked.len();
                    self.last = Some((offset, start, checked));
                    // The CRC was just checked.
                    let decoded = checked
                        .split(&self.buf[start..self.buf_len])
                        .expect("a record that was checked splits");
                    return Ok(Step::Record { offset, decoded });
                }
                Err(DecodeError::Incomplete) => {
                    let need = record::peek_len(avail).unwrap_or(0).max(avail.len() + 1);
                    if !self.fill(need)? {
                        if std::mem::take(&mut reread) {
                            self.discard();
                            continue;
                        }
                        return Ok(Step::Bad {
                            offset,
                            error: DecodeError::Incomplete,
                        });
                    }
                }
                Err(_) if std::mem::take(&mut reread) => self.discard(),
                Err(error) => return Ok(Step::Bad { offset, error }),
            }
        }
    }
}
