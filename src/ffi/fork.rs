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

/// The process's generation, watching forks from the first call on (handles record it).
pub(crate) fn generation() -> u64 {
    WATCH.call_once(|| {
        // SAFETY: pthread_atfork only records the handler, a plain function of this
        // library that touches one atomic (async-signal-safe, as a child handler must
        // be). glibc unregisters it if the library is unloaded.
        unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
    });
    GENERATION.load(Ordering::Acquire)
}

/// Refuses a handle opened before a fork.
pub(crate) fn check(opened_in: u64, what: &str) -> Result<()> {
    if opened_in != GENERATION.load(Ordering::Acquire) {
        return Err(Error::invalid(format!(
            "this {what} was opened by another process (process {} was forked from it): \
             handles do not survive fork; open the store again in this process",
            std::process::id()
        )));
    }
    Ok(())
}
