//! Separate writer and reader *processes* on one PostgreSQL store (issue 14): 8 writer
//! processes make 5,000 appends each with expected versions on shared streams (retrying a
//! wrong expected version), while 4 tailing reader processes check that the log they see
//! is dense (0, 1, 2, ...) and in order, each stream's versions too. Afterwards every
//! acknowledged event is in the log exactly once, where its writer was told, and nothing
//! else is. The processes are this test binary run again (`common::procs`).

mod common;

use common::pg::PgServer;
use common::procs::{self, Children};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::ErrorKind;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const WRITERS: usize = 8;
const APPENDS: u64 = 5_000;
/// Threads per writer process (APPENDS is a multiple).
const THREADS: u64 = 4;
const READERS: usize = 4;
const STREAMS: u64 = 32;

fn open(url: &str) -> Store {
    Store::open(url, StoreOptions::default(), Vec::new())
        .expect("the PostgreSQL store opens")
        .0
}

/// FNV-1a over what a reader saw, event by event: equal digests, equal logs.
struct Digest(u64);

impl Digest {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn event(&mut self, position: u64, stream: &str, version: u64, payload: &[u8]) {
        self.add(&position.to_le_bytes());
        self.add(stream.as_bytes());
        self.add(&version.to_le_bytes());
        self.add(payload);
    }
}

/// One writer process: APPENDS acknowledged appends from THREADS threads (so its
/// committer has company to batch), each to a random shared stream at the version just
/// read; a wrong expected version reads the version again and retries. Reports
/// `ack STREAM VERSION POSITION PAYLOAD` per acknowledged append.
fn writer(url: &str, w: u64) {
    let s = std::sync::Arc::new(open(url));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || write_some(&s, w, t))
        })
        .collect();
    let conflicts: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    procs::report(&format!("conflicts {conflicts}"));
    s.close().expect("closing");
}

/// One writer thread's share; returns how many wrong expected versions it retried.
fn write_some(s: &Store, w: u64, t: u64) -> u64 {
    let mut rng =
        0x9E37_79B9_7F4A_7C15u64 ^ (w * THREADS + t + 1).wrapping_mul(0xA24B_AED4_963E_E407);
    let mut conflicts = 0u64;
    for i in 0..APPENDS / THREADS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let stream = format!("shared-{}", rng % STREAMS);
        let payload = format!("w{w}-{t}-{i}");
        loop {
            let expected = match s.stream_version(&stream).expect("reading a version") {
                Some(v) => ExpectedVersion::Exact(v),
                None => ExpectedVersion::NoStream,
            };
            let event = [EventInput::new("Written", payload.as_bytes())];
            match s.append(&stream, expected, &event) {
                Ok(r) => {
                    procs::report(&format!(
                        "ack {stream} {} {} {payload}",
                        r.stream_versions[0], r.first_position
                    ));
                    break;
                }
                Err(e) if e.kind == ErrorKind::WrongExpectedVersion => conflicts += 1,
                Err(e) => panic!("writer {w}.{t}, append {i}: {e:?}"),
            }
        }
    }
    conflicts
}

/// One tailing reader process: follows the log from 0 until `total` events, checking
/// that positions come densely in order and each stream's versions too. Reports
/// `seen COUNT DIGEST`.
fn reader(url: &str, total: u64) {
    let s = open(url);
    let mut tail = s.read_all(0).expect("reading the log");
    let mut seen = 0u64;
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < total {
        match tail.next().expect("reading the next event") {
            Some(e) => {
                assert_eq!(
                    e.position, seen,
                    "the reader skipped or repeated a position"
                );
                let next = versions.entry(e.stream.to_owned()).or_insert(0);
                assert_eq!(
                    e.stream_version, *next,
                    "stream {} at position {}: versions out of order",
                    e.stream, e.position
                );
                *next += 1;
                digest.event(e.position, e.stream, e.stream_version, e.payload);
                seen += 1;
            }
            None => {
                assert!(
                    Instant::now() < deadline,
                    "the reader saw {seen} of {total} events in 600 s"
                );
                s.wait_for_events(seen, Duration::from_millis(100));
            }
        }
    }
    // Nothing past the acknowledged events.
    assert!(tail.next().expect("reading past the end").is_none());
    procs::report(&format!("seen {seen} {}", digest.0));
}

#[test]
#[ignore = "a child process of the test below, which runs it"]
fn child() {
    let url = std::env::var("EVS_TEST_URL").expect("EVS_TEST_URL");
    match procs::role().as_str() {
        "writer" => writer(&url, procs::number("EVS_TEST_INDEX")),
        "reader" => reader(&url, procs::number("EVS_TEST_TOTAL")),
        other => panic!("unknown role {other}"),
    }
}

/// What a writer was told about one append.
struct Ack {
    stream: String,
    version: u64,
    position: u64,
    payload: String,
}

fn parse_ack(line: &str) -> Ack {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 5, "a malformed ack: {line}");
    Ack {
        stream: f[1].to_owned(),
        version: f[2].parse().expect("a version"),
        position: f[3].parse().expect("a position"),
        payload: f[4].to_owned(),
    }
}

#[test]
fn writer_processes_on_shared_streams_and_tailing_reader_processes_see_one_dense_log() {
    let pg = PgServer::start();
    let url = format!("{}?schema=processes", pg.url());
    let total = WRITERS as u64 * APPENDS;
    // The schema exists before the children open it.
    let s = open(&url);
    let started = Instant::now();
    let mut kids = Children::new();
    for _ in 0..READERS {
        kids.spawn(
            "child",
            "reader",
            &[
                ("EVS_TEST_URL", url.clone()),
                ("EVS_TEST_TOTAL", total.to_string()),
            ],
        );
    }
    for w in 0..WRITERS {
        kids.spawn(
            "child",
            "writer",
            &[
                ("EVS_TEST_URL", url.clone()),
                ("EVS_TEST_INDEX", w.to_string()),
            ],
        );
    }
    let mut acks = Vec::new();
    let mut seen = Vec::new();
    let mut conflicts = 0u64;
    while let Some((i, line)) = kids.next_line() {
        match line.split(' ').next() {
            Some("ack") => acks.push(parse_ack(&line)),
            Some("seen") => seen.push((i, line)),
            Some("conflicts") => conflicts += line[10..].parse::<u64>().expect("a count"),
            _ => panic!("{}: unexpected report {line}", kids.name(i)),
        }
    }
    kids.wait_all();
    eprintln!(
        "{WRITERS} writer processes x {APPENDS} appends ({conflicts} wrong expected versions \
         retried), {READERS} readers: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acks.len() as u64, total, "acknowledged appends");

    // The whole log: positions 0..total, nothing more, each payload once.
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    let mut log: HashMap<u64, (String, u64, Vec<u8>)> = HashMap::new();
    let mut payloads = HashSet::new();
    let mut c = s.read_all(0).unwrap();
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.position, log.len() as u64, "the log is not dense");
        assert!(
            payloads.insert(e.payload.to_vec()),
            "payload {:?} is in the log twice",
            String::from_utf8_lossy(e.payload)
        );
        digest.event(e.position, e.stream, e.stream_version, e.payload);
        log.insert(
            e.position,
            (e.stream.to_owned(), e.stream_version, e.payload.to_vec()),
        );
    }
    drop(c);
    assert_eq!(log.len() as u64, total, "events in the log");
    assert_eq!(s.next_position().unwrap(), total);
    // Every acknowledged event where its writer was told (so, with the counts equal and
    // the payloads unique, exactly once and nothing unacknowledged).
    for a in &acks {
        let (stream, version, payload) = &log[&a.position];
        assert_eq!(
            (stream.as_str(), *version, payload.as_slice()),
            (a.stream.as_str(), a.version, a.payload.as_bytes()),
            "the event at position {}",
            a.position
        );
    }
    // Each stream: versions 0..=v, as stored in `streams`.
    for k in 0..STREAMS {
        let name = format!("shared-{k}");
        let n = log.values().filter(|(st, _, _)| *st == name).count() as u64;
        if n > 0 {
            assert_eq!(s.stream_version(&name).unwrap(), Some(n - 1), "{name}");
        }
    }
    // Every reader saw this log, all of it.
    assert_eq!(seen.len(), READERS, "reader reports");
    for (i, line) in &seen {
        assert_eq!(
            line,
            &format!("seen {total} {}", digest.0),
            "{} saw another log",
            kids.name(*i)
        );
    }
    s.close().unwrap();
}
