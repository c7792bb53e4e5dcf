package kv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"

	"github.com/google/btree"

	"github.com/raftkv/raftkv/raftpb"
)

// Snapshot format (integers are unsigned varints unless sized, byte strings
// are a varint length then the bytes):
//
//	magic "RKVS" | version(1) | applied index | key count
//	key count × ( key | value | rev )                    keys strictly ascending
//	session count
//	session count × ( token | index | result )           indexes strictly ascending
//	result = index | rev | prev | code number(1) | message
//	trailer: CRC32C (Castagnoli) of everything above, 4 bytes little-endian
//
// The encoding is canonical (one byte string per state), which is what lets
// Hash be a hash of it.
const (
	snapshotMagic   = "RKVS"
	SnapshotVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotBufferBytes sizes the bufio buffers on both sides of the stream.
const snapshotBufferBytes = 64 << 10

// Snapshot returns a point-in-time view of the store that can be written out
// later, from any goroutine, while Apply continues. It costs O(1): the
// B-trees are cloned copy-on-write, and later Applies copy the nodes they
// touch instead of changing the view.
func (s *Store) Snapshot() (io.WriterTo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(), nil
}

func (s *Store) snapshotLocked() *snapshotView {
	return &snapshotView{applied: s.applied, entries: s.entries.Clone(), sessions: s.sessions.clone()}
}

// snapshotView is a frozen copy of the state. Nothing writes to its trees,
// so WriteTo may run any number of times, concurrently too.
type snapshotView struct {
	applied  raftpb.Index
	entries  *btree.BTreeG[entry]
	sessions *sessionTable
}

// Index returns the applied index the view was taken at.
func (v *snapshotView) Index() raftpb.Index { return v.applied }

// WriteTo writes the snapshot stream to w.
func (v *snapshotView) WriteTo(w io.Writer) (int64, error) {
	cw := &crcWriter{w: w}
	sw := snapWriter{bw: bufio.NewWriterSize(cw, snapshotBufferBytes)}
	sw.raw([]byte(snapshotMagic))
	sw.raw([]byte{SnapshotVersion})
	sw.uvarint(uint64(v.applied))
	sw.uvarint(uint64(v.entries.Len()))
	v.entries.Ascend(func(e entry) bool {
		sw.str(e.key)
		sw.bytes(e.value)
		sw.uvarint(uint64(e.rev))
		return sw.err == nil
	})
	sw.uvarint(uint64(v.sessions.len()))
	v.sessions.ascend(func(s *session) bool {
		sw.str(s.token)
		sw.uvarint(uint64(s.index))
		sw.result(&s.result)
		return sw.err == nil
	})
	if sw.err == nil {
		sw.err = sw.bw.Flush()
	}
	if sw.err != nil {
		return cw.n, fmt.Errorf("kv: write snapshot at index %d: %w", v.applied, sw.err)
	}
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], cw.crc)
	n, err := w.Write(trailer[:])
	if err != nil {
		return cw.n + int64(n), fmt.Errorf("kv: write snapshot trailer at index %d: %w", v.applied, err)
	}
	return cw.n + int64(n), nil
}

// crcWriter checksums and counts what passes through it.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// snapWriter remembers the first error so WriteTo reads as the format does.
type snapWriter struct {
	bw      *bufio.Writer
	scratch [binary.MaxVarintLen64]byte
	err     error
}

func (w *snapWriter) raw(p []byte) {
	if w.err == nil {
		_, w.err = w.bw.Write(p)
	}
}

func (w *snapWriter) uvarint(v uint64) {
	w.raw(binary.AppendUvarint(w.scratch[:0], v))
}

func (w *snapWriter) bytes(p []byte) {
	w.uvarint(uint64(len(p)))
	w.raw(p)
}

func (w *snapWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	if w.err == nil {
		_, w.err = w.bw.WriteString(s)
	}
}

func (w *snapWriter) result(r *Result) {
	w.uvarint(uint64(r.Index))
	w.uvarint(uint64(r.Rev))
	w.uvarint(uint64(r.Prev))
	code, ok := codeNumber(r.Code)
	if !ok {
		// Only Apply makes Results, from the constants; anything else is a
		// bug that would poison every snapshot from here on.
		panic(fmt.Sprintf("kv: result at index %d has unknown code %q", r.Index, r.Code))
	}
	w.raw([]byte{code})
	w.str(r.Message)
}

// Hash returns a 64-bit FNV-1a hash of the whole state (applied index, keys,
// values, revisions and sessions): replicas at the same applied index have
// equal hashes exactly when their states are equal, barring collisions. It
// costs a full pass over the state.
func (s *Store) Hash() uint64 {
	s.mu.Lock()
	v := s.snapshotLocked()
	s.mu.Unlock()
	h := fnv.New64a()
	if _, err := v.WriteTo(h); err != nil {
		panic(fmt.Sprintf("kv: hashing cannot fail, but: %v", err)) // hash.Hash never returns errors
	}
	return h.Sum64()
}
