//! Connecting to PostgreSQL: what an open says about a URL that cannot work (no host, no
//! user, a name that does not resolve, bad parameters), and the bounds of every call
//! (docs/postgres.md "Timeouts"): a port that accepts and never answers, a port nobody
//! listens on, a server whose processes are all stopped. The tests assert statuses, not
//! times; each call runs on a thread of its own, and a call still running after a
//! generous limit fails the test (a hang), whatever the bound it was given.

mod common;

use common::pg::{check_error, PgServer};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::{Error, ErrorKind};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// Far above every bound the tests set: a call still running then hangs.
const HANG: Duration = Duration::from_secs(90);

/// Runs `f` on a thread; its result, or a failed test if it is still running after HANG.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what} was still running after {HANG:?}: it hangs"))
}

fn open_err(url: &str) -> Error {
    let url = url.to_owned();
    bounded(&format!("opening {url}"), move || {
        Store::open(&url, StoreOptions::default(), Vec::new())
            .err()
            .expect("the open succeeded")
    })
}

#[test]
fn a_url_without_a_host_or_a_user_is_an_invalid_argument_naming_what_is_missing() {
    for url in [
        "postgresql://",
        "postgresql:///postgres",
        "postgres://postgres@/db",
    ] {
        let e = open_err(url);
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{url}: {e:?}");
        assert!(e.message.contains("names no host"), "{url}: {}", e.message);
    }
    let e = open_err("postgresql://127.0.0.1:5432/postgres");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message.contains("names no user"), "{}", e.message);
}

#[test]
fn bad_connection_parameters_are_invalid_arguments_naming_them() {
    for (param, named) in [
        ("timeout=0", "timeout=0"),
        ("timeout=soon", "timeout=soon"),
        ("connect_timeout=0", "connect_timeout=0"),
        ("tcp_user_timeout=-1", "tcp_user_timeout=-1"),
        ("keepalives_count=0", "keepalives_count=0"),
        ("sslmode=allow", "sslmode=allow"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        ("sslcert=/nonexistent/c.pem", "without sslkey"),
        ("migrate=maybe", "migrate=maybe"),
        ("sslrootcert=%zz", "%zz"),
    ] {
        let e = open_err(&format!(
            "postgresql://postgres@127.0.0.1:1/postgres?{param}"
        ));
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{param}: {e:?}");
        assert!(e.message.contains(named), "{param}: {}", e.message);
    }
}

#[test]
fn a_host_name_that_does_not_resolve_names_the_name_lookup() {
    // `.invalid` never resolves (RFC 2606).
    let e = open_err("postgresql://postgres@no-such-host.invalid:5432/postgres?connect_timeout=30");
    check_error(
        &e,
        ErrorKind::Unavailable,
        &["name lookup of host 'no-such-host.invalid' failed"],
    );
    assert!(!e.message.contains("reconnect"), "{}", e.message);
    assert!(!e.message.contains("connects again"), "{}", e.message);
}

#[test]
fn nothing_listening_is_unavailable_and_an_open_does_not_promise_a_reconnect() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is gone: the port refuses connections.
    let e = open_err(&format!("postgresql://postgres@127.0.0.1:{port}/postgres"));
    check_error(&e, ErrorKind::Unavailable, &["connecting to postgresql://"]);
    assert!(!e.message.contains("reconnect"), "{}", e.message);
    assert!(!e.message.contains("connects again"), "{}", e.message);
}

/// A port that accepts TCP connections and never says a word; the accepted sockets are
/// held open until the returned sender is dropped.
fn silent_port() -> (u16, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = mpsc::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Err(mpsc::TryRecvError::Empty) = stopped.try_recv() {
            match listener.accept() {
                Ok((socket, _)) => held.push(socket),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, stop)
}

#[test]
fn an_open_of_a_port_that_never_answers_is_unavailable_within_connect_timeout() {
    let (port, _stop) = silent_port();
    for mode in ["disable", "prefer", "require"] {
        let e = open_err(&format!(
            "postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=2&sslmode={mode}"
        ));
        check_error(
            &e,
            ErrorKind::Unavailable,
            &["timed out after 2 s", "connect_timeout"],
        );
    }
}

/// A store opened for writing, to be shared with the threads of `append`.
fn open(url: &str) -> std::sync::Arc<Store> {
    std::sync::Arc::new(
        Store::open(url, StoreOptions::default(), Vec::new())
            .unwrap()
            .0,
    )
}

fn append(
    store: &std::sync::Arc<Store>,
    payload: &str,
    id: Option<[u8; 16]>,
) -> Result<u64, Error> {
    let (store, payload) = (store.clone(), payload.to_owned());
    bounded("an append", move || {
        let mut e = EventInput::new("E", payload.as_bytes());
        e.id = id;
        store
            .append("s", ExpectedVersion::Any, &[e])
            .map(|r| r.first_position)
    })
}

/// Every event's payload, in position order.
fn payloads(store: &Store) -> Vec<String> {
    let mut c = store.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(String::from_utf8(e.payload.to_vec()).unwrap());
    }
    out
}

#[test]
fn calls_on_a_server_whose_processes_are_stopped_are_unavailable_never_ok() {
    let pg = PgServer::start();
    let url = format!("{}?schema=frozen&timeout=2000&connect_timeout=2", pg.url());
    let store = open(&url);
    assert_eq!(append(&store, "before", None).unwrap(), 0);
    let id = [7u8; 16];
    let stopped = pg.stop_processes();
    // Sent on the committer's connection, never answered: in doubt, and with ids a
    // retry settles it.
    let sent = append(&store, "in doubt", Some(id));
    // The committer's connection was dropped: the next append waits for a connection
    // that never comes, and is not sent.
    let unsent = append(&store, "not sent", None);
    let s = store.clone();
    let read = bounded("a read", move || s.next_position());
    drop(stopped);
    let e = sent.unwrap_err();
    check_error(
        &e,
        ErrorKind::Unavailable,
        &[
            "did not answer within 2000 ms",
            "commit is in doubt",
            "same event ids",
        ],
    );
    let e = unsent.unwrap_err();
    check_error(
        &e,
        ErrorKind::Unavailable,
        &["not sent and nothing was stored"],
    );
    let e = read.unwrap_err();
    check_error(
        &e,
        ErrorKind::Unavailable,
        &["did not answer within 2000 ms"],
    );
    // Resumed, the stopped backend may still run the append it had been sent; the retry
    // with the same id settles it either way: stored once.
    let p = append(&store, "in doubt", Some(id)).expect("the retry after the server resumed");
    let all = payloads(&store);
    assert_eq!(
        all.iter().filter(|p| *p == "in doubt").count(),
        1,
        "{all:?}"
    );
    assert!(!all.contains(&"not sent".to_owned()), "{all:?}");
    assert_eq!(all[p as usize], "in doubt");
    assert_eq!(append(&store, "after", None).unwrap(), all.len() as u64);
}

#[test]
fn an_append_without_ids_whose_answer_never_came_says_its_commit_is_in_doubt() {
    let pg = PgServer::start();
    let url = format!("{}?schema=frozen_plain&timeout=1500", pg.url());
    let store = open(&url);
    append(&store, "before", None).unwrap();
    let stopped = pg.stop_processes();
    let sent = append(&store, "maybe", None);
    drop(stopped);
    let e = sent.unwrap_err();
    check_error(
        &e,
        ErrorKind::Io,
        &["did not answer within 1500 ms", "may or may not be stored"],
    );
    // Whether or not the resumed backend stored it, the store goes on, dense.
    let p = append(&store, "after", None).expect("an append after the server resumed");
    let all = payloads(&store);
    assert!(matches!(p, 1 | 2), "{p}: {all:?}");
    assert_eq!(all.len() as u64, p + 1);
    assert!(all.iter().filter(|p| *p == "maybe").count() <= 1, "{all:?}");
}

/// Continues a stopped process when dropped (also when the test fails).
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a backend of this test's server.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn an_append_whose_backend_stopped_is_unavailable_and_the_committer_goes_on_without_it() {
    let pg = PgServer::start();
    let url = format!("{}?schema=one_stopped&timeout=2000", pg.url());
    let store = open(&url);
    append(&store, "before", None).unwrap();
    // The backend of the committer's connection (its last statement was the notification
    // after the append call).
    let pid: i32 = common::pg::sql(
        pg.url(),
        "select pid from pg_stat_activity where application_name = 'evstore/one_stopped' \
         and query like '%pg_notify(%'",
    )
    .expect("the committer's backend")
    .parse()
    .unwrap();
    // SAFETY: kill(2) on that backend; `Continue` resumes it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let resume = Continue(pid);
    let id = [5u8; 16];
    let e = append(&store, "stuck", Some(id)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    assert!(e.message.contains("commit is in doubt"), "{}", e.message);
    // The committer gave that connection up at the same bound: the next appends go out on
    // a new one while the old backend is still stopped.
    let p = append(&store, "on a new connection", None).expect("an append on a new connection");
    let retried = append(&store, "stuck", Some(id)).expect("the retry with the same id");
    drop(resume);
    let all = payloads(&store);
    assert_eq!(all[p as usize], "on a new connection");
    assert_eq!(all[retried as usize], "stuck");
    // The resumed backend may run the call it had been sent: its id is stored already.
    std::thread::sleep(Duration::from_millis(500));
    let all = payloads(&store);
    assert_eq!(all.iter().filter(|p| *p == "stuck").count(), 1, "{all:?}");
}

#[test]
fn the_stores_connections_probe_an_idle_server_within_seconds() {
    let pg = PgServer::start();
    let url = format!("{}?schema=keepalive", pg.url());
    let store = open(&url);
    append(&store, "x", None).unwrap();
    // Idle now: the kernel's keepalive timer runs on each of the store's sockets to the
    // server (/proc/net/tcp: timer 2, its expiry in clock ticks), at most
    // keepalives_idle (10 s) away; without keepalives there is no timer, and with the
    // kernel's defaults it is two hours away.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let port = format!(":{:04X}", pg.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let timers: Vec<(u32, u64)> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[2].ends_with(&port) && f[3] == "01")
        .map(|f| {
            let (kind, when) = f[5].split_once(':').unwrap();
            (
                u32::from_str_radix(kind, 16).unwrap(),
                u64::from_str_radix(when, 16).unwrap(),
            )
        })
        .collect();
    assert!(
        !timers.is_empty(),
        "no connection of the store to port {}",
        pg.port()
    );
    for (kind, when) in timers {
        assert_eq!(kind, 2, "a connection without a keepalive timer");
        assert!(
            when <= 10 * ticks,
            "the next keepalive probe is {when} ticks away"
        );
    }
    drop(store);
}
