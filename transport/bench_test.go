package transport

import (
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// countingHandler counts messages and entry bytes and hands back a credit
// every batch, so the benchmark never overruns the send queue (a drop would
// measure the drop path, not the transport).
type countingHandler struct {
	msgs    atomic.Int64
	batch   int64
	credits chan struct{}
}

func (h *countingHandler) HandleMessage(m raftpb.Message) {
	if h.msgs.Add(1)%h.batch == 0 {
		h.credits <- struct{}{}
	}
}
func (h *countingHandler) HandleSnapshot(raftpb.Message, io.Reader) error { return nil }
func (h *countingHandler) ReportUnreachable(raftpb.NodeID)                {}
func (h *countingHandler) ReportClosed(raftpb.NodeID)                     {}
func (h *countingHandler) ReportSnapshot(raftpb.NodeID, bool)             {}

// BenchmarkSendThroughput measures one peer stream over loopback: Send is
// called with batches of 64 AppendEntries, each carrying 256-byte entries;
// one op is one message. MB/s counts entry payload bytes.
func BenchmarkSendThroughput(b *testing.B) {
	for _, entries := range []int{1, 16} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) { benchSend(b, entries) })
	}
}

func benchSend(b *testing.B, entriesPerMsg int) {
	const batchLen, window = 64, 2048
	h := &countingHandler{batch: batchLen, credits: make(chan struct{}, window/batchLen)}
	for range window / batchLen {
		h.credits <- struct{}{}
	}
	a := newMember(b, 1, "", nil)
	c := newMember(b, 2, "", func(cfg *Config) { cfg.Handler = h })
	connect(b, a, c)
	data := make([]byte, 256)
	batch := make([]raftpb.Message, batchLen)
	for i := range batch {
		ents := make([]raftpb.Entry, entriesPerMsg)
		for j := range ents {
			ents[j] = raftpb.Entry{Term: 2, Index: raftpb.Index(i*entriesPerMsg + j + 1), Data: data}
		}
		batch[i] = raftpb.Message{Type: raftpb.MsgAppendEntries, From: 1, To: 2, Term: 2, Entries: ents}
	}
	total := (int64(b.N) + batchLen - 1) / batchLen * batchLen
	b.SetBytes(int64(256 * entriesPerMsg))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for sent := int64(0); sent < total; sent += batchLen {
		<-h.credits
		a.tr.Send(batch)
	}
	for h.msgs.Load() < total {
		<-h.credits
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	if d := a.tr.Stats().Peers[2].Dropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
}
