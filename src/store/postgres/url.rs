//! The URL of a PostgreSQL store: libpq's `postgresql://user:password@host:port/db?...`,
//! with the parameters the store reads itself taken out (docs/postgres.md "The URL"):
//!
//! - `schema` (default `evstore`), `poll_ms` (default 1000): the store's schema, and how
//!   often a waiter woken by notifications reads the head anyway;
//! - `connect_timeout` (whole seconds, default 10): the bound of a whole connect (name
//!   lookup, TCP, TLS, startup, authentication, the session's setup), where libpq's
//!   bounds each TCP attempt;
//! - `timeout` (milliseconds, default 30000): the bound of each statement, and of an
//!   append from its call to its answer;
//! - `tcp_user_timeout` (milliseconds, libpq's unit; default: `timeout`; 0: the
//!   system's) and `keepalives_idle`/`keepalives_interval` (seconds, defaults 10 and 5)
//!   with `keepalives_count` (default 3): a connection whose peer vanished (a partition)
//!   ends within them instead of the kernel's ~15 minutes;
//! - `sslmode`, `sslrootcert`, `sslcert`, `sslkey`: TLS (`tls`);
//! - `pooler` (`transaction`, or `none`, the default): the host is a connection pooler in
//!   transaction mode (pgbouncer's `pool_mode = transaction`): the store sets nothing in
//!   a session (statements are schema-qualified and unnamed in every mode) and does not
//!   LISTEN (waiters poll the head): docs/postgres.md "Poolers";
//! - `read_connections` (1 to 64, default 1): the connections a handle's reads use in
//!   turn (each made at its first use); beside them a writable handle has one for its
//!   committer, one for lifecycle entries once it writes one, and one listening once it
//!   waits (docs/postgres.md "Operations");
//! - `migrate` (`true`/`false`, default `true`): whether a writable open may create or
//!   migrate the schema (`false`: an open that needs DDL is refused, naming
//!   `evsctl schema --sql`).
//!
//! The rest goes to tokio-postgres as it is; `application_name` defaults to
//! `evstore/<schema>`.

use super::tls::{SslMode, TlsSettings};
use crate::error::{Error, Result};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::Config;

/// The schema used when the URL names none.
const DEFAULT_SCHEMA: &str = "evstore";

/// The longest schema name: the notification channel is `evs_` and the name, and
/// PostgreSQL refuses channel names longer than 63 bytes.
const MAX_SCHEMA: usize = 59;

/// How often a waiting subscriber reads the head while notifications wake it (a safety
/// net for a lost notification), unless the URL's `poll_ms` says otherwise.
const DEFAULT_LISTEN_POLL: Duration = Duration::from_secs(1);

/// The most read connections a handle may have.
const MAX_READ_CONNECTIONS: usize = 64;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(30_000);
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_KEEPALIVES_COUNT: u32 = 3;

/// What the URL says.
pub struct Settings {
    pub config: Config,
    pub schema: String,
    /// The URL without its password, for messages.
    pub location: String,
    pub listen_poll: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub tls: TlsSettings,
    pub migrate: bool,
    /// `pooler=transaction`.
    pub pooled: bool,
    pub read_connections: usize,
}

/// The URL without its password (in the user part or a `password=` parameter).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let base = match base.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{name}:***@{host}")
        }
        _ => base.to_owned(),
    };
    match query {
        None => format!("{scheme}://{base}"),
        Some(q) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{scheme}://{base}?{}", parts.join("&"))
        }
    }
}

/// A URL component with its %XX escapes decoded (a path in `sslrootcert`, say).
fn decode(text: &str, location: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => {
                    return Err(Error::invalid(format!(
                        "'{text}' in {location} has a '%' not followed by two hex digits"
                    )))
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid(format!("'{text}' in {location} is not UTF-8 once decoded")))
}

/// A whole number parameter in `min..`; `what` names its unit for the message.
fn number(key: &str, value: &str, min: u64, unit: &str, location: &str) -> Result<u64> {
    match value.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(Error::invalid(format!(
            "{key}={value} in {location} is not a whole number of {unit} >= {min}"
        ))),
    }
}

impl Settings {
    /// Parses a store URL; every bad parameter is `InvalidArgument` naming it.
    pub fn parse(url: &str) -> Result<Settings> {
        let location = without_password(url);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = DEFAULT_SCHEMA.to_owned();
        let mut listen_poll = DEFAULT_LISTEN_POLL;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut user_timeout = None;
        let mut keepalive_count = None;
        let mut tls = TlsSettings::default();
        let mut migrate = true;
        let mut pooled = false;
        let mut read_connections = 1;
        let mut given = Vec::new();
        let mut rest = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = part.split_once('=').unwrap_or((part, ""));
            let value = || decode(raw, &location);
            match key {
                "schema" => schema = value()?,
                "poll_ms" => {
                    listen_poll =
                        Duration::from_millis(number(key, raw, 1, "milliseconds", &location)?)
                }
                "connect_timeout" => {
                    connect_timeout =
                        Duration::from_secs(number(key, raw, 1, "seconds", &location)?)
                }
                "timeout" => {
                    timeout = Duration::from_millis(number(key, raw, 1, "milliseconds", &location)?)
                }
                "tcp_user_timeout" => {
                    user_timeout = Some(Duration::from_millis(number(
                        key,
                        raw,
                        0,
                        "milliseconds",
                        &location,
                    )?))
                }
                "keepalives_count" | "keepalives_retries" => {
                    keepalive_count = Some(number(key, raw, 1, "probes", &location)? as u32)
                }
                "sslmode" => tls.mode = SslMode::parse(&value()?, &location)?,
                "sslrootcert" => tls.root_cert = Some(value()?),
                "sslcert" => tls.cert = Some(value()?),
                "sslkey" => tls.key = Some(value()?),
                "read_connections" => {
                    read_connections = number(key, raw, 1, "connections", &location)? as usize;
                    if read_connections > MAX_READ_CONNECTIONS {
                        return Err(Error::invalid(format!(
                            "read_connections={raw} in {location} is more than \
                             {MAX_READ_CONNECTIONS}"
                        )));
                    }
                }
                "pooler" => {
                    pooled = match raw {
                        "transaction" => true,
                        "none" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "pooler={raw} in {location} is neither transaction nor none"
                            )))
                        }
                    }
                }
                "migrate" => {
                    migrate = match raw {
                        "true" | "on" | "1" => true,
                        "false" | "off" | "0" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "migrate={raw} in {location} is neither true nor false"
                            )))
                        }
                    }
                }
                _ => {
                    given.push(key.to_owned());
                    rest.push(part);
                }
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
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(Error::invalid(format!(
                "the URL {location} names no host: give one, as in \
                 postgresql://user@HOST:5432/database (or host=/socket/folder)"
            )));
        }
        if config.get_user().is_none() {
            return Err(Error::invalid(format!(
                "the URL {location} names no user: give one, as in \
                 postgresql://USER@host:5432/database"
            )));
        }
        if config.get_application_name().is_none() {
            config.application_name(format!("evstore/{schema}"));
        }
        config.ssl_mode(tls.mode.wire());
        // tokio-postgres bounds each TCP connect with it; the store bounds the whole connect.
        config.connect_timeout(connect_timeout);
        config.tcp_user_timeout(user_timeout.unwrap_or(timeout));
        let has = |k: &str| given.iter().any(|g| g == k);
        if !has("keepalives_idle") {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if !has("keepalives_interval") {
            config.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        config.keepalives_retries(keepalive_count.unwrap_or(DEFAULT_KEEPALIVES_COUNT));
        Ok(Settings {
            config,
            schema,
            location,
            listen_poll,
            connect_timeout,
            timeout,
            tls,
            migrate,
            pooled,
            read_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_the_user_part_and_the_parameters() {
        assert_eq!(
            without_password("postgresql://u:secret@h:1/d?password=x&schema=s"),
            "postgresql://u:***@h:1/d?password=***&schema=s"
        );
        assert_eq!(without_password("postgresql://h/d"), "postgresql://h/d");
    }

    #[test]
    fn escapes_are_decoded_and_bad_ones_refused() {
        assert_eq!(decode("/a%20b/c.pem", "L").unwrap(), "/a b/c.pem");
        assert!(decode("50%", "L").is_err());
        assert!(decode("%zz", "L").is_err());
    }
}
