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

// Snapshot format, version 2 (integers are unsigned varints unless sized,
// byte strings are a varint length then the bytes):
//
//	magic "RKVS" | version(1) | applied index | revision | compacted revision
//	record count × ( key | version count × version )     keys strictly ascending
//	version = mod | create | ver | lease | sub | [value if ver > 0]   mods ascending
//	lease count × ( id | ttl | remaining )                 ids strictly ascending
//	session count × ( token | index | result )             indexes strictly ascending
//	result = index | rev | prev | code number(1) | message | revision | lease | ttl
//	         | txn(1) [ succeeded(1) | op count × ( kind(1) | deleted | at rev | at sub ) ]
//	trailer: CRC32C (Castagnoli) of everything above, 4 bytes little-endian
//
// The change log and the lease-to-keys index are derived from the records
// and rebuilt by Restore. Version 1 (before revisions: key | value | rev,
// and results without the fields after message) is converted by
// ConvertSnapshot, and refused by Restore; see readEntriesV1. The encoding is canonical (one byte string per state), which
// is what lets Hash be a hash of it.
const (
	snapshotMagic   = "RKVS"
	SnapshotVersion = 2
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
	// The view shares every record there is now: from here on they are
	// copied before they change.
	s.gen++
	return &snapshotView{applied: s.applied, rev: s.rev, compacted: s.compacted,
		records: s.records.Clone(), leases: s.leases.Clone(), sessions: s.sessions.clone()}
}

// snapshotView is a frozen copy of the state. Nothing writes to its trees,
// so WriteTo may run any number of times, concurrently too.
type snapshotView struct {
	applied        raftpb.Index
	rev, compacted int64
	records        *btree.BTreeG[*record]
	leases         *btree.BTreeG[lease]
	sessions       *sessionTable
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
	sw.uvarint(uint64(v.rev))
	sw.uvarint(uint64(v.compacted))
	sw.uvarint(uint64(v.records.Len()))
	v.records.Ascend(func(rec *record) bool {
		sw.str(rec.key)
		sw.uvarint(uint64(len(rec.vers)))
		for i := range rec.vers {
			ver := &rec.vers[i]
			for _, n := range [...]int64{ver.mod, ver.create, ver.ver, ver.lease, int64(ver.sub)} {
				sw.uvarint(uint64(n))
			}
			if !ver.tombstone() {
				sw.bytes(ver.value)
			}
		}
		return sw.err == nil
	})
	sw.uvarint(uint64(v.leases.Len()))
	v.leases.Ascend(func(l lease) bool {
		sw.uvarint(uint64(l.id))
		sw.uvarint(uint64(l.ttl))
		sw.uvarint(uint64(l.remaining))
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
	w.uvarint(uint64(r.Revision))
	w.uvarint(uint64(r.Lease))
	w.uvarint(uint64(r.TTL))
	if r.Txn == nil {
		w.raw([]byte{0})
		return
	}
	w.raw([]byte{1, flag(r.Txn.Succeeded, 1)})
	w.uvarint(uint64(len(r.Txn.Results)))
	for _, o := range r.Txn.Results {
		w.raw([]byte{byte(o.Kind)})
		w.uvarint(uint64(o.Deleted))
		w.uvarint(uint64(o.at.rev))
		w.uvarint(uint64(o.at.sub))
	}
}

// Hash returns a 64-bit FNV-1a hash of the whole state (applied index,
// revisions, keys with their history, leases and sessions): replicas at the same applied index have
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
