package e2e

import (
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// TestMembershipChanges adds a fourth member through the admin API, starts
// its process with --join, waits for it to catch up, promotes it, removes
// an original follower, and keeps writing throughout.
//
// It relies on the transport accepting a joining member that starts
// without the cluster id or its peers.
func TestMembershipChanges(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 60*time.Second)
	if _, err := cl.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	p4 := c.add(4)
	v, err := cl.AddMember(ctx, api.Member{ID: 4, PeerAddr: p4.peer, ClientAddr: p4.addr})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := v.Member(4); !ok || m.Voter {
		t.Fatalf("after add: %+v", v.Members)
	}
	c.start(4, "--join")
	waitFor(t, 20*time.Second, "joined member caught up", func() bool {
		kv, err := getAt(t, p4.addr, "before")
		return err == nil && string(kv.Value) == "1"
	})
	if v, err = cl.PromoteMember(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if m, _ := v.Member(4); !m.Voter {
		t.Fatalf("after promote: %+v", v.Members)
	}
	victim := c.follower(lead)
	if victim.id == 4 {
		for id, p := range c.procs {
			if id != lead && id != 4 {
				victim = p
			}
		}
	}
	if v, err = cl.RemoveMember(ctx, victim.id); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Member(victim.id); ok || len(v.Members) != 3 {
		t.Fatalf("after removing %d: %+v", victim.id, v.Members)
	}
	if _, err := cl.Put(ctx, "after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// The removed member keeps running and answers /v1/cluster.
	waitFor(t, 10*time.Second, "removed member reports role removed", func() bool {
		v, err := cl.ClusterAt(ctx, victim.addr)
		return err == nil && v.Self.Role == api.RoleRemoved
	})
	waitFor(t, 10*time.Second, "member 4 has the later write", func() bool {
		kv, err := getAt(t, p4.addr, "after")
		return err == nil && string(kv.Value) == "2"
	})
	if cid, err := cl.ClusterAt(ctx, p4.addr); err != nil || cid.ClusterID != v.ClusterID {
		t.Fatalf("member 4 reports cluster id %+v, want %s (%v)", cid, v.ClusterID, err)
	}
}

// getAt reads a key stale from one member.
func getAt(t *testing.T, addr, key string) (*client.KV, error) {
	c, err := client.New(client.Config{Endpoints: []string{addr}, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Get(within(t, time.Second), key, client.WithConsistency(api.Stale))
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRemovedWhileCutOffLearnsIt: a voter is down while it is removed, so
// it never receives its removal. Started again, it is a voter by its own
// log and campaigns; the remaining members tell it that a committed
// configuration leaves it out, and it reports role removed instead of
// campaigning for ever, while the others keep their leader and term.
func TestRemovedWhileCutOffLearnsIt(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 60*time.Second)
	victim := c.follower(lead)
	victim.kill()
	if _, err := cl.RemoveMember(ctx, victim.id); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "after", []byte("removal")); err != nil {
		t.Fatal(err)
	}
	before, err := cl.ClusterAt(ctx, c.procs[lead].addr)
	if err != nil {
		t.Fatal(err)
	}
	c.start(victim.id, "--cluster", c.spec)
	waitFor(t, 10*time.Second, "the member removed while down reports role removed", func() bool {
		v, err := cl.ClusterAt(ctx, victim.addr)
		return err == nil && v.Self.Role == api.RoleRemoved
	})
	after, err := cl.ClusterAt(ctx, c.procs[lead].addr)
	if err != nil {
		t.Fatal(err)
	}
	if after.Leader != lead || after.Term != before.Term {
		t.Fatalf("leader %d term %d became leader %d term %d while the removed member campaigned",
			lead, before.Term, after.Leader, after.Term)
	}
}
