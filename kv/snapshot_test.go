package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/iotest"
)

// populated returns a replica with keys, an empty value, a deletion and
// sessions, so that a snapshot of it exercises every part of the format.
func populated(t testing.TB, keys int) *replica {
	t.Helper()
	r := newReplica(Config{})
	for i := range keys {
		r.do(put(fmt.Sprintf("key/%05d", i), fmt.Sprintf("value-%d", i)))
	}
	r.do(put("empty", ""))
	r.do(withToken(appendCmd("appended", "x"), "tok-a"))
	c := withToken(put("key/00000", "no"), "tok-b")
	c.Cond = CondAbsent
	r.do(c)
	r.do(del("key/00001"))
	return r
}

func TestSnapshotRoundTrip(t *testing.T) {
	// Restoring a snapshot reproduces the state exactly: keys, values,
	// revs, sessions and the applied index.
	src := populated(t, 500)
	snap := snapshotBytes(t, src.Store)
	dst := New(Config{})
	dst.Apply(1, EncodeCommand(put("stale", "gone")))
	if err := dst.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if dst.Hash() != src.Hash() || dst.AppliedIndex() != src.AppliedIndex() || dst.Sessions() != 2 {
		t.Fatalf("restored state differs: applied %d/%d sessions %d", dst.AppliedIndex(), src.AppliedIndex(), dst.Sessions())
	}
	mustAbsent(t, dst, "stale")
	mustGet(t, dst, "key/00002", "value-2", 4)
	mustGet(t, dst, "empty", "", 502)
	if again := snapshotBytes(t, dst); !bytes.Equal(again, snap) {
		t.Fatal("a restored store snapshots to different bytes")
	}
	// An empty store round-trips too.
	empty := New(Config{})
	if err := empty.Restore(bytes.NewReader(snapshotBytes(t, New(Config{})))); err != nil || empty.Len() != 0 {
		t.Fatalf("empty round trip: %v, %d keys", err, empty.Len())
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	// A snapshot written after more Applies (overwrites, appends, deletes,
	// new sessions) shows the state as it was when it was taken.
	r := populated(t, 200)
	want := r.Hash()
	view, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		k := fmt.Sprintf("key/%05d", i)
		switch i % 3 {
		case 0:
			r.do(put(k, "changed"))
		case 1:
			r.do(withToken(appendCmd(k, "+"), fmt.Sprint("t", i)))
		case 2:
			r.do(del(k))
		}
	}
	var buf bytes.Buffer
	if _, err := view.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New(Config{})
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if restored.Hash() != want {
		t.Fatal("snapshot written late does not match the moment it was taken")
	}
}

func TestSnapshotIsPointInTimeUnderInPlaceChanges(t *testing.T) {
	// Records no view shares are changed in place; those a view shares are
	// copied first. Views taken between rounds of overwrites, deletes,
	// re-creations and automatic compactions (which reslice and drop
	// versions) each still write the bytes they would have written at once.
	r := newReplica(Config{HistoryRevisions: 25})
	type taken struct {
		view io.WriterTo
		want []byte
	}
	var views []taken
	for round := range 12 {
		for i := range 40 {
			k := fmt.Sprintf("k%02d", (i*7+round)%15)
			switch (i + round) % 5 {
			case 0:
				r.do(del(k))
			case 1:
				r.do(appendCmd(k, "+"))
			default:
				r.do(put(k, fmt.Sprint(round, "/", i)))
			}
		}
		checkRecordIndex(t, r.Store)
		if round%3 == 2 {
			continue // rounds of changes to records already copied
		}
		view, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, taken{view, snapshotBytes(t, r.Store)})
	}
	for i, v := range views {
		var buf bytes.Buffer
		if _, err := v.view.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), v.want) {
			t.Fatalf("view %d written late differs from the state when it was taken", i)
		}
	}
}

func TestSnapshotWriteConcurrentWithApply(t *testing.T) {
	// The view is written from another goroutine while Apply and readers
	// go on; under -race this checks the copy-on-write sharing.
	r := populated(t, 2000)
	want := r.Hash()
	view, _ := r.Snapshot()
	var wg sync.WaitGroup
	var buf bytes.Buffer
	var writeErr error
	wg.Go(func() { _, writeErr = view.WriteTo(&buf) })
	wg.Go(func() {
		for i := range 2000 {
			r.Get(fmt.Sprintf("key/%05d", i))
			r.List("key/0", 10)
		}
	})
	for i := range 2000 {
		r.do(appendCmd(fmt.Sprintf("key/%05d", i), "+"))
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	restored := New(Config{})
	if err := restored.Restore(&buf); err != nil || restored.Hash() != want {
		t.Fatalf("concurrent write: err %v, equal %v", err, restored.Hash() == want)
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	// Every single flipped byte and every truncation is caught, the error
	// wraps ErrCorrupt, and the store keeps its previous state.
	snap := snapshotBytes(t, populated(t, 20).Store)
	victim := populated(t, 3)
	before := victim.Hash()
	check := func(what string, b []byte) {
		t.Helper()
		err := victim.Restore(bytes.NewReader(b))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: err %v, want ErrCorrupt", what, err)
		}
		if victim.Hash() != before {
			t.Fatalf("%s: state changed by a failed restore", what)
		}
	}
	for i := range snap {
		b := bytes.Clone(snap)
		b[i] ^= 0x20
		check(fmt.Sprintf("flip byte %d", i), b)
	}
	for n := range len(snap) {
		check(fmt.Sprintf("truncate to %d", n), snap[:n])
	}
	check("trailing byte", append(bytes.Clone(snap), 0))
}

func TestRestoreRejectsBrokenInvariantsWithValidChecksum(t *testing.T) {
	// A version 1 stream (before revisions) whose checksum is right but
	// whose content breaks an invariant (keys out of order, revision past
	// the applied index, sessions over the bound) is corrupt as well; a
	// sound one converts and restores.
	head := []byte("RKVS\x01\x05")
	cases := map[string][]byte{
		"keys out of order": append(bytes.Clone(head), 2, 1, 'b', 0, 1, 1, 'a', 0, 1, 0),
		"duplicate key":     append(bytes.Clone(head), 2, 1, 'a', 0, 1, 1, 'a', 0, 1, 0),
		"rev past applied":  append(bytes.Clone(head), 1, 1, 'a', 0, 6, 0),
		"rev zero":          append(bytes.Clone(head), 1, 1, 'a', 0, 0, 0),
		"empty key":         append(bytes.Clone(head), 1, 0, 0, 1, 0),
		"session mismatch":  append(bytes.Clone(head), 0, 1, 1, 't', 2, 3, 0, 0, 0, 0),
		"unknown code":      append(bytes.Clone(head), 0, 1, 1, 't', 2, 2, 0, 0, 9, 0),
		"version":           []byte("RKVS\x07\x00\x00\x00"),
		"magic":             []byte("RKVX\x01\x00\x00\x00"),
	}
	ok := append(bytes.Clone(head), 1, 1, 'a', 1, 'v', 5, 1, 1, 't', 2, 2, 0, 0, 0, 0)
	if err := convertAndRestore(New(Config{}), withCRC(ok)); err != nil {
		t.Fatalf("hand-made valid snapshot: %v", err)
	}
	for name, body := range cases {
		if err := convertAndRestore(New(Config{}), withCRC(body)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
	small := Config{MaxSessions: 1}
	two := append(bytes.Clone(head), 0, 2, 1, 't', 2, 2, 0, 0, 0, 0, 1, 'u', 3, 3, 0, 0, 0, 0)
	if err := convertAndRestore(New(small), withCRC(two)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("sessions over MaxSessions: err %v, want ErrCorrupt", err)
	}
}

func TestRestoreReadErrorIsNotCorruption(t *testing.T) {
	// A failing reader is reported as itself, not as corruption, so the
	// runtime can tell a broken disk or connection from a bad snapshot.
	snap := snapshotBytes(t, populated(t, 5).Store)
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(snap[:10]), iotest.ErrReader(boom))
	err := New(Config{}).Restore(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err %v, want boom and not ErrCorrupt", err)
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		n := w.after
		w.after = 0
		return n, errors.New("disk full")
	}
	w.after -= len(p)
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	// A failing writer's error comes back wrapped, with the bytes written.
	view, _ := populated(t, 5000).Snapshot()
	n, err := view.WriteTo(&failingWriter{after: 70000})
	if err == nil || n != 70000 {
		t.Fatalf("WriteTo = %d, %v; want 70000 and an error", n, err)
	}
}
