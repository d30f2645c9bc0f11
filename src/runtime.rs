//! The global tokio runtime: the home of asynchronous work (the PostgreSQL backend's I/O),
//! started lazily by the first such work and stopped by `evs_shutdown` (see
//! `ffi::runtime`). Synchronous calls of the file engine never touch it.

use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The runtime and the id of the process that started it.
static RUNTIME: Mutex<Option<(Arc<tokio::runtime::Runtime>, u32)>> = Mutex::new(None);

/// Runtime threads that have started and not yet finished (counted by the threads
/// themselves, first and last thing they do).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The runtime, started on first use. A child made by `fork()` inherits the parent's
/// runtime without its worker threads (work handed to it would wait forever): there the
/// inherited one is left alone, never dropped (its threads are not this process's), and a
/// fresh one is started.
pub(crate) fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    match slot.take() {
        Some((rt, owner)) if owner == pid => {
            *slot = Some((rt.clone(), owner));
            return Ok(rt);
        }
        Some(inherited) => std::mem::forget(inherited),
        None => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("evstore-rt")
        .on_thread_start(|| {
            THREADS.fetch_add(1, Ordering::AcqRel);
        })
        .on_thread_stop(|| {
            THREADS.fetch_sub(1, Ordering::AcqRel);
        })
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| Error::io("starting the evstore runtime", e))?;
    let rt = Arc::new(rt);
    *slot = Some((rt.clone(), pid));
    Ok(rt)
}

/// Stops the runtime and waits until every one of its threads has finished (joined):
/// work still running on it (a blocking DNS lookup of a connect, say) is waited for, not
/// abandoned, so that no thread of the library runs once this returns. Refused (`Busy`,
/// the runtime left running) while anything still holds it: a store being opened or
/// closed on another thread. In a forked child the parent's runtime is left alone.
pub(crate) fn stop() -> Result<()> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = match slot.take() {
        Some((rt, owner)) if owner == std::process::id() => rt,
        Some(inherited) => {
            std::mem::forget(inherited);
            return Ok(());
        }
        None => return Ok(()),
    };
    let rt = match Arc::try_unwrap(rt) {
        Ok(rt) => rt,
        Err(shared) => {
            *slot = Some((shared, std::process::id()));
            return Err(Error::new(
                ErrorKind::Busy,
                "the library's runtime is still in use (a store is being opened or closed \
                 on another thread): close every store, then call evs_shutdown again",
            ));
        }
    };
    drop(slot);
    // Dropping a runtime shuts it down and joins every thread of its pool, however long
    // their work takes (`shutdown_timeout` would return with them still running).
    drop(rt);
    Ok(())
}

/// Runtime threads that have not finished.
#[cfg(test)]
pub(crate) fn threads() -> usize {
    THREADS.load(Ordering::Acquire)
}

#[cfg(test)]
pub(crate) fn is_running() -> bool {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}
