//! A dropped store lets go of its files before the drop returns: the close (the log
//! synced and closed, the compaction thread stopped and joined, `<store>/LOCK` released)
//! runs on the thread that drops the user's handle, whatever else holds the store at that
//! moment: the compaction thread in the middle of a segment, or a cursor. A program that
//! drops a store and opens it again at once gets it, never `Locked`.
//!
//! The compaction thread is caught in the middle of its work by a file system that
//! watches it (`Watch`): no sleep decides where it is.

#[path = "support/hookfs.rs"]
mod hookfs;

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::vfs::OpenMode;
use evstore::wal::FsyncPolicy;
use hookfs::{Hook, HookFs};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// The name the library gives its compaction thread.
const COMPACTOR: &str = "evstore-compactor";

/// The real file system, watching one store: it says when the compaction thread reads a
/// segment to rewrite it, can hold that thread where it creates the rewrite's file until
/// the user's handle of the store is gone (`hold`), and records which thread released
/// `<store>/LOCK`.
#[derive(Default)]
struct Watch {
    hold: bool,
    st: Mutex<Seen>,
    cv: Condvar,
}

#[derive(Default)]
struct Seen {
    /// The user's handle; the store's first rewrite waits until it is gone (`hold`).
    handle: Option<Weak<Store>>,
    /// The compaction thread opened a segment to rewrite it.
    reading: bool,
    /// The compaction thread is at the creation of a rewrite's file.
    at_rewrite: bool,
    /// The thread that released the store's lock.
    released_by: Option<ThreadId>,
}

impl Watch {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `cond` holds of what was seen; gives up after a minute (a compaction
    /// that never starts is a failure, not a hang).
    fn wait_for(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut seen = self.seen();
        while !cond(&seen) {
            assert!(Instant::now() < give_up, "no {what} within a minute");
            seen = self
                .cv
                .wait_timeout(seen, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The compaction thread creates a rewrite: under `hold`, the first time, it waits
    /// here (holding the store) until the user's handle can no longer be had.
    fn at_rewrite(&self) {
        let mut seen = self.seen();
        if !self.hold || seen.at_rewrite {
            return;
        }
        seen.at_rewrite = true;
        self.cv.notify_all();
        while seen.handle.as_ref().is_some_and(|h| h.upgrade().is_some()) {
            seen = self
                .cv
                .wait_timeout(seen, Duration::from_millis(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Hook for Watch {
    /// Notes the compaction thread's read of a segment, and holds it at a rewrite.
    fn open(&self, path: &Path, mode: OpenMode) {
        if std::thread::current().name() != Some(COMPACTOR) {
            return;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".wal.compact") {
            self.at_rewrite();
        } else if name.ends_with(".wal") && mode == OpenMode::Read {
            self.seen().reading = true;
            self.cv.notify_all();
        }
    }

    /// Notes which thread let go of the store's lock.
    fn unlocked(&self, _path: &Path) {
        self.seen().released_by = Some(std::thread::current().id());
    }
}

/// Small segments and automatic compaction (a sealed segment more than 25% removed).
fn opts(fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        fsync,
        max_segment_size: 65536,
        compaction_trigger_percent: 25,
        ..Default::default()
    }
}

fn append(store: &Store, stream: &str, payload: &str) {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            &[EventInput::new("T", payload.as_bytes())],
        )
        .expect("append");
}

/// 20 rounds of 4 events of `keep` and 4 of `gone-R` (about 1 KB each), every `gone-R`
/// deleted, then 70 more `keep` events (the segments that held the deleted ones seal,
/// and the compaction thread, woken, rewrites them).
fn half_removed(store: &Store) {
    for r in 0..20 {
        for i in 0..4 {
            let keep = format!("KEEP-{r:02}-{i}-{}", "k".repeat(1000));
            append(store, "keep", &keep);
            append(store, &format!("gone-{r}"), &"g".repeat(1000));
        }
    }
    for r in 0..20 {
        store
            .delete_stream(&format!("gone-{r}"), ExpectedVersion::Any, false, None)
            .unwrap();
    }
    for i in 0..70 {
        let keep = format!("KEEP-tail-{i}-{}", "k".repeat(1000));
        append(store, "keep", &keep);
    }
}

/// The payloads of every event of `store`.
fn payloads(store: &Arc<Store>) -> Vec<String> {
    let mut c = store.clone().read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(String::from_utf8_lossy(e.payload).into_owned());
    }
    out
}

/// Opens the store in `dir` at once (no retry) and checks that it has every kept event
/// and none of the deleted ones.
fn reopens_whole(dir: &Path, what: &str) {
    let opened = Store::open(dir, opts(FsyncPolicy::Os), Vec::new());
    let store = Arc::new(
        opened
            .unwrap_or_else(|e| panic!("{what}: the reopen right after the drop: {e}"))
            .0,
    );
    let kept = payloads(&store);
    assert_eq!(kept.len(), 80 + 70, "{what}");
    assert!(kept.iter().all(|p| p.starts_with("KEEP-")), "{what}");
}

/// Opens a store on a `Watch` in `dir`, makes the compaction thread busy with a rewrite,
/// waits until `busy` says it is in the middle of it, then drops the user's (only)
/// handle: by the time the drop returns, this thread has released the lock, and the
/// store opens again at once with everything in it.
fn drop_while_compacting(dir: &Path, o: StoreOptions, hold: bool, what: &str) {
    let watch = Arc::new(Watch {
        hold,
        ..Watch::default()
    });
    let o = StoreOptions {
        vfs: HookFs::arc(&watch),
        ..o
    };
    let store = Arc::new(Store::open(dir, o, Vec::new()).unwrap().0);
    watch.seen().handle = Some(Arc::downgrade(&store));
    half_removed(&store);
    match hold {
        true => watch.wait_for("rewrite", |s| s.at_rewrite),
        false => watch.wait_for("segment read by the compaction thread", |s| s.reading),
    }
    drop(store);
    let released = watch.seen().released_by;
    assert_eq!(
        released,
        Some(std::thread::current().id()),
        "{what}: the lock was not released by the dropping thread before the drop returned \
         (None: not yet released; another id: released by another thread)"
    );
    reopens_whole(dir, what);
}

/// The compaction thread is held in the middle of a rewrite (the store in its hands)
/// until the user's handle is gone; the drop closes the store all the same, here, under
/// each fsync policy, many times. (Before the fix the compaction thread ran the close
/// once it let go: the lock was still held when the drop returned.)
#[test]
fn a_store_dropped_while_its_compaction_thread_holds_it_is_closed_before_the_drop_returns() {
    for round in 0..12 {
        let policy = match round % 3 {
            0 => FsyncPolicy::Always,
            1 => FsyncPolicy::Batch(Duration::from_millis(5)),
            _ => FsyncPolicy::Os,
        };
        let dir = tempfile::tempdir().unwrap();
        let what = format!("round {round}, {policy:?}");
        drop_while_compacting(dir.path(), opts(policy), true, &what);
    }
}

/// The same with a compaction that takes its time on its own (a budget of 1 byte a
/// second: it naps between records): the drop interrupts it, here, and nothing of the
/// segment it was rewriting is lost.
#[test]
fn a_store_dropped_during_a_throttled_compaction_is_closed_before_the_drop_returns() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let o = StoreOptions {
            compaction_bytes_per_second: 1,
            ..opts(FsyncPolicy::Batch(Duration::from_millis(5)))
        };
        drop_while_compacting(dir.path(), o, false, &format!("round {round}"));
    }
}

/// A cursor does not keep a dropped store open: the store is closed (its lock released)
/// when its handle goes, and the cursor still held then reads on, ends, or says what
/// failed, without a panic.
#[test]
fn a_cursor_kept_after_its_store_is_dropped_does_not_hold_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(FsyncPolicy::Os), Vec::new())
        .unwrap()
        .0;
    for i in 0..3 {
        append(&store, "keep", &format!("KEEP-{i}"));
    }
    let mut c = store.read_all(0).unwrap();
    assert_eq!(c.next().unwrap().unwrap().payload, b"KEEP-0");
    drop(store);
    let again = Store::open(dir.path(), opts(FsyncPolicy::Os), Vec::new());
    let again = again.unwrap_or_else(|e| panic!("the reopen while a cursor is held: {e}"));
    for _ in 0..3 {
        match c.next() {
            Ok(Some(e)) => assert!(e.payload.starts_with(b"KEEP-")),
            Ok(None) | Err(_) => break,
        }
    }
    drop(c);
    assert_eq!(again.0.next_position().unwrap(), 3);
}
