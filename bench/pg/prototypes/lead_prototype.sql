drop schema if exists lp cascade;
create schema lp;
set search_path = lp;
create table head (next bigint not null);
insert into head values (0);
create table streams (name text primary key, version bigint not null);
create table staged (k bigint primary key, stream text not null, n int not null, data bytea[] not null);
create sequence keys;
create table chunks (first_pos bigint primary key, k bigint not null unique, stream text not null,
  first_version bigint not null, n int not null, data bytea[] not null);
create index on chunks (stream, first_version);

-- The leader: positions every staged request it sees, under the head lock it holds.
create function lp.position_staged() returns int language plpgsql as $$
declare _next bigint; _r record; _v bigint; _m int := 0; _ks bigint[] := '{}';
begin
  select h.next into _next from lp.head h;
  for _r in select * from lp.staged order by k loop
    insert into lp.streams as s (name, version) values (_r.stream, _r.n - 1)
      on conflict (name) do update set version = s.version + _r.n returning s.version - _r.n into _v;
    insert into lp.chunks values (_next, _r.k, _r.stream, _v + 1, _r.n, _r.data);
    _next := _next + _r.n; _m := _m + 1; _ks := _ks || _r.k;
  end loop;
  delete from lp.staged where k = any(_ks);
  update lp.head set next = _next;
  return _m;
end $$;

create procedure lp.app(s text, d bytea[], inout pos bigint default null) language plpgsql as $$
declare _k bigint := nextval('lp.keys');
begin
  insert into lp.staged values (_k, s, cardinality(d), d);
  set local synchronous_commit = off;
  commit;
  loop
    if pg_try_advisory_xact_lock(4242) then
      perform pg_advisory_xact_lock(4343);
      perform 1 from lp.head for update;
      perform lp.position_staged();
      commit;
    else
      perform pg_advisory_xact_lock_shared(4343);
      commit;
    end if;
    select c.first_pos into pos from lp.chunks c where c.k = _k;
    exit when pos is not null;
  end loop;
end $$;

drop schema if exists bs cascade;
create schema bs;
create table bs.events (
  pos bigserial primary key, stream text not null, version bigint not null,
  ts timestamptz not null default clock_timestamp(), type text not null, data bytea not null,
  unique (stream, version));
