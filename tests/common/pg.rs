//! A throwaway PostgreSQL server for a test, started by `tests/pg/pg_server.sh`.
//!
//! ```ignore
//! mod common;
//! let pg = common::pg::PgServer::start();      // panics (fails the test) if it cannot start
//! let (client, conn) = tokio_postgres::connect(pg.url(), tokio_postgres::NoTls).await?;
//! ...
//! pg.stop().unwrap();                          // or just drop it
//! ```
//!
//! Each server has its own folder under /tmp (data, socket, log), its own free port on
//! 127.0.0.1, durable settings (fsync and synchronous_commit on), and trust authentication
//! for the `postgres` role. There is no skip: a machine without a PostgreSQL server fails
//! the test with the script's message.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server; stopped and its folder removed on `stop` or drop.
pub struct PgServer {
    url: String,
    dir: PathBuf,
    stopped: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/pg_server.sh")
}

impl PgServer {
    /// Starts a server; panics with the script's output if it cannot.
    pub fn start() -> PgServer {
        match PgServer::start_with_conf("") {
            Ok(s) => s,
            Err(e) => panic!("the PostgreSQL test server did not start:\n{e}"),
        }
    }

    /// Starts a server with extra `postgresql.conf` lines (`EVS_PG_CONF`).
    pub fn start_with_conf(extra_conf: &str) -> Result<PgServer, String> {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env("EVS_PG_CONF", extra_conf)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(format!("pg_server.sh start: {}\n{stderr}", out.status));
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = stderr
            .lines()
            .find_map(|l| l.strip_prefix("EVS_PG_DIR="))
            .map(PathBuf::from)
            .ok_or_else(|| format!("pg_server.sh start printed no EVS_PG_DIR:\n{stderr}"))?;
        if !url.starts_with("postgresql://") {
            return Err(format!(
                "pg_server.sh start printed no URL: {url:?}\n{stderr}"
            ));
        }
        Ok(PgServer {
            url,
            dir,
            stopped: false,
        })
    }

    /// The libpq-style URL: `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    /// The same server with another user: `postgresql://USER@127.0.0.1:PORT/postgres`.
    pub fn url_as(&self, user: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/postgres", self.port())
    }

    /// Stops every process of the server (SIGSTOP to the postmaster, then to each of its
    /// children): it stops answering, new connections too, until the returned guard is
    /// dropped (SIGCONT), also when the test fails.
    pub fn stop_processes(&self) -> Stopped<'_> {
        assert!(
            self.signal_all(libc::SIGSTOP),
            "the server's postmaster is not there"
        );
        Stopped(self)
    }

    /// Sends `signal` to the server's postmaster and then to each of its child
    /// processes; false if there is no postmaster to signal.
    fn signal_all(&self, signal: i32) -> bool {
        let pid_file = self.dir.join("data/postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        else {
            return false;
        };
        // SAFETY: kill(2) on the server this test started; no memory is involved.
        if unsafe { libc::kill(postmaster, signal) } != 0 {
            return false;
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                // SAFETY: as above, a child of that server.
                unsafe { libc::kill(pid, signal) };
            }
        }
        true
    }

    /// Replaces the server's pg_hba.conf with `lines` and reloads it.
    pub fn set_hba(&self, lines: &str) {
        let hba = self.dir.join("data/pg_hba.conf");
        std::fs::write(&hba, lines).unwrap_or_else(|e| panic!("{}: {e}", hba.display()));
        self.ctl("reload").unwrap();
    }

    /// The server's folder (data/, server.log, the Unix socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops (`"stop"`), starts (`"start"`) or restarts (`"restart"`) the server in place
    /// (same data, same port) with `pg_ctl -m fast`, as the `postgres` OS user when run as
    /// root. Stopping cuts every connection.
    pub fn ctl(&self, action: &str) -> Result<(), String> {
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .ok_or_else(|| format!("no port in {}", self.url))?;
        let data = self.dir.join("data");
        let script = format!(
            "bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); \
             [ -n \"$EVS_PG_BIN\" ] && bin=$EVS_PG_BIN; \
             cmd=\"$bin/pg_ctl -D {} -l {} -w -t 60 -m fast -o '-p {port}' {action}\"; \
             if [ \"$(id -u)\" = 0 ]; then runuser -u ${{EVS_PG_USER:-postgres}} -- sh -c \"$cmd\"; else sh -c \"$cmd\"; fi",
            data.display(),
            self.dir.join("server.log").display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {action}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Stops the server and removes its folder.
    pub fn stop(mut self) -> Result<(), String> {
        self.stopped = true;
        stop_dir(&self.dir)
    }
}

/// A server whose processes are stopped; they continue when this is dropped.
pub struct Stopped<'a>(&'a PgServer);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal_all(libc::SIGCONT);
    }
}

/// Runs `f` with a client connected to `url` (plain), on a runtime of its own.
pub fn with_client<T, F: std::future::Future<Output = T>>(
    url: &str,
    f: impl FnOnce(tokio_postgres::Client) -> F,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        tokio::spawn(conn);
        f(client).await
    })
}

/// Runs a script as `psql -v ON_ERROR_STOP=1` does: its statements one by one (the simple
/// query protocol), stopping at the first error (its message).
pub fn run_script(url: &str, text: &str) -> Result<(), String> {
    with_client(url, |client| async move {
        client.batch_execute(text).await.map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        })
    })
}

/// Runs SQL (one or more statements, simple query protocol) on a connection of its own;
/// returns the first column of the first row any statement returned.
pub fn sql(url: &str, statement: &str) -> Option<String> {
    with_client(url, |client| async move {
        let messages = client
            .simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
    })
}

/// Opens the store at `url` for writing from `n` threads at once (a barrier starts them
/// together): the first opens of a schema, or of one that needs migrating.
pub fn open_at_once(url: &str, n: usize) -> Vec<evstore::store::Store> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let opens: Vec<_> = (0..n)
        .map(|_| {
            let (url, barrier) = (url.to_owned(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                evstore::store::Store::open(
                    &url,
                    evstore::store::StoreOptions::default(),
                    Vec::new(),
                )
                .map(|(s, _)| s)
            })
        })
        .collect();
    opens
        .into_iter()
        .map(|t| t.join().unwrap().expect("an open"))
        .collect()
}

/// Opens the store at `url` for writing while another connection to `server` is in the
/// middle of a transaction (an append of an older library, say): it has run `before`
/// when the open starts; half a second later it runs `after` and commits. An open that
/// has to wait for it (a migration) must neither deadlock with it nor lose its writes.
pub fn open_while_in_flight(
    server: &str,
    url: &str,
    before: &str,
    after: &str,
) -> evstore::store::Store {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(server, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    rt.block_on(client.batch_execute(&format!("begin; {before}")))
        .unwrap();
    let url = url.to_owned();
    let opening = std::thread::spawn(move || {
        evstore::store::Store::open(&url, evstore::store::StoreOptions::default(), Vec::new())
            .map(|(s, _)| s)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    rt.block_on(client.batch_execute(&format!("{after}; commit")))
        .unwrap();
    opening.join().unwrap().expect("the open that waited")
}

fn stop_dir(dir: &Path) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("stop")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_server.sh stop {}: {}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = stop_dir(&self.dir) {
                eprintln!("{e}");
            }
        }
    }
}

/// Runs a shell command as the server's OS user (`postgres` when we are root).
pub fn as_pg(cmd: &str) -> Result<(), String> {
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
pub struct Standby {
    pub data: String,
    pub port: u16,
}

impl Standby {
    /// Makes and starts a streaming standby of `pg` (`pg_basebackup -R`); returns it and
    /// its URL.
    pub fn start(pg: &PgServer) -> (Standby, String) {
        let port = pg.port();
        let free = std::net::TcpListener::bind("127.0.0.1:0")
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
        (Standby { data, port: free }, url)
    }

    /// Promotes it to a primary (`pg_ctl promote`, waiting for the end of recovery).
    pub fn promote(&self) -> Result<(), String> {
        as_pg(&format!("pg_ctl -D {} -w -t 60 promote", self.data))
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = as_pg(&format!("pg_ctl -D {} -m immediate -w stop", self.data));
    }
}

/// Checks an error's kind and that its message says each of `parts`.
pub fn check_error(e: &evstore::Error, kind: evstore::ErrorKind, parts: &[&str]) {
    assert_eq!(e.kind, kind, "{e:?}");
    for part in parts {
        assert!(e.message.contains(part), "no '{part}' in: {}", e.message);
    }
}

/// A pgbouncer in transaction pooling mode in front of `pg` (tests/pg_pooler.rs), with
/// `pool` server connections at most; stopped on drop. Its files are in the server's
/// folder.
pub struct Pooler {
    pid_file: PathBuf,
}

impl Pooler {
    /// Starts it; returns it and its URL (`postgresql://postgres@127.0.0.1:PORT/postgres`).
    /// A pgbouncer that cannot start fails the test.
    pub fn start(pg: &PgServer, pool: u32) -> (Pooler, String) {
        let dir = pg.dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ini = dir.join("pgbouncer.ini");
        let pid_file = dir.join("pgbouncer.pid");
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = transaction\ndefault_pool_size = {pool}\nmax_client_conn = 200\n\
                 logfile = {}\npidfile = {}\n",
                pg.port(),
                dir.join("userlist.txt").display(),
                dir.join("pgbouncer.log").display(),
                pid_file.display()
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .unwrap_or("pgbouncer");
        as_pg(&format!("{bin} -d {}", ini.display())).unwrap_or_else(|e| {
            panic!("pgbouncer did not start (tools/setup.sh installs it): {e}")
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer does not listen on port {port}: {}",
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
        (Pooler { pid_file }, url)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SAFETY: kill(2) on the pgbouncer this test started (its own pid file).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// Opens the store at `url` through the C API (`evs_open`, default options); panics if
/// it does not open.
pub fn c_open(url: &str) -> *mut evstore::ffi::evs_store {
    let path = std::ffi::CString::new(url).unwrap();
    let mut s = std::ptr::null_mut();
    // SAFETY: a valid string, NULL options and info, an out pointer.
    let st = unsafe {
        evstore::ffi::evs_open(
            path.as_ptr(),
            std::ptr::null(),
            &mut s,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, evstore::ffi::EVS_OK, "evs_open {url}");
    s
}

/// SQL that takes a schema of version 8 back to what version 7 had (no `flushed` table, no
/// trigger on the head, no `append_async`), for tests that make an older schema from a
/// current one; the caller takes it further back and sets the version.
pub fn undo_version_8(schema: &str) -> String {
    format!(
        "drop trigger head_durable on {schema}.head; drop function {schema}.head_durable, \
         {schema}.append_async; drop table {schema}.flushed; "
    )
}
