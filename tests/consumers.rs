//! Durable consumers on the file engine (docs/consumers.md): resuming after a reopen in
//! this process and another, at-least-once under 100 SIGKILLs, the atomic append and
//! checkpoint under kills (its effects counted), retry and park, reset and delete, and
//! consumers of read-only processes beside the writer.

mod common;

use common::procs::{self, Children};
use evstore::store::consumer::Filter;
use evstore::store::consumer_run::{self, Consumer, ConsumerOptions, Retried};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::wal::FsyncPolicy;
use evstore::ErrorKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "child";

/// Opens the store in `dir` (a writable open tried again while `Locked`, see `unlocked`).
fn open_with(dir: &Path, fsync: FsyncPolicy, read_only: bool) -> Arc<Store> {
    let opts = StoreOptions {
        fsync,
        read_only,
        ..StoreOptions::default()
    };
    let (store, _) =
        unlocked(|| Store::open(dir, opts.clone(), Vec::new())).expect("the store opens");
    Arc::new(store)
}

/// `open`, tried again for a moment while it is `Locked`: the other tests of this binary
/// spawn child processes, and a child forked while this process held a lock file (a
/// store's or a consumer's) holds the lock until its exec (the window README's "Threads
/// and ownership" describes), so a store or consumer just closed here may still be held
/// for that moment; a caller that reopens at once retries as here.
fn unlocked<T>(mut open: impl FnMut() -> evstore::Result<T>) -> evstore::Result<T> {
    let mut tries = 0;
    loop {
        match open() {
            Err(e) if e.kind == ErrorKind::Locked && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// `Consumer::open`, tried again while `Locked` (`unlocked`).
fn open_consumer(
    store: Arc<Store>,
    name: &str,
    opts: ConsumerOptions,
) -> evstore::Result<Consumer> {
    unlocked(|| Consumer::open(store.clone(), name, opts.clone()))
}

fn open(dir: &Path) -> Arc<Store> {
    open_with(dir, FsyncPolicy::Batch(Duration::from_millis(5)), false)
}

fn append(store: &Store, stream: &str, payload: &str) -> u64 {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            &[EventInput::new("T", payload.as_bytes())],
        )
        .expect("append")
        .first_position
}

/// The next event's position and payload, or `None` within `ms`.
fn next(c: &mut Consumer, ms: u64) -> Option<(u64, String)> {
    c.next_with(Some(Duration::from_millis(ms)), |e| {
        (e.position, String::from_utf8_lossy(e.payload).into_owned())
    })
    .expect("next")
}

fn quick() -> ConsumerOptions {
    ConsumerOptions {
        retry_backoff: Duration::from_millis(1),
        retry_backoff_max: Duration::from_millis(4),
        ..ConsumerOptions::default()
    }
}

#[test]
#[ignore = "a child process of the tests in this file"]
fn child() {
    let dir = std::env::var("EVS_TEST_DIR").expect("EVS_TEST_DIR");
    let dir = Path::new(&dir);
    match procs::role().as_str() {
        "resume" => {
            let store = open(dir);
            let mut c = open_consumer(store, "c", quick()).expect("open");
            let first = next(&mut c, 1000).expect("an event").0;
            procs::report(&format!("first {first}"));
        }
        "consume" => consume_child(dir),
        "project" => project_child(dir),
        other => panic!("no role {other}"),
    }
}

/// Consumes stream "s" with a checkpoint every 7 acknowledgements: reports each event
/// before acknowledging it ("h POS") and each stored checkpoint ("ck NEXT"); "end" once
/// nothing more comes.
fn consume_child(dir: &Path) {
    let store = open(dir);
    let opts = ConsumerOptions {
        filter: Filter {
            stream_prefix: Some("s".into()),
            types: Vec::new(),
        },
        checkpoint_every: 7,
        ..quick()
    };
    let mut c = open_consumer(store, "k", opts).expect("open");
    procs::report(&format!("ck {}", c.stored()));
    while let Some((p, _)) = next(&mut c, 200) {
        procs::report(&format!("h {p}"));
        // Paced, so that the parent's kill lands while events remain, however loaded
        // the machine (unpaced, a child could finish all of them before the kill).
        std::thread::sleep(Duration::from_millis(1));
        let before = c.stored();
        c.ack(p).expect("ack");
        if c.stored() != before {
            procs::report(&format!("ck {}", c.stored()));
        }
    }
    c.close().expect("close");
    procs::report("end");
}

/// For each event of "src-" streams, appends its effect (its position) to "effects" and
/// acknowledges it in one step; reports "e POS" after each step, "end" at the end.
fn project_child(dir: &Path) {
    let store = open_with(dir, FsyncPolicy::Always, false);
    let opts = ConsumerOptions {
        filter: Filter {
            stream_prefix: Some("src-".into()),
            types: Vec::new(),
        },
        // Only the atomic steps store progress.
        checkpoint_every: u64::MAX,
        checkpoint_interval: Duration::from_secs(3600),
        ..quick()
    };
    let mut c = open_consumer(store, "proj", opts).expect("open");
    while let Some((p, _)) = next(&mut c, 200) {
        let payload = p.to_string();
        let ev = [EventInput::new("Effect", payload.as_bytes())];
        let part = [StreamAppend {
            stream: "effects",
            expected: ExpectedVersion::Any,
            events: &ev,
        }];
        c.append_ack(&part, p).expect("the atomic step");
        procs::report(&format!("e {p}"));
    }
    procs::report("end");
}

#[test]
fn a_consumer_resumes_after_its_checkpoint_in_this_process_and_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..10 {
        append(&store, "s", &format!("e{i}"));
    }
    let mut c = open_consumer(store.clone(), "c", quick()).expect("open");
    for want in 0..5 {
        let (p, _) = next(&mut c, 1000).expect("an event");
        assert_eq!(p, want);
        c.ack(p).unwrap();
    }
    // Open elsewhere meanwhile: refused, in this process too.
    let again = open_consumer(store.clone(), "c", quick())
        .err()
        .expect("refused");
    assert_eq!(again.kind, ErrorKind::Locked, "{}", again.message);
    c.close().unwrap();
    let mut c = open_consumer(store.clone(), "c", quick()).expect("reopen");
    assert_eq!(next(&mut c, 1000).unwrap().0, 5);
    c.ack(5).unwrap();
    c.close().unwrap();
    drop(store);
    let mut kids = Children::new();
    kids.spawn(
        CHILD,
        "resume",
        &[("EVS_TEST_DIR", dir.path().display().to_string())],
    );
    let mut first = None;
    while let Some((_, line)) = kids.next_line() {
        first = line
            .strip_prefix("first ")
            .map(|v| v.parse::<u64>().unwrap());
    }
    kids.wait_all();
    // Checkpoints: 0 at open (position 10), 5 at close (11), 6 at the next close (12).
    assert_eq!(first, Some(6));
}

#[test]
fn sigkill_rounds_deliver_everything_at_least_once_and_nothing_before_a_checkpoint_twice() {
    let rounds: u64 = std::env::var("EVS_CONSUMER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = BTreeSet::new();
    {
        let store = open(dir.path());
        for i in 0..1500 {
            // One event in five is of a stream the filter passes over.
            let stream = if i % 5 == 4 { "other" } else { "s" };
            let p = append(&store, stream, &format!("e{i}"));
            if stream == "s" {
                wanted.insert(p);
            }
        }
        store.close().unwrap();
    }
    let env = [("EVS_TEST_DIR", dir.path().display().to_string())];
    let mut handled: BTreeMap<u64, u32> = BTreeMap::new();
    // The last checkpoint a child reported stored (it is, once reported).
    let mut checkpoint = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut finished = false;
    for round in 0..=rounds {
        let mut kids = Children::new();
        let k = kids.spawn(CHILD, "consume", &env);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The last round runs to its end.
        let kill_after = if round == rounds {
            u64::MAX
        } else {
            1 + seed % 40
        };
        let mut lines = 0u64;
        while let Some((_, line)) = kids.next_line() {
            let (what, n) = line.split_once(' ').unwrap_or((line.as_str(), "0"));
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "h" => {
                    assert!(
                        n >= checkpoint,
                        "round {round}: position {n} delivered again after checkpoint {checkpoint}"
                    );
                    assert!(wanted.contains(&n), "position {n} is not one of stream s");
                    *handled.entry(n).or_default() += 1;
                }
                "ck" => {
                    assert!(
                        n >= checkpoint,
                        "a checkpoint went back: {n} < {checkpoint}"
                    );
                    checkpoint = n;
                }
                "end" => finished = true,
                _ => {}
            }
            lines += 1;
            if lines == kill_after {
                kids.kill(k);
            }
        }
        kids.wait_all();
    }
    assert!(finished, "the last round did not reach the end");
    let missing: Vec<_> = wanted.iter().filter(|p| !handled.contains_key(p)).collect();
    assert!(missing.is_empty(), "events never handled: {missing:?}");
    let again = handled.values().filter(|&&n| n > 1).count();
    // Kills land between a handled event and its checkpoint: some come again.
    assert!(
        again > 0 || rounds < 10,
        "no event came twice in {rounds} rounds"
    );
}

#[test]
fn atomic_append_and_checkpoint_under_kills_has_every_effect_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources = BTreeSet::new();
    {
        let store = open(dir.path());
        for i in 0..300 {
            sources.insert(append(&store, &format!("src-{}", i % 7), &format!("e{i}")));
            if i % 3 == 0 {
                append(&store, "noise", "n");
            }
        }
        store.close().unwrap();
    }
    let env = [("EVS_TEST_DIR", dir.path().display().to_string())];
    let mut seed = 12345u64;
    let mut finished = false;
    let mut round = 0;
    while !finished {
        round += 1;
        assert!(round < 200, "never finished");
        let mut kids = Children::new();
        let k = kids.spawn(CHILD, "project", &env);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = if round > 40 {
            u64::MAX
        } else {
            1 + (seed >> 33) % 25
        };
        let mut lines = 0;
        while let Some((_, line)) = kids.next_line() {
            finished |= line == "end";
            lines += 1;
            if lines == kill_after {
                kids.kill(k);
            }
        }
        kids.wait_all();
    }
    let store = open(dir.path());
    let mut effects: BTreeMap<u64, u32> = BTreeMap::new();
    let mut cursor = store.read_stream("effects", 0).expect("effects");
    while let Some(e) = cursor.next().unwrap() {
        let source: u64 = std::str::from_utf8(e.payload).unwrap().parse().unwrap();
        *effects.entry(source).or_default() += 1;
    }
    let twice: Vec<_> = effects.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "effects not exactly once: {twice:?}");
    assert_eq!(effects.keys().copied().collect::<BTreeSet<_>>(), sources);
}

#[test]
fn retries_back_off_then_park_and_parked_events_replay_durably() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..4 {
        append(&store, "s", &format!("e{i}"));
    }
    let opts = ConsumerOptions {
        max_retries: 2,
        ..quick()
    };
    let mut c = open_consumer(store.clone(), "r", opts.clone()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert!(matches!(c.retry(0).unwrap(), Retried::After(_)));
    // The same event again, then the ones after it.
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert!(matches!(c.retry(0).unwrap(), Retried::After(_)));
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert_eq!(c.retry(0).unwrap(), Retried::Parked);
    assert_eq!(next(&mut c, 1000).unwrap().0, 1);
    c.park(1, "bad payload").unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 2);
    // Not delivered yet: refused.
    let e = c.ack(3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    c.ack(2).unwrap();
    c.close().unwrap();

    let parked = consumer_run::parked_of(&store, "r").unwrap();
    let reasons: Vec<_> = parked
        .iter()
        .map(|p| (p.position, p.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![(0, "gave up after 2 retries"), (1, "bad payload")]
    );
    let mut c = open_consumer(store.clone(), "r", opts.clone()).unwrap();
    assert_eq!(c.replay_parked(None).unwrap(), 2);
    assert_eq!(next(&mut c, 1000).unwrap(), (0, "e0".into()));
    c.ack(0).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap(), (1, "e1".into()));
    c.park(1, "still bad").unwrap();
    // Then the log goes on where it was.
    assert_eq!(next(&mut c, 1000).unwrap().0, 3);
    c.ack(3).unwrap();
    assert_eq!(
        c.replay_parked(Some(7)).unwrap_err().kind,
        ErrorKind::NotFound
    );
    c.close().unwrap();
    drop(store);
    let store = open(dir.path());
    let parked = consumer_run::parked_of(&store, "r").unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].position, parked[0].reason.as_str()),
        (1, "still bad")
    );
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].parked, 1);
}

#[test]
fn reset_and_delete_move_a_closed_consumer_and_list_shows_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..10 {
        append(&store, "s", &format!("e{i}"));
    }
    let mut c = open_consumer(store.clone(), "x", quick()).unwrap();
    for _ in 0..4 {
        let (p, _) = next(&mut c, 1000).unwrap();
        c.ack(p).unwrap();
    }
    // Open: a reset or delete is refused.
    assert_eq!(
        consumer_run::reset(&store, "x", 0).unwrap_err().kind,
        ErrorKind::Locked
    );
    let listed = consumer_run::list(&store).unwrap();
    assert!(listed[0].open);
    c.close().unwrap();
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed[0].next, Some(4));
    assert!(!listed[0].open);
    let head = store.next_position().unwrap();
    assert_eq!(listed[0].lag_events, head - 4);
    assert_eq!(
        consumer_run::reset(&store, "x", head + 1).unwrap_err().kind,
        ErrorKind::NotFound
    );
    consumer_run::reset(&store, "x", 2).unwrap();
    let mut c = open_consumer(store.clone(), "x", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 2);
    c.close().unwrap();
    consumer_run::delete(&store, "x").unwrap();
    assert!(consumer_run::list(&store).unwrap().is_empty());
    assert_eq!(
        consumer_run::delete(&store, "x").unwrap_err().kind,
        ErrorKind::NotFound
    );
    // A deleted name starts afresh, at its start position.
    let mut c = open_consumer(store.clone(), "x", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    c.close().unwrap();
}

#[test]
fn read_only_processes_keep_their_consumers_in_journals_the_writer_obeys() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path());
    for i in 0..10 {
        append(&writer, "s", &format!("e{i}"));
    }
    let reader = open_with(
        dir.path(),
        FsyncPolicy::Batch(Duration::from_millis(5)),
        true,
    );
    let mut c = open_consumer(reader.clone(), "ro", quick()).unwrap();
    for _ in 0..6 {
        let (p, _) = next(&mut c, 1000).unwrap();
        c.ack(p).unwrap();
    }
    // A read-only store cannot append: the atomic step is refused, nothing stored.
    let ev = [EventInput::new("T", b"x")];
    let part = [StreamAppend {
        stream: "fx",
        expected: ExpectedVersion::Any,
        events: &ev,
    }];
    assert_eq!(
        c.append_ack(&part, 5).unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    c.close().unwrap();
    let journal = dir.path().join("consumers").join(format!(
        "{}.journal",
        "ro".bytes().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    assert!(journal.exists(), "no journal at {}", journal.display());
    // The writer resumes the read-only process's consumer where it stopped...
    let mut c = open_consumer(writer.clone(), "ro", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 6);
    c.ack(6).unwrap();
    c.ack(6).unwrap();
    c.close().unwrap();
    // ...and the reader the writer's (its checkpoint is in the log it follows).
    let mut c = open_consumer(reader.clone(), "ro", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 7);
    c.close().unwrap();
    // A torn record at the journal's end (a crash mid-write) is cut, not an error.
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, &bytes).unwrap();
    let mut c = open_consumer(reader.clone(), "ro", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 7);
    c.ack(7).unwrap();
    c.close().unwrap();
    let mut c = open_consumer(reader.clone(), "ro", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 8);
    c.close().unwrap();
    // Damage before the end is reported.
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();
    let e = open_consumer(reader.clone(), "ro", quick()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{}", e.message);
}

#[test]
fn consumer_records_survive_snapshots_and_readers_pass_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        append(&store, "s", &format!("e{i}"));
    }
    let mut c = open_consumer(store.clone(), "snap", quick()).unwrap();
    for _ in 0..3 {
        let (p, _) = next(&mut c, 1000).unwrap();
        c.ack(p).unwrap();
    }
    c.close().unwrap();
    store.snapshot().unwrap();
    append(&store, "s", "after");
    drop(store);
    let store = open(dir.path());
    let mut c = open_consumer(store.clone(), "snap", quick()).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 3);
    c.close().unwrap();
    // read_all gives the six events only.
    let mut cursor = store.read_all(0).unwrap();
    let mut n = 0;
    while let Some(e) = cursor.next().unwrap() {
        assert_eq!(e.stream, "s");
        n += 1;
    }
    assert_eq!(n, 6);
    // A caught-up consumer is not behind its own records.
    let mut c = open_consumer(store.clone(), "snap", quick()).unwrap();
    while let Some((p, _)) = next(&mut c, 50) {
        c.ack(p).unwrap();
    }
    c.close().unwrap();
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed[0].lag_events, 0, "{listed:?}");
}

/// Every event of `store` from `from` read one at a time, and in batches of views of
/// `batch`: (position, stream, payload) each.
fn read_both_ways(store: &Store, from: u64, batch: usize) -> [Vec<(u64, String, String)>; 2] {
    let row = |e: &evstore::store::EventRef<'_>| {
        (
            e.position,
            e.stream.to_owned(),
            String::from_utf8_lossy(e.payload).into_owned(),
        )
    };
    let mut one = Vec::new();
    let mut cursor = store.read_all(from).unwrap();
    while let Some(e) = cursor.next().unwrap() {
        one.push(row(&e));
    }
    let mut batched = Vec::new();
    let mut cursor = store.read_all(from).unwrap();
    loop {
        match cursor.next_views(batch, &mut |e| batched.push(row(e))) {
            Some(v) => {
                assert!(v.error.is_none(), "{:?}", v.error);
                if v.count == 0 {
                    break;
                }
            }
            // Views cannot be promised: the events one at a time, as a caller copies them.
            None => match cursor.next().unwrap() {
                Some(e) => batched.push(row(&e)),
                None => break,
            },
        }
    }
    [one, batched]
}

/// Readers pass over entries that remove nothing (consumers' checkpoints, a forget)
/// without judging events, one at a time and in batches of views, from any position;
/// once an entry removes events they judge every event; a reopen knows which it is.
#[test]
fn readers_pass_over_entries_that_remove_nothing_and_judge_events_once_one_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let every_ack = ConsumerOptions {
        checkpoint_every: 1,
        ..quick()
    };
    let mut c = open_consumer(store.clone(), "interleaved", every_ack).unwrap();
    let mut events = Vec::new();
    for i in 0..60 {
        let stream = if i % 3 == 0 { "a" } else { "b" };
        let payload = format!("e{i}");
        let p = append(&store, stream, &payload);
        events.push((p, stream.to_owned(), payload));
        // Each acknowledgement writes a checkpoint entry right after the event.
        let (got, _) = next(&mut c, 1000).unwrap();
        c.ack(got).unwrap();
        if i == 30 {
            store.forget_subject("nobody").unwrap();
        }
    }
    c.close().unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert!(
        positions.windows(2).all(|w| w[1] > w[0] + 1),
        "an entry follows every event: {positions:?}"
    );
    let from_entry = positions[10] + 1;
    let after: Vec<_> = events
        .iter()
        .filter(|e| e.0 >= from_entry)
        .cloned()
        .collect();
    for batch in [1, 4, 256] {
        assert_eq!(
            read_both_ways(&store, 0, batch),
            [events.clone(), events.clone()]
        );
        assert_eq!(
            read_both_ways(&store, from_entry, batch),
            [after.clone(), after.clone()]
        );
    }
    // An entry that removes events: stream "a" leaves every read, in this handle and the
    // next.
    store
        .delete_stream("a", evstore::store::ExpectedVersion::Any, false, None)
        .unwrap();
    let kept: Vec<_> = events.iter().filter(|e| e.1 == "b").cloned().collect();
    assert_eq!(read_both_ways(&store, 0, 8), [kept.clone(), kept.clone()]);
    drop(store);
    let store = open(dir.path());
    assert_eq!(read_both_ways(&store, 0, 8), [kept.clone(), kept]);
}
