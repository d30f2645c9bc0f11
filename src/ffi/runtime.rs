//! The global tokio runtime: the home of asynchronous work (the PostgreSQL backend's I/O
//! and timers, wave 2), started lazily by the first such work and stopped by
//! `evs_shutdown`. Synchronous calls of the file engine never touch it: they run on the
//! caller's thread (a `block_on` per call cost ~80 ns and two threads that never exited).

use super::status::*;
use crate::error::{Error, ErrorKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stores opened through the C API and not yet closed.
static OPEN_STORES: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn store_opened() {
    OPEN_STORES.fetch_add(1, Ordering::AcqRel);
}

pub(crate) fn store_closed() {
    OPEN_STORES.fetch_sub(1, Ordering::AcqRel);
}

/// Stops the library's background threads (the runtime of asynchronous work, if it was
/// started) so that a leak checker sees none and the library can be unloaded. Optional:
/// a program that never calls it loses nothing. Later calls start them again as needed.
///
/// Ownership: none. Thread safety: any thread that is not inside an evstore callback.
/// Returns EVS_OK (also when nothing was running); EVS_ERR_BUSY when a store is still
/// open (close every store first; nothing is stopped).
#[no_mangle]
pub extern "C" fn evs_shutdown() -> evs_status {
    boundary(|| {
        let open = OPEN_STORES.load(Ordering::Acquire);
        if open > 0 {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("{open} store(s) still open: close them before evs_shutdown"),
            ));
        }
        let taken = crate::runtime::take();
        if let Some(rt) = taken {
            // Work started by a store that is closed now has nothing left to wait for.
            if let Ok(rt) = Arc::try_unwrap(rt) {
                rt.shutdown_timeout(Duration::from_secs(5));
            }
        }
        Ok(EVS_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("evstore-rt"))
            })
            .count()
    }

    #[test]
    fn the_runtime_starts_on_first_use_and_shutdown_stops_its_threads() {
        let rt = crate::runtime::runtime().unwrap();
        assert_eq!(rt.block_on(async { 7 }), 7);
        rt.spawn(async {});
        drop(rt);
        assert!(crate::runtime::is_running());
        store_opened();
        assert_eq!(evs_shutdown(), EVS_ERR_BUSY);
        assert!(crate::runtime::is_running());
        store_closed();
        assert_eq!(evs_shutdown(), EVS_OK);
        assert!(!crate::runtime::is_running());
        assert_eq!(runtime_threads(), 0);
        assert_eq!(evs_shutdown(), EVS_OK);
    }
}
