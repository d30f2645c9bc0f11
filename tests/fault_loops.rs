//! The I/O-error and power-cut loops (as SQLite's are): a scripted workload runs on a file
//! system that fails its k-th operation, or loses power right after it, for every k the
//! workload reaches, under each fsync policy; after each run the store must open with
//! every acknowledged event there exactly once, byte for byte, no refused event, gapless
//! positions, and every batch whole or absent.
//!
//! `make test` runs the loops once through (14 appends; every k, the fault kinds and
//! power-cut variants taking turns); `EVS_FAULT_LOOPS=full` (`make stress`) runs 40
//! appends, every fault kind and every variant at every k, and fails reads as well.

#[path = "support/faultfs.rs"]
mod faultfs;

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::FsyncPolicy;
use faultfs::{Fault, FaultFs, Keep, Op, Plan};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

const STORE: &str = "/s";
const STREAMS: [&str; 3] = ["acct-a", "acct-b", "acct-c"];
const SIZES: [usize; 6] = [40, 19_000, 300, 9_000, 1_200, 25_000];

fn full() -> bool {
    std::env::var("EVS_FAULT_LOOPS").is_ok_and(|v| v == "full")
}

/// Appends in the workload: 14 (make test), 40 in the full loops (more rotations).
fn appends() -> usize {
    if full() {
        40
    } else {
        14
    }
}

fn options(fs: &FaultFs, fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        fsync,
        max_segment_size: 64 << 10,
        preallocate: true,
        vfs: fs.arc(),
        ..StoreOptions::default()
    }
}

/// What an append's caller was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked(u64),
    Refused,
    /// The power went during the call: the caller never heard back.
    Unknown,
}

struct Attempt {
    stream: &'static str,
    payloads: Vec<Vec<u8>>,
    outcome: Outcome,
}

/// What the workload did: every append it tried and how far acknowledged ones are
/// promised to be durable.
struct Run {
    attempts: Vec<Attempt>,
    /// Acknowledged attempts before this index must survive a power cut.
    durable_before: usize,
    opened: bool,
    /// Index files whose writing had finished when a call returned (the power still on):
    /// durable, so the next open must use them.
    index_files: BTreeSet<String>,
    /// The events of the newest snapshot whose writing had finished likewise.
    snapshot: Option<u64>,
}

/// Notes the index files and snapshots there are after a call that returned with the
/// power on: whatever wrote them has finished (renamed and synced its directory).
fn note_finished_files(fs: &FaultFs, run: &mut Run) {
    if fs.is_dead() {
        return;
    }
    let names = |dir: &str| fs.files_in(&Path::new(STORE).join(dir));
    run.index_files
        .extend(names("index").into_iter().filter(|n| n.ends_with(".idx")));
    let snapshots = names("snapshots").into_iter().filter_map(|n| {
        n.strip_prefix("snapshot-")?
            .strip_suffix(".snap")?
            .parse::<u64>()
            .ok()
    });
    run.snapshot = run.snapshot.max(snapshots.max());
}

/// A payload whose first bytes name its append and place in it, the rest a pattern.
fn payload(attempt: usize, j: usize, size: usize) -> Vec<u8> {
    let mut p = format!("a{attempt:03}e{j}|").into_bytes();
    let seed = (attempt * 31 + j * 7) as u8;
    while p.len() < size {
        p.push(seed.wrapping_add(p.len() as u8));
    }
    p
}

fn tag(p: &[u8]) -> Option<(usize, usize)> {
    let s = std::str::from_utf8(p.get(..7)?).ok()?;
    Some((s.get(1..4)?.parse().ok()?, s.get(5..6)?.parse().ok()?))
}

/// The scripted workload: appends of 1-3 events across three streams (the segment is
/// 64 KiB, so it rotates several times), a snapshot, an explicit sync, a close.
fn workload(fs: &FaultFs, fsync: FsyncPolicy) -> Run {
    let mut run = Run {
        attempts: Vec::new(),
        durable_before: 0,
        opened: false,
        index_files: BTreeSet::new(),
        snapshot: None,
    };
    let always = fsync == FsyncPolicy::Always;
    let store = match Store::open(STORE, options(fs, fsync), Vec::new()) {
        Ok((s, _)) => s,
        Err(e) => {
            assert!(!e.message.is_empty());
            return run;
        }
    };
    run.opened = true;
    for i in 0..appends() {
        let n = 1 + i % 3;
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|j| payload(i, j, SIZES[(i + j) % SIZES.len()]))
            .collect();
        let inputs: Vec<EventInput<'_>> = payloads
            .iter()
            .map(|p| EventInput::new("Moved", p))
            .collect();
        let stream = STREAMS[i % STREAMS.len()];
        let r = store.append(stream, ExpectedVersion::Any, &inputs);
        let outcome = match (&r, fs.is_dead()) {
            (_, true) => Outcome::Unknown,
            (Ok(a), false) => Outcome::Acked(a.first_position),
            (Err(e), false) => {
                assert!(!e.message.is_empty(), "an error without a message");
                Outcome::Refused
            }
        };
        run.attempts.push(Attempt {
            stream,
            payloads,
            outcome,
        });
        if always && matches!(outcome, Outcome::Acked(_)) {
            run.durable_before = run.attempts.len();
        }
        if i == 5 {
            let _ = store.snapshot();
        }
        if i == 9 && store.sync().is_ok() && !fs.is_dead() {
            run.durable_before = run.attempts.len();
        }
        note_finished_files(fs, &mut run);
    }
    if store.close().is_ok() && !fs.is_dead() {
        run.durable_before = run.attempts.len();
    }
    run
}

/// Opens what is on `fs` and checks the promises against what the workload was told.
/// `after_power_cut`: only acknowledged appends made durable must be there, and what the
/// caller never heard back about may or may not be. `files_used`: the index files and the
/// snapshot whose writing finished must be there and used (the power-cut loop, where no
/// operation failed).
fn check(
    fs: &FaultFs,
    fsync: FsyncPolicy,
    run: &Run,
    after_power_cut: bool,
    files_used: bool,
) -> Result<(), String> {
    fs.heal();
    let index_files = fs.files_in(&Path::new(STORE).join("index"));
    let opened = Store::open(STORE, options(fs, fsync), Vec::new());
    let (store, report) = opened.map_err(|e| format!("the store does not open: {e:?}"))?;
    if files_used {
        check_finished_files_used(run, &index_files, &report)?;
    }
    let store = std::sync::Arc::new(store);
    let mut cursor = store
        .read_all(0)
        .map_err(|e| format!("read_all fails: {e:?}"))?;
    // attempt -> (first position, events found in order)
    let mut found: HashMap<usize, (u64, Vec<usize>)> = HashMap::new();
    let mut order: Vec<usize> = Vec::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut expect = 0u64;
    let mut last_ts = 0u64;
    while let Some(e) = cursor.next().map_err(|e| format!("reading: {e:?}"))? {
        if e.position != expect {
            return Err(format!("position {} where {expect} was due", e.position));
        }
        expect += 1;
        if e.timestamp_us < last_ts {
            return Err(format!("timestamps go back at position {}", e.position));
        }
        last_ts = e.timestamp_us;
        let (a, j) = tag(e.payload).ok_or_else(|| format!("unknown event at {}", e.position))?;
        let att = run
            .attempts
            .get(a)
            .ok_or_else(|| format!("event of append {a}, which was never made"))?;
        if att.payloads.get(j).map(Vec::as_slice) != Some(e.payload) || e.stream != att.stream {
            return Err(format!("the bytes of append {a} event {j} differ"));
        }
        let v = versions.entry(e.stream.to_string()).or_default();
        if e.stream_version != *v {
            return Err(format!(
                "stream {} version {} at position {} where {} was due",
                e.stream, e.stream_version, e.position, v
            ));
        }
        *v += 1;
        let entry = found.entry(a).or_insert_with(|| {
            order.push(a);
            (e.position, Vec::new())
        });
        if entry.1.len() != j || e.position != entry.0 + j as u64 {
            return Err(format!(
                "append {a}: event {j} out of place (a batch split?)"
            ));
        }
        entry.1.push(j);
    }
    drop(cursor);
    if order.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("appends out of order or repeated: {order:?}"));
    }
    for (a, att) in run.attempts.iter().enumerate() {
        let here = found.get(&a);
        if let Some((first, js)) = here {
            if js.len() != att.payloads.len() {
                return Err(format!(
                    "append {a} is partly there: {} of {} events",
                    js.len(),
                    att.payloads.len()
                ));
            }
            if let Outcome::Acked(p) = att.outcome {
                if *first != p {
                    return Err(format!("append {a} acknowledged at {p}, found at {first}"));
                }
            }
        }
        match att.outcome {
            Outcome::Refused if here.is_some() => {
                return Err(format!("refused append {a} is in the log"))
            }
            Outcome::Acked(p) if here.is_none() && (!after_power_cut || a < run.durable_before) => {
                return Err(format!(
                    "acknowledged append {a} (position {p}{}) is missing",
                    if a < run.durable_before {
                        ", made durable"
                    } else {
                        ""
                    }
                ));
            }
            _ => {}
        }
    }
    // Failed or crashed snapshot writes leave nothing behind once a writer opened.
    let tmps: Vec<String> = fs
        .files_in(&Path::new(STORE).join("snapshots"))
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    if !tmps.is_empty() {
        return Err(format!("temporary snapshot files left: {tmps:?}"));
    }
    let n = store.next_position().unwrap();
    store
        .close()
        .map_err(|e| format!("close after check: {e:?}"))?;
    drop(store);
    // Recovery is done: a second open finds the same.
    let (again, report) = Store::open(STORE, options(fs, fsync), Vec::new())
        .map_err(|e| format!("the second open fails: {e:?}"))?;
    if again.next_position().unwrap() != n || report.wal.corruption_detected {
        return Err(format!(
            "the second open found {} events (first {n}), torn tail {}",
            again.next_position().unwrap(),
            report.wal.corruption_detected
        ));
    }
    Ok(())
}

/// The index files and the snapshot that were written completely before the power went
/// are on the disk and the open uses them: a rename whose directory was not synced loses
/// the file and costs a rebuild, which no other check notices.
fn check_finished_files_used(
    run: &Run,
    index_files: &[String],
    report: &evstore::store::OpenReport,
) -> Result<(), String> {
    for name in &run.index_files {
        if !index_files.contains(name) {
            return Err(format!(
                "index file {name} was written before the power went and is gone"
            ));
        }
        if let Some(r) = report.index_files_rebuilt.iter().find(|r| r.contains(name)) {
            return Err(format!("index file {name} was not used: {r}"));
        }
    }
    if run.snapshot > report.snapshot_position {
        return Err(format!(
            "the snapshot of {:?} events was written before the power went, the open used {:?} (ignored: {:?})",
            run.snapshot, report.snapshot_position, report.snapshot_ignored
        ));
    }
    Ok(())
}

const POLICIES: [(&str, FsyncPolicy); 3] = [
    ("ALWAYS", FsyncPolicy::Always),
    ("BATCH", FsyncPolicy::Batch(Duration::from_secs(10))),
    ("OS", FsyncPolicy::Os),
];

/// The operations of the chosen kinds a clean run of the workload makes.
fn count_ops(fsync: FsyncPolicy, kinds: &[Op]) -> u64 {
    let fs = FaultFs::new();
    fs.set_plan(Plan {
        kinds: kinds.to_vec(),
        ..Plan::default()
    });
    let run = workload(&fs, fsync);
    assert!(
        run.opened
            && run
                .attempts
                .iter()
                .all(|a| matches!(a.outcome, Outcome::Acked(_)))
    );
    check(&fs, fsync, &run, false, true).expect("a clean run checks out");
    // The workload seals segments and takes a snapshot: the power-cut loop's check of
    // finished files has something to check.
    assert!(
        !run.index_files.is_empty() && run.snapshot.is_some(),
        "{:?} {:?}",
        run.index_files,
        run.snapshot
    );
    fs.counted()
}

fn report(failures: &[String], what: &str, points: u64, started: std::time::Instant) {
    println!(
        "{what}: {points} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("FIGURE {what}_points {points}");
    println!("FIGURE {what}_failed {}", failures.len());
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
fn every_failed_operation_keeps_every_promise() {
    let faults = [Fault::Eio, Fault::Enospc, Fault::TornWrite];
    let mut kinds_sets = vec![("mutating", Op::MUTATING.to_vec())];
    if full() {
        kinds_sets.push(("reading", Op::READING.to_vec()));
    }
    let mut failures = Vec::new();
    let mut points = 0u64;
    let started = std::time::Instant::now();
    for (kinds_name, kinds) in &kinds_sets {
        for (name, fsync) in POLICIES {
            let n = count_ops(fsync, kinds);
            println!("{name}: the workload makes {n} {kinds_name} operations");
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
                        kinds: kinds.clone(),
                        fail_at: Some(k),
                        fault: Some(fault),
                        ..Plan::default()
                    });
                    let run = workload(&fs, fsync);
                    let what = fs.injected();
                    let label = format!("{name} {kinds_name} op {k} ({what:?}, {fault:?})");
                    // The store as the OS has it (a crash of the process)...
                    if let Err(e) = check(&fs, fsync, &run, false, false) {
                        failures.push(format!("{label}: {e}"));
                        continue;
                    }
                    // ...and what a power cut after the failure would leave.
                    let cut = FaultFs::from_image(&fs.image_now(Keep::Synced));
                    if let Err(e) = check(&cut, fsync, &run, true, false) {
                        failures.push(format!("{label}, then a power cut: {e}"));
                    }
                }
            }
        }
    }
    report(&failures, "fault_loop", points, started);
}

#[test]
fn a_power_cut_after_every_operation_keeps_every_promise() {
    let keeps = [Keep::Synced, Keep::HalfTorn, Keep::All];
    let mut failures = Vec::new();
    let mut points = 0u64;
    let started = std::time::Instant::now();
    for (name, fsync) in POLICIES {
        let n = count_ops(fsync, Op::MUTATING);
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
                if let Err(e) = check(&after, fsync, &run, true, true) {
                    failures.push(format!("{name} power cut after op {k} ({keep:?}): {e}"));
                }
            }
        }
    }
    report(&failures, "power_cut_loop", points, started);
}
