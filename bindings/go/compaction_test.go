package evstore

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// SetCompaction's bounds, and the options an open store reports: the defaults, then the
// ones set.
func TestCompactionOptions(t *testing.T) {
	s, _ := newStore(t)
	if o := must(s.Options()); o.CompactionBytesPerSecond != 64<<20 || o.CompactionTriggerPercent != 25 {
		t.Errorf("the default compaction options: %+v", o)
	}
	opts := NewOptions()
	defer opts.Close()
	wantCode(t, opts.SetCompaction(0, 101), ErrInvalidArgument)
	if err := opts.SetCompaction(0, 100); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetCompaction(1<<20, 0); err != nil {
		t.Fatal(err)
	}
	s2, _, err := Open(bg, filepath.Join(t.TempDir(), "store"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if o := must(s2.Options()); o.CompactionBytesPerSecond != 1<<20 || o.CompactionTriggerPercent != 0 {
		t.Errorf("the compaction options set: %+v", o)
	}
}

// storeHolds reports whether any file under dir holds marker.
func storeHolds(t *testing.T, dir string, marker []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = bytes.Contains(b, marker)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Compact erases: afterwards no file of the store holds a removed event's payload
// (deleted hard or soft, truncated), while the kept events' are there (the control);
// every read gives what it gave before, after a reopen too; a second Compact has nothing
// left to erase.
func TestCompactErasesRemovedEvents(t *testing.T) {
	opts := NewOptions()
	defer opts.Close()
	// Small segments, so that the log has sealed ones; no automatic compaction, so that
	// Compact is the one that erases.
	if err := opts.SetMaxSegmentSize(64 << 10); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetCompaction(0, 0); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "store")
	s, _, err := Open(bg, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	pad := bytes.Repeat([]byte{'.'}, 300)
	var kept []uint64
	for i := 0; i < 300; i++ {
		gone := append([]byte(fmt.Sprintf("GONE-MARK-%d-", i)), pad...)
		must2(s.Append(bg, fmt.Sprintf("gone-%d", i%3), ExpectAny, []EventInput{{Type: "T", Payload: gone}}))
		first, _ := must2(s.Append(bg, "kept", ExpectAny, []EventInput{{Type: "T", Payload: []byte(fmt.Sprintf("KEPT-MARK-%d", i))}}))
		kept = append(kept, first)
	}
	must(s.DeleteStream(bg, "gone-0", ExpectAny, DeleteHard, noID))
	must(s.DeleteStream(bg, "gone-1", ExpectAny, DeleteSoft, noID))
	must(s.TruncateStream(bg, "gone-2", 100, noID)) // its every event
	before := must(s.Stats(bg))
	if before.RemovedEvents != 300 || before.ReclaimableBytes == 0 || before.Segments < 2 {
		t.Fatalf("Stats before the compaction: %+v", before)
	}
	if !storeHolds(t, path, []byte("GONE-MARK-")) {
		t.Fatal("the removed events' bytes are not on disk before the compaction: the search finds nothing")
	}

	info := must(s.Compact(bg))
	if info.EventsErased != 300 || info.SegmentsRewritten == 0 || info.BytesAfter >= info.BytesBefore {
		t.Errorf("Compact = %+v", info)
	}
	if st := must(s.Stats(bg)); st.ReclaimableBytes != 0 {
		t.Errorf("ReclaimableBytes after the compaction = %d", st.ReclaimableBytes)
	}
	if storeHolds(t, path, []byte("GONE-MARK-")) {
		t.Error("a file of the store still holds a removed event's payload")
	}
	if !storeHolds(t, path, []byte("KEPT-MARK-299")) {
		t.Error("the kept events' payloads are gone too")
	}
	reads := func(when string) {
		t.Helper()
		all := collect(t, s.ReadAll(bg, 0))
		samePositions(t, when+": ReadAll", all, kept...)
		for i, e := range all {
			if string(e.Payload) != fmt.Sprintf("KEPT-MARK-%d", i) || e.StreamVersion != uint64(i) {
				t.Fatalf("%s: event %d = %+v", when, i, e)
			}
		}
		wantCode(t, readErr(t, "ReadStream(gone-0)", s.ReadStream(bg, "gone-0", 0)), ErrStreamDeleted)
		wantCode(t, readErr(t, "ReadStream(gone-1)", s.ReadStream(bg, "gone-1", 0)), ErrNotFound)
		wantCode(t, readErr(t, "ReadStream(gone-2)", s.ReadStream(bg, "gone-2", 0)), ErrNotFound)
		if v := must(s.StreamVersion(bg, "gone-2")); v != 99 {
			t.Errorf("%s: StreamVersion(gone-2) = %d, want 99", when, v)
		}
	}
	reads("after the compaction")
	if again := must(s.Compact(bg)); again.EventsErased != 0 {
		t.Errorf("a second Compact = %+v", again)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	reads("after a reopen")
	// The soft-deleted stream continues after its kept version.
	if _, last := must2(s.Append(bg, "gone-1", ExpectNoStream, payloads("x"))); last != 100 {
		t.Errorf("gone-1 continues at version %d, want 100", last)
	}
}
