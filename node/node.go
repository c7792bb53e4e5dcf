package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/transport"
)

// Node is a running Raft member: it owns a core, persists and sends what
// the core asks, applies committed entries to the FSM, and serves the
// embedding API. See doc.go for its goroutines.
type Node struct {
	cfg  Config
	log  *slog.Logger
	core *raft.Raft // owned by the run goroutine
	tr   *transport.Transport

	propc    chan *proposal
	recvc    chan pb.Message
	reqc     chan func()
	persistc chan raft.Ready
	advc     chan uint64
	applyc   chan applyTask
	snapc    chan snapshotTask
	snapReqc chan snapRequest

	stopOnce sync.Once
	stopc    chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	fatalErr atomic.Pointer[error]

	// Run-goroutine state.
	inflight    []raft.Ready
	lastTick    time.Time
	nextReadID  uint64
	pendingRead map[uint64]*readRequest
	conf        pb.ConfState // as last given to the transport
	confSeen    bool
	soft        raft.SoftState
	stallSince  time.Time
	// leaseBlockedUntil: no lease reads before this time (see tick).
	leaseBlockedUntil time.Time

	// Shared with the applier and API callers, under mu.
	mu        sync.Mutex
	futures   map[pb.Index]*proposal
	waiters   []appliedWaiter
	status    raft.Status
	members   []Member
	persistAt atomic.Int64 // unix nanos when the current persist began; 0 if idle

	applied      atomic.Uint64
	running      atomic.Bool // Start was called
	lead, term   atomic.Uint64
	role         atomic.Int32
	snapshotting atomic.Bool
	lastSnap     pb.SnapshotMeta // applier-owned
	// sinceSnapBytes is the entry data applied since lastSnap (applier-
	// owned); lastSnapBytes the size of the last snapshot written.
	sinceSnapBytes uint64
	lastSnapBytes  atomic.Uint64
	snapsBehind    []pb.SnapshotMeta // applier-owned; see driver.CompactPoint
	lastApplied    pb.Entry          // applier-owned; index and term only
	appliedConf    atomic.Pointer[pb.ConfState]
	appliedConfI   atomic.Uint64

	counters counters  // see observe.go
	space    spaceGate // see space.go
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
		propc:       make(chan *proposal, cfg.ProposalQueueLen),
		recvc:       make(chan pb.Message, DefaultRecvQueueLen),
		reqc:        make(chan func(), 64),
		persistc:    make(chan raft.Ready, cfg.MaxOutstandingReadys),
		advc:        make(chan uint64, cfg.MaxOutstandingReadys),
		applyc:      make(chan applyTask, cfg.ApplyQueueLen),
		snapc:       make(chan snapshotTask, 1),
		snapReqc:    make(chan snapRequest),
		stopc:       make(chan struct{}),
		done:        make(chan struct{}),
		pendingRead: map[uint64]*readRequest{},
		futures:     map[pb.Index]*proposal{},
	}
	n.space.log = spaceOf(cfg.Log)
	applied, err := n.recover()
	if err != nil {
		return nil, err
	}
	core, err := raft.New(raft.Config{
		ID: cfg.ID, Storage: storageView{n}, Applied: applied,
		ElectionTicks:       int(cfg.ElectionTimeout / cfg.TickInterval),
		HeartbeatTicks:      1,
		Seed:                cfg.Seed,
		MaxUncommittedBytes: cfg.MaxUncommittedBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.core = core
	n.applied.Store(uint64(applied))
	n.publishStatus()
	return n, nil
}

// recover restores the FSM from the newest snapshot and bootstraps an empty
// log. It returns the applied index.
func (n *Node) recover() (pb.Index, error) {
	meta, ok := n.cfg.Snapshots.Latest()
	if ok {
		if err := n.restoreSnapshot(meta); err != nil {
			return 0, err
		}
		// A snapshot received from a leader may be durable while the log
		// record that installs it was lost in a crash: install it now.
		if t, err := n.cfg.Log.Term(meta.Index); err != nil || t != meta.Term {
			hs, _, err := n.cfg.Log.InitialState()
			if err != nil {
				return 0, err
			}
			hs.Commit = max(hs.Commit, meta.Index)
			hs.Term = max(hs.Term, meta.Term)
			if err := n.cfg.Log.Save(hs, &meta, nil); err != nil {
				return 0, fmt.Errorf("node: installing snapshot %d in the log: %w", meta.Index, err)
			}
			if err := n.cfg.Log.Sync(); err != nil {
				return 0, fmt.Errorf("node: installing snapshot %d in the log: %w", meta.Index, err)
			}
		}
		n.lastSnap = meta
		n.snapsBehind = []pb.SnapshotMeta{meta}
		n.lastApplied = pb.Entry{Index: meta.Index, Term: meta.Term}
	}
	if n.cfg.Log.LastIndex() == 0 && !ok {
		if err := n.bootstrap(); err != nil {
			return 0, err
		}
	}
	return meta.Index, nil
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
	if n.cfg.PeerListener != nil {
		advertise := n.cfg.Self.PeerAddr
		if advertise == "" {
			advertise = n.cfg.PeerListener.Addr().String()
		}
		tr, err := transport.New(transport.Config{
			ID: n.cfg.ID, ClusterID: n.cfg.ClusterID, Listener: n.cfg.PeerListener,
			TLS: n.cfg.TLS, Handler: handler{n}, Logger: n.log,
			AdvertiseAddr: advertise,
			// A joining member knows nobody until the leader reaches it.
			AcceptUnknown: !n.core.ConfState().Contains(n.cfg.ID),
			OnClusterID:   n.cfg.OnClusterID,
			Peers:         n.peerAddrs(),
		})
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.tr = tr
		n.updatePeers()
	}
	n.lastTick = time.Now()
	n.running.Store(true)
	n.wg.Add(4)
	go n.run()
	go n.persistLoop()
	go n.applyLoop()
	go n.snapshotLoop()
	return nil
}

// Stop stops the node and closes its Log. Pending proposals end with ErrStopped (not yet
// appended) or ErrUnknownOutcome (appended); pending reads fail.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.done
}

// Done is closed when the node has stopped, by Stop or by a fatal error.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns the fatal error that stopped the node, if any.
func (n *Node) Err() error {
	if p := n.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fatal stops the node after an error that leaves its state in doubt: a
// failed write or fsync, a state machine that cannot restore.
func (n *Node) fatal(err error) {
	if n.fatalErr.CompareAndSwap(nil, &err) {
		n.log.Error("fatal error, stopping", "err", err)
	}
	n.stopOnce.Do(func() { close(n.stopc) })
}

func (n *Node) stopped() bool {
	select {
	case <-n.stopc:
		return true
	default:
		return false
	}
}

// run owns the core.
func (n *Node) run() {
	defer n.shutdown()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		n.produceReadys()
		select {
		case <-ticker.C:
			n.tick()
		case m := <-n.recvc:
			n.step(m)
		case p := <-n.propc:
			n.propose(p)
		case f := <-n.reqc:
			f()
		case id := <-n.advc:
			n.advance(id)
		case <-n.stopc:
			return
		}
	}
}

// produceReadys hands out Readys while the persister has room. When it
// has none (the fsync is slow or stalled), the messages that need no
// persistence still leave: heartbeats and their answers must keep flowing,
// or a slow disk would pass for a dead server and cost an election.
func (n *Node) produceReadys() {
	for n.core.HasReady() && len(n.inflight) < n.cfg.MaxOutstandingReadys {
		rd := n.core.Ready()
		if rd.SoftState != nil {
			n.softStateChanged(*rd.SoftState)
		}
		n.releaseReads(rd.ReadStates)
		n.inflight = append(n.inflight, rd)
		n.space.handedOut(&rd)
		n.persistc <- rd
		// Send after the hand-off to the persister, so that the peer
		// writers are the goroutines this P woke last, which Go's
		// scheduler runs next; woken first, an AppendEntries waited behind
		// the persister's fsync syscall: 55 µs at p50 on the commit path
		// with one client. The order does not matter for safety: these
		// messages need nothing durable.
		n.send(rd.Messages)
		n.updatePeers()
	}
	if len(n.inflight) >= n.cfg.MaxOutstandingReadys {
		n.send(n.core.TakeMessages())
	}
	n.publishLeader()
}

func (n *Node) advance(id uint64) {
	if len(n.inflight) == 0 || n.inflight[0].ID != id {
		n.fatal(fmt.Errorf("node: persisted Ready %d out of order", id))
		return
	}
	rd := n.inflight[0]
	n.inflight = n.inflight[1:]
	if err := n.core.Advance(rd); err != nil {
		n.fatal(fmt.Errorf("node: %w", err))
	}
}

// tick advances the core by one tick. Missed ticks are not replayed: a
// burst of ticks with no messages processed in between would make a
// leader fail CheckQuorum and followers campaign after a mere scheduling
// delay. A gap (the process was paused, SIGSTOP or a long GC) instead
// blocks lease reads for one election timeout, because the core's lease is
// counted in ticks and no ticks passed while the world moved on.
func (n *Node) tick() {
	now := time.Now()
	if now.Sub(n.lastTick) > 2*n.cfg.TickInterval {
		n.leaseBlockedUntil = now.Add(n.cfg.ElectionTimeout)
	}
	n.lastTick = now
	if err := n.core.Tick(); err != nil {
		// The core could not read its log (raft.ErrStorageFailed) and has
		// stopped; so must the node.
		n.fatal(fmt.Errorf("node: %w", err))
		return
	}
	n.checkDiskStall(now)
	n.spaceTick(now)
	n.publishStatus()
}

// leaseTrusted reports whether the tick clock has run without a gap long
// enough for a lease read to rely on it.
func (n *Node) leaseTrusted() bool {
	now := time.Now()
	if now.Sub(n.lastTick) > 2*n.cfg.TickInterval {
		n.leaseBlockedUntil = now.Add(n.cfg.ElectionTimeout)
	}
	return now.After(n.leaseBlockedUntil)
}

// checkDiskStall hands leadership away when the leader's own fsync has been
// stuck for longer than an election timeout: a leader that cannot persist
// cannot commit, and followers would otherwise wait for it forever.
func (n *Node) checkDiskStall(now time.Time) {
	began := n.persistAt.Load()
	if n.soft.Role != raft.Leader || began == 0 || now.Sub(time.Unix(0, began)) < n.cfg.ElectionTimeout {
		n.stallSince = time.Time{}
		return
	}
	if n.stallSince.IsZero() {
		n.stallSince = now
		st := n.core.Status()
		var best pb.NodeID
		var bestMatch pb.Index
		for id, pr := range st.Progress {
			if id != n.cfg.ID && !pr.Learner && st.Conf.IsVoter(id) && pr.Match >= bestMatch {
				best, bestMatch = id, pr.Match
			}
		}
		n.log.Warn("disk stalled, handing over leadership", "to", uint64(best))
		if best != pb.None {
			_ = n.core.TransferLeader(best)
		}
		return
	}
	if now.Sub(n.stallSince) >= n.cfg.ElectionTimeout {
		n.log.Warn("disk still stalled, stepping down")
		n.core.StepDown()
	}
}

func (n *Node) step(m pb.Message) {
	if !n.admitMessage(&m) {
		return
	}
	if err := n.core.Step(m); err != nil {
		n.log.Debug("dropped message", "msg", m.String(), "err", err)
	}
}

func (n *Node) softStateChanged(ss raft.SoftState) {
	wasLeader := n.soft.Role == raft.Leader
	if ss.Lead != n.soft.Lead && ss.Lead != pb.None {
		n.counters.leaderChanges.Add(1)
	}
	n.soft = ss
	n.log.Info("role changed", "role", ss.Role.String(), "leader", uint64(ss.Lead), "term", uint64(n.core.Term()))
	if wasLeader && ss.Role != raft.Leader {
		n.failUncommittedFutures(ErrUnknownOutcome)
	}
	if ss.Role != raft.Leader {
		n.failReads(n.notLeader())
	}
}

// failUncommittedFutures fails the proposals a former leader can no longer
// vouch for. Those at or below the commit index stay: they are committed
// and will be applied here, and resolve then. A leader that removed itself
// steps down the moment the configuration without it commits, often before
// that entry is applied, and its caller must hear that the change happened.
func (n *Node) failUncommittedFutures(err error) {
	committed := n.core.Committed()
	var lost []*proposal
	n.mu.Lock()
	for i, p := range n.futures {
		if i > committed {
			lost = append(lost, p)
			delete(n.futures, i)
		}
	}
	n.mu.Unlock()
	for _, p := range lost {
		p.finish(nil, err)
	}
}

func (n *Node) notLeader() error {
	lead := n.core.Lead()
	e := &NotLeaderError{Leader: lead}
	for _, m := range membersOf(n.core.ConfState()) {
		if m.ID == lead {
			e.Addr = m.ClientAddr
		}
	}
	return e
}

// send routes messages: snapshots are streamed from the snapshot store,
// everything else goes to the peer queues.
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
			n.report(func() { n.core.ReportSnapshot(m.To, false) })
			continue
		}
		n.tr.SendSnapshot(m, rc)
	}
	if len(plain) > 0 {
		n.tr.Send(plain)
	}
}

// report runs f in the run goroutine without blocking the caller.
func (n *Node) report(f func()) {
	select {
	case n.reqc <- f:
	default:
		go func() {
			select {
			case n.reqc <- f:
			case <-n.stopc:
			}
		}()
	}
}

// do runs f in the run goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	if !n.running.Load() {
		return ErrStopped
	}
	done := make(chan struct{})
	select {
	case n.reqc <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-n.stopc:
		return ErrStopped
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

// updatePeers keeps the transport's peer table in step with the
// configuration in force.
func (n *Node) updatePeers() {
	cs := n.core.ConfState()
	if n.confSeen && cs.Equal(n.conf) && string(cs.Context) == string(n.conf.Context) {
		return
	}
	n.conf, n.confSeen = cs, true
	ms := membersOf(cs)
	n.mu.Lock()
	n.members = ms
	n.mu.Unlock()
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

// publishStatus copies the core's status for Status callers that cannot
// reach the run goroutine (the node stopped). It runs on every tick and
// role change, not on every event: the leader's status builds a map.
func (n *Node) publishStatus() {
	st := n.core.Status()
	n.mu.Lock()
	n.status = st
	n.mu.Unlock()
	n.publishLeader()
}

// publishLeader keeps the cheap accessors (Leader) current; it runs after
// every event.
func (n *Node) publishLeader() {
	n.lead.Store(uint64(n.core.Lead()))
	n.term.Store(uint64(n.core.Term()))
	n.role.Store(int32(n.core.Role()))
}

func (n *Node) shutdown() {
	n.failFutures(ErrUnknownOutcome)
	n.failReads(ErrStopped)
	if n.tr != nil {
		n.tr.Stop()
	}
	close(n.persistc)
	n.drainProposals()
	n.wg.Done()
	n.wg.Wait()
	if err := n.cfg.Log.Close(); err != nil {
		n.log.Warn("closing log", "err", err)
	}
	close(n.done)
}

func (n *Node) drainProposals() {
	for {
		select {
		case p := <-n.propc:
			p.finish(nil, ErrStopped)
		default:
			return
		}
	}
}

// handler adapts the transport's callbacks to the node.
type handler struct{ n *Node }

func (h handler) HandleMessage(m pb.Message) {
	select {
	case h.n.recvc <- m:
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
	case h.n.recvc <- m:
	case <-h.n.stopc:
	}
	return nil
}

func (h handler) ReportUnreachable(id pb.NodeID) {
	h.n.report(func() { h.n.core.ReportUnreachable(id) })
}

func (h handler) ReportSnapshot(id pb.NodeID, ok bool) {
	if ok {
		h.n.counters.snapsSent.Add(1)
	} else {
		h.n.counters.snapsFailed.Add(1)
	}
	h.n.report(func() { h.n.core.ReportSnapshot(id, ok) })
}
