//! The one I/O layer under the log and the store (as SQLite's VFS is): every file
//! operation of `wal/` and `store/` goes through `Vfs` and `VfsFile`, so a test can put a
//! file system underneath that fails the k-th operation or loses power.

use std::any::Any;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// An open file of a `Vfs`. Shared between threads (positional reads and writes only).
#[allow(clippy::len_without_is_empty)] // a file's size, not a collection
pub trait VfsFile: Send + Sync + Debug {
    /// Reads at most `buf.len()` bytes at `offset`; 0 at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes some prefix of `buf` at `offset` and says how much (pwrite).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the file's data (and its size) durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (fsync).
    fn sync_all(&self) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes (ftruncate).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk space for the first `len` bytes; the file grows to `len` if shorter
    /// (fallocate, mode 0).
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// The file's current size.
    fn len(&self) -> io::Result<u64>;
    /// The next region at or after `at` that may hold non-zero bytes, as `(start, end)`;
    /// `None` when only holes follow. A file system that cannot tell says "all of it".
    fn data_region(&self, at: u64) -> io::Result<Option<(u64, u64)>> {
        let len = self.len()?;
        Ok((at < len).then_some((at, len)))
    }
}

/// A shared handle to an open file.
pub type FileRef = Arc<dyn VfsFile>;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    ReadWrite,
    /// Read and write a new file; fails with `AlreadyExists` if the name is taken.
    CreateNew,
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
}

/// A path's kind and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub len: u64,
}

/// A file system: the operations the log and the store make, each one a place a test
/// can fail.
pub trait Vfs: Send + Sync + Debug {
    /// Opens a regular file (`InvalidInput` if the path names something else).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;
    /// Creates one directory (`AlreadyExists` if it is there).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// The names in a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created, renamed, removed names) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// `NotFound` when nothing is there.
    fn stat(&self, path: &Path) -> io::Result<Stat>;
    /// Takes an exclusive advisory lock on `path` (created if missing) at once, held
    /// until the returned guard is dropped; `WouldBlock` when someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
    /// Takes an advisory lock on directory `dir` (which must exist; nothing is created)
    /// at once, shared or exclusive, held until the returned guard is dropped, and seen
    /// by other processes: `WouldBlock` when one is held against it. A file system that
    /// cannot lock across processes says `Unsupported` (the default).
    fn lock_dir(&self, dir: &Path, exclusive: bool) -> io::Result<Box<dyn Any + Send + Sync>> {
        let _ = (dir, exclusive);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Gives the file at `from` a second name `to` (a hard link: one inode, two names).
    /// A file system that cannot (or not across these two directories) says
    /// `Unsupported` or the OS's error (EXDEV, EPERM); callers then copy.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Whether `a` and `b` name the same file (one inode); `false` when either is missing
    /// or the file system cannot tell.
    fn same_file(&self, a: &Path, b: &Path) -> io::Result<bool> {
        let _ = (a, b);
        Ok(false)
    }
}

/// The real file system, through std and libc.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

/// The process-wide real file system.
pub fn os() -> Arc<dyn Vfs> {
    static OS: std::sync::LazyLock<Arc<dyn Vfs>> = std::sync::LazyLock::new(|| Arc::new(OsVfs));
    OS.clone()
}

#[derive(Debug)]
struct OsFile(File);

impl VfsFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let ilen = i64::try_from(len).map_err(io::Error::other)?;
        // SAFETY: fallocate reads only its integer arguments; the descriptor is owned by
        // `self.0`, which is borrowed for the whole call and so stays open.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, ilen) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // File systems without fallocate (some FUSE, old tmpfs): extend instead.
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                if self.0.metadata()?.len() < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            _ => Err(err),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn data_region(&self, at: u64) -> io::Result<Option<(u64, u64)>> {
        let fd = self.0.as_raw_fd();
        let seek = |from: u64, whence| -> io::Result<Option<u64>> {
            // SAFETY: lseek reads only its integer arguments; the descriptor belongs to
            // `self.0`, which is borrowed for the call and so stays open.
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
        let len = self.len()?;
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
                Ok((at < len).then_some((at, len)))
            }
            Err(e) => Err(e),
        }
    }
}

impl Vfs for OsVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                o.write(true);
            }
            OpenMode::CreateNew => {
                o.write(true).create_new(true);
            }
        }
        let file = o.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Arc::new(OsFile(file)))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        let m = std::fs::metadata(path)?;
        let kind = if m.is_file() {
            Kind::File
        } else if m.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        Ok(Stat { kind, len: m.len() })
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        flock_now(file, libc::LOCK_EX)
    }

    fn lock_dir(&self, dir: &Path, exclusive: bool) -> io::Result<Box<dyn Any + Send + Sync>> {
        // A directory opens for reading only: read-only stores take a shared lock too.
        let file = File::open(dir)?;
        flock_now(
            file,
            if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            },
        )
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn same_file(&self, a: &Path, b: &Path) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
            return Ok(false);
        };
        Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
    }
}

/// Locks `file` (`how`: LOCK_EX or LOCK_SH) at once, or `WouldBlock`; the lock lives as
/// long as the returned guard, which owns the file.
fn flock_now(file: File, how: libc::c_int) -> io::Result<Box<dyn Any + Send + Sync>> {
    // SAFETY: flock reads only its integer arguments; the descriptor is owned by `file`,
    // which lives for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, err));
        }
        return Err(err);
    }
    Ok(Box::new(file))
}

/// Writes all of `buf` at `offset`, going on after short writes.
pub fn write_all_at(file: &dyn VfsFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file system accepted no bytes",
                ))
            }
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads as many bytes as are there at `offset`, up to `buf.len()`; returns the count.
pub fn read_at_most(file: &dyn VfsFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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

/// Reads a whole (small) file.
pub fn read_file(vfs: &dyn Vfs, path: &Path) -> io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenMode::Read)?;
    let len = usize::try_from(f.len()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    let got = read_at_most(&*f, &mut buf, 0)?;
    buf.truncate(got);
    Ok(buf)
}

/// Creates the directory `path` (its parent must exist) unless it is there, and syncs
/// the parent when it did, so the directory still exists after a power cut.
pub fn create_dir_durable(vfs: &dyn Vfs, path: &Path) -> io::Result<()> {
    match vfs.create_dir(path) {
        Ok(()) => vfs.sync_dir(parent_of(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match vfs.stat(path) {
            Ok(s) if s.kind == Kind::Dir => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            )),
        },
        Err(e) => Err(e),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `path` and any missing parents, syncing each parent whose entries changed, so
/// a directory that exists after the call still exists after a power cut.
pub fn create_dir_all_durable(vfs: &dyn Vfs, path: &Path) -> io::Result<()> {
    match vfs.stat(path) {
        Ok(s) if s.kind == Kind::Dir => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = parent_of(path);
    create_dir_all_durable(vfs, parent)?;
    match vfs.create_dir(path) {
        Ok(()) => {}
        // Another thread or process made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    vfs.sync_dir(parent)
}
