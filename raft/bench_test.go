package raft_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// benchCluster is a lean in-memory cluster for benchmarks: no I/O, no
// checks, MemoryStorage written directly, messages delivered in lock-step.
type benchCluster struct {
	ids     []pb.NodeID
	cores   []*raft.Raft
	stores  []*raft.MemoryStorage
	inbox   []pb.Message
	spare   []pb.Message
	applied []pb.Index
}

func newBenchCluster(b *testing.B, n int) *benchCluster {
	bc := &benchCluster{}
	for i := 1; i <= n; i++ {
		bc.ids = append(bc.ids, pb.NodeID(i))
	}
	hs, ents, err := raft.Bootstrap(bc.ids)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range bc.ids {
		st := raft.NewMemoryStorage()
		if err := st.Append(ents); err != nil {
			b.Fatal(err)
		}
		st.SetHardState(hs)
		r, err := raft.New(raft.Config{ID: id, Storage: st, Seed: uint64(id)})
		if err != nil {
			b.Fatal(err)
		}
		bc.cores = append(bc.cores, r)
		bc.stores = append(bc.stores, st)
		bc.applied = append(bc.applied, 0)
	}
	for bc.cores[0].Role() != raft.Leader {
		bc.cores[0].Tick()
		bc.pump(b)
	}
	return bc
}

// pump runs every Ready loop and delivers messages until quiet.
func (bc *benchCluster) pump(b *testing.B) {
	for {
		busy := false
		for i, r := range bc.cores {
			for r.HasReady() {
				busy = true
				rd := r.Ready()
				bc.inbox = append(bc.inbox, rd.Messages...)
				st := bc.stores[i]
				if rd.Snapshot != nil {
					if err := st.ApplySnapshot(*rd.Snapshot); err != nil {
						b.Fatal(err)
					}
				}
				if err := st.Append(rd.Entries); err != nil {
					b.Fatal(err)
				}
				if rd.HardStateChanged {
					st.SetHardState(rd.HardState)
				}
				bc.inbox = append(bc.inbox, rd.MessagesAfterPersist...)
				if n := len(rd.CommittedEntries); n > 0 {
					bc.applied[i] = rd.CommittedEntries[n-1].Index
				}
				if err := r.Advance(rd); err != nil {
					b.Fatal(err)
				}
			}
		}
		if len(bc.inbox) == 0 {
			if !busy {
				return
			}
			continue
		}
		msgs := bc.inbox
		bc.inbox = bc.spare[:0]
		for i := range msgs {
			m := &msgs[i]
			if err := bc.cores[m.To-1].Step(*m); err != nil {
				b.Fatal(err)
			}
		}
		clear(msgs)
		bc.spare = msgs
	}
}

// compact drops applied entries from every store, as a runtime taking
// snapshots would, so that memory stays flat over long runs.
func (bc *benchCluster) compact(b *testing.B) {
	low := bc.applied[0]
	for _, a := range bc.applied {
		low = min(low, a)
	}
	for i, st := range bc.stores {
		if low > st.FirstIndex()+1<<13 {
			if err := st.CreateSnapshot(low, bc.cores[i].ConfState()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCommitThroughput measures the core alone: a 3-member in-memory
// cluster without I/O commits b.N entries of 256 bytes, proposed in batches
// of 1, 64 and 1024 entries per Propose. It reports entries/s and heap
// allocations per committed entry (all three members together).
func BenchmarkCommitThroughput(b *testing.B) {
	for _, batch := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			bc := newBenchCluster(b, 3)
			lead := bc.cores[0]
			payload := make([]byte, 256)
			data := make([][]byte, batch)
			for i := range data {
				data[i] = payload
			}
			start := bc.applied[0]
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				if _, _, err := lead.Propose(data...); err != nil {
					b.Fatal(err)
				}
				bc.pump(b)
				if done%(1<<12) < batch {
					bc.compact(b)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			entries := float64(bc.applied[0] - start)
			if entries < float64(b.N) {
				b.Fatalf("committed %v of %d entries", entries, b.N)
			}
			b.ReportMetric(entries/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(ms.Mallocs-mallocs)/entries, "allocs/entry")
			b.ReportMetric(0, "ns/op")
		})
	}
}
