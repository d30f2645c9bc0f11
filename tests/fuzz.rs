//! Fuzzing with proptest: the WAL record decoder, the event envelope decoder (binary and
//! legacy JSON) and recovery (`Store::open`, `Wal::open`) on arbitrary directory contents.
//!
//! Every property runs a fixed number of cases from environment variables, so `make test`
//! stays fast and `make stress` runs long:
//!   EVS_FUZZ_CASES           cases per decoder property (default 2,000; stress 1,000,000)
//!   EVS_FUZZ_RECOVERY_CASES  directories for the recovery properties (default 150)
//!   EVS_FUZZ_SEED            one seed for the recovery directories (to debug a failure)
//!   EVS_REL_RANDOM=1         random cases (make stress); by default every run draws the
//!                            same (deterministic) cases, so `make test` is repeatable
//!   EVS_FUZZ_KEEP=DIR        keep each recovery directory there (with EVS_FUZZ_SEED)
//! Each property prints `FIGURE fuzz_<name> <cases>`. Inputs that ever made a decoder or
//! recovery panic are kept below as regression tests (`regression_*`), and proptest's
//! own file persistence is off (no files written next to the tests).
//!
//! What is checked besides "no panic":
//!   - record::decode: a decoded record lies inside the buffer, its length is its header
//!     plus key plus value plus CRC, the CRC matches, decode_verified and peek_len agree;
//!     every strict prefix of a valid record is Incomplete; valid records round-trip.
//!   - envelope::decode: binary envelopes round-trip; a decoded binary envelope's fields
//!     lie inside the value; errors are Corrupt with a message.
//!   - recovery: open fails only with an error that has a message; when it succeeds on a
//!     log without forged snapshots, every event reads back (forward, backward, by
//!     stream), the count is next_position, a second open finds the same events and
//!     nothing to repair, and a read-only open before it changed no file and saw the same.

use evstore::store::envelope::{self, Envelope, EnvelopeRef, FORMAT_BINARY_V1};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::wal::record::{self, put_varint, Compression, DecodeError, RecordRef};
use evstore::wal::{FsyncPolicy, Position, Wal, WalConfig};
use evstore::ErrorKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Held (shared) while a test of this binary has a store open, and exclusively while one
/// starts a child process: a child holds copies of every descriptor until its exec, and
/// flock locks belong to the open file, so a store closed and reopened meanwhile would be
/// refused as locked by another writer.
static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn no_spawn() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWNING.read().unwrap_or_else(|e| e.into_inner())
}

/// Starts this test binary again with `args` and `env` (exclusively: see SPAWNING) and
/// waits for it.
fn run_self(args: &[&str], env: (&str, &std::ffi::OsStr)) -> std::process::Output {
    let child = {
        let _g = SPAWNING.write().unwrap_or_else(|e| e.into_inner());
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(args)
            .env(env.0, env.1)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    child.wait_with_output().unwrap()
}

fn decoder_cases() -> u32 {
    env_u64("EVS_FUZZ_CASES", 2_000).min(u32::MAX as u64) as u32
}

fn recovery_cases() -> u32 {
    env_u64("EVS_FUZZ_RECOVERY_CASES", 150).min(u32::MAX as u64) as u32
}

/// Runs `test` on `cases` inputs of `strategy`; prints the figure; fails with the input.
fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        // Big case counts: do not stop on too many rejects (none are used anyway).
        max_global_rejects: u32::MAX,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    // Deterministic (the same cases every run) unless EVS_REL_RANDOM=1 (make stress).
    let mut runner = if std::env::var("EVS_REL_RANDOM").is_ok_and(|v| v == "1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let result = runner.run(&strategy, test);
    println!(
        "fuzz {name}: {cases} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => println!("FIGURE fuzz_{name} {cases}"),
        Err(e) => panic!("fuzz {name}: {e}"),
    }
}

/// Like `fuzz`, but runs every case even after failures: each failure is recorded under
/// a category (its message with numbers and paths blanked), and the property fails at
/// the end with every category, its count and its first seed. Used for recovery, where
/// one known bug must not hide the others. Prints `FIGURE fuzz_<name> <cases>` and
/// `FIGURE fuzz_<name>_failed <failures>`.
fn fuzz_all<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), String>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 0,
        max_global_rejects: u32::MAX,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let mut runner = if std::env::var("EVS_REL_RANDOM").is_ok_and(|v| v == "1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let failures: std::sync::Mutex<BTreeMap<String, (u64, String)>> = Default::default();
    let failed = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&strategy, |v| {
        let shown = format!("{v:?}");
        if let Err(why) = test(v) {
            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut f = failures.lock().unwrap();
            let e = f
                .entry(category(&why))
                .or_insert((0, format!("{shown}: {why}")));
            e.0 += 1;
        }
        Ok(())
    });
    let failed = failed.into_inner();
    println!(
        "fuzz {name}: {cases} cases in {:.1} s, {failed} failed",
        started.elapsed().as_secs_f64()
    );
    println!("FIGURE fuzz_{name} {cases}");
    println!("FIGURE fuzz_{name}_failed {failed}");
    let failures = failures.into_inner().unwrap();
    for (cat, (n, first)) in &failures {
        println!("fuzz-failure {name}: {n} x {cat}\n    first: {first}");
    }
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
    assert!(
        failures.is_empty(),
        "fuzz {name}: {failed} of {cases} cases failed, in {} ways (see the fuzz-failure lines)",
        failures.len()
    );
}

/// A failure message with its numbers and paths blanked, to group failures.
fn category(msg: &str) -> String {
    let mut out = String::new();
    for word in msg.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.starts_with('/') {
            out.push_str("<path>");
            continue;
        }
        let mut last_digit = false;
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
            } else {
                out.push(c);
                last_digit = false;
            }
        }
    }
    out
}

// =======================================================================================
// The WAL record decoder
// =======================================================================================

/// The checks every decode result must pass, whatever the bytes.
fn check_record_decode(buf: &[u8]) -> Result<(), TestCaseError> {
    let got = catch_unwind(|| record::decode(buf));
    let Ok(got) = got else {
        return Err(TestCaseError::fail(format!(
            "record::decode panicked on {buf:02x?}"
        )));
    };
    let peek = catch_unwind(|| record::peek_len(buf))
        .map_err(|_| TestCaseError::fail(format!("record::peek_len panicked on {buf:02x?}")))?;
    if let Ok(d) = got {
        prop_assert!(
            d.len <= buf.len(),
            "decoded length {} past the buffer {}",
            d.len,
            buf.len()
        );
        prop_assert!(d.len >= 3 + 4);
        let base = buf.as_ptr() as usize;
        let k = d.record.key.as_ptr() as usize;
        let v = d.record.value.as_ptr() as usize;
        prop_assert!(
            k >= base && k + d.record.key.len() <= base + d.len,
            "key outside the record"
        );
        prop_assert!(
            v >= base && v + d.record.value.len() + 4 == base + d.len,
            "value not right before the CRC"
        );
        let stored = u32::from_le_bytes(buf[d.len - 4..d.len].try_into().unwrap());
        prop_assert_eq!(crc32c::crc32c(&buf[..d.len - 4]), stored);
        prop_assert_ne!(d.record.compression as u8, 3);
        let again = record::decode_verified(buf);
        prop_assert_eq!(again, Ok(d));
        prop_assert_eq!(peek, Some(d.len));
        prop_assert_eq!(d.record.flags() & !0x0f, d.record.reserved & 0xf0);
    }
    Ok(())
}

fn arb_record() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool, Option<u64>, u8, u8)> {
    (
        proptest::collection::vec(any::<u8>(), 0..24),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        proptest::option::of(any::<u64>()),
        0u8..3,
        0u8..16,
    )
}

fn build(r: &(Vec<u8>, Vec<u8>, bool, Option<u64>, u8, u8)) -> RecordRef<'_> {
    RecordRef {
        key: &r.0,
        value: &r.1,
        tombstone: r.2,
        ttl_ms: r.3,
        compression: [Compression::None, Compression::Lz4, Compression::Zstd][r.4 as usize],
        reserved: r.5 << 4,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(usize, u8),
    /// Overwrite one byte.
    Set(usize, u8),
    /// Cut the buffer.
    Truncate(usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Put a varint (any u64) at an offset, replacing as many bytes.
    Varint(usize, u64),
    /// Recompute the CRC over the record's original extent after the other mutations, so
    /// that header changes get past the checksum and reach the length logic.
    FixCrc,
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (
            0usize..6,
            prop_oneof![
                any::<u64>(),
                0u64..1000,
                Just(u64::MAX),
                Just(i64::MAX as u64),
                Just(usize::MAX as u64 - 3)
            ]
        )
            .prop_map(|(i, v)| Mutation::Varint(i, v)),
        Just(Mutation::FixCrc),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation], record_len: usize) -> Vec<u8> {
    for m in muts {
        let n = bytes.len();
        match m {
            Mutation::Flip(i, b) if n > 0 => bytes[i % n] ^= 1 << b,
            Mutation::Set(i, v) if n > 0 => bytes[i % n] = *v,
            Mutation::Truncate(i) => bytes.truncate(i % (n + 1)),
            Mutation::Insert(i, v) => {
                let at = i % (n + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Varint(i, v) => {
                let mut enc = Vec::new();
                put_varint(&mut enc, *v);
                let at = (*i).min(n);
                let end = (at + enc.len()).min(n);
                bytes.splice(at..end, enc);
            }
            Mutation::FixCrc => {
                let end = record_len.min(bytes.len());
                if end >= 4 {
                    let crc = crc32c::crc32c(&bytes[..end - 4]);
                    bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
                }
            }
            _ => {}
        }
    }
    bytes
}

#[test]
fn fuzz_record_decode_arbitrary_bytes() {
    fuzz(
        "record_arbitrary",
        decoder_cases(),
        proptest::collection::vec(any::<u8>(), 0..200),
        |bytes| check_record_decode(&bytes),
    );
}

#[test]
fn fuzz_record_decode_mutated_records() {
    fuzz(
        "record_mutated",
        decoder_cases(),
        (
            arb_record(),
            proptest::collection::vec(arb_mutation(), 1..5),
            proptest::collection::vec(any::<u8>(), 0..16),
        ),
        |(r, muts, trailing)| {
            let rec = build(&r);
            let mut bytes = rec.encode();
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            let bytes = mutate(bytes, &muts, len);
            check_record_decode(&bytes)
        },
    );
}

#[test]
fn fuzz_record_decode_valid_records_round_trip_and_prefixes_are_incomplete() {
    fuzz(
        "record_valid",
        decoder_cases(),
        (
            arb_record(),
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<usize>(),
        ),
        |(r, trailing, cut)| {
            let rec = build(&r);
            let mut bytes = rec.encode();
            let len = bytes.len();
            prop_assert_eq!(len, rec.encoded_len());
            let cut = cut % len;
            prop_assert_eq!(
                record::decode(&bytes[..cut]),
                Err(DecodeError::Incomplete),
                "prefix of {} bytes",
                cut
            );
            bytes.extend_from_slice(&trailing);
            let d = record::decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(d.len, len);
            prop_assert_eq!(d.record, rec);
            check_record_decode(&bytes)
        },
    );
}

// =======================================================================================
// The envelope decoder
// =======================================================================================

fn check_envelope_decode(value: &[u8]) -> Result<(), TestCaseError> {
    let got = catch_unwind(|| envelope::decode(value).map(|e| format!("{e:?}")));
    let Ok(got) = got else {
        return Err(TestCaseError::fail(format!(
            "envelope::decode panicked on {:?}",
            String::from_utf8_lossy(value)
        )));
    };
    match got {
        Ok(_) => {
            // Field bounds (checked on a fresh decode, borrowing `value`).
            if let Ok(Envelope::Binary(e)) = envelope::decode(value) {
                prop_assert_eq!(value[0], FORMAT_BINARY_V1);
                let base = value.as_ptr() as usize;
                let end = base + value.len();
                for (what, p, n) in [
                    ("stream", e.stream.as_ptr() as usize, e.stream.len()),
                    ("type", e.event_type.as_ptr() as usize, e.event_type.len()),
                    ("metadata", e.metadata.as_ptr() as usize, e.metadata.len()),
                    ("payload", e.payload.as_ptr() as usize, e.payload.len()),
                ] {
                    prop_assert!(
                        n == 0 || (p >= base && p + n <= end),
                        "{} outside the value",
                        what
                    );
                }
                prop_assert!(
                    e.payload.is_empty() || e.payload.as_ptr() as usize + e.payload.len() == end
                );
            }
        }
        Err(e) => {
            prop_assert_eq!(e.kind, ErrorKind::Corrupt);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

fn arb_envelope() -> impl Strategy<Value = (u64, String, u64, String, u32, Vec<u8>, Vec<u8>)> {
    (
        any::<u64>(),
        ".{0,12}",
        any::<u64>(),
        ".{0,12}",
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..120),
    )
}

#[test]
fn fuzz_envelope_decode_arbitrary_bytes() {
    fuzz(
        "envelope_arbitrary",
        decoder_cases(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..160),
            proptest::collection::vec(any::<u8>(), 0..160).prop_map(|mut v| {
                v.insert(0, FORMAT_BINARY_V1);
                v
            }),
            proptest::collection::vec(any::<u8>(), 0..160).prop_map(|mut v| {
                v.insert(0, b'{');
                v
            }),
        ],
        |bytes| check_envelope_decode(&bytes),
    );
}

#[test]
fn fuzz_envelope_binary_round_trips_and_mutations_never_panic() {
    fuzz(
        "envelope_binary",
        decoder_cases(),
        (
            arb_envelope(),
            proptest::collection::vec(arb_mutation(), 0..4),
        ),
        |((ts, stream, ver, ty, schema, meta, payload), muts)| {
            let e = EnvelopeRef {
                timestamp_us: ts,
                stream: &stream,
                stream_version: ver,
                event_type: &ty,
                schema_version: schema,
                metadata: &meta,
                payload: &payload,
                id: None,
                subject: None,
                sealed_at: 0,
            };
            let mut buf = Vec::new();
            e.encode_into(&mut buf);
            prop_assert!(buf.len() <= e.encoded_len());
            match envelope::decode(&buf) {
                Ok(Envelope::Binary(d)) => prop_assert_eq!(d, e),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            // Mutations (FixCrc is meaningless here and leaves the value alone).
            let len = buf.len();
            let m = mutate(buf, &muts, len);
            check_envelope_decode(&m)
        },
    );
}

/// JSON-ish values for the legacy envelope's fields, valid and not.
fn arb_json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        Just("1.5".to_string()),
        Just("null".to_string()),
        Just("\"7\"".to_string()),
        Just("[]".to_string()),
    ]
}

fn arb_legacy() -> impl Strategy<Value = String> {
    let payload = prop_oneof![
        proptest::collection::vec(0u16..300, 0..20).prop_map(|v| format!(
            "[{}]",
            v.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )),
        Just("\"bytes\"".to_string()),
        Just("null".to_string()),
        Just("[-1]".to_string()),
        Just("[1.0]".to_string()),
        (1usize..300).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
    ];
    let event_type = prop_oneof![
        "[a-zA-Z]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\\"quoted\\\\\"".to_string()),
        Just("7".to_string()),
    ];
    (
        arb_json_number(),
        event_type,
        arb_json_number(),
        payload,
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(arb_mutation(), 0..3),
    )
        .prop_map(|(id, ty, ts, payload, extra, drop_one, muts)| {
            let mut fields = vec![
                format!("\"event_id\":{id}"),
                format!("\"event_type\":{ty}"),
                format!("\"timestamp\":{ts}"),
                format!("\"payload\":{payload}"),
            ];
            if extra {
                fields.push("\"extra\":{\"nested\":[1,2,{\"x\":null}]}".into());
            }
            if drop_one {
                fields.remove(id.len() % 4);
            }
            let s = format!("{{{}}}", fields.join(","));
            let len = s.len();
            String::from_utf8_lossy(&mutate(s.into_bytes(), &muts, len)).into_owned()
        })
}

#[test]
fn fuzz_envelope_legacy_json_never_panics() {
    fuzz("envelope_legacy", decoder_cases(), arb_legacy(), |s| {
        check_envelope_decode(s.as_bytes())
    });
}

#[test]
fn fuzz_envelope_legacy_valid_json_decodes_its_fields() {
    fuzz(
        "envelope_legacy_valid",
        decoder_cases(),
        (
            any::<u64>(),
            "[A-Za-z]{1,16}",
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
        |(id, ty, ts, payload)| {
            let v =
                format!(
                "{{\"event_id\":{id},\"event_type\":\"{ty}\",\"timestamp\":{ts},\"payload\":[{}]}}",
                payload.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",")
            );
            match envelope::decode(v.as_bytes()) {
                Ok(Envelope::Legacy(l)) => {
                    prop_assert_eq!(l.event_id, id);
                    prop_assert_eq!(l.event_type, ty);
                    prop_assert_eq!(l.timestamp, ts);
                    prop_assert_eq!(l.payload, payload);
                }
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            Ok(())
        },
    );
}

// =======================================================================================
// Recovery on arbitrary directory contents
// =======================================================================================

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
    /// 0..max random bytes.
    fn some(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// A real store's files, made once: segments (64 KiB each) and snapshot files.
struct Base {
    segments: Vec<Vec<u8>>,
    snapshots: Vec<(String, Vec<u8>)>,
}

fn base() -> &'static Base {
    let _g = no_spawn();
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            fsync: FsyncPolicy::Os,
            max_segment_size: 64 << 10,
            preallocate: false,
            ..StoreOptions::default()
        };
        let (store, _) = Store::open(dir.path(), options, Vec::new()).unwrap();
        let mut rng = Rng(42);
        for i in 0..1200u64 {
            match i % 4 {
                0 => {
                    store.append_event("Single", &rng.some(300)).unwrap();
                }
                1 | 2 => {
                    let p: Vec<Vec<u8>> = (0..1 + rng.below(4)).map(|_| rng.some(200)).collect();
                    let ins: Vec<EventInput<'_>> =
                        p.iter().map(|p| EventInput::new("InBatch", p)).collect();
                    store
                        .append(&format!("s{}", i % 7), ExpectedVersion::Any, &ins)
                        .unwrap();
                }
                _ => {
                    let a = rng.bytes(50);
                    store
                        .append_multi(&[
                            StreamAppend {
                                stream: "x",
                                expected: ExpectedVersion::Any,
                                events: &[EventInput::new("A", &a)],
                            },
                            StreamAppend {
                                stream: "y",
                                expected: ExpectedVersion::Any,
                                events: &[EventInput::new("B", &a)],
                            },
                        ])
                        .unwrap();
                }
            }
            if i == 500 || i == 1199 {
                store.snapshot().unwrap();
            }
        }
        store.close().unwrap();
        let mut segments = Vec::new();
        for id in 0.. {
            match std::fs::read(dir.path().join("events").join(format!("{id:06}.wal"))) {
                Ok(b) => segments.push(b),
                Err(_) => break,
            }
        }
        assert!(segments.len() >= 3, "the base log spans several segments");
        let mut snapshots: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        snapshots.sort();
        Base {
            segments,
            snapshots,
        }
    })
}

/// A legacy (reference program) record: key = id, value = JSON envelope.
fn legacy_record(id: u64, ty: &str, secs: u64, payload: &[u8]) -> Vec<u8> {
    let v = format!(
        "{{\"event_id\":{id},\"event_type\":\"{ty}\",\"timestamp\":{secs},\"payload\":[{}]}}",
        payload
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    RecordRef::put(&id.to_le_bytes(), v.as_bytes()).encode()
}

/// Binary event records at positions from `first`, in batches.
fn event_records(rng: &mut Rng, first: u64, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = first;
    while p < first + n {
        let batch = 1 + rng.below(4).min(first + n - p - 1);
        for i in 0..batch {
            let payload = rng.some(100);
            let mut v = Vec::new();
            EnvelopeRef {
                timestamp_us: 1_700_000_000_000_000 + p,
                stream: if rng.chance(50) { "" } else { "s" },
                stream_version: p,
                event_type: "T",
                schema_version: 1,
                metadata: &[],
                payload: &payload,
                id: None,
                subject: None,
                sealed_at: 0,
            }
            .encode_into(&mut v);
            let key = p.to_le_bytes();
            let mut r = RecordRef::put(&key, &v);
            if i + 1 < batch {
                r.reserved = record::FLAG_BATCH_CONTINUES;
            }
            r.encode_into(&mut out);
            p += 1;
        }
    }
    out
}

/// Damages bytes: flips, garbage, zero runs, cuts, CRC-fixed header edits.
fn damage(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        let n = b.len();
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let g = rng.some(64 + 1);
                b.extend(g);
            }
            2 => b.extend(std::iter::repeat_n(0u8, 1 + rng.below(5000) as usize)),
            3 => b.truncate(rng.below(n as u64 + 1) as usize),
            4 if n > 0 => {
                // Overwrite a run in the middle with zeros (a hole).
                let i = rng.below(n as u64) as usize;
                let l = (1 + rng.below(600) as usize).min(n - i);
                b[i..i + l].fill(0);
            }
            5 if n > 8 => {
                // A CRC-fixed edit of the first record's header: valid checksum, odd lengths.
                if let Some(len) = record::peek_len(&b) {
                    let i = rng.below(3) as usize;
                    b[i] = rng.next() as u8;
                    let len = len.min(b.len());
                    if len >= 4 {
                        let crc = crc32c::crc32c(&b[..len - 4]);
                        b[len - 4..len].copy_from_slice(&crc.to_le_bytes());
                    }
                }
            }
            _ => {}
        }
    }
    b
}

/// A snapshot file mutated with its CRC recomputed (so that it is read past the checksum).
fn forge_snapshot(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len();
    for _ in 0..1 + rng.below(3) {
        match rng.below(4) {
            0 => {
                let i = 8 + rng.below((n - 12) as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                // Rewrite one of the u64 header fields (count, wal_end, crc) or an index entry.
                let slot = rng.below(((n - 12) / 8).min(60) as u64) as usize;
                let i = 8 + slot * 8;
                let v = match rng.below(4) {
                    0 => rng.next(),
                    1 => rng.below(1000),
                    2 => u64::MAX,
                    _ => (rng.below(5) << 40) | rng.below(70000),
                };
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            2 => {
                let i = 8 + rng.below((n - 12) as u64) as usize;
                b[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    let body = n - 4;
    let crc = crc32c::crc32c(&b[8..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Directory contents made from a seed.
#[derive(Debug)]
struct DirSpec {
    segments: BTreeMap<String, Vec<u8>>,
    snapshots: BTreeMap<String, Vec<u8>>,
    /// Snapshots were forged (valid CRC, altered contents): only "no panic" is promised.
    forged: bool,
    options: StoreOptions,
}

fn make_dir_spec(seed: u64, allow_forged: bool) -> DirSpec {
    let mut rng = Rng(seed);
    let b = base();
    let mut segments = BTreeMap::new();
    let mut snapshots = BTreeMap::new();
    let mut forged = false;
    let kind = rng.below(6);
    let nseg = match kind {
        0 => 1 + rng.below(3) as usize,
        _ => 1 + rng.below(b.segments.len() as u64) as usize,
    };
    let mut next_pos = 0u64;
    for i in 0..nseg {
        let id = if rng.chance(5) {
            i as u64 + 1 + rng.below(3)
        } else {
            i as u64
        };
        let content = match kind {
            // Random bytes.
            0 => rng.some(3000),
            // The base log's segments, the last (or, rarely, any) damaged.
            1 | 2 => {
                let s = b.segments[i.min(b.segments.len() - 1)].clone();
                if i + 1 == nseg || rng.chance(5) {
                    damage(&mut rng, s)
                } else {
                    s
                }
            }
            // Fresh binary event records in batches.
            3 => {
                let n = rng.below(30);
                let r = event_records(&mut rng, next_pos, n);
                next_pos += n;
                if i + 1 == nseg || rng.chance(10) {
                    damage(&mut rng, r)
                } else {
                    r
                }
            }
            // Legacy JSON records (ids from the reference program may repeat).
            4 => {
                let mut v = Vec::new();
                for _ in 0..rng.below(20) {
                    let id = if rng.chance(10) {
                        next_pos.saturating_sub(1)
                    } else {
                        next_pos
                    };
                    let p = rng.some(40);
                    v.extend(legacy_record(
                        id,
                        "AccountOpened",
                        1_700_000_000 + rng.below(100),
                        &p,
                    ));
                    next_pos += 1;
                }
                if rng.chance(50) {
                    damage(&mut rng, v)
                } else {
                    v
                }
            }
            // Zeros, or nothing.
            _ => vec![0u8; rng.below(5000) as usize],
        };
        let name = if rng.chance(3) {
            ["000001.wal.tmp", "1.wal", "LOCK", "abcdef.wal"][rng.below(4) as usize].to_string()
        } else {
            format!("{id:06}.wal")
        };
        segments.insert(name, content);
    }
    if kind == 1 || kind == 2 || rng.chance(20) || allow_forged {
        for (name, bytes) in &b.snapshots {
            match rng.below(if allow_forged { 5 } else { 3 }) {
                0 => {}
                1 => {
                    snapshots.insert(name.clone(), bytes.clone());
                }
                2 => {
                    // Damaged without fixing the CRC: must be ignored.
                    let d = damage(&mut rng, bytes.clone());
                    snapshots.insert(name.clone(), d);
                }
                _ => {
                    forged = true;
                    snapshots.insert(name.clone(), forge_snapshot(&mut rng, bytes.clone()));
                }
            }
        }
        if rng.chance(20) {
            let n = format!("snapshot-{:020}.snap", rng.below(1000));
            snapshots.insert(n, rng.some(200));
        }
        if allow_forged && rng.chance(10) {
            let mut v = b"EVSSNAP2".to_vec();
            v.extend(rng.some(300));
            let body = v.len();
            let crc = crc32c::crc32c(&v[8..]);
            v.extend(crc.to_le_bytes());
            forged = true;
            snapshots.insert(format!("snapshot-{:020}.snap", rng.below(500)), v);
            let _ = body;
        }
    }
    let options = StoreOptions {
        fsync: [FsyncPolicy::Always, FsyncPolicy::Os][rng.below(2) as usize],
        max_segment_size: [64u64 << 10, 1 << 20][rng.below(2) as usize],
        preallocate: rng.chance(30),
        read_only: false,
        snapshot_every: 0,
        ..StoreOptions::default()
    };
    DirSpec {
        segments,
        snapshots,
        forged,
        options,
    }
}

fn write_spec(dir: &Path, spec: &DirSpec) {
    std::fs::create_dir_all(dir.join("events")).unwrap();
    for (n, b) in &spec.segments {
        std::fs::write(dir.join("events").join(n), b).unwrap();
    }
    if !spec.snapshots.is_empty() {
        std::fs::create_dir_all(dir.join("snapshots")).unwrap();
        for (n, b) in &spec.snapshots {
            std::fs::write(dir.join("snapshots").join(n), b).unwrap();
        }
    }
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["events", "snapshots"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                out.insert(
                    format!("{sub}/{}", e.file_name().to_string_lossy()),
                    std::fs::read(e.path()).unwrap_or_default(),
                );
            }
        }
    }
    out
}

fn open_and_read(
    dir: &Path,
    options: StoreOptions,
    strict: bool,
) -> Result<Option<(u64, bool)>, String> {
    let opened = catch_unwind(AssertUnwindSafe(|| Store::open(dir, options, Vec::new())));
    let (store, report) = match opened {
        Err(_) => return Err("Store::open panicked".into()),
        Ok(Err(e)) => {
            if e.message.is_empty() {
                return Err(format!(
                    "Store::open failed with an empty message ({:?})",
                    e.kind
                ));
            }
            return Ok(None);
        }
        Ok(Ok(x)) => x,
    };
    let store = Arc::new(store);
    let n = store.next_position().unwrap();
    if report.next_position != n {
        return Err(format!(
            "report.next_position {} but next_position() {n}",
            report.next_position
        ));
    }
    let read = catch_unwind(AssertUnwindSafe(|| -> evstore::Result<(u64, u64, u64)> {
        let mut fwd = 0;
        let mut c = store.read_all(0)?;
        let mut streams: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(e) = c.next()? {
            if e.position != fwd {
                return Err(evstore::Error::corrupt(format!(
                    "forward read gave position {} for {fwd}",
                    e.position
                )));
            }
            if !e.stream.is_empty() {
                *streams.entry(e.stream.to_string()).or_default() += 1;
            }
            fwd += 1;
        }
        let mut back = 0;
        let mut c = store.read_all_backward(u64::MAX)?;
        while let Some(e) = c.next()? {
            if e.position != n - 1 - back {
                return Err(evstore::Error::corrupt(
                    "backward read out of order".to_string(),
                ));
            }
            back += 1;
        }
        let mut by_stream = 0;
        for (s, count) in &streams {
            let mut c = store.read_stream(s, 0)?;
            let mut k = 0;
            while let Some(e) = c.next()? {
                if e.stream != s {
                    return Err(evstore::Error::corrupt(
                        "read_stream gave another stream's event".to_string(),
                    ));
                }
                k += 1;
            }
            if k != *count {
                return Err(evstore::Error::corrupt(format!(
                    "stream {s}: {k} by stream, {count} in the log"
                )));
            }
            by_stream += k;
        }
        Ok((fwd, back, by_stream))
    }));
    // With a snapshot, recovery trusts the log it covers and scans only the tail after
    // it, so damage inside the covered part (media corruption, never a crash's torn
    // tail) is found when it is read: it must then be reported as Corrupt.
    let strict_reads = strict && report.snapshot_position.is_none();
    let outcome = match read {
        Err(_) => {
            return Err(format!(
                "reading a store that opened with {n} events panicked"
            ))
        }
        Ok(Err(e)) if strict_reads => {
            return Err(format!("reading a store that opened with {n} events: {e}"))
        }
        Ok(Err(e)) if strict && e.kind != ErrorKind::Corrupt => {
            return Err(format!(
                "reading a store that opened from a snapshot: not Corrupt but {e}"
            ))
        }
        Ok(Err(_)) => None,
        Ok(Ok((fwd, back, _))) => {
            if strict_reads && (fwd != n || back != n) {
                return Err(format!(
                    "{n} events by next_position, {fwd} read forward, {back} backward"
                ));
            }
            Some(fwd)
        }
    };
    let closed = catch_unwind(AssertUnwindSafe(|| store.close()));
    if closed.is_err() {
        return Err("close panicked".into());
    }
    Ok(outcome.map(|c| (c, report.wal.corruption_detected)))
}

fn check_recovery(seed: u64, allow_forged: bool) -> Result<(), String> {
    let _g = no_spawn();
    let spec = make_dir_spec(seed, allow_forged);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    write_spec(&dir, &spec);
    if let Some(keep) = std::env::var_os("EVS_FUZZ_KEEP") {
        // Debugging a seed: say what the directory holds and keep a copy of it.
        let keep = Path::new(&keep).join(format!("seed-{seed}"));
        let _ = std::fs::remove_dir_all(&keep);
        write_spec(&keep, &spec);
        println!(
            "seed {seed}: kept in {}: segments {:?}, snapshots {:?}, forged {}, {:?}",
            keep.display(),
            spec.segments
                .iter()
                .map(|(n, b)| (n.as_str(), b.len()))
                .collect::<Vec<_>>(),
            spec.snapshots
                .iter()
                .map(|(n, b)| (n.as_str(), b.len()))
                .collect::<Vec<_>>(),
            spec.forged,
            spec.options
        );
    }
    let strict = !spec.forged;

    // Read-only first: it must change no file, and see what a writer will see.
    let before = files_of(&dir);
    let ro = open_and_read(
        &dir,
        StoreOptions {
            read_only: true,
            ..spec.options.clone()
        },
        strict,
    )?;
    if files_of(&dir) != before {
        return Err("a read-only open modified the store's files".into());
    }
    let rw = open_and_read(&dir, spec.options.clone(), strict)?;
    if strict {
        match (&ro, &rw) {
            (Some((a, _)), Some((b, _))) if a != b => {
                return Err(format!("read-only open saw {a} events, writable open {b}"))
            }
            // Damage that valid records follow is corruption for every open (issue 19):
            // a reader beside a writer refuses it as a writer's recovery does.
            (Some(_), None) | (None, Some(_)) => {
                return Err(format!("read-only open gave {ro:?}, writable open {rw:?}"))
            }
            _ => {}
        }
    }
    if let Some((n, _)) = rw {
        // Recovery is done: a second open finds the same and nothing to repair.
        match open_and_read(&dir, spec.options.clone(), strict)? {
            Some((m, corrupt)) => {
                if strict && m != n {
                    return Err(format!("the second open found {m} events, the first {n}"));
                }
                if strict && corrupt {
                    return Err("the second open still found a torn tail".into());
                }
            }
            None if strict => return Err("the second open failed after the first succeeded".into()),
            None => {}
        }
    }

    // The WAL alone on the same kind of contents.
    let wdir = tmp.path().join("wal");
    std::fs::create_dir_all(&wdir).unwrap();
    for (n, b) in &spec.segments {
        std::fs::write(wdir.join(n), b).unwrap();
    }
    let mut cfg = WalConfig::new(&wdir);
    cfg.max_segment_size = spec.options.max_segment_size;
    cfg.preallocate = spec.options.preallocate;
    cfg.fsync_policy = FsyncPolicy::Always;
    let r = catch_unwind(AssertUnwindSafe(|| -> evstore::Result<u64> {
        let (wal, info) = Wal::open(cfg)?;
        let mut rd = wal.read_from(Position::default())?;
        let mut n = 0;
        while rd.next_record()?.is_some() {
            n += 1;
        }
        wal.close()?;
        if n != info.valid_records {
            return Err(evstore::Error::corrupt(format!(
                "{n} records read, {} valid at recovery",
                info.valid_records
            )));
        }
        Ok(n)
    }));
    match r {
        Err(_) => Err("Wal::open or its reader panicked".into()),
        Ok(Err(e)) if e.message.is_empty() => Err("Wal::open failed with an empty message".into()),
        Ok(Err(e))
            if e.kind != ErrorKind::Corrupt
                && e.kind != ErrorKind::Io
                && e.kind != ErrorKind::NotFound =>
        {
            Err(format!("Wal::open: unexpected {e}"))
        }
        Ok(Err(e)) if strict && e.message.contains("records read") => Err(format!("{e}")),
        _ => Ok(()),
    }
}

#[test]
fn fuzz_recovery_on_arbitrary_directory_contents() {
    let cases = recovery_cases();
    let fixed = std::env::var("EVS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let strategy = match fixed {
        Some(s) => Just(s).boxed(),
        None => any::<u64>().boxed(),
    };
    fuzz_all("recovery", cases, strategy, |seed| {
        check_recovery(seed, false)
    });
}

/// Snapshots whose CRC is valid but whose contents were altered (counts, positions,
/// index entries): what a bug in snapshot writing, or a hand edit, could leave. Only
/// "no panic, no abort" is promised here. The cases run in a child process (this test
/// binary again), so that an abort (an allocation of a forged size) fails this test with
/// the seed that caused it instead of killing every other test; EVS_FUZZ_FORGED_CASES sets
/// the count (default: a tenth of EVS_FUZZ_RECOVERY_CASES, at least 20).
#[test]
fn fuzz_recovery_with_forged_snapshots() {
    let cases = env_u64(
        "EVS_FUZZ_FORGED_CASES",
        (recovery_cases() as u64 / 10).max(20),
    ) as u32;
    if std::env::var_os("EVS_FUZZ_FORGED_CHILD").is_some() {
        let fixed = std::env::var("EVS_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let strategy = match fixed {
            Some(s) => Just(s).boxed(),
            None => any::<u64>().boxed(),
        };
        fuzz_all("recovery_forged", cases, strategy, |seed| {
            eprintln!("forged seed {seed}");
            check_recovery(seed, true)
        });
        return;
    }
    let out = run_self(
        &[
            "--exact",
            "fuzz_recovery_with_forged_snapshots",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        ("EVS_FUZZ_FORGED_CHILD", std::ffi::OsStr::new("1")),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for l in stdout
        .lines()
        .filter(|l| l.starts_with("FIGURE") || l.starts_with("fuzz") || l.starts_with("    first:"))
    {
        println!("{l}");
    }
    if !out.status.success() {
        let last_seed = stderr
            .lines()
            .rfind(|l| l.starts_with("forged seed"))
            .unwrap_or("none");
        let why: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| {
                l.contains("Test failed")
                    || l.contains("cases failed")
                    || l.contains("memory allocation")
                    || l.contains("panicked at")
            })
            .take(6)
            .collect();
        panic!(
            "recovery with forged snapshots: the child {:?}; last case: {last_seed}\n{}",
            out.status,
            why.join("\n")
        );
    }
}

// =======================================================================================
// Regression cases: inputs found by the fuzzers (and hand-made edge cases), kept forever
// =======================================================================================

#[test]
fn regression_record_lengths_that_overflow_are_errors() {
    // klen = vlen = u64::MAX: the total overflows.
    let mut b = Vec::new();
    put_varint(&mut b, u64::MAX);
    put_varint(&mut b, u64::MAX);
    b.push(0);
    assert!(record::decode(&b).is_err());
    assert_eq!(record::peek_len(&b), None);
    // An 11-byte varint.
    let b = [0xffu8; 11];
    assert_eq!(record::decode(&b), Err(DecodeError::BadVarint));
    // Compression bits 3 with a valid CRC.
    let mut r = RecordRef::put(b"k", b"v").encode();
    r[2] |= 0x0c;
    let l = r.len();
    let crc = crc32c::crc32c(&r[..l - 4]);
    r[l - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(record::decode(&r), Err(DecodeError::BadCompression));
    for b in [
        &[][..],
        &[0][..],
        &[0, 0][..],
        &[0, 0, 0][..],
        &[0, 0, 0, 0, 0, 0][..],
    ] {
        check_record_decode(b).unwrap();
    }
}

#[test]
fn regression_envelopes_that_run_past_the_value_are_corrupt() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![FORMAT_BINARY_V1],
        vec![FORMAT_BINARY_V1, 0x80],
        vec![FORMAT_BINARY_V1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![FORMAT_BINARY_V1, 0, 5, b'a'],
        vec![FORMAT_BINARY_V1, 0, 1, 0xff, 0, 1, b't', 1, 0],
        vec![FORMAT_BINARY_V1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x1f, 0],
        b"{".to_vec(),
        b"{\"event_id\":1}".to_vec(),
        format!("{{\"a\":{}{}}}", "[".repeat(10000), "]".repeat(10000)).into_bytes(),
        b"{\"event_id\":1,\"event_type\":\"t\",\"timestamp\":18446744073709551615,\"payload\":[256]}".to_vec(),
    ];
    for c in cases {
        check_envelope_decode(&c).unwrap();
        assert!(
            envelope::decode(&c).is_err(),
            "{:?}",
            String::from_utf8_lossy(&c)
        );
    }
    // The largest timestamp a legacy envelope may carry decodes (the store saturates it).
    let v =
        b"{\"event_id\":1,\"event_type\":\"t\",\"timestamp\":18446744073709551615,\"payload\":[]}";
    assert!(matches!(envelope::decode(v), Ok(Envelope::Legacy(_))));
}

/// A store of `n` small events in one segment with a snapshot of all of them; returns the
/// snapshot file's path.
fn store_with_snapshot(dir: &Path, n: u64) -> std::path::PathBuf {
    let options = StoreOptions {
        fsync: FsyncPolicy::Os,
        preallocate: false,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir, options, Vec::new()).unwrap();
    for i in 0..n {
        store
            .append_event("E", format!("event {i}").as_bytes())
            .unwrap();
    }
    store.snapshot().unwrap();
    store.close().unwrap();
    let snap = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    snap
}

/// Sets index entry `p` (the packed WAL position of event p) of a snapshot file and
/// recomputes its CRC: a snapshot whose checksum is valid but whose index is not.
fn forge_index_entry(path: &Path, p: usize, f: impl Fn(&[u64]) -> u64) {
    let mut b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
    let entries: Vec<u64> = (0..n)
        .map(|i| u64::from_le_bytes(b[40 + 8 * i..48 + 8 * i].try_into().unwrap()))
        .collect();
    let v = f(&entries);
    b[40 + 8 * p..48 + 8 * p].copy_from_slice(&v.to_le_bytes());
    let body = b.len() - 4;
    let crc = crc32c::crc32c(&b[8..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// Found by fuzz_recovery_on_arbitrary_directory_contents (seed 208755098011143898): a
/// snapshot with a valid CRC whose index puts event 0 after event 1 in the same segment.
/// Opening uses it (only the last event's record is checked against the log); reading
/// event 0 then computes the record's length as `next.offset - offset`, which wraps, and
/// `Vec::resize` panics with "capacity overflow" (src/store/mod.rs, Store::read_located).
/// Expected: an error (Corrupt), never a panic.
#[test]
fn regression_a_forged_snapshot_index_going_backwards_is_an_error_not_a_panic() {
    let _g = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let snap = store_with_snapshot(tmp.path(), 3);
    forge_index_entry(&snap, 0, |e| e[1] + 1);
    let options = StoreOptions {
        fsync: FsyncPolicy::Os,
        preallocate: false,
        ..StoreOptions::default()
    };
    let (store, report) = Store::open(tmp.path(), options, Vec::new()).unwrap();
    let store = Arc::new(store);
    println!(
        "snapshot used: {:?}, ignored: {:?}",
        report.snapshot_position, report.snapshot_ignored
    );
    let got = catch_unwind(AssertUnwindSafe(|| store.read_event(0).map(|_| ())));
    match got {
        Err(_) => panic!("Store::read_event(0) panicked on a snapshot whose index goes backwards"),
        Ok(r) => println!("read_event(0) on the forged index: {r:?}"),
    }
    let got = catch_unwind(AssertUnwindSafe(|| {
        let mut c = store.read_all_backward(u64::MAX)?;
        while c.next()?.is_some() {}
        Ok::<(), evstore::Error>(())
    }));
    assert!(
        got.is_ok(),
        "reading backward panicked on a snapshot whose index goes backwards"
    );
}

/// The same kind of snapshot with event 1 placed 2^39 bytes after event 0 in the same
/// segment: reading event 0 asks `Vec::resize` for 512 GiB, which aborts the process (an
/// allocation failure is not a panic the C boundary can catch). Run in a child process so
/// that an abort fails this test instead of killing the test binary. Skipped where the
/// kernel overcommits without limit (vm.overcommit_memory = 1), where the allocation would
/// succeed and the zero fill would exhaust memory instead.
#[test]
fn regression_a_forged_snapshot_with_a_huge_record_extent_does_not_abort_the_process() {
    if std::env::var_os("EVS_FUZZ_REGRESSION_CHILD").is_some() {
        let dir = Path::new(&std::env::var_os("EVS_FUZZ_REGRESSION_CHILD").unwrap()).to_path_buf();
        let options = StoreOptions {
            fsync: FsyncPolicy::Os,
            preallocate: false,
            ..StoreOptions::default()
        };
        let (store, _) = Store::open(&dir, options, Vec::new()).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| store.read_event(0).map(|_| ())));
        println!(
            "child: read_event(0) returned {:?}",
            r.as_ref().map(|x| x.as_ref().map_err(|e| e.to_string()))
        );
        return;
    }
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if overcommit.trim() == "1" {
        println!("SKIP: vm.overcommit_memory = 1: a 512 GiB allocation would not fail fast");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let snap = {
        let _g = no_spawn();
        store_with_snapshot(tmp.path(), 3)
    };
    forge_index_entry(&snap, 1, |e| e[0] + (1u64 << 39));
    let out = run_self(
        &[
            "--exact",
            "regression_a_forged_snapshot_with_a_huge_record_extent_does_not_abort_the_process",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        ("EVS_FUZZ_REGRESSION_CHILD", tmp.path().as_os_str()),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "reading event 0 of a store whose (CRC-valid) snapshot puts event 1 2^39 bytes after it killed the process ({:?}):\n{}",
        out.status,
        text.lines().filter(|l| l.contains("child:") || l.contains("alloc") || l.contains("panicked") || l.contains("abort")).collect::<Vec<_>>().join("\n")
    );
}

/// Found by fuzz_recovery_on_arbitrary_directory_contents (seed 2512920579557634902): a
/// log whose first segment is gone (000000.wal deleted; the others 000001.wal.. intact)
/// with a snapshot that covers events in it. Recovery checks that the segment ids it
/// lists have no gaps between them, but not that they start where the log starts, and
/// with the snapshot it scans only the tail: the store opens, claims every event, and
/// reading event 0 fails later with NotFound "segment 000000.wal no longer exists".
/// Expected (architecture.md: anything but a torn tail is corruption, reported): the
/// open fails with Corrupt naming 000000.wal. (Without a snapshot the open does fail
/// with Corrupt, but the message speaks of keys, not of the missing segment.)
#[test]
fn regression_a_missing_first_segment_under_a_snapshot_is_corruption_at_open() {
    let _g = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        fsync: FsyncPolicy::Os,
        max_segment_size: 64 << 10,
        preallocate: false,
        ..StoreOptions::default()
    };
    {
        let (store, _) = Store::open(tmp.path(), options.clone(), Vec::new()).unwrap();
        for i in 0..1500u64 {
            store
                .append_event("E", format!("event {i} {}", "x".repeat(100)).as_bytes())
                .unwrap();
        }
        store.snapshot().unwrap();
        store.close().unwrap();
    }
    let events = tmp.path().join("events");
    assert!(
        events.join("000002.wal").exists(),
        "the log spans three segments"
    );
    std::fs::remove_file(events.join("000000.wal")).unwrap();
    match Store::open(tmp.path(), options, Vec::new()) {
        Ok((store, report)) => {
            let store = Arc::new(store);
            let read = store.read_event(0).map(|_| ());
            panic!(
                "a store whose 000000.wal is missing opened ({} events, snapshot {:?}); reading event 0 then gives {read:?}",
                report.next_position, report.snapshot_position
            );
        }
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
            assert!(
                e.message.contains("000000.wal"),
                "the message names the missing segment: {e}"
            );
        }
    }
}
