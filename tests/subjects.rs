//! Personal data (README "Personal data") on the file engine, through the public Rust
//! API: events of 1,000 data subjects, 100 forgotten; every read path returns those 100's
//! events erased (payload and metadata empty, the flag set, stream, type, position and
//! version kept) and the rest intact, through snapshots, reopen and compaction; no file of
//! the store holds any subject's plaintext or a forgotten subject's key; tampered or moved
//! ciphertext is corruption; a failed system call or a power cut at every step of a
//! forget leaves the key whole or gone; the master key.

mod common;
#[path = "support/faultfs.rs"]
mod faultfs;

use common::{drain, drain_tail, every_file, holder, keys_in};

use evstore::store::subjects::KeyOptions;
use evstore::store::{Event, EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::record::{self, RecordRef};
use evstore::wal::FsyncPolicy;
use evstore::ErrorKind;
use faultfs::{FaultFs, Keep, Op, Plan};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SUBJECTS: usize = 1000;

fn opts() -> StoreOptions {
    StoreOptions {
        fsync: FsyncPolicy::Os,
        max_segment_size: 64 << 10,
        compaction_trigger_percent: 0,
        ..Default::default()
    }
}

fn subject(i: usize) -> String {
    format!("user-{i:04}")
}

/// The plaintext marks of subject `i`'s event `k`: payload and metadata.
fn payload(i: usize, k: usize) -> String {
    format!("PII-PAYLOAD-{i:04}-{k}-{}", "p".repeat(40))
}

fn metadata(i: usize, k: usize) -> String {
    format!("PII-META-{i:04}-{k}")
}

fn forgotten(i: usize) -> bool {
    i % 10 == 3
}

/// Each subject: two events in its own stream `profile-<i>` and one in the shared stream
/// `orders`; between them, events that name no subject.
fn fill(store: &Store) {
    for i in 0..SUBJECTS {
        let s = subject(i);
        let (p0, m0, p1, m1) = (payload(i, 0), metadata(i, 0), payload(i, 1), metadata(i, 1));
        let mut a = EventInput::new("ProfileSet", p0.as_bytes());
        a.metadata = m0.as_bytes();
        a.subject = Some(&s);
        let mut b = EventInput::new("ProfileSet", p1.as_bytes());
        b.metadata = m1.as_bytes();
        b.subject = Some(&s);
        store
            .append(&format!("profile-{i}"), ExpectedVersion::NoStream, &[a, b])
            .unwrap();
        let (p2, m2) = (payload(i, 2), metadata(i, 2));
        let mut o = EventInput::new("OrderPlaced", p2.as_bytes());
        o.metadata = m2.as_bytes();
        o.subject = Some(&s);
        store.append("orders", ExpectedVersion::Any, &[o]).unwrap();
        if i % 50 == 0 {
            let plain = format!("PUBLIC-{i}");
            store
                .append(
                    "public",
                    ExpectedVersion::Any,
                    &[EventInput::new("Tick", plain.as_bytes())],
                )
                .unwrap();
        }
    }
}

/// Which subject and event `e` is, from its stream and version (`None`: no subject).
fn which(e: &Event) -> Option<(usize, usize)> {
    if let Some(n) = e.stream.strip_prefix("profile-") {
        return Some((n.parse().unwrap(), e.stream_version as usize));
    }
    (e.stream == "orders").then_some((e.stream_version as usize, 2))
}

/// Checks one event read back: a forgotten subject's is erased with its other fields
/// kept; any other is intact.
fn check_event(e: &Event, how: &str) {
    match which(e) {
        None => {
            assert_eq!(e.stream, "public", "{how}: {e:?}");
            assert!(e.subject.is_none() && !e.erased, "{how}: {e:?}");
            assert!(e.payload.starts_with(b"PUBLIC-"), "{how}: {e:?}");
        }
        Some((i, k)) => {
            assert_eq!(e.subject.as_deref(), Some(subject(i).as_str()), "{how}");
            let ty = if k == 2 { "OrderPlaced" } else { "ProfileSet" };
            assert_eq!(e.event_type, ty, "{how}");
            if forgotten(i) {
                assert!(e.erased, "{how}: subject {i} event {k} is not erased");
                assert!(
                    e.payload.is_empty() && e.metadata.is_empty(),
                    "{how}: {e:?}"
                );
            } else {
                assert!(!e.erased, "{how}: subject {i} event {k} is erased");
                assert_eq!(e.payload, payload(i, k).as_bytes(), "{how}");
                assert_eq!(e.metadata, metadata(i, k).as_bytes(), "{how}");
            }
        }
    }
}

/// Every read path, every event checked; the counts of what each path returns.
fn check_reads(store: &Arc<Store>, when: &str) {
    let all = drain_tail(store.clone().read_all(0).unwrap());
    let events = SUBJECTS * 3 + SUBJECTS / 50;
    assert_eq!(all.len(), events, "{when}: read_all");
    all.iter()
        .for_each(|e| check_event(e, &format!("{when}: read_all")));
    let erased = all.iter().filter(|e| e.erased).count();
    assert_eq!(erased, SUBJECTS / 10 * 3, "{when}: erased events");
    let back = drain(store.clone().read_all_backward(u64::MAX).unwrap());
    assert_eq!(back.len(), events, "{when}: read_all_backward");
    back.iter()
        .for_each(|e| check_event(e, &format!("{when}: backward")));
    for i in [0, 3, 13, 500, 503, 999] {
        let stream = format!("profile-{i}");
        let fwd = drain(store.clone().read_stream(&stream, 0).unwrap());
        let bwd = drain(
            store
                .clone()
                .read_stream_backward(&stream, u64::MAX)
                .unwrap(),
        );
        assert_eq!((fwd.len(), bwd.len()), (2, 2), "{when}: {stream}");
        fwd.iter().chain(&bwd).for_each(|e| check_event(e, when));
        let one = store.read_event(fwd[1].position).unwrap();
        check_event(&one, &format!("{when}: read_event"));
    }
    let orders = drain(store.clone().read_stream("orders", 0).unwrap());
    assert_eq!(orders.len(), SUBJECTS, "{when}: orders");
    orders.iter().for_each(|e| check_event(e, when));
    let cat = drain_tail(store.clone().read_category("profile-", 0).unwrap());
    assert_eq!(cat.len(), SUBJECTS * 2, "{when}: category");
    cat.iter().for_each(|e| check_event(e, when));
    let polled = drain_tail(store.clone().poll(0, 500).unwrap());
    assert!(!polled.is_empty(), "{when}: poll");
    polled.iter().for_each(|e| check_event(e, when));
    let subjects = store.subjects().unwrap();
    assert_eq!(subjects.len(), SUBJECTS, "{when}: subjects");
    for s in &subjects {
        let i: usize = s.name["user-".len()..].parse().unwrap();
        assert_eq!(s.events, 3, "{when}: {s:?}");
        assert_eq!(s.forgotten_at.is_some(), forgotten(i), "{when}: {s:?}");
    }
}

#[test]
fn forgotten_subjects_read_erased_everywhere_and_leave_no_plaintext_or_key_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
    fill(&store);
    // No subject's plaintext is in any file: only ciphertext was written.
    let mut files = Vec::new();
    every_file(dir.path(), &mut files);
    assert_eq!(
        holder(&files, b"PII-"),
        None,
        "plaintext of a subject on disk"
    );
    assert!(
        holder(&files, b"PUBLIC-").is_some(),
        "the search finds plaintext"
    );
    let keys = keys_in(&std::fs::read(dir.path().join("keys")).unwrap());
    assert_eq!(keys.len(), SUBJECTS);
    let doomed: Vec<(String, Vec<u8>)> = keys
        .into_iter()
        .filter(|(s, _)| forgotten(s["user-".len()..].parse().unwrap()))
        .collect();
    assert_eq!(doomed.len(), SUBJECTS / 10);
    assert!(
        holder(&files, &doomed[0].1).is_some(),
        "the search finds a key"
    );
    // Another name of the key file's inode (as a hard-linked backup would hold): the
    // forget overwrites the key where it is, so that one no longer holds it either.
    let link = tempfile::tempdir().unwrap();
    std::fs::hard_link(dir.path().join("keys"), link.path().join("keys")).unwrap();
    let mut at = BTreeSet::new();
    for (s, _) in &doomed {
        at.insert(store.forget_subject(s).unwrap());
    }
    assert_eq!(at.len(), doomed.len(), "one entry per forget");
    // Forgetting again is idempotent: the first entry's position.
    assert_eq!(
        store.forget_subject(&doomed[0].0).unwrap(),
        *at.first().unwrap()
    );
    // A forgotten subject takes no new events.
    let mut again = EventInput::new("ProfileSet", b"x");
    again.subject = Some(&doomed[0].0);
    let e = store
        .append("profile-x", ExpectedVersion::Any, &[again])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    check_reads(&store, "after the forgets");
    store.snapshot().unwrap();
    check_reads(&store, "after a snapshot");
    store.close().unwrap();
    drop(store);

    let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
    check_reads(&store, "reopened from the snapshot");
    // Something to compact: a deleted stream; then every segment rewritten is read again.
    store
        .delete_stream("public", ExpectedVersion::Any, false, None)
        .unwrap();
    let info = store.compact().unwrap();
    assert!(info.segments_rewritten > 0, "{info:?}");
    store.close().unwrap();
    drop(store);
    // Without the snapshots: the state rebuilt from the log alone.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
    let all = drain_tail(store.clone().read_all(0).unwrap());
    assert_eq!(all.len(), SUBJECTS * 3);
    all.iter()
        .for_each(|e| check_event(e, "compacted, rebuilt from the log"));
    store.close().unwrap();
    drop(store);

    let mut files = Vec::new();
    every_file(dir.path(), &mut files);
    every_file(link.path(), &mut files);
    assert_eq!(
        holder(&files, b"PII-"),
        None,
        "plaintext of a subject on disk"
    );
    for (s, key) in &doomed {
        assert_eq!(
            holder(&files, key),
            None,
            "the key of forgotten {s} is in a file"
        );
    }
}

#[test]
fn a_retry_of_an_append_stored_before_its_subject_was_forgotten_is_answered_as_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(), Vec::new()).unwrap();
    let mut e = EventInput::new("T", b"PII-retry");
    e.subject = Some("dave");
    e.id = Some([0xAB; 16]);
    let first = store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    store.forget_subject("dave").unwrap();
    // The same append again (its id stored): the stored position, nothing written.
    let again = store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    assert_eq!(again, first);
    // A new event of the forgotten subject: refused.
    let mut new = e;
    new.id = Some([0xAC; 16]);
    let err = store.append("s", ExpectedVersion::Any, &[new]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err:?}");
    assert_eq!(
        store.next_position().unwrap(),
        2,
        "only the event and the forget"
    );
    store.close().unwrap();
}

/// Rewrites the value of the record of `position` in the segment bytes `seg` with `f`,
/// the record's CRC made right again (so that only the cipher can tell).
fn rewrite_value(seg: &mut Vec<u8>, position: u64, f: impl Fn(&mut Vec<u8>)) {
    let mut at = 0;
    while at < seg.len() {
        let d = record::decode(&seg[at..]).unwrap();
        if d.record.key == position.to_le_bytes() {
            let mut value = d.record.value.to_vec();
            f(&mut value);
            let mut r = RecordRef::put(d.record.key, &value);
            r.reserved = d.record.reserved;
            let new = r.encode();
            assert_eq!(new.len(), d.len);
            seg.splice(at..at + d.len, new);
            return;
        }
        at += d.len;
    }
    panic!("no record of position {position}");
}

fn segment0(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.remove(0)
}

#[test]
fn a_tampered_or_moved_ciphertext_is_corruption_never_returned() {
    for case in ["flip", "move"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path(), opts(), Vec::new()).unwrap();
            for i in 0..2 {
                let p = payload(i, 0);
                let mut e = EventInput::new("T", p.as_bytes());
                e.subject = Some("alice");
                store.append("s", ExpectedVersion::Any, &[e]).unwrap();
            }
            store.close().unwrap();
        }
        let path = segment0(dir.path());
        let mut seg = std::fs::read(&path).unwrap();
        let sealed_of = |seg: &[u8], position: u64| -> Vec<u8> {
            let mut at = 0;
            loop {
                let d = record::decode(&seg[at..]).unwrap();
                if d.record.key == position.to_le_bytes() {
                    // The last 16 bytes are the tag; the nonce and ciphertext before it.
                    return d.record.value[d.record.value.len() - 60..].to_vec();
                }
                at += d.len;
            }
        };
        match case {
            "flip" => rewrite_value(&mut seg, 1, |v| {
                let n = v.len();
                v[n - 20] ^= 0x40;
            }),
            _ => {
                // Event 0's sealed bytes put in place of event 1's (same lengths).
                let from = sealed_of(&seg, 0);
                rewrite_value(&mut seg, 1, |v| {
                    let n = v.len();
                    v[n - 60..].copy_from_slice(&from);
                });
            }
        }
        std::fs::write(&path, &seg).unwrap();
        let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
        let mut c = store.clone().read_all(0).unwrap();
        assert_eq!(c.next().unwrap().unwrap().payload, payload(0, 0).as_bytes());
        let e = c.next().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{case}: {e:?}");
        assert_eq!(e.detail().position, Some(1), "{case}");
        let e = store.read_event(1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{case}: {e:?}");
    }
}

/// The subject's key as the key file holds it, if it does.
fn key_in_image(fs: &FaultFs, dir: &Path, subject: &str) -> Option<Vec<u8>> {
    let bytes = evstore::wal::vfs::read_file(&*fs.arc(), &dir.join("keys")).ok()?;
    keys_in(&bytes)
        .into_iter()
        .find(|(s, k)| s == subject && k.iter().any(|&b| b != 0))
        .map(|(_, k)| k)
}

fn fault_opts(fs: &FaultFs) -> StoreOptions {
    StoreOptions {
        vfs: fs.arc(),
        preallocate: false,
        ..opts()
    }
}

/// Reads every event back: alice's erased or all readable (never a mix), bob's intact.
/// Returns whether alice's are erased.
fn alice_erased(store: &Arc<Store>, how: &str) -> bool {
    let all = drain_tail(store.clone().read_all(0).unwrap());
    assert_eq!(all.len(), 4, "{how}: {all:?}");
    let alice: Vec<&Event> = all
        .iter()
        .filter(|e| e.subject.as_deref() == Some("alice"))
        .collect();
    let erased = alice[0].erased;
    for e in &alice {
        assert_eq!(e.erased, erased, "{how}: a mix");
        assert!(erased || e.payload == b"ALICE-DATA", "{how}");
    }
    for e in all.iter().filter(|e| e.subject.as_deref() == Some("bob")) {
        assert!(!e.erased && e.payload == b"BOB-DATA", "{how}: {e:?}");
    }
    erased
}

/// Every file of the image, searched for `needle`.
fn image_holds(fs: &FaultFs, dir: &Path, needle: &[u8]) -> bool {
    let vfs = fs.arc();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in vfs.list_dir(&d).unwrap_or_default() {
            let p = d.join(name);
            match evstore::wal::vfs::read_file(&*vfs, &p) {
                Ok(b) if b.windows(needle.len()).any(|w| w == needle) => return true,
                Ok(_) => {}
                Err(_) => stack.push(p),
            }
        }
    }
    false
}

#[test]
fn a_failure_or_power_cut_at_every_step_of_a_forget_leaves_the_key_whole_or_gone() {
    let dir = PathBuf::from("/store");
    let base = FaultFs::new();
    {
        let (store, _) = Store::open(&dir, fault_opts(&base), Vec::new()).unwrap();
        for (s, p) in [("alice", "ALICE-DATA"), ("bob", "BOB-DATA")] {
            for _ in 0..2 {
                let mut e = EventInput::new("T", p.as_bytes());
                e.subject = Some(s);
                store.append(s, ExpectedVersion::Any, &[e]).unwrap();
            }
        }
        store.close().unwrap();
    }
    let image = base.image_now(Keep::Synced);
    let key = key_in_image(&base, &dir, "alice").expect("alice's key");
    let (mut failed, mut cut, mut step) = (0, 0, 1u64);
    loop {
        // `step` is the k-th mutating operation of the forget: failed, or the power cut
        // right after it (each keep mode in turn).
        let keep = [Keep::Synced, Keep::All, Keep::HalfTorn][(step % 3) as usize];
        let mut done_any = false;
        for fail in [true, false] {
            let fs = FaultFs::from_image(&image);
            let store = Arc::new(Store::open(&dir, fault_opts(&fs), Vec::new()).unwrap().0);
            fs.set_plan(Plan {
                kinds: Op::MUTATING.to_vec(),
                fail_at: fail.then_some(step),
                fault: Some(faultfs::Fault::Eio),
                cut_at: (!fail).then_some((step, keep)),
                ..Default::default()
            });
            let forgot = store.forget_subject("alice");
            let hit = !fs.injected().is_empty() || fs.is_dead();
            done_any |= hit;
            let after = match fs.cut_image() {
                Some(img) => img,
                None => {
                    fs.heal();
                    if forgot.is_ok() {
                        assert!(alice_erased(&store, "same handle"), "step {step}");
                    }
                    let _ = store.close();
                    fs.image_now(Keep::Synced)
                }
            };
            drop(store);
            let fs2 = FaultFs::from_image(&after);
            let store = Arc::new(Store::open(&dir, fault_opts(&fs2), Vec::new()).unwrap().0);
            let how = format!("step {step} fail {fail}: {forgot:?}");
            let erased = alice_erased(&store, &how);
            if forgot.is_ok() && !fs.is_dead() {
                assert!(erased, "{how}: acknowledged, then not erased");
            }
            let holds = image_holds(&fs2, &dir, &key);
            // Whole or gone: erased exactly when the key is in no file (after the open,
            // which finishes a forget whose entry is in the log).
            assert_eq!(
                erased, !holds,
                "{how}: erased {erased}, key in a file {holds}"
            );
            if erased {
                assert!(store
                    .subjects()
                    .unwrap()
                    .iter()
                    .any(|s| s.name == "alice" && s.forgotten_at.is_some()));
            }
            let _ = store.close();
            if fail && hit {
                failed += 1;
            }
            if !fail && fs.is_dead() {
                cut += 1;
            }
        }
        if !done_any {
            break;
        }
        step += 1;
    }
    assert!(failed >= 5 && cut >= 5, "steps failed {failed}, cut {cut}");
}

#[test]
fn keys_wrapped_by_a_master_key_need_it_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let with = |k: Option<[u8; 32]>| StoreOptions {
        keys: KeyOptions {
            master: k.map(|k| Arc::new(evstore::store::subjects::KeyBytes::new(k))),
            provider: None,
        },
        ..opts()
    };
    {
        let (store, _) = Store::open(dir.path(), with(Some([7; 32])), Vec::new()).unwrap();
        let mut e = EventInput::new("T", b"SECRET-1");
        e.subject = Some("carol");
        store.append("c", ExpectedVersion::Any, &[e]).unwrap();
        store.close().unwrap();
    }
    let keys = keys_in(&std::fs::read(dir.path().join("keys")).unwrap());
    assert_eq!(keys[0].1.len(), 60, "a wrapped key: nonce, key, tag");
    // Without it, or with another: refused at open, saying why.
    for opt in [None, Some([8; 32])] {
        let e = Store::open(dir.path(), with(opt), Vec::new())
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
        assert!(e.message.contains("master key"), "{e:?}");
    }
    let store = Arc::new(
        Store::open(dir.path(), with(Some([7; 32])), Vec::new())
            .unwrap()
            .0,
    );
    let all = drain_tail(store.clone().read_all(0).unwrap());
    assert_eq!(all[0].payload, b"SECRET-1");
    store.close().unwrap();
}

/// The zero-copy batch cursor (`evs_cursor_next_batch`'s) hands out sealed events opened
/// and whole: a batch ends after one (its plaintext is the cursor's own memory, which the
/// next one would overwrite), and every batch together is exactly what `next` reads.
#[test]
fn batches_without_copies_hand_out_sealed_events_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
    fill(&store);
    let want = drain_tail(store.clone().read_all(0).unwrap());
    let mut c = store.clone().read_all(0).unwrap();
    let (mut got, mut batches) = (Vec::new(), 0);
    loop {
        let mut batch: Vec<Event> = Vec::new();
        let views = c
            .next_views(64, &mut |e| batch.push(e.to_owned()))
            .expect("nothing is removed: batches without copies");
        assert!(views.error.is_none(), "{:?}", views.error);
        assert_eq!(views.count, batch.len());
        if batch.is_empty() {
            break;
        }
        // A sealed event is the last of its batch.
        let sealed = batch.iter().position(|e| e.subject.is_some());
        assert!(
            sealed.is_none_or(|i| i == batch.len() - 1),
            "a sealed event at {sealed:?} of a batch of {}",
            batch.len()
        );
        for e in &batch {
            if let Some((i, k)) = which(e) {
                assert!(!e.erased, "{e:?}");
                assert_eq!(e.payload, payload(i, k).as_bytes());
                assert_eq!(e.metadata, metadata(i, k).as_bytes());
            }
        }
        got.extend(batch);
        batches += 1;
    }
    assert_eq!(got, want);
    assert!(batches > SUBJECTS, "{batches} batches");
}

/// The file engine's atomic append and checkpoint (`evs_consumer_append`) seals events
/// naming a subject as an append does (no plaintext in any file); after the subject is
/// forgotten, a step naming it is refused and writes neither its events nor its
/// checkpoint.
#[test]
fn atomic_consumer_steps_seal_events_naming_a_subject_and_refuse_a_forgotten_one() {
    use evstore::store::consumer_run::{Consumer, ConsumerOptions};
    use evstore::store::StreamAppend;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), opts(), Vec::new()).unwrap().0);
    for i in 0..3 {
        let p = format!("src-{i}");
        store
            .append(
                "src",
                ExpectedVersion::Any,
                &[EventInput::new("T", p.as_bytes())],
            )
            .unwrap();
    }
    let o = ConsumerOptions {
        checkpoint_every: u64::MAX,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..ConsumerOptions::default()
    };
    let mut c = Consumer::open(store.clone(), "projector", o).unwrap();
    let mut step = |payload: &str| {
        let mut e = EventInput::new("Effect", payload.as_bytes());
        e.subject = Some("erin");
        e.metadata = b"PII-STEP-META";
        let evs = [e];
        let part = [StreamAppend {
            stream: "effects",
            expected: ExpectedVersion::Any,
            events: &evs,
        }];
        let p = c
            .next_with(Some(std::time::Duration::from_secs(5)), |e| e.position)
            .unwrap()
            .expect("an event");
        (p, c.append_ack(&part, p), c.stored())
    };
    let (p, r, stored) = step("PII-STEP-ONE");
    r.expect("a step naming a subject");
    assert_eq!(stored, p + 1);
    let got = drain(store.clone().read_stream("effects", 0).unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"PII-STEP-ONE");
    assert_eq!(got[0].subject.as_deref(), Some("erin"));
    store.sync().unwrap();
    let mut files = Vec::new();
    every_file(dir.path(), &mut files);
    assert_eq!(holder(&files, b"PII-STEP"), None, "plaintext in a file");
    store.forget_subject("erin").unwrap();
    let end = store.next_position().unwrap();
    let (_, r, stored) = step("PII-STEP-TWO");
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert_eq!(stored, p + 1, "the refused step's checkpoint");
    assert_eq!(store.next_position().unwrap(), end, "nothing written");
    let got = drain(store.clone().read_stream("effects", 0).unwrap());
    assert!(got.len() == 1 && got[0].erased);
}
