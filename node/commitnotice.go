package node

import (
	"time"

	"github.com/raftkv/raftkv/driver"
	pb "github.com/raftkv/raftkv/raftpb"
)

// commitNoticeDelay is how long the leader may hold a new commit index
// back for the next AppendEntries to carry (driver.Work.CommitUnsent). It
// holds one back only when the last proposals came within this long of
// the commit before them, as they do from a client that writes again as
// soon as it is answered, or from many clients: then each write costs the
// followers one message instead of two. When writes come further apart,
// no AppendEntries is likely to follow soon and the commit index leaves at
// once.
const commitNoticeDelay = time.Millisecond

// commitNotice decides, in the run loop, when a commit index no entry
// carries goes out on its own (raft.Raft.SendCommit).
type commitNotice struct {
	timer *time.Timer
	delay time.Duration
	armed bool
	// firedAt is the commit index at the last firing: the timer fires at
	// most once per commit index, so a follower that cannot be sent
	// anything (one that needs a snapshot it cannot take) does not keep
	// the loop waking; the core's tick covers that case.
	firedAt pb.Index
	// committed and committedAt: the commit index last seen to move, and
	// when. turnaround: how long after that the run loop last took
	// proposals.
	committed   pb.Index
	committedAt time.Time
	turnaround  time.Duration
}

func newCommitNotice(tick time.Duration) *commitNotice {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &commitNotice{timer: t, delay: min(commitNoticeDelay, tick), turnaround: time.Hour}
}

// proposed notes that the run loop took a batch of proposals.
func (c *commitNotice) proposed(now time.Time) { c.turnaround = now.Sub(c.committedAt) }

// hold notes the commit index and reports whether to hold a commit index
// no entry carries back: proposals came soon after the last commit, so
// the next AppendEntries is likely within the delay.
func (c *commitNotice) hold(committed pb.Index) bool {
	if committed > c.committed {
		c.committed, c.committedAt = committed, time.Now()
	}
	return c.turnaround <= c.delay
}

// update arms the timer when a follower has not been sent the commit
// index, and stops it once one has been.
func (c *commitNotice) update(unsent bool, committed pb.Index) bool {
	switch {
	case unsent && !c.armed && committed > c.firedAt:
		c.timer.Reset(c.delay)
		c.armed = true
		return true
	case !unsent && c.armed:
		c.timer.Stop()
		c.armed = false
	}
	return false
}

func (c *commitNotice) fired(committed pb.Index) {
	c.armed = false
	c.firedAt = committed
}

// noticeCommit runs after each Work the run loop executes: it sends a
// commit index no entry carries at once when writes are sparse, and
// otherwise leaves it to the next AppendEntries or the timer.
func (n *Node) noticeCommit(cn *commitNotice, w driver.Work) {
	if !cn.hold(n.core.Committed()) && w.CommitUnsent {
		n.counters.commitAtOnce.Add(1)
		n.run.rt.SendCommit()
		w = n.run.rt.Work()
		n.execute(w)
	}
	if cn.update(w.CommitUnsent, n.core.Committed()) {
		n.counters.commitHeld.Add(1)
	}
}

// SendCommit has the leader send its commit index now to every follower
// no AppendEntries has carried it to, rather than a moment later. For a
// write a follower forwarded and waits to apply: without it the follower
// learns the commit index up to commitNoticeDelay after the answer. It
// does not block; calls made while one is pending count once.
func (n *Node) SendCommit() {
	select {
	case n.q.commitc <- struct{}{}:
	default:
	}
}
