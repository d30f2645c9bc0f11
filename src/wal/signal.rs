//! A condition variable that makes the wake-up system call only when somebody waits.
//! The standard one calls `futex` on every notify; the log notifies after every append
//! and flush, almost always with nobody waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, MutexGuard};

/// Waiters must wait with the guard of the mutex under which notifiers change what the
/// waiters test; notifiers call `notify_all` after such a change (holding that mutex or
/// after releasing it). A waiter counts itself while holding the mutex, so a notifier
/// that made its change under the mutex afterwards sees the count.
#[derive(Default)]
pub(crate) struct Signal {
    cv: Condvar,
    waiters: AtomicUsize,
}

impl Signal {
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let guard = self.cv.wait(guard).unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    pub(crate) fn notify_all(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Many rounds of a waiter and a notifier handing a counter back and forth: a lost
    /// wake-up would hang the test.
    #[test]
    fn no_wake_up_is_lost() {
        let shared = Arc::new((Mutex::new(0u64), Signal::default()));
        let other = shared.clone();
        let rounds = 20_000;
        let t = std::thread::spawn(move || {
            for i in 0..rounds {
                let mut g = other.0.lock().unwrap();
                while *g != 2 * i + 1 {
                    g = other.1.wait(g);
                }
                *g += 1;
                drop(g);
                other.1.notify_all();
            }
        });
        for i in 0..rounds {
            let mut g = shared.0.lock().unwrap();
            while *g != 2 * i {
                g = shared.1.wait(g);
            }
            *g += 1;
            drop(g);
            shared.1.notify_all();
        }
        t.join().unwrap();
        assert_eq!(*shared.0.lock().unwrap(), 2 * rounds);
    }
}
