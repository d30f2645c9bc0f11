//! The PostgreSQL test harness itself: a server starts, takes durable commits, stops, and
//! leaves nothing behind; a server that cannot start is an error, not a skip.

mod common;

use common::pg::PgServer;
use tokio_postgres::NoTls;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_server_starts_answers_and_stops() {
    let pg = PgServer::start();
    let url = pg.url().to_string();
    let dir = pg.dir().to_path_buf();
    assert!(url.starts_with("postgresql://postgres@127.0.0.1:"), "{url}");
    assert!(dir.join("data/PG_VERSION").is_file(), "{}", dir.display());

    let rt = runtime();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let conn = tokio::spawn(conn);
        let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        for (setting, want) in [
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
            ("listen_addresses", "127.0.0.1"),
        ] {
            let got: String = client
                .query_one(&format!("show {setting}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(got, want, "{setting}");
        }
        // The Unix socket is in the server's own folder.
        let sockets: String = client
            .query_one("show unix_socket_directories", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sockets, dir.to_str().unwrap());
        client
            .batch_execute("create table t (x bigint primary key); insert into t values (7)")
            .await
            .unwrap();
        let x: i64 = client
            .query_one("select x from t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(x, 7);
        drop(client);
        conn.await.unwrap().unwrap();
    });

    pg.stop().unwrap();
    assert!(!dir.exists(), "{} is still there", dir.display());
    // Nothing listens on that port any more.
    let refused = rt.block_on(tokio_postgres::connect(&url, NoTls));
    assert!(refused.is_err(), "the server still answers after stop");
}

#[test]
fn two_servers_run_side_by_side() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.url(), b.url());
    assert_ne!(a.dir(), b.dir());
    let b_dir = b.dir().to_path_buf();
    drop(b);
    assert!(!b_dir.exists());
    a.stop().unwrap();
}

#[test]
fn a_server_that_cannot_start_is_an_error() {
    let err = match PgServer::start_with_conf("shared_buffers = 'not a size'") {
        Ok(s) => {
            let url = s.url().to_string();
            s.stop().unwrap();
            panic!("a server with a broken configuration started: {url}");
        }
        Err(e) => e,
    };
    assert!(err.contains("shared_buffers"), "{err}");
}
