//! The store's tables and its append function in PostgreSQL, created on first open and
//! versioned in `meta` (design A of docs/postgres.md: one `head` row hands out positions
//! under its row lock, so positions are dense and committed in order).

use super::conn::{pg_error, Conn};
use crate::error::{Error, ErrorKind, Result};

/// The schema version this library writes and reads. 1: the first; 2: `append` also
/// returns each written request's stream versions; 3: events are stored one row per
/// stream entry of an append (`chunks`), event ids in a table of their own written before
/// the head lock (a version-1 or 2 store is migrated by a writable open).
const SCHEMA_VERSION: i64 = 3;

/// Creates the meta, head and streams tables (the events' and ids' come from
/// `CHUNKS_AND_IDS`, the function from `APPEND`).
const CREATE: &str = "
create table meta (key text primary key, value text not null);
insert into meta values ('schema_version', '3');
create table head (next bigint not null, last_ts bigint not null);
insert into head values (0, 0);
create table streams (name text primary key, version bigint not null, first_pos bigint not null);
";

/// The tables of events and ids (version 3), created with the schema or by the migration.
/// `ts` is microseconds since the Unix epoch, never decreasing along positions; events
/// without a stream have stream '' and version 0.
///
/// One `chunks` row holds the events of one stream entry of one append: positions
/// `first_pos ..= first_pos + n - 1` and, in a stream, versions from `first_version`, with
/// one array element per event. An append of 100 events is one row and a few TOAST rows,
/// not 100 rows with three index entries each: that is what the head lock is held for.
/// `chunk` is the key `ids` refers to, taken before the head lock (when positions are not
/// known yet); `ids` maps every stored event id to its chunk and index there, and its
/// primary key is what makes an id unique.
const CHUNKS_AND_IDS: &str = "
create sequence chunk_keys cache 100;
create table chunks (
  first_pos bigint primary key,
  chunk bigint not null unique,
  stream text not null,
  first_version bigint not null,
  n int not null,
  ts bigint not null,
  types text[] not null,
  schema_versions int[] not null,
  ids uuid[] not null,
  metadata bytea[] not null,
  data bytea[] not null
);
alter table chunks alter column types set storage external, alter column ids set storage external,
  alter column metadata set storage external, alter column data set storage external;
create unique index chunks_stream_version on chunks (stream, first_version) where stream <> '';
create index chunks_ts on chunks using brin (ts);
create table ids (id uuid primary key, chunk bigint not null, idx int not null);
create view id_positions as
  select i.id, c.first_pos + i.idx as pos, c.stream,
         case when c.stream = '' then 0 else c.first_version + i.idx end as version
  from ids i join chunks c on c.chunk = i.chunk;
";

/// From version 1 or 2 (the same tables, one row per event; the two differ only in the
/// function) to 3, after `CHUNKS_AND_IDS`: every event becomes a chunk of one, its id a
/// row of `ids`. The lock first: an append of an older library still running must be
/// committed before the copy (or wait, and then fail on the dropped function), or its
/// events would be dropped with the old table.
const MIGRATE_TO_3: &str = "
lock table head, streams, events in access exclusive mode;
drop function append(int[], text[], bigint[], int[], bytea[], text[], int[], bytea[], bytea[]);
insert into chunks
  select e.pos, nextval('chunk_keys'), e.stream, e.version, 1, e.ts, array[e.type],
         array[e.schema_version], array[encode(e.event_id, 'hex')::uuid], array[e.metadata],
         array[e.data]
  from events e order by e.pos;
insert into ids select c.ids[1], c.chunk, 0 from chunks c where c.ids[1] is not null;
drop table events;
update meta set value = '3' where key = 'schema_version';
";

/// The append function (version 3). One call appends a batch of requests (each one evs
/// append, possibly over several streams). Per request one row: res >= 0 its first
/// position (written; versions: each entry's stream version after it, 0 for events
/// without a stream); -1 a wrong expected version (entry: which entry of the request,
/// 1-based; actual: the stream's version, -1 none); -2 a retry, every event's id stored
/// (actual: the lowest stored position); -3 some ids stored, not all (nothing written).
/// Expected: >= 0 exact, -1 any, -2 no stream, -3 exists.
///
/// Arguments: per request its number of entries (`r_entries`); per entry its stream,
/// expected version and number of events; per event its id (null: none), type, schema
/// version, metadata and payload; per event that has an id, once more: the id, its
/// entry (1-based, in the batch) and its index in that entry (from 0); whether to look
/// the ids up first; and the channel to notify with the new head when events were
/// written (delivered by the server at the commit: no statement after it, and the
/// notification's lock is taken inside the head lock, which serializes appends anyway).
///
/// Event ids are written first, before the head lock, so that the batches of several
/// processes write theirs at the same time, in id order (two batches holding the same ids
/// then wait for each other in one order, never in a cycle); the primary key of `ids`
/// refuses an id stored before (or being stored by another batch), which fails the call.
/// The committer then sends the batch again with `check_ids`: each request's ids are
/// looked up first, still before the lock; a request with ids stored is answered -2/-3
/// and writes nothing, the others' ids are written. Under the head lock (from taking it
/// to the commit) each written stream entry becomes one `chunks` row, all written by one
/// insert at the end; a refused request's ids are deleted again.
const APPEND: &str = "
create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                       e_id uuid[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[],
                       i_id uuid[], i_entry int[], i_idx int[], check_ids boolean,
                       channel text)
returns table (res bigint, entry int, actual bigint, versions bigint[])
language plpgsql as $$
declare
  _next bigint; _ts bigint; _r int; _j int; _e int := 1; _ev int := 1; _ne int; _nev int;
  _found bigint; _low bigint; _names text[]; _vers bigint[]; _k int; _cur bigint;
  _ok boolean; _bad int; _badv bigint; _v bigint; _c int; _s text;
  _keys bigint[]; _first bigint;
  _has_ids boolean := coalesce(cardinality(i_id), 0) > 0;
  -- With check_ids: per request, how many of its ids are stored and the lowest position.
  _found_r bigint[] := '{}'; _low_r bigint[] := '{}'; _ereq int[] := '{}';
  -- The chunks to write: first position, key, stream, first version, count, and where
  -- their events start in the event arrays.
  _cp bigint[] := '{}'; _ck bigint[] := '{}'; _cs text[] := '{}'; _cv bigint[] := '{}';
  _cc int[] := '{}'; _ce int[] := '{}';
begin
  -- Before the head lock: the chunk keys, and the ids (in parallel with other writers).
  _keys := array(select nextval('chunk_keys') from generate_series(1, cardinality(s_stream)));
  if _has_ids and check_ids then
    for _r in 1 .. coalesce(cardinality(r_entries), 0) loop
      _ne := r_entries[_r];
      _nev := 0;
      for _j in _e .. _e + _ne - 1 loop
        _nev := _nev + s_count[_j];
        _ereq := _ereq || _r;
      end loop;
      -- Planned at each call (execute): a plan cached while the table was small would be
      -- a sequential scan.
      execute 'select count(*), min(pos) from id_positions where id = any ($1)'
        into _found, _low using e_id[_ev : _ev + _nev - 1];
      _found_r := _found_r || _found; _low_r := _low_r || _low;
      _e := _e + _ne;
      _ev := _ev + _nev;
    end loop;
    _e := 1; _ev := 1;
    insert into ids (id, chunk, idx)
      select x.id, _keys[x.en], x.ix from unnest(i_id, i_entry, i_idx) as x(id, en, ix)
      where _found_r[_ereq[x.en]] = 0 order by x.id;
  elsif _has_ids then
    insert into ids (id, chunk, idx)
      select x.id, _keys[x.en], x.ix from unnest(i_id, i_entry, i_idx) as x(id, en, ix)
      order by x.id;
  end if;
  -- The lock every writer of the store takes: positions are handed out in commit order.
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint)
    into _next, _ts from head h for update;
  _first := _next;
  for _r in 1 .. coalesce(cardinality(r_entries), 0) loop
    _ne := r_entries[_r];
    _nev := 0;
    for _j in _e .. _e + _ne - 1 loop _nev := _nev + s_count[_j]; end loop;
    _found := 0;
    if _has_ids and check_ids then
      _found := _found_r[_r]; _low := _low_r[_r];
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
        _cp := _cp || _next; _ck := _ck || _keys[_e]; _cs := _cs || _s;
        _cv := _cv || (_v + 1); _cc := _cc || _c; _ce := _ce || _ev;
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
        _k := _ev;
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
          _cp := _cp || _next; _ck := _ck || _keys[_j]; _cs := _cs || _s;
          _cv := _cv || (_v + 1); _cc := _cc || _c; _ce := _ce || _k;
          _next := _next + _c;
          _k := _k + _c;
        end loop;
      end if;
    end if;
    if _bad > 0 and _has_ids and _nev > 0 then
      -- Refused by a version: its ids, written before the lock, go again. (A request
      -- whose ids were found stored wrote none: those are the earlier append's.)
      delete from ids where id = any (e_id[_ev : _ev + _nev - 1]);
    end if;
    return next;
    _e := _e + _ne;
    _ev := _ev + _nev;
  end loop;
  insert into chunks
    select x.p, x.k, x.s, case when x.s = '' then 0 else x.v end, x.c, _ts,
           e_type[x.e : x.e + x.c - 1], e_sv[x.e : x.e + x.c - 1], e_id[x.e : x.e + x.c - 1],
           e_meta[x.e : x.e + x.c - 1], e_data[x.e : x.e + x.c - 1]
    from unnest(_cp, _ck, _cs, _cv, _cc, _ce) as x(p, k, s, v, c, e)
    where x.c > 0;
  update head set next = _next, last_ts = _ts;
  if _next > _first then
    -- Delivered by the server at the commit, to the handles that wait (listener.rs).
    perform pg_notify(channel, _next::text);
  end if;
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
                "create schema if not exists \"{schema}\"; set local search_path to \"{schema}\"; {CREATE} {CHUNKS_AND_IDS} {APPEND}"
            ))
            .await
            .map_err(|e| pg_error(&format!("creating the evstore schema '{schema}'"), e))?;
        }
    }
    let mut version = stored_version(&tx, schema).await?;
    if matches!(version, Some(1 | 2)) && !read_only {
        // One process migrates; the others find version 3 once they hold the lock.
        lock(&tx, schema).await?;
        version = stored_version(&tx, schema).await?;
        if let Some(old @ (1 | 2)) = version {
            tx.batch_execute(&format!(
                "set local search_path to \"{schema}\"; {CHUNKS_AND_IDS} {MIGRATE_TO_3} {APPEND}"
            ))
            .await
            .map_err(|e| {
                pg_error(
                    &format!("migrating the evstore schema '{schema}' from version {old} to 3"),
                    e,
                )
            })?;
            version = Some(SCHEMA_VERSION);
        }
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("committing the schema", e))?;
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        // Versions 1 and 2 keep one row per event, which this library no longer reads.
        Some(v @ (1 | 2)) => Err(Error::new(
            ErrorKind::ReadOnly,
            format!(
                "the evstore schema '{schema}' has version {v}, older than this library's \
                 {SCHEMA_VERSION}, and a read-only open cannot migrate it: open it once for \
                 writing (that migrates it), then read"
            ),
        )),
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
