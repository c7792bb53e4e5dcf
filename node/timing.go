package node

import (
	"time"

	"github.com/raftkv/raftkv/driver"
)

// The core counts time in ticks finer than the heartbeat interval, so that
// a follower whose connection to a dead leader closed can campaign a
// fraction of an election timeout after its last heartbeat (raft/closed.go)
// without that fraction being lost to tick rounding. The heartbeat and
// election timeouts stay what the Config says.
const (
	// maxTicksPerInterval is how many core ticks a heartbeat interval has
	// at most; minCoreTick bounds how short a core tick gets, so that a
	// member with short test timers does not spin its run loop.
	maxTicksPerInterval = 10
	minCoreTick         = 5 * time.Millisecond
)

// timing is the core's view of Config's timers.
type timing struct {
	// tick is the core's tick; heartbeat and election are Config's
	// intervals in ticks.
	tick                time.Duration
	heartbeat, election int
	// lease is how long an answered heartbeat round backs a lease read:
	// two heartbeat intervals, or half an election timeout if shorter.
	// closedPromise is the vote refusal a follower keeps after its
	// connection to the leader closed (0: off, when it would not be
	// shorter than an election timeout).
	lease, closedPromise int
	// slack is how far the ticks may fall behind the clock before lease
	// reads fall back to ReadIndex (driver.Config.TickSlack).
	slack time.Duration
}

func timingOf(interval, election time.Duration) timing {
	per := max(1, min(maxTicksPerInterval, int(interval/minCoreTick)))
	t := timing{tick: interval / time.Duration(per), heartbeat: per, slack: interval / 2}
	t.election = int(election / t.tick)
	t.lease = min(t.election/2, 2*t.heartbeat)
	t.closedPromise = driver.ClosedPromiseTicks(t.lease, t.tick, t.slack)
	if t.closedPromise >= t.election {
		t.closedPromise = 0
	}
	return t
}
