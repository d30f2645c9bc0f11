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

/// Runs SQL (one or more statements, simple query protocol) on a connection of its own;
/// returns the first column of the first row any statement returned.
pub fn sql(url: &str, statement: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        tokio::spawn(conn);
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
