//! A read-only store on a streaming replica: `pg_basebackup -R` of the harness's server
//! into its folder, started on a second port; the store opened there reads the log and
//! follows what the primary appends (a standby has no LISTEN: the store polls).

mod common;

use common::pg::PgServer;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::ErrorKind;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a shell command as the server's OS user (`postgres` when we are root).
fn as_pg(cmd: &str) -> Result<(), String> {
    let script = format!(
        "bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); \
         [ -n \"$EVS_PG_BIN\" ] && bin=$EVS_PG_BIN; export PATH=\"$bin:$PATH\"; \
         if [ \"$(id -u)\" = 0 ]; then runuser -u ${{EVS_PG_USER:-postgres}} -- env PATH=\"$PATH\" sh -c '{cmd}'; \
         else sh -c '{cmd}'; fi"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A standby of `pg`, stopped on drop (its folder is inside the primary's, removed
/// with it).
struct Standby {
    data: String,
}

impl Standby {
    fn start(pg: &PgServer) -> (Standby, String) {
        let port = pg
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = pg.dir().join("standby").display().to_string();
        let sock = pg.dir().display().to_string();
        as_pg(&format!(
            "pg_basebackup -h 127.0.0.1 -p {port} -U postgres -D {data} -R -X stream --no-sync \
             && echo \"port = {free}\" >> {data}/postgresql.conf \
             && echo \"unix_socket_directories = '\"'\"'{sock}'\"'\"'\" >> {data}/postgresql.conf \
             && pg_ctl -D {data} -l {data}/../standby.log -w -t 60 start"
        ))
        .unwrap_or_else(|e| panic!("the standby did not start: {e}"));
        let url = format!("postgresql://postgres@127.0.0.1:{free}/postgres");
        (Standby { data }, url)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = as_pg(&format!("pg_ctl -D {} -m immediate -w stop", self.data));
    }
}

#[test]
fn a_read_only_store_on_a_streaming_replica_reads_and_follows_the_log() {
    let pg = PgServer::start();
    let url = format!("{}?schema=replicated", pg.url());
    let primary = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    for i in 0..10u32 {
        primary
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("E", &i.to_le_bytes())],
            )
            .unwrap();
    }
    let (standby, standby_url) = Standby::start(&pg);
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let replica = Store::open(format!("{standby_url}?schema=replicated"), ro, Vec::new())
        .unwrap()
        .0;
    assert_eq!(
        replica.append_event("E", b"").unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    let mut tail = replica.read_all(0).unwrap();
    let mut seen = 0u64;
    // What the primary appends from now on reaches the replica's tailing cursor, in order.
    for i in 10..40u32 {
        primary
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("E", &i.to_le_bytes())],
            )
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 40 {
        assert!(
            Instant::now() < deadline,
            "the replica stopped at {seen} of 40"
        );
        match tail.next().unwrap() {
            Some(e) => {
                assert_eq!(e.position, seen);
                assert_eq!(e.payload, (seen as u32).to_le_bytes());
                seen += 1;
            }
            None => {
                replica.wait_for_events(seen, Duration::from_millis(100));
            }
        }
    }
    assert_eq!(replica.stream_version("s").unwrap(), Some(39));
    drop(standby);
}
