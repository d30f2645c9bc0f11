//! The process lock: `<store>/LOCK`, held by the one process that writes.

use crate::error::{Error, ErrorKind, Result};
use crate::wal::vfs::Vfs;
use std::any::Any;
use std::path::Path;

/// Holds the lock until dropped.
pub struct StoreLock {
    _guard: Box<dyn Any + Send + Sync>,
}

impl StoreLock {
    /// Takes the lock at once or fails with `Locked`, naming the path.
    pub fn acquire(vfs: &dyn Vfs, dir: &Path) -> Result<StoreLock> {
        let path = dir.join("LOCK");
        match vfs.lock(&path) {
            Ok(guard) => Ok(StoreLock { _guard: guard }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{} is held: another writer has this store open",
                    path.display()
                ),
            )),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }
}
