package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
)

// TestFollowersApplyAWriteWithinTheCommitNoticeDelay shows the run loop's
// commit timer at work: the leader holds a new commit index back for the
// next AppendEntries, and when none comes sends it a moment later, not on
// its next tick. With a 50 ms core tick, lone writes reach the followers'
// state machines in a few milliseconds at the median; on ticks alone the
// median would be about half a tick.
func TestFollowersApplyAWriteWithinTheCommitNoticeDelay(t *testing.T) {
	c := newTClusterWith(t, 3, 0, func(c *tcluster) {
		c.tweak = func(cfg *node.Config) {
			cfg.TickInterval, cfg.ElectionTimeout = 500*time.Millisecond, time.Second
		}
	})
	lead := c.leader()
	c.propose(1) // the leader's first entry of its term is committed
	var lags []time.Duration
	for v := uint64(2); v <= 21; v++ {
		c.propose(v)
		index := c.members[lead].n.Status().Applied
		start := time.Now()
		for id, m := range c.members {
			if id == lead {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := m.n.WaitApplied(ctx, index)
			cancel()
			if err != nil {
				t.Fatalf("follower %d did not apply index %d: %v", id, index, err)
			}
		}
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	median := lags[len(lags)/2]
	t.Logf("followers applied a lone write %v after the leader answered (median of %d; max %v)", median, len(lags), lags[len(lags)-1])
	if median > 12*time.Millisecond {
		t.Fatalf("median lag %v: the commit index waited for the 50 ms tick", median)
	}
}
