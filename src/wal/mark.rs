//! The durable mark: how far a reader in another process may read the log.
//!
//! A writer under `Always` writes records into the segment before their fdatasync; if the
//! fdatasync fails, the append is refused and the records are erased. A reader that read
//! them meanwhile would have handed out an event that was never stored. So the writer
//! publishes, after each fdatasync that succeeded, where the durable records end, and a
//! reader under that mark reads no further. Under the other policies an append is
//! acknowledged once written to the OS, so the writer publishes "no bound" at open and a
//! reader reads whatever is written.
//!
//! The mark also carries the writer's generation, new at every writable open: a reader
//! that sees it change knows that a writer's recovery ran (and may have cut the log) and
//! checks what it already read.
//!
//! On disk: `<log dir>/durable.mark`, two slots of 48 bytes written in turn with one
//! pwrite each and never fsynced (a reader sees the page cache; after a power cut the next
//! writer's open writes a new mark before any reader can need it). A slot is the magic,
//! a sequence number, the generation, the bound's segment and offset, the flags and a
//! CRC-32C; a reader takes the valid slot with the higher sequence, so a write that is
//! torn, or read while it happens, leaves the previous mark in force.

use super::vfs::{self, FileRef, OpenMode, Vfs};
use super::Position;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the log directory (not a segment name, so listings pass over it).
pub const FILE_NAME: &str = "durable.mark";
const MAGIC: &[u8; 8] = b"EVSMARK1";
const SLOT: usize = 48;
/// Flag bit 0: the mark bounds readers (the writer is under `Always`).
const BOUNDED: u32 = 1;

/// What a reader may read, as the writer last published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// New at every writable open of the log.
    pub generation: u64,
    /// Records starting at or past this position may still be refused (`Always`); `None`
    /// when every record written is acknowledged (the other policies).
    pub bound: Option<Position>,
    sequence: u64,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn encode(m: &Mark) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    let bound = m.bound.unwrap_or_default();
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&m.sequence.to_le_bytes());
    b[16..24].copy_from_slice(&m.generation.to_le_bytes());
    b[24..32].copy_from_slice(&bound.segment_id.to_le_bytes());
    b[32..40].copy_from_slice(&bound.offset.to_le_bytes());
    let flags = if m.bound.is_some() { BOUNDED } else { 0 };
    b[40..44].copy_from_slice(&flags.to_le_bytes());
    let crc = crc32c::crc32c(&b[..44]);
    b[44..48].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<Mark> {
    if b.len() < SLOT || &b[..8] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    if crc32c::crc32c(&b[..44]) != u32_at(44) {
        return None;
    }
    let bound = (u32_at(40) & BOUNDED != 0).then(|| Position {
        segment_id: u64_at(24),
        offset: u64_at(32),
    });
    Some(Mark {
        sequence: u64_at(8),
        generation: u64_at(16),
        bound,
    })
}

/// The mark in force: the valid slot with the higher sequence; `None` when the file is
/// missing or neither slot is valid (a log no writer of this version has opened).
pub fn read(vfs: &dyn Vfs, dir: &Path) -> Option<Mark> {
    let file = vfs.open(&path(dir), OpenMode::Read).ok()?;
    read_file(&*file)
}

/// The mark in force in an open mark file (see `read`).
pub fn read_file(file: &dyn vfs::VfsFile) -> Option<Mark> {
    let mut b = [0u8; 2 * SLOT];
    let got = vfs::read_at_most(file, &mut b, 0).ok()?;
    let slots = [decode(&b[..got.min(SLOT)]), decode(&b[SLOT..got.max(SLOT)])];
    slots.into_iter().flatten().max_by_key(|m| m.sequence)
}

/// The writer's side: publishes marks in turn into the two slots.
#[derive(Debug)]
pub struct MarkWriter {
    file: FileRef,
    /// The last mark written (its sequence says which slot is next).
    last: Mutex<Mark>,
}

impl MarkWriter {
    /// Opens (creating if needed) the mark file of the log in `dir` for a new writer and
    /// publishes its first mark: a new generation, and `bound` (`None`: no bound).
    pub fn open(vfs: &dyn Vfs, dir: &Path, bound: Option<Position>) -> io::Result<MarkWriter> {
        let p = path(dir);
        let file = match vfs.open(&p, OpenMode::ReadWrite) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => vfs.open(&p, OpenMode::CreateNew)?,
            Err(e) => return Err(e),
        };
        let before = read_file(&*file);
        let generation = match before {
            Some(m) => m.generation.wrapping_add(1),
            // Not 1: a reader may remember a generation of a mark since lost.
            None => now_us(),
        };
        let first = Mark {
            generation,
            bound,
            sequence: before.map_or(0, |m| m.sequence.wrapping_add(1)),
        };
        let w = MarkWriter {
            file,
            last: Mutex::new(first),
        };
        w.write(&first)?;
        Ok(w)
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mark> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, m: &Mark) -> io::Result<()> {
        let slot = (m.sequence % 2) as usize * SLOT;
        vfs::write_all_at(&*self.file, &encode(m), slot as u64)
    }

    /// Publishes that the records before `bound` are durable. A failure leaves the
    /// previous mark in force (readers lag; nothing is handed out early).
    pub fn publish(&self, bound: Position) -> io::Result<()> {
        let mut last = self.lock();
        if last.bound == Some(bound) {
            return Ok(());
        }
        let next = Mark {
            generation: last.generation,
            bound: Some(bound),
            sequence: last.sequence.wrapping_add(1),
        };
        self.write(&next)?;
        *last = next;
        Ok(())
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_a_changed_byte_is_refused() {
        let m = Mark {
            generation: 7,
            bound: Some(Position {
                segment_id: 3,
                offset: 4096,
            }),
            sequence: 12,
        };
        let b = encode(&m);
        assert_eq!(decode(&b), Some(m));
        for i in 0..SLOT {
            let mut c = b;
            c[i] ^= 0x10;
            assert_eq!(decode(&c), None, "byte {i}");
        }
        let unbounded = Mark { bound: None, ..m };
        assert_eq!(decode(&encode(&unbounded)), Some(unbounded));
    }

    #[test]
    fn the_newer_valid_slot_wins_and_a_torn_one_leaves_the_older() {
        let fs = crate::wal::vfs::os();
        let dir = std::env::temp_dir().join(format!("evs-mark-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = |offset| Position {
            segment_id: 0,
            offset,
        };
        let w = MarkWriter::open(&*fs, &dir, Some(at(0))).unwrap();
        let g = w.generation();
        w.publish(at(100)).unwrap();
        w.publish(at(200)).unwrap();
        assert_eq!(read(&*fs, &dir).unwrap().bound, Some(at(200)));
        // Tear the slot written last: the one before is in force again.
        let f = fs.open(&path(&dir), OpenMode::ReadWrite).unwrap();
        let last = read(&*fs, &dir).unwrap().sequence % 2;
        vfs::write_all_at(&*f, &[0xAB; 8], last * SLOT as u64 + 30).unwrap();
        assert_eq!(read(&*fs, &dir).unwrap().bound, Some(at(100)));
        drop(w);
        // A new writer: a new generation, its own bound.
        let w2 = MarkWriter::open(&*fs, &dir, None).unwrap();
        assert_ne!(w2.generation(), g);
        let m = read(&*fs, &dir).unwrap();
        assert_eq!((m.generation, m.bound), (w2.generation(), None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
