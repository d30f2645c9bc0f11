#!/bin/sh
# Runs every evsctl command against real stores: made by the bank example and by
# evsctl itself, one damaged in the middle of its log, one with a torn tail, one whose
# streams are deleted, truncated, given retention rules and compacted.
#   tests/bindings/evsctl.sh EVSCTL BANK
# EVSCTL is the installed tool ($PREFIX/bin/evsctl: it finds $PREFIX/lib by itself).
set -u
evsctl=$1
bank=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/evstore-evsctl.XXXXXX")
trap 'kill "$tail_pid" 2>/dev/null; rm -rf "$work"' EXIT
tail_pid=
passed=0
failed=0
ok() { passed=$((passed + 1)); }
no() { echo "evsctl: FAIL: $*"; failed=$((failed + 1)); }

# run WANT_STATUS CMD...: runs evsctl, keeps stdout in $out and stderr in $err.
run() {
    want=$1
    shift
    "$evsctl" "$@" > "$work/out" 2> "$work/err"
    status=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
    if [ "$status" != "$want" ]; then
        no "evsctl $* exited $status, want $want (stderr: $err)"
        return 1
    fi
    if [ "$want" != 0 ] && ! printf '%s' "$err" | grep -q "^evsctl: "; then
        no "evsctl $* failed without a message on stderr"
        return 1
    fi
    return 0
}
# has TEXT: $out contains TEXT (a fixed string).
has() { printf '%s\n' "$out" | grep -qF -- "$1"; }
has_err() { printf '%s\n' "$err" | grep -qF -- "$1"; }

# help: the list, every command's --help, help COMMAND
run 0 --help && has "verify" && has "dump" && has "tail" && has "schema" && ok || no "--help lists the commands: $out"
for c in info verify tail dump streams stream accounts account metrics snapshot append delete truncate retention compact consumers forget subjects; do
    run 0 "$c" --help && has "usage: evsctl $c" && ok || no "$c --help: $out"
done
run 0 help dump && has "base64" && ok || no "help dump: $out"
run 2 && has_err "a COMMAND is needed" && ok || no "no arguments: $err"
run 2 bogus "$work/x" && has_err "no command 'bogus'" && ok || no "an unknown command: $err"
run 2 info && has_err "STORE is missing" && ok || no "a missing STORE: $err"
run 2 stream "$work/x" && has_err "wrong number of arguments" && ok || no "stream without NAME: $err"
run 2 dump --bogus "$work/x" && has_err "unknown option '--bogus'" && ok || no "an unknown option: $err"
run 1 info "$work/missing" && has_err "EVS_ERR_NOT_FOUND" && ok || no "info on a missing store: $err"

# a store made by the bank example, then events of evsctl's own
bankstore=$work/bank
LD_LIBRARY_PATH="$(dirname "$evsctl")/../lib" "$bank" "$bankstore" > /dev/null || no "the bank example failed"
run 0 accounts "$bankstore" && [ "$out" = "$(printf 'alice\t1300 USD\t3 events')" ] && ok || no "accounts: $out"
run 0 accounts --json "$bankstore" &&
    [ "$out" = '{"id":"alice","balance":1300,"currency":"USD","closed":false,"events":3,"last_position":2}' ] && ok ||
    no "accounts --json: $out"
run 0 account "$bankstore" alice && has "1300 USD" && ok || no "account alice: $out"
run 1 account "$bankstore" bob && has_err "EVS_ERR_NOT_FOUND" && ok || no "account bob: $err"
run 0 append "$bankstore" notes Noted 'say "hi"	now' && [ "$out" = 3 ] && ok || no "append: $out"
run 0 append "$bankstore" blobs Raw "$(printf 'a\377\376')" && [ "$out" = 4 ] && ok || no "append bytes: $out"
run 2 dump "$bankstore" 1x && has_err "FROM must be a whole number" && ok || no "dump 1x: $err"

run 0 dump --json "$bankstore" 3 &&
    [ "$(printf '%s\n' "$out" | wc -l)" = 2 ] &&
    has '"position":3,' && has '"stream":"notes","stream_version":0,"type":"Noted"' &&
    has '"payload":"say \"hi\"\tnow","payload_encoding":"utf-8"' &&
    has '"payload":"Yf/+","payload_encoding":"base64"' && has '"id":null' && ok || no "dump --json: $out"
run 0 dump "$bankstore" && [ "$(printf '%s\n' "$out" | wc -l)" = 5 ] && has "<3 bytes>" && ok || no "dump: $out"
run 0 streams "$bankstore" &&
    [ "$out" = "$(printf 'account-alice\t3 events\tfrom position 0\nnotes\t1 event\tfrom position 3\nblobs\t1 event\tfrom position 4')" ] &&
    ok || no "streams: $out"
run 0 stream "$bankstore" account-alice 1 && [ "$(printf '%s\n' "$out" | wc -l)" = 2 ] && has "MoneyDeposited" && ok ||
    no "stream account-alice 1: $out"
run 1 stream "$bankstore" nope && has_err "stream 'nope' does not exist" && ok || no "stream nope: $err"
run 0 tail -n 2 "$bankstore" && [ "$(printf '%s\n' "$out" | wc -l)" = 2 ] && has "notes@0" && has "blobs@0" && ok ||
    no "tail -n 2: $out"
run 2 tail -n x "$bankstore" && ok || no "tail -n x"
run 0 metrics "$bankstore" && has "evstore_events_total 5" && ok || no "metrics: $out"
run 0 snapshot "$bankstore" && [ "$out" = "snapshot of 5 events written" ] && ok || no "snapshot: $out"
run 0 info "$bankstore" && has "backend file" && has "events 5" && has "snapshot_used 5 events" && has "accounts 1" &&
    has "segments 1" && has "fsync batch" && has "max_segment_size" && ok || no "info: $out"
run 0 verify "$bankstore" && has "ok: 5 events in 1 segment (" && has " bytes), every checksum good" && ok ||
    no "verify of a good store: $out $err"


# personal data (README "Personal data"): append --subject, forget, subjects, dump
ps="$work/personal"
run 0 append --subject alice "$ps" people Set "ALICE-ADDRESS" && [ "$out" = 0 ] && ok || no "append --subject: $out $err"
run 0 append --subject bob "$ps" people Set "BOB-ADDRESS" && [ "$out" = 1 ] && ok || no "append --subject bob: $out"
if grep -rq "ALICE-ADDRESS" "$ps"; then no "a subject's payload is stored in the clear"; else ok; fi
run 0 dump "$ps" && has "[subject alice] ALICE-ADDRESS" && ok || no "dump before forget: $out"
run 0 forget "$ps" alice && has "forgot subject 'alice' at position 2" && ok || no "forget: $out $err"
run 2 forget "$ps" && has_err "wrong number of arguments" && ok || no "forget without SUBJECT: $err"
run 0 subjects "$ps" && [ "$out" = "$(printf 'alice\t1 event\tforgotten at position 2\nbob\t1 event')" ] && ok ||
    no "subjects: $out"
run 0 subjects --json "$ps" && has '{"subject":"alice","events":1,"forgotten_at":2}' && ok || no "subjects --json: $out"
run 0 dump "$ps" && has "[subject alice] <erased: its subject was forgotten>" && has "[subject bob] BOB-ADDRESS" && ok ||
    no "dump after forget: $out"
run 0 dump --json "$ps" && has '"payload":"","payload_encoding":"utf-8","metadata":"","metadata_encoding":"utf-8","subject":"alice","erased":true' &&
    ok || no "dump --json after forget: $out"
run 1 append --subject alice "$ps" people Set "again" && has_err "forgotten" && ok || no "append to a forgotten subject: $err"
# consumers (docs/consumers.md): evsctl lists, resets and deletes; a small program of the
# C API (built here against the installed library) parks an event and holds a consumer
# open as an application's writer would.
prefix=$(cd "$(dirname "$evsctl")/.." && pwd)
cat > "$work/consumer_app.c" << 'EOF_C'
#include <evstore.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* consumer_app park STORE NAME REASON: parks the consumer's first event.
 * consumer_app hold STORE NAME DIR: opens the consumer, makes DIR/held, waits for
 * DIR/release, closes it (making DIR/closed), waits for DIR/go, opens it again and
 * prints the position it is given first. */
static int wait_for(const char *dir, const char *name) {
    char f[4096];
    snprintf(f, sizeof f, "%s/%s", dir, name);
    for (int i = 0; i < 3000 && access(f, F_OK) != 0; i++)
        usleep(10000);
    return access(f, F_OK) == 0;
}
static void touch(const char *dir, const char *name) {
    char f[4096];
    snprintf(f, sizeof f, "%s/%s", dir, name);
    FILE *fp = fopen(f, "w");
    if (fp)
        fclose(fp);
}
int main(int argc, char **argv) {
    evs_store *s = NULL;
    evs_consumer *c = NULL;
    evs_event e = EVS_STRUCT_INIT(evs_event);
    if (argc != 5 || evs_open(argv[2], NULL, &s, NULL) != EVS_OK ||
        evs_consumer_open(s, argv[3], NULL, &c) != EVS_OK || evs_consumer_next(c, &e, 1000) != EVS_OK) {
        fprintf(stderr, "consumer_app: %s\n", evs_last_error_message());
        return 1;
    }
    if (!strcmp(argv[1], "park")) {
        if (evs_consumer_park(c, e.position, argv[4]) != EVS_OK)
            return 1;
    } else {
        touch(argv[4], "held");
        if (!wait_for(argv[4], "release") || evs_consumer_close(c) != EVS_OK)
            return 1;
        touch(argv[4], "closed");
        if (!wait_for(argv[4], "go") || evs_consumer_open(s, argv[3], NULL, &c) != EVS_OK ||
            evs_consumer_next(c, &e, 1000) != EVS_OK)
            return 1;
        printf("%llu\n", (unsigned long long)e.position);
    }
    return evs_consumer_close(c) == EVS_OK && evs_close(s) == EVS_OK ? 0 : 1;
}
EOF_C
capp=$work/consumer_app
${CC:-cc} -std=c99 -D_DEFAULT_SOURCE -Wall -Werror -I"$prefix/include/evstore" "$work/consumer_app.c" \
    -L"$prefix/lib" -levstore -Wl,-rpath,"$prefix/lib" -o "$capp" || no "the consumer program did not build"
cons=$work/consumers
cp -r "$bankstore" "$cons"
run 0 consumers --help && has "usage: evsctl consumers" && has "--to-time" && ok || no "consumers --help: $out"
run 0 consumers "$cons" && [ -z "$out" ] && ok || no "consumers of a store without any: $out"
run 0 consumers "$cons" reset proj --to-position 2 && [ "$out" = "consumer proj reset: next position 2" ] && ok ||
    no "consumers reset --to-position: $out $err"
run 0 consumers "$cons" && has "$(printf 'proj\tnext 2\tlag 3 events, ')" && has "$(printf ' s\t0 parked\tclosed')" &&
    ok || no "consumers after a reset: $out"
run 0 consumers --json "$cons" list && has '{"name":"proj","next_position":2,"lag_events":3,"lag_seconds":' &&
    has '"parked":0,"open":false}' && ok || no "consumers --json: $out"
run 0 metrics "$cons" && has 'evstore_consumer_next_position{consumer="proj"} 2' &&
    has 'evstore_consumer_lag_events{consumer="proj"} 3' && has 'evstore_consumer_open{consumer="proj"} 0' &&
    has 'evstore_consumer_lag_seconds{consumer="proj"} ' && ok || no "per-consumer metrics: $out"
run 0 consumers "$cons" reset proj --to-time 1970-01-01T00:00:00Z && [ "$out" = "consumer proj reset: next position 0" ] &&
    ok || no "consumers reset --to-time (epoch): $out $err"
run 0 consumers "$cons" reset proj --to-time @4102444800 && [ "$out" = "consumer proj reset: next position 5" ] &&
    ok || no "consumers reset --to-time (2100, past the last event): $out $err"
run 0 consumers "$cons" reset proj --to-time 2000-01-01T00:00:00.5Z && has "next position 0" && ok ||
    no "consumers reset --to-time with a fraction: $out $err"
run 2 consumers "$cons" reset proj --to-time yesterday && has_err "T must be a time in UTC" && ok ||
    no "consumers reset --to-time yesterday: $err"
run 2 consumers "$cons" reset proj --to-position x && has_err "N must be a whole number" && ok ||
    no "consumers reset --to-position x: $err"
run 2 consumers "$cons" reset proj && has_err "reset needs NAME and --to-position N or --to-time T" && ok ||
    no "consumers reset without a target: $err"
run 2 consumers "$cons" bogus && has_err "no subcommand 'bogus'" && ok || no "consumers bogus: $err"
run 2 consumers "$cons" parked && has_err "NAME is missing" && ok || no "consumers parked without NAME: $err"
run 1 consumers "$cons" reset proj --to-position 99 && has_err "EVS_ERR_NOT_FOUND" && has_err "past the end" && ok ||
    no "consumers reset past the end: $err"
run 1 consumers "$cons" reset "" --to-position 0 && has_err "EVS_ERR_INVALID_ARGUMENT" && has_err "empty" && ok ||
    no "consumers reset of an empty name: $err"
run 1 consumers "$cons" parked nobody && has_err "EVS_ERR_NOT_FOUND" && ok || no "consumers parked nobody: $err"
"$capp" park "$cons" parker "no handler for it" || no "the consumer program could not park"
run 0 consumers "$cons" parked parker && has "$(printf '0\t')" && has "Z	no handler for it" && ok ||
    no "consumers parked: $out"
run 0 consumers --json "$cons" parked parker && has '{"position":0,"parked_at_us":' &&
    has '"reason":"no handler for it"}' && ok || no "consumers --json parked: $out"
run 0 consumers "$cons" && has "$(printf 'parker\tnext 1\t')" && has "$(printf '1 parked\tclosed')" && ok ||
    no "consumers lists the parked count: $out"
# open in a running writer: listed as open, neither reset nor deleted; once closed, a
# reset made beside the running writer is obeyed by it
mkdir "$work/hold"
"$capp" hold "$cons" proj "$work/hold" > "$work/hold/out" 2> "$work/hold/err" &
app_pid=$!
i=0
while [ "$i" -lt 300 ] && [ ! -f "$work/hold/held" ]; do sleep 0.02; i=$((i + 1)); done
run 0 consumers "$cons" && has "$(printf '\topen')" && has "$(printf 'proj\tnext ')" && ok ||
    no "consumers shows an open consumer: $out"
run 0 metrics "$cons" && has 'evstore_consumer_open{consumer="proj"} 1' && ok || no "metrics of an open consumer: $out"
run 1 consumers "$cons" reset proj --to-position 1 && has_err "EVS_ERR_LOCKED" && ok ||
    no "consumers reset of an open consumer: $err"
run 1 consumers "$cons" delete proj && has_err "EVS_ERR_LOCKED" && ok || no "consumers delete of an open consumer: $err"
touch "$work/hold/release"
i=0
while [ "$i" -lt 300 ] && [ ! -f "$work/hold/closed" ]; do sleep 0.02; i=$((i + 1)); done
run 0 consumers "$cons" reset proj --to-position 3 && ok || no "consumers reset beside a writer: $out $err"
touch "$work/hold/go"
wait "$app_pid" && [ "$(cat "$work/hold/out")" = 3 ] && ok ||
    no "the writer did not obey the reset made beside it: $(cat "$work/hold/out" "$work/hold/err")"
run 0 consumers "$cons" delete proj && [ "$out" = "consumer proj deleted" ] && ok || no "consumers delete: $out $err"
run 0 consumers "$cons" && ! has "proj" && has "parker" && ok || no "consumers after a delete: $out"
run 1 consumers "$cons" delete proj && has_err "EVS_ERR_NOT_FOUND" && ok || no "consumers delete twice: $err"

# one of a kind: "1 event", "1 segment"
one=$work/one
run 0 append "$one" solo Once only && [ "$out" = 0 ] && ok || no "append to a new store: $out $err"
run 0 streams "$one" && [ "$out" = "$(printf 'solo\t1 event\tfrom position 0')" ] && ok || no "streams, one event: $out"
run 0 verify "$one" && has "ok: 1 event in 1 segment (" && ok || no "verify, one event: $out"
run 0 snapshot "$one" && [ "$out" = "snapshot of 1 event written" ] && ok || no "snapshot, one event: $out"
run 0 info "$one" && has "snapshot_used 1 event" && ! has "1 events" && ok || no "info, one event: $out"

# Progress goes to stderr, and only to a terminal: none here (stderr is a file)...
run 0 verify "$bankstore" && [ -z "$err" ] && ok || no "verify wrote to a stderr that is no terminal: $err"
run 0 dump "$bankstore" && [ -z "$err" ] && ok || no "dump wrote to a stderr that is no terminal: $err"
# ... and some on a terminal (util-linux's script gives the command one): the count of
# events read, erased when done; none for dump when its events go to the terminal too.
if command -v script > /dev/null 2>&1; then
    tty_run() { script -qec "$1" /dev/null > "$work/tty" 2>&1; }
    tty_run "'$evsctl' verify '$bankstore'" && grep -q "verify: 0 of 5 events read" "$work/tty" &&
        grep -q "ok: 5 events in 1 segment" "$work/tty" && grep -q "$(printf '\r\033\[K')" "$work/tty" && ok ||
        no "verify on a terminal shows no progress: $(cat -v "$work/tty")"
    tty_run "'$evsctl' dump '$bankstore' > '$work/dumped'" && grep -q "dump: 0 of 5 events read" "$work/tty" &&
        [ "$(wc -l < "$work/dumped")" = 5 ] && ! grep -q "events read" "$work/dumped" && ok ||
        no "dump to a file from a terminal shows no progress: $(cat -v "$work/tty")"
    tty_run "'$evsctl' dump '$bankstore'" && ! grep -q "events read" "$work/tty" && grep -q "notes@0" "$work/tty" && ok ||
        no "dump to the terminal mixed progress into the events: $(cat -v "$work/tty")"
else
    no "util-linux's script is not installed: the progress on a terminal is not checked (tools/setup.sh installs it)"
fi

# tail -f follows what a writer appends, and ends with status 0 on SIGTERM
"$evsctl" tail -f -n 1 "$bankstore" > "$work/follow" 2> "$work/follow.err" &
tail_pid=$!
sleep 0.3
"$evsctl" append "$bankstore" live Arrived now > /dev/null
"$evsctl" append "$bankstore" live Arrived later > /dev/null
i=0
while [ "$i" -lt 50 ] && [ "$(wc -l < "$work/follow")" -lt 3 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$tail_pid"
wait "$tail_pid"
status=$?
tail_pid=
if [ "$status" = 0 ] && grep -q "blobs@0" "$work/follow" && grep -q "live@1	Arrived	later" "$work/follow"; then ok; else
    no "tail -f (status $status): $(cat "$work/follow" "$work/follow.err")"
fi

# damage in the middle of the log: a writer's recovery refuses it, naming segment and offset
damaged=$work/damaged
i=0
while [ "$i" -lt 30 ]; do "$evsctl" append "$damaged" s T "payload-MARK-$i-x" > /dev/null; i=$((i + 1)); done
seg=$(ls "$damaged"/events/*.wal | head -1)
flip() { # flip FILE MARKER: overwrite the marker's first byte
    off=$(grep -obUa "$2" "$1" | head -1 | cut -d: -f1)
    printf '#' | dd of="$1" bs=1 seek="$off" conv=notrunc 2> /dev/null
}
cp -r "$damaged" "$work/damaged-snap"
flip "$seg" "MARK-12-"
run 1 verify "$damaged" && has_err "EVS_ERR_CORRUPT" && has_err "$(basename "$seg")" && has_err "offset" && ok ||
    no "verify of a damaged store: $err"
# read-only too: damage that valid records follow is corruption for every open (issue 19)
run 1 verify --read-only "$damaged" && has_err "EVS_ERR_CORRUPT" && has_err "$(basename "$seg")" && ok ||
    no "verify --read-only of a damaged store: $out $err"
run 1 info "$damaged" && has_err "EVS_ERR_CORRUPT" && ok || no "info of a damaged store: $out $err"

# damage before a snapshot: recovery does not read it, the full read does
"$evsctl" snapshot "$work/damaged-snap" > /dev/null
flip "$(ls "$work"/damaged-snap/events/*.wal | head -1)" "MARK-12-"
run 1 verify "$work/damaged-snap" && has_err "damage after 12 good events" && has_err "offset" && ok ||
    no "verify of a store damaged before its snapshot: $err"

# a torn tail is not damage: reported, and cut off as a writer's open would
torn=$work/torn
"$evsctl" append "$torn" s T first > /dev/null && "$evsctl" append "$torn" s T second-and-longer > /dev/null
seg=$(ls "$torn"/events/*.wal | head -1)
size=$(grep -obUa "second-and-longer" "$seg" | cut -d: -f1)
truncate -s "$((size + 5))" "$seg"
run 0 verify "$torn" && has "ok: 1 event in 1 segment" && has "torn tail" && ok || no "verify of a torn tail: $out $err"

# Lifecycle: delete, truncate, retention, compact; info's counters and verify with empty
# positions (docs/lifecycle.md).
life=$work/life
i=0
while [ "$i" -lt 20 ]; do
    "$evsctl" append "$life" keep T "KEEP-$i-x" > /dev/null
    "$evsctl" append "$life" gone T "GONE-$i-x" > /dev/null
    "$evsctl" append "$life" cut T "CUT-$i-x" > /dev/null
    i=$((i + 1))
done
run 1 delete "$life" keep --expected 3 && has_err "EVS_ERR_WRONG_EXPECTED_VERSION" && has_err "version 19" && ok ||
    no "delete with a wrong --expected: $err"
run 2 delete "$life" keep --expected x && has_err "--expected must be a whole number" && ok || no "delete --expected x: $err"
run 0 delete "$life" gone --expected 19 && [ "$out" = "deleted stream 'gone' (soft: appending to it again continues its versions) at position 60" ] &&
    ok || no "delete: $out $err"
run 1 delete "$life" gone && has_err "EVS_ERR_NOT_FOUND" && ok || no "delete of a deleted stream: $err"
run 1 stream "$life" gone && has_err "EVS_ERR_NOT_FOUND" && ok || no "stream of a deleted stream: $out $err"
run 0 truncate "$life" cut 15 && [ "$out" = "truncated stream 'cut' before version 15 at position 61" ] && ok ||
    no "truncate: $out $err"
run 2 truncate "$life" cut x && has_err "VERSION must be a whole number" && ok || no "truncate cut x: $err"
run 1 truncate "$life" cut 99 && has_err "EVS_ERR_INVALID_ARGUMENT" && ok || no "truncate past the end: $err"
run 0 retention "$life" keep && [ "$out" = "stream 'keep': no rule" ] && ok || no "retention, no rule: $out $err"
run 0 retention --category tele- --max-age 3600 "$life" &&
    [ "$out" = "$(printf "category 'tele-': max_age 3600 s\nset at position 62")" ] && ok || no "retention --category: $out $err"
run 0 retention "$life" tele-x && [ "$out" = "stream 'tele-x': max_age 3600 s" ] && ok || no "retention of a category's stream: $out"
run 0 retention "$life" keep --max-count 18 && has "stream 'keep': max_count 18" && ok || no "retention --max-count: $out $err"
run 2 retention "$life" && has_err "give a STREAM or --category PREFIX" && ok || no "retention without a target: $err"
run 2 retention "$life" keep --clear --max-count 1 && has_err "--clear cannot go with" && ok || no "retention --clear --max-count: $err"
run 2 retention "$life" keep --max-count 0 && has_err "use --clear" && ok || no "retention --max-count 0: $err"
run 0 retention --category tele- --clear "$life" && has "category 'tele-': rule cleared at position" && ok ||
    no "retention --clear: $out $err"
run 0 retention --category tele- "$life" && [ "$out" = "category 'tele-': no rule" ] && ok || no "a cleared rule: $out"
# 20 of gone, 15 of cut, 2 of keep removed; 5 entries; all still in the active segment
run 0 info "$life" && has "removed_events 37" && has "lifecycle_entries 5" && has "reclaimable_bytes 0" &&
    has "compaction_bytes_per_second 67108864" && has "compaction_trigger_percent 25" && ok || no "info after the operations: $out"
run 0 verify "$life" && has "ok: 23 events in 1 segment" && has "note: 42 empty positions: 37 removed events, 5 lifecycle entries" &&
    ok || no "verify with empty positions: $out $err"
grep -rqa "GONE-3-x" "$life" && ok || no "the removed events' bytes are not in the store before compact (the search finds nothing)"
run 0 compact "$life" && has "compacted: 1 segment rewritten" && has "37 removed events erased" && [ -z "$err" ] && ok ||
    no "compact: $out $err"
# no file of the store holds a removed event's bytes; the kept ones are there
left=$(grep -rla -e "GONE-" -e "CUT-14-x" -e "CUT-0-x" -e "KEEP-0-x" -e "KEEP-1-x" "$life")
[ -z "$left" ] && grep -rqa "KEEP-2-x" "$life" && grep -rqa "CUT-15-x" "$life" && ok ||
    no "removed events' bytes left after compact in: $left"
run 0 info "$life" && has "removed_events 37" && has "reclaimable_bytes 0" && ok || no "info after compact: $out"
run 0 verify "$life" && has "ok: 23 events in 2 segments" && has "note: 42 empty positions" && ok ||
    no "verify after compact: $out $err"
run 0 dump "$life" && [ "$(printf '%s\n' "$out" | wc -l)" = 23 ] && ! has "GONE" && ok || no "dump after compact: $out"
run 0 stream "$life" cut && [ "$(printf '%s\n' "$out" | wc -l)" = 5 ] && printf '%s\n' "$out" | head -n 1 | grep -q "cut@15" &&
    ok || no "stream cut after compact: $out"
run 0 compact "$life" && has "compacted: 0 segments rewritten" && has "0 removed events erased" && ok ||
    no "compact with nothing to do: $out"
# a hard delete of events in a sealed segment: reclaimable until compacted, on a terminal with progress
run 0 delete --hard "$life" cut && has "(hard: the name is refused" && ok || no "delete --hard: $out $err"
run 1 append "$life" cut T again && has_err "EVS_ERR_STREAM_DELETED" && ok || no "append to a hard-deleted stream: $err"
run 0 info "$life" && has "removed_events 42" && ! has "reclaimable_bytes 0" && ok || no "info, reclaimable: $out"
if command -v script > /dev/null 2>&1; then
    script -qec "'$evsctl' compact '$life'" /dev/null > "$work/tty" 2>&1 &&
        grep -q "compact: 0 of [0-9]* reclaimable bytes freed (0%)" "$work/tty" &&
        grep -q "compacted: 1 segment rewritten" "$work/tty" && grep -q "5 removed events erased" "$work/tty" &&
        grep -q "$(printf '\r\033\[K')" "$work/tty" && ok || no "compact on a terminal shows no progress: $(cat -v "$work/tty")"
else
    no "util-linux's script is not installed: compact's progress on a terminal is not checked"
fi
run 0 info "$life" && has "reclaimable_bytes 0" && ok || no "info after the second compact: $out"
# verify still finds damage in a rewritten segment
cp -r "$life" "$work/life-damaged"
seg=$(grep -rla "KEEP-7-x" "$work/life-damaged/events" | head -1)
flip "$seg" "KEEP-7-x"
run 1 verify "$work/life-damaged" && has_err "EVS_ERR_CORRUPT" && has_err "offset" && ok ||
    no "verify of a compacted store damaged: $out $err"

# The same commands on the PostgreSQL backend, when the harness started a server
# (tests/pg/pg_server.sh run ...): STORE is then a URL. Not here: verify's segment and
# offset report and the torn tail (a server has no log files).
if [ -n "${EVS_PG_URL:-}" ]; then
    pg="$EVS_PG_URL?schema=evsctl_test"
    LD_LIBRARY_PATH="$(dirname "$evsctl")/../lib" "$bank" "$pg" > /dev/null || no "the bank example on PostgreSQL failed"
    run 0 accounts "$pg" && [ "$out" = "$(printf 'alice\t1300 USD\t3 events')" ] && ok || no "pg accounts: $out"
    run 0 account "$pg" alice && has "1300 USD" && ok || no "pg account alice: $out"
    run 0 append "$pg" notes Noted 'on a server' && [ "$out" = 3 ] && ok || no "pg append: $out"
    run 0 dump --json "$pg" 3 && has '"position":3,' && has '"payload":"on a server","payload_encoding":"utf-8"' &&
        ok || no "pg dump --json: $out"
    run 0 streams "$pg" && has "account-alice" && has "notes" && ok || no "pg streams: $out"
    run 0 stream "$pg" account-alice && [ "$(printf '%s\n' "$out" | wc -l)" = 3 ] && ok || no "pg stream: $out"
    run 0 tail -n 1 "$pg" && has "notes@0" && ok || no "pg tail -n 1: $out"
    run 0 metrics "$pg" && has "evstore_events_total 4" && ok || no "pg metrics: $out"
    run 0 streams "$pg" && has "$(printf 'notes\t1 event\tfrom position 3')" && ok || no "pg streams, one event: $out"
    # no file-store fields: segments, snapshots, recovery, fsync, the dedupe window
    run 0 info "$pg" && has "backend postgresql" && has "events 4" && has "accounts 1" && has "max_event_size" &&
        ! has "segment" && ! has "fsync" && ! has "snapshot" && ! has "torn_tail" && ! has "recovered" &&
        ! has "dedupe" && ! has "index_bytes" && ok || no "pg info: $out"
    run 0 snapshot "$pg" && ok || no "pg snapshot: $out $err"
    run 0 verify "$pg" && has "ok: 4 events, positions gapless" && ! has " in 0 segment" && ! has "checksum good" && ok ||
        no "pg verify: $out $err"
    # A long open shows its seconds on a terminal: the server is stopped (SIGSTOP) for
    # 2.5 s, so the open waits for it past the first second.
    pm=$(head -n 1 "${EVS_PG_DIR:-/nonexistent}/data/postmaster.pid" 2>/dev/null)
    if [ -n "$pm" ] && command -v script > /dev/null 2>&1; then
        kill -STOP "$pm"
        (sleep 2.5; kill -CONT "$pm") &
        waker=$!
        script -qec "'$evsctl' info '$pg'" /dev/null > "$work/tty" 2>&1
        status=$?
        wait "$waker"
        [ "$status" = 0 ] && grep -q "info: opening the store: [0-9]* s" "$work/tty" && grep -q "events 4" "$work/tty" && ok ||
            no "a long open on a terminal shows no progress (status $status): $(cat -v "$work/tty")"
        # and not when stderr is no terminal
        kill -STOP "$pm"
        (sleep 1.5; kill -CONT "$pm") &
        waker=$!
        run 0 info "$pg" && [ -z "$err" ] && ok || no "a long open wrote to a stderr that is no terminal: $err"
        wait "$waker"
    else
        no "the long open is not checked (no server pid in EVS_PG_DIR, or no script)"
    fi
    run 1 stream "$pg" nope && has_err "stream 'nope' does not exist" && ok || no "pg stream nope: $err"
    # durable consumers on PostgreSQL (tables of the schema): a reset makes one, the list
    # shows it, a delete forgets it
    run 0 consumers "$pg" && [ -z "$out" ] && ok || no "pg consumers: $out $err"
    run 0 consumers "$pg" reset c --to-position 0 && [ "$out" = "consumer c reset: next position 0" ] &&
        ok || no "pg consumers reset: $out $err"
    run 0 consumers "$pg" && has "$(printf 'c\tnext 0\t')" && has "closed" && ok || no "pg consumers after a reset: $out"
    run 0 consumers "$pg" parked c && [ -z "$out" ] && ok || no "pg consumers parked: $out $err"
    run 0 consumers "$pg" delete c && ok || no "pg consumers delete: $err"
    run 0 consumers "$pg" && [ -z "$out" ] && ok || no "pg consumers after the delete: $out"
    run 1 consumers "$pg" parked c && has_err "EVS_ERR_NOT_FOUND" && ok || no "pg consumers parked: $err"

    # schema --sql: the SQL a DBA runs (psql, as the server's superuser) so that a role
    # without CREATE rights opens the store with migrate=false.
    psql=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/psql
    [ -x "$psql" ] || psql=psql
    "$psql" "$EVS_PG_URL" -q -v ON_ERROR_STOP=1 -c "create role evsctl_app login" > /dev/null ||
        no "creating the role evsctl_app"
    app="$(printf '%s' "$EVS_PG_URL" | sed 's|://postgres@|://evsctl_app@|')?schema=evsctl_dba&migrate=false"
    run 1 append "$app" notes Noted x && has_err "EVS_ERR_READ_ONLY" && has_err "evsctl schema --sql URL" &&
        ok || no "pg append with migrate=false before the DDL: $err"
    run 2 schema "$app" && has_err "--sql is needed" && ok || no "pg schema without --sql: $err"
    run 1 schema --sql "$work/not-a-url" && has_err "EVS_ERR_INVALID_ARGUMENT" && has_err "postgresql:// URL" &&
        ok || no "schema --sql of a folder: $err"
    run 0 schema --sql "$app" && has "create table meta" && has 'to "evsctl_app";' && ok || no "pg schema --sql: $out"
    printf '%s\n' "$out" > "$work/schema.sql"
    "$psql" "$EVS_PG_URL" -q -v ON_ERROR_STOP=1 -f "$work/schema.sql" > /dev/null 2>&1 && ok ||
        no "psql -f of the printed SQL failed: $("$psql" "$EVS_PG_URL" -v ON_ERROR_STOP=1 -f "$work/schema.sql" 2>&1 | tail -n 3)"
    run 0 append "$app" notes Noted 'by the app' && [ "$out" = 0 ] && ok || no "pg append by the app: $out $err"
    run 0 dump "$app" && has "by the app" && ok || no "pg dump by the app: $out $err"
    run 0 schema --sql "$app" && has "nothing to do" && ok || no "pg schema --sql when current: $out"

    # Lifecycle on the server: delete, truncate, a rule by age whose rows compact deletes.
    lpg="$EVS_PG_URL?schema=evsctl_life"
    for v in 0 1 2; do
        "$evsctl" append "$lpg" keep T "k$v" > /dev/null && "$evsctl" append "$lpg" tele-1 T "t$v" > /dev/null ||
            no "pg append"
    done
    "$evsctl" append "$lpg" gone T g > /dev/null || no "pg append"
    run 0 delete "$lpg" gone --expected 0 && has "deleted stream 'gone' (soft" && ok || no "pg delete: $out $err"
    run 0 truncate "$lpg" keep 1 && has "truncated stream 'keep' before version 1" && ok || no "pg truncate: $out $err"
    run 0 retention --category tele- --max-age 1 "$lpg" && has "category 'tele-': max_age 1 s" && ok ||
        no "pg retention: $out $err"
    run 0 retention "$lpg" tele-1 && [ "$out" = "stream 'tele-1': max_age 1 s" ] && ok || no "pg retention shown: $out"
    sleep 1.2
    run 0 info "$lpg" && has "removed_events 5" && has "lifecycle_entries 3" && ! has "reclaimable_bytes 0" && ok ||
        no "pg info with rows removed by age: $out"
    run 0 compact "$lpg" && has "compacted: 3 rows deleted or rewritten" && has "3 removed events erased" && ok || no "pg compact: $out $err"
    run 0 info "$lpg" && has "reclaimable_bytes 0" && ok || no "pg info after compact: $out"
    run 0 verify "$lpg" && has "ok: 2 events, positions in order from 0 with 8 empty" && ok || no "pg verify: $out $err"
fi

echo "evsctl: $passed passed, $failed failed"
[ "$failed" = 0 ]
