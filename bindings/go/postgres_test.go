package evstore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// pgURL is a URL of a schema of its own on the server EVS_PG_URL names
// (tests/pg/pg_server.sh run ... sets it; make test-go runs the suite under one); a
// plain `go test` without it skips the test.
func pgURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv("EVS_PG_URL")
	if base == "" {
		t.Skip("EVS_PG_URL is not set: no PostgreSQL server (tests/pg/pg_server.sh run go test ...)")
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%sschema=go_%s_%x", base, sep, strings.ToLower(t.Name()), time.Now().UnixNano())
}

// SchemaSQL gives the DDL of a schema that does not exist yet, and comments only once an
// open has created it.
func TestPostgresSchemaSQL(t *testing.T) {
	url := pgURL(t)
	sql := must(SchemaSQL(bg, url))
	if !strings.Contains(strings.ToLower(sql), "create table") {
		t.Fatalf("the script of a new schema creates nothing:\n%s", sql)
	}
	s, _, err := Open(bg, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, line := range strings.Split(must(SchemaSQL(bg, url)), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			t.Fatalf("the script of a current schema has a statement: %q", line)
		}
	}
}

// The lifecycle calls on PostgreSQL: the same codes and reads as on the file engine.
func TestPostgresLifecycle(t *testing.T) {
	url := pgURL(t)
	s, _, err := Open(bg, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must2(s.Append(bg, "order-1", ExpectNoStream, payloads("a0", "a1", "a2"))) // 0..2
	must2(s.Append(bg, "order-2", ExpectNoStream, payloads("b0", "b1")))       // 3, 4
	must2(s.Append(bg, "t-1", ExpectNoStream, payloads("0", "1", "2", "3")))   // 5..8
	must(s.OpenAccount(bg, "acc1", 10, ""))                                    // 9

	_, err = s.DeleteStream(bg, "order-1", 0, DeleteSoft, noID)
	if e := wantCode(t, err, ErrWrongExpectedVersion); func() bool { v, ok := e.ActualVersion(); return !ok || v != 2 }() {
		t.Errorf("ActualVersion of %q", e.Message)
	}
	must(s.DeleteStream(bg, "order-1", 2, DeleteSoft, noID))
	must(s.DeleteStream(bg, "order-2", ExpectAny, DeleteHard, noID))
	must(s.TruncateStream(bg, "t-1", 1, noID))
	must(s.SetCategoryRetention(bg, "t-", Retention{MaxCount: 2}, noID))
	if r := must(s.Retention(bg, "t-1")); r != (Retention{MaxCount: 2}) {
		t.Errorf("Retention(t-1) = %+v", r)
	}
	_, err = s.DeleteStream(bg, "account-acc1", ExpectAny, DeleteSoft, noID)
	wantCode(t, err, ErrBalanceNotZero)

	samePositions(t, "ReadAll", collect(t, s.ReadAll(bg, 0)), 7, 8, 9)
	sameVersions(t, "t-1", streamVersions(t, s, "t-1"), 2, 3)
	wantCode(t, readErr(t, "ReadStream(order-1)", s.ReadStream(bg, "order-1", 0)), ErrNotFound)
	wantCode(t, readErr(t, "ReadStream(order-2)", s.ReadStream(bg, "order-2", 0)), ErrStreamDeleted)
	_, _, err = s.Append(bg, "order-2", ExpectAny, payloads("b2"))
	wantCode(t, err, ErrStreamDeleted)
	if v := must(s.StreamVersion(bg, "order-1")); v != -1 {
		t.Errorf("StreamVersion(order-1) = %d", v)
	}
	st := must(s.Stats(bg))
	if st.RemovedEvents != 7 || st.LifecycleEntries != 4 || st.ReclaimableBytes != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// A consumer group on PostgreSQL: two members (two handles) share the log, each stream's
// events go to one member at a time and in order, and every event is handled once (the
// members hand partitions over with their checkpoints; nobody dies here). A file store
// refuses a group.
func TestPostgresConsumerGroup(t *testing.T) {
	fs, _ := newStore(t)
	_, err := fs.OpenConsumer(bg, "g", &ConsumerOptions{Partitions: 4})
	wantCode(t, err, ErrInvalidArgument)

	url := pgURL(t)
	var stores [2]*Store
	for i := range stores {
		s, _, err := Open(bg, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	want := map[uint64]string{}
	for i := 0; i < 200; i++ {
		stream := fmt.Sprintf("s-%d", i%9)
		first, _ := must2(stores[0].Append(bg, stream, ExpectAny, payloads(fmt.Sprint(i))))
		want[first] = stream
	}
	opts := &ConsumerOptions{Partitions: 4, Lease: 600 * time.Millisecond, CheckpointEvery: 10}
	type seen struct {
		pos    uint64
		stream string
	}
	got := make([][]seen, 2)
	done := make(chan error, 2)
	for m := range stores {
		go func(m int) {
			c, err := stores[m].OpenConsumer(bg, "grp", opts)
			if err != nil {
				done <- err
				return
			}
			for {
				ctx, cancel := context.WithTimeout(bg, 2*time.Second)
				ev, err := c.Next(ctx)
				cancel()
				if err != nil {
					done <- c.Close()
					return
				}
				got[m] = append(got[m], seen{ev.Position, ev.Stream})
				time.Sleep(time.Millisecond)
				if err := c.Ack(ev.Position); err != nil {
					done <- err
					return
				}
			}
		}(m)
	}
	for range stores {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	count := map[uint64]int{}
	for m, evs := range got {
		last := map[string]uint64{}
		for _, e := range evs {
			if p, ok := last[e.stream]; ok && e.pos <= p {
				t.Fatalf("member %d: stream %s out of order: %d after %d", m, e.stream, e.pos, p)
			}
			last[e.stream] = e.pos
			if want[e.pos] != e.stream {
				t.Fatalf("member %d: event %d is not of stream %s", m, e.pos, e.stream)
			}
			count[e.pos]++
		}
	}
	for p := range want {
		if count[p] != 1 {
			t.Fatalf("event %d handled %d times (members: %d and %d events)", p, count[p], len(got[0]), len(got[1]))
		}
	}
	infos := must(stores[0].Consumers(bg))
	if len(infos) != 1 || infos[0].Name != "grp" || infos[0].Open || infos[0].NextPosition != 200 {
		t.Fatalf("Consumers() = %+v", infos)
	}
}
