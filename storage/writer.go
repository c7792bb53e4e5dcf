package storage

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/raftkv/raftkv/storage/vfs"
)

// writer turns batches into file writes. Only the goroutine that set
// Log.syncing uses it, without holding Log.mu (and recovery and Close,
// when no one else can).
type writer struct {
	fs         vfs.FS
	dir        string
	segBytes   int64
	background bool // prepare segment files in a goroutine (vfs.IsOS)
	logger     *slog.Logger
	seq        uint32       // segment being appended to
	f          vfs.File     // its handle (shared with readers, who only ReadAt)
	off        int64        // bytes of records in it
	next       *preparedSeg // the next segment's file, being prepared
	space      spaceState
	seal       []byte
	bufs       [][]byte // the chunks of the batch being written (writeSync)
}

// writeBatch writes the chunks in order with one write call per chunk,
// makes them durable with one fdatasync, then removes compacted segments.
// When every chunk goes to the current segment and its file can, the
// writes and the sync go in one request (vfs.WriteSyncer).
func (w *writer) writeBatch(b *batch) error {
	// Only with WriteAt for the other writes: a Write at the handle's
	// offset would not see what WriteAtSync wrote.
	_, at := w.f.(io.WriterAt)
	if ws, ok := w.f.(vfs.WriteSyncer); ok && at && appendsOnly(b) {
		if err := w.writeSync(ws, b); err != nil {
			return err
		}
		return w.finishBatch(b)
	}
	for i := range b.chunks {
		c := &b.chunks[i]
		var err error
		if c.create {
			err = w.startSegment(c)
		} else {
			err = w.write(c.data)
		}
		if err != nil {
			return err
		}
	}
	if len(b.chunks) > 0 {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("sync segment %d: %w", w.seq, err)
		}
	}
	return w.finishBatch(b)
}

// appendsOnly reports whether b writes something and creates no segment.
func appendsOnly(b *batch) bool {
	for i := range b.chunks {
		if b.chunks[i].create {
			return false
		}
	}
	return len(b.chunks) > 0
}

// writeSync writes b's chunks to the current segment and syncs it in one
// request.
func (w *writer) writeSync(ws vfs.WriteSyncer, b *batch) error {
	for i := range b.chunks {
		w.bufs = append(w.bufs, b.chunks[i].data)
	}
	n, err := ws.WriteAtSync(w.bufs, w.off)
	clear(w.bufs) // hold no batch's memory past its write
	w.bufs = w.bufs[:0]
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("write and sync segment %d at %d: %w", w.seq, w.off, err)
	}
	return nil
}

// finishBatch removes the segments b compacted away, once b is durable.
func (w *writer) finishBatch(b *batch) error {
	if err := w.removeSegments(b.remove); err != nil {
		return err
	}
	if len(b.remove) > 0 && w.space.noSpace.Load() {
		w.retryPrepare() // compaction freed space
	}
	return nil
}

func (w *writer) write(data []byte) error {
	n, err := writeAt(w.f, data, w.off)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("write segment %d at %d: %w", w.seq, w.off, err)
	}
	return nil
}

// startSegment creates the segment of c. Recovery tolerates a torn tail
// only in the last segment, so the current one is made durable before its
// successor exists; the successor appears whole (prepared under a
// temporary name, synced, renamed, directory synced). Then the old segment
// is sealed: a sealed segment without a successor tells recovery that the
// newest segment was lost. Then the file of the one after is prepared.
func (w *writer) startSegment(c *chunk) error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync segment %d: %w", w.seq, err)
	}
	f, err := w.createSegment(c.seg, c.data)
	if err != nil {
		return err
	}
	w.seal = appendRecord(w.seal[:0], recSeal, recordPos(w.seq, w.off), appendSeal(nil, c.seg.seq))
	if err := w.write(w.seal); err != nil {
		f.Close()
		return err
	}
	if err := w.f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync segment %d: %w", w.seq, err)
	}
	c.file = f
	w.seq, w.f, w.off = c.seg.seq, f, int64(len(c.data))
	w.prepareNext(w.seq + 1)
	return nil
}

// removeSegments deletes compacted segments oldest first, then syncs the
// directory once.
func (w *writer) removeSegments(segs []*segment) error {
	if len(segs) == 0 {
		return nil
	}
	for _, s := range segs {
		if err := w.fs.Remove(s.path); err != nil {
			return fmt.Errorf("remove compacted segment: %w", err)
		}
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fmt.Errorf("sync dir after removing segments: %w", err)
	}
	return nil
}
