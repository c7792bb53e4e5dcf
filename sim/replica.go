package sim

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// maxReadysPerDrain bounds one replica's Ready loop: a core that never
// quiesces is a bug, not something to wait out.
const maxReadysPerDrain = 1000

// replica is one simulated server: a core (nil while crashed), its durable
// store and snapshot images, and its volatile state machine.
type replica struct {
	id    pb.NodeID
	core  *raft.Raft
	store Store
	sm    stateMachine
	imgs  imageStore
	// incarnation counts restarts; reports about messages sent by an
	// earlier incarnation are not delivered to a later one (the connection
	// they travelled on died with the process).
	incarnation uint64
	// lastImage is the applied index of the newest image taken locally.
	lastImage pb.Index
	downUntil uint64
	lastRole  raft.Role
}

func (r *replica) up() bool { return r.core != nil }

// sender hands a replica's outgoing messages to the checker and network.
type sender struct {
	s *Sim
	r *replica
}

func (o sender) Send(msgs []pb.Message) {
	for i := range msgs {
		o.s.check.onSend(o.r, &msgs[i])
		o.s.net.send(o.s, o.r, msgs[i])
	}
}

// applier feeds committed entries and snapshots to the state machine.
type applier struct {
	s *Sim
	r *replica
}

func (a applier) Apply(snap *pb.SnapshotMeta, ents []pb.Entry) error {
	r := a.r
	if snap != nil {
		img, ok := r.imgs.get(snap.Index)
		if !ok || img.term != snap.Term {
			return fmt.Errorf("no image for snapshot %d/%d", snap.Index, snap.Term)
		}
		r.sm.restore(img)
		a.s.check.onRestore(r, img)
		a.s.trace.add(event{kind: evInstall, node: r.id, a: uint64(img.index), b: uint64(img.term)})
	}
	for i := range ents {
		h, err := r.sm.apply(&ents[i])
		if err != nil {
			return err
		}
		a.s.check.onApply(r, &ents[i], h, r.sm.chain)
	}
	return nil
}

// drain runs the replica's Ready loop until the core has nothing to do,
// checking after every Ready.
func (s *Sim) drain(r *replica) {
	for n := 0; r.up() && r.core.HasReady(); n++ {
		if s.err != nil {
			return
		}
		if n == maxReadysPerDrain {
			s.failf("replica %d: core still has work after %d Readys", r.id, n)
			return
		}
		rd, err := driver.Handle(r.core, r.store, sender{s, r}, applier{s, r})
		if err != nil {
			if errors.Is(err, errSyncFailed) {
				s.crash(r, "fsync failed")
				return
			}
			s.failf("replica %d: %v", r.id, err)
			return
		}
		if rd.SoftState != nil {
			s.trace.add(event{kind: evRole, node: r.id, a: uint64(rd.SoftState.Role),
				b: uint64(r.core.Term()), c: uint64(rd.SoftState.Lead)})
		}
		s.check.afterReady(r, &rd)
		s.maybeSnapshot(r)
	}
}

// maybeSnapshot takes an image every SnapshotEvery applied entries and
// compacts the log to the newest image at least SnapshotMargin entries
// behind the applied index, so that followers a little behind still get
// entries rather than a snapshot.
func (s *Sim) maybeSnapshot(r *replica) {
	if s.p.snapshotEvery == 0 || r.sm.applied < r.lastImage+pb.Index(s.p.snapshotEvery) {
		return
	}
	r.imgs.put(r.sm.image())
	r.lastImage = r.sm.applied
	if r.sm.applied <= pb.Index(s.p.snapshotMargin) {
		return
	}
	cur, _ := r.store.Snapshot()
	img, ok := r.imgs.latestAtOrBelow(r.sm.applied-pb.Index(s.p.snapshotMargin), cur.Index)
	if !ok {
		return
	}
	if err := r.store.CreateSnapshot(img.index, img.conf); err != nil {
		s.failf("replica %d: %v", r.id, err)
		return
	}
	r.imgs.pruneBelow(img.index)
	s.stats.Snapshots++
	s.trace.add(event{kind: evSnapshot, node: r.id, a: uint64(img.index), b: uint64(img.term)})
}

// crash stops the replica: its core and state machine are gone and its
// store keeps only what was synced.
func (s *Sim) crash(r *replica, why string) {
	if !r.up() {
		return
	}
	if err := r.store.Crash(); err != nil {
		s.failf("replica %d: crash: %v", r.id, err)
		return
	}
	r.core = nil
	r.sm = stateMachine{}
	s.check.onCrash(r)
	s.stats.Crashes++
	s.trace.add(event{kind: evCrash, node: r.id, text: why})
}

// start builds the replica's core from its durable state (first start and
// every restart alike) and restores its state machine from the snapshot.
func (s *Sim) start(r *replica) {
	snap, err := r.store.Snapshot()
	if err != nil {
		s.failf("replica %d: %v", r.id, err)
		return
	}
	r.sm = stateMachine{}
	if snap.Index > 0 {
		img, ok := r.imgs.get(snap.Index)
		if !ok {
			s.failf("replica %d: no image for durable snapshot %d", r.id, snap.Index)
			return
		}
		r.sm.restore(img)
	}
	r.lastImage = r.sm.applied
	r.incarnation++
	core, err := raft.New(raft.Config{
		ID:             r.id,
		Storage:        r.store,
		Applied:        snap.Index,
		ElectionTicks:  s.p.electionTicks,
		HeartbeatTicks: s.p.heartbeatTicks,
		Seed:           mix64(s.seed ^ uint64(r.id)<<32 ^ r.incarnation),
		MaxMsgBytes:    s.p.maxMsgBytes,
		MaxLearnerLag:  s.p.maxLearnerLag,
	})
	if err != nil {
		s.failf("replica %d: restart: %v", r.id, err)
		return
	}
	r.core = core
	r.lastRole = core.Role()
	s.check.onStart(r)
	if r.incarnation > 1 {
		s.trace.add(event{kind: evRestart, node: r.id, b: uint64(core.Term())})
	}
}
