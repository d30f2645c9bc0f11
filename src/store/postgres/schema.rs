//! The store's tables and its append function in PostgreSQL, created on first open and
//! versioned in `meta` (design A of docs/postgres.md: one `head` row hands out positions
//! under its row lock, so positions are dense and committed in order).

use super::conn::{pg_error, Conn};
use crate::error::{Error, ErrorKind, Result};

/// The schema version this library writes and reads.
const SCHEMA_VERSION: i64 = 1;

/// Creates the tables and the function. `ts` is microseconds since the Unix epoch, never
/// decreasing along `pos`; events without a stream have stream '' and version 0.
const CREATE: &str = "
create table meta (key text primary key, value text not null);
insert into meta values ('schema_version', '1');
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

-- One call appends a batch of requests (each one evs append, possibly over several
-- streams). Per request one row: res >= 0 its first position (written); -1 a wrong
-- expected version (entry: which entry of the request, 1-based; actual: the stream's
-- version, -1 none); -2 a retry, every event's id stored (actual: the lowest stored
-- position); -3 some ids stored, not all (nothing written). Expected: >= 0 exact, -1 any,
-- -2 no stream, -3 exists.
create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                       e_id bytea[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[])
returns table (res bigint, entry int, actual bigint)
language plpgsql as $$
declare
  _next bigint; _ts bigint; _r int; _j int; _e int := 1; _ev int := 1; _ne int; _nev int;
  _found bigint; _low bigint; _names text[]; _vers bigint[]; _k int; _cur bigint;
  _ok boolean; _bad int; _badv bigint; _v bigint; _first bigint; _c int;
begin
  -- The lock every writer of the store takes: positions are handed out in commit order.
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint)
    into _next, _ts from head h for update;
  for _r in 1 .. coalesce(array_length(r_entries, 1), 0) loop
    _ne := r_entries[_r];
    _nev := 0;
    for _j in _e .. _e + _ne - 1 loop _nev := _nev + s_count[_j]; end loop;
    select count(*), min(pos) into _found, _low from events
      where event_id = any (e_id[_ev : _ev + _nev - 1]);
    if _found > 0 then
      res := case when _found = _nev then -2 else -3 end; entry := 0; actual := _low;
      return next;
    else
      _names := '{}'; _vers := '{}'; _bad := 0;
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
        res := -1; entry := _bad; actual := _badv; return next;
      else
        _first := _next;
        for _j in _e .. _e + _ne - 1 loop
          _c := s_count[_j];
          _v := -1;
          if s_stream[_j] <> '' then
            insert into streams as s (name, version, first_pos) values (s_stream[_j], _c - 1, _next)
              on conflict (name) do update set version = s.version + _c
              returning s.version - _c into _v;
          end if;
          insert into events (pos, stream, version, ts, type, schema_version, event_id, metadata, data)
            select _next + x.o - 1, s_stream[_j],
                   case when s_stream[_j] = '' then 0 else _v + x.o end,
                   _ts, x.t, x.sv, x.id, x.m, x.d
            from unnest(e_type[_ev : _ev + _c - 1], e_sv[_ev : _ev + _c - 1],
                        e_id[_ev : _ev + _c - 1], e_meta[_ev : _ev + _c - 1],
                        e_data[_ev : _ev + _c - 1]) with ordinality as x(t, sv, id, m, d, o);
          _next := _next + _c;
          _ev := _ev + _c;
        end loop;
        _ev := _ev - _nev;
        res := _first; entry := 0; actual := 0; return next;
      end if;
    end if;
    _e := _e + _ne;
    _ev := _ev + _nev;
  end loop;
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
        tx.execute(
            "select pg_advisory_xact_lock(hashtext('evstore schema ' || $1))",
            &[&schema],
        )
        .await
        .map_err(|e| pg_error("locking the schema creation", e))?;
        let made: bool = tx
            .query_one(
                "select to_regclass(quote_ident($1) || '.meta') is not null",
                &[&schema],
            )
            .await
            .map_err(|e| pg_error("looking for the store's tables", e))?
            .get(0);
        if !made {
            tx.batch_execute(&format!(
                "create schema if not exists \"{schema}\"; set local search_path to \"{schema}\"; {CREATE}"
            ))
            .await
            .map_err(|e| pg_error(&format!("creating the evstore schema '{schema}'"), e))?;
        }
    }
    let row = tx
        .query_opt(
            &format!("select value from \"{schema}\".meta where key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the schema version", e))?;
    tx.commit()
        .await
        .map_err(|e| pg_error("committing the schema", e))?;
    let version: Option<i64> = row.and_then(|r| r.get::<_, String>(0).parse().ok());
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
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
