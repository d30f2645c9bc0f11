//! The schemas of the designs under test. Each lives in its own schema (`bench_<design>`),
//! dropped and created anew before a design's cases run.
//!
//! Conventions shared by the designs' append functions (gc, seq):
//!   a_stream text[], a_expected int8[] (-1: the stream must not exist), a_count int4[]:
//!     one entry per append;
//!   e_ai int4[] (1-based index of the event's append), e_id bytea[] (16-byte event ids),
//!   e_data bytea[]: one entry per event, the events of an append contiguous and in order.

/// Baseline 1: a `bigserial` position (gaps, commits out of order), unique (stream, version).
pub const BIGSERIAL: &str = "
create table events (
  pos bigserial primary key,
  stream text not null,
  version bigint not null,
  ts timestamptz not null default clock_timestamp(),
  type text not null,
  data bytea not null,
  unique (stream, version)
);";

/// Baseline 2: one counter row updated in every append's transaction (gapless, serial).
pub const COUNTER: &str = "
create table head (next bigint not null);
insert into head values (0);
create table events (
  pos bigint primary key,
  stream text not null,
  version bigint not null,
  ts timestamptz not null default clock_timestamp(),
  type text not null,
  data bytea not null,
  unique (stream, version)
);";

/// Design GC: the counter row, with one transaction per batch of appends (client-side
/// group commit: a process's committer sends every append waiting in that process as one
/// call). Expected versions through a streams table; event ids unique.
pub const GROUP_COMMIT: &str = "
create table head (next bigint not null, last_ts timestamptz not null);
insert into head values (0, '-infinity');
create table streams (name text primary key, version bigint not null);
create table events (
  pos bigint primary key,
  stream text not null,
  version bigint not null,
  ts timestamptz not null,
  type text not null,
  event_id bytea,
  data bytea not null
);
create unique index events_stream_version on events (stream, version);
create unique index events_event_id on events (event_id) where event_id is not null;

create function append(a_stream text[], a_expected bigint[], a_count int[],
                       e_ai int[], e_id bytea[], e_data bytea[]) returns bigint[]
language plpgsql as $$
declare
  _n int := coalesce(array_length(a_stream, 1), 0);
  _st int[] := array_fill(0, array[_n]);
  _fp bigint[] := array_fill(null::bigint, array[_n]);
  _fv bigint[] := array_fill(null::bigint, array[_n]);
  _res bigint[] := array_fill(-1::bigint, array[_n]);
  _next bigint; _ts timestamptz; _i int; _s int := 1; _p bigint; _v bigint;
begin
  -- The one lock every writer of the store takes: positions are handed out in commit order.
  select next, greatest(last_ts, clock_timestamp()) into _next, _ts from head for update;
  for _i in 1.._n loop
    _st[_i] := _s;
    _p := null;
    if e_id[_s] is not null then
      select pos into _p from events where event_id = e_id[_s];
    end if;
    if _p is not null then
      _res[_i] := _p;  -- a retry: the original position, nothing written
    else
      _v := null;
      if a_expected[_i] = -1 then
        insert into streams (name, version) values (a_stream[_i], a_count[_i] - 1)
          on conflict do nothing returning version into _v;
      else
        update streams set version = version + a_count[_i]
          where name = a_stream[_i] and version = a_expected[_i] returning version into _v;
      end if;
      if _v is not null then
        _fp[_i] := _next; _fv[_i] := _v - a_count[_i] + 1; _res[_i] := _next;
        _next := _next + a_count[_i];
      end if;
    end if;
    _s := _s + a_count[_i];
  end loop;
  insert into events (pos, stream, version, ts, type, event_id, data)
    select _fp[e.ai] + (e.ord - _st[e.ai]), a_stream[e.ai], _fv[e.ai] + (e.ord - _st[e.ai]),
           _ts, 'Bench', e.id, e.data
    from unnest(e_ai, e_id, e_data) with ordinality as e(ai, id, data, ord)
    where _fp[e.ai] is not null;
  update head set next = _next, last_ts = _ts;
  -- No NOTIFY here: its lock would be held through the commit, inside the head lock.
  -- The committer notifies in a statement of its own right after the commit.
  return _res;
end $$;";

/// Design SEQ: writers insert unsequenced appends in parallel (no global lock); a
/// sequencer, whoever holds the advisory lock, gives committed appends dense positions, one
/// `positions` row per append. Every writer runs the sequencer right after its insert
/// commits (leaderless; the lock holder sequences everything committed and pending).
pub const SEQUENCER: &str = "
create sequence append_ids;
create table streams (name text primary key, version bigint not null);
create table events (
  append_id bigint not null,
  idx int not null,
  stream text not null,
  version bigint not null,
  type text not null,
  event_id bytea,
  data bytea not null,
  primary key (append_id, idx)
);
create unique index events_stream_version on events (stream, version);
create unique index events_event_id on events (event_id) where event_id is not null;
create table pending (append_id bigint primary key, n int not null);
create table positions (
  first_pos bigint primary key,
  append_id bigint not null unique,
  n int not null,
  ts timestamptz not null
);
create table head (next bigint not null, last_ts timestamptz not null);
insert into head values (0, '-infinity');

create function append(a_stream text[], a_expected bigint[], a_count int[],
                       e_ai int[], e_id bytea[], e_data bytea[]) returns bigint[]
language plpgsql as $$
declare
  _n int := coalesce(array_length(a_stream, 1), 0);
  _st int[] := array_fill(0, array[_n]);
  _aid bigint[] := array_fill(null::bigint, array[_n]);
  _fv bigint[] := array_fill(null::bigint, array[_n]);
  _res bigint[] := array_fill(-1::bigint, array[_n]);
  _i int; _s int := 1; _a bigint; _v bigint;
begin
  for _i in 1.._n loop
    _st[_i] := _s;
    _a := null;
    if e_id[_s] is not null then
      select append_id into _a from events where event_id = e_id[_s];
    end if;
    if _a is not null then
      _res[_i] := _a;  -- a retry: the original append, nothing written
    else
      _v := null;
      if a_expected[_i] = -1 then
        insert into streams (name, version) values (a_stream[_i], a_count[_i] - 1)
          on conflict do nothing returning version into _v;
      else
        update streams set version = version + a_count[_i]
          where name = a_stream[_i] and version = a_expected[_i] returning version into _v;
      end if;
      if _v is not null then
        _a := nextval('append_ids');
        _aid[_i] := _a; _fv[_i] := _v - a_count[_i] + 1; _res[_i] := _a;
      end if;
    end if;
    _s := _s + a_count[_i];
  end loop;
  insert into events (append_id, idx, stream, version, type, event_id, data)
    select _aid[e.ai], e.ord - _st[e.ai], a_stream[e.ai], _fv[e.ai] + (e.ord - _st[e.ai]),
           'Bench', e.id, e.data
    from unnest(e_ai, e_id, e_data) with ordinality as e(ai, id, data, ord)
    where _aid[e.ai] is not null;
  insert into pending (append_id, n)
    select _aid[i], a_count[i] from generate_subscripts(_aid, 1) as i where _aid[i] is not null;
  return _res;
end $$;

-- Positions of the given appends (first position of each), sequencing what is pending if
-- one of them has none yet. Called in its own transaction after the append's commit.
-- Returns null when another session is sequencing right now: wait for its notification
-- (or a millisecond) and call again. Never more than one sequencer, and none queues
-- behind another one.
create function sequence(want bigint[]) returns bigint[]
language plpgsql as $$
declare
  _res bigint[]; _base bigint; _ts timestamptz; _got bigint;
begin
  loop
    select array_agg(p.first_pos order by w.ord) into _res
      from unnest(want) with ordinality as w(a, ord) left join positions p on p.append_id = w.a;
    if array_position(_res, null) is null then
      return _res;
    end if;
    -- One sequencer at a time, until its commit: the next one sees all it did.
    if not pg_try_advisory_xact_lock(7140014) then
      return null;
    end if;
    select array_agg(p.first_pos order by w.ord) into _res
      from unnest(want) with ordinality as w(a, ord) left join positions p on p.append_id = w.a;
    if array_position(_res, null) is null then
      return _res;
    end if;
    select next, greatest(last_ts, clock_timestamp()) into _base, _ts from head for update;
    with taken as (
      delete from pending where append_id in
        (select append_id from pending order by append_id limit 20000)
      returning append_id, n
    ), placed as (
      insert into positions (first_pos, append_id, n, ts)
        select _base + sum(n) over (order by append_id) - n, append_id, n, _ts from taken
      returning n
    )
    select coalesce(sum(n), 0) into _got from placed;
    if _got = 0 then
      raise exception 'sequence: appends % are neither pending nor placed', want;
    end if;
    update head set next = _base + _got, last_ts = _ts;
    perform pg_notify('evs_bench', (_base + _got)::text);
  end loop;
end $$;";

/// Design C: counter row taken last. One transaction per batch of appends (client-side
/// group commit) inserts the events first, in parallel with other processes, with no
/// position (an append id and an index); only then it takes the counter row and writes
/// one `positions` row per append. The counter row is held for the few small rows and the
/// commit, not for the events.
pub const LATE_COUNTER: &str = "
create sequence append_ids;
create table streams (name text primary key, version bigint not null);
create table events (
  append_id bigint not null,
  idx int not null,
  stream text not null,
  version bigint not null,
  type text not null,
  event_id bytea,
  data bytea not null,
  primary key (append_id, idx)
);
create unique index events_stream_version on events (stream, version);
create unique index events_event_id on events (event_id) where event_id is not null;
create table positions (
  first_pos bigint primary key,
  append_id bigint not null unique,
  n int not null,
  ts timestamptz not null
);
create table head (next bigint not null, last_ts timestamptz not null);
insert into head values (0, '-infinity');

create function append(a_stream text[], a_expected bigint[], a_count int[],
                       e_ai int[], e_id bytea[], e_data bytea[]) returns bigint[]
language plpgsql as $$
declare
  _n int := coalesce(array_length(a_stream, 1), 0);
  _st int[] := array_fill(0, array[_n]);
  _aid bigint[] := array_fill(null::bigint, array[_n]);
  _fv bigint[] := array_fill(null::bigint, array[_n]);
  _res bigint[] := array_fill(-1::bigint, array[_n]);
  _i int; _s int := 1; _a bigint; _v bigint; _p bigint; _next bigint; _ts timestamptz;
begin
  for _i in 1.._n loop
    _st[_i] := _s;
    _p := null;
    if e_id[_s] is not null then
      select p.first_pos into _p from events e join positions p using (append_id)
        where e.event_id = e_id[_s];
    end if;
    if _p is not null then
      _res[_i] := _p;  -- a retry: the original position, nothing written
    else
      _v := null;
      if a_expected[_i] = -1 then
        insert into streams (name, version) values (a_stream[_i], a_count[_i] - 1)
          on conflict do nothing returning version into _v;
      else
        update streams set version = version + a_count[_i]
          where name = a_stream[_i] and version = a_expected[_i] returning version into _v;
      end if;
      if _v is not null then
        _aid[_i] := nextval('append_ids'); _fv[_i] := _v - a_count[_i] + 1;
      end if;
    end if;
    _s := _s + a_count[_i];
  end loop;
  insert into events (append_id, idx, stream, version, type, event_id, data)
    select _aid[e.ai], e.ord - _st[e.ai], a_stream[e.ai], _fv[e.ai] + (e.ord - _st[e.ai]),
           'Bench', e.id, e.data
    from unnest(e_ai, e_id, e_data) with ordinality as e(ai, id, data, ord)
    where _aid[e.ai] is not null;
  -- Last: the counter row, held until the commit; positions in commit order.
  select next, greatest(last_ts, clock_timestamp()) into _next, _ts from head for update;
  for _i in 1.._n loop
    if _aid[_i] is not null then
      _res[_i] := _next;
      _next := _next + a_count[_i];
    end if;
  end loop;
  insert into positions (first_pos, append_id, n, ts)
    select _res[i], _aid[i], a_count[i], _ts from generate_subscripts(_aid, 1) as i
    where _aid[i] is not null;
  update head set next = _next, last_ts = _ts;
  return _res;
end $$;";
