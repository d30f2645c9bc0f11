//! evstore's PostgreSQL designs benchmark (issue 14): dense, gapless global positions with
//! parallel writer processes, against a server started by tests/pg/pg_server.sh.
//!
//! ```text
//! cargo run --release --example pg_bench -- --url URL [--secs 6] [--writers 8]
//!     [--tasks 8] [--designs bigserial,counter,gc,seq,late,evstore]
//! ```
//!
//! (`make bench-pg` starts a server, runs this, prints the tables and stops the server;
//! without `--url` the program takes `EVS_PG_URL`.)
//!
//! For each design, in a schema made anew (the design before it dropped, then a
//! checkpoint, so that every design starts from the same server state): (1) `--writers`
//! writer processes (this program, re-run as children), each with `--tasks` appending
//! tasks, do single-event appends with expected versions (each task owns a stream) for
//! `--secs`, while a subscriber process tails the log; (2) the same with 100-event
//! appends; (3) one reader process reads the whole log from position 0 (events/s).
//!
//! Then it checks, for each gapless design: positions are exactly 0..N-1, N is the sum of
//! the events the writers were told were appended, the subscriber saw every position once
//! and in order, a retry with the same event ids returns the original position and writes
//! nothing, and a stale expected version is refused. A failed check exits non-zero.
//!
//! Baselines: each appending task has its own connection and sends one statement per
//! append. Designs gc, seq and late: each writer process has one committer connection that
//! sends every append waiting in the process as one call (client-side group commit).
//! Event payloads are 100 bytes; the first 8 are the append's start time (Unix µs), from
//! which the subscriber measures delivery latency (append start to delivery); it also
//! measures it from the commit-time timestamp the design stores.
//!
//! Design `evstore` is not a sketch: it is the library's PostgreSQL backend. Its writer
//! and reader processes are the C program bench/pg/writer.c linked with libevstore (one
//! `evs_open` per writer process, `--tasks` threads calling `evs_append`; the reader
//! `evs_read_all` with `evs_cursor_next_batch`), named by `EVS_PG_BENCH_C`; its
//! subscriber is this program on the library's Rust API, waiting as the C API's
//! subscriptions do.

mod backend;
mod sql;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One append as the committer sends it: stream, expected version, event ids, payloads.
type Batch = [(String, i64, Vec<Vec<u8>>, Vec<Vec<u8>>)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Design {
    Bigserial,
    Counter,
    GroupCommit,
    Sequencer,
    LateCounter,
    /// The real backend (`src/store/postgres`) through the library's API.
    Evstore,
}

impl Design {
    fn parse(s: &str) -> Design {
        match s {
            "bigserial" => Design::Bigserial,
            "counter" => Design::Counter,
            "gc" => Design::GroupCommit,
            "seq" => Design::Sequencer,
            "late" => Design::LateCounter,
            "evstore" => Design::Evstore,
            _ => panic!("unknown design {s:?} (bigserial, counter, gc, seq, late, evstore)"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Design::Bigserial => "bigserial",
            Design::Counter => "counter",
            Design::GroupCommit => "gc",
            Design::Sequencer => "seq",
            Design::LateCounter => "late",
            Design::Evstore => "evstore",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Design::Bigserial => "baseline: bigserial position (gaps)",
            Design::Counter => "baseline: counter row, 1 append per transaction",
            Design::GroupCommit => "A: counter row + client-side group commit",
            Design::Sequencer => "B: parallel inserts + post-commit sequencer",
            Design::LateCounter => "C: group commit, events first, counter row last",
            Design::Evstore => "evstore backend (D), C API, 1 handle per process",
        }
    }
    fn schema(self) -> String {
        format!("bench_{}", self.name())
    }
    fn ddl(self) -> &'static str {
        match self {
            Design::Bigserial => sql::BIGSERIAL,
            Design::Counter => sql::COUNTER,
            Design::GroupCommit => sql::GROUP_COMMIT,
            Design::Sequencer => sql::SEQUENCER,
            Design::LateCounter => sql::LATE_COUNTER,
            // The store creates its schema on open.
            Design::Evstore => "",
        }
    }
    fn dense(self) -> bool {
        self != Design::Bigserial
    }
    /// Session settings of a reading connection. The sequencer design's reads join
    /// `positions` to `events`: a nested loop over the two primary keys is the plan that
    /// stays fast while the tables grow faster than their statistics.
    fn read_settings(self) -> &'static str {
        match self {
            Design::Sequencer | Design::LateCounter => {
                "set enable_hashjoin = off; set enable_mergejoin = off; \
                 set max_parallel_workers_per_gather = 0"
            }
            _ => "",
        }
    }
    fn notifies(self) -> bool {
        matches!(
            self,
            Design::GroupCommit | Design::Sequencer | Design::LateCounter
        )
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Minimal argument parsing: `--key value` pairs.
struct Args(Vec<String>);

impl Args {
    fn get(&self, key: &str) -> Option<&str> {
        let flag = format!("--{key}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .map(|i| self.0.get(i + 1).map(|s| s.as_str()).unwrap_or(""))
    }
    fn num(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{key}: not a number"))
            })
            .unwrap_or(default)
    }
}

async fn connect(url: &str, schema: &str) -> Result<Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("pg_bench: connection: {e}");
        }
    });
    client
        .batch_execute(&format!("set search_path = {schema}"))
        .await?;
    Ok(client)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let evstore = args.get("design") == Some("evstore");
    let result = match args.get("child") {
        Some("subscriber") if evstore => backend::subscriber(&args),
        Some("writer") => runtime().block_on(writer(&args)),
        Some("subscriber") => runtime().block_on(subscriber(&args)),
        Some("reader") => runtime().block_on(reader(&args)),
        Some(other) => panic!("unknown child {other:?}"),
        None => coordinator(&args),
    };
    if let Err(e) = result {
        eprintln!("pg_bench: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Writers

/// One append: events of one stream at an expected version (-1: the stream is new).
struct Append {
    stream: String,
    expected: i64,
    ids: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<i64, String>>,
}

fn payload(seed: u64) -> Vec<u8> {
    let mut d = Vec::with_capacity(100);
    d.extend_from_slice(&now_us().to_le_bytes());
    let mut x = seed | 1;
    while d.len() < 100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.push(x as u8);
    }
    d
}

fn event_id(proc_id: u64, task: u64, n: u64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&((proc_id << 32) | task).to_le_bytes());
    id.extend_from_slice(&n.to_le_bytes());
    id
}

/// Sends one batch of appends as one call of the design's `append` function (its own
/// transaction). Returns per append: gc: the first position; seq: the append id; -1: a
/// wrong expected version.
async fn insert_batch(client: &Client, batch: &Batch) -> Result<Vec<i64>, BoxError> {
    let mut a_stream = Vec::with_capacity(batch.len());
    let mut a_expected = Vec::with_capacity(batch.len());
    let mut a_count = Vec::with_capacity(batch.len());
    let mut e_ai: Vec<i32> = Vec::new();
    let mut e_id: Vec<&[u8]> = Vec::new();
    let mut e_data: Vec<&[u8]> = Vec::new();
    for (i, (stream, expected, ids, data)) in batch.iter().enumerate() {
        a_stream.push(stream.as_str());
        a_expected.push(*expected);
        a_count.push(data.len() as i32);
        for (id, d) in ids.iter().zip(data) {
            e_ai.push(i as i32 + 1);
            e_id.push(id);
            e_data.push(d);
        }
    }
    let row = client
        .query_one(
            "select append($1, $2, $3, $4, $5, $6)",
            &[&a_stream, &a_expected, &a_count, &e_ai, &e_id, &e_data],
        )
        .await?;
    Ok(row.get(0))
}

/// The sequencer design's second step: the first positions of committed appends (their
/// append ids), sequencing whatever is pending if needed. While another session sequences,
/// waits for its notification (`notes`, from a LISTEN on this connection) or 1 ms.
async fn place(
    client: &Client,
    notes: Option<&mut mpsc::UnboundedReceiver<()>>,
    append_ids: &[i64],
) -> Result<Vec<i64>, BoxError> {
    let mut notes = notes;
    loop {
        let row = client
            .query_one("select sequence($1)", &[&append_ids])
            .await?;
        if let Some(placed) = row.get::<_, Option<Vec<i64>>>(0) {
            if placed.len() != append_ids.len() {
                return Err("sequence returned too few positions".into());
            }
            return Ok(placed);
        }
        match notes.as_deref_mut() {
            Some(rx) => {
                let _ = tokio::time::timeout(Duration::from_millis(1), rx.recv()).await;
                while rx.try_recv().is_ok() {}
            }
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// A connection whose notifications (any channel) arrive on the returned receiver.
async fn connect_listening(
    url: &str,
    schema: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<()>), BoxError> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
    let (note_tx, note_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = note_tx.send(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("pg_bench: connection: {e}");
                    break;
                }
                None => break,
            }
        }
    });
    client
        .batch_execute(&format!("set search_path = {schema}"))
        .await?;
    Ok((client, note_rx))
}

fn outcome(p: i64) -> Result<i64, String> {
    if p >= 0 {
        Ok(p)
    } else {
        Err("wrong expected version".to_string())
    }
}

/// Both steps, one after the other: each append's first position or an error.
async fn commit_batch(
    client: &Client,
    design: Design,
    batch: &Batch,
) -> Result<Vec<Result<i64, String>>, BoxError> {
    let mut got = insert_batch(client, batch).await?;
    if design == Design::Sequencer {
        let want: Vec<i64> = got.iter().copied().filter(|&a| a >= 0).collect();
        if !want.is_empty() {
            let mut it = place(client, None, &want).await?.into_iter();
            for g in got.iter_mut().filter(|g| **g >= 0) {
                *g = it.next().unwrap();
            }
        }
    }
    Ok(got.into_iter().map(outcome).collect())
}

type Reply = oneshot::Sender<Result<i64, String>>;

/// The sequencer design's placing task (its own connection): takes the append ids of
/// every batch the process has committed, gets their positions in one call.
async fn placer(
    client: Client,
    mut notes: mpsc::UnboundedReceiver<()>,
    mut rx: mpsc::UnboundedReceiver<(i64, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let ids: Vec<i64> = waiting.iter().map(|(a, _)| *a).collect();
        match place(&client, Some(&mut notes), &ids).await {
            Ok(positions) => {
                for ((_, r), p) in waiting.into_iter().zip(positions) {
                    let _ = r.send(Ok(p));
                }
            }
            Err(e) => {
                for (_, r) in waiting {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// A process's committer: takes every append waiting, sends them as one call.
/// With a placer (sequencer design), the committer hands the committed append ids on and
/// goes on with the next batch while they are being placed.
async fn committer(
    client: Client,
    design: Design,
    mut rx: mpsc::Receiver<Append>,
    placer: Option<mpsc::UnboundedSender<(i64, Reply)>>,
) {
    const MAX_EVENTS: usize = 20_000;
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        let mut events = waiting[0].data.len();
        while events < MAX_EVENTS {
            match rx.try_recv() {
                Ok(a) => {
                    events += a.data.len();
                    waiting.push(a);
                }
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(waiting.len());
        let mut batch = Vec::with_capacity(waiting.len());
        for a in waiting {
            replies.push(a.reply);
            batch.push((a.stream, a.expected, a.ids, a.data));
        }
        if let Some(placer) = &placer {
            match insert_batch(&client, &batch).await {
                Ok(ids) => {
                    for (r, a) in replies.into_iter().zip(ids) {
                        if a >= 0 {
                            let _ = placer.send((a, r));
                        } else {
                            let _ = r.send(outcome(a));
                        }
                    }
                }
                Err(e) => {
                    for r in replies {
                        let _ = r.send(Err(e.to_string()));
                    }
                }
            }
            continue;
        }
        match commit_batch(&client, design, &batch).await {
            Ok(results) => {
                for (r, res) in replies.into_iter().zip(results) {
                    let _ = r.send(res);
                }
                // Wake the subscribers (outside the transaction that holds the head lock).
                if let Err(e) = client.batch_execute("notify evs_bench").await {
                    eprintln!("pg_bench: notify: {e}");
                }
            }
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// One appending task's append, through the design's path.
enum Path {
    Direct(Client),
    Queue(mpsc::Sender<Append>),
}

async fn append_one(
    path: &Path,
    design: Design,
    stream: &str,
    expected: i64,
    ids: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
) -> Result<i64, BoxError> {
    match path {
        Path::Queue(tx) => {
            let (reply, rx) = oneshot::channel();
            tx.send(Append {
                stream: stream.to_string(),
                expected,
                ids,
                data,
                reply,
            })
            .await
            .map_err(|_| "committer gone")?;
            Ok(rx.await.map_err(|_| "committer gone")??)
        }
        Path::Direct(client) => {
            // Versions expected+1 .. expected+n; the unique (stream, version) refuses a
            // version written before (the baselines' expected-version check).
            let n = data.len() as i64;
            let rows = match design {
                Design::Bigserial => {
                    client
                        .query(
                            "insert into events (stream, version, type, data) \
                             select $1, $2 + o, 'Bench', d \
                             from unnest($3::bytea[]) with ordinality as u(d, o) returning pos",
                            &[&stream, &expected, &data],
                        )
                        .await?
                }
                _ => client
                    .query(
                        "with h as (update head set next = next + $4 returning next - $4 as base) \
                             insert into events (pos, stream, version, type, data) \
                             select h.base + o - 1, $1, $2 + o, 'Bench', d \
                             from h, unnest($3::bytea[]) with ordinality as u(d, o) returning pos",
                        &[&stream, &expected, &data, &n],
                    )
                    .await?,
            };
            Ok(rows.iter().map(|r| r.get::<_, i64>(0)).min().unwrap_or(-1))
        }
    }
}

async fn writer(args: &Args) -> Result<(), BoxError> {
    let url = args.get("url").ok_or("--url")?.to_string();
    let design = Design::parse(args.get("design").ok_or("--design")?);
    let proc_id = args.num("id", 0);
    let tasks = args.num("tasks", 8);
    let batch = args.num("batch", 1) as usize;
    let start_at = args.num("start-at", 0);
    let secs = args.num("secs", 5);
    let schema = design.schema();

    let mut paths = Vec::new();
    if design.notifies() {
        let (tx, rx) = mpsc::channel(1024);
        let client = connect(&url, &schema).await?;
        let placer_tx = if design == Design::Sequencer && args.get("no-pipeline").is_none() {
            let (ptx, prx) = mpsc::unbounded_channel();
            let (pclient, notes) = connect_listening(&url, &schema).await?;
            pclient.batch_execute("listen evs_bench").await?;
            tokio::spawn(placer(pclient, notes, prx));
            Some(ptx)
        } else {
            None
        };
        tokio::spawn(committer(client, design, rx, placer_tx));
        for _ in 0..tasks {
            paths.push(Path::Queue(tx.clone()));
        }
    } else {
        for _ in 0..tasks {
            paths.push(Path::Direct(connect(&url, &schema).await?));
        }
    }
    // All writers start together.
    let now = now_us() / 1000;
    if start_at > now {
        tokio::time::sleep(Duration::from_millis(start_at - now)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let began = Instant::now();
    let mut handles = Vec::new();
    for (task, path) in paths.into_iter().enumerate() {
        let task = task as u64;
        handles.push(tokio::spawn(async move {
            let stream = format!("w{proc_id}-{task}-b{batch}");
            let mut expected = -1i64;
            let mut serial = 0u64;
            let mut lat = Vec::new();
            let mut events = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut ids = Vec::with_capacity(batch);
                let mut data = Vec::with_capacity(batch);
                for _ in 0..batch {
                    ids.push(event_id(proc_id, task + 1000 * batch as u64, serial));
                    data.push(payload(serial ^ (proc_id << 40) ^ (task << 20)));
                    serial += 1;
                }
                let pos = append_one(&path, design, &stream, expected, ids, data).await?;
                if pos < 0 {
                    return Err::<_, BoxError>("append returned no position".into());
                }
                lat.push(t0.elapsed().as_micros() as u64);
                expected += batch as i64;
                events += batch as u64;
            }
            Ok((events, lat))
        }));
    }
    let mut per_task = Vec::new();
    for h in handles {
        per_task.push(h.await??);
    }
    writer_result(per_task, began);
    Ok(())
}

/// A writer's RESULT line from its tasks' (events, append latencies in µs).
fn writer_result(per_task: Vec<(u64, Vec<u64>)>, began: Instant) {
    let mut events = 0;
    let mut appends = 0;
    let mut lat = Vec::new();
    for (e, l) in per_task {
        events += e;
        appends += l.len();
        lat.extend(l);
    }
    let elapsed = began.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "RESULT events={events} appends={appends} elapsed={elapsed:.3} p50_us={} p99_us={}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

// ---------------------------------------------------------------------------------------
// Readers

/// One page of the log from `from` on: (position, payload) in position order, at most
/// `limit` events. Baselines: `pos >= from`; gc: the same; seq: through `positions`.
/// One event as a reader gets it: position, payload, commit-time timestamp (µs: the
/// `ts` the design stamps under its counter row or sequencer lock; the insert time for the
/// baselines) and, on a full read, the bytes of the other columns (decoded).
struct Ev {
    pos: i64,
    data: Vec<u8>,
    ts_us: i64,
    other_bytes: usize,
}

async fn page(
    client: &Client,
    design: Design,
    from: i64,
    limit: i64,
    full: bool,
) -> Result<Vec<Ev>, BoxError> {
    let ts = "(extract(epoch from ts) * 1000000)::int8";
    let cols = if full {
        ", e.stream, e.version, e.type, e.event_id"
    } else {
        ""
    };
    let q = match design {
        Design::Sequencer | Design::LateCounter => format!(
            "select p.first_pos + e.idx, e.data, (extract(epoch from p.ts) * 1000000)::int8{cols} \
             from positions p join events e on e.append_id = p.append_id \
             where p.first_pos >= (select coalesce(max(first_pos), 0) from positions where first_pos <= $1) \
               and p.first_pos < $1 + $2 \
               and p.first_pos + e.idx >= $1 and p.first_pos + e.idx < $1 + $2 \
             order by p.first_pos, e.idx"
        ),
        Design::GroupCommit => format!(
            "select e.pos, e.data, {ts}{cols} from events e \
             where e.pos >= $1 and e.pos < $1 + $2 order by e.pos"
        ),
        _ => {
            let cols = if full {
                ", e.stream, e.version, e.type, null::bytea"
            } else {
                ""
            };
            format!(
                "select e.pos, e.data, {ts}{cols} from events e \
                 where e.pos >= $1 order by e.pos limit $2"
            )
        }
    };
    let rows = client.query(q.as_str(), &[&from, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let other_bytes = if full {
                r.get::<_, &str>(3).len()
                    + 8 * (r.get::<_, i64>(4) != -1) as usize
                    + r.get::<_, &str>(5).len()
                    + r.get::<_, Option<&[u8]>>(6).map_or(0, |b| b.len())
            } else {
                0
            };
            Ev {
                pos: r.get(0),
                data: r.get(1),
                ts_us: r.get(2),
                other_bytes,
            }
        })
        .collect())
}

/// Tails the log from position 0 while the writers run: LISTEN where the design notifies,
/// else polling every 5 ms; checks every position arrives once and in order. Reads the
/// final count from stdin (sent once the writers are done), drains, reports.
async fn subscriber(args: &Args) -> Result<(), BoxError> {
    let url = args.get("url").ok_or("--url")?.to_string();
    let design = Design::parse(args.get("design").ok_or("--design")?);
    let from = args.num("from", 0) as i64;
    let schema = design.schema();

    let (client, mut note_rx) = connect_listening(&url, &schema).await?;
    client.batch_execute(design.read_settings()).await?;
    if design.notifies() {
        client.batch_execute("listen evs_bench").await?;
    }
    // The final count arrives on stdin once the writers are done.
    let (final_tx, mut final_rx) = mpsc::unbounded_channel::<i64>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = final_tx.send(line.trim().parse().unwrap_or(-1));
    });
    println!("READY");
    std::io::stdout().flush()?;

    let idle = if design.notifies() {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(5)
    };
    let mut next = from;
    let mut seen = 0u64;
    let mut out_of_order = 0u64;
    let mut lat = Vec::new();
    let mut lat_commit = Vec::new();
    let mut target: Option<i64> = None;
    loop {
        loop {
            let rows = page(&client, design, next, 10_000, false).await?;
            if rows.is_empty() {
                break;
            }
            let t = now_us();
            for ev in rows {
                if ev.pos != next {
                    out_of_order += 1;
                }
                next = ev.pos + 1;
                seen += 1;
                let sent = u64::from_le_bytes(ev.data[..8].try_into().unwrap());
                lat.push(t.saturating_sub(sent));
                lat_commit.push(t.saturating_sub(ev.ts_us.max(0) as u64));
            }
        }
        if let Some(end) = target {
            if next >= end {
                break;
            }
        }
        if target.is_none() {
            if let Ok(n) = final_rx.try_recv() {
                target = Some(n);
                continue;
            }
        }
        if tokio::time::timeout(idle, note_rx.recv()).await.is_ok() {
            while note_rx.try_recv().is_ok() {}
        }
    }
    subscriber_result(seen, next, out_of_order, lat, lat_commit);
    Ok(())
}

/// The subscriber's RESULT line: what it saw, and delivery latencies (µs) from the append
/// start and from the commit-time timestamp.
fn subscriber_result(
    seen: u64,
    next: impl std::fmt::Display,
    out_of_order: u64,
    mut lat: Vec<u64>,
    mut lat_commit: Vec<u64>,
) {
    lat.sort_unstable();
    lat_commit.sort_unstable();
    println!(
        "RESULT seen={seen} next={next} out_of_order={out_of_order} p50_us={} p99_us={} max_us={} \
         commit_p50_us={} commit_p99_us={}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        percentile(&lat_commit, 0.5),
        percentile(&lat_commit, 0.99),
    );
}

/// Reads the whole log from 0 in pages of 10,000 (every column), checks positions.
async fn reader(args: &Args) -> Result<(), BoxError> {
    let url = args.get("url").ok_or("--url")?.to_string();
    let design = Design::parse(args.get("design").ok_or("--design")?);
    let client = connect(&url, &design.schema()).await?;
    client.batch_execute(design.read_settings()).await?;
    let t0 = Instant::now();
    let mut next = 0i64;
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut out_of_order = 0u64;
    loop {
        let rows = page(&client, design, next, 10_000, true).await?;
        if rows.is_empty() {
            break;
        }
        for ev in rows {
            if ev.pos != next {
                out_of_order += 1;
            }
            bytes += (ev.data.len() + ev.other_bytes) as u64;
            next = ev.pos + 1;
            n += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("RESULT events={n} out_of_order={out_of_order} bytes={bytes} elapsed={secs:.3}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Coordinator

fn parse_result(out: &str) -> Result<Vec<(String, f64)>, BoxError> {
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| format!("no RESULT line in child output: {out:?}"))?;
    Ok(line[7..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect())
}

fn field(r: &[(String, f64)], k: &str) -> f64 {
    r.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN)
}

/// The value of `--key` in a child's extra arguments.
fn extra_value<'a>(extra: &'a [String], key: &str) -> Result<&'a str, BoxError> {
    let flag = format!("--{key}");
    extra
        .iter()
        .position(|a| *a == flag)
        .and_then(|i| extra.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("child argument --{key} is missing").into())
}

/// The C program (bench/pg/writer.c) that plays the `evstore` row's writers and reader
/// through libevstore: `EVS_PG_BENCH_C`, which `make bench-pg` sets after building it.
fn c_program() -> Result<String, BoxError> {
    std::env::var("EVS_PG_BENCH_C").map_err(|_| {
        "the evstore design's writers and reader are the C program bench/pg/writer.c: \
         set EVS_PG_BENCH_C to its path (make bench-pg builds it and sets it)"
            .into()
    })
}

fn child(kind: &str, design: Design, url: &str, extra: &[String]) -> Result<Child, BoxError> {
    let mut cmd = if design == Design::Evstore && kind != "subscriber" {
        let mut cmd = Command::new(c_program()?);
        cmd.args([kind.to_string(), backend::url(url)]);
        if kind == "writer" {
            for key in ["id", "tasks", "batch", "start-at", "secs"] {
                cmd.arg(extra_value(extra, key)?);
            }
        }
        cmd
    } else {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--child", kind, "--url", url, "--design", design.name()])
            .args(extra);
        cmd
    };
    Ok(cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?)
}

fn wait_output(c: Child) -> Result<String, BoxError> {
    let out = c.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("child failed ({}): {text}", out.status).into());
    }
    Ok(text)
}

struct WriteCase {
    events_per_s: f64,
    append_p99_ms: f64,
    sub_p50_ms: f64,
    sub_p99_ms: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    sub_missed: i64,
    sub_out_of_order: f64,
    wal_bytes_per_event: f64,
}

/// Runs the writer processes and a subscriber; returns rates and delivery figures.
/// `first_id`: the writers' ids start there (a case after others in the same schema
/// gives its writers streams and event ids of their own).
#[allow(clippy::too_many_arguments)]
fn write_case(
    design: Design,
    url: &str,
    first_id: u64,
    writers: u64,
    tasks: u64,
    batch: u64,
    secs: u64,
    admin: &mut Admin,
    consumer: Option<&str>,
) -> Result<WriteCase, BoxError> {
    let before = admin.count(design)?;
    let from = admin.end(design)?;
    let wal_before = admin.wal_bytes()?;
    let mut sub_args = vec!["--from".to_string(), from.to_string()];
    if let Some(name) = consumer {
        sub_args.extend(["--consumer".to_string(), name.to_string()]);
    }
    let mut sub = child("subscriber", design, url, &sub_args)?;
    // Wait for the subscriber to be listening.
    let mut sub_out = std::io::BufReader::new(sub.stdout.take().unwrap());
    let mut line = String::new();
    sub_out.read_line(&mut line)?;
    if line.trim() != "READY" {
        return Err(format!("subscriber did not start: {line:?}").into());
    }
    let start_at = now_us() / 1000 + 1500;
    let mut procs = Vec::new();
    for id in first_id..first_id + writers {
        procs.push(child(
            "writer",
            design,
            url,
            &[
                "--id".into(),
                id.to_string(),
                "--tasks".into(),
                tasks.to_string(),
                "--batch".into(),
                batch.to_string(),
                "--start-at".into(),
                start_at.to_string(),
                "--secs".into(),
                secs.to_string(),
            ],
        )?);
    }
    let mut acked = 0.0;
    let mut elapsed: f64 = 0.0;
    let mut p99s = Vec::new();
    for p in procs {
        let r = parse_result(&wait_output(p)?)?;
        acked += field(&r, "events");
        elapsed = elapsed.max(field(&r, "elapsed"));
        p99s.push(field(&r, "p99_us"));
    }
    let after = admin.count(design)?;
    let wal = admin.wal_bytes()? - wal_before;
    // Every acknowledged event is in the table exactly once, nothing else is.
    if (after - before) as f64 != acked {
        return Err(format!(
            "{}: writers acknowledged {acked} events, the table gained {}",
            design.name(),
            after - before
        )
        .into());
    }
    let end = admin.end(design)?;
    {
        let stdin = sub.stdin.as_mut().unwrap();
        writeln!(stdin, "{end}")?;
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut sub_out, &mut rest)?;
    let status = sub.wait()?;
    if !status.success() {
        return Err(format!("subscriber failed: {rest}").into());
    }
    let r = parse_result(&rest)?;
    let seen = field(&r, "seen") as i64;
    let ooo = field(&r, "out_of_order");
    let missed = (after - before) - seen;
    if design.dense() && (missed != 0 || ooo != 0.0) {
        return Err(format!(
            "{}: the subscriber saw {seen} of {} events, {ooo} out of order",
            design.name(),
            after - before
        )
        .into());
    }
    p99s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(WriteCase {
        events_per_s: acked / elapsed,
        append_p99_ms: p99s.last().copied().unwrap_or(0.0) / 1000.0,
        sub_p50_ms: field(&r, "p50_us") / 1000.0,
        sub_p99_ms: field(&r, "p99_us") / 1000.0,
        commit_p50_ms: field(&r, "commit_p50_us") / 1000.0,
        commit_p99_ms: field(&r, "commit_p99_us") / 1000.0,
        sub_missed: missed,
        sub_out_of_order: ooo,
        wal_bytes_per_event: wal as f64 / acked,
    })
}

/// The coordinator's own connection (schema setup and checks).
struct Admin {
    rt: tokio::runtime::Runtime,
    client: Client,
    url: String,
}

impl Admin {
    fn q(&mut self, sql: &str) -> Result<Vec<tokio_postgres::Row>, BoxError> {
        Ok(self.rt.block_on(self.client.query(sql, &[]))?)
    }
    fn one(&mut self, sql: &str) -> Result<i64, BoxError> {
        let rows = self.q(sql)?;
        Ok(rows[0].get::<_, Option<i64>>(0).unwrap_or(0))
    }
    /// WAL written so far (bytes); the difference over a case, per event, is its WAL cost.
    fn wal_bytes(&mut self) -> Result<i64, BoxError> {
        self.one("select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8")
    }
    fn setup(&mut self, design: Design) -> Result<(), BoxError> {
        let s = design.schema();
        self.rt.block_on(self.client.batch_execute(&format!(
            "drop schema if exists {s} cascade; create schema {s}; set search_path = {s}; {}",
            design.ddl()
        )))?;
        if design == Design::Evstore {
            // An empty schema: the store's first open creates its tables there.
            let url = self.url.clone();
            backend::open(&url)?.close()?;
        }
        Ok(())
    }
    fn count(&mut self, design: Design) -> Result<i64, BoxError> {
        let s = design.schema();
        match design {
            // The store keeps one `chunks` row per stream entry of an append.
            Design::Evstore => {
                self.one(&format!("select coalesce(sum(n), 0)::int8 from {s}.chunks"))
            }
            _ => self.one(&format!("select count(*) from {s}.events")),
        }
    }
    /// How many rows of `table` (first_pos, n: runs of n positions) do not start where
    /// the run before them ends.
    fn breaks(&mut self, table: &str) -> Result<i64, BoxError> {
        self.one(&format!(
            "select count(*) from (select first_pos, n, lead(first_pos) over (order by first_pos) as nx \
             from {table}) x where nx is not null and nx <> first_pos + n"
        ))
    }
    /// One past the last position.
    fn end(&mut self, design: Design) -> Result<i64, BoxError> {
        let s = design.schema();
        match design {
            Design::Bigserial => Ok(self.one(&format!("select max(pos) from {s}.events"))? + 1),
            _ => self.one(&format!("select next from {s}.head")),
        }
    }
    /// Positions are exactly 0..N-1 (N = number of events), nothing pending.
    fn check_dense(&mut self, design: Design) -> Result<String, BoxError> {
        let s = design.schema();
        let n = self.count(design)?;
        match design {
            Design::Bigserial => {
                let max = self.one(&format!("select max(pos) from {s}.events"))?;
                // bigserial counts from 1.
                Ok(format!("{n} events, positions 1..{max}: {} holes", max - n))
            }
            Design::Evstore => {
                // Chunks of n events at first_pos: dense when each starts where the one
                // before ends, the first at 0 and the last ending at the head.
                let breaks = self.breaks(&format!("{s}.chunks"))?;
                let lo = self.one(&format!(
                    "select coalesce(min(first_pos), 0) from {s}.chunks"
                ))?;
                let next = self.one(&format!("select next from {s}.head"))?;
                if breaks != 0 || lo != 0 || next != n {
                    return Err(format!(
                        "{s}: {n} events, {breaks} breaks, first {lo}, head {next}"
                    )
                    .into());
                }
                Ok(format!("{n} events at positions 0..{}: dense", n - 1))
            }
            Design::Counter | Design::GroupCommit => {
                let lo = self.one(&format!("select min(pos) from {s}.events"))?;
                let hi = self.one(&format!("select max(pos) from {s}.events"))?;
                let next = self.one(&format!("select next from {s}.head"))?;
                // pos is the primary key: distinct; min 0 and max N-1 make it 0..N-1.
                if lo != 0 || hi != n - 1 || next != n {
                    return Err(
                        format!("{s}: {n} events, positions {lo}..{hi}, head {next}").into(),
                    );
                }
                Ok(format!("{n} events at positions 0..{}: dense", n - 1))
            }
            Design::Sequencer | Design::LateCounter => {
                let pending = if design == Design::Sequencer {
                    self.one(&format!("select count(*) from {s}.pending"))?
                } else {
                    0
                };
                let placed = self.one(&format!("select sum(n)::bigint from {s}.positions"))?;
                let breaks = self.breaks(&format!("{s}.positions"))?;
                let lo = self.one(&format!("select min(first_pos) from {s}.positions"))?;
                let next = self.one(&format!("select next from {s}.head"))?;
                let orphans = self.one(&format!(
                    "select count(*) from {s}.events e where not exists \
                     (select 1 from {s}.positions p where p.append_id = e.append_id)"
                ))?;
                if pending != 0
                    || placed != n
                    || breaks != 0
                    || lo != 0
                    || next != n
                    || orphans != 0
                {
                    return Err(format!(
                        "{s}: {n} events, {placed} placed, {pending} pending, {breaks} breaks, \
                         first {lo}, head {next}, {orphans} unplaced"
                    )
                    .into());
                }
                Ok(format!("{n} events at positions 0..{}: dense", n - 1))
            }
        }
    }
    /// A retry with the same event ids returns the original position and writes nothing;
    /// a stale expected version is refused.
    fn check_idempotency(&mut self, design: Design) -> Result<String, BoxError> {
        let s = design.schema();
        let rows = self.q(&format!(
            "select stream, version, event_id, data from {s}.events \
             where stream = 'w0-0-b1' and version = 5"
        ))?;
        let row = rows.first().ok_or("no event w0-0-* version 5")?;
        let stream: String = row.get(0);
        let id: Vec<u8> = row.get(2);
        let data: Vec<u8> = row.get(3);
        let original = match design {
            Design::GroupCommit => self.one(&format!(
                "select pos from {s}.events where stream = '{stream}' and version = 5"
            ))?,
            _ => self.one(&format!(
                "select p.first_pos + e.idx from {s}.events e join {s}.positions p using (append_id) \
                 where e.stream = '{stream}' and e.version = 5"
            ))?,
        };
        let before = self.count(design)?;
        let client = &self.client;
        let (retry, stale) = self.rt.block_on(async {
            client
                .batch_execute(&format!("set search_path = {s}"))
                .await?;
            let retry = commit_batch(
                client,
                design,
                &[(stream.clone(), 4, vec![id.clone()], vec![data.clone()])],
            )
            .await?;
            let stale = commit_batch(
                client,
                design,
                &[(stream.clone(), 4, vec![vec![0xee; 16]], vec![data.clone()])],
            )
            .await?;
            Ok::<_, BoxError>((retry, stale))
        })?;
        let after = self.count(design)?;
        if retry[0].as_ref().ok() != Some(&original) || after != before || stale[0].is_ok() {
            return Err(format!(
                "{s}: retry gave {:?} (original {original}), count {before} -> {after}, stale append {:?}",
                retry[0], stale[0]
            )
            .into());
        }
        Ok(format!(
            "retry -> original position {original}, nothing written; stale version refused"
        ))
    }
}

fn coordinator(args: &Args) -> Result<(), BoxError> {
    let url = args
        .get("url")
        .map(str::to_string)
        .or_else(|| std::env::var("EVS_PG_URL").ok())
        .ok_or("--url URL or EVS_PG_URL is required")?;
    let secs = args.num("secs", 6);
    let writers = args.num("writers", 8);
    let tasks = args.num("tasks", 8);
    let designs: Vec<Design> = args
        .get("designs")
        .unwrap_or("bigserial,counter,gc,seq,late,evstore")
        .split(',')
        .map(Design::parse)
        .collect();

    let rt = runtime();
    let client = rt.block_on(connect(&url, "public"))?;
    let mut admin = Admin {
        rt,
        client,
        url: url.clone(),
    };
    let version: String = admin.q("show server_version")?[0].get(0);
    let settings: Vec<String> = ["fsync", "synchronous_commit", "full_page_writes"]
        .iter()
        .map(|k| {
            let v: String = admin.q(&format!("show {k}")).unwrap()[0].get(0);
            format!("{k}={v}")
        })
        .collect();
    println!(
        "pg_bench: PostgreSQL {version} ({}), {writers} writer processes x {tasks} appending tasks, {secs} s per case, 100-byte events",
        settings.join(" ")
    );

    struct Row {
        design: Design,
        single: WriteCase,
        hundred: WriteCase,
        /// Single-event appends with one appending thread per writer process (issue 21
        /// item 7), for bigserial and evstore.
        one_thread: Option<WriteCase>,
        read: f64,
        events: i64,
        checks: Vec<String>,
    }
    let mut opens = Vec::new();
    let mut consumers = Vec::new();
    let mut rows = Vec::new();
    for &design in &designs {
        admin.setup(design)?;
        // Every design starts from the same server state: only its own (empty) schema,
        // and no checkpoint due from what the designs before it wrote.
        admin.q("checkpoint")?;
        eprintln!("pg_bench: {} single-event appends...", design.name());
        let single = write_case(design, &url, 0, writers, tasks, 1, secs, &mut admin, None)?;
        eprintln!("pg_bench: {} 100-event appends...", design.name());
        let hundred = write_case(design, &url, 0, writers, tasks, 100, secs, &mut admin, None)?;
        let one_thread = match design {
            Design::Bigserial | Design::Evstore => {
                eprintln!(
                    "pg_bench: {} single-event appends, 1 thread per process...",
                    design.name()
                );
                Some(write_case(
                    design, &url, 100, writers, 1, 1, secs, &mut admin, None,
                )?)
            }
            _ => None,
        };
        let mut checks = vec![admin.check_dense(design)?];
        if design.notifies() {
            checks.push(admin.check_idempotency(design)?);
        }
        admin.q("checkpoint")?;
        admin.q("analyze")?;
        eprintln!("pg_bench: {} read-all...", design.name());
        let r = parse_result(&wait_output(child("reader", design, &url, &[])?)?)?;
        let n = field(&r, "events");
        if design.dense() && (field(&r, "out_of_order") != 0.0 || n != admin.count(design)? as f64)
        {
            return Err(format!("{}: read-all out of order or short: {r:?}", design.name()).into());
        }
        let read = n / field(&r, "elapsed");
        checks.push(format!("read-all: {n} events in position order"));
        if design == Design::Evstore {
            // Issue 22: a durable consumer that checkpoints, live under the single-event
            // load (delivery latency from commit) and catching up on the whole log.
            eprintln!("pg_bench: evstore durable consumer, live...");
            let live = write_case(
                design,
                &url,
                200,
                writers,
                tasks,
                1,
                secs,
                &mut admin,
                Some("bench-live"),
            )?;
            eprintln!("pg_bench: evstore durable consumer, catching up...");
            let (n, took) = backend::consumer_catch_up(&url)?;
            consumers.push(format!(
                "evstore durable consumer (checkpoint every 100 acknowledgements): catching up \
                 on {n} events: {:.0} ev/s ({:.2}x read-all); live under {:.0} ev/s of \
                 1-event appends ({writers} x {tasks}): from commit p50 {:.1} / p99 {:.1} ms, \
                 from append start p50 {:.1} / p99 {:.1} ms, {} events missed",
                n as f64 / took,
                (n as f64 / took) / read,
                live.events_per_s,
                live.commit_p50_ms,
                live.commit_p99_ms,
                live.sub_p50_ms,
                live.sub_p99_ms,
                live.sub_missed
            ));
        }
        if design == Design::Evstore {
            // Issue 21 item 4: opening the store just written, and an empty one.
            eprintln!("pg_bench: evstore opens...");
            let (full, report) = backend::open_time(&url, backend::SCHEMA, 7)?;
            let empty_schema = format!("{}_empty", backend::SCHEMA);
            let (empty, _) = backend::open_time(&url, &empty_schema, 7)?;
            admin.q(&format!("drop schema {empty_schema} cascade"))?;
            opens.push(format!(
                "evstore open with the account projection (as evs_open), median of 7: {} events: \
                 {:.1} ms (from the checkpoint at position {}, {} positions read after it); \
                 an empty store: {:.1} ms; {:.2}x",
                report.next_position,
                full.as_secs_f64() * 1000.0,
                report
                    .snapshot_position
                    .map_or_else(|| "none".to_owned(), |p| p.to_string()),
                report.events_replayed,
                empty.as_secs_f64() * 1000.0,
                full.as_secs_f64() / empty.as_secs_f64()
            ));
        }
        rows.push(Row {
            design,
            single,
            hundred,
            one_thread,
            read,
            events: admin.count(design)?,
            checks,
        });
        admin.q(&format!("drop schema {} cascade", design.schema()))?;
    }

    let base = |d: Design, f: fn(&Row) -> f64| rows.iter().find(|r| r.design == d).map(f);
    let bs1 = base(Design::Bigserial, |r| r.single.events_per_s);
    let cr1 = base(Design::Counter, |r| r.single.events_per_s);
    let bs100 = base(Design::Bigserial, |r| r.hundred.events_per_s);
    let ratio = |x: f64, b: Option<f64>| {
        b.map(|b| format!("{:.2}x", x / b))
            .unwrap_or_else(|| "-".into())
    };
    println!();
    println!(
        "| design | 1-event appends ev/s | vs bigserial | vs counter row | append p99 ms \
         | 100-event appends ev/s | vs bigserial | read-all ev/s (1 reader) | WAL bytes/event (1; 100) |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.1} | {:.0} | {} | {:.0} | {:.0}; {:.0} |",
            r.design.title(),
            r.single.events_per_s,
            ratio(r.single.events_per_s, bs1),
            ratio(r.single.events_per_s, cr1),
            r.single.append_p99_ms,
            r.hundred.events_per_s,
            ratio(r.hundred.events_per_s, bs100),
            r.read,
            r.single.wal_bytes_per_event,
            r.hundred.wal_bytes_per_event,
        );
    }
    println!();
    println!(
        "| design | subscriber, 1-event load: ms from commit p50 / p99 | from append start p50 / p99 \
         | 100-event load: from commit p50 / p99 | from append start p50 / p99 | events missed by the tailing reader |"
    );
    println!("|---|--:|--:|--:|--:|--:|");
    for r in &rows {
        let missed = r.single.sub_missed + r.hundred.sub_missed;
        println!(
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} |",
            r.design.title(),
            r.single.commit_p50_ms,
            r.single.commit_p99_ms,
            r.single.sub_p50_ms,
            r.single.sub_p99_ms,
            r.hundred.commit_p50_ms,
            r.hundred.commit_p99_ms,
            r.hundred.sub_p50_ms,
            r.hundred.sub_p99_ms,
            if r.design.dense() {
                format!("{missed}")
            } else {
                format!(
                    "{missed} of {} skipped ({} jumps past uncommitted positions)",
                    r.events,
                    r.single.sub_out_of_order + r.hundred.sub_out_of_order
                )
            }
        );
    }
    let one: Vec<&Row> = rows.iter().filter(|r| r.one_thread.is_some()).collect();
    if !one.is_empty() {
        let bs = base(Design::Bigserial, |r| {
            r.one_thread.as_ref().map_or(0.0, |c| c.events_per_s)
        });
        println!();
        println!(
            "| design, {writers} writer processes x 1 appending thread | 1-event appends ev/s \
             | vs bigserial | append p99 ms |"
        );
        println!("|---|--:|--:|--:|");
        for r in one {
            let c = r.one_thread.as_ref().expect("filtered");
            println!(
                "| {} | {:.0} | {} | {:.1} |",
                r.design.title(),
                c.events_per_s,
                ratio(c.events_per_s, bs),
                c.append_p99_ms
            );
        }
    }
    println!();
    for line in opens.iter().chain(&consumers) {
        println!("{line}");
    }
    for r in &rows {
        println!("{}: {}", r.design.name(), r.checks.join("; "));
    }
    Ok(())
}
