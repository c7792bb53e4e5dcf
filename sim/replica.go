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
// store (log and snapshot files), and its volatile state machine.
type replica struct {
	id    pb.NodeID
	core  *raft.Raft
	store Store
	sm    stateMachine
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
		img, err := r.store.Image(snap.Index)
		if err != nil || img.term != snap.Term {
			return fmt.Errorf("no image for snapshot %d/%d (%v)", snap.Index, snap.Term, err)
		}
		if err := r.sm.restore(img); err != nil {
			return err
		}
		a.s.check.onRestore(r, img)
		a.s.trace.add(event{kind: evInstall, node: r.id, a: uint64(img.index), b: uint64(img.term)})
	}
	for i := range ents {
		h, err := r.sm.apply(&ents[i])
		if err != nil {
			return err
		}
		a.s.check.onApply(r, &ents[i], h, r.sm.chain)
		if ents[i].Index%kvHashEvery == 0 {
			a.s.check.onKVState(r)
		}
	}
	return nil
}

// drain runs the replica's Ready loop until the core has nothing to do,
// checking after every Ready.
func (s *Sim) drain(r *replica) {
	for n := 0; r.up() && s.checkCore(r) && r.core.HasReady(); n++ {
		if s.err != nil {
			return
		}
		if n == maxReadysPerDrain {
			s.failf("replica %d: core still has work after %d Readys", r.id, n)
			return
		}
		rd, err := driver.Handle(r.core, r.store, sender{s, r}, applier{s, r})
		if err != nil {
			if isDiskFault(err) {
				s.crash(r, "disk failed: "+err.Error())
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

// maybeSnapshot takes an image every SnapshotEvery applied entries and has
// the store keep it and compact the log, keeping SnapshotMargin entries
// behind (the memory store compacts to the newest image at least the margin
// behind the applied index; the WAL store, as the node does, to the newest
// earlier snapshot at least the margin behind the new one), so that
// followers a little behind still get entries rather than a snapshot.
func (s *Sim) maybeSnapshot(r *replica) {
	if s.p.snapshotEvery == 0 || r.sm.applied < r.lastImage+pb.Index(s.p.snapshotEvery) {
		return
	}
	img, err := r.sm.image()
	if err != nil {
		s.failf("replica %d: image: %v", r.id, err)
		return
	}
	r.lastImage = r.sm.applied
	compacted, err := r.store.TakeSnapshot(img, pb.Index(s.p.snapshotMargin))
	switch {
	case errors.Is(err, errSnapshotNotWritten) && isDiskFault(err):
		s.trace.add(event{kind: evNote, node: r.id, text: err.Error()})
		return
	case isDiskFault(err):
		s.crash(r, "disk failed: "+err.Error())
		return
	case err != nil:
		s.failf("replica %d: %v", r.id, err)
		return
	}
	s.stats.Snapshots++
	s.trace.add(event{kind: evSnapshot, node: r.id, a: uint64(img.index), b: uint64(img.term), c: uint64(compacted.Index)})
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
	if w, ok := r.store.(*walStore); ok && w.lastCrashTorn {
		s.stats.TornCrashes++
	}
	s.trace.add(event{kind: evCrash, node: r.id, text: why})
}

// start builds the replica's core from its durable state (first start and
// every restart alike) and restores its state machine from the snapshot.
func (s *Sim) start(r *replica) {
	img, err := r.store.Recover()
	if err != nil {
		if s.recoverFailedForSpace(r, err) {
			return
		}
		s.failf("replica %d: recover: %v", r.id, err)
		return
	}
	r.sm = newStateMachine(s.withKV)
	if img.index > 0 {
		if err := r.sm.restore(img); err != nil {
			s.failf("replica %d: %v", r.id, err)
			return
		}
	}
	r.lastImage = r.sm.applied
	r.incarnation++
	cfg := raft.Config{
		ID:             r.id,
		Storage:        r.store,
		Applied:        img.index,
		ElectionTicks:  s.p.electionTicks,
		HeartbeatTicks: s.p.heartbeatTicks,
		Seed:           mix64(s.seed ^ uint64(r.id)<<32 ^ r.incarnation),
		MaxMsgBytes:    s.p.maxMsgBytes,
		MaxLearnerLag:  s.p.maxLearnerLag,
	}
	cfg.DisablePreVote, cfg.DisableCheckQuorum = s.p.disablePreVote, s.p.disableCheckQuorum
	core, err := raft.New(cfg)
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
