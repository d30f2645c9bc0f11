//! This process's id without a system call: `getpid()` costs a syscall on every call
//! (glibc stopped caching it), and the log and the store ask on every operation whether
//! they are used from the process that opened them (a fork child must not write through
//! its parent's handles). The id is read once and refreshed in every forked child.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// 0 until first asked.
static PID: AtomicU32 = AtomicU32::new(0);
static WATCH: Once = Once::new();

extern "C" fn in_child_after_fork() {
    // Only an atomic store: async-signal-safe, as a child-side atfork handler must be.
    PID.store(0, Ordering::Release);
}

/// The id of the calling process.
pub fn id() -> u32 {
    WATCH.call_once(|| {
        // SAFETY: pthread_atfork only records the handler, a plain function of this
        // library that touches one atomic.
        unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
    });
    match PID.load(Ordering::Acquire) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Release);
            pid
        }
        pid => pid,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cached_id_is_the_process_id() {
        assert_eq!(super::id(), std::process::id());
        assert_eq!(super::id(), std::process::id());
    }
}
