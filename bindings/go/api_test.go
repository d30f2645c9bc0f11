package evstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The ErrX values match with errors.Is every error of their code, wrapped or not, and
// no other; the error itself carries the code and the library's message.
func TestErrorValuesMatchWithErrorsIs(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.ReadEvent(bg, 5)
	e := wantCode(t, err, ErrNotFound)
	if !strings.HasPrefix(err.Error(), "evstore: EVS_ERR_NOT_FOUND: ") || !strings.Contains(err.Error(), e.Message) {
		t.Errorf("Error() = %q", err.Error())
	}
	for _, other := range []Error{ErrIO, ErrInvalidArgument, ErrCorrupt} {
		if errors.Is(err, other) {
			t.Errorf("errors.Is(%v, %v)", err, other)
		}
	}
	wrapped := fmt.Errorf("loading the order: %w", err)
	var got *Error
	if !errors.Is(wrapped, ErrNotFound) || !errors.As(wrapped, &got) || got.Code != CodeNotFound || got.Message != e.Message {
		t.Errorf("wrapped: Is %v, As %v", errors.Is(wrapped, ErrNotFound), got)
	}
	// An ErrX value used as an error of one's own matches too.
	if !errors.Is(fmt.Errorf("no order: %w", ErrNotFound), ErrNotFound) || errors.Is(ErrNotFound, ErrIO) {
		t.Error("ErrNotFound as an error of its own")
	}
	if ErrNotFound.Error() != "evstore: EVS_ERR_NOT_FOUND" {
		t.Errorf("ErrNotFound.Error() = %q", ErrNotFound.Error())
	}
	// An error with a message matches only itself.
	_, err2 := s.ReadEvent(bg, 6)
	if !errors.Is(err, err) || errors.Is(err, err2) {
		t.Errorf("errors.Is between two call errors: %v, %v", errors.Is(err, err), errors.Is(err, err2))
	}
}

// `err == evstore.ErrNotFound` would always be false (a call's error carries its own
// message), so it must not compile; errors.Is must.
func TestComparingWithAnErrValueDoesNotCompile(t *testing.T) {
	binding, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mod := "module example.com/compare\n\ngo 1.23\n\nrequire github.com/evstore/evstore/bindings/go v0.0.0\n\n" +
		"replace github.com/evstore/evstore/bindings/go => " + binding + "\n"
	build := func(body string) (string, error) {
		src := "package main\n\nimport (\n\t\"errors\"\n\n\tevstore \"github.com/evstore/evstore/bindings/go\"\n)\n\n" +
			"var _ = errors.Is\n\n" + body + "\nfunc main() {}\n"
		for name, text := range map[string]string{"go.mod": mod, "main.go": src} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := build("func is(err error) bool { return errors.Is(err, evstore.ErrNotFound) }\n"); err != nil {
		t.Fatalf("errors.Is(err, evstore.ErrNotFound) does not build: %v\n%s", err, out)
	}
	out, err := build("func same(err error) bool { return err == evstore.ErrNotFound }\n")
	if err == nil {
		t.Fatal("err == evstore.ErrNotFound compiles")
	}
	if !strings.Contains(out, "main.go:11") || !strings.Contains(out, "evstore.ErrNotFound") {
		t.Fatalf("the build failed for another reason:\n%s", out)
	}
}

// Every call that reaches the store takes a context and does nothing once it is done;
// a cursor keeps the context it was opened with.
func TestEveryCallThatReachesTheStoreChecksItsContext(t *testing.T) {
	s, _ := newStore(t)
	must(s.OpenAccount(bg, "a", 10, ""))
	must(s.OpenAccount(bg, "b", 10, ""))
	must2(s.Append(bg, "st", ExpectAny, []EventInput{{Type: "T"}}))
	end := must(s.PositionAt(bg, PositionEnd))
	done, cancel := context.WithCancel(bg)
	cancel()
	ev := []EventInput{{Type: "T"}}
	calls := map[string]func() error{
		"Sync":                  func() error { return s.Sync(done) },
		"AppendEvent":           func() error { _, err := s.AppendEvent(done, "T", nil); return err },
		"Append":                func() error { _, _, err := s.Append(done, "st", ExpectAny, ev); return err },
		"AppendMulti":           func() error { _, _, err := s.AppendMulti(done, []StreamAppend{{"st", ExpectAny, ev}}); return err },
		"PositionAt":            func() error { _, err := s.PositionAt(done, 0); return err },
		"StreamVersion":         func() error { _, err := s.StreamVersion(done, "st"); return err },
		"Snapshot":              func() error { _, err := s.Snapshot(done); return err },
		"Stats":                 func() error { _, err := s.Stats(done); return err },
		"MetricsText":           func() error { _, err := s.MetricsText(done); return err },
		"OpenAccount":           func() error { _, err := s.OpenAccount(done, "c", 1, ""); return err },
		"Deposit":               func() error { _, err := s.Deposit(done, "a", 1); return err },
		"Withdraw":              func() error { _, err := s.Withdraw(done, "a", 1); return err },
		"Transfer":              func() error { _, err := s.Transfer(done, "a", "b", 1); return err },
		"CloseAccount":          func() error { _, err := s.CloseAccount(done, "a"); return err },
		"GetAccount":            func() error { _, err := s.GetAccount(done, "a"); return err },
		"GetAccountAt":          func() error { _, err := s.GetAccountAt(done, "a", PositionEnd); return err },
		"ReadEvent":             func() error { _, err := s.ReadEvent(done, 0); return err },
		"Streams":               func() error { _, err := s.Streams(done); return err },
		"ReadAllCursor":         func() error { _, err := s.ReadAllCursor(done, 0); return err },
		"ReadAllBackwardCursor": func() error { _, err := s.ReadAllBackwardCursor(done, PositionEnd); return err },
		"ReadStreamCursor":      func() error { _, err := s.ReadStreamCursor(done, "st", 0); return err },
		"ReadStreamBackwardCursor": func() error {
			_, err := s.ReadStreamBackwardCursor(done, "st", PositionEnd)
			return err
		},
		"ReadCategoryCursor":     func() error { _, err := s.ReadCategoryCursor(done, "s", 0); return err },
		"PollCursor":             func() error { _, err := s.PollCursor(done, 0, 10); return err },
		"Subscribe":              func() error { _, err := s.Subscribe(done, 0, func(Event) error { return nil }); return err },
		"DeleteStream":           func() error { _, err := s.DeleteStream(done, "st", ExpectAny, DeleteHard, noID); return err },
		"TruncateStream":         func() error { _, err := s.TruncateStream(done, "st", 1, noID); return err },
		"SetRetention":           func() error { _, err := s.SetRetention(done, "st", Retention{MaxCount: 1}, noID); return err },
		"SetCategoryRetention":   func() error { _, err := s.SetCategoryRetention(done, "s", Retention{MaxCount: 1}, noID); return err },
		"ClearRetention":         func() error { _, err := s.ClearRetention(done, "st", noID); return err },
		"ClearCategoryRetention": func() error { _, err := s.ClearCategoryRetention(done, "s", noID); return err },
		"Retention":              func() error { _, err := s.Retention(done, "st"); return err },
		"CategoryRetention":      func() error { _, err := s.CategoryRetention(done, "s"); return err },
		"Compact":                func() error { _, err := s.Compact(done); return err },
		"SchemaSQL":              func() error { _, err := SchemaSQL(done, "postgresql://127.0.0.1:1/x"); return err },
		"ReadAll": func() error {
			for _, err := range s.ReadAll(done, 0) {
				return err
			}
			return nil
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a done context: %v", name, err)
		}
	}
	if now := must(s.PositionAt(bg, PositionEnd)); now != end {
		t.Errorf("calls with a done context appended %d events", now-end)
	}
	if a := must(s.GetAccount(bg, "a")); a.Balance != 10 || a.IsClosed {
		t.Errorf("calls with a done context changed the account: %+v", a)
	}
	if v := must(s.StreamVersion(bg, "st")); v != 0 {
		t.Errorf("calls with a done context changed stream st: version %d", v)
	}

	ctx, stop := context.WithCancel(bg)
	c := must(s.ReadAllCursor(ctx, 0))
	defer c.Close()
	if _, ok, err := c.Next(); !ok || err != nil {
		t.Fatalf("Next: %v %v", ok, err)
	}
	stop()
	if _, ok, err := c.Next(); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Next once the cursor's context is done: %v %v", ok, err)
	}
}
