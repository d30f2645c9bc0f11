//! The SQL of a PostgreSQL store's schema, for a DBA to review and run before the
//! application opens the store with `migrate=false` (docs/postgres.md "DBAs").

use super::args::{out_arg, str_arg, write_out};
use super::status::*;
use crate::error::Error;
use std::ffi::{c_char, CString};

/// Writes to `*out_sql` the SQL script that creates the PostgreSQL schema of the store at
/// `url` (a `postgresql://` URL as `evs_open` takes it, `schema=` included), or migrates
/// it to this library's schema version: the very statements a writable `evs_open` would
/// run, as one transaction under the schema's lock, ending with the grants the URL's user
/// needs, with comments saying what it does. A schema already at this version gives a
/// script of comments only. Nothing is executed: it connects only to read the schema's
/// version. Run the script (`psql -v ON_ERROR_STOP=1 -f FILE`) as a role that may create
/// schemas; the application's role then needs no CREATE right, and its URL can say
/// `migrate=false` so that an open never runs DDL. `evsctl schema --sql URL` prints it.
///
/// Ownership: `url` stays the caller's; `*out_sql` belongs to the caller, who frees it
/// with `evs_string_free`. Thread safety: any thread; `evs_shutdown` meanwhile returns
/// EVS_ERR_BUSY.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL url/out_sql, bad UTF-8, not a
/// `postgresql://` URL, a URL parameter that is not valid); EVS_ERR_UNAVAILABLE (the
/// server cannot be reached, or did not answer within `connect_timeout`/`timeout`);
/// EVS_ERR_IO (the server refused: authentication, TLS, rights); EVS_ERR_CORRUPT (the
/// schema's version is newer than this library's, or not valid); EVS_ERR_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn evs_schema_sql(
    url: *const c_char,
    out_sql: *mut *mut c_char,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract: a NUL-terminated string or NULL.
        let url = unsafe { str_arg(url, "url") }?;
        let out = out_arg(out_sql, "out_sql")?;
        if !crate::store::is_postgres_url(url) {
            return Err(Error::invalid(format!(
                "evs_schema_sql needs a postgresql:// URL, not '{url}': a file store has no SQL \
                 schema"
            )));
        }
        // Counted as an open store while it runs: evs_shutdown must not stop the runtime
        // it waits on.
        super::runtime::store_opened();
        let sql = crate::store::schema_sql(url);
        super::runtime::store_closed();
        let c = CString::new(sql?.replace('\0', "")).unwrap_or_default();
        write_out(out, c.into_raw());
        Ok(EVS_OK)
    })
}
