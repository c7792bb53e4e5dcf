package transport

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

func snapMsg(from, to raftpb.NodeID) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgInstallSnapshot, From: from, To: to, Term: 4,
		Snapshot: &raftpb.SnapshotMeta{Index: 1000, Term: 4, Conf: raftpb.ConfState{Voters: []raftpb.NodeID{1, 2, 3}}}}
}

// genPatternBytes is the period of genReader's base pattern.
const genPatternBytes = 64 << 10

// genReader generates a snapshot of size bytes without storing it: each
// 64 KiB block is a seeded random pattern rotated by a per-block amount, so
// a lost, repeated or reordered block changes the checksum. It hashes what
// it hands out. hook, if set, runs before each Read with the offset.
type genReader struct {
	pattern []byte
	size    int64
	off     int64
	h       hash.Hash
	hook    func(off int64) error
	closed  atomic.Bool
}

func newGenReader(seed uint64, size int64, hook func(off int64) error) *genReader {
	g := &genReader{pattern: make([]byte, genPatternBytes), size: size, h: sha256.New(), hook: hook}
	rand.NewChaCha8([32]byte{byte(seed)}).Read(g.pattern)
	return g
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.size {
		return 0, io.EOF
	}
	if g.hook != nil {
		if err := g.hook(g.off); err != nil {
			return 0, err
		}
	}
	n := int(min(int64(len(p)), g.size-g.off))
	for done := 0; done < n; {
		pos := g.off + int64(done)
		block, within := pos/genPatternBytes, int(pos%genPatternBytes)
		rot := int(block*7919) % genPatternBytes
		start := (within + rot) % genPatternBytes
		done += copy(p[done:n], g.pattern[start:min(genPatternBytes, start+genPatternBytes-within)])
	}
	g.h.Write(p[:n])
	g.off += int64(n)
	return n, nil
}

func (g *genReader) Close() error { g.closed.Store(true); return nil }

func (g *genReader) sum() string { return fmt.Sprintf("%x", g.h.Sum(nil)) }

// received is what a receiving handler saw of one snapshot.
type received struct {
	msg   raftpb.Message
	bytes int64
	sum   string
	err   error
}

// hashingHandler hashes every snapshot it receives and publishes the
// outcome on out.
func hashingHandler(out chan<- received) func(raftpb.Message, io.Reader) error {
	return func(m raftpb.Message, data io.Reader) error {
		h := sha256.New()
		n, err := io.Copy(h, data)
		out <- received{msg: m, bytes: n, sum: fmt.Sprintf("%x", h.Sum(nil)), err: err}
		return err
	}
}

func recvReceived(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("receiver handler never finished")
		return received{}
	}
}

// A 64 MiB generated snapshot streams through with heap growth far below
// its size, and arrives byte-for-byte (checked by SHA-256 on the receiver).
func TestSnapshotStream64MiB(t *testing.T) {
	const size = 64 << 20
	got := make(chan received, 1)
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	b.rec.onSnapshot = hashingHandler(got)
	connect(t, a, b)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var s runtime.MemStats
			runtime.ReadMemStats(&s)
			peak = max(peak, s.HeapAlloc)
		}
	})
	gen := newGenReader(7, size, nil)
	start := time.Now()
	a.tr.SendSnapshot(snapMsg(1, 2), gen)
	rep := recvSnapReport(t, a)
	took := time.Since(start)
	close(stop)
	wg.Wait()

	r := recvReceived(t, got)
	if !rep.ok || rep.id != 2 || r.err != nil {
		t.Fatalf("report %+v, receiver error %v", rep, r.err)
	}
	if r.bytes != size || r.sum != gen.sum() || r.msg.Snapshot.Index != 1000 || !gen.closed.Load() {
		t.Fatalf("received %d bytes sum %s, sent sum %s, closed %v", r.bytes, r.sum, gen.sum(), gen.closed.Load())
	}
	growth := int64(peak) - int64(base)
	t.Logf("64 MiB in %v; peak heap growth %.1f MiB", took, float64(growth)/(1<<20))
	if growth > size/4 {
		t.Fatalf("peak heap growth %d bytes during a %d-byte transfer", growth, size)
	}
}

// Stopping the receiver mid-transfer reports the snapshot failed; a retry
// to the restarted receiver succeeds.
func TestSnapshotInterruptedByReceiverThenRetried(t *testing.T) {
	const size = 32 << 20
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	midway, release := make(chan struct{}), make(chan struct{})
	var brokenErr error
	b.rec.onSnapshot = func(m raftpb.Message, data io.Reader) error {
		if _, err := io.CopyN(io.Discard, data, 4<<20); err != nil {
			return err
		}
		close(midway)
		<-release // hold the stream while the receiver stops
		_, brokenErr = io.Copy(io.Discard, data)
		return brokenErr
	}
	connect(t, a, b)
	a.tr.SendSnapshot(snapMsg(1, 2), newGenReader(1, size, nil))
	<-midway
	stopped := make(chan struct{})
	go func() { b.tr.Stop(); close(stopped) }()
	if rep := recvSnapReport(t, a); rep.ok {
		t.Fatal("interrupted snapshot reported ok")
	}
	close(release)
	<-stopped
	if brokenErr == nil {
		t.Fatal("the receiver's reader did not report the broken stream")
	}

	got := make(chan received, 1)
	b2 := newMember(t, 2, b.addr(), nil)
	b2.rec.onSnapshot = hashingHandler(got)
	if err := b2.tr.AddPeer(1, a.addr()); err != nil {
		t.Fatal(err)
	}
	gen := newGenReader(2, size, nil)
	a.tr.SendSnapshot(snapMsg(1, 2), gen)
	if rep := recvSnapReport(t, a); !rep.ok {
		t.Fatal("retried snapshot failed")
	}
	if r := recvReceived(t, got); r.err != nil || r.sum != gen.sum() {
		t.Fatalf("retry received %+v", r)
	}
}

// Stopping the sender mid-transfer reports failure before Stop returns, and
// the receiver's reader fails instead of yielding a short snapshot.
func TestSnapshotInterruptedBySenderStop(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	got := make(chan received, 1)
	b.rec.onSnapshot = hashingHandler(got)
	connect(t, a, b)
	midway := make(chan struct{})
	var once sync.Once
	slow := func(off int64) error {
		if off >= 2<<20 {
			once.Do(func() { close(midway) })
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	a.tr.SendSnapshot(snapMsg(1, 2), newGenReader(3, 64<<20, slow))
	<-midway
	a.tr.Stop()
	select {
	case rep := <-a.rec.snapReports:
		if rep.ok {
			t.Fatal("snapshot interrupted by Stop reported ok")
		}
	default:
		t.Fatal("Stop returned before the interrupted snapshot was reported")
	}
	if r := recvReceived(t, got); r.err == nil {
		t.Fatalf("receiver accepted a cut stream of %d bytes", r.bytes)
	}
}

// A failing data reader fails the transfer on both sides; a retry works.
func TestSnapshotDataErrorThenRetry(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	got := make(chan received, 2)
	b.rec.onSnapshot = hashingHandler(got)
	connect(t, a, b)
	boom := errors.New("disk on fire")
	bad := newGenReader(4, 8<<20, func(off int64) error {
		if off >= 3<<20 {
			return boom
		}
		return nil
	})
	a.tr.SendSnapshot(snapMsg(1, 2), bad)
	if rep := recvSnapReport(t, a); rep.ok {
		t.Fatal("snapshot with a failing reader reported ok")
	}
	if r := recvReceived(t, got); r.err == nil {
		t.Fatal("receiver accepted a stream cut by a sender error")
	}
	if !bad.closed.Load() {
		t.Fatal("data not closed after a failed transfer")
	}
	good := newGenReader(5, 8<<20+123, nil)
	a.tr.SendSnapshot(snapMsg(1, 2), good)
	if rep := recvSnapReport(t, a); !rep.ok {
		t.Fatal("retry failed")
	}
	if r := recvReceived(t, got); r.err != nil || r.sum != good.sum() || r.bytes != 8<<20+123 {
		t.Fatalf("retry received %+v", r)
	}
}

// A Handler that rejects the snapshot, or returns before the end of the
// stream, makes the sender report failure.
func TestSnapshotRejectedByHandler(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	connect(t, a, b)
	b.rec.onSnapshot = func(m raftpb.Message, data io.Reader) error {
		io.Copy(io.Discard, data)
		return errors.New("snapshot store full")
	}
	a.tr.SendSnapshot(snapMsg(1, 2), newGenReader(6, 3<<20, nil))
	if rep := recvSnapReport(t, a); rep.ok {
		t.Fatal("rejected snapshot reported ok")
	}
	b.rec.onSnapshot = func(raftpb.Message, io.Reader) error { return nil } // reads nothing
	a.tr.SendSnapshot(snapMsg(1, 2), newGenReader(6, 3<<20, nil))
	if rep := recvSnapReport(t, a); rep.ok {
		t.Fatal("snapshot the handler never read reported ok")
	}
}

// At most one snapshot is in flight per peer: a second is refused and
// reported failed at once, the first completes.
func TestSnapshotOneInFlightPerPeer(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	release := make(chan struct{})
	b.rec.onSnapshot = func(m raftpb.Message, data io.Reader) error {
		<-release
		_, err := io.Copy(io.Discard, data)
		return err
	}
	connect(t, a, b)
	first := newGenReader(8, 4<<20, nil)
	a.tr.SendSnapshot(snapMsg(1, 2), first)
	waitFor(t, "snapshot in flight", func() bool { return a.tr.Stats().Peers[2].SnapshotInFlight })
	second := newGenReader(9, 4<<20, nil)
	a.tr.SendSnapshot(snapMsg(1, 2), second)
	if rep := recvSnapReport(t, a); rep.ok || !second.closed.Load() {
		t.Fatalf("second snapshot: report %+v, closed %v", rep, second.closed.Load())
	}
	close(release)
	if rep := recvSnapReport(t, a); !rep.ok {
		t.Fatal("first snapshot failed")
	}
	// Misuse is refused the same way: no metadata, or an unknown peer.
	a.tr.SendSnapshot(raftpb.Message{Type: raftpb.MsgInstallSnapshot, From: 1, To: 2}, newGenReader(1, 1, nil))
	a.tr.SendSnapshot(snapMsg(1, 9), newGenReader(1, 1, nil))
	for range 2 {
		if rep := recvSnapReport(t, a); rep.ok {
			t.Fatal("misused SendSnapshot reported ok")
		}
	}
}
