//! Followers (issue 19): a read-only store in one process beside a writer in another, the
//! writer on a file system with planted faults (`OsFaults`: a failing fdatasync, a write
//! torn in the middle of a batch, pages lost after a failed writeback), killed or not.
//! Each test runs the writers and the follower as separate processes (this binary run
//! again as a child, `common/procs.rs`) and checks what the follower handed out against
//! what the writers were told and what the log holds at the end.
//!
//! A follower gives up after `EVS_FOLLOW_SECONDS` (default 60) without reaching the count
//! it waits for, and says so; that is a failure of the test, not a timing it asserts.

mod common;
#[path = "support/faultfs.rs"]
mod faultfs;

use common::procs::{self, Children};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::FsyncPolicy;
use faultfs::{OsFaults, OsPlan};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "child";

fn policy(name: &str) -> FsyncPolicy {
    match name {
        "always" => FsyncPolicy::Always,
        "batch" => FsyncPolicy::Batch(Duration::from_millis(5)),
        "os" => FsyncPolicy::Os,
        other => panic!("no policy {other}"),
    }
}

fn options(policy_name: &str) -> StoreOptions {
    StoreOptions {
        fsync: policy(policy_name),
        max_segment_size: 256 << 10,
        ..StoreOptions::default()
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Appends single events with these payloads to stream "s"; panics on a refusal.
fn append_all(store: &Store, payloads: impl IntoIterator<Item = String>) {
    for p in payloads {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("T", p.as_bytes())],
            )
            .unwrap_or_else(|e| panic!("appending {p}: {e}"));
    }
}

fn numbered(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}-{i}"))
}

/// A writer's store on the fault layer, with a hook that tells the parent of each fault.
fn faulty_writer(dir: &str, policy_name: &str) -> (Store, OsFaults) {
    let faults = OsFaults::new();
    let opts = StoreOptions {
        vfs: faults.arc(),
        ..options(policy_name)
    };
    let (store, _) = Store::open(dir, opts, Vec::new()).expect("the writer opens");
    (store, faults)
}

fn report_faults() -> Option<faultfs::FaultHook> {
    Some(Arc::new(|what: &str| {
        procs::report(&format!("fault {what}"))
    }))
}

/// The child processes, by role.
#[test]
#[ignore = "a child process of the tests in this file"]
fn child() {
    let dir = env("EVS_TEST_DIR");
    let policy_name = env("EVS_TEST_POLICY");
    match procs::role().as_str() {
        "follower" => follower(&dir, procs::number("EVS_TEST_TOTAL")),
        "fsync-writer" => fsync_writer(&dir, &policy_name),
        "torn-writer" => torn_writer(&dir, &policy_name),
        "lossy-writer" => lossy_writer(&dir, &policy_name),
        "next-writer" => next_writer(&dir, &policy_name),
        "bulk-writer" => bulk_writer(&dir, &policy_name, procs::number("EVS_TEST_TOTAL")),
        "memory-follower" => memory_follower(&dir, procs::number("EVS_TEST_TOTAL")),
        "compacting-writer" => {
            compacting_writer(&dir, &policy_name, procs::number("EVS_TEST_TOTAL"))
        }
        "compaction-follower" => compaction_follower(&dir, procs::number("EVS_TEST_TOTAL")),
        other => panic!("no role {other}"),
    }
}

/// Five events, then (on the parent's go) one whose fdatasync waits 100 ms and fails.
fn fsync_writer(dir: &str, policy_name: &str) {
    let (store, faults) = faulty_writer(dir, policy_name);
    append_all(&store, numbered("a", 5));
    procs::report("opened");
    procs::wait_for_parent();
    faults.set_plan(OsPlan {
        fail_sync: Some((1, Duration::from_millis(100))),
        on_fault: report_faults(),
        ..OsPlan::default()
    });
    let refused = store.append(
        "s",
        ExpectedVersion::Any,
        &[EventInput::new("T", b"refused")],
    );
    let e = refused.expect_err("the append whose fdatasync failed is refused");
    procs::report(&format!("refused {:?}", e.kind));
    drop(store);
    // The lock is let go: the next writer may open.
    procs::report("closed");
}

/// Five events, then (on the parent's go) a batch of six whose write stores half its
/// bytes; the process then hangs in the write until the parent kills it.
fn torn_writer(dir: &str, policy_name: &str) {
    let (store, faults) = faulty_writer(dir, policy_name);
    append_all(&store, numbered("a", 5));
    procs::report("opened");
    procs::wait_for_parent();
    faults.set_plan(OsPlan {
        tear_write: Some(1),
        on_fault: report_faults(),
        ..OsPlan::default()
    });
    let payloads: Vec<String> = (0..6)
        .map(|i| format!("t-{i}-{}", "x".repeat(400)))
        .collect();
    let inputs: Vec<EventInput<'_>> = payloads
        .iter()
        .map(|p| EventInput::new("T", p.as_bytes()))
        .collect();
    let _ = store.append("s", ExpectedVersion::Any, &inputs);
    panic!("the torn write returned");
}

/// Five events made durable, five more acknowledged (written to the OS); on the parent's
/// go an fdatasync fails and the disk loses what it had not written back: the five
/// acknowledged events are gone from the file.
fn lossy_writer(dir: &str, policy_name: &str) {
    let (store, faults) = faulty_writer(dir, policy_name);
    append_all(&store, numbered("a", 5));
    store.sync().expect("the first sync");
    append_all(&store, numbered("l", 5));
    procs::report("opened");
    procs::wait_for_parent();
    faults.set_plan(OsPlan {
        fail_sync: Some((1, Duration::ZERO)),
        lose_unsynced: true,
        on_fault: report_faults(),
        ..OsPlan::default()
    });
    let e = store.sync().expect_err("the sync fails");
    procs::report(&format!("lost {:?}", e.kind));
    drop(store);
    procs::report("closed");
}

/// The next writer: recovers the store (on the plain file system) and appends 20 events.
fn next_writer(dir: &str, policy_name: &str) {
    let (store, _) = Store::open(dir, options(policy_name), Vec::new()).expect("recovers");
    append_all(&store, numbered("b", 20));
    store.close().unwrap();
    procs::report("done");
}

fn open_read_only(dir: &str) -> Store {
    let opts = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir, opts, Vec::new()).expect("the follower opens");
    store
}

/// Hands out every new event as `event POSITION PAYLOAD`, polling, until `total` are
/// seen. On an error it reports `error KIND MESSAGE`, reopens (`reopened`) and starts
/// again from position 0.
fn follower(dir: &str, total: u64) {
    let give_up = Instant::now() + Duration::from_secs(follow_seconds());
    let mut store = open_read_only(dir);
    let mut seen = 0u64;
    while seen < total {
        if Instant::now() > give_up {
            procs::report(&format!("gave up at {seen}"));
            return;
        }
        if let Err(e) = take_new(&store, &mut seen) {
            procs::report(&format!("error {:?} {}", e.kind, e.message));
            store = open_read_only(dir);
            seen = 0;
            procs::report("reopened");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    procs::report(&format!("caught up {seen}"));
}

fn follow_seconds() -> u64 {
    std::env::var("EVS_FOLLOW_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn take_new(store: &Store, seen: &mut u64) -> evstore::Result<()> {
    let mut c = store.read_all(*seen)?;
    while let Some(e) = c.next()? {
        assert_eq!(e.position, *seen, "positions are gapless");
        let payload = String::from_utf8_lossy(e.payload);
        procs::report(&format!("event {} {payload}", e.position));
        *seen += 1;
    }
    Ok(())
}

/// What the parent heard from its children.
#[derive(Default)]
struct Heard {
    /// Each follower session's events (a new session after each reopen).
    sessions: Vec<BTreeMap<u64, String>>,
    errors: Vec<String>,
    caught_up: bool,
    writer_lines: Vec<String>,
}

impl Heard {
    fn take(&mut self, from_follower: bool, line: &str) {
        if !from_follower {
            self.writer_lines.push(line.to_owned());
            return;
        }
        if self.sessions.is_empty() {
            self.sessions.push(BTreeMap::new());
        }
        if let Some(rest) = line.strip_prefix("event ") {
            let (pos, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            let pos: u64 = pos.parse().unwrap();
            self.sessions
                .last_mut()
                .unwrap()
                .insert(pos, payload.to_owned());
        } else if let Some(rest) = line.strip_prefix("error ") {
            self.errors.push(rest.to_owned());
        } else if line == "reopened" {
            self.sessions.push(BTreeMap::new());
        } else if line.starts_with("caught up") {
            self.caught_up = true;
        } else if line.starts_with("gave up") {
            self.caught_up = false;
        }
    }

    fn seen(&self) -> usize {
        self.sessions.last().map_or(0, BTreeMap::len)
    }
}

/// Reads lines until `done` says so; panics if the children end first.
fn listen(
    kids: &mut Children,
    follower: usize,
    heard: &mut Heard,
    done: impl Fn(&Heard, usize, &str) -> bool,
) {
    while let Some((i, line)) = kids.next_line() {
        heard.take(i == follower, &line);
        if done(heard, i, &line) {
            return;
        }
    }
    panic!("the children ended before the test saw what it waited for");
}

/// Every event of the store now, by position (payload as text).
fn final_log(dir: &Path) -> BTreeMap<u64, String> {
    let opts = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir, opts, Vec::new()).unwrap();
    let mut c = store.read_all(0).unwrap();
    let mut out = BTreeMap::new();
    while let Some(e) = c.next().unwrap() {
        out.insert(e.position, String::from_utf8_lossy(e.payload).into_owned());
    }
    out
}

fn child_env(dir: &Path, policy_name: &str, total: u64) -> Vec<(&'static str, String)> {
    vec![
        ("EVS_TEST_DIR", dir.display().to_string()),
        ("EVS_TEST_POLICY", policy_name.to_owned()),
        ("EVS_TEST_TOTAL", total.to_string()),
    ]
}

/// A writer and a follower at work: the writer opened the store and appended, the
/// follower has seen its first events, and the writer was told to go on.
struct Scene {
    dir: tempfile::TempDir,
    kids: Children,
    env: Vec<(&'static str, String)>,
    writer: usize,
    follower: usize,
    heard: Heard,
}

impl Scene {
    /// Starts `writer_role` under `policy_name`, then the follower (waiting for 25
    /// events), and lets the writer go on once the follower has seen `seen` events.
    fn start(policy_name: &str, writer_role: &str, seen: usize) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let mut kids = Children::new();
        let env = child_env(dir.path(), policy_name, 25);
        let writer = kids.spawn(CHILD, writer_role, &env);
        let mut heard = Heard::default();
        listen(&mut kids, usize::MAX, &mut heard, |_, _, l| l == "opened");
        let follower = kids.spawn(CHILD, "follower", &env);
        listen(&mut kids, follower, &mut heard, |h, _, _| h.seen() == seen);
        kids.go(writer);
        Scene {
            dir,
            kids,
            env,
            writer,
            follower,
            heard,
        }
    }

    /// Waits for the writer to report a line that starts with `prefix`.
    fn writer_says(&mut self, prefix: &str) {
        let writer = self.writer;
        listen(&mut self.kids, self.follower, &mut self.heard, |_, i, l| {
            i == writer && l.starts_with(prefix)
        });
    }

    /// Starts the next writer (which recovers the store and appends 20 events), waits for
    /// the follower to catch up (or give up) and every child to end; returns the log as
    /// it is then. Panics if the follower did not catch up.
    fn finish(mut self) -> (Heard, BTreeMap<u64, String>) {
        self.kids.spawn(CHILD, "next-writer", &self.env);
        let follower = self.follower;
        listen(&mut self.kids, follower, &mut self.heard, |h, i, l| {
            i == follower && (l.starts_with("caught up") || l.starts_with("gave up"))
                || h.errors.len() > 2
        });
        self.kids.wait_all();
        let heard = self.heard;
        assert!(
            heard.caught_up,
            "the follower stalled at {} events (errors: {:?})",
            heard.seen(),
            heard.errors
        );
        let log = final_log(self.dir.path());
        assert_eq!(log.len(), 25);
        // The follower's last session handed out the log, position by position.
        assert_eq!(heard.sessions.last().unwrap(), &log);
        (heard, log)
    }
}

/// Item 1: under `ALWAYS` the writer's fdatasync fails after 100 ms (a device retrying
/// before EIO); the follower, polling meanwhile, must never hand out the refused event.
/// The store is reopened (recovery has no trace of it) and 20 appended: the follower follows
/// on, and everything it handed out is the final log's, position by position. (Before:
/// the follower returned the refused event, then stalled at its old count.)
#[test]
fn a_follower_never_hands_out_an_append_whose_fdatasync_fails() {
    let mut scene = Scene::start("always", "fsync-writer", 5);
    scene.writer_says("closed");
    let (heard, _) = scene.finish();
    assert!(
        heard.writer_lines.iter().any(|l| l == "refused Io"),
        "{:?}",
        heard.writer_lines
    );
    let handed: Vec<&String> = heard.sessions.iter().flat_map(|s| s.values()).collect();
    assert!(
        !handed.iter().any(|p| p.as_str() == "refused"),
        "the follower handed out the refused event: {handed:?}"
    );
    assert!(heard.errors.is_empty(), "{:?}", heard.errors);
}

/// Item 2: the writer dies half-way through writing a batch (half its bytes written, then
/// SIGKILL); the next writer recovers (cuts the torn batch) and appends 20 events: the
/// follower must see them, and nothing of the torn batch. (Before: it stayed at its old
/// count for good, under both policies.)
fn a_follower_goes_on_after_its_writer_dies_in_a_batch(policy_name: &str) {
    let mut scene = Scene::start(policy_name, "torn-writer", 5);
    scene.writer_says("fault torn write");
    // Let the follower look at the half-written batch a few hundred times.
    std::thread::sleep(Duration::from_millis(300));
    scene.kids.kill(scene.writer);
    let (heard, log) = scene.finish();
    assert!(heard.errors.is_empty(), "{:?}", heard.errors);
    assert!(log.values().all(|p| !p.starts_with("t-")), "{log:?}");
}

#[test]
fn a_follower_goes_on_after_its_writer_dies_in_a_batch_under_always() {
    a_follower_goes_on_after_its_writer_dies_in_a_batch("always");
}

#[test]
fn a_follower_goes_on_after_its_writer_dies_in_a_batch_under_batch() {
    a_follower_goes_on_after_its_writer_dies_in_a_batch("batch");
}

/// Item 1, the other half: events the follower counted vanish from the log (under `OS`
/// they were acknowledged when written; a failed fdatasync, and the pages the kernel
/// dropped with it, lose them), and the next writer appends others at their positions.
/// The follower must say so with a status of its own (`EVS_ERR_STALE` "... changed ...
/// reopen", not `EVS_ERR_CORRUPT`), and a reopen must read the log as it is. (Before: it
/// kept its count and never noticed.)
#[test]
fn a_follower_reports_a_log_changed_below_it_and_a_reopen_reads_the_log_as_it_is() {
    let mut scene = Scene::start("os", "lossy-writer", 10);
    scene.writer_says("closed");
    let (heard, log) = scene.finish();
    assert_eq!(
        heard.errors.len(),
        1,
        "one error, then a reopen: {:?}",
        heard.errors
    );
    let e = &heard.errors[0];
    assert!(
        e.starts_with("Stale ") && e.contains("changed") && e.contains("reopen"),
        "{e}"
    );
    assert!(log.values().all(|p| !p.starts_with("l-")), "{log:?}");
}

/// Appends `total` events in batches of ten across 50 streams, and reports the memory
/// its index holds.
fn bulk_writer(dir: &str, policy_name: &str, total: u64) {
    let (store, _) = Store::open(dir, options(policy_name), Vec::new()).expect("opens");
    procs::report("opened");
    procs::wait_for_parent();
    let mut n = 0u64;
    while n < total {
        let batch: Vec<String> = (n..(n + 10).min(total))
            .map(|p| format!("event {p} {}", "y".repeat((p % 40) as usize)))
            .collect();
        let inputs: Vec<EventInput<'_>> = batch
            .iter()
            .map(|p| EventInput::new("T", p.as_bytes()))
            .collect();
        let stream = format!("stream-{}", (n / 10) % 50);
        store
            .append(&stream, ExpectedVersion::Any, &inputs)
            .unwrap();
        n += batch.len() as u64;
    }
    let stats = store.stats().unwrap();
    procs::report(&format!("written {} {}", stats.index_bytes, stats.segments));
    procs::wait_for_parent();
}

/// Follows the writer until `total` events, checks that every one reads back (through the
/// index files it took up), and reports the memory its index holds.
fn memory_follower(dir: &str, total: u64) {
    let give_up = Instant::now() + Duration::from_secs(follow_seconds());
    let store = open_read_only(dir);
    while store.next_position().unwrap() < total {
        assert!(
            Instant::now() < give_up,
            "gave up at {}",
            store.next_position().unwrap()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = store.stats().unwrap();
    let mut c = store.read_all(0).unwrap();
    let mut p = 0u64;
    while let Some(e) = c.next().unwrap() {
        let want = format!("event {p} {}", "y".repeat((p % 40) as usize));
        assert_eq!(e.payload, want.as_bytes());
        p += 1;
    }
    assert_eq!(p, total);
    for s in [0u64, 17, 49] {
        let mut c = store.read_stream(&format!("stream-{s}"), 0).unwrap();
        let mut v = 0u64;
        while let Some(e) = c.next().unwrap() {
            assert_eq!(e.stream_version, v);
            let p = (v / 10) * 500 + s * 10 + v % 10;
            assert_eq!(e.position, p, "stream-{s} version {v}");
            v += 1;
        }
        assert_eq!(v, total / 500 * 10);
    }
    procs::report(&format!("followed {}", stats.index_bytes));
}

/// Item 3: a follower's memory must not grow with every event it follows: it takes up
/// the writer's index files as segments seal, so that its index holds about what the
/// writer's holds (the active segment's events and the streams). `EVS_FOLLOW_EVENTS`
/// (default 60,000) events; the figures are printed. (Before: 300,000 followed events
/// took 8.5 MB against the writer's 0.46 MB.)
#[test]
fn a_follower_takes_up_the_writers_index_files_and_holds_what_the_writer_holds() {
    let total: u64 = std::env::var("EVS_FOLLOW_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    assert_eq!(total % 500, 0, "EVS_FOLLOW_EVENTS is a multiple of 500");
    let dir = tempfile::tempdir().unwrap();
    let mut kids = Children::new();
    let env = child_env(dir.path(), "batch", total);
    let writer = kids.spawn(CHILD, "bulk-writer", &env);
    let mut heard = Heard::default();
    listen(&mut kids, usize::MAX, &mut heard, |_, _, l| l == "opened");
    let follower = kids.spawn(CHILD, "memory-follower", &env);
    kids.go(writer);
    let mut figures = (None, None);
    while let Some((i, line)) = kids.next_line() {
        let mut words = line.split(' ');
        match (i == follower, words.next()) {
            (false, Some("written")) => {
                figures.0 = words.next().map(|b| b.parse::<u64>().unwrap());
                if figures.1.is_some() {
                    kids.go(writer);
                }
            }
            (true, Some("followed")) => {
                figures.1 = words.next().map(|b| b.parse::<u64>().unwrap());
                if figures.0.is_some() {
                    kids.go(writer);
                }
            }
            _ => {}
        }
    }
    kids.wait_all();
    let (Some(writer_bytes), Some(follower_bytes)) = figures else {
        panic!("no figures: {figures:?}");
    };
    println!("FIGURE follower_index_bytes_{total} {follower_bytes}");
    println!("FIGURE writer_index_bytes_{total} {writer_bytes}");
    // The follower may hold one sealed segment more than the writer: the writer writes a
    // segment's index file after the append that began the next segment.
    assert!(
        follower_bytes <= 2 * writer_bytes + (512 << 10),
        "the follower holds {follower_bytes} bytes of index, the writer {writer_bytes}"
    );
}

/// Events per round of the compacting writer, and the positions a round takes (its
/// events and the delete's entry).
const ROUND_EVENTS: u64 = 40;
const ROUND_POSITIONS: u64 = ROUND_EVENTS + 1;

/// `rounds` rounds of: 40 events alternating between a stream kept forever (`keep-R%3`)
/// and one deleted at the round's end (`gone-R`), the delete, a compaction (which seals
/// the active segment and rewrites every segment the delete touched). Each event is
/// reported as `wrote POSITION PAYLOAD`.
fn compacting_writer(dir: &str, policy_name: &str, rounds: u64) {
    let opts = StoreOptions {
        max_segment_size: 64 << 10,
        compaction_trigger_percent: 0,
        ..options(policy_name)
    };
    let (store, _) = Store::open(dir, opts, Vec::new()).expect("the writer opens");
    procs::report("opened");
    procs::wait_for_parent();
    let pad = "p".repeat(700);
    for r in 0..rounds {
        for i in 0..ROUND_EVENTS {
            let (stream, payload) = match i % 2 {
                0 => (format!("keep-{}", r % 3), format!("keep {r} {i} {pad}")),
                _ => (format!("gone-{r}"), format!("gone {r} {i} {pad}")),
            };
            let at = store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    &[EventInput::new("T", payload.as_bytes())],
                )
                .unwrap_or_else(|e| panic!("appending {payload}: {e}"))
                .first_position;
            procs::report(&format!(
                "wrote {at} {}",
                &payload[..payload.len() - pad.len() - 1]
            ));
        }
        store
            .delete_stream(&format!("gone-{r}"), ExpectedVersion::Any, false, None)
            .unwrap();
        let info = store.compact().unwrap();
        procs::report(&format!("round {r} {}", info.segments_rewritten));
    }
    procs::report(&format!("done {}", store.next_position().unwrap()));
    procs::wait_for_parent();
    store.close().unwrap();
}

/// Follows a compacting writer until `rounds` rounds' positions are counted: hands out
/// each new event (`event POSITION PAYLOAD`, the payload without its padding) and, every
/// tenth look, reads everything again from position 0 (`again POSITION PAYLOAD`, ended by
/// `pass N`), through index files and segments the writer rewrites meanwhile. Any error
/// is reported (`error KIND MESSAGE`) and ends it. At the end, one last pass.
fn compaction_follower(dir: &str, rounds: u64) {
    let give_up = Instant::now() + Duration::from_secs(follow_seconds());
    // A failed open is reported as any error is (a panic here left the parent and the
    // writer waiting on each other).
    let opts = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let store = match Store::open(dir, opts, Vec::new()) {
        Ok((store, _)) => store,
        Err(e) => {
            procs::report(&format!("error {:?} at the open: {}", e.kind, e.message));
            procs::report("finished");
            return;
        }
    };
    let total = rounds * ROUND_POSITIONS;
    let short = |p: &[u8]| {
        let t = String::from_utf8_lossy(p).into_owned();
        t.rsplit_once(' ').map_or(t.clone(), |(h, _)| h.to_owned())
    };
    let mut next = 0u64;
    let mut looks = 0u64;
    let result = (|| -> evstore::Result<()> {
        loop {
            let end = store.next_position()?;
            let mut c = store.read_all(next)?;
            while let Some(e) = c.next()? {
                procs::report(&format!("event {} {}", e.position, short(e.payload)));
                next = e.position + 1;
            }
            looks += 1;
            if looks.is_multiple_of(10) || end >= total {
                let mut c = store.read_all(0)?;
                let mut n = 0;
                while let Some(e) = c.next()? {
                    procs::report(&format!("again {} {}", e.position, short(e.payload)));
                    n += 1;
                }
                procs::report(&format!("pass {n}"));
            }
            if end >= total {
                return Ok(());
            }
            if Instant::now() > give_up {
                procs::report(&format!("gave up at {end}"));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })();
    if let Err(e) = result {
        procs::report(&format!("error {:?} {}", e.kind, e.message));
    }
    procs::report("finished");
}

/// Issue 20: a follower in another process while its writer deletes and compacts over
/// and over (each compaction seals the active segment and rewrites segments the follower
/// has counted, indexed or holds in memory). The follower never fails, never hands out
/// an event other than the one the writer wrote at that position, never hands out an
/// event of a stream deleted before its last pass began, and its last pass holds every
/// kept event: exactly what a store opened afterwards reads.
fn a_follower_follows_a_writer_that_compacts(policy_name: &str) {
    let rounds: u64 = std::env::var("EVS_COMPACT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let mut kids = Children::new();
    let env = child_env(dir.path(), policy_name, rounds);
    let writer = kids.spawn(CHILD, "compacting-writer", &env);
    let mut heard = Heard::default();
    listen(&mut kids, usize::MAX, &mut heard, |_, _, l| l == "opened");
    kids.spawn(CHILD, "compaction-follower", &env);
    kids.go(writer);
    let mut wrote: BTreeMap<u64, String> = BTreeMap::new();
    let mut handed: BTreeMap<u64, String> = BTreeMap::new();
    let mut pass: BTreeMap<u64, String> = BTreeMap::new();
    let mut last_pass = BTreeMap::new();
    let mut errors = Vec::new();
    let mut rewritten = 0u64;
    let (mut done, mut finished) = (false, false);
    let split = |rest: &str| {
        let (p, payload) = rest.split_once(' ').unwrap();
        (p.parse::<u64>().unwrap(), payload.to_owned())
    };
    while let Some((i, line)) = kids.next_line() {
        let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match (i == writer, word) {
            (true, "wrote") => {
                let (p, payload) = split(rest);
                wrote.insert(p, payload);
            }
            (true, "round") => rewritten += rest.split(' ').nth(1).unwrap().parse::<u64>().unwrap(),
            (true, "done") => done = true,
            (false, "event") => {
                let (p, payload) = split(rest);
                assert!(handed.insert(p, payload).is_none(), "{p} handed out twice");
            }
            (false, "again") => {
                let (p, payload) = split(rest);
                pass.insert(p, payload);
            }
            (false, "pass") => last_pass = std::mem::take(&mut pass),
            (false, "error" | "gave") => errors.push(line.clone()),
            (false, "finished") => finished = true,
            _ => {}
        }
        if done && finished {
            kids.go(writer);
            done = false;
        }
    }
    kids.wait_all();
    assert!(errors.is_empty(), "the follower failed: {errors:?}");
    assert!(rewritten > 0, "the writer's compactions rewrote no segment");
    // The writer reports an event after its append returns (the follower may have had it
    // first): everything the follower handed out is checked against every write.
    assert_eq!(wrote.len() as u64, rounds * ROUND_EVENTS);
    for (p, payload) in handed.iter().chain(last_pass.iter()) {
        assert_eq!(wrote.get(p), Some(payload), "the follower's event at {p}");
    }
    // Every kept event was handed out as new, and is in the last pass.
    let kept: BTreeMap<u64, String> = wrote
        .iter()
        .filter(|(_, v)| v.starts_with("keep "))
        .map(|(&k, v)| (k, v.clone()))
        .collect();
    for (p, v) in &kept {
        assert_eq!(handed.get(p), Some(v), "kept event {p} was not handed out");
    }
    // The last pass began after the last delete: it holds exactly the kept events, as
    // a store opened now does.
    assert_eq!(last_pass, kept);
    let log: BTreeMap<u64, String> = final_log(dir.path())
        .into_iter()
        .map(|(p, v)| (p, v.rsplit_once(' ').unwrap().0.to_owned()))
        .collect();
    assert_eq!(log, kept);
}

#[test]
fn a_follower_follows_a_writer_that_compacts_under_always() {
    a_follower_follows_a_writer_that_compacts("always");
}

#[test]
fn a_follower_follows_a_writer_that_compacts_under_os() {
    a_follower_follows_a_writer_that_compacts("os");
}
