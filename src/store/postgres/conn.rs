//! Connections to the server: the URL (`url`), TLS (`tls`), the bounds of every connect
//! and statement (docs/postgres.md "Timeouts"), one shared client for reads that is
//! replaced when its connection is lost (the store reconnects by itself), and how
//! PostgreSQL's errors become the store's.

use super::tls;
use super::url::Settings;
use super::uuid::Uuid;
use crate::error::{Error, ErrorKind, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Connection, Row, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The stream of a connection: TLS or plain (tokio-postgres decides per connection).
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Tells whether `location` names a PostgreSQL store rather than a directory.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// Whether a server error says the server cannot serve now (it is shutting down,
/// starting, or out of connections): retrying later may succeed.
fn unavailable_state(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

/// A PostgreSQL error as the store's, with what was being done and what the server said:
/// `ReadOnly` for a write the server refuses as read-only (a standby: SQLSTATE 25006),
/// `Unavailable` when the server cannot be reached or cannot serve now (retrying may
/// succeed), `InvalidArgument` for a configuration tokio-postgres refuses, else `Io`.
pub fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let (kind, note) = if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            (
                ErrorKind::ReadOnly,
                "; the server takes no writes now (a standby, perhaps after a failover, or \
                 default_transaction_read_only)",
            )
        } else if unavailable_state(code) {
            (ErrorKind::Unavailable, "")
        } else {
            (ErrorKind::Io, "")
        };
        return Error::new(
            kind,
            format!(
                "{what}: PostgreSQL said: {} (SQLSTATE {}){note}",
                db.message(),
                code.code()
            ),
        );
    }
    let text = full_text(&e);
    if text.starts_with("invalid configuration") {
        return Error::invalid(format!("{what}: {text}"));
    }
    // tokio-postgres's errors of the connection itself (its other kinds: authentication,
    // a message it cannot parse or convert, are not cured by waiting; a TLS handshake's
    // refusals are told apart before, by `connect_error`).
    let lost = e.is_closed()
        || [
            "error communicating with the server",
            "error connecting to server",
            "timeout waiting for server",
            "connection closed",
            "error performing TLS handshake",
        ]
        .iter()
        .any(|p| text.starts_with(p));
    match lost {
        true => Error::new(
            ErrorKind::Unavailable,
            format!("{what}: the connection to PostgreSQL failed or was lost ({text})"),
        ),
        false => Error::new(ErrorKind::Io, format!("{what}: PostgreSQL: {text}")),
    }
}

/// An error's text with its causes (tokio-postgres leaves some of them out).
pub fn full_text(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Where to connect and which schema to use, with one reusable client.
pub struct Conn {
    settings: Settings,
    tls: MakeRustlsConnect,
    /// The clients reads use, `read_connections` of them, each made at its first use
    /// and again after it was lost; `next_read` picks them in turn.
    shared: Mutex<Vec<Option<Arc<Shared>>>>,
    next_read: AtomicUsize,
    /// The handle's counters (metrics).
    pub counters: Counters,
    /// Connections made by `fresh` whose socket is still open: `wait_closed` waits for
    /// them, so that no descriptor outlives the store's close.
    live: Arc<Live>,
    /// The store's open has finished: a lost connection's message can say that the
    /// store connects again on its next call (at open there is no store yet).
    opened: AtomicBool,
}

/// A statement's parameter with its PostgreSQL type: every statement is sent unnamed
/// with its parameters' types (`query_typed`: parse, bind and execute in one round trip),
/// so that no prepared statement outlives its transaction (docs/postgres.md "Poolers").
pub trait Param: ToSql + Sync {
    fn pg_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

macro_rules! params {
    ($($t:ty => $ty:expr),* $(,)?) => {
        $(impl Param for $t {
            fn pg_type(&self) -> Type {
                $ty
            }
            fn as_sql(&self) -> &(dyn ToSql + Sync) {
                self
            }
        })*
    };
}

params! {
    bool => Type::BOOL,
    i32 => Type::INT4,
    i64 => Type::INT8,
    &str => Type::TEXT,
    Option<&str> => Type::TEXT,
    String => Type::TEXT,
    &[u8] => Type::BYTEA,
    Vec<u8> => Type::BYTEA,
    Vec<i32> => Type::INT4_ARRAY,
    Vec<i64> => Type::INT8_ARRAY,
    Vec<&str> => Type::TEXT_ARRAY,
    Vec<Vec<u8>> => Type::BYTEA_ARRAY,
    Vec<&[u8]> => Type::BYTEA_ARRAY,
    Vec<Option<&[u8]>> => Type::BYTEA_ARRAY,
    Uuid<'_> => Type::UUID,
    Vec<Uuid<'_>> => Type::UUID_ARRAY,
    Vec<Option<Uuid<'_>>> => Type::UUID_ARRAY,
}

/// The parameters as `query_typed` takes them.
pub fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.as_sql(), p.pg_type())).collect()
}

/// The shared client.
pub struct Shared {
    client: Client,
}

impl Shared {
    /// Runs `sql` (qualified) as an unnamed statement.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        self.client.query_typed(sql, &typed(params)).await
    }
}

/// What a handle counts for its metrics (`evs_metrics_text`, docs/postgres.md
/// "Operations"): the committer's queue and batches, the requests it sent again, and the
/// connections made again after one was lost.
#[derive(Default)]
pub struct Counters {
    /// Appends handed to the committer and not yet taken into a batch.
    pub queued: AtomicU64,
    /// Calls of `append` the committer made (batches), their requests and events.
    pub batches: AtomicU64,
    pub batch_requests: AtomicU64,
    pub batch_events: AtomicU64,
    /// The requests of the largest batch, and of the last one.
    pub max_batch: AtomicU64,
    pub last_batch: AtomicU64,
    /// Requests sent again after their batch's call failed (their ids looked up first).
    pub retries: AtomicU64,
    /// Connections made to replace one that was lost (reads, committer, listener,
    /// lifecycle entries).
    pub reconnects: AtomicU64,
    /// The committer has connected once (its later connections are reconnects).
    pub committer_connected: AtomicBool,
}

impl Counters {
    /// Counts a batch of `requests` appends holding `events` events.
    pub fn batch(&self, requests: u64, events: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_requests.fetch_add(requests, Ordering::Relaxed);
        self.batch_events.fetch_add(events, Ordering::Relaxed);
        self.max_batch.fetch_max(requests, Ordering::Relaxed);
        self.last_batch.store(requests, Ordering::Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// A count of open connections and its wake-up.
#[derive(Default)]
struct Live {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Live {
    fn ended(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.changed.notify_all();
    }
}

impl Conn {
    /// Parses the URL (`url::Settings`) and reads the TLS files it names.
    pub fn parse(url: &str) -> Result<Conn> {
        let settings = Settings::parse(url)?;
        let tls = tls::connector(&settings.tls, &settings.location)?;
        Ok(Conn {
            shared: Mutex::new(vec![None; settings.read_connections]),
            settings,
            tls,
            next_read: AtomicUsize::new(0),
            counters: Counters::default(),
            live: Arc::default(),
            opened: AtomicBool::new(false),
        })
    }

    /// How often waiters read the head while notifications wake them.
    pub fn listen_poll(&self) -> Duration {
        self.settings.listen_poll
    }

    /// The bound of each statement and of an append (the URL's `timeout`).
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Whether the URL says the server is reached through a pooler in transaction mode
    /// (`pooler=transaction`): no session state at all, and no listener.
    pub fn pooled(&self) -> bool {
        self.settings.pooled
    }

    /// `sql` with every name of the store's (written `@.name`) qualified with its schema:
    /// no statement depends on the session's search path.
    pub fn qualify(&self, sql: &str) -> String {
        sql.replace("@.", &format!("\"{}\".", self.settings.schema))
    }

    /// Whether a writable open may create or migrate the schema (the URL's `migrate`).
    pub fn migrate(&self) -> bool {
        self.settings.migrate
    }

    /// The URL's user (the role the schema's SQL grants its rights to).
    pub fn user(&self) -> &str {
        self.settings.config.get_user().unwrap_or("")
    }

    /// Marks the open as done (see `later`).
    pub fn set_opened(&self) {
        self.opened.store(true, Ordering::Release);
    }

    /// An error of a call on an open store: one of an unreachable server says that the
    /// store connects again on its next call.
    pub fn later(&self, mut e: Error) -> Error {
        if e.kind == ErrorKind::Unavailable && self.opened.load(Ordering::Acquire) {
            e.message
                .push_str("; the store connects again on its next call");
        }
        e
    }

    /// The error of a statement that did not answer within `timeout`.
    pub fn timed_out(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "{what}: PostgreSQL did not answer within {} ms (the URL's timeout=)",
                self.settings.timeout.as_millis()
            ),
        )
    }

    /// Runs `f` (statements on a connection) within `timeout`.
    pub async fn within<T>(&self, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out(what)),
        }
    }

    /// A new connection whose driving is left to the caller (to see its notifications
    /// through `Connection::poll_message`); no search path is set. Within
    /// `connect_timeout`.
    pub async fn raw(&self) -> Result<(Client, Connection<Socket, TlsStream>)> {
        let bound = self.settings.connect_timeout;
        match tokio::time::timeout(bound, self.connect()).await {
            Ok(r) => r,
            Err(_) => Err(self.connect_timed_out()),
        }
    }

    async fn connect(&self) -> Result<(Client, Connection<Socket, TlsStream>)> {
        match self.settings.config.connect(self.tls.clone()).await {
            Ok(c) => Ok(c),
            Err(e) => Err(self.connect_error(e).await),
        }
    }

    fn connect_timed_out(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "connecting to {} timed out after {} s (the URL's connect_timeout=, which bounds \
                 the whole connect: name lookup, TCP, TLS, startup and authentication)",
                self.settings.location,
                self.settings.connect_timeout.as_secs()
            ),
        )
    }

    /// A failed connect as the store's error: a host name that cannot be looked up is
    /// named, a TLS failure explained.
    async fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        let location = &self.settings.location;
        let what = format!("connecting to {location}");
        if e.as_db_error().is_some() {
            let mut err = pg_error(&what, e);
            if err.message.contains("no encryption") && err.message.contains("pg_hba.conf") {
                err.message.push_str(&format!(
                    "; the connection was not encrypted (sslmode={}): the server may accept \
                     only TLS connections (hostssl): try sslmode=require",
                    self.settings.tls.mode.name()
                ));
            }
            return err;
        }
        if let Some(why) = tls::explain(&e, &self.settings.tls) {
            return Error::new(ErrorKind::Io, format!("{what}: {why}"));
        }
        for (i, host) in self.settings.config.get_hosts().iter().enumerate() {
            let tokio_postgres::config::Host::Tcp(name) = host else {
                continue;
            };
            if name.parse::<std::net::IpAddr>().is_ok()
                || self.settings.config.get_hostaddrs().get(i).is_some()
            {
                continue;
            }
            if let Err(lookup) = tokio::net::lookup_host((name.as_str(), 0)).await {
                return Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{what}: the name lookup of host '{name}' failed ({lookup}): check the \
                         host name and the DNS"
                    ),
                );
            }
        }
        pg_error(&what, e)
    }

    pub fn schema(&self) -> &str {
        &self.settings.schema
    }

    /// The URL without its password.
    pub fn location(&self) -> &str {
        &self.settings.location
    }

    /// A new connection of its own, driven on the runtime, with JIT compilation off (but
    /// through a pooler: no session state); all within `connect_timeout`.
    pub async fn fresh(&self) -> Result<Client> {
        let bound = self.settings.connect_timeout;
        match tokio::time::timeout(bound, self.fresh_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(self.connect_timed_out()),
        }
    }

    async fn fresh_unbounded(&self) -> Result<Client> {
        let (client, connection) = self.connect().await?;
        *self.live.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let live = self.live.clone();
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the client's next
            // call then fails and the store connects again.
            let _ = connection.await;
            live.ended();
        });
        // No JIT: the store's statements are short, and a plan estimated from tables
        // without statistics (a new store's) was JIT-compiled, 250 ms for a statement that
        // runs in a millisecond. Through a pooler, a setting would stay with a server
        // connection that other clients get: the role's or database's (docs/postgres.md).
        if !self.settings.pooled {
            client
                .batch_execute("set jit to off")
                .await
                .map_err(|e| pg_error("turning JIT compilation off", e))?;
        }
        Ok(client)
    }

    /// The next read client in turn (its slot and itself), connecting (again) if there is
    /// none or its connection is gone.
    pub async fn shared(&self) -> Result<(usize, Arc<Shared>)> {
        let n = self.settings.read_connections;
        let slot = self.next_read.fetch_add(1, Ordering::Relaxed) % n;
        let lost = {
            let slots = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            match &slots[slot] {
                Some(c) if !c.client.is_closed() => return Ok((slot, c.clone())),
                Some(_) => true,
                None => false,
            }
        };
        // Unnamed statements are planned with their parameters at each execution: no
        // generic plan made while a table was small (a sequential scan) stays.
        let client = self.fresh().await?;
        if lost {
            self.counters.reconnected();
        }
        let c = Arc::new(Shared { client });
        self.shared.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some(c.clone());
        Ok((slot, c))
    }

    /// Waits until every connection made by `fresh` has closed its socket, or `timeout`
    /// has passed (a hung server, or a client still held elsewhere, must not hang a close).
    pub fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut n = self.live.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            n = self
                .live
                .changed
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs `sql` on the shared client within `timeout`; a lost connection or a
    /// statement without an answer makes the next call connect again.
    pub async fn query(&self, sql: &str, params: &[&dyn Param], what: &str) -> Result<Vec<Row>> {
        self.query_raw(sql, params, what).await.map_err(|(e, _)| e)
    }

    /// `query`, telling with an error whether sending the statement again is the way on:
    /// no connection could be had, the connection failed (a write's commit is then in
    /// doubt), it did not answer in time, or the server refused it for a unique
    /// violation or a deadlock (another transaction's copy of a key).
    pub async fn query_raw(
        &self,
        sql: &str,
        params: &[&dyn Param],
        what: &str,
    ) -> std::result::Result<Vec<Row>, (Error, bool)> {
        let (slot, client) = self.shared().await.map_err(|e| (self.later(e), true))?;
        let sql = self.qualify(sql);
        match tokio::time::timeout(self.settings.timeout, client.query(&sql, params)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                let again = e.as_db_error().is_none()
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED);
                if e.as_db_error().is_none() {
                    self.forget_read(slot);
                }
                Err((self.later(pg_error(what, e)), again))
            }
            Err(_) => {
                self.forget_read(slot);
                Err((self.later(self.timed_out(what)), true))
            }
        }
    }

    /// Forgets a read client after an error that may have broken it: the next read in
    /// its slot connects again.
    fn forget_read(&self, slot: usize) {
        let mut slots = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if slots[slot].take().is_some() {
            self.counters.reconnected();
        }
    }

    /// Forgets every read client (at close).
    pub fn forget(&self) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .for_each(|c| drop(c.take()));
    }

    /// Connections of the reads now open, for the metrics.
    pub fn read_connections_open(&self) -> u64 {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| c.as_ref().is_some_and(|c| !c.client.is_closed()))
            .count() as u64
    }

    /// Connections made by `fresh` whose socket is open (reads, committer, lifecycle).
    pub fn connections_open(&self) -> u64 {
        *self.live.count.lock().unwrap_or_else(|e| e.into_inner()) as u64
    }
}
