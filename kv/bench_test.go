package kv

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// benchKeys is the key space of the benchmarks: large enough that the tree
// is several levels deep, small enough to build quickly.
const benchKeys = 100000

func benchKey(i int) string { return fmt.Sprintf("bench/key/%08d", i%benchKeys) }

func benchStore(b *testing.B) *Store {
	b.Helper()
	s := New(Config{})
	value := make([]byte, 256)
	for i := range benchKeys {
		s.Apply(raftpb.Index(i+1), EncodeCommand(Command{Op: OpPut, Key: benchKey(i), Value: value}))
	}
	return s
}

func BenchmarkApplyPut(b *testing.B) {
	// The apply path of a 256-byte put: decode, look up, insert; commands
	// are encoded up front, as they would arrive from the log.
	cmds := make([][]byte, 4096)
	value := make([]byte, 256)
	for i := range cmds {
		cmds[i] = EncodeCommand(Command{Op: OpPut, Key: benchKey(i * 7919), Value: value})
	}
	s := New(Config{})
	b.SetBytes(256)
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		s.Apply(raftpb.Index(i+1), cmds[i%len(cmds)])
		i++
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkApplyPutFollower(b *testing.B) {
	// A follower's apply of 256-byte puts without Idempotency-Key over
	// 10,000 keys that already exist and carry history, as under the
	// independent-clients load: decode, one key's update, the change log,
	// and in steady state the automatic compaction of the oldest revision.
	// The result is discarded, as a follower's is when no local proposal
	// waits for it.
	const keys = 10000
	s := New(Config{HistoryRevisions: 5 * keys})
	value := make([]byte, 256)
	index := raftpb.Index(1)
	for range 6 {
		for k := range keys {
			s.Apply(index, EncodeCommand(Command{Op: OpPut, Key: fmt.Sprintf("bench/key/%08d", k), Value: value}))
			index++
		}
	}
	cmds := make([][]byte, 4096)
	for i := range cmds {
		cmds[i] = EncodeCommand(Command{Op: OpPut, Key: fmt.Sprintf("bench/key/%08d", (i*7919)%keys), Value: value})
	}
	b.SetBytes(256)
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		s.Apply(index, cmds[i%len(cmds)])
		index++
		i++
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the CPU time (user and system, every thread, the
// garbage collector's included) the process has used, in nanoseconds: on a
// shared machine it tells an operation's cost better than ns/op does.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkApplyPutIdempotent(b *testing.B) {
	// As BenchmarkApplyPut, with a fresh 32-byte Idempotency-Key per
	// command, as every client write carries: a lookup and a record in
	// the session table, and in steady state (after the session window)
	// an expiry too.
	const n = 1 << 16
	cmds := make([][]byte, n)
	value := make([]byte, 256)
	s := New(Config{SessionWindow: n / 2})
	b.SetBytes(256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i % n
		if cmds[k] == nil || i < n {
			cmds[k] = EncodeCommand(Command{Op: OpPut, Key: benchKey(k * 7919), Value: value,
				IdempotencyKey: fmt.Sprintf("%032x", i)})
		}
		s.Apply(raftpb.Index(i+1), cmds[k])
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = benchKey(i * 7919)
	}
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		if _, _, ok := s.Get(keys[i%len(keys)]); !ok {
			b.Fatal("missing key")
		}
		i++
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkSnapshotWrite(b *testing.B) {
	// Writing a snapshot of 100k keys with 256-byte values; SetBytes makes
	// the figure a throughput.
	s := benchStore(b)
	view, _ := s.Snapshot()
	n, err := view.WriteTo(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		v, _ := s.Snapshot()
		if _, err := v.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// heapAfter returns the live heap after a full collection.
func heapAfter() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkMemoryPerHistoricalVersion(b *testing.B) {
	// Heap per version kept in history: 10,000 keys each overwritten 10
	// times with 8-byte values, compared with the same keys written once.
	const keys, writes = 10000, 10
	value := make([]byte, 8)
	build := func(writes int) (*Store, uint64) {
		before := heapAfter()
		s := New(Config{HistoryRevisions: -1})
		index := raftpb.Index(1)
		for w := range writes {
			for i := range keys {
				_ = w
				s.Apply(index, EncodeCommand(Command{Op: OpPut, Key: fmt.Sprintf("bench/key/%06d", i), Value: value}))
				index++
			}
		}
		return s, heapAfter() - before
	}
	for b.Loop() {
		once, base := build(1)
		many, total := build(writes)
		b.ReportMetric(float64(total-base)/float64(keys*(writes-1)), "B/version")
		runtime.KeepAlive(once)
		runtime.KeepAlive(many)
	}
}

func BenchmarkWatchFanout10000(b *testing.B) {
	// 10,000 watchers of one key, each on its own goroutine. Each put is
	// applied once every watcher has the previous one, so the figures are
	// those of one event fanned out to all: events delivered per second,
	// and the 99th percentile from the start of Apply to Next returning.
	const watchers = 10000
	s := New(Config{})
	ctx := context.Background()
	var got atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var appliedAt atomic.Int64 // UnixNano of the last Apply's start
	var wg sync.WaitGroup
	for range watchers {
		w, err := s.Watch("hot", "", 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		w.Next(ctx) // registered: the first batch ends the catch-up
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, b.N)
			for range b.N {
				if _, err := w.Next(ctx); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Duration(time.Now().UnixNano()-appliedAt.Load()))
				got.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	put := EncodeCommand(Command{Op: OpPut, Key: "hot", Value: make([]byte, 64)})
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		appliedAt.Store(time.Now().UnixNano())
		s.Apply(raftpb.Index(i+1), put)
		for got.Load() < int64(watchers*(i+1)) {
			runtime.Gosched()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
