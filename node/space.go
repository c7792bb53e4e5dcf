package node

import (
	"context"
	"errors"
	"github.com/raftkv/raftkv/driver"
	"math"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// A member whose disk is full must not fail a write: it stops taking new
// entries before its log has to refuse them. The log (storage.Log) says
// when the file system had no room for its next segment (SpaceOK) and how
// many bytes of entries still fit (EntryRoom). While space is short:
//   - proposals that do not fit are refused with ErrNoSpace before they
//     reach the core (definitely not applied);
//   - AppendEntries carrying entries that do not fit are dropped, as if
//     the network had lost them: the follower does not ack, which Raft
//     tolerates, and the leader retries;
//   - a leader hands leadership to a voter that has no alarm raised;
//   - the log is asked to try again every spaceRetryInterval.
//
// Entries the core adds on its own (a new leader's empty entry) and
// configuration changes (the alarm itself) are not gated: they come out of
// spaceMarginBytes, kept free of gated entries.
//
// The alarm that makes every member refuse writes is the Alarm of this
// member in the replicated member table (SetAlarm); the server raises and
// clears it.

// ErrNoSpace: definitely not applied; this member's disk has no room for
// the entry.
var ErrNoSpace = errors.New("node: no space left on this member's disk for new entries")

// AlarmNoSpace is the alarm a member raises while its disk or its state's
// quota is full (the cause: AlarmCauseDisk, AlarmCauseQuota).
const (
	AlarmNoSpace    = "no_space"
	AlarmCauseDisk  = "disk"
	AlarmCauseQuota = "quota"
)

// spaceMarginBytes is the room kept for entries that are not gated.
const spaceMarginBytes = 64 << 10

// spaceRetryInterval paces the log's retries and the leader's hand-overs.
const spaceRetryInterval = time.Second

// entryOverheadBytes bounds what a record adds to an entry's data
// (storage.EntryOverheadBytes).
const entryOverheadBytes = 48

// spaceLog is what a log that can run out of space offers (storage.Log).
type spaceLog interface {
	SpaceOK() bool
	EntryRoom() int64
	RetrySpace()
	SetFreeReserve(int64)
}

// spaceOf finds the spaceLog behind l, through wrappers that offer
// Unwrap() LogStore; nil if there is none.
func spaceOf(l LogStore) spaceLog {
	for l != nil {
		if s, ok := l.(spaceLog); ok {
			return s
		}
		u, ok := l.(interface{ Unwrap() LogStore })
		if !ok {
			return nil
		}
		l = u.Unwrap()
	}
	return nil
}

// spaceGate is the node's side of it. unsaved is shared with the
// persister; the rest belongs to the run goroutine.
type spaceGate struct {
	log      spaceLog
	unsaved  atomic.Int64 // entry bytes handed to the persister, not yet saved
	admitted int64        // entry bytes let into the core since the last Ready
	retrying atomic.Bool
	next     time.Time // next retry or hand-over
	dropped  atomic.Uint64
	refused  atomic.Uint64
	alarms   atomic.Pointer[alarmView]
}

// alarmView is the members with an alarm raised and the number of voters,
// as of the configuration last seen.
type alarmView struct {
	alarmed []Member
	voters  int
}

func entriesBytes(ents []pb.Entry) int64 {
	var n int64
	for i := range ents {
		n += int64(len(ents[i].Data)) + entryOverheadBytes
	}
	return n
}

// roomFor reports whether entries of n bytes (data plus overhead) may go
// into the core now.
func (g *spaceGate) roomFor(n int64) bool {
	if g.log == nil || g.log.SpaceOK() {
		return true
	}
	room := g.log.EntryRoom()
	if room == math.MaxInt64 {
		return true // space came back meanwhile
	}
	return n+g.admitted+g.unsaved.Load()+spaceMarginBytes <= room
}

// handedOut notes a Ready's entries going to the persister.
func (g *spaceGate) handedOut(rd *raft.Ready) {
	g.admitted = 0
	g.unsaved.Add(entriesBytes(rd.Entries))
}

// saved notes a Ready's entries saved to the log.
func (g *spaceGate) saved(rd *raft.Ready) { g.unsaved.Add(-entriesBytes(rd.Entries)) }

// admitProposals runs in the run goroutine before a batch goes to the
// core: it refuses, with ErrNoSpace, the proposals from the first one that
// does not fit.
func (n *Node) admitProposals(batch []*proposal) []*proposal {
	g := &n.space
	for i, p := range batch {
		size := int64(len(p.data)) + entryOverheadBytes
		if !g.roomFor(size) {
			// Counted first, so that a caller who got ErrNoSpace finds
			// its refusal in SpaceCounters.
			g.refused.Add(uint64(len(batch) - i))
			for _, q := range batch[i:] {
				q.finish(nil, ErrNoSpace)
			}
			return batch[:i]
		}
		g.admitted += size
	}
	return batch
}

// admitMessage reports whether a received message may be stepped: an
// AppendEntries whose entries do not fit is dropped.
func (n *Node) admitMessage(m *pb.Message) bool {
	if m.Type != pb.MsgAppendEntries || len(m.Entries) == 0 {
		return true
	}
	g := &n.space
	if g.log == nil || g.log.SpaceOK() {
		return true
	}
	size := n.newEntriesBytes(m.Entries)
	if size == 0 {
		return true // all held already: the ack costs nothing
	}
	if !g.roomFor(size) {
		g.dropped.Add(1)
		return false
	}
	g.admitted += size
	return true
}

// newEntriesBytes counts the entries the log does not hold yet: an
// AppendEntries retransmitted to a full follower that stored it before
// must still be acknowledged, or the entries might never commit.
func (n *Node) newEntriesBytes(ents []pb.Entry) int64 {
	last := n.cfg.Log.LastIndex()
	var size int64
	for i := range ents {
		e := &ents[i]
		if e.Index <= last {
			if t, err := n.cfg.Log.Term(e.Index); err == nil && t == e.Term {
				continue
			}
		}
		size += int64(len(e.Data)) + entryOverheadBytes
	}
	return size
}

// spaceTick runs on every tick: while space is short it asks the log to
// try again, and a leader hands over to a voter without an alarm.
func (n *Node) spaceTick(now time.Time) {
	g := &n.space
	if g.log == nil {
		return
	}
	if b := n.pub.lastSnapBytes.Load(); b > 0 {
		// Keep room on the disk for the next snapshot, which compaction
		// needs before it can free anything.
		g.log.SetFreeReserve(int64(b + b/2))
	}
	if g.log.SpaceOK() || now.Before(g.next) {
		return
	}
	g.next = now.Add(spaceRetryInterval)
	if g.retrying.CompareAndSwap(false, true) {
		go func() { // RetrySpace may wait for an fsync
			defer g.retrying.Store(false)
			g.log.RetrySpace()
		}()
	}
	if n.run.soft.Role == raft.Leader {
		if to := n.spaceTransferTarget(); to != pb.None {
			n.log.Warn("no space on this member's disk, handing over leadership", "to", uint64(to))
			_ = n.core.TransferLeader(to)
		}
	}
}

// spaceTransferTarget is the most caught-up voter whose disk has room.
func (n *Node) spaceTransferTarget() pb.NodeID {
	st := n.core.Status()
	alarmed := map[pb.NodeID]bool{}
	for _, m := range membersOf(st.Conf) {
		alarmed[m.ID] = m.AlarmCause == AlarmCauseDisk
	}
	return driver.MostCaughtUpVoter(st, func(id pb.NodeID) bool { return !alarmed[id] })
}

// SpaceOK reports whether this member's disk has room for new entries (see
// storage.Log.SpaceOK); true when the log cannot tell.
func (n *Node) SpaceOK() bool { return n.space.log == nil || n.space.log.SpaceOK() }

// SpaceCounters returns the proposals refused and the AppendEntries
// dropped for lack of space since the node started.
func (n *Node) SpaceCounters() (refused, dropped uint64) {
	return n.space.refused.Load(), n.space.dropped.Load()
}

// noteAlarms keeps the members with an alarm, for the cheap accessors.
func (n *Node) noteAlarms(ms []Member) {
	v := &alarmView{}
	for _, m := range ms {
		if m.Alarm != "" {
			v.alarmed = append(v.alarmed, m)
		}
		if m.Voter {
			v.voters++
		}
	}
	n.space.alarms.Store(v)
}

// Alarms returns the members that have an alarm raised, and the number of
// voters, as this member's configuration has them. It is cheap: the server
// calls it on every write.
func (n *Node) Alarms() (alarmed []Member, voters int) {
	if v := n.space.alarms.Load(); v != nil {
		return v.alarmed, v.voters
	}
	return nil, 0
}

// SetAlarm raises (alarm not empty) or clears a member's alarm in the
// replicated member table. Only the leader can; it is a configuration
// change, so it is refused while another is in progress.
func (n *Node) SetAlarm(ctx context.Context, id pb.NodeID, alarm, cause string) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		m, ok := meta.find(id)
		if !ok && !cur.IsVoter(id) && !isLearner(cur, id) {
			return confchange.Target{}, meta, ErrUnknownMember
		}
		m.ID, m.Alarm, m.AlarmCause = id, alarm, cause
		if alarm == "" {
			m.AlarmCause = ""
		}
		return confchange.Target{Voters: cur.Voters, Learners: cur.Learners}, meta.with(m), nil
	})
}

// DisarmAll clears every member's alarm.
func (n *Node) DisarmAll(ctx context.Context) error {
	return n.changeConf(ctx, func(cur pb.ConfState, meta clusterMeta) (confchange.Target, clusterMeta, error) {
		out := clusterMeta{ClusterID: meta.ClusterID}
		for _, m := range meta.Members {
			m.Alarm, m.AlarmCause = "", ""
			out.Members = append(out.Members, m)
		}
		return confchange.Target{Voters: cur.Voters, Learners: cur.Learners}, out, nil
	})
}

func isLearner(cs pb.ConfState, id pb.NodeID) bool {
	for _, l := range cs.Learners {
		if l == id {
			return true
		}
	}
	return false
}
