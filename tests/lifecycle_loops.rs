//! The I/O-error and power-cut loops (as tests/fault_loops.rs runs them) over a workload
//! that deletes, truncates and sets retention rules as well as appending: for every k
//! the workload reaches, under each fsync policy, the file system fails its k-th
//! mutating operation (or loses power right after it); the store must then open with
//! every acknowledged operation's effect (appends and lifecycle entries alike, each at
//! the position it was acknowledged at), nothing refused, and every read path as the
//! model of tests/common/life.rs says for the operations the log kept (a prefix of those
//! not refused).
//!
//! The script compacts three times (sealing the active segment each time and rewriting
//! the segments its deletes, truncations and rules emptied): every step of a compaction
//! fails or loses power at some k too.
//!
//! `make test` runs each loop once through (one fault kind or power-cut variant per k,
//! taking turns); `EVS_FAULT_LOOPS=full` runs every kind at every k.

mod common;
#[path = "support/faultfs.rs"]
mod faultfs;

use common::life::{check, Model};
use evstore::store::lifecycle::Rule;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::FsyncPolicy;
use faultfs::{Fault, FaultFs, Keep, Op, Plan};
use std::time::Duration;

const STORE: &str = "/s";
const SIZES: [usize; 5] = [9_000, 40, 21_000, 700, 14_000];

fn full() -> bool {
    std::env::var("EVS_FAULT_LOOPS").is_ok_and(|v| v == "full")
}

fn options(fs: &FaultFs, fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        fsync,
        max_segment_size: 64 << 10,
        preallocate: true,
        vfs: fs.arc(),
        // Compactions happen where the script says (a thread's would move the k-th op).
        compaction_trigger_percent: 0,
        ..StoreOptions::default()
    }
}

/// One operation of the workload.
#[derive(Debug, Clone)]
enum Act {
    Append(&'static str, Vec<Vec<u8>>),
    Delete(&'static str, bool),
    Truncate(&'static str, u64),
    Retain(&'static str, bool, u64),
    Snapshot,
    Sync,
    Compact,
}

impl Act {
    /// Positions it takes in the log when it is there.
    fn size(&self) -> u64 {
        match self {
            Act::Append(_, p) => p.len() as u64,
            Act::Delete(..) | Act::Truncate(..) | Act::Retain(..) => 1,
            Act::Snapshot | Act::Sync | Act::Compact => 0,
        }
    }
}

fn payload(i: usize, j: usize) -> Vec<u8> {
    let mut p = format!("a{i:02}e{j}|").into_bytes();
    p.resize(SIZES[(i + j) % SIZES.len()], b'a' + (i % 26) as u8);
    p
}

/// The script: appends across three streams (rotating 64 KiB segments), and between
/// them a truncation, a stream rule, a soft delete (then appends continuing it), a
/// snapshot, a hard delete, a sync, a category rule and a lower truncation.
fn script() -> Vec<Act> {
    let app = |i: usize, s: &'static str, n: usize| {
        Act::Append(s, (0..n).map(|j| payload(i, j)).collect())
    };
    vec![
        app(0, "s-a", 2),
        app(1, "s-b", 3),
        app(2, "s-c", 1),
        Act::Truncate("s-a", 1),
        app(4, "s-a", 2),
        Act::Retain("s-b", false, 2),
        Act::Delete("s-c", false),
        Act::Compact,
        Act::Snapshot,
        app(8, "s-c", 2),
        app(9, "s-b", 2),
        Act::Delete("s-a", true),
        Act::Compact,
        Act::Sync,
        Act::Retain("s-", true, 3),
        app(13, "s-b", 1),
        Act::Truncate("s-b", 3),
        app(15, "", 1),
        app(16, "s-c", 3),
        Act::Compact,
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked(u64),
    Refused,
    /// The power went during the call: the caller never heard back.
    Unknown,
}

struct Run {
    outcomes: Vec<Outcome>,
    /// Acknowledged operations before this index must survive a power cut.
    durable_before: usize,
}

fn act(store: &Store, a: &Act) -> evstore::Result<Option<u64>> {
    let ex = ExpectedVersion::Any;
    Ok(Some(match a {
        Act::Append("", ps) => store.append_event("T", &ps[0])?,
        Act::Append(s, ps) => {
            let ins: Vec<EventInput<'_>> = ps.iter().map(|p| EventInput::new("T", p)).collect();
            store.append(s, ex, &ins)?.first_position
        }
        Act::Delete(s, hard) => store.delete_stream(s, ex, *hard, None)?,
        Act::Truncate(s, before) => store.truncate_stream(s, *before, None)?,
        Act::Retain(t, category, count) => {
            let rule = Rule {
                max_count: *count,
                max_age_us: 0,
            };
            store.set_retention(t, *category, rule, None)?
        }
        Act::Snapshot => {
            store.snapshot()?;
            return Ok(None);
        }
        Act::Sync => {
            store.sync()?;
            return Ok(None);
        }
        Act::Compact => {
            store.compact()?;
            return Ok(None);
        }
    }))
}

fn workload(fs: &FaultFs, fsync: FsyncPolicy) -> Run {
    let store = match Store::open(STORE, options(fs, fsync), Vec::new()) {
        Ok((s, _)) => s,
        Err(e) => {
            // Nothing was written: the store must still open, empty.
            assert!(!e.message.is_empty());
            return Run {
                outcomes: vec![Outcome::Refused; script().len()],
                durable_before: 0,
            };
        }
    };
    let always = fsync == FsyncPolicy::Always;
    let mut run = Run {
        outcomes: Vec::new(),
        durable_before: 0,
    };
    for a in script() {
        let r = act(&store, &a);
        let outcome = match (&r, fs.is_dead()) {
            (_, true) => Outcome::Unknown,
            (Ok(Some(p)), false) => Outcome::Acked(*p),
            (Ok(None), false) => Outcome::Refused,
            (Err(e), false) => {
                assert!(!e.message.is_empty(), "an error without a message");
                Outcome::Refused
            }
        };
        run.outcomes.push(outcome);
        let done = run.outcomes.len();
        match (&a, &r) {
            (Act::Sync, Ok(_)) if !fs.is_dead() => run.durable_before = done,
            _ if always && matches!(outcome, Outcome::Acked(_)) => run.durable_before = done,
            _ => {}
        }
    }
    if store.close().is_ok() && !fs.is_dead() {
        run.durable_before = run.outcomes.len();
    }
    run
}

/// The model of the first `n` operations that are not refused, in order.
fn model_of(script: &[Act], run: &Run, n: usize) -> Model {
    let mut m = Model::default();
    let kept = script
        .iter()
        .zip(&run.outcomes)
        .filter(|(a, o)| **o != Outcome::Refused && a.size() > 0)
        .take(n);
    for (a, _) in kept {
        match a {
            Act::Append(s, ps) => m.append(s, 0, ps),
            Act::Delete(s, hard) => {
                m.delete(s, *hard);
            }
            Act::Truncate(s, before) => {
                m.truncate(s, *before);
            }
            Act::Retain(t, category, count) => {
                let rule = Rule {
                    max_count: *count,
                    max_age_us: 0,
                };
                m.rule(t, *category, rule, 0);
            }
            Act::Snapshot | Act::Sync | Act::Compact => {}
        }
    }
    m
}

/// Opens what is on `fs` and checks it against what the workload was told.
fn verify(
    fs: &FaultFs,
    fsync: FsyncPolicy,
    run: &Run,
    after_power_cut: bool,
) -> Result<(), String> {
    fs.heal();
    let script = script();
    let (store, report) = Store::open(STORE, options(fs, fsync), Vec::new())
        .map_err(|e| format!("the store does not open: {e:?}"))?;
    let store = std::sync::Arc::new(store);
    let n = store.next_position().unwrap();
    // A stream whose first records a compaction erased is listed at its first record
    // left when the open rebuilds it from the log (docs/lifecycle.md): the model's
    // check then compares the list without its order.
    let compacted = script
        .iter()
        .zip(&run.outcomes)
        .any(|(a, _)| matches!(a, Act::Compact));
    let when = match compacted && report.events_replayed > 0 {
        true => "after recovery (rebuilt from the log)",
        false => "after recovery",
    };
    // The log holds a prefix of the operations that were not refused: find it by its
    // length in positions.
    let candidates: Vec<usize> = (0..script.len())
        .filter(|&i| run.outcomes[i] != Outcome::Refused && script[i].size() > 0)
        .collect();
    let (mut at, mut kept) = (0u64, 0usize);
    while at < n && kept < candidates.len() {
        at += script[candidates[kept]].size();
        kept += 1;
    }
    if at != n {
        return Err(format!(
            "{n} positions do not end an operation (the kept ones end at {at})"
        ));
    }
    // Every acknowledged operation is there, at its position, unless a power cut could
    // take it (after the last durability point).
    let mut p = 0u64;
    for (k, &i) in candidates.iter().enumerate() {
        if let Outcome::Acked(ack) = run.outcomes[i] {
            if k < kept && ack != p {
                return Err(format!(
                    "{:?} acknowledged at {ack}, found at {p}",
                    script[i]
                ));
            }
            if k >= kept && (!after_power_cut || i < run.durable_before) {
                return Err(format!(
                    "acknowledged {:?} (at {ack}) is missing",
                    script[i]
                ));
            }
        }
        p += script[i].size();
    }
    let model = model_of(&script, run, kept);
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(&store, &model, 0, when)
    }));
    if let Err(panic) = checked {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(format!("the reads disagree with the model: {msg}"));
    }
    store
        .close()
        .map_err(|e| format!("close after check: {e:?}"))?;
    drop(store);
    // Recovery is done: a second open finds the same.
    let (again, _) = Store::open(STORE, options(fs, fsync), Vec::new())
        .map_err(|e| format!("the second open fails: {e:?}"))?;
    let again = std::sync::Arc::new(again);
    if again.next_position().unwrap() != n {
        return Err("the second open found another log".into());
    }
    Ok(())
}

const POLICIES: [(&str, FsyncPolicy); 3] = [
    ("ALWAYS", FsyncPolicy::Always),
    ("BATCH", FsyncPolicy::Batch(Duration::from_secs(10))),
    ("OS", FsyncPolicy::Os),
];

/// The mutating operations a clean run of the workload makes.
fn count_ops(fsync: FsyncPolicy) -> u64 {
    let fs = FaultFs::new();
    fs.set_plan(Plan {
        kinds: Op::MUTATING.to_vec(),
        ..Plan::default()
    });
    let run = workload(&fs, fsync);
    let refused: Vec<_> = script()
        .iter()
        .zip(&run.outcomes)
        .filter(|(a, o)| a.size() > 0 && !matches!(o, Outcome::Acked(_)))
        .map(|(a, _)| format!("{a:?}"))
        .collect();
    assert!(refused.is_empty(), "a clean run refused {refused:?}");
    verify(&fs, fsync, &run, false).expect("a clean run checks out");
    fs.counted()
}

fn report(failures: &[String], what: &str, points: u64, started: std::time::Instant) {
    println!(
        "{what}: {points} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("FIGURE {what}_points {points}");
    for f in failures.iter().take(20) {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {points} failure points broke a promise",
        failures.len()
    );
}

#[test]
fn every_failed_operation_keeps_every_lifecycle_promise() {
    let faults = [Fault::Eio, Fault::Enospc, Fault::TornWrite];
    let mut failures = Vec::new();
    let mut points = 0u64;
    let started = std::time::Instant::now();
    for (name, fsync) in POLICIES {
        let n = count_ops(fsync);
        for k in 1..=n {
            let chosen: Vec<Fault> = if full() {
                faults.to_vec()
            } else {
                vec![faults[(k as usize) % faults.len()]]
            };
            for fault in chosen {
                points += 1;
                let fs = FaultFs::new();
                fs.set_plan(Plan {
                    kinds: Op::MUTATING.to_vec(),
                    fail_at: Some(k),
                    fault: Some(fault),
                    ..Plan::default()
                });
                let run = workload(&fs, fsync);
                let label = format!("{name} op {k} ({:?}, {fault:?})", fs.injected());
                if let Err(e) = verify(&fs, fsync, &run, false) {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
                let cut = FaultFs::from_image(&fs.image_now(Keep::Synced));
                if let Err(e) = verify(&cut, fsync, &run, true) {
                    failures.push(format!("{label}, then a power cut: {e}"));
                }
            }
        }
    }
    report(&failures, "lifecycle_fault_loop", points, started);
}

#[test]
fn a_power_cut_after_every_operation_keeps_every_lifecycle_promise() {
    let keeps = [Keep::Synced, Keep::HalfTorn, Keep::All];
    let mut failures = Vec::new();
    let mut points = 0u64;
    let started = std::time::Instant::now();
    for (name, fsync) in POLICIES {
        let n = count_ops(fsync);
        for k in 1..=n {
            let chosen: Vec<Keep> = if full() {
                keeps.to_vec()
            } else {
                vec![keeps[(k as usize) % keeps.len()]]
            };
            for keep in chosen {
                points += 1;
                let fs = FaultFs::new();
                fs.set_plan(Plan {
                    kinds: Op::MUTATING.to_vec(),
                    cut_at: Some((k, keep)),
                    ..Plan::default()
                });
                let run = workload(&fs, fsync);
                let Some(image) = fs.cut_image() else {
                    failures.push(format!("{name} op {k}: the power cut never happened"));
                    continue;
                };
                let after = FaultFs::from_image(&image);
                if let Err(e) = verify(&after, fsync, &run, true) {
                    failures.push(format!("{name} power cut after op {k} ({keep:?}): {e}"));
                }
            }
        }
    }
    report(&failures, "lifecycle_power_cut_loop", points, started);
}
