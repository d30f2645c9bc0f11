//! The process lock: `<store>/LOCK`, held with flock by the one process that writes.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Holds the lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock at once or fails with `Locked`, naming the path.
    pub fn acquire(dir: &Path) -> Result<StoreLock> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock reads only its integer arguments; the descriptor is owned by `file`,
        // which lives for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "{} is held: another writer has this store open",
                        path.display()
                    ),
                ));
            }
            return Err(Error::io(format!("locking {}", path.display()), err));
        }
        Ok(StoreLock { _file: file })
    }
}
