//! The store's tables and its append function in PostgreSQL, created on first open and
//! versioned in `meta` (design A of docs/postgres.md: one `head` row hands out positions
//! under its row lock, so positions are dense and committed in order).

use super::conn::{pg_error, Conn};
use crate::error::{Error, ErrorKind, Result};

/// The schema version this library writes and reads. 1: the first; 2: `append` also
/// returns each written request's stream versions, and writes a batch's events with one
/// insert (same tables, same arguments: a version-1 store is migrated on open).
const SCHEMA_VERSION: i64 = 2;

/// Creates the tables (the function comes from `APPEND`). `ts` is microseconds since the
/// Unix epoch, never decreasing along `pos`; events without a stream have stream '' and
/// version 0.
const CREATE: &str = "
create table meta (key text primary key, value text not null);
insert into meta values ('schema_version', '2');
create table head (next bigint not null, last_ts bigint not null);
insert into head values (0, 0);
create table streams (name text primary key, version bigint not null, first_pos bigint not null);
create table events (
  pos bigint primary key,
  stream text not null,
  version bigint not null,
  ts bigint not null,
  type text not null,
  schema_version int not null,
  event_id bytea,
  metadata bytea not null,
  data bytea not null
);
create unique index events_stream_version on events (stream, version) where stream <> '';
create unique index events_event_id on events (event_id) where event_id is not null;
create index events_ts on events using brin (ts);
";

/// From version 1 to 2: the tables are the same; the function returns one more column
/// (a version-1 library selecting `res, entry, actual` still works with it).
const MIGRATE_1_TO_2: &str = "
drop function append(int[], text[], bigint[], int[], bytea[], text[], int[], bytea[], bytea[]);
update meta set value = '2' where key = 'schema_version';
";

/// The append function (version 2). One call appends a batch of requests (each one evs
/// append, possibly over several streams). Per request one row: res >= 0 its first
/// position (written; versions: each entry's stream version after it, 0 for events
/// without a stream); -1 a wrong expected version (entry: which entry of the request,
/// 1-based; actual: the stream's version, -1 none); -2 a retry, every event's id stored
/// (actual: the lowest stored position); -3 some ids stored, not all (nothing written).
/// Expected: >= 0 exact, -1 any, -2 no stream, -3 exists.
///
/// The serialized part (from taking `head` to the commit) is kept short: ids are looked
/// up per request only when some id of the batch is stored; a request of one stream
/// checks and advances its version in one statement; every event of the batch is written
/// by one insert at the end, from arrays aligned with the event arrays (`_pb`/`_vb`:
/// position/version minus the event's index; null: not written).
const APPEND: &str = "
create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                       e_id bytea[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[])
returns table (res bigint, entry int, actual bigint, versions bigint[])
language plpgsql as $$
declare
  _next bigint; _ts bigint; _r int; _j int; _e int := 1; _ev int := 1; _ne int; _nev int;
  _found bigint; _low bigint; _names text[]; _vers bigint[]; _k int; _cur bigint;
  _ok boolean; _bad int; _badv bigint; _v bigint; _c int; _s text; _stored boolean;
  _pb bigint[] := '{}'; _vb bigint[] := '{}'; _str text[] := '{}';
begin
  -- The lock every writer of the store takes: positions are handed out in commit order.
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint)
    into _next, _ts from head h for update;
  -- The id lookups are planned at each call (execute), with the table's size of now: a
  -- plan cached while the table was small is a sequential scan, which on a large table
  -- would read all of it inside the lock.
  execute 'select exists (select 1 from events where event_id = any ($1))' into _stored using e_id;
  for _r in 1 .. coalesce(array_length(r_entries, 1), 0) loop
    _ne := r_entries[_r];
    _nev := 0;
    for _j in _e .. _e + _ne - 1 loop _nev := _nev + s_count[_j]; end loop;
    _found := 0;
    if _stored then
      execute 'select count(*), min(pos) from events where event_id = any ($1)'
        into _found, _low using e_id[_ev : _ev + _nev - 1];
    end if;
    _bad := 0;
    versions := null;
    if _found > 0 then
      res := case when _found = _nev then -2 else -3 end; entry := 0; actual := _low;
      _bad := -1;
    elsif _ne = 1 and s_stream[_e] <> '' then
      -- One stream: check and advance in one statement; _v is its version before.
      _s := s_stream[_e]; _c := s_count[_e]; _v := null;
      case s_expected[_e]
        when -1 then
          insert into streams as s (name, version, first_pos) values (_s, _c - 1, _next)
            on conflict (name) do update set version = s.version + _c
            returning s.version - _c into _v;
        when -2 then
          insert into streams (name, version, first_pos) values (_s, _c - 1, _next)
            on conflict (name) do nothing returning -1::bigint into _v;
        when -3 then
          update streams s set version = s.version + _c where s.name = _s
            returning s.version - _c into _v;
        else
          update streams s set version = s.version + _c
            where s.name = _s and s.version = s_expected[_e]
            returning s.version - _c into _v;
      end case;
      if _v is null then
        select s.version into _cur from streams s where s.name = _s;
        res := -1; entry := 1; actual := coalesce(_cur, -1); _bad := 1;
      else
        res := _next; entry := 0; actual := 0; versions := array[_v + _c];
        _pb := _pb || array_fill(_next - _ev, array[_c]);
        _vb := _vb || array_fill(_v + 1 - _ev, array[_c]);
        _str := _str || array_fill(_s, array[_c]);
        _next := _next + _c;
      end if;
    else
      -- Several entries (or events without a stream): check them all, then write.
      _names := '{}'; _vers := '{}';
      for _j in _e .. _e + _ne - 1 loop
        _k := array_position(_names, s_stream[_j]);
        _cur := null;
        if _k is not null then
          _cur := _vers[_k];
        elsif s_stream[_j] <> '' then
          select s.version into _cur from streams s where s.name = s_stream[_j] for update;
        end if;
        _ok := case s_expected[_j] when -1 then true when -2 then _cur is null
                 when -3 then _cur is not null else _cur = s_expected[_j] end;
        if not coalesce(_ok, false) then
          _bad := _j - _e + 1; _badv := coalesce(_cur, -1); exit;
        end if;
        if s_stream[_j] <> '' then
          if _k is null then
            _names := _names || s_stream[_j]; _vers := _vers || (coalesce(_cur, -1) + s_count[_j]);
          else
            _vers[_k] := coalesce(_cur, -1) + s_count[_j];
          end if;
        end if;
      end loop;
      if _bad > 0 then
        res := -1; entry := _bad; actual := _badv;
      else
        res := _next; entry := 0; actual := 0; versions := '{}';
        for _j in _e .. _e + _ne - 1 loop
          _c := s_count[_j]; _s := s_stream[_j];
          _v := -1;
          if _s <> '' then
            insert into streams as s (name, version, first_pos) values (_s, _c - 1, _next)
              on conflict (name) do update set version = s.version + _c
              returning s.version - _c into _v;
            versions := versions || (_v + _c);
          else
            versions := versions || 0::bigint;
          end if;
          _pb := _pb || array_fill(_next - _ev, array[_c]);
          _vb := _vb || array_fill(_v + 1 - _ev, array[_c]);
          _str := _str || array_fill(_s, array[_c]);
          _next := _next + _c;
          _ev := _ev + _c;
        end loop;
        _ev := _ev - _nev;
      end if;
    end if;
    if _bad <> 0 then
      -- Nothing of this request is written.
      _pb := _pb || array_fill(null::bigint, array[_nev]);
      _vb := _vb || array_fill(null::bigint, array[_nev]);
      _str := _str || array_fill(null::text, array[_nev]);
    end if;
    return next;
    _e := _e + _ne;
    _ev := _ev + _nev;
  end loop;
  insert into events (pos, stream, version, ts, type, schema_version, event_id, metadata, data)
    select x.pb + x.i, x.s, case when x.s = '' then 0 else x.vb + x.i end,
           _ts, x.t, x.sv, x.id, x.m, x.d
    from unnest(_pb, _vb, _str, e_type, e_sv, e_id, e_meta, e_data)
           with ordinality as x(pb, vb, s, t, sv, id, m, d, i)
    where x.pb is not null;
  update head set next = _next, last_ts = _ts;
end $$;
";

/// Creates the schema and its tables if they are missing (one process at a time: an
/// advisory lock), and checks the stored schema version. A read-only open creates
/// nothing: a missing store is `NotFound` there.
pub async fn prepare(conn: &Conn, read_only: bool) -> Result<()> {
    let schema = conn.schema();
    let mut client = conn.fresh().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error("starting the schema check", e))?;
    let exists: bool = tx
        .query_one(
            "select to_regclass(quote_ident($1) || '.meta') is not null",
            &[&schema],
        )
        .await
        .map_err(|e| pg_error("looking for the store's tables", e))?
        .get(0);
    if !exists {
        if read_only {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no evstore schema '{schema}' in {} (a read-only open creates nothing)",
                    conn.location()
                ),
            ));
        }
        lock(&tx, schema).await?;
        // Asked of pg_class itself, with this statement's snapshot: to_regclass answers
        // from the session's catalog cache, which waiting for an advisory lock does not
        // refresh, so it missed tables another process created meanwhile.
        let made: bool = tx
            .query_one(
                "select exists (select 1 from pg_catalog.pg_class c \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1 and c.relname = 'meta')",
                &[&schema],
            )
            .await
            .map_err(|e| pg_error("looking for the store's tables", e))?
            .get(0);
        if !made {
            tx.batch_execute(&format!(
                "create schema if not exists \"{schema}\"; set local search_path to \"{schema}\"; {CREATE} {APPEND}"
            ))
            .await
            .map_err(|e| pg_error(&format!("creating the evstore schema '{schema}'"), e))?;
        }
    }
    let mut version = stored_version(&tx, schema).await?;
    if version == Some(1) && !read_only {
        // One process migrates; the others find version 2 once they hold the lock.
        lock(&tx, schema).await?;
        version = stored_version(&tx, schema).await?;
        if version == Some(1) {
            tx.batch_execute(&format!(
                "set local search_path to \"{schema}\"; {MIGRATE_1_TO_2} {APPEND}"
            ))
            .await
            .map_err(|e| {
                pg_error(
                    &format!("migrating the evstore schema '{schema}' from version 1 to 2"),
                    e,
                )
            })?;
            version = Some(2);
        }
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("committing the schema", e))?;
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        // A read-only open reads the tables, which version 1 has as they are now.
        Some(1) if read_only => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the evstore schema '{schema}' has version {v}, newer than this library's \
                 {SCHEMA_VERSION}: upgrade the library"
            ),
        )),
        _ => Err(Error::new(
            ErrorKind::Corrupt,
            format!("the evstore schema '{schema}' has no valid schema version in its meta table"),
        )),
    }
}

/// Takes the transaction-scoped lock under which the schema is created or migrated.
async fn lock(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<()> {
    tx.execute(
        "select pg_advisory_xact_lock(hashtext('evstore schema ' || $1))",
        &[&schema],
    )
    .await
    .map_err(|e| pg_error("locking the schema creation", e))?;
    Ok(())
}

/// The version in the schema's `meta` table (`None`: missing or not a number).
async fn stored_version(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<Option<i64>> {
    let row = tx
        .query_opt(
            &format!("select value from \"{schema}\".meta where key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the schema version", e))?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}
