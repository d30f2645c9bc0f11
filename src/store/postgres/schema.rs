//! The store's tables and its functions in PostgreSQL, created on first open and
//! versioned in `meta` (design D of docs/postgres.md: one `head` row hands out positions
//! under its row lock, so positions are committed in order; lifecycle entries and removed
//! events leave positions empty, which readers tell from uncommitted ones by the head they
//! read in the same statement).

use super::conn::{pg_error, typed, Conn};
use crate::error::{Error, ErrorKind, Result};

/// The schema version this library writes and reads. 1: the first; 2: `append` also
/// returns each written request's stream versions; 3: events are stored one row per
/// stream entry of an append (`chunks`), event ids in a table of their own written before
/// the head lock; 4: lifecycle entries, removed events, retention rules (docs/lifecycle.md);
/// 5: checkpoints of the projections (an open starts from the newest, not from the
/// first event); 6: durable consumers (`consumers`, `consumer_parked`, their functions);
/// 7: personal data (`subject_keys`, `forgotten_subjects`, sealed events: `TO_7`).
/// An older store is migrated by a writable open.
const SCHEMA_VERSION: i64 = 8;

/// Creates the meta, head and streams tables as version 3 had them (the events' and ids'
/// come from `CHUNKS_AND_IDS`); a new schema then takes the same steps to version 4 as a
/// migrated one (`TO_4`, `FUNCTIONS`, `APPEND`), so that both are one path.
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

/// From version 3 to 4 (docs/postgres.md "Lifecycle"), after which `FUNCTIONS` makes the
/// functions. The tables are locked first, in the order an append of a version-3 library
/// takes them (ids, head, streams, chunks), so that one still in flight commits before the
/// change (or waits, and then fails on the dropped function), never in a cycle with it.
///
/// - `head`: `entries` counts the lifecycle entries, `changes` counts every commit that
///   removed events or changed what removes them (readers holding events re-read when it
///   moves), `count_rules` the rules with a count limit (an append applies them when > 0).
/// - `streams`: versions below `removed_before` are removed; `tombstone`: hard-deleted;
///   `deleted`: soft-deleted and not appended to since (for writers there is no such
///   stream: "no stream" expected, its version continued).
/// - `chunks.skip`: the chunk's first `skip` events are removed and its arrays hold the
///   others (event `i` of the chunk, from 0, at position `first_pos + i` and version
///   `first_version + i`, is array element `i - skip + 1`), so that its position, version
///   and the `ids` rows pointing into it stay right.
/// - `removed_chunks`: the header of a deleted chunk row whose events had ids (no event
///   data): the ids of removed events still find their position, stream and version.
/// - `entries`: one row per lifecycle entry: its position, a chunk key (for its id in
///   `ids`), its time, the stream or prefix it names, and the operation's portable
///   encoding (`LifecycleOp::encode`).
/// - `rules`: the retention rules in force, by stream or category prefix.
const TO_4: &str = "
lock table ids, head, streams, chunks in access exclusive mode;
drop function if exists append(int[], text[], bigint[], int[], uuid[], text[], int[], bytea[],
                               bytea[], uuid[], int[], int[], boolean, text);
alter table head add column entries bigint not null default 0,
  add column changes bigint not null default 0,
  add column count_rules int not null default 0;
alter table streams add column removed_before bigint not null default 0,
  add column tombstone boolean not null default false,
  add column deleted boolean not null default false;
alter table chunks add column skip int not null default 0;
create table removed_chunks (chunk bigint primary key, first_pos bigint not null,
  stream text not null, first_version bigint not null);
create table entries (pos bigint primary key, chunk bigint not null unique,
  ts bigint not null, target text not null, op bytea not null);
create table rules (category boolean not null, target text not null,
  max_count bigint not null, max_age_us bigint not null, primary key (category, target));
drop view id_positions;
create view id_positions as
  select i.id, c.first_pos + i.idx as pos, c.stream,
         case when c.stream = '' then 0 else c.first_version + i.idx end as version
  from ids i join (select chunk, first_pos, stream, first_version from chunks
                   union all
                   select chunk, first_pos, stream, first_version from removed_chunks
                   union all
                   select chunk, pos, null::text, null::bigint from entries) c
    on c.chunk = i.chunk;
update meta set value = '4' where key = 'schema_version';
";

/// From version 4 to 5: `checkpoints` holds each projection's state (`Projection::snapshot`,
/// by its name) after the positions below `pos`, written by any writable handle at most
/// every `CHECKPOINT_EVERY` positions, only ever replaced by a newer one (`checkpoint.rs`).
/// Every function of the schema gets its own search path (the schema, then pg_catalog):
/// what it names is the schema's whatever the session's search path is (a pooler hands
/// sessions around: docs/postgres.md "Poolers"). The hot rows: `head`, one row updated by
/// every commit, keeps room for its versions in its page (fillfactor 10, HOT updates)
/// and is vacuumed after every 1000 dead versions whatever its size; `streams` rows are
/// updated by every append to their stream (fillfactor 80). No lock: appends of a
/// version-4 library still running touch none of it (the functions' setting applies
/// from their next call).
const TO_5: &str = "
create table checkpoints (name text primary key, pos bigint not null, ts bigint not null,
  state bytea not null);
alter table checkpoints alter column state set storage external;
do $pin$ declare f regprocedure; begin
  for f in select p.oid::regprocedure from pg_proc p
           where p.pronamespace = current_schema()::regnamespace loop
    execute format('alter function %s set search_path = %I, pg_catalog', f, current_schema());
  end loop;
end $pin$;
alter table head set (fillfactor = 10, autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000);
alter table streams set (fillfactor = 80);
update meta set value = '5' where key = 'schema_version';
";

/// From version 5 to 6: durable consumers (docs/consumers.md, `consumers.rs`). One row per
/// consumer name: its registers as `ConsumerState` folds them (the highest record number
/// `max_seq`, the checkpoint `next` and the number that set it, the last delete's number),
/// its holder (`owner`, a token the claim made) and the holder's lease (`lease_until`,
/// microseconds on the server's clock), the last record written (`last_kind`, `last_pos`:
/// a record sent again after an in-doubt commit is recognized by its number and content)
/// and, when that record was an atomic step's, the step's answer (`step_first`: its first
/// position, or -2 when its events' ids were found stored; `step_versions`).
/// `consumer_parked` holds each parked event with the number of its record.
///
/// `consumer_claim(n, lease_us)`: takes consumer `n` (creating its row) when no holder's
/// lease runs: returns the new holder's token, or null and the time left of the holder's
/// lease. `consumer_apply(...)`: a record's writes (kind 1 checkpoint at `pos`, 2 delete,
/// 3 park `pos` with `reason` at `at_us`, 4 unpark `pos`). `consumer_write(...)`: a record
/// of holder `tok`: 0 written, 1 written before (the same number and content), -1 not the
/// holder (another took the consumer after this one's lease ran out), -2 the number was
/// used by another record. `consumer_step(...)`: the atomic step, one statement: the
/// consumer's row locked and checked as `consumer_write` does (-5 not the holder, -6 the
/// step was stored before: `actual` its first position and `versions` its versions, -7
/// the number used by another record), then `append`'s call (ids looked up first) and,
/// when it wrote (or found every id stored), the record, in the same transaction; the
/// rows are `append`'s. Each function locks the consumer's row before anything else.
const TO_6: &str = "
create table consumers (name text primary key, max_seq bigint not null default 0,
  ck_seq bigint not null default 0, next bigint, deleted_seq bigint not null default 0,
  owner uuid, lease_until bigint not null default 0, last_kind int not null default 0,
  last_pos bigint not null default 0, step_first bigint, step_versions bigint[],
  parts int not null default 0);
create table consumer_parts (name text not null, part int not null, next bigint not null,
  owner uuid, lease_until bigint not null default 0, primary key (name, part));
create table consumer_members (name text not null, member uuid not null,
  lease_until bigint not null, step_seq bigint not null default 0,
  step_pos bigint not null default 0, step_first bigint, step_versions bigint[],
  primary key (name, member));
create table consumer_parked (name text not null, position bigint not null,
  seq bigint not null, reason text not null, at_us bigint not null,
  primary key (name, position));

create function consumer_now() returns bigint language sql volatile as $f$
  select (extract(epoch from clock_timestamp()) * 1000000)::bigint
$f$;

create function consumer_claim(n text, lease_us bigint)
returns table (token uuid, left_us bigint, parts int) language plpgsql as $f$
declare _now bigint := consumer_now(); _t uuid := gen_random_uuid();
begin
  insert into consumers (name) values (n) on conflict (name) do nothing;
  -- A group's members hold its partitions, not its row: it is taken while one lives.
  update consumers c set owner = _t, lease_until = _now + lease_us
    where c.name = n and (c.owner is null or c.lease_until <= _now)
      and not exists (select 1 from consumer_members m
                      where m.name = n and m.lease_until > _now)
    returning _t into token;
  select c.parts into parts from consumers c where c.name = n;
  if token is null then
    select greatest(max(x.l) - _now, 0) into left_us from (
      select c.lease_until as l from consumers c where c.name = n
      union all select m.lease_until from consumer_members m where m.name = n) x;
  end if;
  return next;
end $f$;

create function consumer_apply(n text, seq bigint, kind int, pos bigint, reason text,
                               at_us bigint) returns void language plpgsql as $f$
begin
  if kind = 1 then
    update consumers c set next = pos, ck_seq = seq where c.name = n;
    update consumer_parts p set next = pos where p.name = n;
  elsif kind = 2 then
    update consumers c set next = null, ck_seq = 0, deleted_seq = seq, parts = 0
      where c.name = n;
    delete from consumer_parked p where p.name = n;
    delete from consumer_parts p where p.name = n;
    delete from consumer_members m where m.name = n;
  elsif kind = 3 then
    insert into consumer_parked as p values (n, pos, seq, reason, at_us)
      on conflict (name, position) do update
      set seq = excluded.seq, reason = excluded.reason, at_us = excluded.at_us;
  elsif kind = 4 then
    delete from consumer_parked p where p.name = n and p.position = pos;
  else
    raise exception 'unknown consumer change %', kind;
  end if;
  update consumers c set max_seq = seq, last_kind = kind, last_pos = pos, step_first = null,
    step_versions = null where c.name = n;
end $f$;

create function consumer_write(n text, tok uuid, seq bigint, kind int, pos bigint,
                               reason text, at_us bigint) returns int language plpgsql as $f$
declare _c consumers;
begin
  select * into _c from consumers c where c.name = n for update;
  if not found or _c.owner is distinct from tok then
    return -1;
  end if;
  if _c.max_seq >= seq then
    return case when _c.max_seq = seq and _c.last_kind = kind and _c.last_pos = pos
                then 1 else -2 end;
  end if;
  perform consumer_apply(n, seq, kind, pos, reason, at_us);
  return 0;
end $f$;

create function consumer_step(n text, tok uuid, seq bigint, kind int, pos bigint,
                              r_entries int[], s_stream text[], s_expected bigint[],
                              s_count int[], e_id uuid[], e_type text[], e_sv int[],
                              e_meta bytea[], e_data bytea[], i_id uuid[], i_entry int[],
                              i_idx int[], channel text)
returns table (res bigint, entry int, actual bigint, versions bigint[], changes bigint)
language plpgsql as $f$
declare _c consumers; _r record;
begin
  entry := 0; actual := 0; changes := 0;
  select * into _c from consumers c where c.name = n for update;
  if not found or _c.owner is distinct from tok then
    res := -5;
    return next;
    return;
  end if;
  if _c.max_seq >= seq then
    if _c.max_seq = seq and _c.last_kind = kind and _c.last_pos = pos
       and _c.step_first is not null then
      res := case when _c.step_first >= 0 then -6 else -2 end;
      actual := _c.step_first; versions := _c.step_versions;
    else
      res := -7; actual := _c.max_seq;
    end if;
    return next;
    return;
  end if;
  for _r in select * from append(r_entries, s_stream, s_expected, s_count, e_id, e_type, e_sv,
                                 e_meta, e_data, i_id, i_entry, i_idx, true, channel) loop
    if _r.res >= 0 or _r.res = -2 then
      perform consumer_apply(n, seq, kind, pos, '', 0);
      update consumers c set step_first = _r.res, step_versions = _r.versions
        where c.name = n;
    end if;
    res := _r.res; entry := _r.entry; actual := _r.actual; versions := _r.versions;
    changes := _r.changes;
    return next;
  end loop;
end $f$;

create function group_join(n text, want_parts int, start bigint, lease_us bigint)
returns table (member uuid, parts int) language plpgsql as $f$
declare _c consumers; _now bigint := consumer_now();
begin
  insert into consumers (name) values (n) on conflict (name) do nothing;
  select * into _c from consumers c where c.name = n for update;
  parts := _c.parts;
  if _c.parts = 0 and _c.max_seq > _c.deleted_seq then
    -- A consumer of one holder: not a group.
    parts := -1; return next; return;
  end if;
  if _c.parts <> 0 and _c.parts <> want_parts then
    return next; return;
  end if;
  if _c.parts = 0 then
    update consumers c set parts = want_parts, max_seq = c.max_seq + 1, next = start,
        ck_seq = c.max_seq + 1 where c.name = n;
    insert into consumer_parts (name, part, next)
      select n, g, start from generate_series(0, want_parts - 1) g;
    parts := want_parts;
  end if;
  insert into consumer_members (name, member, lease_until)
    values (n, gen_random_uuid(), _now + lease_us) returning consumer_members.member into member;
  return next;
end $f$;

create function group_balance(n text, m uuid, lease_us bigint, acked bigint)
returns table (part int, next bigint) language plpgsql as $f$
declare _now bigint := consumer_now(); _p int; _live int; _want int; _owned int;
begin
  select c.parts into _p from consumers c where c.name = n;
  if coalesce(_p, 0) = 0 then
    return;
  end if;
  insert into consumer_members as x (name, member, lease_until) values (n, m, _now + lease_us)
    on conflict (name, member) do update set lease_until = excluded.lease_until;
  select count(*) into _live from consumer_members x where x.name = n and x.lease_until > _now;
  _want := (_p + _live - 1) / _live;
  update consumer_parts p set next = greatest(p.next, acked), lease_until = _now + lease_us
    where p.name = n and p.owner = m;
  select count(*) into _owned from consumer_parts p where p.name = n and p.owner = m;
  if _owned > _want then
    update consumer_parts p set owner = null, lease_until = 0
      where p.name = n and p.owner = m and p.part in (
        select q.part from consumer_parts q where q.name = n and q.owner = m
        order by q.part desc limit _owned - _want);
  elsif _owned < _want then
    update consumer_parts p set owner = m, lease_until = _now + lease_us
      where p.name = n and p.part in (
        select q.part from consumer_parts q
        where q.name = n and (q.owner is null or q.lease_until <= _now)
        order by q.part limit _want - _owned for update skip locked);
  end if;
  return query select p.part, p.next from consumer_parts p
    where p.name = n and p.owner = m order by p.part;
end $f$;

create function group_renew(n text, m uuid, lease_us bigint) returns int
language plpgsql as $f$
declare _now bigint := consumer_now(); _k int;
begin
  update consumer_members x set lease_until = _now + lease_us where x.name = n and x.member = m;
  update consumer_parts p set lease_until = _now + lease_us where p.name = n and p.owner = m;
  get diagnostics _k = row_count;
  return _k;
end $f$;

create function group_checkpoint(n text, m uuid, at bigint) returns int
language plpgsql as $f$
declare _k int;
begin
  update consumer_parts p set next = greatest(p.next, at) where p.name = n and p.owner = m;
  get diagnostics _k = row_count;
  return _k;
end $f$;

create function group_record(n text, kind int, pos bigint, reason text, at_us bigint)
returns void language plpgsql as $f$
declare _s bigint;
begin
  update consumers c set max_seq = c.max_seq + 1 where c.name = n returning c.max_seq into _s;
  if kind = 3 then
    insert into consumer_parked as p values (n, pos, _s, reason, at_us)
      on conflict (name, position) do update
      set seq = excluded.seq, reason = excluded.reason, at_us = excluded.at_us;
  elsif kind = 4 then
    delete from consumer_parked p where p.name = n and p.position = pos;
  else
    raise exception 'a group member writes no consumer change %', kind;
  end if;
end $f$;

create function group_step(n text, m uuid, seq bigint, part int, at bigint,
                           r_entries int[], s_stream text[], s_expected bigint[],
                           s_count int[], e_id uuid[], e_type text[], e_sv int[],
                           e_meta bytea[], e_data bytea[], i_id uuid[], i_entry int[],
                           i_idx int[], channel text)
returns table (res bigint, entry int, actual bigint, versions bigint[], changes bigint)
language plpgsql as $f$
declare _x consumer_members; _r record;
begin
  entry := 0; actual := 0; changes := 0;
  select * into _x from consumer_members x where x.name = n and x.member = m for update;
  if not found or not exists (select 1 from consumer_parts p
                              where p.name = n and p.part = group_step.part and p.owner = m) then
    res := -5;
    return next;
    return;
  end if;
  if _x.step_seq >= seq then
    if _x.step_seq = seq and _x.step_pos = at and _x.step_first is not null then
      res := case when _x.step_first >= 0 then -6 else -2 end;
      actual := _x.step_first; versions := _x.step_versions;
    else
      res := -7; actual := _x.step_seq;
    end if;
    return next;
    return;
  end if;
  for _r in select * from append(r_entries, s_stream, s_expected, s_count, e_id, e_type, e_sv,
                                 e_meta, e_data, i_id, i_entry, i_idx, true, channel) loop
    if _r.res >= 0 or _r.res = -2 then
      update consumer_parts p set next = greatest(p.next, at) where p.name = n and p.owner = m;
      update consumer_members x set step_seq = seq, step_pos = at, step_first = _r.res,
          step_versions = _r.versions where x.name = n and x.member = m;
    end if;
    res := _r.res; entry := _r.entry; actual := _r.actual; versions := _r.versions;
    changes := _r.changes;
    return next;
  end loop;
end $f$;

create function group_leave(n text, m uuid, at bigint) returns void language plpgsql as $f$
begin
  if at >= 0 then
    update consumer_parts p set next = greatest(p.next, at) where p.name = n and p.owner = m;
  end if;
  update consumer_parts p set owner = null, lease_until = 0 where p.name = n and p.owner = m;
  delete from consumer_members x where x.name = n and x.member = m;
end $f$;

do $pin$ declare f regprocedure; begin
  for f in select p.oid::regprocedure from pg_proc p
           where p.pronamespace = current_schema()::regnamespace
             and (p.proname like 'consumer%' or p.proname like 'group%') loop
    execute format('alter function %s set search_path = %I, pg_catalog', f, current_schema());
  end loop;
end $pin$;
update meta set value = '6' where key = 'schema_version';
";

/// From version 6 to 7: personal data (README "Personal data", `subjects.rs`). An event
/// that names a subject is stored sealed: its `metadata` element null (never null for
/// other events) and its `data` element the subject and the sealed bytes
/// (`subjects::seal`). A library of version 6 would read such an element as damage: the
/// version keeps it away. `subject_keys`: the data keys the store keeps (wrapped by the
/// application's master key when one is given, else plain). `forgotten_subjects`: each
/// forgotten subject and the position of its forget entry.
///
/// `subject_key_put(s, k)`: stores key `k` for subject `s` unless it has one (returns the
/// one stored) or is forgotten (returns null). `forget_subject(s, op, channel)`: in one
/// transaction, under the head lock, writes the forget entry (`op`) at the next position,
/// records the subject as forgotten and deletes its key; returns the entry's position (a
/// subject forgotten before: that entry's, its key deleted again). Both take the
/// subject's advisory lock first, so a key is never made for a subject being forgotten.
/// `append` is made again by `append_7` (after this step).
const TO_7: &str = "
create table subject_keys (subject text primary key, key bytea not null);
create table forgotten_subjects (subject text primary key, pos bigint not null);

create function subject_key_put(s text, k bytea) returns bytea language plpgsql as $f$
begin
  perform pg_advisory_xact_lock(hashtext('evstore subject ' || s));
  if exists (select 1 from forgotten_subjects f where f.subject = s) then
    return null;
  end if;
  insert into subject_keys as x values (s, k) on conflict (subject) do nothing;
  return (select x.key from subject_keys x where x.subject = s);
end $f$;

create function forget_subject(s text, op bytea, channel text) returns bigint
language plpgsql as $f$
declare _next bigint; _ts bigint; _p bigint; _chg bigint;
begin
  perform pg_advisory_xact_lock(hashtext('evstore subject ' || s));
  select f.pos into _p from forgotten_subjects f where f.subject = s;
  if _p is not null then
    delete from subject_keys x where x.subject = s;
    return _p;
  end if;
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint)
    into _next, _ts from head h for update;
  insert into entries (pos, chunk, ts, target, op)
    values (_next, nextval('chunk_keys'), _ts, s, op);
  insert into forgotten_subjects values (s, _next);
  delete from subject_keys x where x.subject = s;
  update head h set next = _next + 1, last_ts = _ts, entries = h.entries + 1,
      changes = h.changes + 1
    returning h.changes into _chg;
  perform pg_notify(channel, (_next + 1)::text || ' ' || _chg::text);
  return _next;
end $f$;

alter function subject_key_put(text, bytea) set search_path from current;
alter function forget_subject(text, bytea, text) set search_path from current;
update meta set value = '7' where key = 'schema_version';
";

/// `append` as of version 7: `APPEND`, and under the head lock a request none of whose
/// ids is stored (not a retry) that has a sealed event of a forgotten subject is refused
/// (res -8, nothing written; its ids, written before the lock, deleted again). Forgets
/// take the head lock too: no event of a subject is committed after its forget, whatever
/// a handle's view of the forgets.
fn append_7() -> String {
    let v7 = APPEND
        .replacen(
            "create function append(",
            "create or replace function append(",
            1,
        )
        .replacen(
            "  _res bigint; _ent int; _act bigint; _vl bigint[];",
            "  _res bigint; _ent int; _act bigint; _vl bigint[]; _fs bigint;\n  \
             _sealed boolean := array_position(e_meta, null) is not null;",
            1,
        )
        .replacen(
            "    _vl := null;\n    if _found > 0 then",
            "    _vl := null;\n    _fs := 0;\n    if _found = 0 and _sealed then\n      \
             select count(*) into _fs from unnest(e_meta[_ev : _ev + _nev - 1], \
             e_data[_ev : _ev + _nev - 1]) as u(m, d) join forgotten_subjects f on u.m is null \
             and f.subject = convert_from(substr(u.d, 4, get_byte(u.d, 1) + 256 * \
             get_byte(u.d, 2)), 'UTF8');\n    end if;\n    if _fs > 0 then\n      \
             _res := -8; _ent := 0; _act := 0; _bad := 1;\n    elsif _found > 0 then",
            1,
        );
    // Made again, the function loses its pinned search path (`TO_5`): pinned again.
    v7 + "alter function append(int[], text[], bigint[], int[], uuid[], text[], int[], bytea[], \
          bytea[], uuid[], int[], int[], boolean, text) set search_path from current;\n"
}

/// Version 8: appends whose commit does not hold the head lock through the WAL flush
/// (docs/postgres.md "Appends commit without waiting for the flush under the head lock").
///
/// `flushed`: per committer connection (`writer`, a `chunk_keys` number), the head it saw
/// in the transaction that flushed its last append (its own durable commit, made after
/// the append's); row 0 is the head after the last synchronous commit that moved it (the
/// trigger `head_durable`). Every position below the highest `next` is durable: it was
/// committed before a commit that the server flushed. Readers read only below it (or
/// below the head when nothing written is waiting for the flush: `cursor::DURABLE_NEXT`).
///
/// `append_async`: `append` called with `evstore.async_commit` on for its transaction,
/// which `append` (`append_8`) turns into an asynchronous commit unless the batch removed
/// events by a count rule; only the committer calls it, and it then makes the commit
/// durable (its flush statement) before it answers a caller.
const TO_8: &str = "
create table flushed (writer bigint primary key, next bigint not null);
insert into flushed select 0, h.next from head h;

create function head_durable() returns trigger language plpgsql as $f$
begin
  insert into flushed as f values (0, new.next) on conflict (writer)
    do update set next = greatest(f.next, excluded.next);
  return null;
end $f$;
alter function head_durable() set search_path from current;
create trigger head_durable after update of next on head for each row
  when (current_setting('evstore.async_commit', true) is distinct from 'on')
  execute function head_durable();

create function append_async(r_entries int[], s_stream text[], s_expected bigint[],
                             s_count int[], e_id uuid[], e_type text[], e_sv int[],
                             e_meta bytea[], e_data bytea[], i_id uuid[], i_entry int[],
                             i_idx int[], check_ids boolean, channel text)
returns table (res bigint, entry int, actual bigint, versions bigint[], changes bigint)
language plpgsql as $f$
begin
  perform set_config('evstore.async_commit', 'on', true);
  return query select * from append(r_entries, s_stream, s_expected, s_count, e_id, e_type,
    e_sv, e_meta, e_data, i_id, i_entry, i_idx, check_ids, channel);
end $f$;
alter function append_async(int[], text[], bigint[], int[], uuid[], text[], int[], bytea[],
  bytea[], uuid[], int[], int[], boolean, text) set search_path from current;
update meta set value = '8' where key = 'schema_version';
";

/// `append` as of version 8: `append_7`, and when its transaction is the committer's
/// (`evstore.async_commit` on, set by `append_async`) and the batch removed nothing, the
/// commit is asynchronous (the head lock is let go without waiting for the WAL flush) and
/// the trigger `head_durable` and the notification are left to the committer's statements
/// after it. A batch that removed events commits synchronously and notifies, as before:
/// a removal is never seen before it is durable.
fn append_8() -> String {
    append_7().replacen(
        "  update head set next = _next, last_ts = _ts, changes = _chg;\n  \
         if _next > _first then\n",
        "  if _gone > 0 then\n    perform set_config('evstore.async_commit', 'off', true);\n  \
         elsif current_setting('evstore.async_commit', true) = 'on' then\n    \
         perform set_config('synchronous_commit', 'off', true);\n  end if;\n  \
         update head set next = _next, last_ts = _ts, changes = _chg;\n  \
         if _next > _first and current_setting('evstore.async_commit', true) is distinct from 'on' then\n",
        1,
    )
}

/// The functions of version 4 (created by `prepare` after `TO_4`, each a step of the
/// append or of a lifecycle entry; all run in the caller's transaction).
///
/// `rule_for(s)`: the retention rule in force for stream `s`: its own, else that of the
/// longest category prefix it starts with (`lifecycle::Removals::rule_for`).
///
/// `remove_before(s, x)`: removes stream `s`'s events with a version below `x`: the chunk
/// rows holding only such events are deleted (their headers kept in `removed_chunks` when
/// ids point into them), the one holding removed and kept events is rewritten to hold the
/// kept ones (`skip`); returns the events removed, the rows deleted or rewritten and their
/// bytes as stored before and after. Removal is always of a stream's lowest versions
/// (deletes, truncations and rules by count remove below a version; rules by age remove
/// the oldest, and times never decrease along versions), so a chunk keeps a suffix.
///
/// `remove_aged(s, now)`: removes what the rule in force for `s` removes by age at `now`
/// (rows that reads already pass over: compaction, and a rule's change).
///
/// `rule_streams(t, category)`: the streams a rule on `t` can apply to, in name order.
///
/// `set_rule(t, category, max_count, max_age_us, now)`: first deletes the rows that the
/// rules in force removed by age (a rule made looser later must not bring them back),
/// then sets (both 0: clears) the rule, then removes what count limits remove now.
///
/// `apply_entry(kind, target, a, b, op, key, now, channel)`: the writes of a lifecycle
/// entry, its checks done by the caller under the head lock: kind as in the entry
/// encoding (1 soft delete, 2 hard delete: a = the stream's version; 3 truncation: b =
/// the version to keep from; 4 a stream's rule, 5 a prefix's: a = max_count, b =
/// max_age_us); the entry takes the next position and the head moves past it; the
/// notification tells waiters the new head and `changes`.
const FUNCTIONS: &str = "
create function rule_for(s text) returns table (max_count bigint, max_age_us bigint)
language sql stable as $f$
  select x.max_count, x.max_age_us from (
    select 0 as o, 0 as l, r.max_count, r.max_age_us from rules r
      where not r.category and r.target = s
    union all
    select 1, -length(r.target), r.max_count, r.max_age_us from rules r
      where r.category and starts_with(s, r.target)) x
  order by x.o, x.l limit 1
$f$;

create function remove_before(s text, x bigint)
returns table (events_removed bigint, chunk_rows bigint, bytes_before bigint, bytes_after bigint)
language plpgsql as $f$
declare _c bigint; _sk int; _fv bigint; _n int; _k int; _b bigint;
begin
  update streams t set removed_before = x where t.name = s and t.removed_before < x;
  with gone as (
    delete from chunks c
      where c.stream = s and c.stream <> '' and c.first_version < x and c.first_version + c.n <= x
      returning c.chunk, c.first_pos, c.first_version, c.n, c.skip, c.ids,
        (pg_column_size(c.types) + pg_column_size(c.schema_versions) + pg_column_size(c.ids)
         + pg_column_size(c.metadata) + pg_column_size(c.data))::int8 as bytes),
  husks as (
    insert into removed_chunks (chunk, first_pos, stream, first_version)
      select g.chunk, g.first_pos, s, g.first_version from gone g
      where g.skip > 0 or cardinality(array_remove(g.ids, null)) > 0)
  select coalesce(sum(g.n - g.skip), 0), count(*), coalesce(sum(g.bytes), 0)
    into events_removed, chunk_rows, bytes_before from gone g;
  bytes_after := 0;
  -- The one chunk that may hold removed and kept events: the last one starting below x.
  select c.chunk, c.skip, c.first_version, c.n,
         (pg_column_size(c.types) + pg_column_size(c.schema_versions) + pg_column_size(c.ids)
          + pg_column_size(c.metadata) + pg_column_size(c.data))::int8
    into _c, _sk, _fv, _n, _b from chunks c
    where c.stream = s and c.stream <> '' and c.first_version < x
    order by c.first_version desc limit 1;
  if _c is not null and _fv + _n > x and _fv + _sk < x then
    _k := x - _fv;
    update chunks c set skip = _k,
        types = c.types[_k - _sk + 1 : _n - _sk],
        schema_versions = c.schema_versions[_k - _sk + 1 : _n - _sk],
        ids = c.ids[_k - _sk + 1 : _n - _sk],
        metadata = c.metadata[_k - _sk + 1 : _n - _sk],
        data = c.data[_k - _sk + 1 : _n - _sk]
      where c.chunk = _c
      returning bytes_after + (pg_column_size(c.types) + pg_column_size(c.schema_versions)
        + pg_column_size(c.ids) + pg_column_size(c.metadata) + pg_column_size(c.data))::int8
      into bytes_after;
    events_removed := events_removed + (_k - _sk);
    chunk_rows := chunk_rows + 1;
    bytes_before := bytes_before + _b;
  end if;
  return next;
end $f$;

create function remove_aged(s text, now_us bigint)
returns table (events_removed bigint, chunk_rows bigint, bytes_before bigint, bytes_after bigint)
language plpgsql as $f$
declare _age bigint; _x bigint;
begin
  select r.max_age_us into _age from rule_for(s) r;
  if coalesce(_age, 0) > 0 then
    select c.first_version + c.skip into _x from chunks c
      where c.stream = s and c.stream <> '' and c.ts >= greatest(0, now_us - _age)
      order by c.first_version limit 1;
    if _x is null then
      select t.version + 1 into _x from streams t where t.name = s;
    end if;
  end if;
  if _x is null then
    return query select 0::int8, 0::int8, 0::int8, 0::int8;
  else
    return query select * from remove_before(s, _x);
  end if;
end $f$;

create function rule_streams(t text, cat boolean) returns table (name text, version bigint)
language sql stable as $f$
  select x.name, x.version from streams x where not cat and x.name = t and not x.tombstone
  union all
  select x.name, x.version from streams x where cat and starts_with(x.name, t) and not x.tombstone
  order by 1
$f$;

create function set_rule(t text, cat boolean, mc bigint, ma bigint, now_us bigint)
returns bigint language plpgsql as $f$
declare _n bigint := 0; _s record; _mc bigint;
begin
  for _s in select * from rule_streams(t, cat) loop
    _n := _n + (select a.events_removed from remove_aged(_s.name, now_us) a);
  end loop;
  if mc = 0 and ma = 0 then
    delete from rules r where r.category = cat and r.target = t;
  else
    insert into rules as r values (cat, t, mc, ma) on conflict (category, target)
      do update set max_count = excluded.max_count, max_age_us = excluded.max_age_us;
  end if;
  for _s in select * from rule_streams(t, cat) loop
    select r.max_count into _mc from rule_for(_s.name) r;
    if coalesce(_mc, 0) > 0 and _s.version + 1 - _mc > 0 then
      _n := _n + (select g.events_removed from remove_before(_s.name, _s.version + 1 - _mc) g);
    end if;
  end loop;
  return _n;
end $f$;

create function apply_entry(kind int, t text, a bigint, b bigint, op bytea, key bigint,
                            now_us bigint, channel text)
returns table (entry_pos bigint, events_removed bigint, new_changes bigint)
language plpgsql as $f$
declare _next bigint; _ts bigint; _n bigint;
begin
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint)
    into _next, _ts from head h for update;
  if kind in (1, 2) then
    update streams x set tombstone = x.tombstone or kind = 2, deleted = true where x.name = t;
    _n := (select g.events_removed from remove_before(t, a + 1) g);
  elsif kind = 3 then
    _n := (select g.events_removed from remove_before(t, b) g);
  elsif kind in (4, 5) then
    _n := set_rule(t, kind = 5, a, b, now_us);
  else
    raise exception 'unknown lifecycle entry kind %', kind;
  end if;
  insert into entries (pos, chunk, ts, target, op) values (_next, key, _ts, t, op);
  update head h set next = _next + 1, last_ts = _ts, entries = h.entries + 1,
      changes = h.changes + 1,
      count_rules = (select count(*) from rules r where r.max_count > 0)
    returning h.changes into new_changes;
  perform pg_notify(channel, (_next + 1)::text || ' ' || new_changes::text);
  entry_pos := _next;
  events_removed := _n;
  return next;
end $f$;
";

/// The append function (version 4). One call appends a batch of requests (each one evs
/// append, possibly over several streams). Per request one row: res >= 0 its first
/// position (written; versions: each entry's stream version after it, 0 for events
/// without a stream); -1 a wrong expected version (entry: which entry of the request,
/// 1-based; actual: the stream's version, -1 none); -2 a retry, every event's id stored
/// (actual: the lowest stored position); -3 some ids stored, not all (nothing written);
/// -4 a hard-deleted stream (entry: which one; nothing written). Every row also carries
/// the head's `changes` after the batch. Expected: >= 0 exact, -1 any, -2 no stream, -3
/// exists. A soft-deleted stream keeps its row and version, and is no stream for an
/// expected version until it is appended to again (`deleted`): "no stream" and "any"
/// continue its versions, "exists" and its old version are refused (actual -1).
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
/// insert at the end; a refused request's ids are deleted again. When some rule has a
/// count limit (`head.count_rules`), the written streams' events beyond their limits are
/// removed in the same transaction.
const APPEND: &str = "
create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                       e_id uuid[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[],
                       i_id uuid[], i_entry int[], i_idx int[], check_ids boolean,
                       channel text)
returns table (res bigint, entry int, actual bigint, versions bigint[], changes bigint)
language plpgsql as $$
declare
  _next bigint; _ts bigint; _r int; _j int; _e int := 1; _ev int := 1; _ne int; _nev int;
  _found bigint; _low bigint; _names text[]; _vers bigint[]; _k int; _cur bigint;
  _tomb boolean; _del boolean; _seen bigint; _ok boolean; _bad int; _badv bigint; _v bigint; _c int; _s text;
  _keys bigint[]; _first bigint; _rules int; _chg bigint; _gone bigint := 0; _mc bigint;
  _res bigint; _ent int; _act bigint; _vl bigint[];
  _has_ids boolean := coalesce(cardinality(i_id), 0) > 0;
  -- With check_ids: per request, how many of its ids are stored and the lowest position.
  _found_r bigint[] := '{}'; _low_r bigint[] := '{}'; _ereq int[] := '{}';
  -- The chunks to write: first position, key, stream, first version, count, and where
  -- their events start in the event arrays.
  _cp bigint[] := '{}'; _ck bigint[] := '{}'; _cs text[] := '{}'; _cv bigint[] := '{}';
  _cc int[] := '{}'; _ce int[] := '{}';
  -- Each request's answer (returned at the end, with the head's changes then): result,
  -- entry, actual, and where its versions are in _o_vers (count -1: none).
  _o_res bigint[] := '{}'; _o_ent int[] := '{}'; _o_act bigint[] := '{}';
  _o_vs int[] := '{}'; _o_vn int[] := '{}'; _o_vers bigint[] := '{}';
  -- The streams written and their versions after the batch (for count limits).
  _ws text[] := '{}'; _wv bigint[] := '{}';
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
  select h.next, greatest(h.last_ts, (extract(epoch from clock_timestamp()) * 1000000)::bigint),
         h.count_rules, h.changes
    into _next, _ts, _rules, _chg from head h for update;
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
    _vl := null;
    if _found > 0 then
      _res := case when _found = _nev then -2 else -3 end; _ent := 0; _act := _low;
      _bad := -1;
    elsif _ne = 1 and s_stream[_e] <> '' then
      -- One stream: check and advance in one statement; _v is its version before.
      _s := s_stream[_e]; _c := s_count[_e]; _v := null;
      case s_expected[_e]
        when -1 then
          insert into streams as s (name, version, first_pos) values (_s, _c - 1, _next)
            on conflict (name) do update set version = s.version + _c, deleted = false
            where not s.tombstone
            returning s.version - _c into _v;
        when -2 then
          insert into streams as s (name, version, first_pos) values (_s, _c - 1, _next)
            on conflict (name) do update set version = s.version + _c, deleted = false
            where s.deleted and not s.tombstone
            returning s.version - _c into _v;
        when -3 then
          update streams s set version = s.version + _c
            where s.name = _s and not s.tombstone and not s.deleted
            returning s.version - _c into _v;
        else
          update streams s set version = s.version + _c
            where s.name = _s and s.version = s_expected[_e] and not s.tombstone
              and not s.deleted
            returning s.version - _c into _v;
      end case;
      if _v is null then
        select case when s.deleted then -1 else s.version end, s.tombstone into _cur, _tomb
          from streams s where s.name = _s;
        _res := case when _tomb then -4 else -1 end;
        _ent := 1; _act := coalesce(_cur, -1); _bad := 1;
      else
        _res := _next; _ent := 0; _act := 0; _vl := array[_v + _c];
        _cp := _cp || _next; _ck := _ck || _keys[_e]; _cs := _cs || _s;
        _cv := _cv || (_v + 1); _cc := _cc || _c; _ce := _ce || _ev;
        _ws := _ws || _s; _wv := _wv || (_v + _c);
        _next := _next + _c;
      end if;
    else
      -- Several entries (or events without a stream): check them all, then write.
      _names := '{}'; _vers := '{}'; _tomb := false;
      for _j in _e .. _e + _ne - 1 loop
        _k := array_position(_names, s_stream[_j]);
        _cur := null; _del := false;
        if _k is not null then
          _cur := _vers[_k];
        elsif s_stream[_j] <> '' then
          select s.version, s.tombstone, s.deleted into _cur, _tomb, _del from streams s
            where s.name = s_stream[_j] for update;
        end if;
        -- A stream soft-deleted and not appended to since is no stream for the check; its
        -- versions continue after _cur.
        _seen := case when coalesce(_del, false) then null else _cur end;
        _ok := case s_expected[_j] when -1 then true when -2 then _seen is null
                 when -3 then _seen is not null else _seen = s_expected[_j] end;
        if coalesce(_tomb, false) or not coalesce(_ok, false) then
          _bad := _j - _e + 1; _badv := coalesce(_seen, -1); exit;
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
        _res := case when coalesce(_tomb, false) then -4 else -1 end;
        _ent := _bad; _act := _badv;
      else
        _res := _next; _ent := 0; _act := 0; _vl := '{}';
        _k := _ev;
        for _j in _e .. _e + _ne - 1 loop
          _c := s_count[_j]; _s := s_stream[_j];
          _v := -1;
          if _s <> '' then
            insert into streams as s (name, version, first_pos) values (_s, _c - 1, _next)
              on conflict (name) do update set version = s.version + _c, deleted = false
              returning s.version - _c into _v;
            _vl := _vl || (_v + _c);
            _ws := _ws || _s; _wv := _wv || (_v + _c);
          else
            _vl := _vl || 0::bigint;
          end if;
          _cp := _cp || _next; _ck := _ck || _keys[_j]; _cs := _cs || _s;
          _cv := _cv || (_v + 1); _cc := _cc || _c; _ce := _ce || _k;
          _next := _next + _c;
          _k := _k + _c;
        end loop;
      end if;
    end if;
    if _bad > 0 and _has_ids and _nev > 0 then
      -- Refused by a version or a tombstone: its ids, written before the lock, go again.
      -- (A request whose ids were found stored wrote none: those are the earlier append's.)
      delete from ids where id = any (e_id[_ev : _ev + _nev - 1]);
    end if;
    _o_res := _o_res || _res; _o_ent := _o_ent || _ent; _o_act := _o_act || _act;
    _o_vs := _o_vs || (coalesce(cardinality(_o_vers), 0) + 1);
    _o_vn := _o_vn || coalesce(cardinality(_vl), -1);
    _o_vers := _o_vers || _vl;
    _e := _e + _ne;
    _ev := _ev + _nev;
  end loop;
  insert into chunks (first_pos, chunk, stream, first_version, n, ts, types, schema_versions,
                      ids, metadata, data)
    select x.p, x.k, x.s, case when x.s = '' then 0 else x.v end, x.c, _ts,
           e_type[x.e : x.e + x.c - 1], e_sv[x.e : x.e + x.c - 1], e_id[x.e : x.e + x.c - 1],
           e_meta[x.e : x.e + x.c - 1], e_data[x.e : x.e + x.c - 1]
    from unnest(_cp, _ck, _cs, _cv, _cc, _ce) as x(p, k, s, v, c, e)
    where x.c > 0;
  if _rules > 0 then
    -- Count limits remove at once: the written streams' events beyond their rule's.
    for _j in 1 .. coalesce(cardinality(_ws), 0) loop
      select r.max_count into _mc from rule_for(_ws[_j]) r;
      if coalesce(_mc, 0) > 0 and _wv[_j] + 1 - _mc > 0 then
        _gone := _gone + (select g.events_removed from remove_before(_ws[_j], _wv[_j] + 1 - _mc) g);
      end if;
    end loop;
  end if;
  if _gone > 0 then
    _chg := _chg + 1;
  end if;
  update head set next = _next, last_ts = _ts, changes = _chg;
  if _next > _first then
    -- Delivered by the server at the commit, to the handles that wait (listener.rs).
    perform pg_notify(channel, _next::text || ' ' || _chg::text);
  end if;
  for _r in 1 .. coalesce(cardinality(r_entries), 0) loop
    res := _o_res[_r]; entry := _o_ent[_r]; actual := _o_act[_r];
    versions := case when _o_vn[_r] < 0 then null
                     else _o_vers[_o_vs[_r] : _o_vs[_r] + _o_vn[_r] - 1] end;
    changes := _chg;
    return next;
  end loop;
end $$;
";

/// The SQL that brings the schema from `from` (`None`: no schema) to `SCHEMA_VERSION`,
/// run in one transaction under the schema's advisory lock: by `prepare` on a writable
/// open, and printed by `schema_sql` for a DBA to review and run (the same text). It ends
/// by granting the URL's user what the library needs on the schema (to the role that
/// runs it, nothing it lacks: it owns what it made). `None`: nothing to do, or a version
/// this library cannot bring to its own.
fn ddl(schema: &str, from: Option<i64>, user: &str) -> Option<String> {
    // Each older version's steps up to `TO_7`; then `append` as of version 8 (`append_7`'s
    // edits and its own) and `TO_8`, whatever the version started from.
    let to_7 = match from {
        None => format!(
            "create schema if not exists \"{schema}\";\nset local search_path to \"{schema}\";\n\
             {CREATE}{CHUNKS_AND_IDS}{TO_4}{FUNCTIONS}{APPEND}{TO_5}{TO_6}{TO_7}"
        ),
        // One row per event: to chunks first.
        Some(1 | 2) => format!(
            "set local search_path to \"{schema}\";\n\
             {CHUNKS_AND_IDS}{MIGRATE_TO_3}{TO_4}{FUNCTIONS}{APPEND}{TO_5}{TO_6}{TO_7}"
        ),
        Some(3) => format!(
            "set local search_path to \"{schema}\";\n{TO_4}{FUNCTIONS}{APPEND}{TO_5}{TO_6}{TO_7}"
        ),
        Some(4) => format!("set local search_path to \"{schema}\";\n{TO_5}{TO_6}{TO_7}"),
        Some(5) => format!("set local search_path to \"{schema}\";\n{TO_6}{TO_7}"),
        Some(6) => format!("set local search_path to \"{schema}\";\n{TO_7}"),
        Some(7) => format!("set local search_path to \"{schema}\";\n"),
        _ => return None,
    };
    let steps = format!("{to_7}{}{TO_8}", append_8());
    let role = user.replace('"', "\"\"");
    Some(format!(
        "{steps}
grant usage on schema \"{schema}\" to \"{role}\";
grant select, insert, update, delete on all tables in schema \"{schema}\" to \"{role}\";
grant usage, select, update on all sequences in schema \"{schema}\" to \"{role}\";
"
    ))
}

/// The version DDL starts from if the schema found needs it: `Some(None)` when it is
/// missing, `Some(Some(v))` for an older version this library migrates.
fn fixable(found: Option<Option<i64>>) -> Option<Option<i64>> {
    match found {
        None => Some(None),
        Some(Some(v @ 1..SCHEMA_VERSION)) => Some(Some(v)),
        _ => None,
    }
}

/// The advisory lock under which a schema is created or migrated (one process at a time).
fn lock_sql(schema: &str) -> String {
    format!("select pg_advisory_xact_lock(hashtext('evstore schema {schema}'));")
}

/// What the schema of `conn` is: missing (`None`) or its stored version (`Some(None)`:
/// no valid one), read in `tx`.
async fn look(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<Option<Option<i64>>> {
    let exists: bool = tx
        .query_typed_one(
            "select to_regclass(quote_ident($1) || '.meta') is not null",
            &typed(&[&schema]),
        )
        .await
        .map_err(|e| pg_error("looking for the store's tables", e))?
        .get(0);
    match exists {
        true => Ok(Some(stored_version(tx, schema).await?)),
        false => Ok(None),
    }
}

/// The SQL script that creates or migrates the schema of the store at `url` to this
/// library's version, with what it does in comments, for a DBA to review and run (e.g.
/// `psql -v ON_ERROR_STOP=1 -f FILE` as a role that may create schemas): nothing is
/// executed. A schema already at this version gives a script of comments only.
pub fn schema_sql(url: &str) -> Result<String> {
    let conn = Conn::parse(url)?;
    let runtime = crate::runtime::runtime()?;
    super::block(&runtime, async {
        let mut client = conn.fresh().await?;
        let what = "reading the evstore schema's version";
        conn.within(what, async {
            let tx = client.transaction().await.map_err(|e| pg_error(what, e))?;
            let found = look(&tx, conn.schema()).await?;
            script(&conn, found)
        })
        .await
    })
}

/// The script for a schema found as `found` (see `look`).
fn script(conn: &Conn, found: Option<Option<i64>>) -> Result<String> {
    let (schema, location) = (conn.schema(), conn.location());
    let head = format!(
        "-- evstore {}: the SQL that brings the schema \"{schema}\" of {location}\n\
         -- to version {SCHEMA_VERSION} (what a writable open of libevstore would run), for the \
         role \"{}\".\n",
        env!("CARGO_PKG_VERSION"),
        conn.user()
    );
    let from = match (found, fixable(found)) {
        (_, Some(from)) => from,
        (Some(Some(SCHEMA_VERSION)), None) => {
            return Ok(format!(
                "{head}-- It is at version {SCHEMA_VERSION} already: nothing to do.\n"
            ))
        }
        (found, None) => return Err(version_error(schema, found.flatten())),
    };
    let body = ddl(schema, from, conn.user())
        .ok_or_else(|| Error::new(ErrorKind::Internal, "no SQL for the schema found"))?;
    let what = match from {
        None => "The schema does not exist: this creates it.".to_owned(),
        Some(v) => format!("It is at version {v}: this migrates it (locking its tables)."),
    };
    Ok(format!(
        "{head}-- {what}\n-- Run it as a role that may create schemas (one transaction).\n\
         begin;\n{}\n{body}commit;\n",
        lock_sql(schema)
    ))
}

/// The error for a stored version this library cannot use (`None`: no valid version).
fn version_error(schema: &str, version: Option<i64>) -> Error {
    match version {
        Some(v) if v > SCHEMA_VERSION => Error::new(
            ErrorKind::Corrupt,
            format!(
                "the evstore schema '{schema}' has version {v}, newer than this library's \
                 {SCHEMA_VERSION}: upgrade the library"
            ),
        ),
        _ => Error::new(
            ErrorKind::Corrupt,
            format!("the evstore schema '{schema}' has no valid schema version in its meta table"),
        ),
    }
}

/// Checks the server and the schema at open, within `timeout`: a writable open of a
/// server that takes no writes (a standby) is `ReadOnly`. Creates the schema and its
/// tables if they are missing and migrates an older version (one process at a time: an
/// advisory lock), unless the URL says `migrate=false` (then such an open is `ReadOnly`,
/// naming `evsctl schema --sql`). A read-only open creates nothing: a missing store is
/// `NotFound` there.
pub async fn prepare(conn: &Conn, read_only: bool) -> Result<()> {
    let mut client = conn.fresh().await?;
    conn.within(
        "checking the evstore schema",
        check(conn, &mut client, read_only),
    )
    .await
}

async fn check(conn: &Conn, client: &mut tokio_postgres::Client, read_only: bool) -> Result<()> {
    let schema = conn.schema();
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error("starting the schema check", e))?;
    if !read_only {
        let row = tx
            .query_typed_one(
                "select pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
                &[],
            )
            .await
            .map_err(|e| pg_error("asking whether the server takes writes", e))?;
        let (standby, read_only_server): (bool, bool) = (row.get(0), row.get(1));
        if standby || read_only_server {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} {}: a writable open needs the primary (open this one read-only to \
                     read and follow the log)",
                    conn.location(),
                    match standby {
                        true => "is a standby (pg_is_in_recovery()): it takes no writes",
                        false => "takes no writes (default_transaction_read_only is on)",
                    }
                ),
            ));
        }
    }
    let mut found = look(&tx, schema).await?;
    if let (Some(from), true) = (fixable(found), read_only) {
        return Err(match from {
            None => Error::new(
                ErrorKind::NotFound,
                format!(
                    "no evstore schema '{schema}' in {} (a read-only open creates nothing)",
                    conn.location()
                ),
            ),
            // Versions 1 and 2 keep one row per event, 3 has no lifecycle tables, 4 no
            // checkpoints, 5 no consumers: this library reads none of them.
            Some(v) => Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "the evstore schema '{schema}' has version {v}, older than this library's \
                     {SCHEMA_VERSION}, and a read-only open cannot migrate it: open it once for \
                     writing (that migrates it), then read"
                ),
            ),
        });
    }
    if fixable(found).is_some() {
        // One process creates or migrates; the others find it done once they hold the lock.
        tx.batch_execute(&lock_sql(schema))
            .await
            .map_err(|e| pg_error("locking the schema creation", e))?;
        found = again(&tx, schema, found).await?;
        if let Some(from) = fixable(found) {
            let what = match from {
                None => format!("creating the evstore schema '{schema}'"),
                Some(v) => {
                    format!("migrating the evstore schema '{schema}' from version {v} to {SCHEMA_VERSION}")
                }
            };
            if !conn.migrate() {
                return Err(Error::new(
                    ErrorKind::ReadOnly,
                    format!(
                        "{what} in {} is needed, and the URL's migrate=false forbids this open \
                         to run DDL: have it done with the SQL that `evsctl schema --sql URL` \
                         prints (run by a role that may), or open once without migrate=false",
                        conn.location()
                    ),
                ));
            }
            let steps = ddl(schema, from, conn.user())
                .ok_or_else(|| Error::new(ErrorKind::Internal, format!("no SQL for {what}")))?;
            tx.batch_execute(&steps)
                .await
                .map_err(|e| pg_error(&what, e))?;
            found = Some(Some(SCHEMA_VERSION));
        }
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("committing the schema", e))?;
    match found {
        Some(Some(SCHEMA_VERSION)) if !read_only => {
            // Appends a writer committed but did not live to flush (`flushed`) become
            // readable: this durable commit comes after theirs.
            client
                .query_typed(
                    &conn.qualify(
                        "insert into @.flushed as f (writer, next) select 0, h.next from @.head h \
                         on conflict (writer) do update set next = greatest(f.next, excluded.next)",
                    ),
                    &[],
                )
                .await
                .map_err(|e| pg_error("flushing what earlier writers committed", e))?;
            Ok(())
        }
        Some(Some(SCHEMA_VERSION)) => Ok(()),
        Some(v) => Err(version_error(schema, v)),
        None => Err(Error::new(
            ErrorKind::Internal,
            format!("the evstore schema '{schema}' was neither found nor created"),
        )),
    }
}

/// The schema looked at again under the lock: another process may have created or
/// migrated it meanwhile. Asked of pg_class itself, with this statement's snapshot:
/// to_regclass answers from the session's catalog cache, which waiting for an advisory
/// lock does not refresh, so it missed tables another process created meanwhile.
async fn again(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    before: Option<Option<i64>>,
) -> Result<Option<Option<i64>>> {
    if before.is_some() {
        return Ok(Some(stored_version(tx, schema).await?));
    }
    let made: bool = tx
        .query_typed_one(
            "select exists (select 1 from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = 'meta')",
            &typed(&[&schema]),
        )
        .await
        .map_err(|e| pg_error("looking for the store's tables", e))?
        .get(0);
    match made {
        true => Ok(Some(stored_version(tx, schema).await?)),
        false => Ok(None),
    }
}

/// The version in the schema's `meta` table (`None`: missing or not a number).
async fn stored_version(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<Option<i64>> {
    let row = tx
        .query_typed_opt(
            &format!("select value from \"{schema}\".meta where key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the schema version", e))?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn append_7_makes_every_edit_of_append() {
        let v7 = super::append_7();
        assert_eq!(v7.matches("_fs").count(), 4, "{v7}");
        assert_eq!(v7.matches("_sealed").count(), 2, "{v7}");
        assert!(v7.starts_with("\ncreate or replace function append("));
    }

    #[test]
    fn append_8_makes_its_commit_asynchronous_only_in_the_committers_transaction() {
        let v8 = super::append_8();
        assert_eq!(v8.matches("_fs").count(), 4, "{v8}");
        assert_eq!(v8.matches("evstore.async_commit").count(), 3, "{v8}");
        assert_eq!(v8.matches("'synchronous_commit', 'off'").count(), 1, "{v8}");
    }
}
