//! A condition variable that makes the wake-up system call only when somebody waits.
//! The standard one calls `futex` on every notify; the log notifies after every append
//! and flush, almost always with nobody waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

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

/// Wakes one sleeper (the log's flusher) that sleeps on a mutex of its own: ringing, and
/// the sleeper's timed naps and wake-ups, never touch the lock that the ringer uses for
/// its work, so an appender releasing that lock never finds the sleeper parked on it.
/// A ring before the sleeper waits is not lost: its next wait returns at once.
#[derive(Default)]
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    pub(crate) fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Sleeps until rung or until `timeout` (none: no limit) has passed.
    pub(crate) fn wait(&self, timeout: Option<Duration>) {
        let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        let until = timeout.map(|t| Instant::now() + t);
        while !*rung {
            rung = match until {
                None => self.cv.wait(rung).unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    self.cv
                        .wait_timeout(rung, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        *rung = false;
    }
}

/// A mutex's guard taken without ever parking on it for the first `tries` attempts
/// (yielding the CPU between them), then as `lock` does: for a background thread whose
/// rare, short uses of a lock should not make every release by the busy thread that
/// shares it a `futex` call.
pub(crate) fn lock_quietly<T>(m: &Mutex<T>, tries: u32) -> MutexGuard<'_, T> {
    for _ in 0..tries {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// A ring before the wait is kept; a wait with a limit ends without a ring.
    #[test]
    fn a_ring_before_the_wait_is_not_lost() {
        let bell = Arc::new(Doorbell::default());
        bell.ring();
        bell.wait(None);
        bell.wait(Some(Duration::from_millis(1)));
        let other = bell.clone();
        let t = std::thread::spawn(move || other.ring());
        bell.wait(None);
        t.join().unwrap();
    }
}
