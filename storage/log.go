package storage

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Limits and defaults of Options.
const (
	SegmentBytesDefault = 64 << 20
	SegmentBytesMax     = 256 << 20
	CacheBytesDefault   = 4 << 20
	// EntryDataMaxBytes bounds one entry's data; Save rejects larger ones.
	EntryDataMaxBytes = recordMaxBytes - 64
)

// Options configure a Log. The zero value works.
type Options struct {
	// SegmentBytes is the size past which the log starts a new segment
	// file, and the size segment files are preallocated to. A new log's
	// first segments are smaller (4 MiB, doubling up to SegmentBytes).
	// Zero means SegmentBytesDefault; at most SegmentBytesMax.
	SegmentBytes int64
	// CacheBytes bounds the cache of recent entries beyond those not yet
	// written to a file (always cached). Zero means CacheBytesDefault;
	// negative means cache only unwritten entries.
	CacheBytes int64
	// Logger reports repairs (a torn tail cut off). Nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.SegmentBytes == 0:
		o.SegmentBytes = SegmentBytesDefault
	case o.SegmentBytes < 0 || o.SegmentBytes > SegmentBytesMax:
		return o, fmt.Errorf("wal: SegmentBytes %d outside [1, %d]", o.SegmentBytes, SegmentBytesMax)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = CacheBytesDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// segment is one file of the log. A segment is listed in Log.segs as soon
// as Save decides to start it; onDisk says whether the writer created it.
type segment struct {
	seq    uint32
	first  pb.Index // no entry of the live log below first is in this segment
	path   string
	f      vfs.File // opened lazily for reads; the writer's handle for new segments
	onDisk bool
}

func segmentName(seq uint32, first pb.Index) string {
	return fmt.Sprintf("%016x-%016x.wal", seq, uint64(first))
}

// chunk is bytes bound for one segment; create asks the writer to start
// that segment with them (they begin with its header).
type chunk struct {
	seg    *segment
	create bool
	data   []byte
	file   vfs.File // set by the writer when it creates seg
}

// batch is what one flush writes: chunks in order, then removals of
// compacted segments once the batch is durable.
type batch struct {
	chunks []chunk
	remove []*segment
}

// Log is the write-ahead log. It implements raft.Storage. All methods are
// safe for concurrent use; see the package doc for the locking story.
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options
	lock io.Closer

	mu      sync.Mutex
	flushed sync.Cond // broadcast whenever a flush ends
	err     error     // sticky: first write, sync or remove failure
	closed  bool

	hard  pb.HardState
	idx   logIndex
	cache entryCache
	segs  []*segment // live segments by seq; the last is the tail

	tailBytes      int64 // bytes assigned to the tail, written or not
	tailAlloc      int64 // bytes of the tail's file allocated in advance (space.go)
	tailHasRecords bool  // the tail holds a record besides its header

	pending   *batch
	spare     *batch // the last flushed batch, emptied for reuse
	freeBufs  [][]byte
	scratch   []byte // payload encoding, under mu
	hdrBuf    []byte // segment header encoding, under mu
	savedSeq  uint64 // count of Saves and Compacts that produced work
	syncedSeq uint64 // savedSeq as of the last successful flush
	syncing   bool   // a goroutine is flushing; it alone uses w

	writtenSeq uint32 // every record before (writtenSeq, writtenOff) is in a file
	writtenOff int64

	w writer
}

var _ raft.Storage = (*Log)(nil)

// Open opens (or creates) the log in dir, verifies every record and
// repairs a torn tail. It fails with ErrLocked if dir is in use and with a
// *CorruptError if synced data is damaged.
func Open(fs vfs.FS, dir string, opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	lock, err := fs.Lock(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	l := &Log{fs: fs, dir: dir, opts: opts, lock: lock, pending: &batch{}}
	l.flushed.L = &l.mu
	l.w = writer{fs: fs, dir: dir, segBytes: opts.SegmentBytes, background: vfs.IsOS(fs), logger: opts.Logger}
	if err := l.recover(); err != nil {
		l.closeFiles()
		lock.Close()
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	return l, nil
}

// Close syncs what was saved, then releases the files and the lock.
func (l *Log) Close() error {
	err := l.Sync()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	for l.syncing {
		l.flushed.Wait()
	}
	l.closed = true
	l.w.stopPreparing()
	l.closeFiles()
	if cerr := l.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() {
	for _, s := range l.segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

// usableLocked returns why the log cannot take calls, if it cannot.
func (l *Log) usableLocked() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// failLocked makes err sticky: after a failed write or fsync the page cache
// may hold data the disk does not, so nothing later can be trusted.
func (l *Log) failLocked(err error) {
	if l.err == nil {
		l.err = fmt.Errorf("wal: %s: %w (the log is unusable; restart to recover)", l.dir, err)
		l.opts.Logger.Error("wal failed", "dir", l.dir, "err", err)
	}
}

func (l *Log) tail() *segment { return l.segs[len(l.segs)-1] }

// Save buffers a hard state, an installed snapshot and entries; Sync makes
// them durable. A zero hs means unchanged. When snap is not nil the log
// restarts right after it (everything older or newer is discarded) before
// ents are appended. ents replace any existing entries from ents[0].Index
// on; entries at or below the snapshot index are skipped; a gap is an
// error. Save keeps ents' Data: the caller must not modify it afterwards.
func (l *Log) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for {
		if err := l.usableLocked(); err != nil {
			return err
		}
		ents, err = l.checkSaveLocked(hs, snap, ents)
		if err != nil {
			return err
		}
		wait, err := l.roomLocked(saveBytes(ents))
		if err != nil {
			return err
		}
		if wait == nil {
			break
		}
		l.mu.Unlock()
		<-wait
		l.mu.Lock()
	}
	if snap == nil && len(ents) == 0 && (hs.IsEmpty() || hs == l.hard) {
		return nil
	}
	if !hs.IsEmpty() && (hs.Term != l.hard.Term || hs.Vote != l.hard.Vote) && (snap != nil || len(ents) > 0) {
		// The term and vote go first, with the commit index as it was: a
		// torn batch must not keep a snapshot or entries of a term the
		// server would not know it had reached (Figure 2: currentTerm is
		// at least every term in the log).
		l.scratch = pb.AppendHardState(l.scratch[:0], pb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: l.hard.Commit})
		l.addRecordLocked(recHardState, l.scratch)
		l.hard = pb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: l.hard.Commit}
	}
	if snap != nil {
		l.scratch = pb.AppendSnapshotMeta(l.scratch[:0], *snap)
		l.addRecordLocked(recSnapshot, l.scratch)
		l.idx.reset(*snap)
		l.cache.clear()
	}
	for i := range ents {
		l.addEntryLocked(&ents[i])
	}
	// The hard state goes last: a torn batch may keep entries without the
	// commit index that covers them, never the reverse.
	if !hs.IsEmpty() && hs != l.hard {
		l.scratch = pb.AppendHardState(l.scratch[:0], hs)
		l.addRecordLocked(recHardState, l.scratch)
		l.hard = hs
	}
	l.savedSeq++
	l.evictLocked()
	return nil
}

// saveBytes bounds the bytes of the records a Save adds: entries, and all.
func saveBytes(ents []pb.Entry) (entries, all int64) {
	for i := range ents {
		entries += int64(entryRecordBytes(ents[i].Term, ents[i].Index, len(ents[i].Data)))
	}
	return entries, entries + 2*(recordHeaderBytes+128) // a snapshot marker and a hard state
}

// checkSaveLocked validates a Save before anything changes, so a rejected
// Save leaves the log as it was. It returns ents without those the
// snapshot covers.
func (l *Log) checkSaveLocked(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) ([]pb.Entry, error) {
	base, last := l.idx.snap, l.idx.last()
	if snap != nil {
		if snap.Index < base.Index {
			return nil, fmt.Errorf("wal: save: snapshot %d older than current %d", snap.Index, base.Index)
		}
		base, last = *snap, snap.Index
	}
	for len(ents) > 0 && ents[0].Index <= base.Index {
		ents = ents[1:]
	}
	newLast := last
	if len(ents) > 0 {
		newLast = ents[len(ents)-1].Index
	}
	commit := l.hard.Commit
	if !hs.IsEmpty() {
		commit = hs.Commit
	}
	// A commit index past the end of the log would mean committed entries
	// are missing (recovery refuses such a log): a caller bug, caught here.
	if commit > newLast {
		return nil, fmt.Errorf("wal: save: commit index %d past the last index %d", commit, newLast)
	}
	if len(ents) == 0 {
		return nil, nil
	}
	if ents[0].Index > last+1 {
		return nil, fmt.Errorf("wal: save: entry %d leaves a gap after last index %d", ents[0].Index, last)
	}
	prevTerm := base.Term
	if p := ents[0].Index - 1; p > base.Index {
		prevTerm = l.idx.term(p)
	}
	for i := range ents {
		e := &ents[i]
		switch {
		case i > 0 && e.Index != ents[i-1].Index+1:
			return nil, fmt.Errorf("wal: save: entries not contiguous at %d after %d", e.Index, ents[i-1].Index)
		case e.Term < prevTerm:
			return nil, fmt.Errorf("wal: save: entry %d has term %d below the previous %d", e.Index, e.Term, prevTerm)
		case e.Type > pb.EntryConfChange:
			return nil, fmt.Errorf("wal: save: entry %d has unknown type %d", e.Index, e.Type)
		case len(e.Data) > EntryDataMaxBytes:
			return nil, fmt.Errorf("wal: save: entry %d has %d bytes, over %d", e.Index, len(e.Data), EntryDataMaxBytes)
		}
		prevTerm = e.Term
	}
	return ents, nil
}

// addEntryLocked appends e's record to the pending batch, truncating any
// entries it replaces.
func (l *Log) addEntryLocked(e *pb.Entry) {
	n := entryRecordBytes(e.Term, e.Index, len(e.Data))
	c, off := l.reserveLocked(n, e.Index)
	b, start := beginRecord(c.data)
	b = pb.AppendEntry(b, e)
	c.data = finishRecord(b, start, recEntry, recordPos(l.tail().seq, off))
	if e.Index <= l.idx.last() {
		l.idx.truncateFrom(e.Index)
		l.cache.truncateFrom(e.Index)
	}
	l.idx.add(e.Term, entryLoc{seq: l.tail().seq, off: uint32(off), dataLen: uint32(len(e.Data))})
	l.cache.add(*e)
}

// addRecordLocked appends a record with an encoded payload.
func (l *Log) addRecordLocked(typ recordType, payload []byte) {
	c, off := l.reserveLocked(recordHeaderBytes+len(payload), l.idx.last()+1)
	c.data = appendRecord(c.data, typ, recordPos(l.tail().seq, off), payload)
}

// reserveLocked finds room for a record of n bytes: in the tail, or in a
// new segment whose entries start at first. It returns the chunk to encode
// into and the record's offset in its segment.
func (l *Log) reserveLocked(n int, first pb.Index) (*chunk, int64) {
	if l.tailHasRecords && l.tailBytes+int64(n) > segmentLimit(l.tail().seq, l.opts.SegmentBytes) {
		l.rollLocked(first)
	}
	off := l.tailBytes
	l.tailBytes += int64(n)
	l.tailHasRecords = true
	b := l.pending
	if k := len(b.chunks); k > 0 && b.chunks[k-1].seg == l.tail() {
		return &b.chunks[k-1], off
	}
	b.chunks = append(b.chunks, chunk{seg: l.tail(), data: l.takeBufLocked()})
	return &b.chunks[len(b.chunks)-1], off
}

// rollLocked starts a new tail segment. Its header carries the hard state
// and snapshot marker in force, so older segments can go without them.
func (l *Log) rollLocked(first pb.Index) {
	seq := l.tail().seq + 1
	s := &segment{seq: seq, first: first, path: filepath.Join(l.dir, segmentName(seq, first))}
	l.hdrBuf = appendSegmentHeader(l.hdrBuf[:0], segmentHeader{seq: seq, first: first, hard: l.hard, snap: l.idx.snap})
	data := appendRecord(l.takeBufLocked(), recSegmentHeader, recordPos(seq, 0), l.hdrBuf)
	l.pending.chunks = append(l.pending.chunks, chunk{seg: s, create: true, data: data})
	l.segs = append(l.segs, s)
	l.tailBytes = int64(len(data))
	l.tailHasRecords = false
	l.tailAlloc = 0 // the writer installs an empty file when preparing failed
	if l.preparedLocked(seq) {
		l.tailAlloc = segmentLimit(seq, l.opts.SegmentBytes)
	}
}

// Buffers are recycled between batches; a huge one is let go rather than
// kept forever.
const (
	freeBufsMax      = 4
	freeBufKeepBytes = 16 << 20
)

func (l *Log) takeBufLocked() []byte {
	if n := len(l.freeBufs); n > 0 {
		b := l.freeBufs[n-1]
		l.freeBufs = l.freeBufs[:n-1]
		return b[:0]
	}
	return nil
}

func (l *Log) recycleLocked(b *batch) {
	for i := range b.chunks {
		if d := b.chunks[i].data; cap(d) <= freeBufKeepBytes && len(l.freeBufs) < freeBufsMax {
			l.freeBufs = append(l.freeBufs, d)
		}
		b.chunks[i] = chunk{}
	}
	b.chunks = b.chunks[:0]
	clear(b.remove)
	b.remove = b.remove[:0]
}

// evictLocked trims the cache to its bound, keeping entries not yet written.
func (l *Log) evictLocked() {
	c := &l.cache
	for c.n > 0 && int64(c.bytes) > max(l.opts.CacheBytes, 0) {
		if !l.idx.loc(c.first()).before(l.writtenSeq, l.writtenOff) {
			return
		}
		c.dropFront()
	}
}

// Sync makes everything saved before it was called durable: one fdatasync
// covers every Save since the previous flush (group commit). Saves may go
// on while it runs. Any write or fsync error is sticky and fatal.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	target := l.savedSeq
	for l.err == nil && l.syncedSeq < target {
		if l.syncing {
			l.flushed.Wait()
			continue
		}
		l.flushLocked()
	}
	return l.err
}

// flushLocked writes and syncs the pending batch with mu released, so
// that Saves can fill the next batch meanwhile.
func (l *Log) flushLocked() {
	b, seq := l.pending, l.savedSeq
	l.pending, l.spare = l.spare, nil
	if l.pending == nil {
		l.pending = &batch{}
	}
	l.syncing = true
	l.mu.Unlock()
	err := l.w.writeBatch(b)
	l.mu.Lock()
	l.syncing = false
	defer l.flushed.Broadcast()
	for i := range b.chunks {
		if c := &b.chunks[i]; c.create && c.file != nil {
			c.seg.f, c.seg.onDisk = c.file, true
		}
	}
	for _, s := range b.remove {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
	if err != nil {
		l.failLocked(err)
		return
	}
	l.syncedSeq = seq
	l.writtenSeq, l.writtenOff = l.w.seq, l.w.off
	l.evictLocked()
	l.recycleLocked(b)
	l.spare = b
}

// Compact records that a durable snapshot covers entries up to meta.Index:
// FirstIndex becomes meta.Index+1, and segments holding only entries up to
// meta.Index are deleted once the record is durable. The newest segment is
// always kept. A meta not newer than the current snapshot is only a request
// to delete what it covers.
func (l *Log) Compact(meta pb.SnapshotMeta) error {
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	if meta.Index > l.idx.snap.Index {
		if err := l.checkCompactLocked(meta); err != nil {
			l.mu.Unlock()
			return err
		}
		l.scratch = pb.AppendSnapshotMeta(l.scratch[:0], meta)
		l.addRecordLocked(recCompact, l.scratch)
		l.idx.compact(meta)
		l.cache.dropThrough(meta.Index)
		l.savedSeq++
	}
	l.scheduleRemovalsLocked(meta.Index)
	l.mu.Unlock()
	return l.Sync()
}

func (l *Log) checkCompactLocked(meta pb.SnapshotMeta) error {
	if meta.Index > l.idx.last() {
		return fmt.Errorf("wal: compact %d: %w: past last index %d", meta.Index, raft.ErrUnavailable, l.idx.last())
	}
	if t := l.idx.term(meta.Index); t != meta.Term {
		return fmt.Errorf("wal: compact %d: snapshot term %d but the entry has term %d", meta.Index, meta.Term, t)
	}
	return nil
}

// scheduleRemovalsLocked hands the writer the oldest segments whose live
// entries are all at or below index. The live entries of segs[k] are below
// segs[k+1].first. The writer removes them only after the batch (which holds
// the snapshot marker) is durable, and oldest first, so a crash midway
// leaves a log that still starts with a whole segment.
func (l *Log) scheduleRemovalsLocked(index pb.Index) {
	k := 0
	for k+1 < len(l.segs) && l.segs[k+1].first <= index+1 {
		k++
	}
	if k == 0 {
		return
	}
	l.pending.remove = append(l.pending.remove, l.segs[:k]...)
	l.segs = append([]*segment(nil), l.segs[k:]...)
	l.savedSeq++
}
