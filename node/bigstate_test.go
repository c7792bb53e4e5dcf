package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// bigState is a state machine whose state is large but synthetic: size
// bytes of a pseudo-random stream drawn from seed. It holds only the seed;
// Snapshot generates the bytes as it writes them and Restore regenerates
// and compares them as it reads, so neither side ever holds the state, and
// the test's heap measures what node, storage and transport keep.
//
// A command is 8 bytes: the new size. Every command also moves the seed,
// so an image from the wrong point in the log does not verify.
type bigState struct {
	mu       sync.Mutex
	seed     uint64
	size     uint64
	applied  uint64
	restored atomic.Uint64 // bytes verified by the last Restore
}

const bigChunk = 64 << 10

func (s *bigState) Apply(index pb.Index, cmd []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(cmd) == 8 {
		s.size = binary.BigEndian.Uint64(cmd)
	}
	s.seed = s.seed*0x9e3779b97f4a7c15 + uint64(index)
	s.applied++
	return s.size
}

func (s *bigState) Snapshot() (io.WriterTo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bigImage{seed: s.seed, size: s.size, applied: s.applied}, nil
}

type bigImage struct{ seed, size, applied uint64 }

func (im bigImage) header() []byte {
	b := binary.BigEndian.AppendUint64(nil, im.seed)
	b = binary.BigEndian.AppendUint64(b, im.size)
	return binary.BigEndian.AppendUint64(b, im.applied)
}

func bigStream(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}

func (im bigImage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(im.header())
	total := int64(n)
	if err != nil {
		return total, err
	}
	gen, buf := bigStream(im.seed), make([]byte, bigChunk)
	for left := im.size; left > 0; {
		b := buf[:min(left, bigChunk)]
		_, _ = gen.Read(b)
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
		left -= uint64(n)
	}
	return total, nil
}

func (s *bigState) Restore(r io.Reader) error {
	hdr := make([]byte, 24)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("bigState: header: %w", err)
	}
	im := bigImage{seed: binary.BigEndian.Uint64(hdr), size: binary.BigEndian.Uint64(hdr[8:]),
		applied: binary.BigEndian.Uint64(hdr[16:])}
	gen, want, got := bigStream(im.seed), make([]byte, bigChunk), make([]byte, bigChunk)
	for off := uint64(0); off < im.size; {
		k := min(im.size-off, bigChunk)
		if _, err := io.ReadFull(r, got[:k]); err != nil {
			return fmt.Errorf("bigState: at %d of %d: %w", off, im.size, err)
		}
		_, _ = gen.Read(want[:k])
		if !bytes.Equal(got[:k], want[:k]) {
			return fmt.Errorf("bigState: image differs in the %d bytes at %d", k, off)
		}
		off += k
	}
	if n, err := r.Read(got[:1]); n != 0 || (err != nil && !errors.Is(err, io.EOF)) {
		return fmt.Errorf("bigState: trailing data after %d bytes (%v)", im.size, err)
	}
	s.mu.Lock()
	s.seed, s.size, s.applied = im.seed, im.size, im.applied
	s.mu.Unlock()
	s.restored.Store(im.size)
	return nil
}

// bigStateBytes is the state size: RAFTKV_BIG_STATE (bytes, or with a
// MiB or GiB suffix; "1" means 1 GiB) if set, else 64 MiB, enough to show
// that nothing buffers a whole image.
func bigStateBytes(t *testing.T) uint64 {
	v := strings.TrimSpace(os.Getenv("RAFTKV_BIG_STATE"))
	if v == "" {
		return 64 << 20
	}
	if v == "1" {
		return 1 << 30
	}
	mult := uint64(1)
	for suffix, m := range map[string]uint64{"GiB": 1 << 30, "MiB": 1 << 20} {
		if cut, ok := strings.CutSuffix(v, suffix); ok {
			v, mult = cut, m
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("RAFTKV_BIG_STATE=%q: want a byte count, or a number with MiB or GiB", os.Getenv("RAFTKV_BIG_STATE"))
	}
	return n * mult
}

// heapPeak samples the heap until stopped and reports the highest
// HeapInuse seen. The members all run in this process, so it covers all of
// them: the leader writing its image, the transport streaming it, the new
// member storing and restoring it.
type heapPeak struct {
	stopc chan struct{}
	done  chan struct{}
	peak  uint64
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapInuse)
			select {
			case <-h.stopc:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapPeak) stop() uint64 {
	close(h.stopc)
	<-h.done
	return h.peak
}

func heapInuseAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLargeStateSnapshotInstalledWithBoundedHeap shows a large state
// (64 MiB here; 1 GiB with RAFTKV_BIG_STATE=1, see BENCHMARKS.md)
// snapshotted by the leader and installed on a new member over loopback
// TCP, with the heap of the whole process growing by far less than the
// state: images are streamed from the state machine to the snapshot file,
// from the file to the peer, and from the peer's file to its state machine.
func TestLargeStateSnapshotInstalledWithBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes the state to disk twice")
	}
	size := bigStateBytes(t)
	const heapGrowthMax = 64 << 20
	fsms := map[pb.NodeID]*bigState{}
	var fsmsMu sync.Mutex
	c := newTClusterOn(t, false, 1, 1<<40, func(c *tcluster) {
		c.tweak = func(cfg *node.Config) {
			s := &bigState{}
			fsmsMu.Lock()
			fsms[cfg.ID] = s
			fsmsMu.Unlock()
			cfg.FSM = s
			// Writing and fsyncing the image may hold up the disk for a while.
			cfg.ElectionTimeout = time.Second
		}
	})
	lead := c.leader()
	ln := c.members[lead].n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	propose := func(v uint64) {
		t.Helper()
		if _, err := ln.Propose(ctx, cmd(v)); err != nil {
			t.Fatal(err)
		}
	}
	// A first, empty snapshot, so that the next one compacts the log to it
	// and a new member can only be brought up by InstallSnapshot.
	propose(0)
	first, err := ln.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}

	base := heapInuseAfterGC()
	peak := startHeapPeak()
	start := time.Now()
	propose(size)
	at, err := ln.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	written := time.Since(start)
	waitFor(t, 10*time.Second, "the log to be compacted", func() bool {
		return ln.Status().FirstIndex > first
	})

	m := c.add(2)
	if err := ln.AddLearner(ctx, node.Member{ID: 2, PeerAddr: m.addr}); err != nil {
		t.Fatal(err)
	}
	installStart := time.Now()
	c.start(2, true)
	nn := c.members[2].n
	waitFor(t, 10*time.Minute, "the new member to restore the image", func() bool {
		return nn.Status().Applied >= at
	})
	installed := time.Since(installStart)
	growth := int64(peak.stop()) - int64(base)

	fsmsMu.Lock()
	got, want := fsms[2], fsms[lead]
	fsmsMu.Unlock()
	if r := got.restored.Load(); r != size {
		t.Fatalf("new member restored %d bytes, want %d", r, size)
	}
	if n := nn.Counters().SnapshotsReceived; n != 1 {
		t.Fatalf("new member received %d snapshots, want 1", n)
	}
	propose(1)
	waitFor(t, 10*time.Second, "the new member to follow the log", func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		want.mu.Lock()
		defer want.mu.Unlock()
		return got.seed == want.seed && got.applied == want.applied
	})
	t.Logf("state %d MiB: snapshot written in %v, installed on a new member in %v; peak heap growth %.1f MiB (HeapInuse %.1f -> peak %.1f MiB)",
		size>>20, written.Round(time.Millisecond), installed.Round(time.Millisecond),
		float64(growth)/(1<<20), float64(base)/(1<<20), float64(int64(base)+growth)/(1<<20))
	if growth > heapGrowthMax {
		t.Fatalf("peak heap grew by %d MiB for a %d MiB state, want under %d MiB",
			growth>>20, size>>20, heapGrowthMax>>20)
	}
}
