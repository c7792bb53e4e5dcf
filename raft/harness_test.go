package raft_test

import (
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// memStore is a LogStore over MemoryStorage where Save is durable at once.
type memStore struct{ *raft.MemoryStorage }

func (s memStore) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	if snap != nil {
		if err := s.ApplySnapshot(*snap); err != nil {
			return err
		}
	}
	if err := s.Append(ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		s.SetHardState(hs)
	}
	return nil
}

func (s memStore) Sync() error { return nil }

type outbox struct{ msgs *[]pb.Message }

func (o outbox) Send(m []pb.Message) { *o.msgs = append(*o.msgs, m...) }

type applied struct{ ents *[]pb.Entry }

func (a applied) Apply(_ *pb.SnapshotMeta, ents []pb.Entry) error {
	*a.ents = append(*a.ents, ents...)
	return nil
}

// cluster is a tiny lock-step harness: every tick, every core is driven
// and every message delivered (unless cut), for scripted tests of the core.
type cluster struct {
	t       testing.TB
	ids     []pb.NodeID
	cores   map[pb.NodeID]*raft.Raft
	stores  map[pb.NodeID]memStore
	applied map[pb.NodeID]*[]pb.Entry
	inbox   []pb.Message
	cut     map[pb.NodeID]bool
	sent    map[pb.MessageType]int
}

func newCluster(t testing.TB, n int, tweak func(*raft.Config)) *cluster {
	c := &cluster{t: t, cores: map[pb.NodeID]*raft.Raft{}, stores: map[pb.NodeID]memStore{},
		applied: map[pb.NodeID]*[]pb.Entry{}, cut: map[pb.NodeID]bool{}, sent: map[pb.MessageType]int{}}
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, pb.NodeID(i))
	}
	hs, ents, err := raft.Bootstrap(c.ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		st := memStore{raft.NewMemoryStorage()}
		if err := st.Save(hs, nil, ents); err != nil {
			t.Fatal(err)
		}
		c.stores[id] = st
		c.applied[id] = new([]pb.Entry)
		c.start(id, tweak)
	}
	return c
}

func (c *cluster) start(id pb.NodeID, tweak func(*raft.Config)) {
	cfg := raft.Config{ID: id, Storage: c.stores[id], Seed: uint64(id) * 7919}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := raft.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.cores[id] = r
}

// drive runs every core's Ready loop and delivers messages until quiet.
func (c *cluster) drive() {
	for round := 0; round < 1000; round++ {
		busy := false
		for _, id := range c.ids {
			r := c.cores[id]
			for r.HasReady() {
				busy = true
				var out []pb.Message
				if _, err := driver.Handle(r, c.stores[id], outbox{&out}, applied{c.applied[id]}); err != nil {
					c.t.Fatal(err)
				}
				for _, m := range out {
					c.sent[m.Type]++
				}
				c.inbox = append(c.inbox, out...)
			}
		}
		msgs := c.inbox
		c.inbox = nil
		for _, m := range msgs {
			if c.cut[m.From] || c.cut[m.To] {
				continue
			}
			busy = true
			if err := c.cores[m.To].Step(m); err != nil {
				c.t.Fatalf("step %s: %v", m, err)
			}
		}
		if !busy {
			return
		}
	}
	c.t.Fatal("cluster did not quiesce")
}

func (c *cluster) tick(n int) {
	for i := 0; i < n; i++ {
		for _, id := range c.ids {
			c.cores[id].Tick()
		}
		c.drive()
	}
}

func (c *cluster) leader() pb.NodeID {
	var lead pb.NodeID
	for _, id := range c.ids {
		if c.cut[id] {
			continue
		}
		if c.cores[id].Role() == raft.Leader {
			if lead != 0 && c.cores[id].Term() == c.cores[lead].Term() {
				c.t.Fatalf("two leaders in term %d: %d and %d", c.cores[id].Term(), lead, id)
			}
			if lead == 0 || c.cores[id].Term() > c.cores[lead].Term() {
				lead = id
			}
		}
	}
	return lead
}

func (c *cluster) waitLeader() pb.NodeID {
	for i := 0; i < 200; i++ {
		if l := c.leader(); l != 0 {
			return l
		}
		c.tick(1)
	}
	c.t.Fatal("no leader elected")
	return 0
}

func TestSmokeElectionAndReplication(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	term := c.cores[lead].Term()
	for i := 0; i < 10; i++ {
		if _, _, err := c.cores[lead].Propose([]byte(fmt.Sprintf("cmd%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.tick(5)
	for _, id := range c.ids {
		ents := *c.applied[id]
		var cmds []string
		for _, e := range ents {
			if len(e.Data) > 0 && e.Type == pb.EntryNormal {
				cmds = append(cmds, string(e.Data))
			}
		}
		if len(cmds) != 10 {
			t.Fatalf("member %d applied %v", id, cmds)
		}
	}
	c.tick(500)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("leadership changed without faults: %d term %d", c.leader(), c.cores[lead].Term())
	}
}

func TestSmokeReelectionAndRejoin(t *testing.T) {
	c := newCluster(t, 5, nil)
	old := c.waitLeader()
	c.cut[old] = true
	c.tick(50)
	lead := c.waitLeader()
	if lead == old {
		t.Fatal("cut-off leader still leads")
	}
	if c.cores[old].Role() == raft.Leader {
		t.Fatal("isolated leader did not step down (CheckQuorum)")
	}
	term := c.cores[lead].Term()
	if _, _, err := c.cores[lead].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.tick(3)
	delete(c.cut, old)
	c.tick(100)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("rejoin disturbed the leader: now %d term %d (was %d term %d)", c.leader(), c.cores[c.leader()].Term(), lead, term)
	}
	if got := c.cores[old].Committed(); got != c.cores[lead].Committed() {
		t.Fatalf("rejoined member commit %d, leader %d", got, c.cores[lead].Committed())
	}
}
