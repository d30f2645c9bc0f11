//! The real file system with a test's hook in it: `HookFs` passes every operation of
//! evstore's `Vfs` through to `vfs::os()`, and calls the test's `Hook` at the few places
//! tests watch or steer (an open, a stat, a lock's release, a file's reads, writes and
//! syncs), so a test writes only what it does there, not another copy of the
//! pass-through.

#![allow(dead_code)]

use evstore::wal::vfs::{self, FileRef, OpenMode, Stat, Vfs, VfsFile};
use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a test does at the operations it watches. Every method has a default that does
/// nothing more than the real operation; a hook runs in the thread making the call.
pub trait Hook: Send + Sync + 'static {
    /// Before `path` is opened.
    fn open(&self, path: &Path, mode: OpenMode) {
        let _ = (path, mode);
    }

    /// Before `path` is looked at with `stat`.
    fn stat(&self, path: &Path) {
        let _ = path;
    }

    /// After the lock taken on `path` was released, in the thread that released it.
    fn unlocked(&self, path: &Path) {
        let _ = path;
    }

    /// A read of an open file: reading the real one is the default.
    fn read_at(&self, f: &Opened, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        f.file.read_at(buf, offset)
    }

    /// A write, likewise.
    fn write_at(&self, f: &Opened, buf: &[u8], offset: u64) -> io::Result<usize> {
        f.file.write_at(buf, offset)
    }

    /// An fdatasync, likewise.
    fn sync_data(&self, f: &Opened) -> io::Result<()> {
        f.file.sync_data()
    }

    /// An fsync, likewise.
    fn sync_all(&self, f: &Opened) -> io::Result<()> {
        f.file.sync_all()
    }
}

/// A file as a hook sees it: the real file, and the path it was opened at.
#[derive(Debug)]
pub struct Opened {
    pub path: PathBuf,
    pub file: FileRef,
}

/// The real file system calling `H`; the test keeps its own `Arc<H>` to see what the
/// hook saw or to steer it.
pub struct HookFs<H>(Arc<H>);

impl<H: Hook> HookFs<H> {
    /// A file system for a store's or a log's options.
    pub fn arc(hook: &Arc<H>) -> Arc<dyn Vfs> {
        Arc::new(HookFs(hook.clone()))
    }
}

impl<H> std::fmt::Debug for HookFs<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookFs<{}>", std::any::type_name::<H>())
    }
}

/// A file opened through `HookFs`.
struct HookFile<H> {
    opened: Opened,
    hook: Arc<H>,
}

impl<H> std::fmt::Debug for HookFile<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HookFile").field(&self.opened.path).finish()
    }
}

impl<H: Hook> VfsFile for HookFile<H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.hook.read_at(&self.opened, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.hook.write_at(&self.opened, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.hook.sync_data(&self.opened)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.hook.sync_all(&self.opened)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.opened.file.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.opened.file.allocate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.opened.file.len()
    }
    fn data_region(&self, at: u64) -> io::Result<Option<(u64, u64)>> {
        self.opened.file.data_region(at)
    }
}

/// The real lock's guard; on drop it releases the lock, then tells the hook.
struct Released<H: Hook> {
    lock: Option<Box<dyn Any + Send + Sync>>,
    path: PathBuf,
    hook: Arc<H>,
}

impl<H: Hook> Drop for Released<H> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.hook.unlocked(&self.path);
    }
}

impl<H: Hook> Vfs for HookFs<H> {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        self.0.open(path, mode);
        let opened = Opened {
            path: path.to_path_buf(),
            file: vfs::os().open(path, mode)?,
        };
        Ok(Arc::new(HookFile {
            opened,
            hook: self.0.clone(),
        }))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        vfs::os().create_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        vfs::os().list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        vfs::os().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        vfs::os().remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        vfs::os().sync_dir(path)
    }
    fn stat(&self, path: &Path) -> io::Result<Stat> {
        self.0.stat(path);
        vfs::os().stat(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let lock = vfs::os().lock(path)?;
        Ok(Box::new(Released {
            lock: Some(lock),
            path: path.to_path_buf(),
            hook: self.0.clone(),
        }))
    }
    fn lock_dir(&self, dir: &Path, exclusive: bool) -> io::Result<Box<dyn Any + Send + Sync>> {
        vfs::os().lock_dir(dir, exclusive)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        vfs::os().hard_link(from, to)
    }
    fn same_file(&self, a: &Path, b: &Path) -> io::Result<bool> {
        vfs::os().same_file(a, b)
    }
}
