package evstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Events that name a subject are stored encrypted; ForgetSubject erases them on every
// read, this handle's and the next one's; other events stay as they were.
func TestForgetSubject(t *testing.T) {
	s, path := newStore(t)
	in := []EventInput{
		{Type: "AddressSet", Payload: []byte("ALICE-ADDRESS"), Metadata: []byte("m"), Subject: "alice"},
		{Type: "AddressSet", Payload: []byte("BOB-ADDRESS"), Subject: "bob"},
		{Type: "Tick", Payload: []byte("public")},
	}
	must2(s.Append(bg, "people", ExpectNoStream, in))
	files, _ := filepath.Glob(filepath.Join(path, "events", "*.wal"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte("ALICE-ADDRESS")) {
			t.Errorf("%s holds a subject's payload in the clear", f)
		}
	}
	if p := must(s.ForgetSubject(bg, "alice")); p != 3 {
		t.Errorf("the forget's entry is at %d, want 3", p)
	}
	if p := must(s.ForgetSubject(bg, "alice")); p != 3 {
		t.Errorf("forgetting again: %d, want the first position 3", p)
	}
	_, err := s.ForgetSubject(bg, "")
	wantCode(t, err, ErrInvalidArgument)
	_, _, err = s.Append(bg, "people", ExpectAny, in[:1])
	wantCode(t, err, ErrInvalidArgument)
	check := func(s *Store, when string) {
		t.Helper()
		got := collect(t, s.ReadAll(bg, 0))
		if len(got) != 3 {
			t.Fatalf("%s: %d events, want 3", when, len(got))
		}
		a, b, c := got[0], got[1], got[2]
		if !a.Erased || a.Payload != nil || a.Metadata != nil || a.Subject != "alice" || a.Type != "AddressSet" || a.StreamVersion != 0 {
			t.Errorf("%s: alice's event %+v", when, a)
		}
		if b.Erased || string(b.Payload) != "BOB-ADDRESS" || b.Subject != "bob" {
			t.Errorf("%s: bob's event %+v", when, b)
		}
		if c.Erased || string(c.Payload) != "public" || c.Subject != "" {
			t.Errorf("%s: the event without a subject %+v", when, c)
		}
	}
	check(s, "after the forget")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path)
	defer s2.Close()
	check(s2, "reopened")
}
