//! Segment files: `{:06}.wal` names, listing, creation with preallocation, finalizing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
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
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Opens an existing segment for reading (and writing when `writable`).
pub fn open(dir: &Path, id: u64, writable: bool) -> io::Result<File> {
    let p = path(dir, id);
    let file = OpenOptions::new().read(true).write(writable).open(&p)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            p.display()
        )));
    }
    Ok(file)
}

/// Creates segment `id` (it must not exist), preallocated to `prealloc` bytes when given.
pub fn create(dir: &Path, id: u64, prealloc: Option<u64>) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path(dir, id))?;
    if let Some(len) = prealloc {
        preallocate(&file, len)?;
    }
    sync_dir(dir)?;
    Ok(file)
}

/// Reserves `len` bytes of disk for the file so that later writes rewrite allocated space
/// instead of growing the file (a grow costs the journal a commit on every fdatasync).
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let len = i64::try_from(len).map_err(io::Error::other)?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by `file`,
    // which is borrowed for the whole call and so stays open.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Filesystems without fallocate (tmpfs on old kernels, some FUSE): extend instead.
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            if file.metadata()?.len() < len as u64 {
                file.set_len(len as u64)?;
            }
            Ok(())
        }
        _ => Err(err),
    }
}

/// Cuts the segment to its logical length and makes that durable.
pub fn finalize(file: &File, logical_len: u64) -> io::Result<()> {
    file.set_len(logical_len)?;
    file.sync_all()
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads as many bytes as are there at `offset`, up to `buf.len()`; returns the count.
pub fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
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
