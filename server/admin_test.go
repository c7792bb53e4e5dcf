package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// TestMembershipAdmin adds a learner, promotes it, removes it, moves the
// voter set, hands leadership over and takes a snapshot, all through the
// admin API.
func TestMembershipAdmin(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	v := decode[api.Cluster](t, expect(t, c.do(http.MethodPost, url(lead, api.PathMembers),
		[]byte(`{"id":4,"peer_addr":"127.0.0.1:1","client_addr":"127.0.0.1:2"}`)), 200, ""))
	if m, ok := v.Member(4); !ok || m.Voter || m.ClientAddr != "127.0.0.1:2" {
		t.Fatalf("after adding learner 4: %+v", v.Members)
	}
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers), []byte(`{"id":4,"peer_addr":"127.0.0.1:1"}`)), 400, api.CodeBadRequest)
	v = decode[api.Cluster](t, expect(t, c.do(http.MethodPost, url(lead, api.PathMembers+"/4/promote"), nil), 200, ""))
	if m, _ := v.Member(4); !m.Voter {
		t.Fatalf("after promoting 4: %+v", v.Members)
	}
	v = decode[api.Cluster](t, expect(t, c.do(http.MethodDelete, url(lead, api.PathMembers+"/4"), nil), 200, ""))
	if _, ok := v.Member(4); ok || len(v.Members) != 3 {
		t.Fatalf("after removing 4: %+v", v.Members)
	}

	// Drop one follower from the voters in one joint change.
	keep := []uint64{lead.cfg.ID}
	var drop uint64
	for id := uint64(1); id <= 3; id++ {
		switch {
		case id == lead.cfg.ID:
		case len(keep) == 1:
			keep = append(keep, id)
		default:
			drop = id
		}
	}
	body := fmt.Sprintf(`{"voters":[%d,%d]}`, keep[0], keep[1])
	v = decode[api.Cluster](t, expect(t, c.do(http.MethodPut, url(lead, api.PathVoters), []byte(body)), 200, ""))
	if _, ok := v.Member(drop); ok || len(v.Members) != 2 {
		t.Fatalf("after voters %v: %+v", keep, v.Members)
	}
	c.kill(drop)

	// Hand leadership to the other voter; then writes go through it.
	other := keep[0]
	if other == lead.cfg.ID {
		other = keep[1]
	}
	tr := decode[api.TransferResponse](t, expect(t, c.do(http.MethodPost, url(lead, api.PathTransfer), []byte(fmt.Sprintf(`{"id":%d}`, other))), 200, ""))
	if tr.Leader != other {
		t.Fatalf("transfer answered leader %d, want %d", tr.Leader, other)
	}
	newLead := c.leader()
	if newLead.cfg.ID != other {
		t.Fatalf("leader is %d after transfer to %d", newLead.cfg.ID, other)
	}
	expect(t, put(c, newLead, "after", "transfer"), 200, "")
	sn := decode[api.SnapshotResponse](t, expect(t, c.do(http.MethodPost, url(newLead, api.PathSnapshot), nil), 200, ""))
	if sn.Index == 0 {
		t.Fatal("snapshot at index 0")
	}
	v = decode[api.Cluster](t, expect(t, c.do(http.MethodGet, url(newLead, api.PathCluster), nil), 200, ""))
	if v.Self.SnapshotIndex < sn.Index {
		t.Fatalf("snapshot_index %d after snapshot at %d", v.Self.SnapshotIndex, sn.Index)
	}
}

// TestChangeInProgress shows a second membership change refused with 409
// while the first cannot complete (a voter is down and the new set needs
// it).
func TestChangeInProgress(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.ElectionTimeout = time.Second
		cfg.Limits.RequestTimeout = 2 * time.Second
	})
	lead := c.leader()
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers), []byte(`{"id":4,"peer_addr":"127.0.0.1:1"}`)), 200, "")
	for id := range c.servers {
		if id != lead.cfg.ID {
			c.kill(id)
			break
		}
	}
	// {1,2,3} -> {1,2,3,4} needs 3 of 4 with only 2 up: it cannot commit.
	first := make(chan *http.Response, 1)
	go func() {
		first <- c.do(http.MethodPut, url(lead, api.PathVoters), []byte(`{"voters":[1,2,3,4]}`))
	}()
	// The leader appends C_old,new at once: it is in force from then on.
	waitUntil(t, 5*time.Second, "the first change appended", func() bool { return lead.node.Status().Conf.Joint() })
	expect(t, c.do(http.MethodDelete, url(lead, api.PathMembers+"/4"), nil), 409, api.CodeChangeInProgress)
	expect(t, <-first, 504, api.CodeUnknownOutcome)
}

// TestRemoveLeaderAnswersSuccess: removing the leader itself commits the
// configuration without it before it steps down, so the request answers
// 200, not 504 unknown_outcome; the others elect a leader among
// themselves and the old leader reports role removed.
func TestRemoveLeaderAnswersSuccess(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	id := lead.cfg.ID
	v := decode[api.Cluster](t, expect(t, c.do(http.MethodDelete, url(lead, fmt.Sprintf("%s/%d", api.PathMembers, id)), nil), 200, ""))
	if _, ok := v.Member(id); ok || len(v.Members) != 2 {
		t.Fatalf("after removing the leader %d: %+v", id, v.Members)
	}
	c.kill(id)
	next := c.leader()
	if next.cfg.ID == id {
		t.Fatalf("removed member %d still leads", id)
	}
	expect(t, put(c, next, "after", "removal"), 200, "")
}
