package kv

import (
	"bytes"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

// replica wraps a Store with the log position, so tests read as a list of
// commands rather than index bookkeeping.
type replica struct {
	*Store
	next raftpb.Index
}

func newReplica(cfg Config) *replica { return &replica{Store: New(cfg), next: 1} }

func (r *replica) do(c Command) *Result { return r.raw(EncodeCommand(c)) }

func (r *replica) raw(cmd []byte) *Result {
	res := r.Apply(r.next, cmd).(*Result)
	r.next++
	return res
}

func put(key, value string) Command {
	return Command{Op: OpPut, Key: key, Value: []byte(value)}
}

func appendCmd(key, value string) Command {
	return Command{Op: OpAppend, Key: key, Value: []byte(value)}
}

func del(key string) Command { return Command{Op: OpDelete, Key: key} }

func mustCode(t *testing.T, r *Result, code string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("result %+v: code %q, want %q", *r, r.Code, code)
	}
}

func mustGet(t *testing.T, s *Store, key, value string, rev int64) {
	t.Helper()
	v, gotRev, ok := s.Get(key)
	if !ok {
		t.Fatalf("Get(%q): absent, want %q at rev %d", key, value, rev)
	}
	if !bytes.Equal(v, []byte(value)) || gotRev != rev {
		t.Fatalf("Get(%q) = %q at rev %d, want %q at rev %d", key, v, gotRev, value, rev)
	}
}

func mustAbsent(t *testing.T, s *Store, key string) {
	t.Helper()
	if v, rev, ok := s.Get(key); ok {
		t.Fatalf("Get(%q) = %q at rev %d, want absent", key, v, rev)
	}
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	w, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func raftIndex(i uint64) raftpb.Index { return raftpb.Index(i) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// withCRC returns body followed by a valid snapshot trailer.
func withCRC(body []byte) []byte {
	var buf bytes.Buffer
	cw := &crcWriter{w: &buf}
	cw.Write(body)
	return append(buf.Bytes(), byte(cw.crc), byte(cw.crc>>8), byte(cw.crc>>16), byte(cw.crc>>24))
}

// convertAndRestore restores b into s through ConvertSnapshot, as a
// backup is restored: a version 1 stream is converted first.
func convertAndRestore(s *Store, b []byte) error {
	var converted bytes.Buffer
	if _, err := ConvertSnapshot(&converted, bytes.NewReader(b), s.cfg); err != nil {
		return err
	}
	return s.Restore(&converted)
}

// checkRecordIndex fails unless byKey holds exactly the tree's records (the
// same pointers) and no record is of a generation ahead of the store's.
func checkRecordIndex(t testing.TB, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.records.Len() != len(s.byKey) {
		t.Fatalf("%d records in the tree, %d in byKey", s.records.Len(), len(s.byKey))
	}
	s.records.Ascend(func(rec *record) bool {
		if s.byKey[rec.key] != rec {
			t.Fatalf("record %q: byKey holds %p, the tree %p", rec.key, s.byKey[rec.key], rec)
		}
		if rec.own>>1 > s.gen {
			t.Fatalf("record %q of generation %d, the store's is %d", rec.key, rec.own>>1, s.gen)
		}
		return true
	})
}
