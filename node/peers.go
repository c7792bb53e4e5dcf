package node

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/transport"
)

// Transport carries Raft messages between members. The TCP transport
// (package transport, built from Config.PeerListener) is the production
// one; NewMemNetwork's is an in-memory one for tests.
type Transport interface {
	// Send queues messages without blocking on a slow peer.
	Send(msgs []pb.Message)
	// SendSnapshot streams a snapshot and reports the outcome through the
	// handler's ReportSnapshot; it closes data.
	SendSnapshot(m pb.Message, data io.ReadCloser)
	AddPeer(id pb.NodeID, addr string) error
	UpdatePeer(id pb.NodeID, addr string) error
	// SetAcceptUnknown says whether messages from members not added are
	// taken (a joining member knows nobody until the leader reaches it).
	SetAcceptUnknown(on bool)
	// ClusterID is the cluster id in force (learned, for a joining member).
	ClusterID() uint64
	// Stop closes every connection; no handler method runs after it returns.
	Stop()
}

// TransportHandler is what a Transport delivers to: the node's receive
// queue and its reports.
type TransportHandler = transport.Handler

// TransportConfig is what the node tells a Transport it builds.
type TransportConfig struct {
	ID, ClusterID uint64
	// AcceptUnknown: see Transport.SetAcceptUnknown.
	AcceptUnknown bool
	// Peers are the other members' peer addresses.
	Peers   map[pb.NodeID]string
	Handler TransportHandler
}

// startTransport builds the transport: Config.NewTransport if set, else
// the TCP transport on PeerListener, else none (a member alone).
func (n *Node) startTransport() error {
	tc := TransportConfig{ID: uint64(n.cfg.ID), ClusterID: n.cfg.ClusterID,
		AcceptUnknown: !n.core.ConfState().Contains(n.cfg.ID),
		Peers:         n.peerAddrs(), Handler: handler{n}}
	switch {
	case n.cfg.NewTransport != nil:
		tr, err := n.cfg.NewTransport(tc)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.tr = tr
	case n.cfg.PeerListener != nil:
		advertise := n.cfg.Self.PeerAddr
		if advertise == "" {
			advertise = n.cfg.PeerListener.Addr().String()
		}
		tr, err := transport.New(transport.Config{
			ID: n.cfg.ID, ClusterID: n.cfg.ClusterID, Listener: n.cfg.PeerListener,
			TLS: n.cfg.TLS, Handler: tc.Handler, Logger: n.log,
			AdvertiseAddr: advertise,
			AcceptUnknown: tc.AcceptUnknown,
			OnClusterID:   n.cfg.OnClusterID,
			Peers:         tc.Peers,
		})
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.tr = tr
	default:
		return nil
	}
	n.updatePeers()
	return nil
}

// send routes messages: snapshots are streamed from the snapshot store,
// everything else goes to the peer queues. The run goroutine and the
// persister both call it.
func (n *Node) send(msgs []pb.Message) {
	if n.tr == nil || len(msgs) == 0 {
		return
	}
	plain := msgs[:0:0]
	for _, m := range msgs {
		if m.Type != pb.MsgInstallSnapshot {
			plain = append(plain, m)
			continue
		}
		_, rc, err := n.cfg.Snapshots.Open(m.Snapshot.Index)
		if err != nil {
			n.log.Warn("cannot open snapshot to send", "index", uint64(m.Snapshot.Index), "err", err)
			n.rep.snapshot(m.To, false)
			continue
		}
		n.tr.SendSnapshot(m, rc)
	}
	if len(plain) > 0 {
		n.tr.Send(plain)
	}
}

// peerAddrs lists the other members' peer addresses as the configuration
// in force knows them.
func (n *Node) peerAddrs() map[pb.NodeID]string {
	out := map[pb.NodeID]string{}
	for _, m := range membersOf(n.core.ConfState()) {
		if m.ID != n.cfg.ID && m.PeerAddr != "" {
			out[m.ID] = m.PeerAddr
		}
	}
	return out
}

// updatePeers keeps the transport's peer table and the published member
// list in step with the configuration in force (run goroutine, or Start
// before it runs).
func (n *Node) updatePeers() {
	cs := n.core.ConfState()
	if n.run.confSeen && cs.Equal(n.run.conf) && string(cs.Context) == string(n.run.conf.Context) {
		return
	}
	n.run.conf, n.run.confSeen = cs, true
	ms := membersOf(cs)
	n.shared.mu.Lock()
	n.shared.members = ms
	n.shared.mu.Unlock()
	n.noteAlarms(ms)
	if n.tr == nil {
		return
	}
	if cs.Contains(n.cfg.ID) {
		n.tr.SetAcceptUnknown(false)
	}
	for _, m := range ms {
		if m.ID == n.cfg.ID || m.PeerAddr == "" {
			continue
		}
		if err := n.tr.AddPeer(m.ID, m.PeerAddr); err != nil {
			_ = n.tr.UpdatePeer(m.ID, m.PeerAddr)
		}
	}
}

// reportQueue carries the transport's reports and abandoned reads to the
// run goroutine without blocking the reporter and without a goroutine per
// report: reports are coalesced per peer (so the queue is bounded by the
// number of peers), abandoned reads by MaxPendingReads, and one buffered
// notification wakes the run goroutine.
type reportQueue struct {
	mu          sync.Mutex
	unreachable []pb.NodeID
	closed      []pb.NodeID
	snapshots   map[pb.NodeID]bool
	abandoned   []uint64
	notify      chan struct{}
}

func (q *reportQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func (q *reportQueue) unreachableTo(id pb.NodeID) { q.addOnce(&q.unreachable, id) }

func (q *reportQueue) closedBy(id pb.NodeID) { q.addOnce(&q.closed, id) }

// addOnce records id in the list (once: a report says only that it
// happened since the last drain) and wakes the reader.
func (q *reportQueue) addOnce(list *[]pb.NodeID, id pb.NodeID) {
	q.mu.Lock()
	if !slices.Contains(*list, id) {
		*list = append(*list, id)
	}
	q.mu.Unlock()
	q.wake()
}

func (q *reportQueue) snapshot(id pb.NodeID, ok bool) {
	q.mu.Lock()
	if q.snapshots == nil {
		q.snapshots = map[pb.NodeID]bool{}
	}
	q.snapshots[id] = ok
	q.mu.Unlock()
	q.wake()
}

func (q *reportQueue) abandonRead(id uint64) {
	q.mu.Lock()
	if len(q.abandoned) < MaxPendingReads {
		q.abandoned = append(q.abandoned, id)
	}
	q.mu.Unlock()
	q.wake()
}

// takeReports hands the queued reports to the runtime (run goroutine).
func (n *Node) takeReports() {
	q := &n.rep
	q.mu.Lock()
	unreachable, closed, snaps, abandoned := q.unreachable, q.closed, q.snapshots, q.abandoned
	q.unreachable, q.closed, q.snapshots, q.abandoned = nil, nil, nil, nil
	q.mu.Unlock()
	for _, id := range unreachable {
		n.run.rt.ReportUnreachable(id)
	}
	for _, id := range closed {
		n.run.rt.ReportClosed(id)
	}
	ids := make([]pb.NodeID, 0, len(snaps))
	for id := range snaps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		n.run.rt.ReportSnapshot(id, snaps[id])
	}
	for _, id := range abandoned {
		delete(n.run.pendingRead, id)
	}
}

// handler adapts the transport's callbacks to the node.
type handler struct{ n *Node }

func (h handler) HandleMessage(m pb.Message) {
	select {
	case h.n.q.recvc <- m:
	default:
		// Full: drop; Raft retransmits.
		h.n.counters.dropped.Add(1)
	}
}

func (h handler) HandleSnapshot(m pb.Message, data io.Reader) error {
	if m.Snapshot == nil {
		return errors.New("node: InstallSnapshot without metadata")
	}
	sink, err := h.n.cfg.Snapshots.Create(*m.Snapshot)
	if err != nil {
		return err
	}
	if _, err := io.Copy(sink, data); err != nil {
		sink.Abort()
		return fmt.Errorf("node: receiving snapshot %d: %w", m.Snapshot.Index, err)
	}
	if err := sink.Commit(); err != nil {
		return fmt.Errorf("node: storing snapshot %d: %w", m.Snapshot.Index, err)
	}
	h.n.counters.snapsReceived.Add(1)
	select {
	case h.n.q.recvc <- m:
	case <-h.n.life.stopc:
	}
	return nil
}

func (h handler) ReportUnreachable(id pb.NodeID) { h.n.rep.unreachableTo(id) }

func (h handler) ReportClosed(id pb.NodeID) { h.n.rep.closedBy(id) }

func (h handler) ReportSnapshot(id pb.NodeID, ok bool) {
	if ok {
		h.n.counters.snapsSent.Add(1)
	} else {
		h.n.counters.snapsFailed.Add(1)
	}
	h.n.rep.snapshot(id, ok)
}
