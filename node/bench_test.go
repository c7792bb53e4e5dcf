package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// nopFSM applies nothing: the benchmark measures replication, not the
// state machine.
type nopFSM struct{ counter }

func (*nopFSM) Apply(pb.Index, []byte) any { return nil }

// BenchmarkPropose measures Propose on a 3-member cluster in one process
// over loopback TCP with the real WAL and fsync, 256-byte commands, at 1,
// 16, 64 and 256 concurrent proposers: proposals/s and p50/p99 latency.
func BenchmarkPropose(b *testing.B) {
	for _, p := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("proposers=%d", p), func(b *testing.B) {
			c := newBenchCluster(b)
			lead := c.members[c.leaderOf()].n
			cmd := make([]byte, 256)
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start, cpu0, io0, msgs0 := time.Now(), processCPU(b), processIO(b), c.messagesReceived()
			for range p {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, err := lead.Propose(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(t0)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu, io, msgs := processCPU(b)-cpu0, processIO(b).minus(io0), c.messagesReceived()-msgs0
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			io.report(b)
			b.ReportMetric(float64(msgs)/float64(b.N), "messages/op")
		})
	}
}

type benchCluster struct{ *tcluster }

func newBenchCluster(b *testing.B) benchCluster {
	return newBenchClusterAt(b, 50*time.Millisecond, time.Second)
}

// newBenchClusterAt is newBenchCluster with the given heartbeat interval
// and election timeout.
func newBenchClusterAt(b *testing.B, heartbeat, election time.Duration) benchCluster {
	c := &tcluster{tb: b, members: map[pb.NodeID]*member{}}
	for i := 1; i <= 3; i++ {
		m := c.add(pb.NodeID(i))
		c.boot = append(c.boot, node.Member{ID: m.id, PeerAddr: m.addr})
	}
	for i := 1; i <= 3; i++ {
		c.startWith(pb.NodeID(i), false, func(cfg *node.Config) {
			cfg.FSM = &nopFSM{}
			cfg.TickInterval, cfg.ElectionTimeout = heartbeat, election
			cfg.Logger = slog.New(slog.DiscardHandler)
		})
	}
	b.Cleanup(c.stopAll)
	return benchCluster{c}
}

func (c benchCluster) leaderOf() pb.NodeID { return c.leader() }

// messagesReceived counts the Raft messages the members have received so far
// (the transport may join several sent into one).
func (c benchCluster) messagesReceived() uint64 {
	var n uint64
	for _, m := range c.members {
		st, _ := m.n.TransportStats()
		for _, p := range st.Peers {
			n += p.Received
		}
	}
	return n
}

// BenchmarkReadIndex measures linearizable read barriers on the leader of
// a 3-member cluster over loopback TCP, with 64 concurrent readers.
func BenchmarkReadIndex(b *testing.B) {
	c := newBenchCluster(b)
	lead := c.members[c.leaderOf()].n
	if _, err := lead.Propose(context.Background(), make([]byte, 8)); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0, io0, msgs0 := time.Now(), processCPU(b), processIO(b), c.messagesReceived()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := lead.ReadIndex(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu, io, msgs := processCPU(b)-cpu0, processIO(b).minus(io0), c.messagesReceived()-msgs0
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
	b.ReportMetric(float64(msgs)/float64(b.N), "messages/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	io.report(b)
}

// processCPU is the CPU time (user and system) the process has used: the
// three members together, which on a machine shared with other work is a
// steadier figure than proposals/s.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioCounts are the process's read and write system calls (all files and
// sockets), from /proc/self/io: how many a proposal costs is a figure that
// the machine's other load does not move.
type ioCounts struct{ reads, writes int64 }

func processIO(b *testing.B) ioCounts {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	var c ioCounts
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			c.reads = n
		case "syscw":
			c.writes = n
		}
	}
	return c
}

func (c ioCounts) minus(o ioCounts) ioCounts {
	return ioCounts{reads: c.reads - o.reads, writes: c.writes - o.writes}
}

func (c ioCounts) report(b *testing.B) {
	b.ReportMetric(float64(c.reads)/float64(b.N), "read-syscalls/op")
	b.ReportMetric(float64(c.writes)/float64(b.N), "write-syscalls/op")
}

// BenchmarkLeaseRead measures lease reads on the leader of a 3-member
// cluster over loopback TCP at the default timers (100 ms heartbeat, 1 s
// election timeout), with 64 concurrent readers: a read falls back to a
// ReadIndex round whenever the lease is not held.
func BenchmarkLeaseRead(b *testing.B) {
	c := newBenchClusterAt(b, node.DefaultTickInterval, node.DefaultElectionTimeout)
	lead := c.members[c.leaderOf()].n
	if _, err := lead.Propose(context.Background(), make([]byte, 8)); err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * node.DefaultTickInterval) // heartbeat rounds answered: the lease is held
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := lead.LeaseRead(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
}
