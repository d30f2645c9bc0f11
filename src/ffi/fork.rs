//! Handles do not survive fork: a store handle belongs to the process that opened it
//! (its lock, its background threads, its buffers). A child that uses one gets
//! EVS_ERR_INVALID_ARGUMENT and writes nothing; one that closes it leaks its memory
//! rather than flushing or unlocking the parent's store.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Forks survived by this process's image: bumped in every child.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static WATCH: Once = Once::new();

extern "C" fn in_child_after_fork() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The process a handle belongs to: its generation (which forks survived) and its id.
#[derive(Clone, Copy)]
pub(crate) struct Owner {
    generation: u64,
    pid: u32,
}

impl Owner {
    /// The calling process, watching forks from the first call on.
    pub(crate) fn current() -> Owner {
        WATCH.call_once(|| {
            // SAFETY: pthread_atfork only records the handler, a plain function of this
            // library that touches one atomic (async-signal-safe, as a child handler must
            // be). glibc unregisters it if the library is unloaded.
            unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
        });
        Owner {
            generation: GENERATION.load(Ordering::Acquire),
            pid: std::process::id(),
        }
    }

    /// Refuses a handle opened before a fork, naming both processes. One atomic load
    /// when the handle is this process's.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        if self.generation != GENERATION.load(Ordering::Acquire) {
            return Err(Error::invalid(format!(
                "this {what} was opened by process {}, and process {} (forked from it) \
                 cannot use it: handles do not survive fork; open the store again in this \
                 process",
                self.pid,
                std::process::id()
            )));
        }
        Ok(())
    }
}
