package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	r := replayer{fs: l.fs, logger: l.opts.Logger}
	var end int64
	for i, s := range segs {
		l.segs = segs[:i+1] // so that a failure closes what was opened
		if i+1 < len(segs) {
			// Reading is I/O bound when the page cache is cold: let the
			// kernel fetch the next segment while this one is checked.
			go vfs.Prefetch(l.fs, segs[i+1].path)
		}
		if end, err = r.replaySegment(s, i == len(segs)-1, i == len(segs)-2); err != nil {
			return err
		}
	}
	if err := r.finish(segs[0], segs[len(segs)-1], end); err != nil {
		return err
	}
	tail := segs[len(segs)-1]
	l.hard, l.idx = r.hard, r.idx
	l.tailBytes, l.tailHasRecords = end, end > r.headerEnd
	l.w.seq, l.w.f, l.w.off = tail.seq, tail.f, end
	l.writtenSeq, l.writtenOff = tail.seq, end
	return nil
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

func (l *Log) createFirstSegment() error {
	s := &segment{seq: 1, first: 1, path: filepath.Join(l.dir, segmentName(1, 1))}
	hdr := appendSegmentHeader(nil, segmentHeader{seq: 1, first: 1})
	data := appendRecord(nil, recSegmentHeader, recordPos(1, 0), hdr)
	f, err := createWhole(l.fs, s.path, data)
	if err != nil {
		return err
	}
	s.f, s.onDisk = f, true
	l.segs = []*segment{s}
	l.idx.lo = 1
	l.tailBytes = int64(len(data))
	l.w.seq, l.w.f, l.w.off = 1, f, int64(len(data))
	l.writtenSeq, l.writtenOff = 1, int64(len(data))
	return nil
}

// replayer rebuilds the log's state from its records.
type replayer struct {
	fs        vfs.FS
	logger    *slog.Logger
	hard      pb.HardState
	idx       logIndex
	started   bool   // a segment header has set the starting state
	sealed    bool   // the current segment ended with a seal record
	headerEnd int64  // end of the current segment's header record
	buf       []byte // read buffer, reused across segments
}

// replaySegment applies every record of s and returns where they end. Only
// in the last segment may a bad record be a torn write; elsewhere it is
// corruption of synced data.
func (r *replayer) replaySegment(s *segment, last, penultimate bool) (int64, error) {
	var err error
	if last {
		s.f, err = r.fs.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0)
	} else {
		s.f, err = r.fs.Open(s.path)
	}
	if err != nil {
		return 0, err
	}
	fi, err := s.f.Stat()
	if err != nil {
		return 0, err
	}
	sc := scanner{f: s.f, size: fi.Size(), seq: s.seq, buf: r.buf[:0]}
	defer func() { r.buf = sc.buf }()
	r.sealed = false
	var off int64
	for {
		typ, payload, n, err := sc.next(off)
		if err == io.EOF {
			break
		}
		if _, ok := err.(*recordError); ok || err == errShortRecord {
			if off, err = r.badRecord(s, sc.size, off, err, last, penultimate); err != nil {
				return 0, err
			}
			break // the rest was a torn write, now cut off
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", s.path, err)
		}
		if err := r.apply(s, off, typ, payload); err != nil {
			return 0, corruptf(s.path, off, "%v", err)
		}
		off += int64(n)
	}
	if r.sealed && last {
		return 0, corruptf(s.path, off-sealRecordBytes, "segment is sealed but its successor %d is missing", s.seq+1)
	}
	return off, nil
}

// badRecord decides what a record that fails to decode at off means: the
// torn end of the last write (cut it off) or damage (refuse). A torn write
// leaves a prefix of what was written, or zeros, and nothing valid after.
func (r *replayer) badRecord(s *segment, size, off int64, why error, last, penultimate bool) (int64, error) {
	if off == 0 {
		return 0, corruptf(s.path, 0, "segment header: %v", why)
	}
	if last {
		p, found, err := findRecord(s.f, s.seq, off+1, size)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", s.path, err)
		}
		if found {
			return 0, corruptf(s.path, off, "%v, and a valid record follows at %d", why, p)
		}
		return off, r.cutTail(s.f, s, size, off, why)
	}
	if penultimate {
		torn, err := isTornSeal(s, size, off)
		if err != nil {
			return 0, err
		}
		if torn {
			f, err := r.fs.OpenFile(s.path, os.O_RDWR, 0)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			return off, r.cutTail(f, s, size, off, why)
		}
	}
	return 0, corruptf(s.path, off, "%v", why)
}

func (r *replayer) cutTail(f vfs.File, s *segment, size, off int64, why error) error {
	r.logger.Warn("wal: cutting off a torn write at the end of the log",
		"file", s.path, "offset", off, "bytes", size-off, "reason", why.Error())
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", s.path, err)
	}
	return nil
}

// isTornSeal reports whether the bytes from off on are a torn seal record:
// the one write a segment gets after its successor exists (see
// writer.startSegment). The seal's bytes are known exactly, so a damaged
// entry is not mistaken for one.
func isTornSeal(s *segment, size, off int64) (bool, error) {
	if size-off > sealRecordBytes {
		return false, nil
	}
	rest := make([]byte, size-off)
	if _, err := s.f.ReadAt(rest, off); err != nil && err != io.EOF {
		return false, err
	}
	want := appendRecord(nil, recSeal, recordPos(s.seq, off), appendSeal(nil, s.seq+1))
	return bytes.HasPrefix(want, rest) || allZero(rest), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// findRecord looks for any valid record starting in [from, size). Its work
// is bounded: past the budget, the bytes are too record-like to be a torn
// write and the answer is "found".
func findRecord(f vfs.File, seq uint32, from, size int64) (int64, bool, error) {
	if size-from < recordHeaderBytes {
		return 0, false, nil
	}
	buf := make([]byte, size-from)
	if n, err := f.ReadAt(buf, from); n < len(buf) {
		return 0, false, err
	}
	budget := 64*int64(len(buf)) + recordMaxBytes
	for p := 0; p+recordHeaderBytes <= len(buf); p++ {
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

// scanner reads a segment's records in order through a reused window.
type scanner struct {
	f     vfs.File
	size  int64
	seq   uint32
	buf   []byte // file bytes [start, start+len(buf))
	start int64
}

// next decodes the record at off; io.EOF at the end of the file.
func (sc *scanner) next(off int64) (recordType, []byte, int, error) {
	if off >= sc.size {
		return 0, nil, 0, io.EOF
	}
	if err := sc.window(off, recordHeaderBytes); err != nil {
		return 0, nil, 0, err
	}
	b := sc.buf[off-sc.start:]
	if len(b) >= recordHeaderBytes {
		n := int64(recordHeaderBytes) + int64(binary.LittleEndian.Uint32(b[4:]))
		if n <= recordHeaderBytes+recordMaxBytes && int64(len(b)) < n {
			if err := sc.window(off, n); err != nil {
				return 0, nil, 0, err
			}
			b = sc.buf[off-sc.start:]
		}
	}
	return decodeRecord(b, recordPos(sc.seq, off))
}

// window makes buf hold [off, off+n), or up to the end of the file.
func (sc *scanner) window(off, n int64) error {
	end := min(off+n, sc.size)
	if off >= sc.start && end <= sc.start+int64(len(sc.buf)) {
		return nil
	}
	want := min(max(n, readChunkBytes), sc.size-off)
	if int64(cap(sc.buf)) < want {
		sc.buf = make([]byte, want)
	}
	sc.buf = sc.buf[:want]
	k, err := sc.f.ReadAt(sc.buf, off)
	if int64(k) < want {
		sc.buf = sc.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	sc.start = off
	return nil
}
