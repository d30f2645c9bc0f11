//! The store handle's call gate: every call on an `evs_store` passes through it, so that
//! `evs_close` can refuse new calls and wait for the ones running before it frees the
//! handle. Without it, a close racing another thread's call is a use-after-free.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Set in `state` by the `evs_close` that owns the handle, as it begins.
const CLAIMED: u64 = 1 << 62;
/// Set once calls are refused; the low bits count the calls in flight.
const CLOSING: u64 = 1 << 63;
const FLAGS: u64 = CLAIMED | CLOSING;

/// The refusal of a call that starts once `evs_close` has begun (also of a subscription
/// started while close stops the others).
pub(crate) fn closing() -> Error {
    Error::invalid("store is closed or being closed: no call may start once evs_close has begun")
}

#[derive(Default)]
pub(crate) struct CallGate {
    state: AtomicU64,
    /// Only `close_and_wait` sleeps on it, and only the last call out wakes it.
    lock: Mutex<()>,
    drained: Condvar,
}

impl CallGate {
    /// Counts a call in, unless the handle is closing.
    pub(crate) fn enter(&self) -> Result<()> {
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        if before & CLOSING != 0 {
            self.leave();
            return Err(closing());
        }
        Ok(())
    }

    /// Counts a call out; the last one out while closing wakes `close_and_wait`.
    pub(crate) fn leave(&self) {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        if before & CLOSING != 0 && before & !FLAGS == 1 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.notify_all();
        }
    }

    /// Makes the caller the one close that owns the handle; `false` when another close
    /// had already begun. Calls still go through until `refuse_and_wait`.
    pub(crate) fn begin_close(&self) -> bool {
        self.state.fetch_or(CLAIMED, Ordering::AcqRel) & CLAIMED == 0
    }

    /// After `begin_close`: refuses every later call, then waits until the calls in
    /// flight have returned.
    pub(crate) fn refuse_and_wait(&self) {
        self.state.fetch_or(CLOSING, Ordering::AcqRel);
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.state.load(Ordering::Acquire) & !FLAGS != 0 {
            g = self.drained.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Calls running now (for tests and stats).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !FLAGS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn close_waits_for_calls_in_flight_and_refuses_new_ones() {
        let gate = Arc::new(CallGate::default());
        gate.enter().unwrap();
        let g = gate.clone();
        assert!(gate.begin_close());
        assert!(
            !gate.begin_close(),
            "a second close must not own the handle"
        );
        // Claimed but not yet refusing (subscription callbacks finish their work).
        gate.enter().unwrap();
        gate.leave();
        let closer = std::thread::spawn(move || g.refuse_and_wait());
        while gate.state.load(Ordering::Acquire) & CLOSING == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !closer.is_finished(),
            "close returned while a call was running"
        );
        let refused = gate.enter().unwrap_err();
        assert!(refused.message.contains("evs_close"), "{}", refused.message);
        assert_eq!(gate.in_flight(), 1);
        gate.leave();
        closer.join().unwrap();
        assert!(
            !gate.begin_close(),
            "a second close must not own the handle"
        );
    }

    #[test]
    fn close_with_nothing_in_flight_returns_at_once() {
        let gate = CallGate::default();
        for _ in 0..3 {
            gate.enter().unwrap();
            gate.leave();
        }
        assert!(gate.begin_close());
        gate.refuse_and_wait();
        assert_eq!(gate.in_flight(), 0);
    }
}
