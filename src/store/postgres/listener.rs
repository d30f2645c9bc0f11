//! Wake-ups of waiting subscribers: the highest head seen, and one listening connection
//! per store that hears the `notify` every committer (of any process) sends after its
//! commits. It listens from the store's first wait on (a handle that never waits costs
//! the server nothing per commit). A hot standby cannot LISTEN: there, and while the
//! listener is disconnected, waiters poll the head.

use super::conn::{pg_error, Conn};
use crate::error::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

/// The wait before the listener connects again after losing its connection.
const RECONNECT: Duration = Duration::from_millis(500);

/// The channel the append function notifies and listeners listen on.
pub fn channel(schema: &str) -> String {
    format!("evs_{schema}")
}

/// What waiters and the listener share.
pub struct Wakeup {
    /// The highest head seen.
    seen: Mutex<u64>,
    /// The highest count of removing commits (`head.changes`) seen: a cursor holding
    /// events read under a lower count reads them again (docs/postgres.md "Lifecycle").
    changes: AtomicU64,
    cv: Condvar,
    /// True while the listener is connected and listening: notifications keep `seen`
    /// current.
    listening: AtomicBool,
    /// Set by a notification without a head in its payload: waiters read the head.
    stale: AtomicBool,
    closed: AtomicBool,
    /// The listener's client; dropping it ends its connection (at close).
    client: Mutex<Option<Client>>,
    /// Connection tasks still running: `close` waits for them, so that the store's
    /// sockets are closed when `evs_close` returns (no descriptor outlives the store).
    drivers: Mutex<usize>,
    drivers_done: Condvar,
}

impl Wakeup {
    pub fn new() -> Arc<Wakeup> {
        Arc::new(Wakeup {
            seen: Mutex::new(0),
            changes: AtomicU64::new(0),
            cv: Condvar::new(),
            listening: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            client: Mutex::new(None),
            drivers: Mutex::new(0),
            drivers_done: Condvar::new(),
        })
    }

    /// Records a head seen and wakes waiters if it moved.
    pub fn saw(&self, next: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if next > *seen {
            *seen = next;
            self.cv.notify_all();
        }
    }

    /// The highest head seen.
    pub fn seen(&self) -> u64 {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a count of removing commits seen (from a read, an append's answer, a
    /// lifecycle entry, or a notification).
    pub fn saw_changes(&self, changes: u64) {
        self.changes.fetch_max(changes, Ordering::AcqRel);
    }

    /// The highest count of removing commits seen.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Tells (once) whether a notification asked waiters to read the head.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::AcqRel)
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        // Waiters sleeping on the long interval must learn that they should poll now.
        self.wake_all();
    }

    /// Waits until the head seen passes `seen` or `timeout` passes; returns the head seen.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *g > seen || timeout.is_zero() {
            return *g;
        }
        let (g, _) = self
            .cv
            .wait_timeout(g, timeout)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    pub fn wake_all(&self) {
        let _g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Stops the listener and wakes every waiter.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.set_listening(false);
        // Dropping the client ends the connection task, which closes the socket; wait
        // for that (bounded: a hung server must not hang the caller's close).
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut n = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            n = self
                .drivers_done
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Counts a running connection task (or a listener about to be started: see `start`).
    pub fn driver_started(&self) {
        *self.drivers.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn driver_ended(&self) {
        let mut n = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.drivers_done.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Connects the listener and starts listening (it reads the head once it listens, so
/// what was committed before is seen too), then keeps it listening on the runtime until
/// the store closes, connecting again when the connection is lost. On a hot standby it does not
/// listen: waiters poll there.
///
/// The caller counts the start as a running connection task first (`driver_started`), so
/// that a close meanwhile waits for the connection it makes; the count is given back here
/// once the first connection is made (it counts itself) or has failed.
pub async fn start(conn: Arc<Conn>, wake: Arc<Wakeup>) {
    let first = session(&conn, &wake).await;
    wake.driver_ended();
    tokio::spawn(async move {
        let mut current = first;
        loop {
            match current {
                Ok(None) => return,
                Ok(Some(driver)) => {
                    // Ends when the connection is lost, or when close drops the client.
                    let _ = driver.await;
                }
                Err(_) => {}
            }
            wake.set_listening(false);
            if wake.is_closed() {
                return;
            }
            tokio::time::sleep(RECONNECT).await;
            conn.counters.reconnected();
            current = session(&conn, &wake).await;
        }
    });
}

/// One connection: LISTEN, read the head (what was committed before the LISTEN took
/// effect), then a task hands every notification's head to the waiters until the
/// connection ends; `None` on a standby or once the store is closed.
async fn session(conn: &Conn, wake: &Arc<Wakeup>) -> Result<Option<JoinHandle<()>>> {
    let (client, mut connection) = conn.raw().await?;
    let w = wake.clone();
    wake.driver_started();
    let driver = tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = m {
                // The payload is the head after the notifier's commit and the count of
                // removing commits; any other payload (another writer's plain `notify`)
                // still means "something was committed": waiters then read the head.
                match parse_payload(n.payload()) {
                    Some((next, changes)) => {
                        // Changes first: a waiter woken by the head then sees them.
                        w.saw_changes(changes);
                        w.saw(next);
                    }
                    None => {
                        w.stale.store(true, Ordering::Release);
                        w.wake_all();
                    }
                }
            }
        }
        drop(connection);
        w.driver_ended();
    });
    // Its statements within `timeout` (a server that stops answering now must not hold
    // the listener: it connects again).
    let setup = async {
        let standby: bool = client
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .map_err(|e| pg_error("asking whether the server is a standby", e))?
            .get(0);
        if standby {
            return Ok(None);
        }
        client
            .batch_execute(&format!("listen \"{}\"", channel(conn.schema())))
            .await
            .map_err(|e| pg_error("listening for appends", e))?;
        let row = client
            .query_one(
                // Named in pg_stat_activity (the reads' connections read the head too).
                &conn.qualify(&format!(
                    "/* evstore listener */ select {}, hd.changes from @.head hd",
                    super::cursor::DURABLE_NEXT
                )),
                &[],
            )
            .await
            .map_err(|e| pg_error("reading the head", e))?;
        Ok(Some(row))
    };
    let Some(row) = conn.within("starting to listen for appends", setup).await? else {
        return Ok(None);
    };
    wake.saw_changes(row.get::<_, i64>(1) as u64);
    wake.saw(row.get::<_, i64>(0) as u64);
    {
        let mut slot = wake.client.lock().unwrap_or_else(|e| e.into_inner());
        if wake.is_closed() {
            return Ok(None);
        }
        *slot = Some(client);
    }
    wake.set_listening(true);
    Ok(Some(driver))
}

/// The notification's payload: "<head> <changes>" (the functions of schema version 4).
fn parse_payload(payload: &str) -> Option<(u64, u64)> {
    let (next, changes) = payload.split_once(' ')?;
    Some((next.parse().ok()?, changes.parse().ok()?))
}
