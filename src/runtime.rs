//! The global tokio runtime: the home of asynchronous work (the PostgreSQL backend's I/O),
//! started lazily by the first such work and stopped by `evs_shutdown` (see
//! `ffi::runtime`). Synchronous calls of the file engine never touch it.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

static RUNTIME: Mutex<Option<Arc<tokio::runtime::Runtime>>> = Mutex::new(None);

/// The runtime, started on first use.
pub(crate) fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = slot.as_ref() {
        return Ok(rt.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("evstore-rt")
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| Error::io("starting the evstore runtime", e))?;
    let rt = Arc::new(rt);
    *slot = Some(rt.clone());
    Ok(rt)
}

/// Takes the runtime out (it stops when its last user lets go of it).
pub(crate) fn take() -> Option<Arc<tokio::runtime::Runtime>> {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take()
}

#[cfg(test)]
pub(crate) fn is_running() -> bool {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}
