package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Run: go test -run XXX -bench . -benchtime 2s ./storage
// Results and their meaning are in BENCHMARKS.md (Storage).

const benchEntryBytes = 256

// benchLogBytes is the size of the log BenchmarkOpen1GiB builds.
var benchLogBytes int64 = 1 << 30

var benchBatches = []int{1, 16, 256, 4096}

// BenchmarkWALAppendSync measures durable appends: per op, one Save of a
// batch of 256-byte entries and one Sync (one fdatasync).
func BenchmarkWALAppendSync(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l, err := Open(vfs.OS(), b.TempDir(), Options{Logger: quietLogger})
			must(b, err)
			defer l.Close()
			data := make([]byte, benchEntryBytes)
			ents := make([]pb.Entry, batch)
			next := pb.Index(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range ents {
					ents[j] = pb.Entry{Index: next + pb.Index(j), Term: 1, Data: data}
				}
				next += pb.Index(batch)
				if err := l.Save(pb.HardState{}, nil, ents); err != nil {
					b.Fatal(err)
				}
				if err := l.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			reportThroughput(b, batch)
		})
	}
}

// BenchmarkRawWriteSync is the ceiling: the same payload bytes appended to
// a plain file with one write and one fdatasync per op, no WAL.
func BenchmarkRawWriteSync(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			must(b, err)
			defer f.Close()
			buf := make([]byte, batch*benchEntryBytes)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
			reportThroughput(b, batch)
		})
	}
}

// BenchmarkWALvsRaw alternates one WAL op and one raw op (as above) in
// the same loop, on the same disk, and reports each one's time and the
// WAL's throughput as a share of raw. fdatasync latency on shared or
// virtual disks drifts by several times within seconds; alternating puts
// both under the same drift, which separate benchmarks do not.
func BenchmarkWALvsRaw(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			dir := b.TempDir()
			l, err := Open(vfs.OS(), filepath.Join(dir, "wal"), Options{Logger: quietLogger})
			must(b, err)
			defer l.Close()
			f, err := os.OpenFile(filepath.Join(dir, "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			must(b, err)
			defer f.Close()
			data := make([]byte, benchEntryBytes)
			buf := make([]byte, batch*benchEntryBytes)
			ents := make([]pb.Entry, batch)
			next := pb.Index(1)
			var walTime, rawTime time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				for j := range ents {
					ents[j] = pb.Entry{Index: next + pb.Index(j), Term: 1, Data: data}
				}
				next += pb.Index(batch)
				must(b, l.Save(pb.HardState{}, nil, ents))
				must(b, l.Sync())
				mid := time.Now()
				_, err := f.Write(buf)
				must(b, err)
				must(b, syscall.Fdatasync(int(f.Fd())))
				walTime += mid.Sub(start)
				rawTime += time.Since(mid)
			}
			b.ReportMetric(float64(walTime.Nanoseconds())/float64(b.N), "wal-ns/op")
			b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
			b.ReportMetric(100*rawTime.Seconds()/walTime.Seconds(), "wal-%-of-raw")
		})
	}
}

func reportThroughput(b *testing.B, batch int) {
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N*batch)/secs, "entries/s")
	b.ReportMetric(float64(b.N*batch*benchEntryBytes)/secs/1e6, "MB/s")
}

// BenchmarkOpen1GiB builds a log of ~1 GiB of 256-byte entries once, then
// measures Open (read and verify every record, rebuild the index) + Close,
// with the files in the page cache (warm) and evicted from it (cold).
func BenchmarkOpen1GiB(b *testing.B) {
	dir := b.TempDir()
	size := build1GiBLog(b, dir)
	for _, cold := range []bool{false, true} {
		name := map[bool]string{false: "warm", true: "cold"}[cold]
		b.Run(name, func(b *testing.B) {
			var open time.Duration
			for i := 0; i < b.N; i++ {
				if cold {
					evictPageCache(b, dir)
				}
				start := time.Now()
				l, err := Open(vfs.OS(), dir, Options{Logger: quietLogger})
				must(b, err)
				open += time.Since(start)
				b.StopTimer()
				must(b, l.Close())
				b.StartTimer()
			}
			b.ReportMetric(open.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "s/GiB")
		})
	}
}

func build1GiBLog(b testing.TB, dir string) int64 {
	l, err := Open(vfs.OS(), dir, Options{Logger: quietLogger})
	must(b, err)
	data := make([]byte, benchEntryBytes)
	ents := make([]pb.Entry, 16384)
	next := pb.Index(1)
	var size int64
	for size < benchLogBytes {
		for j := range ents {
			ents[j] = pb.Entry{Index: next, Term: 1, Data: data}
			next++
			size += int64(entryRecordBytes(1, ents[j].Index, benchEntryBytes))
		}
		must(b, l.Save(pb.HardState{Term: 1, Commit: next - 1}, nil, ents))
		must(b, l.Sync())
	}
	must(b, l.Close())
	return size
}

// evictPageCache asks the kernel to drop the log's pages (fadvise
// DONTNEED), so Open reads from the device.
func evictPageCache(b *testing.B, dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "*"+walSuffix))
	for _, n := range names {
		f, err := os.Open(n)
		must(b, err)
		const fadvDontNeed = 4
		syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0)
		f.Close()
	}
}
