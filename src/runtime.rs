//! The global tokio runtime: the home of asynchronous work (the PostgreSQL backend's I/O),
//! started lazily by the first such work and stopped by `evs_shutdown` (see
//! `ffi::runtime`). Synchronous calls of the file engine never touch it.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// The runtime and the id of the process that started it.
static RUNTIME: Mutex<Option<(Arc<tokio::runtime::Runtime>, u32)>> = Mutex::new(None);

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
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| Error::io("starting the evstore runtime", e))?;
    let rt = Arc::new(rt);
    *slot = Some((rt.clone(), pid));
    Ok(rt)
}

/// Takes the runtime out (it stops when its last user lets go of it); in a forked child,
/// the parent's runtime is left alone and `None` returned.
pub(crate) fn take() -> Option<Arc<tokio::runtime::Runtime>> {
    let taken = RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    match taken {
        Some((rt, owner)) if owner == std::process::id() => Some(rt),
        Some(inherited) => {
            std::mem::forget(inherited);
            None
        }
        None => None,
    }
}

#[cfg(test)]
pub(crate) fn is_running() -> bool {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}
