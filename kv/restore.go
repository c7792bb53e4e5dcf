package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/raftkv/raftkv/raftpb"
)

// Restore replaces the whole state with the snapshot read from r. The new
// state is built aside and swapped in only once the stream has been read to
// its end and its checksum verified; on any error the previous state is
// untouched. Errors about the stream's content wrap ErrCorrupt; read errors
// from r are wrapped as they are. The stream is held to this store's Config
// (key and value sizes, MaxSessions), which every replica shares.
func (s *Store) Restore(r io.Reader) error {
	v, err := readSnapshot(r, s.cfg)
	if err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.entries, s.sessions = v.applied, v.entries, v.sessions
	s.keyBytes = countKeyBytes(v)
	return nil
}

func readSnapshot(r io.Reader, cfg Config) (*snapshotView, error) {
	sr := &snapReader{br: bufio.NewReaderSize(r, snapshotBufferBytes)}
	v := &snapshotView{entries: newEntryTree(), sessions: newSessionTable()}
	if err := sr.header(v); err != nil {
		return nil, err
	}
	if err := sr.readEntries(v, cfg); err != nil {
		return nil, err
	}
	if err := sr.readSessions(v, cfg); err != nil {
		return nil, err
	}
	want := sr.crc
	var trailer [4]byte
	if _, err := io.ReadFull(sr.br, trailer[:]); err != nil {
		return nil, sr.wrap("trailer", err)
	}
	if got := binary.LittleEndian.Uint32(trailer[:]); got != want {
		return nil, fmt.Errorf("%w: snapshot checksum %#08x, computed %#08x", ErrCorrupt, got, want)
	}
	if _, err := sr.br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("kv: read after snapshot trailer: %w", err)
		}
		return nil, fmt.Errorf("%w: bytes after the snapshot trailer", ErrCorrupt)
	}
	return v, nil
}

// snapReader checksums exactly the bytes it consumes (not the bufio
// read-ahead, which may include the trailer).
type snapReader struct {
	br  *bufio.Reader
	crc uint32
	one [1]byte
	// readErr is the last error from br, kept to tell a failing reader
	// from an overlong varint, which binary.ReadUvarint reports alike.
	readErr error
}

func (r *snapReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err != nil {
		r.readErr = err
		return 0, err
	}
	r.one[0] = c
	r.crc = crc32.Update(r.crc, castagnoli, r.one[:])
	return c, nil
}

func (r *snapReader) full(p []byte) error {
	n, err := io.ReadFull(r.br, p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	return err
}

// wrap turns a short stream into corruption and keeps other read errors.
func (r *snapReader) wrap(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: snapshot truncated in %s", ErrCorrupt, what)
	}
	return fmt.Errorf("kv: read snapshot %s: %w", what, err)
}

func (r *snapReader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	switch {
	case err == nil:
		return v, nil
	case r.readErr != nil:
		return 0, r.wrap(what, r.readErr)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, r.wrap(what, err)
	}
	// The only error ReadUvarint makes itself: more than 64 bits.
	return 0, fmt.Errorf("%w: snapshot %s: %v", ErrCorrupt, what, err)
}

// bytes reads a length-prefixed field of at most limit bytes. A large field
// is read in chunks so that a corrupt length on a short stream costs no more
// memory than the stream holds.
func (r *snapReader) bytes(what string, limit int) ([]byte, error) {
	n, err := r.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: snapshot %s is %d bytes, over %d", ErrCorrupt, what, n, limit)
	}
	const chunk = 64 << 10
	out := make([]byte, 0, min(int(n), chunk))
	for len(out) < int(n) {
		m := min(int(n)-len(out), chunk)
		out = append(out, make([]byte, m)...)
		if err := r.full(out[len(out)-m:]); err != nil {
			return nil, r.wrap(what, err)
		}
	}
	return out[:n:n], nil
}

func (r *snapReader) header(v *snapshotView) error {
	var head [len(snapshotMagic) + 1]byte
	if err := r.full(head[:]); err != nil {
		return r.wrap("header", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a kv snapshot (magic %q)", ErrCorrupt, head[:len(snapshotMagic)])
	}
	if head[len(snapshotMagic)] != SnapshotVersion {
		return fmt.Errorf("%w: snapshot version %d, want %d", ErrCorrupt, head[len(snapshotMagic)], SnapshotVersion)
	}
	applied, err := r.uvarint("applied index")
	v.applied = raftpb.Index(applied)
	return err
}

func (r *snapReader) readEntries(v *snapshotView, cfg Config) error {
	count, err := r.uvarint("key count")
	if err != nil {
		return err
	}
	var prev string
	for i := uint64(0); i < count; i++ {
		key, err := r.bytes("key", cfg.maxKeyBytes())
		if err != nil {
			return err
		}
		value, err := r.bytes("value", cfg.maxValueBytes())
		if err != nil {
			return err
		}
		rev, err := r.uvarint("revision")
		if err != nil {
			return err
		}
		e := entry{key: string(key), value: value, rev: raftpb.Index(rev)}
		// Checked even though the checksum will be: a stream with a valid
		// checksum but a broken invariant (a bug, or a crafted file) must
		// not become a state that later Applies treat as sound.
		switch {
		case len(e.key) == 0 || (i > 0 && e.key <= prev):
			return fmt.Errorf("%w: snapshot key %d is empty or out of order", ErrCorrupt, i)
		case e.rev == 0 || e.rev > v.applied:
			return fmt.Errorf("%w: snapshot key %d has revision %d, applied index %d", ErrCorrupt, i, e.rev, v.applied)
		}
		if len(e.value) == 0 {
			e.value = nil
		}
		v.entries.ReplaceOrInsert(e)
		prev = e.key
	}
	return nil
}

func (r *snapReader) readSessions(v *snapshotView, cfg Config) error {
	count, err := r.uvarint("session count")
	if err != nil {
		return err
	}
	if count > uint64(cfg.maxSessions()) {
		return fmt.Errorf("%w: snapshot holds %d sessions, over %d", ErrCorrupt, count, cfg.maxSessions())
	}
	var prev raftpb.Index
	for i := uint64(0); i < count; i++ {
		s, err := r.session()
		if err != nil {
			return err
		}
		switch {
		case s.token == "" || s.index <= prev || s.index > v.applied:
			return fmt.Errorf("%w: snapshot session %d (index %d) is empty, out of order or past applied index %d", ErrCorrupt, i, s.index, v.applied)
		case v.sessions.has(s.token):
			return fmt.Errorf("%w: snapshot session %d repeats a token", ErrCorrupt, i)
		}
		v.sessions.insert(s)
		prev = s.index
	}
	return nil
}

func (r *snapReader) session() (*session, error) {
	token, err := r.bytes("session token", MaxIdempotencyKeyBytes)
	if err != nil {
		return nil, err
	}
	var nums [4]uint64
	for i, what := range [...]string{"session index", "result index", "result revision", "result previous revision"} {
		if nums[i], err = r.uvarint(what); err != nil {
			return nil, err
		}
	}
	code, err := r.ReadByte()
	if err != nil {
		return nil, r.wrap("result code", err)
	}
	if int(code) >= len(codes) {
		return nil, fmt.Errorf("%w: snapshot result code %d", ErrCorrupt, code)
	}
	msg, err := r.bytes("result message", MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	s := &session{token: string(token), index: raftpb.Index(nums[0]), result: Result{
		Index: raftpb.Index(nums[1]), Rev: raftpb.Index(nums[2]), Prev: raftpb.Index(nums[3]),
		Code: codes[code], Message: string(msg),
	}}
	if s.result.Index != s.index {
		return nil, fmt.Errorf("%w: snapshot session at index %d holds a result of index %d", ErrCorrupt, s.index, s.result.Index)
	}
	return s, nil
}
