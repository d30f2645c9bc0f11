//! `make bench-pg-copy`: the copy of a file store to PostgreSQL (`evs_copy`'s path,
//! `store::import::copy`) and back, in events/s, on a server of its own (`EVS_PG_URL`, as
//! `tests/pg/pg_server.sh run` sets it). Options: `--events N`
//! (default 1,000,000, 100-byte payloads over 1,000 streams, appended 100 at a time),
//! `--payload BYTES`.

use evstore::store::import;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::FsyncPolicy;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
        })
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("EVS_PG_URL")
        .map_err(|_| "EVS_PG_URL is not set (run it through tests/pg/pg_server.sh run)")?;
    let events = arg(&args, "--events", 1_000_000);
    let payload = vec![b'p'; arg(&args, "--payload", 100) as usize];
    let tmp = tempfile::tempdir()?;
    let opts = StoreOptions {
        fsync: FsyncPolicy::Os,
        ..StoreOptions::default()
    };
    let src = Store::open(tmp.path().join("src"), opts.clone(), Vec::new())?.0;
    let started = Instant::now();
    let batch: Vec<EventInput<'_>> = (0..100)
        .map(|_| EventInput::new("Bench", &payload))
        .collect();
    for i in 0..events.div_ceil(100) {
        let n = (events - i * 100).min(100) as usize;
        src.append(
            &format!("s-{}", i % 1000),
            ExpectedVersion::Any,
            &batch[..n],
        )?;
    }
    src.sync()?;
    println!(
        "file store: {events} events of {} bytes in {:.1} s",
        payload.len(),
        started.elapsed().as_secs_f64()
    );
    let rate = |what: &str, info: &import::MoveInfo, started: Instant| {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{what}: {} events, {} entries in {secs:.1} s: {:.0} events/s",
            info.events,
            info.entries,
            info.events as f64 / secs
        );
    };
    let dst = Store::open(format!("{url}?schema=copy_bench"), opts.clone(), Vec::new())?.0;
    let started = Instant::now();
    let info = import::copy(&src, &dst, &mut |_, _| {})?;
    rate("copy file -> PostgreSQL", &info, started);
    let back = Store::open(tmp.path().join("back"), opts, Vec::new())?.0;
    let started = Instant::now();
    let info = import::copy(&dst, &back, &mut |_, _| {})?;
    rate("copy PostgreSQL -> file", &info, started);
    let started = Instant::now();
    let info = import::export_file(&src, &tmp.path().join("x.evx"), &mut |_, _| {})?;
    rate("export of the file store", &info, started);
    println!("export size: {} bytes", info.bytes);
    Ok(())
}
