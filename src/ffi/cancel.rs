//! Thread cancellation (`pthread_cancel`) held off for the length of every call.
//!
//! glibc cancels a thread (deferred, the default type) at its next cancellation point
//! (read, write, fdatasync, close, nanosleep, pthread_join, ...) by unwinding its stack
//! with a forced unwind. Inside an evstore call that unwind would run through Rust
//! frames: `catch_unwind` stops it and the process aborts ("FATAL: exception not
//! rethrown"), and it would leave locks held and the call gate counted. So every export
//! turns cancellation off while it runs and restores the caller's state when it returns:
//! a cancel requested meanwhile stays pending and takes effect at the caller's next
//! cancellation point, in C frames only. Asynchronous cancellation cannot be made safe
//! this way (it may strike before the first instruction of the call); POSIX allows no
//! library call while it is enabled, and the header says so.

use std::ffi::c_int;

// The same values in glibc and musl.
const PTHREAD_CANCEL_ENABLE: c_int = 0;
const PTHREAD_CANCEL_DISABLE: c_int = 1;

extern "C" {
    // Not in the libc crate. Not a cancellation point itself, async-signal-safe.
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}

/// Cancellation off from `hold()` until the guard drops, then the caller's state again.
pub(crate) struct CancelHeld(c_int);

/// Turns cancellation off for the calling thread until the guard is dropped.
pub(crate) fn hold() -> CancelHeld {
    let mut old = PTHREAD_CANCEL_ENABLE;
    // SAFETY: a plain libc call on the calling thread, with a valid out-pointer. It can
    // fail only for an invalid state, which DISABLE is not.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
    CancelHeld(old)
}

impl Drop for CancelHeld {
    fn drop(&mut self) {
        if self.0 != PTHREAD_CANCEL_DISABLE {
            // SAFETY: as in `hold`; restores the state the caller had. Enabling does not
            // act on a pending deferred cancel here: that waits for a cancellation point,
            // which is in the caller's code.
            unsafe { pthread_setcancelstate(self.0, std::ptr::null_mut()) };
        }
    }
}

/// Runs a destructor-like body (the `_free` functions) with cancellation held off and
/// any panic caught and dropped: they return nothing, so there is no status to report it
/// with, and an unwind out of an `extern "C"` function would abort.
pub(crate) fn quietly(f: impl FnOnce()) {
    let _held = hold();
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let _ = super::status::panic_message(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> c_int {
        let mut now = -1;
        // SAFETY: reads (by setting and restoring) the calling thread's state.
        unsafe {
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut now);
            pthread_setcancelstate(now, std::ptr::null_mut());
        }
        now
    }

    #[test]
    fn cancellation_is_off_inside_and_the_callers_state_comes_back() {
        assert_eq!(state(), PTHREAD_CANCEL_ENABLE);
        {
            let _outer = hold();
            assert_eq!(state(), PTHREAD_CANCEL_DISABLE);
            {
                // A callback calling back into the library: nested, restored to "off".
                let _inner = hold();
                assert_eq!(state(), PTHREAD_CANCEL_DISABLE);
            }
            assert_eq!(state(), PTHREAD_CANCEL_DISABLE);
        }
        assert_eq!(state(), PTHREAD_CANCEL_ENABLE);
    }
}
