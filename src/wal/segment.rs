//! Segment files: `{:06}.wal` names, listing, creation with preallocation, finalizing.

use super::vfs::{FileRef, OpenMode, Vfs, VfsFile};
use std::io;
use std::path::{Path, PathBuf};

/// The file name of segment `id`: six digits at least, as nori-wal names them.
pub fn file_name(id: u64) -> String {
    format!("{id:06}.wal")
}

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(file_name(id))
}

/// Parses a segment file name; any other name is not a segment.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The ids of the segments in `dir`, ascending. Entries that are not segment names are ignored.
pub fn list(vfs: &dyn Vfs, dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = vfs
        .list_dir(dir)?
        .iter()
        .filter_map(|n| parse_name(n))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Opens an existing segment for reading (and writing when `writable`).
pub fn open(vfs: &dyn Vfs, dir: &Path, id: u64, writable: bool) -> io::Result<FileRef> {
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    vfs.open(&path(dir, id), mode)
}

/// Creates segment `id` (it must not exist), preallocated to `prealloc` bytes when given,
/// and makes its name durable. On failure no file is left behind (as far as the file
/// system lets us remove it), so a failed rotation never leaves an empty segment.
pub fn create(vfs: &dyn Vfs, dir: &Path, id: u64, prealloc: Option<u64>) -> io::Result<FileRef> {
    let p = path(dir, id);
    let file = vfs.open(&p, OpenMode::CreateNew)?;
    let made = match prealloc {
        Some(len) => file.allocate(len),
        None => Ok(()),
    }
    .and_then(|_| vfs.sync_dir(dir));
    match made {
        Ok(()) => Ok(file),
        Err(e) => {
            drop(file);
            if vfs.remove_file(&p).is_ok() {
                let _ = vfs.sync_dir(dir);
            }
            Err(e)
        }
    }
}

/// Cuts the segment to its logical length and makes that durable.
pub fn finalize(file: &dyn VfsFile, logical_len: u64) -> io::Result<()> {
    file.set_len(logical_len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_six_digits_and_parse_back() {
        assert_eq!(file_name(0), "000000.wal");
        assert_eq!(file_name(42), "000042.wal");
        assert_eq!(file_name(1_234_567), "1234567.wal");
        assert_eq!(parse_name("000042.wal"), Some(42));
        assert_eq!(parse_name("1234567.wal"), Some(1_234_567));
        for bad in ["42.wal", "000042.wal.tmp", "abcdef.wal", "000042", "LOCK"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
