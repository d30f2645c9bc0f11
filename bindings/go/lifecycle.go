package evstore

/*
#include <stdlib.h>
#include "evstore.h"
*/
import "C"

import (
	"context"
	"unsafe"
)

// Data that leaves (docs/lifecycle.md in the repository): deleting a stream, truncating
// one, and retention rules. Each operation is an entry of the log with a position of its
// own (returned; it holds no event), durable under the store's fsync policy like an
// append. Every read obeys it once the call returns; the bytes leave the file engine's
// disk at its next compaction, PostgreSQL's rows at once.
//
// Each takes an id, as events do (the zero value: none): a retry with the same id and
// the same operation writes nothing and returns the first one's position, so it is safe
// after a timeout or an ErrIO; the same id given to anything else is ErrAlreadyExists.
// A [16]byte parameter takes a UUID type of any package whose type is [16]byte.

// DeleteMode says what DeleteStream leaves behind.
type DeleteMode uint32

const (
	// DeleteSoft: the stream does not exist, for readers and writers, until it is
	// appended to again (StreamVersion gives -1; an Append with ExpectNoStream or
	// ExpectAny continues its versions after the kept one).
	DeleteSoft DeleteMode = C.EVS_DELETE_SOFT
	// DeleteHard: a tombstone: every later read or write of the name is ErrStreamDeleted.
	DeleteHard DeleteMode = C.EVS_DELETE_HARD
)

// DeleteStream removes every event stream has so far from every read, if the stream is
// at expectedVersion (ExpectAny, ExpectExists or its version; ExpectNoStream is
// ErrInvalidArgument), and returns the position of the operation's entry.
//
// Errors, checked in this order: ErrStreamDeleted (hard-deleted already), ErrNotFound
// (the stream never had an event; for a soft delete also: soft-deleted and not appended
// to since), ErrWrongExpectedVersion (ActualVersion gives the version, -1 for none);
// ErrBalanceNotZero for an account's stream ("account-<id>") whose balance is not zero
// (afterwards the account is not found); ErrAlreadyExists (id given to something else),
// ErrBusy (a write with this id is still being made durable: retry), ErrReadOnly, ErrIO
// (nothing counts: a retry with the id is safe), ErrInvalidArgument.
func (s *Store) DeleteStream(ctx context.Context, stream string, expectedVersion int64, mode DeleteMode, id [16]byte) (uint64, error) {
	return s.lifecycleOp(ctx, stream, "stream", func(p *C.evs_store, name *C.char, cid *C.uint8_t, pos *C.uint64_t) C.evs_status {
		return C.evs_delete_stream(p, name, C.int64_t(expectedVersion), C.uint32_t(mode), cid, pos)
	}, id)
}

// TruncateStream removes the events of stream with a version below beforeVersion from
// every read; the rest read as before, their versions unchanged. beforeVersion is at most
// the stream's version + 1 (which removes every event; the stream keeps its version for
// writers). Truncating below an earlier truncation removes nothing more and brings
// nothing back. It returns the position of the operation's entry.
//
// Errors: ErrStreamDeleted, ErrNotFound (never had an event, or soft-deleted and not
// appended to since), ErrInvalidArgument (beforeVersion past the version + 1, an
// account's stream), ErrAlreadyExists, ErrBusy, ErrReadOnly, ErrIO.
func (s *Store) TruncateStream(ctx context.Context, stream string, beforeVersion uint64, id [16]byte) (uint64, error) {
	return s.lifecycleOp(ctx, stream, "stream", func(p *C.evs_store, name *C.char, cid *C.uint8_t, pos *C.uint64_t) C.evs_status {
		return C.evs_truncate_stream(p, name, C.uint64_t(beforeVersion), cid, pos)
	}, id)
}

// Retention is a retention rule; 0 is "no limit of that kind", and both 0 is no rule.
type Retention struct {
	// Keep the stream's last MaxCount versions: with version v, the events with a
	// version <= v - MaxCount are removed.
	MaxCount uint64
	// Remove the events whose timestamp is older than now - MaxAgeUs microseconds, now
	// being the store's clock when a read runs: events leave by age without any call.
	MaxAgeUs uint64
}

// SetRetention sets stream's own rule, which wins over its categories' rules. It applies
// to the stream's past and future events at once; changing or clearing it later never
// brings an event back. A zero rule clears it (as ClearRetention). It returns the
// position of the operation's entry. A rule on an account's stream is
// ErrInvalidArgument (its balance needs every event).
func (s *Store) SetRetention(ctx context.Context, stream string, rule Retention, id [16]byte) (uint64, error) {
	return s.setRetention(ctx, stream, 0, &rule, id)
}

// SetCategoryRetention sets the rule of every stream whose name starts with prefix
// (e.g. "telemetry-") and has no rule of its own; the longest matching prefix wins. As
// SetRetention otherwise. A prefix that would cover account streams ("account-..." or a
// prefix of "account-", "" included) is ErrInvalidArgument.
func (s *Store) SetCategoryRetention(ctx context.Context, prefix string, rule Retention, id [16]byte) (uint64, error) {
	return s.setRetention(ctx, prefix, C.EVS_RETENTION_CATEGORY, &rule, id)
}

// ClearRetention removes stream's own rule (its categories' rule applies then, if any);
// what the rule removed stays removed.
func (s *Store) ClearRetention(ctx context.Context, stream string, id [16]byte) (uint64, error) {
	return s.setRetention(ctx, stream, 0, nil, id)
}

// ClearCategoryRetention removes the rule set on exactly prefix; what it removed stays
// removed.
func (s *Store) ClearCategoryRetention(ctx context.Context, prefix string, id [16]byte) (uint64, error) {
	return s.setRetention(ctx, prefix, C.EVS_RETENTION_CATEGORY, nil, id)
}

func (s *Store) setRetention(ctx context.Context, target string, flags C.uint32_t, rule *Retention, id [16]byte) (uint64, error) {
	var cr *C.evs_retention
	if rule != nil {
		cr = &C.evs_retention{
			struct_size: C.size_t(unsafe.Sizeof(C.evs_retention{})),
			max_count:   C.uint64_t(rule.MaxCount),
			max_age_us:  C.uint64_t(rule.MaxAgeUs),
		}
	}
	return s.lifecycleOp(ctx, target, "target", func(p *C.evs_store, name *C.char, cid *C.uint8_t, pos *C.uint64_t) C.evs_status {
		return C.evs_set_retention(p, name, flags, cr, cid, pos)
	}, id)
}

// Retention is the rule in force for stream: its own, else its longest matching
// category's; the zero Retention when there is none.
func (s *Store) Retention(ctx context.Context, stream string) (Retention, error) {
	return s.getRetention(ctx, stream, 0)
}

// CategoryRetention is the rule set on exactly prefix (not one inherited from a shorter
// prefix); the zero Retention when there is none.
func (s *Store) CategoryRetention(ctx context.Context, prefix string) (Retention, error) {
	return s.getRetention(ctx, prefix, C.EVS_RETENTION_CATEGORY)
}

func (s *Store) getRetention(ctx context.Context, name string, flags C.uint32_t) (Retention, error) {
	cname, err := cString(name, "name")
	if err != nil {
		return Retention{}, err
	}
	defer C.free(unsafe.Pointer(cname))
	out := C.evs_retention{struct_size: C.size_t(unsafe.Sizeof(C.evs_retention{}))}
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_get_retention(p, cname, flags, &out) }); err != nil {
		return Retention{}, err
	}
	return Retention{MaxCount: uint64(out.max_count), MaxAgeUs: uint64(out.max_age_us)}, nil
}

// lifecycleOp runs one lifecycle call on name with id, and returns the position of its
// entry.
func (s *Store) lifecycleOp(ctx context.Context, name, argument string, f func(p *C.evs_store, name *C.char, id *C.uint8_t, pos *C.uint64_t) C.evs_status, id [16]byte) (uint64, error) {
	cname, err := cString(name, argument)
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(cname))
	cid := (*C.uint8_t)(unsafe.Pointer(&id[0])) // all zero: none, as NULL
	var pos C.uint64_t
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return f(p, cname, cid, &pos) }); err != nil {
		return 0, err
	}
	return uint64(pos), nil
}

// ForgetSubject forgets data subject subject (crypto-shredding): its key is destroyed,
// so from when it returns every read, in every process, gives the subject's events with
// Erased set and no Payload or Metadata (stream, type, position and version stay), and
// no new event may name it. It returns the position of the forget's entry in the log
// (forgetting again returns the first one's).
//
// Errors: ErrInvalidArgument (an empty or invalid subject), ErrBusy, ErrReadOnly,
// ErrIO, ErrUnavailable (PostgreSQL: no server).
func (s *Store) ForgetSubject(ctx context.Context, subject string) (uint64, error) {
	csubject, err := cString(subject, "subject")
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(csubject))
	var pos C.uint64_t
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_forget_subject(p, csubject, &pos) }); err != nil {
		return 0, err
	}
	return uint64(pos), nil
}
