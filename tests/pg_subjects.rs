//! Personal data (README "Personal data") on PostgreSQL, through the public Rust API:
//! events of 1,000 data subjects, 100 forgotten by one handle; every read path of that
//! handle, of a second handle that had read (and cached the keys of) every subject before,
//! and of a handle opened after, returns those 100's events erased and the rest intact;
//! no byte of the server's data directory holds a subject's plaintext, nor (after the
//! forget's VACUUM and a CHECKPOINT) a forgotten subject's key outside the WAL; tampered
//! ciphertext is corruption; killed connections during forgets leave each key whole or
//! gone with its forget.

mod common;

use common::pg::{sql, PgServer};
use common::{drain, drain_tail, holder};
use evstore::store::subjects::KeyOptions;
use evstore::store::{Event, EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SUBJECTS: usize = 1000;

fn subject(i: usize) -> String {
    format!("user-{i:04}")
}

fn payload(i: usize, k: usize) -> String {
    format!("PII-PAYLOAD-{i:04}-{k}-{}", "p".repeat(40))
}

fn metadata(i: usize, k: usize) -> String {
    format!("PII-META-{i:04}-{k}")
}

fn forgotten(i: usize) -> bool {
    i % 10 == 3
}

fn open(url: &str, options: StoreOptions) -> Arc<Store> {
    Arc::new(Store::open(url, options, Vec::new()).unwrap().0)
}

/// Each subject: one event in its own stream `profile-<i>` (with an id given by the
/// caller for even subjects, none for odd ones) and one in the shared stream `orders`;
/// every 50th subject, an event that names no subject.
fn fill(store: &Store) {
    for i in 0..SUBJECTS {
        let s = subject(i);
        let (p0, m0, p1, m1) = (payload(i, 0), metadata(i, 0), payload(i, 1), metadata(i, 1));
        let mut a = EventInput::new("ProfileSet", p0.as_bytes());
        a.metadata = m0.as_bytes();
        a.subject = Some(&s);
        if i % 2 == 0 {
            let mut id = [0x5A; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            a.id = Some(id);
        }
        let mut b = EventInput::new("OrderPlaced", p1.as_bytes());
        b.metadata = m1.as_bytes();
        b.subject = Some(&s);
        let profile = format!("profile-{i}");
        store
            .append_multi(&[
                evstore::store::StreamAppend {
                    stream: &profile,
                    expected: ExpectedVersion::NoStream,
                    events: &[a],
                },
                evstore::store::StreamAppend {
                    stream: "orders",
                    expected: ExpectedVersion::Any,
                    events: &[b],
                },
            ])
            .unwrap();
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

/// Which subject and event `e` is (`None`: no subject).
fn which(e: &Event) -> Option<(usize, usize)> {
    if let Some(n) = e.stream.strip_prefix("profile-") {
        return Some((n.parse().unwrap(), 0));
    }
    (e.stream == "orders").then_some((e.stream_version as usize, 1))
}

/// One event read back: a forgotten subject's erased (its other fields kept), any other
/// intact. `gone`: whether the forgets have happened.
fn check_event(e: &Event, gone: bool, how: &str) {
    match which(e) {
        None => {
            assert!(e.subject.is_none() && !e.erased, "{how}: {e:?}");
            assert!(e.payload.starts_with(b"PUBLIC-"), "{how}: {e:?}");
        }
        Some((i, k)) => {
            assert_eq!(e.subject.as_deref(), Some(subject(i).as_str()), "{how}");
            let ty = if k == 1 { "OrderPlaced" } else { "ProfileSet" };
            assert_eq!(e.event_type, ty, "{how}");
            if gone && forgotten(i) {
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

/// Every read path, every event checked.
fn check_reads(store: &Arc<Store>, gone: bool, when: &str) {
    let events = SUBJECTS * 2 + SUBJECTS / 50;
    let all = drain_tail(store.clone().read_all(0).unwrap());
    assert_eq!(all.len(), events, "{when}: read_all");
    all.iter()
        .for_each(|e| check_event(e, gone, &format!("{when}: read_all")));
    let erased = all.iter().filter(|e| e.erased).count();
    assert_eq!(erased, if gone { SUBJECTS / 10 * 2 } else { 0 }, "{when}");
    let back = drain(store.clone().read_all_backward(u64::MAX).unwrap());
    assert_eq!(back.len(), events, "{when}: read_all_backward");
    back.iter()
        .for_each(|e| check_event(e, gone, &format!("{when}: backward")));
    for i in [0, 3, 13, 500, 503, 998, 999] {
        let stream = format!("profile-{i}");
        let fwd = drain(store.clone().read_stream(&stream, 0).unwrap());
        let bwd = drain(
            store
                .clone()
                .read_stream_backward(&stream, u64::MAX)
                .unwrap(),
        );
        assert_eq!((fwd.len(), bwd.len()), (1, 1), "{when}: {stream}");
        fwd.iter()
            .chain(&bwd)
            .for_each(|e| check_event(e, gone, when));
        let one = store.read_event(fwd[0].position).unwrap();
        check_event(&one, gone, &format!("{when}: read_event"));
    }
    let orders = drain(store.clone().read_stream("orders", 0).unwrap());
    assert_eq!(orders.len(), SUBJECTS, "{when}: orders");
    orders.iter().for_each(|e| check_event(e, gone, when));
    let cat = drain_tail(store.clone().read_category("profile-", 0).unwrap());
    assert_eq!(cat.len(), SUBJECTS, "{when}: category");
    cat.iter().for_each(|e| check_event(e, gone, when));
    let polled = drain_tail(store.clone().poll(0, 500).unwrap());
    assert!(!polled.is_empty(), "{when}: poll");
    polled.iter().for_each(|e| check_event(e, gone, when));
    let subjects = store.subjects().unwrap();
    assert_eq!(subjects.len(), SUBJECTS, "{when}: subjects");
    for s in &subjects {
        let i: usize = s.name["user-".len()..].parse().unwrap();
        assert_eq!(s.events, 2, "{when}: {s:?}");
        assert_eq!(
            s.forgotten_at.is_some(),
            gone && forgotten(i),
            "{when}: {s:?}"
        );
    }
}

/// Every file under `dir` (recursively), with its path, except under `skip`.
fn files(dir: &Path, skip: &str, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == skip) {
            continue;
        }
        if path.is_dir() {
            files(&path, skip, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

/// The keys in the key table, by subject (hex decoded).
fn stored_keys(url: &str) -> Vec<(String, Vec<u8>)> {
    let rows = common::pg::with_client(url, |c| async move {
        c.query(
            "select subject, key from evstore.subject_keys order by subject",
            &[],
        )
        .await
        .unwrap()
    });
    rows.iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
        .collect()
}

#[test]
fn forgotten_subjects_read_erased_in_every_handle_and_leave_no_plaintext_or_key_in_the_data_files()
{
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let a = open(&url, StoreOptions::default());
    fill(&a);
    // A second handle reads everything first: it holds every subject's key.
    let b = open(&url, StoreOptions::default());
    check_reads(&b, false, "before the forgets");
    let keys = stored_keys(&url);
    assert_eq!(keys.len(), SUBJECTS, "one key row per subject");
    let doomed: Vec<(String, Vec<u8>)> = keys
        .into_iter()
        .filter(|(s, _)| forgotten(s["user-".len()..].parse().unwrap()))
        .collect();
    let mut at = std::collections::BTreeSet::new();
    for (s, _) in &doomed {
        at.insert(a.forget_subject(s).unwrap());
    }
    assert_eq!(at.len(), SUBJECTS / 10, "one entry per forget");
    assert_eq!(
        a.forget_subject(&doomed[0].0).unwrap(),
        *at.first().unwrap()
    );
    // A forgotten subject takes no new events, from either handle.
    for h in [&a, &b] {
        let mut again = EventInput::new("ProfileSet", b"x");
        again.subject = Some(&doomed[0].0);
        let e = h
            .append("profile-x", ExpectedVersion::Any, &[again])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
        assert!(e.message.contains("forgotten"), "{e:?}");
    }
    check_reads(&a, true, "the forgetting handle");
    check_reads(&b, true, "a handle that held the keys");
    a.close().unwrap();
    b.close().unwrap();
    let c = open(&url, StoreOptions::default());
    check_reads(&c, true, "reopened");
    assert_eq!(stored_keys(&url).len(), SUBJECTS - SUBJECTS / 10);
    c.close().unwrap();

    sql(&url, "checkpoint");
    let mut data = Vec::new();
    files(&pg.dir().join("data"), "", &mut data);
    // Sealed in the library: the server never received any subject's plaintext.
    assert_eq!(
        holder(&data, b"PII-"),
        None,
        "plaintext of a subject on the server"
    );
    assert!(
        holder(&data, b"PUBLIC-").is_some(),
        "the search finds plaintext"
    );
    // The table and its indexes hold no forgotten key after the forget's VACUUM; the WAL
    // (pg_wal) still holds the rows as inserted until it is recycled (RELIABILITY.md).
    let mut tables = Vec::new();
    files(&pg.dir().join("data"), "pg_wal", &mut tables);
    for (s, key) in &doomed {
        assert_eq!(
            holder(&tables, key),
            None,
            "the key of forgotten {s} is in a data file"
        );
    }
    let kept = stored_keys(&url);
    assert!(
        holder(&tables, &kept[0].1).is_some(),
        "the search finds a key"
    );
}

#[test]
fn a_master_key_keeps_every_data_key_wrapped_on_the_server() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let options = || StoreOptions {
        keys: KeyOptions {
            master: Some(Arc::new(evstore::store::subjects::KeyBytes::new([7; 32]))),
            provider: None,
        },
        ..StoreOptions::default()
    };
    let a = open(&url, options());
    let mut e = EventInput::new("T", b"PII-wrapped");
    e.subject = Some("carol");
    a.append("s", ExpectedVersion::Any, &[e]).unwrap();
    let keys = stored_keys(&url);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].1.len(), 12 + 32 + 16, "a wrapped key");
    let got = drain(a.clone().read_stream("s", 0).unwrap());
    assert_eq!(got[0].payload, b"PII-wrapped");
    a.close().unwrap();
    // Without the master key, or another: refused at open, naming the problem.
    let e = Store::open(&url, StoreOptions::default(), Vec::new())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message.contains("wrapped by a master key"), "{e:?}");
}

#[test]
fn tampered_or_moved_ciphertext_is_reported_as_corruption() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let store = open(&url, StoreOptions::default());
    for (stream, text) in [("s", "PII-one"), ("t", "PII-two")] {
        let mut e = EventInput::new("T", text.as_bytes());
        e.subject = Some("erin");
        store.append(stream, ExpectedVersion::Any, &[e]).unwrap();
    }
    // One byte of the first event's ciphertext flipped by hand on the server.
    sql(
        &url,
        "update evstore.chunks set data[1] = set_byte(data[1], length(data[1]) - 20, \
           get_byte(data[1], length(data[1]) - 20) # 1) where first_pos = 0",
    );
    let e = store
        .clone()
        .read_stream("s", 0)
        .unwrap()
        .next()
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
    assert!(e.message.contains("authentication"), "{e:?}");
    // The second event's ciphertext moved onto the first's (another id, another stream).
    sql(
        &url,
        "update evstore.chunks set data = (select data from evstore.chunks where first_pos = 1) \
         where first_pos = 0",
    );
    let e = store.read_event(0).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
    // The other event is read as it was.
    let ok = store.read_event(1).unwrap();
    assert_eq!(ok.payload, b"PII-two");
}

#[test]
fn a_retry_with_the_same_ids_is_answered_from_the_sealed_events_even_after_a_forget() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let store = open(&url, StoreOptions::default());
    let mut e = EventInput::new("T", b"PII-retry");
    e.subject = Some("dave");
    e.id = Some([0xAB; 16]);
    let first = store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    assert_eq!(
        store.append("s", ExpectedVersion::Any, &[e]).unwrap(),
        first
    );
    // Other content under the same id: refused, naming the difference.
    let mut other = e;
    other.payload = b"PII-other";
    let err = store
        .append("s", ExpectedVersion::Any, &[other])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err:?}");
    store.forget_subject("dave").unwrap();
    assert_eq!(
        store.append("s", ExpectedVersion::Any, &[e]).unwrap(),
        first
    );
    let mut new = e;
    new.id = Some([0xAC; 16]);
    let err = store.append("s", ExpectedVersion::Any, &[new]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err:?}");
    assert_eq!(
        store.next_position().unwrap(),
        2,
        "only the event and the forget"
    );
}

#[test]
fn killed_connections_during_forgets_leave_each_key_whole_or_gone_with_its_entry() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let store = open(&url, StoreOptions::default());
    const N: usize = 60;
    for i in 0..N {
        let s = subject(i);
        let mut e = EventInput::new("T", b"PII-k");
        e.subject = Some(&s);
        store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    }
    // A killer ends every other backend of the store's database over and over while the
    // forgets run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut kills = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = sql(
                    &url,
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                     where pid <> pg_backend_pid() and datname = current_database() \
                       and backend_type = 'client backend'",
                );
                kills += n.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
            kills
        })
    };
    let mut failed = 0;
    for i in 0..N {
        match store.forget_subject(&subject(i)) {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(e.kind, ErrorKind::Io | ErrorKind::Unavailable),
                    "{e:?}"
                );
                failed += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert!(kills > 0, "no backend was killed");
    // Each subject: its key row and no forget, or a forget (entry and record) and no key.
    let rows = common::pg::with_client(&url, |c| async move {
        c.query(
            "select s.subject, k.subject is not null, f.subject is not null, \
               exists (select 1 from evstore.entries e where e.target = s.subject) \
             from (select distinct subject from (select subject from evstore.subject_keys \
                   union all select subject from evstore.forgotten_subjects) x) s \
             left join evstore.subject_keys k on k.subject = s.subject \
             left join evstore.forgotten_subjects f on f.subject = s.subject",
            &[],
        )
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), N, "every subject has its key or its forget");
    let mut gone = 0;
    for r in &rows {
        let s: String = r.get(0);
        let (key, forgot, entry): (bool, bool, bool) = (r.get(1), r.get(2), r.get(3));
        assert!(key != forgot, "{s}: key {key}, forgotten {forgot}");
        assert_eq!(
            forgot, entry,
            "{s}: a forget record without its entry, or the reverse"
        );
        gone += usize::from(forgot);
    }
    assert!(
        gone >= N - failed,
        "{gone} forgotten, {failed} forgets failed"
    );
    // What a failed forget left is finished by forgetting again.
    let again = open(&url, StoreOptions::default());
    for i in 0..N {
        again.forget_subject(&subject(i)).unwrap();
    }
    assert!(stored_keys(&url).is_empty());
    let read = drain(again.clone().read_stream("s", 0).unwrap());
    assert_eq!(read.len(), N);
    assert!(read.iter().all(|e| e.erased && e.payload.is_empty()));
}

#[test]
fn a_version_6_schema_is_migrated_to_7_and_then_takes_subjects() {
    let pg = PgServer::start();
    let url = format!("{}?schema=six", pg.url());
    let store = open(&url, StoreOptions::default());
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("T", b"before")],
        )
        .unwrap();
    store.close().unwrap();
    // As a version-6 library left it: no subjects' tables or functions.
    common::pg::run_script(
        pg.url(),
        &format!(
            "{}drop table six.subject_keys, six.forgotten_subjects; \
         drop function six.subject_key_put, six.forget_subject; \
         update six.meta set value = '6'",
            common::pg::undo_version_8("six")
        ),
    )
    .unwrap();
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let e = Store::open(&url, ro, Vec::new()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    assert!(e.message.contains("version 6, older"), "{e:?}");
    let script = evstore::store::schema_sql(&url).unwrap();
    assert!(script.contains("It is at version 6"), "{script}");
    assert!(script.contains("create table subject_keys"), "{script}");
    let store = open(&url, StoreOptions::default());
    assert_eq!(
        sql(pg.url(), "select value from six.meta").as_deref(),
        Some("8")
    );
    let mut e = EventInput::new("T", b"PII-after");
    e.subject = Some("frank");
    store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    store.forget_subject("frank").unwrap();
    let read = drain(store.clone().read_stream("s", 0).unwrap());
    assert_eq!(read[0].payload, b"before");
    assert!(
        read[1].erased && read[1].payload.is_empty(),
        "{:?}",
        read[1]
    );
}

/// A projection that keeps every payload it is given.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(Option<String>, Vec<u8>)>>);

impl evstore::store::Projection for Seen {
    fn name(&self) -> &str {
        "seen"
    }
    fn apply(&self, e: &evstore::store::EventRef<'_>) {
        let mut all = self.0.lock().unwrap();
        all.push((e.subject.map(str::to_owned), e.payload.to_vec()));
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&self, _bytes: &[u8]) -> evstore::Result<()> {
        Ok(())
    }
    fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

#[test]
fn projections_never_see_a_subjects_personal_data_and_a_damaged_one_does_not_stop_them() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let store = open(&url, StoreOptions::default());
    let mut e = EventInput::new("T", b"PII-projected");
    e.subject = Some("gina");
    store.append("s", ExpectedVersion::Any, &[e]).unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("T", b"public")],
        )
        .unwrap();
    store.close().unwrap();
    // The sealed event damaged: reads refuse it, the projections' replay never opens it.
    sql(
        &url,
        "update evstore.chunks set data[1] = set_byte(data[1], length(data[1]) - 1, \
           get_byte(data[1], length(data[1]) - 1) # 1) where first_pos = 0",
    );
    let seen = Arc::new(Seen::default());
    let (store, _) = Store::open(&url, StoreOptions::default(), vec![seen.clone()]).unwrap();
    store.refresh().unwrap();
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (Some("gina".to_string()), Vec::new()),
            (None, b"public".to_vec())
        ]
    );
    assert_eq!(store.read_event(0).err().unwrap().kind, ErrorKind::Corrupt);
}

/// The atomic append and checkpoint (`evs_consumer_append`) of a consumer and of a group
/// member seals the events that name a subject as an append does (an id made for the one
/// without), so the server never receives their plaintext; after the subject is
/// forgotten, a step naming it is refused (`InvalidArgument`) and writes neither its
/// events nor its checkpoint.
#[test]
fn atomic_consumer_steps_seal_events_naming_a_subject_and_refuse_a_forgotten_one() {
    use evstore::store::consumer_run::{Consumer, ConsumerOptions};
    use evstore::store::StreamAppend;
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let store = open(&url, StoreOptions::default());
    for i in 0..4 {
        let p = format!("src-{i}");
        store
            .append(
                "src",
                ExpectedVersion::Any,
                &[EventInput::new("T", p.as_bytes())],
            )
            .unwrap();
    }
    let effects = |store: &Arc<Store>| -> Vec<Event> {
        drain(store.clone().read_stream("effects", 0).unwrap())
    };
    let step = |c: &mut Consumer, tag: &str, subject: &'static str| {
        let (a, b) = (format!("PII-step-{tag}-a"), format!("PII-step-{tag}-b"));
        let mut ea = EventInput::new("Effect", a.as_bytes());
        ea.subject = Some(subject);
        ea.metadata = b"PII-step-meta";
        let mut eb = EventInput::new("Effect", b.as_bytes());
        eb.subject = Some(subject);
        eb.id = Some([tag.as_bytes()[0] ^ tag.len() as u8; 16]);
        let evs = [ea, eb];
        let part = [StreamAppend {
            stream: "effects",
            expected: ExpectedVersion::Any,
            events: &evs,
        }];
        let p = c
            .next_with(Some(std::time::Duration::from_secs(5)), |e| e.position)
            .unwrap()
            .expect("an event");
        (p, c.append_ack(&part, p))
    };
    let opts = ConsumerOptions {
        checkpoint_every: u64::MAX,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..ConsumerOptions::default()
    };
    let group = ConsumerOptions {
        partitions: 2,
        ..opts.clone()
    };
    let mut single = Consumer::open(store.clone(), "single", opts).unwrap();
    let mut member = Consumer::open(store.clone(), "grp", group).unwrap();
    let (p1, r1) = step(&mut single, "one", "erin");
    r1.expect("a consumer's step naming a subject");
    let (p2, r2) = step(&mut member, "group", "erin");
    r2.expect("a group member's step naming a subject");
    assert_eq!(single.stored(), p1 + 1);
    let got = effects(&store);
    assert_eq!(got.len(), 4);
    for (e, want) in got.iter().zip([
        "PII-step-one-a",
        "PII-step-one-b",
        "PII-step-group-a",
        "PII-step-group-b",
    ]) {
        assert_eq!(e.payload, want.as_bytes());
        assert_eq!(e.subject.as_deref(), Some("erin"));
        assert!(e.id.is_some(), "an id made for it: {e:?}");
        assert!(!e.erased);
    }
    assert_eq!(got[0].metadata, b"PII-step-meta");
    // The server holds no plaintext of them.
    let rows = sql(
        &url,
        "select coalesce(string_agg(encode(d, 'escape'), ''), '') \
         from evstore.chunks c, unnest(c.data || c.metadata) d where d is not null",
    )
    .unwrap_or_default();
    assert!(rows.contains("src-0"), "the query reads the events' bytes");
    assert!(
        !rows.contains("PII-step"),
        "plaintext on the server: {rows}"
    );
    store.forget_subject("erin").unwrap();
    let end = store.next_position().unwrap();
    let (p3, r3) = step(&mut single, "two", "erin");
    let e = r3.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message.contains("erin"), "{}", e.message);
    assert!(p3 > p1);
    assert_eq!(single.stored(), p1 + 1, "the refused step's checkpoint");
    let (_, r4) = step(&mut member, "group-two", "erin");
    assert_eq!(r4.unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(store.next_position().unwrap(), end, "nothing written");
    let got = effects(&store);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|e| e.erased && e.payload.is_empty()));
    let _ = p2;
}
