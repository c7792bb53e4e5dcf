package sim

import (
	"container/heap"

	pb "github.com/raftkv/raftkv/raftpb"
)

// MaxReplicas bounds the cluster size the simulator models.
const MaxReplicas = 9

// maxDeliveriesPerTick bounds the messages delivered in one tick: zero-delay
// messages can beget more in the same tick, and a protocol that never stops
// talking is a bug worth reporting.
const maxDeliveriesPerTick = 200000

// envelope is a message in flight.
type envelope struct {
	m  pb.Message
	at uint64 // tick it arrives
	// seq orders envelopes arriving in the same tick by send order, which
	// keeps delivery deterministic.
	seq     uint64
	fromInc uint64
	// img travels beside an InstallSnapshot: the sender's image at the
	// snapshot's index, as a snapshot file would.
	img *image
	// lost marks a notification, not a message: m was lost on the way out
	// and the sender's transport reports it. Reports arrive like messages,
	// never inside the sender's Ready loop (the transport's reporter runs
	// apart from the node).
	lost bool
	// closed marks a notification too: m.To's connection to m.From closed
	// (closed.go), meant for m.To's incarnation toInc.
	closed bool
	toInc  uint64
}

type envHeap []*envelope

func (h envHeap) Len() int { return len(h) }
func (h envHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h envHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *envHeap) Push(x any)   { *h = append(*h, x.(*envelope)) }
func (h *envHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// network is the simulated wire: per-message random loss, duplication and
// delay (hence reordering), and a matrix of cut links (partitions, which
// may be one-way).
type network struct {
	queue envHeap
	seq   uint64
	// cut[from][to] drops every message from -> to at delivery.
	cut [MaxReplicas + 1][MaxReplicas + 1]bool
	// slow[from][to] makes every message from -> to a slow one (params.slowRate).
	slow [MaxReplicas + 1][MaxReplicas + 1]bool
}

func (n *network) isCut(from, to pb.NodeID) bool { return n.cut[from][to] }

func (n *network) healAll() {
	n.cut = [MaxReplicas + 1][MaxReplicas + 1]bool{}
	n.slow = [MaxReplicas + 1][MaxReplicas + 1]bool{}
}

// send puts m on the wire from r, applying the loss and duplication rates.
func (n *network) send(s *Sim, r *replica, m pb.Message) {
	s.stats.Messages++
	var img *image
	if m.Type == pb.MsgInstallSnapshot {
		got, err := r.store.Image(m.Snapshot.Index)
		if err != nil {
			s.failf("replica %d sends snapshot %d it cannot read: %v", r.id, m.Snapshot.Index, err)
			return
		}
		img = &got
	}
	if s.p.dropRate > 0 && s.rng.Float64() < s.p.dropRate {
		s.trace.add(event{kind: evDrop, msg: m, text: "lost"})
		n.seq++
		heap.Push(&n.queue, &envelope{m: m, at: s.now, seq: n.seq, fromInc: r.incarnation, lost: true})
		return
	}
	copies := 1
	if s.p.dupRate > 0 && s.rng.Float64() < s.p.dupRate {
		copies = 2
		s.trace.add(event{kind: evDup, msg: m})
	}
	for ; copies > 0; copies-- {
		n.seq++
		heap.Push(&n.queue, &envelope{m: m, at: s.now + s.delay(n.slow[m.From][m.To]), seq: n.seq,
			fromInc: r.incarnation, img: img})
	}
}

// undeliverable tells the sender's runtime what a transport would learn: a
// snapshot that did not arrive failed. Other losses go unnoticed, except a
// cut link, which a transport sees as a broken connection.
func (n *network) undeliverable(s *Sim, fromInc uint64, m pb.Message) {
	from := s.replica(m.From)
	if !from.up() || from.incarnation != fromInc {
		return
	}
	if s.paused(from) {
		// The report waits for the process to run again.
		n.seq++
		heap.Push(&n.queue, &envelope{m: m, at: from.pausedUntil, seq: n.seq, fromInc: fromInc, lost: true})
		return
	}
	switch {
	case m.Type == pb.MsgInstallSnapshot:
		from.rt.ReportSnapshot(m.To, false)
	case n.isCut(m.From, m.To) && m.Type == pb.MsgAppendEntries:
		from.rt.ReportUnreachable(m.To)
	default:
		return
	}
	s.drain(from)
}

// deliverDue delivers every message due by now, in arrival order.
func (n *network) deliverDue(s *Sim) {
	for count := 0; len(n.queue) > 0 && n.queue[0].at <= s.now; count++ {
		if s.err != nil {
			return
		}
		if count == maxDeliveriesPerTick {
			s.failf("more than %d messages delivered in tick %d: the cluster never quiets", count, s.now)
			return
		}
		env := heap.Pop(&n.queue).(*envelope)
		n.deliver(s, env)
	}
}

func (n *network) deliver(s *Sim, env *envelope) {
	m := env.m
	if env.closed {
		n.deliverClosed(s, env)
		return
	}
	if env.lost {
		n.undeliverable(s, env.fromInc, m)
		return
	}
	to := s.replica(m.To)
	if to.up() && s.paused(to) {
		// The kernel holds it until the process runs again.
		env.at = to.pausedUntil
		heap.Push(&n.queue, env)
		return
	}
	switch {
	case !to.up():
		s.trace.add(event{kind: evDrop, msg: m, text: "receiver down"})
		n.undeliverable(s, env.fromInc, m)
		if !n.isCut(m.From, m.To) {
			s.refused(m, env.fromInc)
		}
		return
	case n.isCut(m.From, m.To):
		s.trace.add(event{kind: evDrop, msg: m, text: "partitioned"})
		n.undeliverable(s, env.fromInc, m)
		return
	}
	if env.img != nil {
		// The snapshot file lands before the core hears of it; one that
		// cannot be stored is a failed transfer (node's HandleSnapshot).
		if err := to.store.PutImage(*env.img); err != nil {
			if !isDiskFault(err) {
				s.failf("replica %d: storing snapshot %d: %v", to.id, m.Snapshot.Index, err)
				return
			}
			s.trace.add(event{kind: evDrop, msg: m, text: "snapshot not stored: " + err.Error()})
			n.undeliverable(s, env.fromInc, m)
			return
		}
		if s.chance(s.p.installCrashRate) {
			s.trace.add(event{kind: evDrop, msg: m, text: "receiver killed after storing the snapshot"})
			to.downUntil = s.now + 1 + uint64(s.rng.IntN(s.p.downTicksMax))
			s.crash(to, "killed after storing a snapshot")
			n.undeliverable(s, env.fromInc, m)
			return
		}
	}
	if !s.admitMessage(to, m) {
		return
	}
	s.trace.add(event{kind: evDeliver, msg: m})
	if err := to.rt.Step(m); err != nil {
		s.failf("replica %d: step %s: %v", to.id, m, err)
		return
	}
	s.drain(to)
	if m.Type == pb.MsgInstallSnapshot {
		if from := s.replica(m.From); from.up() && !s.paused(from) && from.incarnation == env.fromInc {
			from.rt.ReportSnapshot(m.To, true)
			s.drain(from)
		}
	}
}
