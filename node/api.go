package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/internal/stagetrace"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Propose replicates cmd and returns the FSM's result once it is applied
// on this member. Errors: *NotLeaderError, ErrBusy, ErrTransferring,
// ErrNoSpace, ErrStopped (none of these applied anything) or
// ErrUnknownOutcome.
func (n *Node) Propose(ctx context.Context, cmd []byte) (any, error) {
	return n.ProposeUntil(ctx, cmd, nil)
}

// ProposeUntil is Propose that also gives up when expired is closed, as
// it would when ctx's deadline passed (the error wraps
// context.DeadlineExceeded). It lets a server share one coarse timer
// among many requests instead of deriving a context with its own timer
// for each; a nil expired never closes.
func (n *Node) ProposeUntil(ctx context.Context, cmd []byte, expired <-chan struct{}) (any, error) {
	return n.propose1(ctx, &proposal{data: cmd, done: make(chan outcome, 1)}, expired)
}

// ProposeThroughStepDown is Propose for a caller that would rather wait
// for the answer than hear ErrUnknownOutcome when this member loses
// leadership before cmd commits, as an etcd member answers: the next
// leader may still commit the entry (it usually holds it), and then it
// applies here and the caller gets its result; when another entry is
// applied at its index instead, it was not applied and the caller gets a
// *NotLeaderError. ErrUnknownOutcome remains the answer when ctx ends,
// the node stops, a snapshot takes the entry's place first, or this
// member, leading again, appends at its index (its log lost the entry,
// another member's may not have). A caller cut off from the cluster
// waits out its context. expired is as for ProposeUntil.
func (n *Node) ProposeThroughStepDown(ctx context.Context, cmd []byte, expired <-chan struct{}) (any, error) {
	return n.propose1(ctx, &proposal{data: cmd, done: make(chan outcome, 1), throughStepDown: true}, expired)
}

func (n *Node) propose1(ctx context.Context, p *proposal, expired <-chan struct{}) (any, error) {
	if err := n.submit(p); err != nil {
		return nil, err
	}
	return n.wait(ctx, p, expired)
}

// ProposeBatch proposes cmds in order, as consecutive entries when the
// core takes them together, and waits for each. out[i] and errs[i] are
// what Propose would have returned for cmds[i]. One call costs one
// hand-off per command but no goroutine per command: it is how a server
// serves many writes that arrived in one request.
func (n *Node) ProposeBatch(ctx context.Context, cmds [][]byte) (out []any, errs []error) {
	out, errs = make([]any, len(cmds)), make([]error, len(cmds))
	ps := make([]*proposal, len(cmds))
	for i, cmd := range cmds {
		ps[i] = &proposal{data: cmd, done: make(chan outcome, 1)}
		if errs[i] = n.submit(ps[i]); errs[i] != nil {
			ps[i] = nil
		}
	}
	for i, p := range ps {
		if p != nil {
			out[i], errs[i] = n.wait(ctx, p, nil)
		}
	}
	return out, errs
}

// submit queues p for the run goroutine without blocking.
func (n *Node) submit(p *proposal) error {
	select {
	case n.q.propc <- p:
		return nil
	case <-n.life.stopc:
		return ErrStopped
	default:
		return ErrBusy
	}
}

// wait returns p's outcome. When ctx ends, expired closes or the node
// stops first, a proposal the run goroutine has not taken is withdrawn (it
// will never apply); one it took may still apply, so the outcome is
// unknown.
func (n *Node) wait(ctx context.Context, p *proposal, expired <-chan struct{}) (any, error) {
	select {
	case o := <-p.done:
		return o.val, o.err
	case <-n.life.stopc:
		select {
		case o := <-p.done:
			return o.val, o.err
		case <-n.life.done:
			select {
			case o := <-p.done:
				return o.val, o.err
			default:
			}
		}
		if p.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
			return nil, ErrStopped
		}
		return nil, ErrUnknownOutcome
	case <-ctx.Done():
		return nil, p.abandon(ctx.Err())
	case <-expired:
		return nil, p.abandon(context.DeadlineExceeded)
	}
}

// abandon ends the caller's wait for p because of cause: withdrawn if the
// run goroutine has not taken it, of unknown outcome if it has.
func (p *proposal) abandon(cause error) error {
	if p.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
		return fmt.Errorf("node: proposal not sent: %w", cause)
	}
	return fmt.Errorf("%w: %w", ErrUnknownOutcome, cause)
}

// propose runs in the run goroutine: it takes p and whatever else is
// queued, up to MaxProposalBatch, and appends them as one batch.
func (n *Node) propose(first *proposal) {
	batch := make([]*proposal, 0, 16)
	take := func(p *proposal) {
		if p.state.CompareAndSwap(proposalWaiting, proposalTaken) {
			batch = append(batch, p)
		}
	}
	take(first)
	for len(batch) < n.cfg.MaxProposalBatch {
		select {
		case p := <-n.q.propc:
			take(p)
			continue
		default:
		}
		break
	}
	batch = n.admitProposals(batch)
	if len(batch) == 0 {
		return
	}
	data := make([][]byte, len(batch))
	for i, p := range batch {
		data[i] = p.data
	}
	idx, term, err := n.run.rt.Propose(data...)
	if err != nil {
		err = n.mapError(err)
		for _, p := range batch {
			p.finish(nil, err)
		}
		return
	}
	for i, p := range batch {
		p.index, p.term = idx+pb.Index(i), term
	}
	n.run.lastProposed = idx + pb.Index(len(batch)-1)
	stagetrace.Mark(stagetrace.Proposed, uint64(n.run.lastProposed), 0)
	n.register(batch...)
}

type readRequest struct {
	done chan error
}

// ReadIndex is a linearizable read barrier (ReadIndex, dissertation §6.4):
// when it returns nil, this member has applied every write that completed
// before it was called, so reading the local state is linearizable.
func (n *Node) ReadIndex(ctx context.Context) error { return n.read(ctx, false) }

// LeaseRead is ReadIndex without the heartbeat round when the leader holds
// a lease; it relies on bounded clock drift.
func (n *Node) LeaseRead(ctx context.Context) error { return n.read(ctx, true) }

func (n *Node) read(ctx context.Context, lease bool) error {
	req := &readRequest{done: make(chan error, 1)}
	var id uint64
	err := n.do(ctx, func() {
		if len(n.run.pendingRead) >= MaxPendingReads {
			req.done <- ErrBusy
			return
		}
		n.run.nextReadID++
		id = n.run.nextReadID
		rctx := binary.BigEndian.AppendUint64(nil, id)
		var err error
		if lease {
			err = n.run.rt.LeaseRead(rctx, time.Now())
		} else {
			err = n.run.rt.ReadIndex(rctx)
		}
		if err != nil {
			req.done <- n.mapError(err)
			return
		}
		n.run.pendingRead[id] = req
	})
	if err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		n.rep.abandonRead(id)
		return ctx.Err()
	case <-n.life.stopc:
		return ErrStopped
	}
}

// releaseReads answers each released read once its index is applied (the
// applier answers it then).
func (n *Node) releaseReads(rss []raft.ReadState) {
	for _, rs := range rss {
		if len(rs.Context) != 8 {
			continue
		}
		id := binary.BigEndian.Uint64(rs.Context)
		req := n.run.pendingRead[id]
		if req == nil {
			continue
		}
		delete(n.run.pendingRead, id)
		n.whenApplied(rs.Index, req.done)
	}
}

func (n *Node) failReads(err error) {
	for id, req := range n.run.pendingRead {
		req.done <- err
		delete(n.run.pendingRead, id)
	}
}

// TransferLeadership hands leadership to member to and waits until it
// leads (or ctx ends).
func (n *Node) TransferLeadership(ctx context.Context, to pb.NodeID) error {
	var err error
	if e := n.do(ctx, func() {
		if cs := n.core.ConfState(); n.core.Role() == raft.Leader && !cs.IsVoter(to) {
			err = fmt.Errorf("%w: %d", ErrUnknownMember, to)
			if cs.Contains(to) {
				err = fmt.Errorf("%w: %d is a learner", ErrNotVoter, to)
			}
			return
		}
		err = n.mapError(n.run.rt.TransferLeader(to))
	}); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	for {
		if st := n.Status(); st.Lead == to {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.life.stopc:
			return ErrStopped
		case <-time.After(n.cfg.TickInterval / 2):
		}
	}
}

// Status is the member's state as last published by the run goroutine.
type Status struct {
	raft.Status
	Applied       pb.Index
	SnapshotIndex pb.Index
	Members       []Member
}

// Leader returns the known leader, the term and this member's role without
// copying the full status.
func (n *Node) Leader() (lead pb.NodeID, term pb.Term, role raft.Role) {
	return pb.NodeID(n.pub.lead.Load()), pb.Term(n.pub.term.Load()), raft.Role(n.pub.role.Load())
}

// Member returns member id as the configuration in force lists it,
// without a trip to the run goroutine (unlike Status): for hot paths that
// need one member's addresses.
func (n *Node) Member(id pb.NodeID) (Member, bool) {
	n.shared.mu.Lock()
	defer n.shared.mu.Unlock()
	for _, m := range n.shared.members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// WaitApplied returns nil once this member has applied index, or ctx's
// error, or ErrStopped.
func (n *Node) WaitApplied(ctx context.Context, index pb.Index) error {
	if pb.Index(n.pub.applied.Load()) >= index {
		return nil
	}
	done := make(chan error, 1)
	n.whenApplied(index, done)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.life.stopc:
		return ErrStopped
	}
}

// ClusterID returns the cluster id in force: configured, derived at
// bootstrap, or learned from the leader when joining (0 until then).
func (n *Node) ClusterID() uint64 {
	if n.tr != nil {
		return n.tr.ClusterID()
	}
	return n.cfg.ClusterID
}

// Status returns the member's current state, read from the run goroutine
// (or, once the node has stopped, as it was last published). Use Leader
// on hot paths: Status is a round trip and copies the member list.
func (n *Node) Status() Status {
	var core raft.Status
	if n.do(context.Background(), func() { core = n.core.Status() }) != nil {
		n.shared.mu.Lock()
		core = n.shared.status
		n.shared.mu.Unlock()
	}
	n.shared.mu.Lock()
	st := Status{Status: core, Members: slices.Clone(n.shared.members)}
	n.shared.mu.Unlock()
	st.Applied = pb.Index(n.pub.applied.Load())
	if m, ok := n.cfg.Snapshots.Latest(); ok {
		st.SnapshotIndex = m.Index
	}
	return st
}

// AddLearner adds a non-voting member that receives the log.
func (n *Node) AddLearner(ctx context.Context, m Member) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		if m.ID == pb.None {
			return confchange.Target{}, meta, fmt.Errorf("%w: member id 0", ErrInvalidChange)
		}
		t, err := confchange.AddLearner(cur, m.ID)
		m.Voter = false
		return t, meta.with(m), err
	})
}

// Promote makes a caught-up learner a voter.
func (n *Node) Promote(ctx context.Context, id pb.NodeID) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		if !cur.Contains(id) {
			return confchange.Target{}, meta, ErrUnknownMember
		}
		t, err := confchange.AddVoter(cur, id)
		return t, meta, err
	})
}

// RemoveMember removes a member (voter or learner).
func (n *Node) RemoveMember(ctx context.Context, id pb.NodeID) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		if !cur.Contains(id) {
			return confchange.Target{}, meta, ErrUnknownMember
		}
		t, err := confchange.Remove(cur, id)
		return t, meta, err
	})
}

// ChangeVoters moves to exactly this voter set in one joint-consensus
// change. Every id must already be a member; learners named are promoted,
// voters left out are removed.
func (n *Node) ChangeVoters(ctx context.Context, voters []pb.NodeID) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		if len(voters) == 0 {
			return confchange.Target{}, meta, fmt.Errorf("%w: empty voter set", ErrInvalidChange)
		}
		for _, id := range voters {
			if !cur.Contains(id) {
				return confchange.Target{}, meta, fmt.Errorf("%w: %d", ErrUnknownMember, id)
			}
		}
		return confchange.SetVoters(cur, voters), meta, nil
	})
}

// SetClientAddr publishes a member's client address in the configuration.
func (n *Node) SetClientAddr(ctx context.Context, id pb.NodeID, addr string) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		m, _ := meta.find(id)
		m.ID, m.ClientAddr = id, addr
		return confchange.Target{Voters: cur.Voters, Learners: cur.Learners}, meta.with(m), nil
	})
}

// SetEtcdAddr publishes a member's etcd v3 gRPC address in the
// configuration, so that the others can forward to it while it leads.
func (n *Node) SetEtcdAddr(ctx context.Context, id pb.NodeID, addr string) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		m, _ := meta.find(id)
		m.ID, m.EtcdAddr = id, addr
		return confchange.Target{Voters: cur.Voters, Learners: cur.Learners}, meta.with(m), nil
	})
}

// SetPeerAddr changes the peer address of a member in the
// configuration: once the change applies, every member's transport dials
// the new address (the member itself must be listening there by then, or
// be restarted to). An address another member has is refused.
func (n *Node) SetPeerAddr(ctx context.Context, id pb.NodeID, addr string) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		if !cur.Contains(id) {
			return confchange.Target{}, meta, ErrUnknownMember
		}
		if addr == "" {
			return confchange.Target{}, meta, fmt.Errorf("%w: empty peer address", ErrInvalidChange)
		}
		for _, o := range meta.Members {
			if o.ID != id && o.PeerAddr == addr {
				return confchange.Target{}, meta, fmt.Errorf("%w: peer address %s is member %d's", ErrInvalidChange, addr, o.ID)
			}
		}
		m, _ := meta.find(id)
		m.ID, m.PeerAddr = id, addr
		return confchange.Target{Voters: cur.Voters, Learners: cur.Learners}, meta.with(m), nil
	})
}

type confPlan func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error)

// changeConf proposes a configuration change and waits until it has
// completed: applied, and for a joint change, left again.
func (n *Node) changeConf(ctx context.Context, plan confPlan) error {
	p := &proposal{done: make(chan outcome, 1)}
	p.state.Store(proposalTaken)
	var err error
	derr := n.do(ctx, func() {
		cur := n.core.ConfState()
		meta, merr := decodeMeta(cur.Context)
		if merr != nil {
			err = merr
			return
		}
		t, nmeta, perr := plan(cur, meta)
		if perr != nil {
			err = n.mapError(perr)
			return
		}
		t.Context = pruneMeta(nmeta, cur, t).encode()
		idx, term, perr := n.run.rt.ProposeConfChange(t)
		if perr != nil {
			err = n.mapError(perr)
			return
		}
		p.index, p.term = idx, term
		n.register(p)
	})
	if derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	select {
	case o := <-p.done:
		if o.err != nil {
			return o.err
		}
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-n.life.stopc:
		return ErrUnknownOutcome
	}
	// Wait for the joint configuration to be left.
	for {
		if cs := n.pub.appliedConf.Load(); cs != nil && !cs.Joint() && pb.Index(n.pub.appliedConfI.Load()) >= p.index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
		case <-n.life.stopc:
			return ErrUnknownOutcome
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pruneMeta keeps the addresses of members of the current or next
// configuration only.
func pruneMeta(meta clusterMeta, cur pb.ConfState, t confchange.Target) clusterMeta {
	out := clusterMeta{ClusterID: meta.ClusterID}
	for _, m := range meta.Members {
		if cur.Contains(m.ID) || slices.Contains(t.Voters, m.ID) || slices.Contains(t.Learners, m.ID) {
			out.Members = append(out.Members, m)
		}
	}
	return out
}

// Snapshot takes a snapshot of the applied state now, waits until it is
// durable, and returns its index.
func (n *Node) Snapshot(ctx context.Context) (pb.Index, error) {
	res := make(chan driver.SnapshotResult, 1)
	err := n.do(ctx, func() {
		n.run.nextSnapTok++
		n.run.snapWaiters[n.run.nextSnapTok] = res
		n.run.rt.RequestSnapshot(n.run.nextSnapTok)
	})
	if err != nil {
		return 0, err
	}
	select {
	case r := <-res:
		return r.Index, r.Err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.life.stopc:
		return 0, ErrStopped
	}
}
