package sim

import (
	"fmt"
	"time"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// maxWorkPerDrain bounds one replica's drain: a runtime that never
// quiesces is a bug, not something to wait out.
const maxWorkPerDrain = 1000

// tickDuration is a tick in the runtime's clock: virtual time starts at
// simEpoch and moves by one tickDuration per tick.
const tickDuration = time.Millisecond

var simEpoch = time.Unix(0, 0)

// replica is one simulated server: the production runtime (driver.Runtime,
// which owns the core; nil while crashed), its durable store (log and
// snapshot files), its volatile state machine, and the I/O the runtime
// asked for that has not completed yet.
type replica struct {
	id    pb.NodeID
	rt    *driver.Runtime
	core  *raft.Raft // rt.Core(), for the checkers and the workload
	store Store
	sm    stateMachine
	io    pendingIO
	// incarnation counts restarts; reports about messages sent by an
	// earlier incarnation are not delivered to a later one (the connection
	// they travelled on died with the process).
	incarnation uint64
	downUntil   uint64
	lastRole    raft.Role
	// stallUntil: the disk completes no fsync before this tick.
	stallUntil uint64
	// pausedUntil: the process is frozen before this tick.
	pausedUntil uint64
	// tickWaiting: a tick was held back (lateTickRate) and is taken with
	// the next one.
	tickWaiting bool
}

// pendingIO is what the runtime handed out and the simulated persister,
// applier and snapshot writer have not finished, each in order (as the
// node's goroutines do it), each item with the tick it may complete at.
type pendingIO struct {
	persist []timed[raft.Ready]
	apply   []timed[driver.ApplyJob]
	// snap is the image being written (one at a time).
	snap *timed[image]
	// commitDue is when the node's commit-notice timer would fire
	// (driver.Work.CommitUnsent), if commitArmed.
	commitDue   uint64
	commitArmed bool
}

type timed[T any] struct {
	v   T
	due uint64
}

func (r *replica) up() bool { return r.rt != nil }

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

// drain runs the replica until it has nothing left to do now: the work
// its runtime asks for is handed out, and the I/O due by now completes.
func (s *Sim) drain(r *replica) {
	// The core's invariants are checked after every input and every I/O
	// completion (each is one pass of the loop).
	for n := 0; r.up() && s.err == nil && s.checkCore(r); n++ {
		if n == maxWorkPerDrain {
			s.failf("replica %d: runtime still has work after %d rounds", r.id, n)
			return
		}
		w := r.rt.Work()
		s.handOut(r, &w)
		if !r.up() || s.err != nil || (w.IsEmpty() && !s.completeIO(r)) {
			return
		}
	}
}

// handOut takes the runtime's work: messages leave, Readys and apply jobs
// queue for the simulated persister and applier with a random delay, and
// compactions run at once.
func (s *Sim) handOut(r *replica, w *driver.Work) {
	for _, ss := range w.SoftStates {
		s.trace.add(event{kind: evRole, node: r.id, a: uint64(ss.Role), b: uint64(r.core.Term()), c: uint64(ss.Lead)})
	}
	for _, rd := range w.Persist {
		r.io.persist = append(r.io.persist, timed[raft.Ready]{rd, ioDue(s, s.p.persistDelayMax, r.io.persist)})
	}
	sender{s, r}.Send(w.Send)
	// The node calls SendCommit a moment after the commit index moves,
	// unless an AppendEntries carried it first: here within this tick or
	// the next, else the core's own tick sends it.
	if w.CommitUnsent && !r.io.commitArmed {
		r.io.commitArmed, r.io.commitDue = true, s.now+uint64(s.rng.IntN(2))
	}
	for _, job := range w.Apply {
		r.io.apply = append(r.io.apply, timed[driver.ApplyJob]{job, ioDue(s, s.p.applyDelayMax, r.io.apply)})
	}
	for _, to := range w.Compact {
		if err := r.store.Compact(to); err != nil {
			s.diskError(r, "compacting the log", err)
			return
		}
		s.trace.add(event{kind: evNote, node: r.id, text: fmt.Sprintf("log compacted to %d", to.Index)})
	}
}

// ioDue draws when an I/O item may complete: now, or up to max ticks later,
// never before the item queued ahead of it (each queue completes in order).
func ioDue[T any](s *Sim, maxDelay int, queue []timed[T]) uint64 {
	due := s.now
	if maxDelay > 0 && s.rng.IntN(2) == 0 {
		due += uint64(s.rng.IntN(maxDelay + 1))
	}
	if n := len(queue); n > 0 {
		due = max(due, queue[n-1].due)
	}
	return due
}

// completeIO completes some of the I/O due by now, in one of the orders
// the node's goroutines could: a prefix of the due Readys as one batch
// (one fsync, group commit), the next apply job, or the snapshot write.
// It reports whether it did anything.
func (s *Sim) completeIO(r *replica) bool {
	var can []func()
	if n := duePrefix(r.io.persist, s.now); n > 0 && s.now >= r.stallUntil {
		can = append(can, func() { s.completePersist(r, 1+s.rng.IntN(n)) })
	}
	if len(r.io.apply) > 0 && r.io.apply[0].due <= s.now {
		can = append(can, func() { s.completeApply(r) })
	}
	if r.io.snap != nil && r.io.snap.due <= s.now {
		can = append(can, func() { s.completeSnapshot(r) })
	}
	if r.io.commitArmed && r.io.commitDue <= s.now {
		can = append(can, func() {
			r.io.commitArmed = false
			if r.core.CommitUnsent() {
				s.stats.CommitNotices++
			}
			r.rt.SendCommit()
		})
	}
	if len(can) == 0 {
		return false
	}
	can[s.rng.IntN(len(can))]()
	return true
}

func duePrefix[T any](q []timed[T], now uint64) int {
	n := 0
	for n < len(q) && q[n].due <= now {
		n++
	}
	return n
}

// completePersist makes the first n queued Readys durable as the node's
// persister does (driver.PersistBatch: write all, one fsync, then their
// MessagesAfterPersist), checks what they persisted, and reports them.
func (s *Sim) completePersist(r *replica, n int) {
	batch := make([]raft.Ready, n)
	for i := range batch {
		batch[i] = r.io.persist[i].v
	}
	r.io.persist = r.io.persist[n:]
	if err := driver.PersistBatch(r.store, batch, sender{s, r}.Send); err != nil {
		s.diskError(r, "persisting", err)
		return
	}
	for i := range batch {
		if batch[i].Snapshot != nil {
			s.installPersisted(r, *batch[i].Snapshot)
		}
	}
	s.check.afterPersist(r, batch)
	if err := r.rt.PersistDone(batch[n-1].ID); err != nil {
		s.failf("replica %d: %v", r.id, err)
	}
}

// installPersisted tells the checker the chain hash at a snapshot a
// replica has just made its log start after (the state machine restores it
// later, from the apply queue), checked against the committed log.
func (s *Sim) installPersisted(r *replica, meta pb.SnapshotMeta) {
	img, err := r.store.Image(meta.Index)
	if err != nil || img.term != meta.Term {
		s.failf("replica %d: installs snapshot %d/%d it has no image of (%v)", r.id, meta.Index, meta.Term, err)
		return
	}
	if want, ok := s.check.committed.chainAt(img.index); ok && want != img.chain {
		s.failf("State Machine Safety (§5.4.3): replica %d installs a snapshot at %d/%d that differs from the committed log",
			r.id, img.index, img.term)
		return
	}
	s.check.committed.at(img.index).chain = img.chain
}

// completeApply applies the oldest apply job as the node's applier does,
// and takes the image it asks for.
func (s *Sim) completeApply(r *replica) {
	job := r.io.apply[0].v
	r.io.apply = r.io.apply[1:]
	if job.Snapshot != nil {
		img, err := r.store.Image(job.Snapshot.Index)
		if err != nil || img.term != job.Snapshot.Term {
			s.failf("replica %d: no image for snapshot %d/%d (%v)", r.id, job.Snapshot.Index, job.Snapshot.Term, err)
			return
		}
		if err := r.sm.restore(img); err != nil {
			s.failf("replica %d: %v", r.id, err)
			return
		}
		s.check.onRestore(r, img)
		s.trace.add(event{kind: evInstall, node: r.id, a: uint64(img.index), b: uint64(img.term)})
	}
	for i := range job.Entries {
		e := &job.Entries[i]
		h, err := r.sm.apply(e)
		if err != nil {
			s.failf("replica %d: %v", r.id, err)
			return
		}
		s.check.onApply(r, e, h, r.sm.chain)
		if e.Index%kvHashEvery == 0 {
			s.check.onKVState(r)
		}
	}
	if job.TakeSnapshot {
		img, err := r.sm.image()
		if err != nil {
			s.failf("replica %d: image: %v", r.id, err)
			return
		}
		due := s.now
		if s.p.snapDelayMax > 0 {
			due += uint64(s.rng.IntN(s.p.snapDelayMax + 1))
		}
		r.io.snap = &timed[image]{img, due}
	}
	if err := r.rt.ApplyDone(); err != nil {
		s.failf("replica %d: %v", r.id, err)
	}
}

// completeSnapshot writes the image as the node's snapshot goroutine does
// and reports it; a disk fault while writing it is logged and skipped,
// like the node's (the previous snapshot still covers the log).
func (s *Sim) completeSnapshot(r *replica) {
	img := r.io.snap.v
	r.io.snap = nil
	err := r.store.PutImage(img)
	switch {
	case err == nil:
		s.stats.Snapshots++
		s.trace.add(event{kind: evSnapshot, node: r.id, a: uint64(img.index), b: uint64(img.term)})
	case isDiskFault(err):
		s.trace.add(event{kind: evNote, node: r.id, text: "snapshot not written: " + err.Error()})
	default:
		s.failf("replica %d: writing snapshot %d: %v", r.id, img.index, err)
		return
	}
	r.rt.SnapshotDone(img.meta(), uint64(len(img.kv)+8), err)
}

// diskError stops a replica whose disk failed (it restarts from what is
// durable); any other error is a bug and fails the run.
func (s *Sim) diskError(r *replica, what string, err error) {
	if isDiskFault(err) {
		s.crash(r, "disk failed "+what+": "+err.Error())
		return
	}
	s.failf("replica %d: %s: %v", r.id, what, err)
}

// crash stops the replica: its runtime, state machine and pending I/O are
// gone and its store keeps only what was synced.
func (s *Sim) crash(r *replica, why string) {
	if !r.up() {
		return
	}
	s.check.forgetUndurableTerm(r)
	s.countRuntime(r)
	if err := r.store.Crash(); err != nil {
		s.failf("replica %d: crash: %v", r.id, err)
		return
	}
	r.rt, r.core = nil, nil
	r.sm = stateMachine{}
	r.io = pendingIO{}
	s.check.onCrash(r)
	s.stats.Crashes++
	if w, ok := r.store.(*walStore); ok && w.lastCrashTorn {
		s.stats.TornCrashes++
	}
	s.trace.add(event{kind: evCrash, node: r.id, text: why})
	s.closedByCrash(r.id)
}

// countRuntime adds what r's runtime did to the run's stats (at a crash,
// and at the end of the run).
func (s *Sim) countRuntime(r *replica) {
	if !r.up() {
		return
	}
	c := r.rt.Counters()
	s.stats.GroupCommits += c.GroupCommits
	s.stats.PipelineFull += c.PipelineFull
	s.stats.StallHandOvers += c.DiskStallHandOvers
	s.stats.LeaseGaps += c.LeaseGaps
}

func (s *Sim) paused(r *replica) bool { return s.now < r.pausedUntil }

// clock is the runtime's reading of virtual time.
func (s *Sim) clock() time.Time { return simEpoch.Add(time.Duration(s.now) * tickDuration) }

// start recovers the replica as the node does (driver.Recover: the newest
// snapshot, installed in the log if a crash lost the record that did),
// restores its state machine, and builds its core and runtime (first start
// and every restart alike).
func (s *Sim) start(r *replica) {
	r.tickWaiting = false // a new process, a new ticker
	meta, ok, err := driver.Recover(r.store, r.store.Latest)
	if err != nil {
		if s.recoverFailedForSpace(r, err) {
			return
		}
		s.diskError(r, "recovering", err)
		return
	}
	r.sm = newStateMachine(s.withKV)
	if ok {
		img, err := r.store.Image(meta.Index)
		if err == nil {
			err = r.sm.restore(img)
		}
		if err != nil {
			s.failf("replica %d: restoring snapshot %d: %v", r.id, meta.Index, err)
			return
		}
	}
	r.incarnation++
	cfg := raft.Config{
		ID:             r.id,
		Storage:        r.store,
		Applied:        meta.Index,
		ElectionTicks:  s.p.electionTicks,
		HeartbeatTicks: s.p.heartbeatTicks,
		Seed:           mix64(s.seed ^ uint64(r.id)<<32 ^ r.incarnation),
		MaxMsgBytes:    s.p.maxMsgBytes,
		MaxLearnerLag:  s.p.maxLearnerLag,
		LeaseTicks:     s.p.leaseTicks,
	}
	if s.p.closedSignal {
		lease := cfg.LeaseTicks
		if lease == 0 {
			lease = cfg.ElectionTicks / 2
		}
		cfg.ClosedPromiseTicks = driver.ClosedPromiseTicks(lease, tickDuration, 0)
	}
	cfg.DisablePreVote, cfg.DisableCheckQuorum = s.p.disablePreVote, s.p.disableCheckQuorum
	core, err := raft.New(cfg)
	if err != nil {
		s.failf("replica %d: restart: %v", r.id, err)
		return
	}
	rt, err := driver.New(driver.Config{
		Core: core, Snapshot: meta, Now: s.clock(),
		TickInterval:            tickDuration,
		ElectionTimeout:         time.Duration(s.p.electionTicks) * tickDuration,
		MaxOutstandingReadys:    s.p.maxOutstandingReadys,
		MaxApplyJobs:            s.p.maxApplyJobs,
		SnapshotEntries:         uint64(s.p.snapshotEvery),
		SnapshotTrailingEntries: uint64(s.p.snapshotMargin),
	})
	if err != nil {
		s.failf("replica %d: runtime: %v", r.id, err)
		return
	}
	r.rt, r.core = rt, core
	r.lastRole = core.Role()
	s.check.onStart(r)
	if r.incarnation > 1 {
		s.trace.add(event{kind: evRestart, node: r.id, b: uint64(core.Term())})
	}
}
