package node

import (
	"time"

	pb "github.com/raftkv/raftkv/raftpb"
)

// commitNoticeDelay is how long the leader waits before it sends a new
// commit index in a message of its own (driver.Work.CommitUnsent). A
// client that sends its next request on the answer is back well within
// it, and the AppendEntries for that request carries the commit index for
// free; a follower otherwise learns it this much later than at once.
const commitNoticeDelay = time.Millisecond

// commitNotice is the run loop's timer for SendCommit. It fires at most
// once per commit index, so a follower that cannot be sent anything (one
// that needs a snapshot it cannot take) does not keep the loop waking; the
// core's tick covers that case.
type commitNotice struct {
	timer *time.Timer
	armed bool
	// firedAt is the commit index at the last firing.
	firedAt pb.Index
	delay   time.Duration
}

func newCommitNotice(tick time.Duration) *commitNotice {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &commitNotice{timer: t, delay: min(commitNoticeDelay, tick)}
}

// update arms the timer when a follower has not been sent the commit
// index, and stops it once one has been.
func (c *commitNotice) update(unsent bool, committed pb.Index) {
	switch {
	case unsent && !c.armed && committed > c.firedAt:
		c.timer.Reset(c.delay)
		c.armed = true
	case !unsent && c.armed:
		c.timer.Stop()
		c.armed = false
	}
}

func (c *commitNotice) fired(committed pb.Index) {
	c.armed = false
	c.firedAt = committed
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
