//! TLS to PostgreSQL (docs/postgres.md "TLS"): the tests' own server with `ssl = on`
//! and certificates of a certificate authority this test makes with the openssl command
//! (a server certificate issued for `localhost` only, a client certificate for the role
//! `certuser`, and a second authority that signed neither). Each sslmode, a client
//! certificate that pg_hba.conf requires, a wrong authority, a `hostssl`-only
//! pg_hba.conf; and a server without TLS. Which connections are encrypted is asked of
//! the server (`pg_stat_ssl`), by the store's application_name `evstore/<schema>`.

mod common;

use common::pg::{as_pg, check_error, sql, PgServer};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::{Error, ErrorKind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Makes the certificate authorities and certificates in `dir` (as the server's OS user,
/// so that the server may read its key).
fn make_certificates(dir: &str) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let ca = |name: &str| {
        format!(
            "openssl req -x509 -new {key} -days 3 -subj /CN={name} -keyout {name}.key \
             -out {name}.crt -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        )
    };
    let issue = |name: &str, cn: &str, by: &str, ext: &str| {
        format!(
            "printf \"{ext}\\n\" > {name}.ext && \
             openssl req -new {key} -subj /CN={cn} -keyout {name}.key -out {name}.csr && \
             openssl x509 -req -in {name}.csr -CA {by}.crt -CAkey {by}.key -CAcreateserial \
             -days 3 -extfile {name}.ext -out {name}.crt"
        )
    };
    let leaf = "basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature";
    let script = [
        format!("mkdir -p {dir} && cd {dir}"),
        ca("ca"),
        ca("wrong_ca"),
        issue(
            "server",
            "localhost",
            "ca",
            &format!("subjectAltName=DNS:localhost\\n{leaf}\\nextendedKeyUsage=serverAuth"),
        ),
        issue(
            "client",
            "certuser",
            "ca",
            &format!("{leaf}\\nextendedKeyUsage=clientAuth"),
        ),
        issue(
            "stranger",
            "certuser",
            "wrong_ca",
            &format!("{leaf}\\nextendedKeyUsage=clientAuth"),
        ),
        "chmod 600 *.key".to_owned(),
    ]
    .join(" && ");
    as_pg(&script).unwrap_or_else(|e| panic!("making the test certificates: {e}"));
}

/// Turns TLS on (certificate, key, and the authority that client certificates must
/// chain to) and waits until new connections see it.
fn enable_tls(pg: &PgServer, dir: &str) {
    for setting in [
        format!("ssl_cert_file = '{dir}/server.crt'"),
        format!("ssl_key_file = '{dir}/server.key'"),
        format!("ssl_ca_file = '{dir}/ca.crt'"),
        "ssl = on".to_owned(),
    ] {
        sql(pg.url(), &format!("alter system set {setting}"));
    }
    sql(pg.url(), "select pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql(pg.url(), "show ssl").as_deref() != Some("on") {
        assert!(Instant::now() < deadline, "the server did not turn TLS on");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many of the store's connections (by its application_name) there are, and how
/// many of them are encrypted.
fn encrypted(pg: &PgServer, schema: &str) -> (u64, u64) {
    let row = sql(
        pg.url(),
        &format!(
            "select count(*) || ' ' || count(*) filter (where s.ssl) from pg_stat_activity a \
             join pg_stat_ssl s using (pid) where a.application_name = 'evstore/{schema}'"
        ),
    )
    .unwrap();
    let (all, tls) = row.split_once(' ').unwrap();
    (all.parse().unwrap(), tls.parse().unwrap())
}

/// Opens, appends and reads back one event.
fn open_and_use(url: &str) -> Result<Store, Error> {
    let store = Store::open(url, StoreOptions::default(), Vec::new())?.0;
    let p = store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("E", b"over tls")],
        )?
        .first_position;
    assert_eq!(store.read_event(p)?.payload, b"over tls");
    Ok(store)
}

fn open_err(url: &str) -> Error {
    match Store::open(url, StoreOptions::default(), Vec::new()) {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e,
    }
}

#[test]
fn each_sslmode_client_certificates_a_wrong_authority_and_hostssl_only() {
    let pg = PgServer::start();
    let dir = pg.dir().join("tls").display().to_string();
    make_certificates(&dir);
    enable_tls(&pg, &dir);
    let file = |name: &str| PathBuf::from(&dir).join(name).display().to_string();
    let (ca, wrong_ca) = (file("ca.crt"), file("wrong_ca.crt"));
    let port = pg.port();
    let at = |host: &str, schema: &str, params: &str| {
        format!("postgresql://postgres@{host}:{port}/postgres?schema={schema}&{params}")
    };

    // disable: plain; prefer (the default) and require: TLS, the certificate unchecked.
    for (schema, params, tls) in [
        ("tls_disable", "sslmode=disable".to_owned(), false),
        ("tls_default", String::new(), true),
        ("tls_prefer", "sslmode=prefer".to_owned(), true),
        ("tls_require", "sslmode=require".to_owned(), true),
        // verify-ca checks the chain, not the name: the certificate is for localhost only.
        (
            "tls_verify_ca",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            true,
        ),
        // verify-full checks both: by the name the certificate is issued for.
        (
            "tls_verify_full",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
    ] {
        let host = if schema == "tls_verify_full" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let store =
            open_and_use(&at(host, schema, &params)).unwrap_or_else(|e| panic!("{schema}: {e:?}"));
        let (all, encrypted) = encrypted(&pg, schema);
        assert!(all > 0, "{schema}: no connection of the store");
        assert_eq!(
            encrypted,
            if tls { all } else { 0 },
            "{schema}: {encrypted} of {all}"
        );
        drop(store);
    }

    // verify-full by an address the certificate is not issued for.
    let e = open_err(&at(
        "127.0.0.1",
        "tls_name",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    check_error(
        &e,
        ErrorKind::Io,
        &["not issued for the host name of the URL"],
    );
    // A wrong certificate authority, with verify-ca, verify-full, and with require (which
    // checks the chain when a root certificate is given, as libpq's does).
    for mode in ["verify-ca", "verify-full", "require"] {
        let e = open_err(&at(
            "localhost",
            "tls_wrong",
            &format!("sslmode={mode}&sslrootcert={wrong_ca}"),
        ));
        check_error(
            &e,
            ErrorKind::Io,
            &[&format!(
                "not signed by a certificate authority of sslrootcert={wrong_ca}"
            )],
        );
    }
    // An authority file that holds no certificate.
    let e = open_err(&at(
        "localhost",
        "tls_bad",
        &format!("sslmode=verify-ca&sslrootcert={}", file("ca.ext")),
    ));
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message.contains("ca.ext"), "{}", e.message);

    // A role that pg_hba.conf lets in only with a client certificate of the authority.
    sql(pg.url(), "create role certuser login superuser");
    pg.set_hba(
        "local all all trust\n\
         hostssl all certuser 127.0.0.1/32 cert\n\
         host all all 127.0.0.1/32 trust\n",
    );
    let as_certuser = |params: &str| {
        format!(
            "postgresql://certuser@localhost:{port}/postgres?schema=tls_cert&sslmode=verify-full\
             &sslrootcert={ca}&{params}"
        )
    };
    // sslcert and sslkey of the certificate `cert` with the key `key`.
    let identity = |cert: &str, key: &str| {
        format!(
            "sslcert={}&sslkey={}",
            file(&format!("{cert}.crt")),
            file(&format!("{key}.key"))
        )
    };
    let store = open_and_use(&as_certuser(&identity("client", "client")))
        .expect("certuser with its certificate");
    assert_eq!(encrypted(&pg, "tls_cert").1, encrypted(&pg, "tls_cert").0);
    drop(store);
    let e = open_err(&as_certuser(""));
    assert_eq!(e.kind, ErrorKind::Io, "{e:?}");
    assert!(e.message.contains("certificate"), "{}", e.message);
    let e = open_err(&as_certuser(&identity("stranger", "stranger")));
    check_error(
        &e,
        ErrorKind::Io,
        &["client certificate (sslcert, sslkey) that it trusts"],
    );
    // A certificate with another's key.
    let e = open_err(&as_certuser(&identity("client", "stranger")));
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message.contains("do not go together"), "{}", e.message);

    // hostssl only: a plain connection is refused, saying why; TLS gets in.
    pg.set_hba("local all all trust\nhostssl all all 127.0.0.1/32 trust\n");
    let e = open_err(&at("127.0.0.1", "tls_only", "sslmode=disable"));
    check_error(
        &e,
        ErrorKind::Io,
        &[
            "no pg_hba.conf entry",
            "not encrypted (sslmode=disable)",
            "try sslmode=require",
        ],
    );
    open_and_use(&at("127.0.0.1", "tls_only", "sslmode=require")).expect("TLS gets in");
}

#[test]
fn prefer_falls_back_to_plain_and_require_is_refused_by_a_server_without_tls() {
    let pg = PgServer::start();
    let port = pg.port();
    let url = |schema: &str, mode: &str| {
        format!("postgresql://postgres@127.0.0.1:{port}/postgres?schema={schema}&sslmode={mode}")
    };
    let store = open_and_use(&url("plain_prefer", "prefer")).expect("prefer falls back");
    let (all, tls) = encrypted(&pg, "plain_prefer");
    assert!(all > 0);
    assert_eq!(tls, 0);
    drop(store);
    let e = open_err(&url("plain_require", "require"));
    check_error(
        &e,
        ErrorKind::Io,
        &[
            "does not accept TLS connections",
            "sslmode=require asks for TLS",
        ],
    );
}
