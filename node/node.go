package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/internal/stagetrace"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Node is a running Raft member: its run goroutine drives a
// driver.Runtime (which owns the core and decides every runtime policy),
// the persister and the applier do the I/O the runtime asks for, and the
// embedding API talks to the run goroutine. Each piece of state lives in
// the struct of the goroutine that owns it; see doc.go.
type Node struct {
	cfg Config
	log *slog.Logger
	// tr is set by Start before any goroutine runs and not changed after.
	tr Transport

	q    queues
	life lifecycle
	// core is built by New; from Start on it belongs to run.rt.
	core *raft.Raft
	run  runState   // the run goroutine's
	ap   applyState // the apply goroutine's
	// shared is written by the run goroutine and the applier and read by
	// API callers, under its mutex.
	shared sharedState
	pub    published
	rep    reportQueue

	counters counters  // see observe.go
	space    spaceGate // see space.go
}

// Named bounds of the queues between goroutines (the configurable ones are
// Config fields).
const (
	// requestQueueLen bounds API calls waiting for the run goroutine
	// (Status, reads, membership changes); a caller blocks until there is
	// room or its context ends.
	requestQueueLen = 64
	// MaxPendingReads bounds read barriers waiting for their index; more
	// fail with ErrBusy.
	MaxPendingReads = 8192
	// snapshotsInFlight: the runtime asks for one snapshot at a time, so
	// the applier -> writer -> run queues hold one.
	snapshotsInFlight = 1
)

// queues are the channels between goroutines, made by New and never
// replaced. Every one is bounded; those the run goroutine sends on are
// sized so that a send never blocks (the runtime bounds what it hands out).
type queues struct {
	propc chan *proposal // API -> run; ProposalQueueLen; full: ErrBusy
	recvc chan pb.Message
	reqc  chan func()
	// commitc asks the run loop to send the commit index now (SendCommit).
	commitc chan struct{}
	// run -> persister (MaxOutstandingReadys) and back.
	persistc     chan raft.Ready
	persistDonec chan uint64
	// run -> applier (ApplyQueueLen) and back.
	applyc     chan driver.ApplyJob
	applyDonec chan struct{}
	// applier -> snapshot writer -> run: one snapshot at a time.
	snapc     chan snapshotTask
	snapDonec chan snapshotDone
}

// lifecycle is how the node stops; safe for concurrent use.
type lifecycle struct {
	running  atomic.Bool // Start was called
	stopOnce sync.Once
	stopc    chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	fatalErr atomic.Pointer[error]
}

// runState is owned by the run goroutine.
type runState struct {
	rt          *driver.Runtime
	nextReadID  uint64
	pendingRead map[uint64]*readRequest
	conf        pb.ConfState // as last given to the transport
	confSeen    bool
	soft        raft.SoftState
	nextSnapTok uint64
	snapWaiters map[uint64]chan driver.SnapshotResult
	// lastProposed is the index of the last entry proposed here: above
	// the commit index, earlier proposals are still in flight.
	lastProposed pb.Index
}

// sharedState is guarded by mu.
type sharedState struct {
	mu      sync.Mutex
	futures map[pb.Index]*proposal
	waiters []appliedWaiter
	status  raft.Status
	members []Member
}

// published are values one goroutine writes and any reads.
type published struct {
	applied    atomic.Uint64 // applier
	lead, term atomic.Uint64 // run
	role       atomic.Int32  // run
	// The runtime's snapshot state, for observers (run).
	snapshotting  atomic.Bool
	lastSnapBytes atomic.Uint64
	appliedConf   atomic.Pointer[pb.ConfState]
	appliedConfI  atomic.Uint64 // applier
}

// New opens a member: it restores the state machine from the latest
// snapshot, rebuilds the core from the log, and bootstraps an empty log
// when Bootstrap is set. Start makes it run.
func New(c Config) (*Node, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.ClusterID == 0 && !cfg.Join {
		cfg.ClusterID = ClusterIDOf(cfg.Bootstrap)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger,
		q: queues{
			propc:        make(chan *proposal, cfg.ProposalQueueLen),
			recvc:        make(chan pb.Message, DefaultRecvQueueLen),
			reqc:         make(chan func(), requestQueueLen),
			commitc:      make(chan struct{}, 1),
			persistc:     make(chan raft.Ready, cfg.MaxOutstandingReadys),
			persistDonec: make(chan uint64, cfg.MaxOutstandingReadys),
			applyc:       make(chan driver.ApplyJob, cfg.ApplyQueueLen),
			applyDonec:   make(chan struct{}, cfg.ApplyQueueLen),
			snapc:        make(chan snapshotTask, snapshotsInFlight),
			snapDonec:    make(chan snapshotDone, snapshotsInFlight),
		},
		life: lifecycle{stopc: make(chan struct{}), done: make(chan struct{})},
		run: runState{
			pendingRead: map[uint64]*readRequest{},
			snapWaiters: map[uint64]chan driver.SnapshotResult{},
		},
		shared: sharedState{futures: map[pb.Index]*proposal{}},
	}
	n.rep.notify = make(chan struct{}, 1)
	n.space.log = spaceOf(cfg.Log)
	// The state machine reads the snapshot before Recover may write the
	// log: a snapshot it refuses (a format it will not convert in place)
	// then leaves the data directory as it was.
	meta, ok := cfg.Snapshots.Latest()
	if ok {
		if err := n.restoreSnapshot(meta); err != nil {
			return nil, err
		}
	}
	meta, ok, err = driver.Recover(cfg.Log, func() (pb.SnapshotMeta, bool) { return meta, ok })
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if ok {
		n.ap.lastApplied = pb.Entry{Index: meta.Index, Term: meta.Term}
		n.ap.snap = meta
	} else if n.cfg.Log.LastIndex() == 0 {
		if err := n.bootstrap(); err != nil {
			return nil, err
		}
	}
	tm := timingOf(cfg.TickInterval, cfg.ElectionTimeout)
	core, err := raft.New(raft.Config{
		ID: cfg.ID, Storage: storageView{n}, Applied: meta.Index,
		ElectionTicks:       tm.election,
		HeartbeatTicks:      tm.heartbeat,
		LeaseTicks:          tm.lease,
		ClosedPromiseTicks:  tm.closedPromise,
		Seed:                cfg.Seed,
		MaxUncommittedBytes: cfg.MaxUncommittedBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.core = core
	n.pub.applied.Store(uint64(meta.Index))
	n.publishStatus()
	return n, nil
}

func (n *Node) bootstrap() error {
	if n.cfg.Join {
		return nil // the leader will send the log
	}
	if len(n.cfg.Bootstrap) == 0 {
		return errors.New("node: empty log and neither Bootstrap nor Join given")
	}
	meta := clusterMeta{ClusterID: n.cfg.ClusterID}
	var voters []pb.NodeID
	// Every initial member must write the identical entry (Log Matching),
	// so only what all of them were given goes in: no member's own extras.
	for _, m := range n.cfg.Bootstrap {
		m.Voter = true
		meta.Members = append(meta.Members, m)
		voters = append(voters, m.ID)
	}
	hs, ents, err := raft.BootstrapConf(confchange.Target{Voters: voters, Context: meta.encode()})
	if err != nil {
		return fmt.Errorf("node: bootstrap: %w", err)
	}
	if err := n.cfg.Log.Save(hs, nil, ents); err != nil {
		return fmt.Errorf("node: bootstrap: %w", err)
	}
	return n.cfg.Log.Sync()
}

// Start starts the node's goroutines and its peer transport.
func (n *Node) Start() error {
	tm := timingOf(n.cfg.TickInterval, n.cfg.ElectionTimeout)
	rt, err := driver.New(driver.Config{
		Core: n.core, Snapshot: n.ap.snap, Now: time.Now(),
		TickInterval: tm.tick, ElectionTimeout: n.cfg.ElectionTimeout,
		TickSlack: tm.slack, LeaseGap: 2 * n.cfg.TickInterval,
		MaxOutstandingReadys:    n.cfg.MaxOutstandingReadys,
		MaxApplyJobs:            n.cfg.ApplyQueueLen,
		SnapshotEntries:         n.cfg.SnapshotEntries,
		SnapshotSizeFactor:      n.cfg.SnapshotSizeFactor,
		SnapshotTrailingEntries: n.cfg.SnapshotTrailingEntries,
		Logger:                  n.log,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := n.startTransport(); err != nil {
		return err
	}
	n.run.rt = rt
	n.life.running.Store(true)
	n.life.wg.Add(4)
	go n.runLoop()
	go n.persistLoop()
	go n.applyLoop()
	go n.snapshotLoop()
	return nil
}

// Stop stops the node and closes its Log. Pending proposals end with ErrStopped (not yet
// appended) or ErrUnknownOutcome (appended); pending reads fail.
func (n *Node) Stop() {
	n.life.stopOnce.Do(func() { close(n.life.stopc) })
	<-n.life.done
}

// Done is closed when the node has stopped, by Stop or by a fatal error.
func (n *Node) Done() <-chan struct{} { return n.life.done }

// Err returns the fatal error that stopped the node, if any.
func (n *Node) Err() error {
	if p := n.life.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fatal stops the node after an error that leaves its state in doubt: a
// failed write or fsync, a state machine that cannot restore.
func (n *Node) fatal(err error) {
	if n.life.fatalErr.CompareAndSwap(nil, &err) {
		n.log.Error("fatal error, stopping", "err", err)
	}
	n.life.stopOnce.Do(func() { close(n.life.stopc) })
}

// runLoop owns the runtime and through it the core: every event is one
// call into it, and the work it then asks for is handed out.
func (n *Node) runLoop() {
	defer n.shutdown()
	tick := timingOf(n.cfg.TickInterval, n.cfg.ElectionTimeout).tick
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	cn := newCommitNotice(tick)
	defer cn.timer.Stop()
	rt := n.run.rt
	for {
		var err error
		select {
		case <-cn.timer.C:
			cn.fired(n.core.Committed())
			if n.core.CommitUnsent() {
				n.counters.commitAfterDelay.Add(1)
			}
			rt.SendCommit()
		case <-n.q.commitc:
			rt.SendCommit()
		case <-ticker.C:
			// The clock, not the channel's time: that may be stale after a pause.
			now := time.Now()
			if err = rt.Tick(now); err == nil {
				n.spaceTick(now)
			}
			n.publishStatus()
		case m := <-n.q.recvc:
			if !n.admitMessage(&m) {
				break
			}
			n.step(rt, m)
		case p := <-n.q.propc:
			cn.proposed(time.Now())
			concurrent := n.run.lastProposed > n.core.Committed()
			n.propose(p)
			if concurrent && len(n.q.propc) == 0 {
				// Other proposals are in flight, so their callers are
				// likely runnable with their next: yield once to let them
				// propose, and drainEvents takes them into this Work (one
				// AppendEntries per follower for the lot, not one each). A
				// lone caller, whose last proposal has committed, is not
				// kept waiting for the yield.
				runtime.Gosched()
			}
		case f := <-n.q.reqc:
			f()
		case <-n.rep.notify:
			n.takeReports()
		case id := <-n.q.persistDonec:
			err = rt.PersistDone(id)
		case <-n.q.applyDonec:
			err = rt.ApplyDone()
		case d := <-n.q.snapDonec:
			rt.SnapshotDone(d.meta, d.size, d.err)
		case <-n.life.stopc:
			return
		}
		if err == nil {
			err = n.drainEvents(rt)
		}
		if err == nil {
			// The core stops on a failed read of its log
			// (raft.ErrStorageFailed), whichever call met it; so must the node.
			err = rt.Err()
		}
		if err != nil {
			n.fatal(fmt.Errorf("node: %w", err))
			return
		}
		w := rt.Work()
		n.execute(w)
		n.noticeCommit(cn, w)
	}
}

// step steps an admitted message into the runtime.
func (n *Node) step(rt *driver.Runtime, m pb.Message) {
	if stagetrace.Enabled {
		markStepped(&m)
	}
	if err := rt.Step(m); err != nil {
		n.log.Debug("dropped message", "msg", m.String(), "err", err)
	}
}

// markStepped marks an AppendEntries or an acknowledgement of one about
// to be stepped.
func markStepped(m *pb.Message) {
	switch {
	case m.Type == pb.MsgAppendEntries && len(m.Entries) > 0:
		stagetrace.Mark(stagetrace.AppendStepped, uint64(m.Entries[len(m.Entries)-1].Index), uint64(m.From))
	case m.Type == pb.MsgAppendEntriesResp && !m.Reject:
		stagetrace.Mark(stagetrace.AckStepped, uint64(m.Index), uint64(m.From))
	}
}

// maxDrainEvents bounds the events one Work may follow (drainEvents), so
// that ticks and Stop are not kept waiting behind a busy queue.
const maxDrainEvents = 64

// drainEvents takes the events already queued on the busiest queues
// (messages, persist and apply reports, proposals) without blocking, so
// that one Work covers them all. Under load this is what batches: one
// Ready, one persister hand-off and one AppendEntries per follower for
// many events, where a Work after each event handed out a Ready apiece.
// An idle member finds nothing queued and pays four channel polls.
func (n *Node) drainEvents(rt *driver.Runtime) error {
	for range maxDrainEvents {
		select {
		case m := <-n.q.recvc:
			if n.admitMessage(&m) {
				n.step(rt, m)
			}
			continue
		default:
		}
		select {
		case id := <-n.q.persistDonec:
			if err := rt.PersistDone(id); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case <-n.q.applyDonec:
			if err := rt.ApplyDone(); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case p := <-n.q.propc:
			n.propose(p)
			continue
		default:
		}
		return nil
	}
	return nil
}

// execute hands out what the runtime asked for, in the order driver.Work
// names. No send blocks: the runtime never has more Readys or apply jobs
// out than the queues hold.
func (n *Node) execute(w driver.Work) {
	for _, ss := range w.SoftStates {
		n.softStateChanged(ss)
	}
	n.releaseReads(w.ReadStates)
	for i := range w.Persist {
		n.space.handedOut(&w.Persist[i])
		n.q.persistc <- w.Persist[i]
	}
	// Send after the hand-off to the persister, so that the peer writers
	// are the goroutines this P woke last, which Go's scheduler runs next;
	// woken first, an AppendEntries waited behind the persister's fsync
	// syscall: 55 µs at p50 on the commit path with one client. The order
	// does not matter for safety: these messages need nothing durable.
	n.send(w.Send)
	if len(w.Persist) > 0 {
		n.updatePeers()
	}
	for _, job := range w.Apply {
		if stagetrace.Enabled && len(job.Entries) > 0 {
			stagetrace.Mark(stagetrace.Committed, uint64(job.Entries[len(job.Entries)-1].Index), 0)
		}
		n.q.applyc <- job
	}
	for _, to := range w.Compact {
		if err := n.cfg.Log.Compact(to); err != nil {
			n.fatal(fmt.Errorf("node: compacting log to %d: %w", to.Index, err))
		}
	}
	for _, res := range w.Snapshots {
		if errors.Is(res.Err, driver.ErrSnapshotInProgress) {
			res.Err = n.mapError(res.Err)
		}
		if ch := n.run.snapWaiters[res.Token]; ch != nil {
			ch <- res
			delete(n.run.snapWaiters, res.Token)
		}
	}
	n.publishLeader()
}

func (n *Node) softStateChanged(ss raft.SoftState) {
	wasLeader := n.run.soft.Role == raft.Leader
	if ss.Lead != n.run.soft.Lead && ss.Lead != pb.None {
		n.counters.leaderChanges.Add(1)
	}
	n.run.soft = ss
	if wasLeader && ss.Role != raft.Leader {
		n.failUncommittedFutures(ErrUnknownOutcome)
	}
	if ss.Role != raft.Leader {
		n.failReads(n.notLeader())
	}
}

// failUncommittedFutures fails the proposals a former leader can no longer
// vouch for, except those whose callers wait for the entry's fate
// (ProposeThroughStepDown): resolve, or register once the index is
// reused, answers them. Those at or below the commit index stay: they are
// committed and will be applied here, and resolve then. A leader that
// removed itself steps down the moment the configuration without it
// commits, often before that entry is applied, and its caller must hear
// that the change happened.
func (n *Node) failUncommittedFutures(err error) {
	committed := n.core.Committed()
	lost := n.takeFutures(func(i pb.Index, p *proposal) bool { return i > committed && !p.throughStepDown })
	for _, p := range lost {
		p.finish(nil, err)
	}
}

// notLeader is the answer of a member that does not lead: the leader it
// knows of, and that leader's client address from the configuration.
func (n *Node) notLeader() error { return n.notLeaderLed(n.core.Lead()) }

func (n *Node) notLeaderLed(lead pb.NodeID) error {
	e := &NotLeaderError{Leader: lead}
	for _, m := range membersOf(n.core.ConfState()) {
		if m.ID == lead {
			e.Addr = m.ClientAddr
		}
	}
	return e
}

// do runs f in the run goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	if !n.life.running.Load() {
		return ErrStopped
	}
	done := make(chan struct{})
	select {
	case n.q.reqc <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.life.stopc:
		return ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-n.life.stopc:
		return ErrStopped
	}
}

// publishStatus copies the core's status for Status callers that cannot
// reach the run goroutine (the node stopped). It runs on every tick and
// role change, not on every event: the leader's status builds a map.
func (n *Node) publishStatus() {
	core := n.core
	if n.run.rt != nil {
		core = n.run.rt.Core()
	}
	st := core.Status()
	n.shared.mu.Lock()
	n.shared.status = st
	n.shared.mu.Unlock()
	n.publishLeader()
}

// publishLeader keeps the cheap accessors (Leader) current; it runs after
// every event.
func (n *Node) publishLeader() {
	core := n.core
	n.pub.lead.Store(uint64(core.Lead()))
	n.pub.term.Store(uint64(core.Term()))
	n.pub.role.Store(int32(core.Role()))
	if rt := n.run.rt; rt != nil {
		n.pub.snapshotting.Store(rt.Snapshotting())
		n.pub.lastSnapBytes.Store(rt.LastSnapshotBytes())
	}
}

func (n *Node) shutdown() {
	n.failFutures(ErrUnknownOutcome)
	n.failReads(ErrStopped)
	n.failWaiters(ErrStopped)
	for tok, ch := range n.run.snapWaiters {
		ch <- driver.SnapshotResult{Token: tok, Err: ErrStopped}
	}
	if n.tr != nil {
		n.tr.Stop()
	}
	close(n.q.persistc)
	close(n.q.applyc)
	n.drainProposals()
	n.life.wg.Done()
	n.life.wg.Wait()
	if err := n.cfg.Log.Close(); err != nil {
		n.log.Warn("closing log", "err", err)
	}
	close(n.life.done)
}

func (n *Node) drainProposals() {
	for {
		select {
		case p := <-n.q.propc:
			p.finish(nil, ErrStopped)
		default:
			return
		}
	}
}
