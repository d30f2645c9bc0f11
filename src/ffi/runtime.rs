//! The global tokio runtime: the home of asynchronous work (the PostgreSQL backend's I/O
//! and timers, wave 2), started lazily by the first such work and stopped by
//! `evs_shutdown`. Synchronous calls of the file engine never touch it: they run on the
//! caller's thread (a `block_on` per call cost ~80 ns and two threads that never exited).

use super::status::*;
use crate::error::{Error, ErrorKind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stores opened through the C API and not yet closed.
static OPEN_STORES: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn store_opened() {
    OPEN_STORES.fetch_add(1, Ordering::AcqRel);
}

pub(crate) fn store_closed() {
    OPEN_STORES.fetch_sub(1, Ordering::AcqRel);
}

/// Stops the library's background threads (the runtime of asynchronous work, if it was
/// started) and waits until they have finished, so that a leak checker sees none and the
/// library can be unloaded: when it returns EVS_OK, no thread of the library runs. Work
/// still in flight on them (a connection attempt of a closed PostgreSQL store) is waited
/// for. Optional: a program that never calls it loses nothing. Later calls start the
/// threads again as needed.
///
/// Ownership: none. Thread safety: any thread that is not inside an evstore callback.
/// Returns EVS_OK (also when nothing was running); EVS_ERR_BUSY when a store is still
/// open, or one is being opened or closed on another thread (close every store first;
/// nothing is stopped).
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
        crate::runtime::stop()?;
        Ok(EVS_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

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
        // Work in flight when shutdown comes is waited for, not abandoned.
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        rt.spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(200));
            f.store(true, Ordering::Release);
        });
        assert!(crate::runtime::is_running());
        store_opened();
        assert_eq!(evs_shutdown(), EVS_ERR_BUSY);
        store_closed();
        // A store being opened on another thread holds the runtime: refused, not half
        // done (threads left running while EVS_OK is returned).
        assert_eq!(evs_shutdown(), EVS_ERR_BUSY);
        assert!(crate::runtime::is_running());
        assert_eq!(rt.block_on(async { 8 }), 8);
        drop(rt);
        assert_eq!(evs_shutdown(), EVS_OK);
        assert!(!crate::runtime::is_running());
        assert!(finished.load(Ordering::Acquire));
        // Every thread has finished (joined) when evs_shutdown returns ...
        assert_eq!(crate::runtime::threads(), 0);
        // ... and the kernel lets go of their /proc entries right after.
        let mut listed = runtime_threads();
        for _ in 0..500 {
            if listed == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            listed = runtime_threads();
        }
        assert_eq!(listed, 0, "runtime threads still listed in /proc");
        assert_eq!(evs_shutdown(), EVS_OK);
    }
}
