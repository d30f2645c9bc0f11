package evstore

/*
#include "evstore.h"
*/
import "C"

import (
	"context"
	"unsafe"
)

// CompactInfo is what Compact did.
type CompactInfo struct {
	// File engine: sealed segments rewritten; PostgreSQL: tables cleaned.
	SegmentsRewritten uint64
	// Their bytes before and after.
	BytesBefore, BytesAfter uint64
	// Removed events whose bytes are gone now.
	EventsErased uint64
	DurationUs   uint64
}

// Compact erases the bytes of removed events now, and blocks until done. The file
// engine rewrites every segment that holds a removed event (sealing the active segment
// first when it holds one, so that afterwards no file of the store holds a removed
// event's type, payload or metadata), online and throttled by the store's
// compaction_bytes_per_second (Options.SetCompaction); PostgreSQL deletes the rows that
// retention rules by age removed (deletes and truncations delete theirs at once). Copies
// made before (backups, archived segments, replicas) still hold the bytes.
func (s *Store) Compact(ctx context.Context) (CompactInfo, error) {
	ci := C.evs_compact_info{struct_size: C.size_t(unsafe.Sizeof(C.evs_compact_info{}))}
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_compact(p, &ci) }); err != nil {
		return CompactInfo{}, err
	}
	return CompactInfo{
		SegmentsRewritten: uint64(ci.segments_rewritten),
		BytesBefore:       uint64(ci.bytes_before),
		BytesAfter:        uint64(ci.bytes_after),
		EventsErased:      uint64(ci.events_erased),
		DurationUs:        uint64(ci.duration_us),
	}, nil
}

// SetCompaction sets the file engine's compaction: bytesPerSecond is its throttle, bytes
// read and written per second (default 64 MiB/s; 0: unthrottled); triggerPercent starts
// an automatic compaction of a sealed segment with more than that percent of its bytes
// removed (default 25; 0: no automatic compaction; above 100: ErrInvalidArgument).
func (o *Options) SetCompaction(bytesPerSecond uint64, triggerPercent uint32) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_compaction(c, C.uint64_t(bytesPerSecond), C.uint32_t(triggerPercent))
	})
}
