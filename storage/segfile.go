package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/raftkv/raftkv/storage/vfs"
)

// Segment files are preallocated: created full of zeros, synced, and only
// then given a header and a segment name. Appending a record is then an
// overwrite inside the file, and fdatasync has no size or extent change to
// commit to the file system journal: on ext4 that halves its cost for
// batches of tens of KiB and more. (fallocate is no substitute: writing
// into its unwritten extents still changes metadata.)
//
// The free space after the last record of a segment is zeros, which
// recovery reads as the end of the log.

// rampSegmentBytes is the limit of a new log's first segment. Each later
// segment's limit doubles, up to SegmentBytes: a small log does not take
// SegmentBytes of disk, and zero-filling the next segment keeps ahead of
// filling the current one.
const rampSegmentBytes = 4 << 20

// segmentLimit is the size past which segment seq rolls over, and the size
// it is preallocated to.
func segmentLimit(seq uint32, segBytes int64) int64 {
	lim := int64(rampSegmentBytes)
	for s := uint32(1); s < seq && lim < segBytes; s++ {
		lim *= 2
	}
	return min(lim, segBytes)
}

// prepSuffix names a segment file being prepared: <seq>.next.wal.tmp. Like
// every *.wal.tmp file, a leftover one is removed by the next Open.
const prepSuffix = ".next" + walSuffix + tmpSuffix

func prepPath(dir string, seq uint32) string {
	return filepath.Join(dir, fmt.Sprintf("%016x%s", seq, prepSuffix))
}

// zeroChunk is the source of every zero write. Nothing writes into it.
var zeroChunk = make([]byte, 1<<20)

var errStopped = errors.New("stopped")

// zeroFile creates path holding size zero bytes, synced. The name itself
// is not synced: the file is renamed before use, and that is synced.
func zeroFile(fs vfs.FS, path string, size int64, stop *atomic.Bool) error {
	f, err := fs.Create(path)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	for off := int64(0); off < size; {
		if stop != nil && stop.Load() {
			f.Close()
			return errStopped
		}
		n := min(int64(len(zeroChunk)), size-off)
		if _, err := f.Write(zeroChunk[:n]); err != nil {
			f.Close()
			return fmt.Errorf("prepare %s: %w", path, err)
		}
		// A chunk at a time to the disk, so that the log's syncs, which
		// writes wait for, queue behind a megabyte of zeros at most and
		// not behind the whole segment at the Sync below.
		if err := vfs.WriteBack(f); err != nil {
			f.Close()
			return fmt.Errorf("prepare %s: %w", path, err)
		}
		off += n
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	return nil
}

// installSegment turns the zero-filled file tmp into the segment at path:
// header written at its start and synced, then renamed and the directory
// synced, so that after a crash the segment is either absent or whole.
// The handle it returns was opened without O_APPEND: offset 0, so that
// writes through Write land where WriteAt would put them.
func installSegment(fs vfs.FS, tmp, path string, header []byte) (vfs.File, error) {
	f, err := fs.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	_, err = writeAt(f, header, 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err == nil {
		err = fs.SyncDir(dirOf(path))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return f, nil
}

// writeAt writes p at off. A handle without WriteAt is only ever written
// at its own offset, which the log keeps equal to off (see openTail).
func writeAt(f vfs.File, p []byte, off int64) (int, error) {
	if wa, ok := f.(io.WriterAt); ok {
		return wa.WriteAt(p, off)
	}
	return f.Write(p)
}

// preparedSeg is the next segment's file, zero-filled by a goroutine.
type preparedSeg struct {
	seq  uint32
	path string
	stop atomic.Bool
	done chan struct{} // closed when the preparation has ended; err is set
	err  error
}

// finished reports whether the preparation has ended.
func (p *preparedSeg) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// prepareNext starts zero-filling the file of segment seq: in a goroutine
// on the real file system, inline elsewhere (see vfs.IsOS). It runs as
// soon as the segment before seq begins, so that a full disk shows while
// the current segment still has room (see space.go). Only the writer's
// goroutine calls it.
func (w *writer) prepareNext(seq uint32) {
	if w.next != nil {
		return
	}
	p := &preparedSeg{seq: seq, path: prepPath(w.dir, seq), done: make(chan struct{})}
	size := segmentLimit(seq, w.segBytes)
	w.next = p
	w.space.prep.Store(p)
	run := func() {
		defer close(p.done)
		p.err = w.space.check(w.fs, w.dir, size)
		if p.err == nil {
			p.err = zeroFile(w.fs, p.path, size, &p.stop)
		}
		if p.err != nil && p.err != errStopped {
			// Best effort (Open removes leftovers): what a failed
			// preparation took is what a snapshot may need.
			w.fs.Remove(p.path)
		}
		w.space.note(p.err, w.logger, p.path)
	}
	if w.background {
		go run()
	} else {
		run()
	}
}

// retryPrepare starts the next segment's preparation again if the last
// one failed.
func (w *writer) retryPrepare() {
	if p := w.next; p != nil {
		if !p.finished() || p.err == nil {
			return
		}
		w.next = nil
	}
	w.prepareNext(w.seq + 1)
}

// takePrepared returns the prepared file for seq, waiting for it if it
// is not ready: it started a whole segment ago, so the wait is short, and
// a segment without preallocation would be slower for its whole life.
func (w *writer) takePrepared(seq uint32) (string, bool) {
	p := w.next
	if p == nil {
		return "", false
	}
	w.next = nil
	<-p.done
	if p.err == nil && p.seq == seq {
		return p.path, true
	}
	if p.err != nil {
		w.logger.Warn("wal: preparing a segment file failed; the next segment is not preallocated",
			"file", p.path, "err", p.err)
	}
	w.fs.Remove(p.path) // best effort: Open removes leftovers
	return "", false
}

// stopPreparing abandons the file being prepared, if any.
func (w *writer) stopPreparing() {
	if p := w.next; p != nil {
		w.next = nil
		p.stop.Store(true)
		<-p.done
		w.fs.Remove(p.path) // best effort: Open removes leftovers
	}
}

// createSegment creates segment s holding header, preallocated when it can.
func (w *writer) createSegment(s *segment, header []byte) (vfs.File, error) {
	tmp, ok := w.takePrepared(s.seq)
	if !ok {
		// Preparing failed: do not zero-fill on the commit path. An empty
		// file is installed alike; writes then extend it.
		tmp = prepPath(w.dir, s.seq)
		if err := zeroFile(w.fs, tmp, 0, nil); err != nil {
			return nil, err
		}
	}
	return installSegment(w.fs, tmp, s.path, header)
}
