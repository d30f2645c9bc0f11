//! Connections to the server: the URL (with its `schema` parameter), one shared client
//! for reads that is replaced when its connection is lost (the store reconnects by
//! itself), and how PostgreSQL's errors become the store's.

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Connection, NoTls, Row, Socket, Statement};

/// The schema used when the URL names none.
const DEFAULT_SCHEMA: &str = "evstore";

/// The longest schema name: the notification channel is `evs_` and the name, and
/// PostgreSQL refuses channel names longer than 63 bytes.
const MAX_SCHEMA: usize = 59;

/// How often a waiting subscriber reads the head while notifications wake it (a safety
/// net for a lost notification), unless the URL's `poll_ms` says otherwise.
const DEFAULT_LISTEN_POLL: Duration = Duration::from_secs(1);

/// Tells whether `location` names a PostgreSQL store rather than a directory.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// A PostgreSQL error as the store's: always `Io` (the server refused, or the connection
/// is gone), with what was being done and what the server said.
pub fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        return Error::new(
            ErrorKind::Io,
            format!(
                "{what}: PostgreSQL said: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
        );
    }
    Error::new(
        ErrorKind::Io,
        format!("{what}: the connection to PostgreSQL failed or was lost ({e}); the store reconnects on the next call"),
    )
}

/// Where to connect and which schema to use, with one reusable client.
pub struct Conn {
    config: Config,
    schema: String,
    location: String,
    listen_poll: Duration,
    shared: Mutex<Option<Arc<Shared>>>,
    /// Connections made by `fresh` whose socket is still open: `wait_closed` waits for
    /// them, so that no descriptor outlives the store's close.
    live: Arc<Live>,
}

/// The shared client, with the statements prepared on it (a query then costs one round
/// trip, not two). The store's queries come from a fixed set of texts: the map stays small.
pub struct Shared {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Shared {
    /// Runs `sql` as a statement prepared on this connection (prepared on first use).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let known = self
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        let statement = match known {
            Some(s) => s,
            None => {
                let s = self.client.prepare(sql).await?;
                self.statements
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sql.to_owned(), s.clone());
                s
            }
        };
        self.client.query(&statement, params).await
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

/// The URL without its password, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl Conn {
    /// Parses a libpq-style URL; `schema=NAME` (lower-case letters, digits, `_`, at most 59
    /// bytes, not starting with a digit) and `poll_ms=N` (the safety-net interval of
    /// waiters woken by notifications) are taken out, the rest goes to tokio-postgres.
    pub fn parse(url: &str) -> Result<Conn> {
        let location = without_password(url);
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut schema = DEFAULT_SCHEMA.to_owned();
        let mut listen_poll = DEFAULT_LISTEN_POLL;
        let mut rest = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            if let Some(s) = part.strip_prefix("schema=") {
                schema = s.to_owned();
            } else if let Some(ms) = part.strip_prefix("poll_ms=") {
                listen_poll = match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => {
                        return Err(Error::invalid(format!(
                            "poll_ms={ms} in {location} is not a positive number of milliseconds"
                        )))
                    }
                };
            } else {
                rest.push(part);
            }
        }
        let valid = !schema.is_empty()
            && schema.len() <= MAX_SCHEMA
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::invalid(format!(
                "the schema '{schema}' in {location} is not a plain PostgreSQL name \
                 (lower-case letters, digits and '_', at most {MAX_SCHEMA} bytes)"
            )));
        }
        let cleaned = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config = Config::from_str(&cleaned)
            .map_err(|e| Error::invalid(format!("the URL {location} is not valid: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("evstore");
        }
        Ok(Conn {
            config,
            schema,
            location,
            listen_poll,
            shared: Mutex::new(None),
            live: Arc::default(),
        })
    }

    /// How often waiters read the head while notifications wake them.
    pub fn listen_poll(&self) -> Duration {
        self.listen_poll
    }

    /// A new connection whose driving is left to the caller (to see its notifications
    /// through `Connection::poll_message`); no search path is set.
    pub async fn raw(&self) -> Result<(Client, Connection<Socket, NoTlsStream>)> {
        self.config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&format!("connecting to {}", self.location), e))
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A new connection of its own, driven on the runtime, with the store's schema first
    /// on its search path and JIT compilation off.
    pub async fn fresh(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&format!("connecting to {}", self.location), e))?;
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
        // runs in a millisecond.
        client
            .batch_execute(&format!(
                "set search_path to \"{}\"; set jit to off",
                self.schema
            ))
            .await
            .map_err(|e| pg_error("setting the search path", e))?;
        Ok(client)
    }

    /// The shared client, connecting (again) if there is none or its connection is gone.
    pub async fn shared(&self) -> Result<Arc<Shared>> {
        if let Some(c) = self
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if !c.client.is_closed() {
                return Ok(c.clone());
            }
        }
        let client = self.fresh().await?;
        // Prepared statements, each planned with its parameters at every execution: a
        // generic plan made while the table was small (a sequential scan) would stay.
        client
            .batch_execute("set plan_cache_mode to force_custom_plan")
            .await
            .map_err(|e| pg_error("setting the plan cache mode", e))?;
        let c = Arc::new(Shared {
            client,
            statements: Mutex::default(),
        });
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
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

    /// Forgets the shared client (after an error that may have broken it).
    pub fn forget(&self) {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
