package node

import (
	"fmt"
	"io"
	"sync"

	pb "github.com/raftkv/raftkv/raftpb"
)

// MemNetwork connects members in one process without sockets, for tests
// that are about the protocol and the runtime rather than TCP: a message
// is encoded and decoded as on the wire and handed straight to the
// receiver's queue, so messages between two members arrive in the order
// sent and never depend on loopback timing. Links can be cut (both ways or
// one way) to make partitions, which close nothing, or reset (Reset), which
// closes the connections at both ends and reconnects at once. A member
// whose transport stops (a crash) closes its connections: every other
// member hears ReportClosed for it, and again whenever it sends to it
// while it is gone (a refused redial). A member uses it through
// Config.NewTransport = net.Transport(id).
//
// It calls the receiver's handler on the sender's goroutine (the node's
// handler never blocks in HandleMessage and never calls back into a
// transport), except for snapshots, which stream on one goroutine per
// receiving peer at most, as the TCP transport does.
type MemNetwork struct {
	mu      sync.Mutex
	members map[pb.NodeID]*memTransport
	cut     map[[2]pb.NodeID]bool
}

// NewMemNetwork returns a network with no members and no cut links.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{members: map[pb.NodeID]*memTransport{}, cut: map[[2]pb.NodeID]bool{}}
}

// Transport returns member id's Config.NewTransport. A member restarted
// with it replaces its earlier transport on the network.
func (nw *MemNetwork) Transport(id pb.NodeID) func(TransportConfig) (Transport, error) {
	return func(tc TransportConfig) (Transport, error) {
		if pb.NodeID(tc.ID) != id {
			return nil, fmt.Errorf("node: memory transport of %d built for member %d", id, tc.ID)
		}
		t := &memTransport{nw: nw, id: id, clusterID: tc.ClusterID, h: tc.Handler,
			snapping: map[pb.NodeID]bool{}}
		nw.mu.Lock()
		nw.members[id] = t
		nw.mu.Unlock()
		return t, nil
	}
}

// Cut drops every message from a to b (and, with both, from b to a).
func (nw *MemNetwork) Cut(a, b pb.NodeID, both bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[[2]pb.NodeID{a, b}] = true
	if both {
		nw.cut[[2]pb.NodeID{b, a}] = true
	}
}

// Isolate cuts every link to and from id.
func (nw *MemNetwork) Isolate(id pb.NodeID) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for other := range nw.members {
		if other != id {
			nw.cut[[2]pb.NodeID{id, other}] = true
			nw.cut[[2]pb.NodeID{other, id}] = true
		}
	}
}

// Reset reports the connections between a and b closed at both ends, as a
// reset link does; messages keep flowing (the transport reconnects).
func (nw *MemNetwork) Reset(a, b pb.NodeID) {
	nw.mu.Lock()
	ta, tb := nw.members[a], nw.members[b]
	nw.mu.Unlock()
	if ta != nil {
		ta.report(func() { ta.h.ReportClosed(b) })
	}
	if tb != nil {
		tb.report(func() { tb.h.ReportClosed(a) })
	}
}

// Heal restores every link.
func (nw *MemNetwork) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.cut)
}

// route returns the live transport of to, if from can reach it, and
// whether the link is cut.
func (nw *MemNetwork) route(from, to pb.NodeID) (*memTransport, bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.cut[[2]pb.NodeID{from, to}] {
		return nil, true
	}
	return nw.members[to], false
}

// memTransport is one member's end of a MemNetwork.
type memTransport struct {
	nw *MemNetwork
	id pb.NodeID
	h  TransportHandler

	// mu guards the fields below; handlers run under its read lock, so
	// that none runs once Stop has returned.
	mu        sync.RWMutex
	stopped   bool
	clusterID uint64
	// snapping marks the peers a snapshot is streaming to (one at a time).
	snapping map[pb.NodeID]bool
	wg       sync.WaitGroup
}

// wire copies m as the network would: the receiver shares no memory with
// the sender.
func wire(m pb.Message) (pb.Message, error) {
	return pb.DecodeMessage(pb.AppendMessage(nil, &m))
}

func (t *memTransport) Send(msgs []pb.Message) {
	for _, m := range msgs {
		if ok, refused := t.deliver(m); !ok {
			t.report(func() { t.h.ReportUnreachable(m.To) })
			if refused {
				t.report(func() { t.h.ReportClosed(m.To) })
			}
		}
	}
}

// deliver hands m to its receiver. It reports whether it did, and if not,
// whether the receiver refused it as a stopped process's port does, rather
// than a cut link swallowing it.
func (t *memTransport) deliver(m pb.Message) (ok, refused bool) {
	to, cut := t.nw.route(t.id, m.To)
	if to == nil {
		return false, !cut
	}
	cp, err := wire(m)
	if err != nil {
		panic(fmt.Sprintf("node: a message that does not survive encoding: %v", err))
	}
	cid := t.ClusterID() // before taking to's lock: never hold two
	to.mu.Lock()
	if to.clusterID == 0 {
		to.clusterID = cid // a joining member learns it from the first peer
	}
	stopped, ok := to.stopped, !to.stopped && to.clusterID == cid
	to.mu.Unlock()
	if !ok {
		return false, stopped
	}
	to.mu.RLock()
	defer to.mu.RUnlock()
	if to.stopped {
		return false, true
	}
	to.h.HandleMessage(cp)
	return true, false
}

// report runs a handler report unless the transport has stopped.
func (t *memTransport) report(f func()) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.stopped {
		f()
	}
}

func (t *memTransport) SendSnapshot(m pb.Message, data io.ReadCloser) {
	t.mu.Lock()
	busy := t.stopped || t.snapping[m.To]
	if !busy {
		t.snapping[m.To] = true
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if busy {
		data.Close()
		t.report(func() { t.h.ReportSnapshot(m.To, false) })
		return
	}
	go func() {
		defer t.wg.Done()
		defer data.Close()
		ok := false
		if to, _ := t.nw.route(t.id, m.To); to != nil {
			to.mu.RLock()
			if !to.stopped {
				ok = to.h.HandleSnapshot(m, data) == nil
			}
			to.mu.RUnlock()
		}
		t.mu.Lock()
		delete(t.snapping, m.To)
		t.mu.Unlock()
		t.report(func() { t.h.ReportSnapshot(m.To, ok) })
	}()
}

func (t *memTransport) AddPeer(pb.NodeID, string) error    { return nil }
func (t *memTransport) UpdatePeer(pb.NodeID, string) error { return nil }
func (t *memTransport) SetAcceptUnknown(bool)              {}

func (t *memTransport) ClusterID() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.clusterID
}

func (t *memTransport) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.nw.mu.Lock()
	if t.nw.members[t.id] == t {
		delete(t.nw.members, t.id)
	}
	var peers []*memTransport
	for id, p := range t.nw.members {
		// The connections close at both ends, unless the link is cut.
		if !t.nw.cut[[2]pb.NodeID{t.id, id}] {
			peers = append(peers, p)
		}
	}
	t.nw.mu.Unlock()
	t.wg.Wait()
	for _, p := range peers {
		p.report(func() { p.h.ReportClosed(t.id) })
	}
}
