//! `make bench`, Rust side: the write-ahead log and the event store through their Rust
//! APIs, against the targets of issues 2 and 3. Prints a Markdown table. Not a test:
//! nothing here asserts a timing.

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::{FsyncPolicy, Position, RecordRef, Wal, WalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Row {
    what: String,
    value: String,
    target: String,
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn wal_append(dir: &std::path::Path, policy: FsyncPolicy, threads: u64, per_thread: u64) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let mut c = WalConfig::new(dir);
    c.fsync_policy = policy;
    let wal = Arc::new(Wal::open(c).unwrap().0);
    let value = [7u8; 100];
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let key = (t << 40 | i).to_le_bytes();
                    wal.append(&RecordRef::put(&key, &value)).unwrap();
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    wal.sync().unwrap();
    let r = rate(threads * per_thread, start.elapsed());
    wal.close().unwrap();
    r
}

fn main() {
    let base = std::env::var("EVSTORE_BENCH_DIR").unwrap_or_else(|_| "build/bench-rust".into());
    let base = std::path::PathBuf::from(base);
    std::fs::create_dir_all(&base).unwrap();
    let quick = std::env::args().any(|a| a == "--quick");
    let n_events: u64 = if quick { 100_000 } else { 1_000_000 };
    let mut rows = Vec::new();

    // Issue 2: the log.
    let d = base.join("wal");
    let batch = wal_append(
        &d,
        FsyncPolicy::Batch(Duration::from_millis(5)),
        1,
        n_events,
    );
    rows.push(Row {
        what: "WAL Batch, 1 thread, 100-byte records".into(),
        value: format!("{batch:.0} records/s"),
        target: ">= 1,000,000/s".into(),
    });
    let os = wal_append(&d, FsyncPolicy::Os, 1, n_events);
    rows.push(Row {
        what: "WAL Os, 1 thread".into(),
        value: format!("{os:.0} records/s"),
        target: "-".into(),
    });
    let os8 = wal_append(&d, FsyncPolicy::Os, 8, n_events / 8);
    rows.push(Row {
        what: "WAL Os, 8 threads".into(),
        value: format!("{os8:.0} records/s"),
        target: "-".into(),
    });
    let n_always = if quick { 500 } else { 3000 };
    let a1 = wal_append(&d, FsyncPolicy::Always, 1, n_always);
    rows.push(Row {
        what: "WAL Always, 1 thread".into(),
        value: format!("{a1:.0} records/s"),
        target: "-".into(),
    });
    let a8 = wal_append(&d, FsyncPolicy::Always, 8, n_always);
    rows.push(Row {
        what: "WAL Always, 8 threads".into(),
        value: format!("{a8:.0} records/s ({:.1}x 1 thread)", a8 / a1),
        target: ">= 4x 1 thread".into(),
    });
    // Recovery scan from the page cache.
    let _ = std::fs::remove_dir_all(&d);
    let mut c = WalConfig::new(&d);
    c.fsync_policy = FsyncPolicy::Os;
    {
        let wal = Wal::open(c.clone()).unwrap().0;
        let value = vec![1u8; 1000];
        for i in 0..(n_events / 2) {
            wal.append(&RecordRef::put(&i.to_le_bytes(), &value))
                .unwrap();
        }
        wal.close().unwrap();
    }
    let start = Instant::now();
    let mut bytes = 0u64;
    let (wal, info) = Wal::open_visiting(c, &mut |_, r| {
        bytes += r.value.len() as u64 + 12;
        Ok(())
    })
    .unwrap();
    let took = start.elapsed();
    drop(wal);
    rows.push(Row {
        what: format!("WAL recovery scan ({} records)", info.valid_records),
        value: format!(
            "{:.2} GiB/s",
            bytes as f64 / took.as_secs_f64() / (1u64 << 30) as f64
        ),
        target: ">= 1 GiB/s".into(),
    });

    // Issue 3: the store, 1,000,000 events of 100 bytes in 1,000 streams.
    let d = base.join("store");
    let _ = std::fs::remove_dir_all(&d);
    let payload = [5u8; 100];
    let names: Vec<String> = (0..1000).map(|i| format!("stream-{i}")).collect();
    let opts = StoreOptions::default();
    let (store, _) = Store::open(&d, opts.clone(), vec![]).unwrap();
    let store = Arc::new(store);
    let start = Instant::now();
    for i in 0..n_events {
        let e = [EventInput::new("Happened", &payload)];
        store
            .append(&names[(i % 1000) as usize], ExpectedVersion::Any, &e)
            .unwrap();
    }
    let took = start.elapsed();
    rows.push(Row {
        what: "Store append (Batch, 1 thread)".into(),
        value: format!("{:.0} events/s", rate(n_events, took)),
        target: "-".into(),
    });
    // Medians of several runs: the first read of a fresh log also pays for cold caches.
    let mut all = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut c = store.read_all(0).unwrap();
        let mut n = 0u64;
        while let Some(e) = c.next().unwrap() {
            n += e.payload.len() as u64 / 100;
        }
        assert_eq!(n, n_events);
        all.push(rate(n, start.elapsed()));
    }
    all.sort_by(f64::total_cmp);
    rows.push(Row {
        what: "Store read all (median of 3)".into(),
        value: format!("{:.0} events/s", all[1]),
        target: ">= 5,000,000/s".into(),
    });
    let mut times = Vec::new();
    let mut k = 0;
    for _ in 0..21 {
        let start = Instant::now();
        let mut c = store.read_stream("stream-500", 0).unwrap();
        k = 0;
        while c.next().unwrap().is_some() {
            k += 1;
        }
        times.push(start.elapsed());
    }
    times.sort();
    rows.push(Row {
        what: format!(
            "Store read one {k}-event stream (median of 21; slowest {:.3} ms)",
            times[20].as_secs_f64() * 1e3
        ),
        value: format!("{:.3} ms", times[10].as_secs_f64() * 1e3),
        target: "< 1 ms".into(),
    });
    let start = Instant::now();
    let reps = 1000;
    for _ in 0..reps {
        let mut c = store.read_all_backward(u64::MAX).unwrap();
        for _ in 0..10 {
            c.next().unwrap().unwrap();
        }
    }
    rows.push(Row {
        what: "Store last 10 by position".into(),
        value: format!(
            "{:.1} us",
            start.elapsed().as_secs_f64() * 1e6 / reps as f64
        ),
        target: "< 50 us".into(),
    });
    let stats = store.stats().unwrap();
    rows.push(Row {
        what: "Index memory per event".into(),
        value: format!(
            "{:.1} bytes",
            stats.index_bytes as f64 / stats.events as f64
        ),
        target: "<= 24 bytes + names".into(),
    });
    store.close().unwrap();
    drop(store);
    let start = Instant::now();
    let (store, _) = Store::open(&d, opts.clone(), vec![]).unwrap();
    rows.push(Row {
        what: "Store open without snapshot".into(),
        value: format!("{:.0} ms", start.elapsed().as_secs_f64() * 1e3),
        target: "-".into(),
    });
    store.snapshot().unwrap();
    store.close().unwrap();
    drop(store);
    let start = Instant::now();
    let (store, report) = Store::open(&d, opts, vec![]).unwrap();
    assert!(report.snapshot_position.is_some());
    rows.push(Row {
        what: "Store open with snapshot".into(),
        value: format!("{:.0} ms", start.elapsed().as_secs_f64() * 1e3),
        target: "< 100 ms".into(),
    });
    drop(store);
    let _ = Position::default();

    println!("| measurement | result | target |\n| --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.value, r.target);
    }
    let _ = std::fs::remove_dir_all(&base);
}
