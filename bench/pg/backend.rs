//! The `evstore` row's subscriber: the real PostgreSQL backend through the library's Rust
//! API (the store the C API wraps). Its writers and reader are the C program
//! bench/pg/writer.c. It runs on a thread of its own: a `Store` must not be called from
//! inside a tokio runtime.

use super::{now_us, subscriber_result, Args, BoxError};
use evstore::store::consumer_run::{Consumer, ConsumerOptions};
use evstore::store::{Store, StoreOptions};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

/// The schema of the store: the bench's `--url` names none.
pub const SCHEMA: &str = "bench_evstore";

/// The store's URL: the bench's with the schema.
pub fn url(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={SCHEMA}")
}

pub fn open(url: &str) -> Result<Store, BoxError> {
    Ok(Store::open(self::url(url), StoreOptions::default(), Vec::new())?.0)
}

/// Tails the log from `--from` as a subscription does (a tailing cursor, and
/// `wait_for_events` when it is at the end: woken by the backend's notifications), until
/// the end sent on stdin; reports what it saw and the delivery latency.
pub fn subscriber(args: &Args) -> Result<(), BoxError> {
    if let Some(name) = args.get("consumer") {
        return consumer(args, name);
    }
    let store = open(args.get("url").ok_or("--url")?)?;
    let mut next = args.num("from", 0);
    let (final_tx, final_rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = final_tx.send(line.trim().parse().unwrap_or(u64::MAX));
    });
    println!("READY");
    std::io::stdout().flush()?;
    let (mut seen, mut out_of_order) = (0u64, 0u64);
    let (mut lat, mut lat_commit) = (Vec::new(), Vec::new());
    let mut target = None;
    let mut tail = store.read_all(next)?;
    loop {
        while let Some(e) = tail.next()? {
            let t = now_us();
            if e.position != next {
                out_of_order += 1;
            }
            next = e.position + 1;
            seen += 1;
            let sent = u64::from_le_bytes(e.payload[..8].try_into()?);
            lat.push(t.saturating_sub(sent));
            lat_commit.push(t.saturating_sub(e.timestamp_us));
        }
        if target.is_none() {
            target = final_rx.try_recv().ok();
        }
        if target.is_some_and(|end| next >= end) {
            break;
        }
        store.wait_for_events(next, Duration::from_millis(100));
    }
    subscriber_result(seen, next, out_of_order, lat, lat_commit);
    Ok(())
}

/// `subscriber` as a durable consumer `name` (issue 22) that starts at `--from` and
/// acknowledges every event, with the default checkpoint interval (a checkpoint every
/// 100 acknowledgements or 1 s): delivery latency from the append's start and from the
/// commit.
fn consumer(args: &Args, name: &str) -> Result<(), BoxError> {
    let store = std::sync::Arc::new(open(args.get("url").ok_or("--url")?)?);
    let opts = ConsumerOptions {
        start_position: args.num("from", 0),
        ..ConsumerOptions::default()
    };
    let mut c = Consumer::open(store, name, opts)?;
    let (final_tx, final_rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = final_tx.send(line.trim().parse().unwrap_or(u64::MAX));
    });
    println!("READY");
    std::io::stdout().flush()?;
    let (mut seen, mut out_of_order, mut next) = (0u64, 0u64, c.position());
    let (mut lat, mut lat_commit) = (Vec::new(), Vec::new());
    let mut target = None;
    loop {
        let got = c.next_with(Some(Duration::from_millis(100)), |e| {
            let t = now_us();
            let sent = e
                .payload
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(t, u64::from_le_bytes);
            (
                e.position,
                t.saturating_sub(sent),
                t.saturating_sub(e.timestamp_us),
            )
        })?;
        if let Some((position, from_start, from_commit)) = got {
            if position != next {
                out_of_order += 1;
            }
            next = position + 1;
            seen += 1;
            lat.push(from_start);
            lat_commit.push(from_commit);
            c.ack(position)?;
        }
        if target.is_none() {
            target = final_rx.try_recv().ok();
        }
        if target.is_some_and(|end| c.position() >= end) {
            break;
        }
    }
    c.close()?;
    subscriber_result(seen, next, out_of_order, lat, lat_commit);
    Ok(())
}

/// A durable consumer reading the whole log of the store from position 0, acknowledging
/// every event (a checkpoint every 100): (events delivered, seconds).
pub fn consumer_catch_up(url: &str) -> Result<(u64, f64), BoxError> {
    let store = std::sync::Arc::new(open(url)?);
    let mut c = Consumer::open(store, "bench-catch-up", ConsumerOptions::default())?;
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while let Some(p) = c.next_with(Some(Duration::ZERO), |e| e.position)? {
        c.ack(p)?;
        n += 1;
    }
    let took = started.elapsed().as_secs_f64();
    c.close()?;
    Ok((n, took))
}

/// How long opening the store of schema `schema` takes with the account projection (as
/// `evs_open` does): the median of `n` opens, with the last open's report (the checkpoint
/// it started from and the positions it read after it). Each open is closed before the
/// next; the first of the process (the runtime's start) is not counted.
pub fn open_time(
    url: &str,
    schema: &str,
    n: usize,
) -> Result<(Duration, evstore::store::OpenReport), BoxError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}schema={schema}");
    let open = || -> Result<(Duration, evstore::store::OpenReport), BoxError> {
        let started = std::time::Instant::now();
        let (bank, report) = evstore::account::Bank::open(&url, StoreOptions::default())?;
        let took = started.elapsed();
        bank.store().close()?;
        Ok((took, report))
    };
    open()?;
    let mut times = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n {
        let (took, report) = open()?;
        times.push(took);
        last = Some(report);
    }
    times.sort();
    Ok((times[n / 2], last.ok_or("no open")?))
}
