package raft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Propose appends commands to the leader's log as one batch and returns the
// index of the first and the leader's term: the command at first+i is
// committed exactly when an entry with this term is applied at that index.
func (r *Raft) Propose(data ...[]byte) (pb.Index, pb.Term, error) {
	if err := r.checkProposal(); err != nil {
		return 0, 0, err
	}
	if len(data) == 0 {
		return 0, 0, nil
	}
	var size uint64
	// The log copies the entries, so one buffer serves every proposal.
	ents := r.proposeBuf[:0]
	for i := range data {
		ents = append(ents, pb.Entry{Data: data[i]})
		size += ents[i].Size()
	}
	defer func() {
		clear(ents) // keep no payload alive
		r.proposeBuf = ents[:0]
	}()
	if !r.uncommitted.admit(size, r.cfg.MaxUncommittedBytes) {
		return 0, 0, ErrProposalDropped
	}
	first := r.appendLocal(ents)
	return first, r.term, nil
}

func (r *Raft) checkProposal() error {
	if r.log.err != nil {
		return r.log.err
	}
	if r.role != Leader {
		return &NotLeaderError{Leader: r.lead}
	}
	if r.leadTransferee != pb.None {
		return ErrTransferring
	}
	return nil
}

// appendLocal appends entries of the leader's term and returns the index of
// the first. Its own progress advances when the entries are durable
// (Advance): the leader counts itself only after its fsync (§10.2.1).
func (r *Raft) appendLocal(ents []pb.Entry) pb.Index {
	first := r.log.lastIndex() + 1
	var size uint64
	for i := range ents {
		ents[i].Term = r.term
		ents[i].Index = first + pb.Index(i)
		size += ents[i].Size()
	}
	last := r.appendToLog(ents)
	r.uncommitted.push(last, size)
	if pr := r.trk.Progress[r.id]; pr != nil {
		pr.Next = last + 1
	}
	r.appendPending = true
	return first
}

// flushAppends sends the entries that accumulated since the last Ready,
// one message per follower where the window allows; each carries the
// commit index. A new commit index alone waits (see SendCommit).
func (r *Raft) flushAppends() {
	if !r.appendPending || r.role != Leader {
		return
	}
	r.appendPending = false
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		if id == r.id {
			return
		}
		for r.sendAppend(id, false) {
			if pr.State != tracker.StateReplicate {
				break
			}
		}
	})
}

// A commit index that no entry carries to a follower is not sent at once:
// the next AppendEntries carries it, and under load one soon follows. A
// message of its own would cost each follower a wake-up, a step, a write
// and an answer per commit, just when the leader answers its client; with
// one client writing, that doubled the messages per write. The runtime
// calls SendCommit a moment after the commit index moves (node: one
// millisecond), and the leader sends it on every tick too, so while no
// entries flow a follower learns a commit that much later than at once.

// CommitUnsent reports whether a follower has not been sent the commit
// index though it could be now: the runtime's cue to call SendCommit soon.
func (r *Raft) CommitUnsent() bool {
	if r.role != Leader {
		return false
	}
	unsent := false
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		unsent = unsent || (id != r.id && r.commitUnsent(pr))
	})
	return unsent
}

// SendCommit sends the commit index, in an AppendEntries without entries,
// to each follower that has not been sent it.
func (r *Raft) SendCommit() {
	if r.role != Leader {
		return
	}
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		if id != r.id && r.commitUnsent(pr) {
			r.sendAppend(id, true)
		}
	})
}

// commitUnsent: the follower holds the last commit index it was sent (so
// a newer one means something to it) and may be sent a message now.
func (r *Raft) commitUnsent(pr *tracker.Progress) bool {
	return pr.SentCommit < r.log.committed && pr.Match >= pr.SentCommit && !pr.IsPaused()
}

// sendAppend sends the next AppendEntries (or InstallSnapshot) to a
// follower. It reports whether a message was sent.
func (r *Raft) sendAppend(to pb.NodeID, sendIfEmpty bool) bool {
	pr := r.trk.Progress[to]
	if pr == nil || pr.IsPaused() {
		return false
	}
	prev := pr.Next - 1
	prevTerm, errT := r.log.term(prev)
	var ents []pb.Entry
	var errE error
	if pr.Next <= r.log.lastIndex() {
		ents, errE = r.log.slice(pr.Next, r.log.lastIndex()+1, r.cfg.MaxMsgBytes)
	}
	if errors.Is(errT, ErrCompacted) || errors.Is(errE, ErrCompacted) {
		return r.sendSnapshot(to, pr)
	}
	if errT != nil || errE != nil {
		if r.log.err != nil {
			return false // storage failed: the core has stopped (Err)
		}
		panic(fmt.Sprintf("raft: reading log for %d at %d: term %v, entries %v", to, pr.Next, errT, errE))
	}
	// A probe is worth sending even without new entries while the
	// follower's match is unknown: a member added with an empty log would
	// otherwise hear only heartbeats until the next proposal.
	probing := pr.State == tracker.StateProbe && pr.Match < r.log.lastIndex()
	if len(ents) == 0 && !sendIfEmpty && !probing {
		return false
	}
	var bytes uint64
	for i := range ents {
		bytes += ents[i].Size()
	}
	r.send(pb.Message{To: to, Type: pb.MsgAppendEntries, Index: prev, LogTerm: prevTerm,
		Entries: ents, Commit: r.log.committed})
	pr.SentEntries(prev+pb.Index(len(ents)), len(ents), bytes)
	pr.SentCommit = r.log.committed
	return true
}

// sendEmptyAppend sends an AppendEntries without entries at the follower's
// Next-1, whatever the inflight window; it adds nothing to the window.
func (r *Raft) sendEmptyAppend(to pb.NodeID, pr *tracker.Progress) {
	prev := pr.Next - 1
	prevTerm, err := r.log.term(prev)
	if err != nil {
		return // compacted: the follower will need a snapshot, sent on the normal path
	}
	r.send(pb.Message{To: to, Type: pb.MsgAppendEntries, Index: prev, LogTerm: prevTerm, Commit: r.log.committed})
	pr.SentCommit = max(pr.SentCommit, r.log.committed)
}

// sendSnapshot sends InstallSnapshot to a follower that needs entries the
// leader has already compacted away (§7, Figure 13).
func (r *Raft) sendSnapshot(to pb.NodeID, pr *tracker.Progress) bool {
	if !pr.RecentActive {
		return false // no point streaming a snapshot to a server that is down
	}
	snap, err := r.log.storage.Snapshot()
	if err != nil || snap.IsEmpty() {
		return false // not available yet; retried on the next heartbeat
	}
	pr.BecomeSnapshot(snap.Index)
	r.send(pb.Message{To: to, Type: pb.MsgInstallSnapshot, Snapshot: &snap})
	return true
}

// bcastHeartbeat sends every follower a heartbeat: the leader's periodic
// assertion of authority that keeps followers from starting elections
// (§5.2). The heartbeats form a numbered round whose answers confirm reads
// and back the lease (read.go); it returns the round's number.
func (r *Raft) bcastHeartbeat() uint64 {
	seq := r.reads.newRound(r.ticks, r.leaseTicks())
	ctx := binary.BigEndian.AppendUint64(nil, seq)
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		if id == r.id {
			return
		}
		// Never tell a follower to commit past what it is known to hold.
		commit := min(pr.Match, r.log.committed)
		r.send(pb.Message{To: id, Type: pb.MsgHeartbeat, Commit: commit, Context: ctx})
		pr.SentCommit = max(pr.SentCommit, commit)
	})
	return seq
}

func (r *Raft) stepLeader(m pb.Message) {
	pr := r.trk.Progress[m.From]
	switch m.Type {
	case pb.MsgAppendEntriesResp:
		if pr != nil {
			r.handleAppendResponse(m, pr)
		}
	case pb.MsgHeartbeatResp:
		if pr != nil {
			r.handleHeartbeatResponse(m, pr)
		}
	case pb.MsgReadIndex:
		if pr != nil {
			r.leaderReadIndex(readRequest{ctx: m.Context, from: m.From})
		}
	case pb.MsgTransferLeader:
		if pr != nil {
			_ = r.leaderTransfer(pb.NodeID(m.Index))
		}
	}
}

func (r *Raft) markActive(pr *tracker.Progress) {
	pr.RecentActive = true
}

// handleAppendResponse is the leader's side of an AppendEntries answer
// (Figure 2, "Rules for Servers: Leaders"): on success advance matchIndex
// and nextIndex and try to commit; on a log mismatch move nextIndex back
// and retry (§5.3), a whole term at a time thanks to the follower's hint.
func (r *Raft) handleAppendResponse(m pb.Message, pr *tracker.Progress) {
	r.markActive(pr)
	if m.Index > r.log.lastIndex() {
		// A leader never sends past its last index, and within its term its
		// log only grows: no correct follower acknowledges or rejects more.
		// Taking it would set Match or Next past the log (and commit or read
		// entries that do not exist).
		return
	}
	if m.Reject {
		if m.Index == 0 {
			return // a newer term was announced, handled by stepTerm
		}
		// Skip back a whole term: the follower's hint is where its log may
		// match; the leader's own log narrows it further.
		next := m.Hint
		if m.HintTerm > 0 {
			next, _ = r.log.findConflictByTerm(m.Hint, m.HintTerm)
		}
		if pr.MaybeDecrTo(m.Index, next) {
			r.sendAppend(m.From, true)
		}
		return
	}
	if !pr.MaybeUpdate(m.Index) {
		return
	}
	switch pr.State {
	case tracker.StateProbe:
		pr.BecomeReplicate()
	case tracker.StateSnapshot:
		if pr.Match+1 >= r.log.firstIndex() {
			pr.BecomeReplicate()
		}
	case tracker.StateReplicate:
		pr.Inflights.FreeLE(m.Index)
	}
	if r.maybeCommit() {
		r.appendPending = true
	}
	if r.role != Leader {
		return // committing a configuration without us made us step down
	}
	if m.From == r.leadTransferee && pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(m.From)
	}
	for r.sendAppend(m.From, false) {
		if pr.State != tracker.StateReplicate {
			break
		}
	}
}

func (r *Raft) handleHeartbeatResponse(m pb.Message, pr *tracker.Progress) {
	r.markActive(pr)
	pr.ProbeSent = false
	if pr.Match < r.log.lastIndex() && !r.sendAppend(m.From, false) && pr.State == tracker.StateReplicate {
		// Nothing new to send, yet the follower has not acknowledged all
		// that was sent: an AppendEntries may have been lost, and nothing
		// else would ever resend it. An empty one at Next-1 makes the
		// follower reject it if so, and the rejection falls back to probing.
		r.sendEmptyAppend(m.From, pr)
	}
	if len(m.Context) > 0 {
		r.readAck(m.From, m.Context)
	}
}

// maybeCommit commits the highest index held by a quorum, but only if that
// entry is of the current term: entries of earlier terms commit only
// indirectly (§5.4.2, Figure 8).
func (r *Raft) maybeCommit() bool {
	mci := r.trk.Committed()
	if mci <= r.log.committed || (r.log.termOrZero(mci) != r.term && !mutated(MutationCommitOlderTerm)) {
		return false
	}
	r.log.commitTo(mci)
	r.afterCommit()
	return true
}

// afterCommit does what a higher commit index enables.
func (r *Raft) afterCommit() {
	r.uncommitted.release(r.log.committed)
	r.commitConfs()
}

// uncommittedQueue tracks the leader's uncommitted payload by batch, so the
// bound is enforced without reading entries back.
type uncommittedQueue struct {
	batches []uncommittedBatch
	head    int
	total   uint64
}

type uncommittedBatch struct {
	last  pb.Index
	bytes uint64
}

// admit reports whether size more bytes fit; a lone batch always fits, so
// a large entry cannot be refused forever.
func (q *uncommittedQueue) admit(size, limit uint64) bool {
	return q.total == 0 || q.total+size <= limit
}

func (q *uncommittedQueue) push(last pb.Index, size uint64) {
	q.batches = append(q.batches, uncommittedBatch{last: last, bytes: size})
	q.total += size
}

func (q *uncommittedQueue) release(committed pb.Index) {
	for q.head < len(q.batches) && q.batches[q.head].last <= committed {
		q.total -= q.batches[q.head].bytes
		q.head++
	}
	if q.head == len(q.batches) {
		q.batches, q.head = q.batches[:0], 0
	} else if q.head > 1024 && q.head > len(q.batches)/2 {
		q.batches = append(q.batches[:0], q.batches[q.head:]...)
		q.head = 0
	}
}

func (q *uncommittedQueue) reset() { q.batches, q.head, q.total = q.batches[:0], 0, 0 }
