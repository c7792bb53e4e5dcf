package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"syscall"

	"github.com/raftkv/raftkv/storage/vfs"
)

// A log never starts a write that could fail for lack of space: records go
// only into segment files that were zero-filled in advance. The next
// segment's file is prepared as soon as the current segment begins, so a
// full file system shows while the current segment still has room. From
// then on the log reports "no space" (SpaceOK is false) and takes entries
// only while they fit in the current segment short of a reserve, which is
// kept for the small records that must always be written (hard states, the
// markers of snapshots and compaction) so that a snapshot and compaction
// can still free space. A Save whose entries do not fit fails with
// ErrNoSpace and changes nothing; callers are expected to stop taking new
// entries before that (EntryRoom says how many bytes still fit).
//
// The log tries again to prepare the segment after a compaction removed
// segments and whenever RetrySpace is called; once it succeeds, SpaceOK is
// true again. A write or fsync error, ENOSPC included, is still fatal: it
// can only come from a file system that allocates on overwrite, and the
// state of the page cache is then unknown.

// ErrNoSpace is returned by Save when the entries do not fit in the space
// the log has: nothing was saved, and the log stays usable.
var ErrNoSpace = errors.New("wal: no space left for new entries")

// The part of a segment kept, once the file system is full, for records
// other than entries: an eighth, within bounds. A hard state is about 30
// bytes; a snapshot marker carries the configuration, member table
// included, so a few hundred.
const (
	spaceReserveMinBytes = 4 << 10
	spaceReserveMaxBytes = 256 << 10
)

// spaceReserve is that part of a segment preallocated to limit bytes.
func spaceReserve(limit int64) int64 {
	return min(max(limit/8, spaceReserveMinBytes), spaceReserveMaxBytes)
}

// spaceState is shared between the writer, the goroutine that prepares
// segment files and the Log's callers.
type spaceState struct {
	noSpace atomic.Bool
	// prep is the newest preparation the writer started.
	prep atomic.Pointer[preparedSeg]
	// freeReserve is the free space a preparation must leave on the file
	// system, where it can tell (vfs.SpaceFS).
	freeReserve atomic.Int64
}

// check fails with ENOSPC when preparing size bytes would leave less than
// the reserve free.
func (s *spaceState) check(fs vfs.FS, dir string, size int64) error {
	free, ok := vfs.FreeBytes(fs, dir)
	if !ok {
		return nil
	}
	if need := size + s.freeReserve.Load(); free < need {
		return fmt.Errorf("prepare a segment of %d bytes in %s: %d bytes free, %d needed with the reserve: %w",
			size, dir, free, need, syscall.ENOSPC)
	}
	return nil
}

// note records a preparation's outcome.
func (s *spaceState) note(err error, logger *slog.Logger, path string) {
	switch {
	case err == nil:
		if s.noSpace.Swap(false) {
			logger.Info("wal: space is back; the log takes new entries again", "file", path)
		}
	case errors.Is(err, syscall.ENOSPC):
		if !s.noSpace.Swap(true) {
			logger.Warn("wal: no space for the next segment; the log takes no new entries beyond the current one",
				"file", path, "err", err)
		}
	}
}

// SpaceOK reports whether the file system had room for the next segment
// when the log last tried to prepare it. While it is false the log takes
// only the entries that fit in its current segment (see EntryRoom).
func (l *Log) SpaceOK() bool { return !l.w.space.noSpace.Load() }

// EntryRoom returns how many bytes of entry records Save still takes: a
// very large number while SpaceOK, else what is left of the current
// segment short of its reserve. An entry's record is its data plus at most
// EntryOverheadBytes.
func (l *Log) EntryRoom() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.w.space.noSpace.Load() {
		return math.MaxInt64
	}
	return l.entryRoomLocked()
}

// EntryOverheadBytes bounds what an entry's record adds to its data.
const EntryOverheadBytes = recordHeaderBytes + 32

func (l *Log) entryRoomLocked() int64 {
	lim := min(l.tailAlloc, segmentLimit(l.tail().seq, l.opts.SegmentBytes))
	return max(lim-spaceReserve(lim)-l.tailBytes, 0)
}

// SetFreeReserve sets the free space that preparing a segment must leave
// on the file system (where the file system can tell): room for the
// snapshot that lets the log be compacted. Zero by default.
func (l *Log) SetFreeReserve(n int64) { l.w.space.freeReserve.Store(max(n, 0)) }

// RetrySpace prepares the next segment again if the last preparation
// failed, so that SpaceOK becomes true once space is back. On the real
// file system the preparation runs in the background.
func (l *Log) RetrySpace() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.usableLocked() != nil || !l.w.space.noSpace.Load() {
		return
	}
	for l.syncing {
		l.flushed.Wait()
	}
	l.syncing = true // the writer is ours until we are done
	l.mu.Unlock()
	l.w.retryPrepare()
	l.mu.Lock()
	l.syncing = false
	l.flushed.Broadcast()
}

// roomLocked decides whether Save may add records of n bytes, entries of
// them (the rest may use the reserve). It returns ErrNoSpace when entries do not fit in the
// space the log has, or a channel to wait on (with mu released) when the
// records need the next segment and its preparation is still running.
func (l *Log) roomLocked(entries, n int64) (<-chan struct{}, error) {
	sp := &l.w.space
	if sp.noSpace.Load() {
		if entries > 0 && entries > l.entryRoomLocked() {
			return nil, fmt.Errorf("%w: %d bytes of entries, %d bytes left", ErrNoSpace, entries, l.entryRoomLocked())
		}
		return nil, nil
	}
	if !l.tailHasRecords || l.tailBytes+n <= segmentLimit(l.tail().seq, l.opts.SegmentBytes) {
		return nil, nil
	}
	if p := sp.prep.Load(); p != nil && p.seq == l.tail().seq+1 && !p.finished() {
		return p.done, nil
	}
	return nil, nil
}

// preparedLocked reports whether segment seq's file is prepared, so that
// a roll to it lands in allocated space.
func (l *Log) preparedLocked(seq uint32) bool {
	p := l.w.space.prep.Load()
	return p != nil && p.seq == seq && p.finished() && p.err == nil
}
