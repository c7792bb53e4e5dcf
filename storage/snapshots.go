package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// A snapshot file is
//
//	header:  magic "rkvsnap\x00" | version u8 | meta length u32 LE |
//	         meta (raftpb.AppendSnapshotMeta) | CRC32C of the header so far
//	data:    the state machine's bytes, streamed
//	trailer: data length u64 LE | CRC32C of data u32 LE | "done"
//
// It is written under a temporary name, synced, renamed and the directory
// synced, so a snapshot file under its final name is always complete; the
// checksums catch what the medium does to it later.
const (
	snapMagic        = "rkvsnap\x00"
	snapVersion      = 1
	snapTrailerMagic = "done"
	snapTrailerBytes = 8 + 4 + 4
	snapSuffix       = ".snap"
	snapMetaMaxBytes = 1 << 20
	snapBufferBytes  = 256 << 10
	// snapWriteBackBytes is how much a snapshot writer writes between
	// write-backs.
	snapWriteBackBytes = 1 << 20
)

// Snapshots is a directory of snapshot files, newest kept. Safe for
// concurrent use; readers of a pruned snapshot keep reading it.
type Snapshots struct {
	fs   vfs.FS
	dir  string
	keep int

	mu    sync.Mutex
	metas []pb.SnapshotMeta // by index, oldest first
	tmpID int
}

// OpenSnapshots opens (or creates) dir, removes temporary files an
// interrupted Create left, and checks every snapshot's header. keep (at
// least 1) is how many snapshots Commit leaves.
func OpenSnapshots(fs vfs.FS, dir string, keep int) (*Snapshots, error) {
	if keep < 1 {
		return nil, fmt.Errorf("snapshots: keep %d, want at least 1", keep)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("snapshots: open %s: %w", dir, err)
	}
	s := &Snapshots{fs: fs, dir: dir, keep: keep}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("snapshots: open %s: %w", dir, err)
	}
	return s, nil
}

func (s *Snapshots) load() error {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return err
	}
	removed := false
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		if strings.HasSuffix(name, tmpSuffix) && strings.Contains(name, snapSuffix+".") {
			if err := s.fs.Remove(path); err != nil {
				return err
			}
			removed = true
			continue
		}
		if !strings.HasSuffix(name, snapSuffix) {
			continue
		}
		meta, err := s.readMeta(path)
		if err != nil {
			return err
		}
		s.metas = append(s.metas, meta)
	}
	sort.Slice(s.metas, func(i, j int) bool { return s.metas[i].Index < s.metas[j].Index })
	if removed {
		return s.fs.SyncDir(s.dir)
	}
	return nil
}

func snapName(meta pb.SnapshotMeta) string {
	return fmt.Sprintf("%016x-%016x%s", uint64(meta.Index), uint64(meta.Term), snapSuffix)
}

func (s *Snapshots) readMeta(path string) (pb.SnapshotMeta, error) {
	f, err := s.fs.Open(path)
	if err != nil {
		return pb.SnapshotMeta{}, err
	}
	defer f.Close()
	meta, _, err := readSnapHeader(f, path)
	return meta, err
}

// readSnapHeader reads and checks a snapshot file's header, and that the
// file's name matches it; it returns the meta and where the data starts.
func readSnapHeader(f vfs.File, path string) (pb.SnapshotMeta, int64, error) {
	meta, start, err := parseSnapHeader(f, path)
	if err != nil {
		return meta, start, err
	}
	if filepath.Base(path) != snapName(meta) {
		return pb.SnapshotMeta{}, 0, corruptf(path, 0, "header says snapshot %d/%d, the name disagrees", meta.Index, meta.Term)
	}
	return meta, start, nil
}

// parseSnapHeader reads and checks a snapshot file's header under any
// name (a backup copy is named by the operator).
func parseSnapHeader(f vfs.File, path string) (pb.SnapshotMeta, int64, error) {
	fixed := make([]byte, len(snapMagic)+1+4)
	if _, err := f.ReadAt(fixed, 0); err != nil {
		return pb.SnapshotMeta{}, 0, corruptf(path, 0, "snapshot header: %v", err)
	}
	if string(fixed[:len(snapMagic)]) != snapMagic || fixed[len(snapMagic)] != snapVersion {
		return pb.SnapshotMeta{}, 0, corruptf(path, 0, "not a snapshot file of version %d", snapVersion)
	}
	n := binary.LittleEndian.Uint32(fixed[len(snapMagic)+1:])
	if n > snapMetaMaxBytes {
		return pb.SnapshotMeta{}, 0, corruptf(path, 0, "snapshot meta of %d bytes", n)
	}
	rest := make([]byte, int(n)+4)
	if _, err := f.ReadAt(rest, int64(len(fixed))); err != nil {
		return pb.SnapshotMeta{}, 0, corruptf(path, int64(len(fixed)), "snapshot header: %v", err)
	}
	crc := crc32.Update(crc32.Checksum(fixed, crcTable), crcTable, rest[:n])
	if crc != binary.LittleEndian.Uint32(rest[n:]) {
		return pb.SnapshotMeta{}, 0, corruptf(path, 0, "snapshot header checksum mismatch")
	}
	meta, err := pb.DecodeSnapshotMeta(rest[:n])
	if err != nil {
		return pb.SnapshotMeta{}, 0, corruptf(path, int64(len(fixed)), "snapshot meta: %v", err)
	}
	return meta, int64(len(fixed) + len(rest)), nil
}

// Latest returns the newest snapshot's meta.
func (s *Snapshots) Latest() (pb.SnapshotMeta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.metas) == 0 {
		return pb.SnapshotMeta{}, false
	}
	return s.metas[len(s.metas)-1], true
}

// Create starts writing a snapshot; nothing is visible until Commit.
func (s *Snapshots) Create(meta pb.SnapshotMeta) (*SnapshotWriter, error) {
	s.mu.Lock()
	s.tmpID++
	tmp := filepath.Join(s.dir, fmt.Sprintf("%s.%d%s", snapName(meta), s.tmpID, tmpSuffix))
	s.mu.Unlock()
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("snapshots: create: %w", err)
	}
	w := &SnapshotWriter{s: s, meta: meta, tmp: tmp, f: f}
	w.buf = bufio.NewWriterSize(fileWriter{f}, snapBufferBytes)
	hdr := append([]byte(snapMagic), snapVersion, 0, 0, 0, 0)
	hdr = pb.AppendSnapshotMeta(hdr, meta)
	binary.LittleEndian.PutUint32(hdr[len(snapMagic)+1:], uint32(len(hdr)-len(snapMagic)-5))
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(hdr, crcTable))
	if _, err := w.buf.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("snapshots: create: %w", err)
	}
	return w, nil
}

// fileWriter hides everything but Write from bufio.
type fileWriter struct{ f vfs.File }

func (w fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// SnapshotWriter streams one snapshot's data. Not safe for concurrent use.
type SnapshotWriter struct {
	s    *Snapshots
	meta pb.SnapshotMeta
	tmp  string
	f    vfs.File
	buf  *bufio.Writer
	crc  uint32
	n    uint64
	// wroteBack is n when the file was last written back (vfs.WriteBack).
	wroteBack uint64
	err       error
	done      bool
}

func (w *SnapshotWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("snapshots: write after Commit or Abort")
	}
	n, err := w.buf.Write(p)
	w.crc = crc32.Update(w.crc, crcTable, p[:n])
	w.n += uint64(n)
	if err == nil && w.n-w.wroteBack >= snapWriteBackBytes {
		// As segfile's zeroFile does: the snapshot reaches the disk in
		// chunks, not in one burst ahead of the log's syncs at Commit.
		w.wroteBack = w.n
		err = vfs.WriteBack(w.f)
	}
	if err != nil {
		w.err = fmt.Errorf("snapshots: write %s: %w", w.tmp, err)
	}
	return n, w.err
}

// Commit makes the snapshot durable under its final name, then prunes the
// oldest snapshots beyond keep.
func (w *SnapshotWriter) Commit() error {
	if w.err != nil || w.done {
		w.Abort()
		if w.err == nil {
			w.err = errors.New("snapshots: commit after Commit or Abort")
		}
		return w.err
	}
	trailer := binary.LittleEndian.AppendUint64(nil, w.n)
	trailer = binary.LittleEndian.AppendUint32(trailer, w.crc)
	trailer = append(trailer, snapTrailerMagic...)
	path := filepath.Join(w.s.dir, snapName(w.meta))
	err := w.finish(trailer, path)
	if err != nil {
		w.err = fmt.Errorf("snapshots: commit %s: %w", path, err)
		w.Abort()
		return w.err
	}
	w.done = true
	return w.s.added(w.meta)
}

func (w *SnapshotWriter) finish(trailer []byte, path string) error {
	if _, err := w.buf.Write(trailer); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	if err := w.s.fs.Rename(w.tmp, path); err != nil {
		return err
	}
	return w.s.fs.SyncDir(w.s.dir)
}

// Abort drops the snapshot being written. It is safe to call after Commit
// (it does nothing then), so callers may defer it.
func (w *SnapshotWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.s.fs.Remove(w.tmp) // best effort: OpenSnapshots removes leftovers
}

// added records a committed snapshot and prunes beyond keep.
func (s *Snapshots) added(meta pb.SnapshotMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.metas), func(i int) bool { return s.metas[i].Index >= meta.Index })
	if i < len(s.metas) && s.metas[i].Index == meta.Index {
		s.metas[i] = meta
	} else {
		s.metas = append(s.metas, pb.SnapshotMeta{})
		copy(s.metas[i+1:], s.metas[i:])
		s.metas[i] = meta
	}
	if len(s.metas) <= s.keep {
		return nil
	}
	old := s.metas[:len(s.metas)-s.keep]
	for _, m := range old {
		if err := s.fs.Remove(filepath.Join(s.dir, snapName(m))); err != nil {
			return fmt.Errorf("snapshots: prune: %w", err)
		}
	}
	s.metas = append([]pb.SnapshotMeta(nil), s.metas[len(old):]...)
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("snapshots: prune: %w", err)
	}
	return nil
}

// Open returns snapshot index's meta and a reader of its data. The reader
// verifies the checksum as it reaches the end: instead of io.EOF it returns
// an error wrapping ErrCorrupt if the data is damaged, so a consumer must
// read to io.EOF before trusting what it read.
func (s *Snapshots) Open(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, error) {
	s.mu.Lock()
	var meta pb.SnapshotMeta
	found := false
	for _, m := range s.metas {
		if m.Index == index {
			meta, found = m, true
		}
	}
	s.mu.Unlock()
	if !found {
		return pb.SnapshotMeta{}, nil, fmt.Errorf("snapshots: no snapshot at index %d", index)
	}
	path := filepath.Join(s.dir, snapName(meta))
	f, err := s.fs.Open(path)
	if err != nil {
		return pb.SnapshotMeta{}, nil, fmt.Errorf("snapshots: open: %w", err)
	}
	r, err := newSnapReader(f, path)
	if err != nil {
		f.Close()
		return pb.SnapshotMeta{}, nil, err
	}
	return meta, r, nil
}
