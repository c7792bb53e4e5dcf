package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

const (
	walSuffix = ".wal"
	tmpSuffix = ".tmp"
	// readChunkBytes is how much recovery reads per call.
	readChunkBytes = 4 << 20
	// sealRecordBytes is the size of a seal record.
	sealRecordBytes = recordHeaderBytes + 4
)

func dirOf(path string) string { return filepath.Dir(path) }

// recover loads the log from its segments: every record is read and
// checked, the state rebuilt by replaying them in order, a torn tail cut
// off. It runs before the Log is shared, so it takes no lock.
func (l *Log) recover() error {
	segs, err := l.listSegments()
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return l.createFirstSegment()
	}
	l.segs = segs // so that a failure closes every file opened
	r := replayer{fs: l.fs, logger: l.opts.Logger}
	end, err := r.replayAll(segs)
	if err != nil {
		return err
	}
	if err := r.finish(segs[0], segs[len(segs)-1], end); err != nil {
		return err
	}
	tail := segs[len(segs)-1]
	if tail.f, err = openTail(l.fs, tail, r.tailFile, r.tailSize, end); err != nil {
		return err
	}
	l.hard, l.idx = r.hard, r.idx
	l.tailBytes, l.tailHasRecords = end, end > r.headerEnd
	l.tailAlloc = end
	if _, ok := tail.f.(io.WriterAt); ok {
		l.tailAlloc = max(r.tailSize, end)
	}
	l.w.seq, l.w.f, l.w.off = tail.seq, tail.f, end
	l.writtenSeq, l.writtenOff = tail.seq, end
	l.w.prepareNext(tail.seq + 1)
	return nil
}

// openTail returns the writer's handle on the last segment, whose records
// end at end. f (opened read-write, without O_APPEND) serves if it can
// write at an offset. Otherwise writes go through Write at the handle's
// offset, which only O_APPEND puts at end: the zeros after end (of a
// preallocated file) are cut off first.
func openTail(fs vfs.FS, s *segment, f vfs.File, size, end int64) (vfs.File, error) {
	if _, ok := f.(io.WriterAt); ok {
		return f, nil
	}
	if size > end {
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("truncate %s: %w", s.path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("sync %s: %w", s.path, err)
		}
	}
	af, err := fs.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	f.Close()
	return af, nil
}

// listSegments returns the segments in dir by seq, after removing
// temporary files a crash left. Seqs must be consecutive: a hole means a
// segment was lost.
func (l *Log) listSegments() ([]*segment, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	removed := false
	for _, name := range names {
		path := filepath.Join(l.dir, name)
		switch {
		case strings.HasSuffix(name, walSuffix+tmpSuffix):
			if err := l.fs.Remove(path); err != nil {
				return nil, err
			}
			removed = true
		case strings.HasSuffix(name, walSuffix):
			s, err := parseSegmentName(path)
			if err != nil {
				return nil, err
			}
			if n := len(segs); n > 0 && s.seq != segs[n-1].seq+1 {
				return nil, corruptf(path, 0, "segment %d is missing before this one", segs[n-1].seq+1)
			}
			segs = append(segs, s)
		}
	}
	if removed {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return nil, err
		}
	}
	return segs, nil
}

func parseSegmentName(path string) (*segment, error) {
	name := filepath.Base(path)
	hexes := strings.TrimSuffix(name, walSuffix)
	seqHex, firstHex, ok := strings.Cut(hexes, "-")
	seq, err1 := strconv.ParseUint(seqHex, 16, 32)
	first, err2 := strconv.ParseUint(firstHex, 16, 64)
	if !ok || err1 != nil || err2 != nil || len(seqHex) != 16 || len(firstHex) != 16 || seq == 0 {
		return nil, corruptf(path, 0, "not a segment name (want %s)", segmentName(1, 1))
	}
	return &segment{seq: uint32(seq), first: pb.Index(first), path: path, onDisk: true}, nil
}

// createFirstSegment starts a new log, preallocated inline: it is small
// (rampSegmentBytes at most).
func (l *Log) createFirstSegment() error {
	s := &segment{seq: 1, first: 1, path: filepath.Join(l.dir, segmentName(1, 1))}
	hdr := appendSegmentHeader(nil, segmentHeader{seq: 1, first: 1})
	data := appendRecord(nil, recSegmentHeader, recordPos(1, 0), hdr)
	tmp := prepPath(l.dir, 1)
	if err := zeroFile(l.fs, tmp, segmentLimit(1, l.opts.SegmentBytes), nil); err != nil {
		return err
	}
	f, err := installSegment(l.fs, tmp, s.path, data)
	if err != nil {
		return err
	}
	s.f, s.onDisk = f, true
	l.segs = []*segment{s}
	l.idx.lo = 1
	l.tailBytes = int64(len(data))
	l.tailAlloc = segmentLimit(1, l.opts.SegmentBytes)
	l.w.seq, l.w.f, l.w.off = 1, f, int64(len(data))
	l.writtenSeq, l.writtenOff = 1, int64(len(data))
	l.w.prepareNext(2)
	return nil
}

// replayer rebuilds the log's state from its records.
type replayer struct {
	fs        vfs.FS
	logger    *slog.Logger
	hard      pb.HardState
	idx       logIndex
	started   bool     // a segment header has set the starting state
	sealed    bool     // the current segment ended with a seal record
	headerEnd int64    // end of the current segment's header record
	tailFile  vfs.File // the last segment, opened read-write
	tailSize  int64    // its size
}

// Recovery checks segments in parallel and applies what they hold in log
// order on one goroutine: reading and checksumming are most of the work,
// and every core (and, on a cold cache, several read streams: a few more
// than cores measured best) speeds them. At most scanAhead segments'
// record lists (32 bytes a record) exist at once.
func scanAhead() int { return runtime.GOMAXPROCS(0) + 3 }

// scanned is one good record as a worker decoded it, in 32 bytes: a
// segment of small entries has millions. Entries keep only what the index
// needs; other records keep their payload in segScan.payloads, from
// pstart, size bytes.
type scanned struct {
	off   uint32
	size  uint32 // entries: data length; others: payload length
	term  pb.Term
	index pb.Index // entries
	typ   recordType
	// pstart is where the payload is in segScan.payloads (not entries).
	pstart uint32
}

// segEnd is how a segment's records end.
type segEnd int

const (
	endClean   segEnd = iota // at the end of the file, or zeros from there on
	endTorn                  // a torn write: cut it off
	endCorrupt               // refuse
)

// decodeEntryHeader returns what the index needs of an encoded entry
// (raftpb.AppendEntry) and accepts exactly what raftpb.DecodeEntry does;
// recovery runs it on every entry, without building one.
func decodeEntryHeader(p []byte) (pb.Term, pb.Index, uint32, bool) {
	term, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, 0, 0, false
	}
	p = p[n:]
	index, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, 0, 0, false
	}
	p = p[n:]
	if len(p) < 1 || p[0] > byte(pb.EntryConfChange) {
		return 0, 0, 0, false
	}
	p = p[1:]
	size, n := binary.Uvarint(p)
	if n <= 0 || size != uint64(len(p)-n) {
		return 0, 0, 0, false
	}
	return pb.Term(term), pb.Index(index), uint32(size), true
}

// segScan is what a worker found in a segment: the good records, and why
// and how they end.
type segScan struct {
	recs     []scanned
	payloads []byte
	end      int64  // where the good records end
	size     int64  // the file's size
	how      segEnd // meaning of what lies from end on
	why      error  // what failed to decode at end (endTorn, endCorrupt)
	garbage  int64  // endTorn in the last segment: the torn bytes end here
	err      error  // endCorrupt, or a read failure
}

// replayAll scans every segment and applies them in order. It returns
// where the records of the last segment end. The first failure in log
// order wins, and nothing after it is applied.
func (r *replayer) replayAll(segs []*segment) (int64, error) {
	n := len(segs)
	results := make([]chan *segScan, n)
	for i := range results {
		results[i] = make(chan *segScan, 1)
	}
	slots := make(chan struct{}, scanAhead())
	free := make(chan []scanned, scanAhead()+1)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, s := range segs {
			select {
			case slots <- struct{}{}:
			case <-quit:
				return
			}
			var recs []scanned
			select {
			case recs = <-free:
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] <- scanSegment(r.fs, s, i == n-1, i == n-2, recs)
			}()
		}
	}()
	// Workers set s.f: wait for them before anyone closes the files.
	defer func() {
		close(quit)
		wg.Wait()
	}()
	var end int64
	for i, s := range segs {
		sc := <-results[i]
		var err error
		end, err = r.applySegment(s, sc, i == n-1)
		select {
		case free <- sc.recs[:0]:
		default:
		}
		sc.recs = nil
		<-slots
		if err != nil {
			return 0, err
		}
	}
	return end, nil
}

// applySegment applies the records a worker found in s, then acts on how
// they end: cut a torn write, or refuse.
func (r *replayer) applySegment(s *segment, sc *segScan, last bool) (int64, error) {
	r.sealed = false
	r.idx.reserve(len(sc.recs))
	for i := range sc.recs {
		rec := &sc.recs[i]
		var payload []byte
		if rec.typ != recEntry {
			payload = sc.payloads[rec.pstart : rec.pstart+rec.size]
		}
		if err := r.apply(s, rec, payload); err != nil {
			return 0, corruptf(s.path, int64(rec.off), "%v", err)
		}
	}
	switch sc.how {
	case endCorrupt:
		return 0, sc.err
	case endTorn:
		if err := r.cutTorn(s, sc, last); err != nil {
			return 0, err
		}
	}
	if r.sealed && last {
		return 0, corruptf(s.path, sc.end-sealRecordBytes, "segment is sealed but its successor %d is missing", s.seq+1)
	}
	if last {
		r.tailFile, r.tailSize = s.f, sc.size
	}
	return sc.end, nil
}

// scanSegment opens s (read-write if last), decodes its records and
// decides what a record that fails to decode means. recs is a slice to
// reuse. Only reads: changes wait until everything before is applied.
func scanSegment(fs vfs.FS, s *segment, last, penultimate bool, recs []scanned) *segScan {
	sc := &segScan{recs: recs[:0]}
	var err error
	if last {
		s.f, err = fs.OpenFile(s.path, os.O_RDWR, 0)
	} else {
		s.f, err = fs.Open(s.path)
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = s.f.Stat(); err == nil {
			sc.size = fi.Size()
		}
	}
	if err != nil {
		return sc.fail(err)
	}
	rd := recordReader{f: s.f, size: sc.size, seq: s.seq}
	var off int64
	var prev recordType
	for {
		typ, payload, n, err := rd.next(off)
		if err == io.EOF {
			sc.end, sc.how = off, endClean
			return sc
		}
		if _, ok := err.(*recordError); ok || err == errShortRecord {
			sc.end, sc.why = off, err
			classifyEnd(s, sc, rd.buf, last, penultimate, prev == recSeal)
			return sc
		}
		if err != nil {
			return sc.fail(fmt.Errorf("read %s: %w", s.path, err))
		}
		rec := scanned{typ: typ, off: uint32(off)}
		if typ == recEntry {
			var ok bool
			if rec.term, rec.index, rec.size, ok = decodeEntryHeader(payload); !ok {
				// Impossible where it stands, like a record apply refuses:
				// what comes before is applied first, so errors keep log order.
				_, err := pb.DecodeEntry(payload)
				sc.end = off
				return sc.fail(corruptf(s.path, off, "%v", err))
			}
		} else {
			rec.pstart, rec.size = uint32(len(sc.payloads)), uint32(len(payload))
			sc.payloads = append(sc.payloads, payload...)
		}
		sc.recs = append(sc.recs, rec)
		prev = typ
		off += int64(n)
	}
}

func (sc *segScan) fail(err error) *segScan {
	sc.how, sc.err = endCorrupt, err
	return sc
}

// classifyEnd decides what the bytes from sc.end on mean, where a record
// fails to decode: the free space of a preallocated segment (zeros), the
// torn end of the last write (cut it off) or damage (refuse). A torn write
// leaves a prefix of what was written, or zeros, and nothing valid after.
func classifyEnd(s *segment, sc *segScan, buf []byte, last, penultimate, sealed bool) {
	off := sc.end
	if off == 0 {
		sc.fail(corruptf(s.path, 0, "segment header: %v", sc.why))
		return
	}
	// Where the non-zero bytes end: from there on is free space.
	nz, err := nonZeroEnd(s.f, off, sc.size, buf)
	if err != nil {
		sc.fail(fmt.Errorf("read %s: %w", s.path, err))
		return
	}
	switch {
	case nz == off && (last || sealed):
		sc.how = endClean
	case last:
		p, found, err := findRecord(s.f, s.seq, off+1, nz, sc.size)
		switch {
		case err != nil:
			sc.fail(fmt.Errorf("read %s: %w", s.path, err))
		case found:
			sc.fail(corruptf(s.path, off, "%v, and a valid record follows at %d", sc.why, p))
		default:
			sc.how, sc.garbage = endTorn, nz
		}
	case penultimate && !sealed:
		torn, err := isTornSeal(s, off, nz)
		switch {
		case err != nil:
			sc.fail(fmt.Errorf("read %s: %w", s.path, err))
		case torn:
			sc.how = endTorn
		default:
			sc.fail(corruptf(s.path, off, "%v", sc.why))
		}
	default:
		sc.fail(corruptf(s.path, off, "%v", sc.why))
	}
}

// cutTorn removes a torn write found by classifyEnd. In the last segment
// the torn bytes are overwritten with zeros when the file can be written
// at an offset and is preallocated past them (so it stays preallocated),
// else cut off with Truncate. The penultimate segment, which is never
// written again, is truncated after its last record.
func (r *replayer) cutTorn(s *segment, sc *segScan, last bool) error {
	off := sc.end
	f, end := s.f, sc.size
	if last {
		end = sc.garbage
	} else {
		var err error
		if f, err = r.fs.OpenFile(s.path, os.O_RDWR, 0); err != nil {
			return err
		}
		defer f.Close()
	}
	r.logger.Warn("wal: cutting off a torn write at the end of the log",
		"file", s.path, "offset", off, "bytes", end-off, "reason", sc.why.Error())
	var err error
	if wa, ok := f.(io.WriterAt); ok && last && end < sc.size {
		err = writeZeros(wa, off, end-off)
	} else {
		err = f.Truncate(off)
		sc.size = off
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", s.path, err)
	}
	return nil
}

func writeZeros(wa io.WriterAt, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroChunk)))
		if _, err := wa.WriteAt(zeroChunk[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// isTornSeal reports whether the bytes from off to nz (after which all
// is zero) are a torn seal record: the one write a segment gets after its
// successor exists (see writer.startSegment). The seal's bytes are known
// exactly, so a damaged entry is not mistaken for one.
func isTornSeal(s *segment, off, nz int64) (bool, error) {
	if nz-off > sealRecordBytes {
		return false, nil
	}
	rest := make([]byte, nz-off)
	if _, err := s.f.ReadAt(rest, off); err != nil && err != io.EOF {
		return false, err
	}
	want := appendRecord(nil, recSeal, recordPos(s.seq, off), appendSeal(nil, s.seq+1))
	return bytes.HasPrefix(want, rest), nil
}

// findRecord looks for any valid record starting in [from, nz), where nz
// ends the non-zero bytes (a record's type byte is not zero, so none
// starts later; it may extend past nz, into zeros, up to size). Its work
// is bounded: past the budget, the bytes are too record-like to be a torn
// write and the answer is "found".
func findRecord(f vfs.File, seq uint32, from, nz, size int64) (int64, bool, error) {
	if nz-from < 1 {
		return 0, false, nil
	}
	buf := make([]byte, min(size, nz+recordHeaderBytes+recordMaxBytes)-from)
	if n, err := f.ReadAt(buf, from); n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, false, err
	}
	budget := 64*(nz-from) + recordMaxBytes
	for p := 0; int64(p) < nz-from && p+recordHeaderBytes <= len(buf); p++ {
		length := int64(binary.LittleEndian.Uint32(buf[p+4:]))
		typ := recordType(buf[p+8])
		if typ == 0 || typ >= recTypeEnd || length > int64(len(buf)-p-recordHeaderBytes) {
			continue
		}
		if budget -= recordHeaderBytes + length; budget < 0 {
			return from + int64(p), true, nil
		}
		if _, _, _, err := decodeRecord(buf[p:], recordPos(seq, from+int64(p))); err == nil {
			return from + int64(p), true, nil
		}
	}
	return 0, false, nil
}

// finish checks the replayed state as a whole.
func (r *replayer) finish(first, last *segment, end int64) error {
	if r.idx.lo != r.idx.snap.Index+1 {
		return corruptf(first.path, 0, "entries %d to %d are missing: an older segment was lost, and no snapshot covers them",
			r.idx.snap.Index+1, r.idx.lo-1)
	}
	if r.hard.Commit > r.idx.last() {
		return corruptf(last.path, end, "commit index %d is past the last entry %d: committed entries are missing",
			r.hard.Commit, r.idx.last())
	}
	return nil
}

// nonZeroEnd returns the offset just past the last non-zero byte of f in
// [from, size), or from if they are all zero. It reads forward, which the
// kernel's readahead serves best, through buf (reused, any capacity).
func nonZeroEnd(f vfs.File, from, size int64, buf []byte) (int64, error) {
	if want := min(size-from, readChunkBytes); int64(cap(buf)) < want {
		buf = make([]byte, want)
	}
	buf = buf[:cap(buf)]
	nz := from
	for off := from; off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		if k, err := f.ReadAt(b, off); k < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		// Compare whole blocks with zeros (fast), then find the last
		// non-zero byte only in a block that has one.
		for p := 0; p < len(b); p += len(zeroChunk) {
			blk := b[p:min(p+len(zeroChunk), len(b))]
			if !bytes.Equal(blk, zeroChunk[:len(blk)]) {
				i := len(blk) - 1
				for blk[i] == 0 {
					i--
				}
				nz = off + int64(p+i+1)
			}
		}
		off += int64(len(b))
	}
	return nz, nil
}

// recordReader reads a segment's records in order through a window.
type recordReader struct {
	f     vfs.File
	size  int64
	seq   uint32
	buf   []byte // file bytes [start, start+len(buf))
	start int64
}

// next decodes the record at off; io.EOF at the end of the file.
func (rd *recordReader) next(off int64) (recordType, []byte, int, error) {
	if off >= rd.size {
		return 0, nil, 0, io.EOF
	}
	if err := rd.window(off, recordHeaderBytes); err != nil {
		return 0, nil, 0, err
	}
	b := rd.buf[off-rd.start:]
	if len(b) >= recordHeaderBytes {
		n := int64(recordHeaderBytes) + int64(binary.LittleEndian.Uint32(b[4:]))
		if n <= recordHeaderBytes+recordMaxBytes && int64(len(b)) < n {
			if err := rd.window(off, n); err != nil {
				return 0, nil, 0, err
			}
			b = rd.buf[off-rd.start:]
		}
	}
	return decodeRecord(b, recordPos(rd.seq, off))
}

// window makes buf hold [off, off+n), or up to the end of the file.
func (rd *recordReader) window(off, n int64) error {
	end := min(off+n, rd.size)
	if off >= rd.start && end <= rd.start+int64(len(rd.buf)) {
		return nil
	}
	want := min(max(n, readChunkBytes), rd.size-off)
	if int64(cap(rd.buf)) < want {
		rd.buf = make([]byte, want)
	}
	rd.buf = rd.buf[:want]
	k, err := rd.f.ReadAt(rd.buf, off)
	if int64(k) < want {
		rd.buf = rd.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	rd.start = off
	return nil
}
