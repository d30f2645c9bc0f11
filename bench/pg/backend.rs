//! The `evstore` row: the real PostgreSQL backend through the library's Rust API (the
//! store the C API wraps), in the same roles as the designs' children: writer processes,
//! a subscriber, a reader. These run on threads: a `Store` must not be called from inside
//! a tokio runtime.

use super::{event_id, now_us, payload, subscriber_result, writer_result, Args, BoxError};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The schema of the store: the bench's `--url` names none.
pub const SCHEMA: &str = "bench_evstore";

pub fn open(url: &str) -> Result<Store, BoxError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}schema={SCHEMA}");
    Ok(Store::open(&url, StoreOptions::default(), Vec::new())?.0)
}

/// `--tasks` threads, each appending `--batch` events at a time to a stream of its own
/// (exact expected versions, event ids), from `--start-at` for `--secs`.
pub fn writer(args: &Args) -> Result<(), BoxError> {
    let store = std::sync::Arc::new(open(args.get("url").ok_or("--url")?)?);
    let proc_id = args.num("id", 0);
    let tasks = args.num("tasks", 8);
    let batch = args.num("batch", 1);
    let start_at = args.num("start-at", 0);
    let secs = args.num("secs", 5);
    let now = now_us() / 1000;
    if start_at > now {
        std::thread::sleep(Duration::from_millis(start_at - now));
    }
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let threads: Vec<_> = (0..tasks)
        .map(|task| {
            let store = store.clone();
            std::thread::spawn(move || -> Result<(u64, Vec<u64>), String> {
                let stream = format!("w{proc_id}-{task}-b{batch}");
                let mut expected = ExpectedVersion::NoStream;
                let (mut serial, mut events, mut lat) = (0u64, 0u64, Vec::new());
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let mut owned = Vec::with_capacity(batch as usize);
                    for _ in 0..batch {
                        let id = event_id(proc_id, task + 1000 * batch, serial);
                        let data = payload(serial ^ (proc_id << 40) ^ (task << 20));
                        owned.push((<[u8; 16]>::try_from(&id[..]).unwrap(), data));
                        serial += 1;
                    }
                    let inputs: Vec<EventInput> = owned
                        .iter()
                        .map(|(id, data)| {
                            let mut e = EventInput::new("E", data);
                            e.id = Some(*id);
                            e
                        })
                        .collect();
                    let r = store
                        .append(&stream, expected, &inputs)
                        .map_err(|e| format!("{stream}: {e:?}"))?;
                    lat.push(t0.elapsed().as_micros() as u64);
                    expected = ExpectedVersion::Exact(r.stream_versions[0]);
                    events += batch;
                }
                Ok((events, lat))
            })
        })
        .collect();
    let mut per_task = Vec::new();
    for t in threads {
        per_task.push(t.join().map_err(|_| "a writer thread panicked")??);
    }
    writer_result(per_task, began);
    Ok(())
}

/// Tails the log from `--from` as a subscription does (a tailing cursor, and
/// `wait_for_events` when it is at the end: woken by the backend's notifications), until
/// the end sent on stdin; reports what it saw and the delivery latency.
pub fn subscriber(args: &Args) -> Result<(), BoxError> {
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

/// Reads the whole log from 0 with a cursor (every field), checks positions.
pub fn reader(args: &Args) -> Result<(), BoxError> {
    let store = open(args.get("url").ok_or("--url")?)?;
    let t0 = Instant::now();
    let (mut next, mut n, mut bytes, mut out_of_order) = (0u64, 0u64, 0u64, 0u64);
    let mut c = store.read_all(0)?;
    while let Some(e) = c.next()? {
        if e.position != next {
            out_of_order += 1;
        }
        bytes += (e.payload.len() + e.metadata.len() + e.stream.len() + e.event_type.len()) as u64;
        next = e.position + 1;
        n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("RESULT events={n} out_of_order={out_of_order} bytes={bytes} elapsed={secs:.3}");
    Ok(())
}
