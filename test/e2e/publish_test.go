package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// allListed reports whether the member at every endpoint lists exactly
// these client addresses for its members.
func allListed(t *testing.T, cl *client.Client, endpoints []string) bool {
	for _, ep := range endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := cl.ClusterAt(ctx, ep)
		cancel()
		if err != nil || len(v.Members) != len(endpoints) {
			return false
		}
		for _, m := range v.Members {
			if !slices.Contains(endpoints, m.ClientAddr) {
				return false
			}
		}
	}
	return true
}

// TestEveryMemberPublishesClientAddr starts three `raftkv server`
// processes and shows every member's /v1/cluster listing all three client
// addresses within a few seconds (the API contract: "the member also
// publishes its own"), and still after a follower restarts and after the
// leader is killed and a new one takes over.
func TestEveryMemberPublishesClientAddr(t *testing.T) {
	c := newCluster(t, 3)
	cl := c.client()
	eps := c.endpoints()
	waitFor(t, 5*time.Second, "every member lists every client address after a fresh start",
		func() bool { return allListed(t, cl, eps) })

	lead := c.leader()
	f := c.follower(lead)
	f.kill()
	c.start(f.id)
	waitFor(t, 10*time.Second, "every member lists every client address after a follower restart",
		func() bool { return allListed(t, cl, eps) })

	c.procs[lead].kill()
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		v, err := cl.ClusterAt(ctx, f.addr)
		return err == nil && v.Leader != 0 && v.Leader != lead
	})
	c.start(lead)
	waitFor(t, 10*time.Second, "every member lists every client address after a leader change",
		func() bool { return allListed(t, cl, eps) })
}
