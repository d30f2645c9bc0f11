# Turns bench/instr/run.sh's counts ("MODE calling-thread-instructions other-threads'",
# and "futex ALL CALLING-THREAD") into the Markdown table of bench/results/instr-latest.md.
# Variables: n (events a row), crc, sqlite, libv, machine.
function per(mode) { return main[mode] / n }
function commas(x,   s) {
  s = sprintf("%d", x + 0.5)
  while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
  return s
}
function ratio(a, b) { return sprintf("%.2fx", a / b) }
function row(path, ev, mi, sq, tmin, tsq,   r1, r2, met) {
  met = "yes"
  r1 = ratio(ev, mi) " (<= " tmin "x)"
  if (ev / mi > tmin) met = "no"
  if (sq != "") {
    r2 = ratio(ev, sq) " (<= " tsq "x)"
    if (ev / sq > tsq) met = "no"
  } else r2 = ""
  printf "| %s | %s | %s | %s | %s | %s | %s |\n", path, commas(ev), commas(mi), sq == "" ? "" : commas(sq), r1, r2, met
}
function cpu(path, e, m, q,   a, b, c) {
  a = main["cpu-" e]; b = main["cpu-" m]; c = q == "" ? "" : main["cpu-" q]
  printf "| %s | %.0f | %.0f | %s | %s | %s |\n", path, a, b, c == "" ? "" : sprintf("%.0f", c), \
    ratio(a, b), c == "" ? "" : ratio(b, c)
}
$1 == "futex" { futex_all = $2; futex_main = $3; next }
{ main[$1] = $2; others[$1] = $3 }
END {
  print "# Instructions an event: evstore beside the minimal programs and SQLite (issue 25)"
  print ""
  printf "User-space instructions an event (callgrind), %s events a row, each row's loop only\n", commas(n)
  print "(setup excluded), all counted in this run by `bench/instr/run.sh` (`make bench-instr`)."
  print "\"minimal\" is bench/minimal: our own C reader and appender of the same segment files,"
  print "checked in the same run to agree with evstore byte for byte; the targets are issue 25's."
  print ""
  print "| path | evstore | minimal, same files | SQLite | evstore / minimal (target) | evstore / SQLite (target) | met |"
  print "|---|--:|--:|--:|--:|--:|---|"
  row("read-all, `evs_cursor_next`", per("evs-next"), per("min-read"), per("sq-read"), 3, 0.5)
  row("read-all, `evs_cursor_next_batch` (256)", per("evs-batch"), per("min-read"), "", 1.5, "")
  row("`evs_append`, 1 event", per("evs-append1"), per("min-append1"), "", 3, "")
  row("`evs_append`, 100 events", per("evs-append100"), per("min-append100"), "", 2, "")
  row("`evs_append_event`", per("evs-append-event"), per("min-append-event"), "", 3, "")
  printf "| futex calls an append (EVS_FSYNC_BATCH, no waiter; all threads) | %.3f | | | | | %s (<= 0.05) |\n", \
    futex_all / n, futex_all / n <= 0.05 ? "yes" : "no"
  print ""
  print "Also counted:"
  printf "- the minimal reader with the table CRC instead of the instruction: %s an event\n", commas(per("min-read-MIN-CRC-table"))
  printf "- SQLite with every field of an evstore event (9 columns): %s an event\n", commas(per("sq-read-full"))
  printf "- futex calls of the calling thread alone: %.3f an append\n", futex_main / n
  o = ""
  for (m in others) if (others[m] / n >= 0.5) o = o sprintf("%s%s %s", o == "" ? "" : "; ", m, commas(others[m] / n))
  printf "- other threads' instructions an event, not in the figures above (evstore's flusher, which\n"
  printf "  under callgrind wakes far more often per event than natively): %s\n", o == "" ? "none" : o
  print ""
  print "The same loops run natively, the calling thread's CPU time (user and system, so the"
  print "pread and pwrite calls too), least of 3 runs, ns an event (this moves with the machine's"
  print "load; the counts above do not):"
  print ""
  print "| path | evstore | minimal | SQLite | evstore / minimal | minimal / SQLite |"
  print "|---|--:|--:|--:|--:|--:|"
  cpu("read-all, `evs_cursor_next`", "evs-next", "min-read", "sq-read")
  cpu("read-all, `evs_cursor_next_batch` (256)", "evs-batch", "min-read", "")
  cpu("`evs_append`, 1 event", "evs-append1", "min-append1", "")
  cpu("`evs_append`, 100 events", "evs-append100", "min-append100", "")
  cpu("`evs_append_event`", "evs-append-event", "min-append-event", "")
  print ""
  print "What each row runs (`bench/instr/instr.c`): a store of " commas(n) " events of 100 bytes, type"
  print "\"BenchEvent\", one `evs_append` each, round-robin over 1,000 streams (the bench's layout),"
  print "EVS_FSYNC_BATCH 5 ms. Reads: `evs_read_all` from 0 and every event through the cursor (the"
  print "loop sums payload lengths); the minimal reader over the same closed store, a callback an"
  print "event; SQLite (WAL, closed and checkpointed) `SELECT pos, stream, version, type, ts, payload"
  print "FROM events ORDER BY pos` over issue 8's table `events(pos INTEGER PRIMARY KEY, stream TEXT,"
  print "version INTEGER, type TEXT, ts INTEGER, payload BLOB, UNIQUE(stream, version))`, each column"
  print "taken as a view or a number. Appends: into a fresh store, the same events; 100 a call to"
  print "one stream (round-robin); `evs_append_event` and the minimal appender's stream-less append"
  print "(its reference) without a stream. futex: `strace -f` over the evs_append row run natively"
  print "(setup and close included)."
  print ""
  printf "Minimal CRC-32C: %s. SQLite %s. evstore at %s. %s.\n", crc, sqlite, libv, machine
}
