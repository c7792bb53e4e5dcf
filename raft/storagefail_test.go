package raft_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// errDisk is the storage's own error, as a disk returning EIO would give.
var errDisk = errors.New("disk: input/output error")

// flakyStorage is a Storage whose reads of entries fail once broken is set.
type flakyStorage struct {
	raft.Storage
	broken error
}

func (s *flakyStorage) Term(i pb.Index) (pb.Term, error) {
	if s.broken != nil {
		return 0, s.broken
	}
	return s.Storage.Term(i)
}

func (s *flakyStorage) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	if s.broken != nil {
		return nil, s.broken
	}
	return s.Storage.Entries(lo, hi, maxBytes)
}

// flakyCluster is a cluster whose members read their logs through a
// flakyStorage.
func flakyCluster(t *testing.T, n int) (*cluster, map[pb.NodeID]*flakyStorage) {
	flaky := map[pb.NodeID]*flakyStorage{}
	c := newCluster(t, n, func(cfg *raft.Config) {
		fs := &flakyStorage{Storage: cfg.Storage}
		flaky[cfg.ID] = fs
		cfg.Storage = fs
	})
	return c, flaky
}

// checkFailed asserts the terminal failed state: the failure names the
// storage's error, Status reports it, nothing more is handed out, and every
// call that can return an error returns it.
func checkFailed(t *testing.T, r *raft.Raft, err error, outstanding []raft.Ready) {
	t.Helper()
	if !errors.Is(err, raft.ErrStorageFailed) || !errors.Is(err, errDisk) {
		t.Fatalf("failure %v: want it to wrap ErrStorageFailed and the storage's error", err)
	}
	if got := r.Err(); got != err {
		t.Fatalf("Err() = %v, want %v", got, err)
	}
	if got := r.Status().Err; got != err {
		t.Fatalf("Status().Err = %v, want %v", got, err)
	}
	if r.HasReady() {
		t.Fatal("a failed core has a Ready")
	}
	if rd := r.Ready(); !rd.IsEmpty() || rd.ID != 0 {
		t.Fatalf("a failed core handed out Ready %d: %+v", rd.ID, rd)
	}
	if msgs := r.TakeMessages(); len(msgs) > 0 {
		t.Fatalf("a failed core handed out messages %v", msgs)
	}
	calls := map[string]error{
		"Tick":             r.Tick(),
		"Step":             r.Step(pb.Message{Type: pb.MsgHeartbeat, From: 9, To: r.ID(), Term: r.Term() + 1}),
		"ReadIndex":        r.ReadIndex([]byte("r")),
		"LeaseRead":        r.LeaseRead([]byte("r")),
		"TransferLeader":   r.TransferLeader(9),
		"Advance(nothing)": r.Advance(raft.Ready{}),
	}
	_, _, calls["Propose"] = r.Propose([]byte("x"))
	_, _, calls["ProposeConfChange"] = r.ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1}})
	for i, rd := range outstanding {
		calls[fmt.Sprintf("Advance(outstanding %d)", i)] = r.Advance(rd)
	}
	for name, got := range calls {
		if got != err {
			t.Errorf("%s after the failure returned %v, want %v", name, got, err)
		}
	}
	if err := r.CheckInvariants(); err != nil {
		t.Fatalf("CheckInvariants on a failed core: %v", err)
	}
}

// TestStorageFailureOnApply shows a follower that cannot read the committed
// entries it must apply: it stops with the storage's error instead of
// panicking, and hands out no Ready.
func TestStorageFailureOnApply(t *testing.T) {
	c, flaky := flakyCluster(t, 3)
	lead := c.waitLeader()
	var f pb.NodeID = 1
	if f == lead {
		f = 2
	}
	c.one("a", 3, 100)
	// f holds entries durably but has not applied them when its disk fails:
	// hold f's Readys and cut it off so that it restarts with them unapplied.
	c.cut[f] = true
	c.crash(f)
	flaky[f].broken = errDisk
	r := c.cores[f]
	if !r.HasReady() {
		t.Fatal("restarted follower has nothing to apply")
	}
	rd := r.Ready()
	if !rd.IsEmpty() || rd.ID != 0 || r.Outstanding() != 0 {
		t.Fatalf("Ready %d built from a failed read was handed out (%d outstanding): %+v", rd.ID, r.Outstanding(), rd)
	}
	checkFailed(t, r, r.Err(), nil)
}

// TestStorageFailureOnVote shows a follower whose last entry's term cannot
// be read when a vote request arrives (the election restriction needs it,
// §5.4.1): Step returns the failure and no vote ever leaves.
func TestStorageFailureOnVote(t *testing.T) {
	c, flaky := flakyCluster(t, 3)
	lead := c.waitLeader()
	c.one("a", 3, 100)
	var f pb.NodeID = 1
	if f == lead {
		f = 2
	}
	r := c.cores[f]
	if n := len(c.inbox) + len(c.held); n != 0 {
		t.Fatalf("%d messages in flight", n)
	}
	flaky[f].broken = errDisk
	last := r.Status().LastIndex
	err := r.Step(pb.Message{Type: pb.MsgRequestVote, From: 3, To: f, Term: r.Term() + 1, Index: last + 5, LogTerm: r.Term() + 1,
		Context: []byte("transfer")})
	if err == nil {
		t.Fatal("Step with an unreadable log succeeded")
	}
	checkFailed(t, r, err, nil)
}

// TestStorageFailureOnReplication shows a leader that cannot read the
// entries a lagging follower needs: it stops, and sends nothing more, not
// even to the followers it could still serve.
func TestStorageFailureOnReplication(t *testing.T) {
	c, flaky := flakyCluster(t, 3)
	lead := c.waitLeader()
	var f pb.NodeID = 1
	if f == lead {
		f = 2
	}
	c.cut[f] = true
	for i := 0; i < 5; i++ {
		c.one(cmdN("w", i), 2, 100)
	}
	r := c.cores[lead]
	// A Ready is outstanding when the read fails.
	if _, _, err := r.Propose([]byte("pending")); err != nil {
		t.Fatal(err)
	}
	outstanding := r.Ready()
	// Heartbeats wait in the core when the read fails: they must not leave.
	if err := r.Tick(); err != nil {
		t.Fatal(err)
	}
	flaky[lead].broken = errDisk
	r.ReportUnreachable(f) // probe f from its match: entries come from storage
	err := r.Step(pb.Message{Type: pb.MsgHeartbeatResp, From: f, To: lead, Term: r.Term()})
	if err == nil {
		t.Fatal("Step with an unreadable log succeeded")
	}
	checkFailed(t, r, err, []raft.Ready{outstanding})
}

// TestStorageCompactedIsNotAFailure shows that a storage reporting an entry
// compacted (it may compact concurrently) is not a failure: the leader
// falls back to a snapshot and keeps going.
func TestStorageCompactedIsNotAFailure(t *testing.T) {
	c, flaky := flakyCluster(t, 3)
	lead := c.waitLeader()
	var f pb.NodeID = 1
	if f == lead {
		f = 2
	}
	c.cut[f] = true
	for i := 0; i < 5; i++ {
		c.one(cmdN("w", i), 2, 100)
	}
	r := c.cores[lead]
	flaky[lead].broken = fmt.Errorf("compacted meanwhile: %w", raft.ErrCompacted)
	r.ReportUnreachable(f)
	if err := r.Step(pb.Message{Type: pb.MsgHeartbeatResp, From: f, To: lead, Term: r.Term()}); err != nil {
		t.Fatalf("Step: %v", err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("a compacted entry stopped the core: %v", err)
	}
	flaky[lead].broken = nil
	if err := r.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	delete(c.cut, f)
	c.one("after", 3, 200)
}

// TestStorageFailureOnTransfer shows that a request that hits the failure
// itself returns it: a transfer that must first catch its target up reads
// the entries the target lacks.
func TestStorageFailureOnTransfer(t *testing.T) {
	c, flaky := flakyCluster(t, 3)
	lead := c.waitLeader()
	var f pb.NodeID = 1
	if f == lead {
		f = 2
	}
	c.cut[f] = true
	for i := 0; i < 5; i++ {
		c.one(cmdN("w", i), 2, 100)
	}
	r := c.cores[lead]
	r.ReportUnreachable(f)
	flaky[lead].broken = errDisk
	err := r.TransferLeader(f)
	if err == nil {
		t.Fatal("TransferLeader with an unreadable log succeeded")
	}
	checkFailed(t, r, err, nil)
}
