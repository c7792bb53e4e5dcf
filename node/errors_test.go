package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

type nopFSM struct{}

func (nopFSM) Apply(pb.Index, []byte) any { return nil }
func (nopFSM) Snapshot() (io.WriterTo, error) {
	return nil, errors.New("no snapshots")
}
func (nopFSM) Restore(io.Reader) error { return nil }

// foreign are the error values of the packages below node; none may be
// in the chain of an error node returns.
var foreign = []error{
	raft.ErrProposalDropped, raft.ErrTransferring, raft.ErrConfChangeInProgress,
	raft.ErrLearnerLagging, raft.ErrStepLocal, raft.ErrInvalidMessage, raft.ErrReadyOrder,
	raft.ErrCompacted, raft.ErrUnavailable, raft.ErrStorageFailed,
	confchange.ErrInvalid, confchange.ErrJoint, driver.ErrSnapshotInProgress,
}

// TestErrorsTranslated shows the embedding API's one error set: every
// error the core, the configuration rules and the runtime can hand the
// node becomes a node error (with the detail kept as text), and none of
// theirs stays in the chain.
func TestErrorsTranslated(t *testing.T) {
	log, snaps, err := OpenStorage(vfs.OS(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n, err := New(Config{ID: 1, FSM: nopFSM{}, Log: log, Snapshots: snaps,
		Bootstrap: []Member{{ID: 1, PeerAddr: "a:1", ClientAddr: "c:1"}, {ID: 2, PeerAddr: "a:2"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, addErr := confchange.AddLearner(pb.ConfState{Voters: []pb.NodeID{1}}, 1)
	_, jointErr := confchange.Enter(pb.ConfState{Voters: []pb.NodeID{1}, VotersOutgoing: []pb.NodeID{2}}, confchange.Target{Voters: []pb.NodeID{1}})
	cases := []struct {
		name string
		in   error
		want error // a node sentinel; nil for the NotLeaderError case
		text string
	}{
		{"not leader", &raft.NotLeaderError{}, nil, "not the leader"},
		{"not leader, leader known", &raft.NotLeaderError{Leader: 2}, nil, "leader is 2"},
		{"uncommitted bytes", raft.ErrProposalDropped, ErrBusy, ""},
		{"transferring", raft.ErrTransferring, ErrTransferring, ""},
		{"change in progress", raft.ErrConfChangeInProgress, ErrChangeInProgress, ""},
		{"joint", jointErr, ErrChangeInProgress, ""},
		{"learner lagging", fmt.Errorf("%w: 3 holds up to 5, the log is at 90 (allowed lag 10)", raft.ErrLearnerLagging), ErrLearnerLagging, "3 holds up to 5"},
		{"invalid change", addErr, ErrInvalidChange, "already a member"},
		{"invalid change from the core", fmt.Errorf("%w: 3 must join as a learner before it can vote", confchange.ErrInvalid), ErrInvalidChange, "must join as a learner"},
		{"snapshot in progress", driver.ErrSnapshotInProgress, ErrSnapshotInProgress, ""},
		{"transfer to a non-voter", errors.New("raft: cannot transfer leadership to 3: not a voter"), nil, "cannot transfer leadership to 3"},
		{"step of a local message", raft.ErrStepLocal, nil, "local message"},
		{"storage failed", fmt.Errorf("%w: term of 7: disk gone", raft.ErrStorageFailed), ErrStopped, "disk gone"},
		{"a node error passes", fmt.Errorf("%w: 9", ErrUnknownMember), ErrUnknownMember, "no such member: 9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := n.mapError(c.in)
			if got == nil {
				t.Fatal("mapped to nil")
			}
			for _, f := range foreign {
				if errors.Is(got, f) {
					t.Fatalf("%q still wraps %q", got, f)
				}
			}
			var rnl *raft.NotLeaderError
			if errors.As(got, &rnl) {
				t.Fatalf("%q still holds a raft.NotLeaderError", got)
			}
			if c.want != nil && !errors.Is(got, c.want) {
				t.Fatalf("%q is not %q", got, c.want)
			}
			var nl *NotLeaderError
			if _, isNL := c.in.(*raft.NotLeaderError); isNL {
				if !errors.As(got, &nl) || nl.Leader != c.in.(*raft.NotLeaderError).Leader {
					t.Fatalf("%q is not a *NotLeaderError naming leader %d", got, c.in.(*raft.NotLeaderError).Leader)
				}
			}
			if nl != nil && nl.Leader == 2 && nl.Addr != "" {
				t.Fatalf("client address %q for member 2, which published none", nl.Addr)
			}
			if c.text != "" && !contains(got.Error(), c.text) {
				t.Fatalf("%q lost the detail %q", got, c.text)
			}
		})
	}
	if n.mapError(nil) != nil {
		t.Fatal("nil mapped to an error")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestAPIErrorsAreNodeErrors drives the membership and transfer calls of a
// lone member into the core's and the configuration rules' refusals, and
// shows each arrives as a node error with nothing of theirs in the chain.
func TestAPIErrorsAreNodeErrors(t *testing.T) {
	log, snaps, err := OpenStorage(vfs.OS(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{ID: 1, FSM: nopFSM{}, Log: log, Snapshots: snaps,
		TickInterval: 5 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		Bootstrap: []Member{{ID: 1, PeerAddr: "a:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, role := n.Leader(); role == raft.Leader {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the lone member did not lead")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := n.AddLearner(ctx, Member{ID: 2, PeerAddr: "a:2"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"add an existing member", n.AddLearner(ctx, Member{ID: 2}), ErrInvalidChange},
		{"add member 0", n.AddLearner(ctx, Member{}), ErrInvalidChange},
		{"promote a stranger", n.Promote(ctx, 9), ErrUnknownMember},
		{"remove a stranger", n.RemoveMember(ctx, 9), ErrUnknownMember},
		{"no voters", n.ChangeVoters(ctx, nil), ErrInvalidChange},
		{"transfer to a learner", n.TransferLeadership(ctx, 2), ErrNotVoter},
		{"transfer to a stranger", n.TransferLeadership(ctx, 9), ErrUnknownMember},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
		for _, f := range foreign {
			if errors.Is(c.err, f) {
				t.Errorf("%s: %q still wraps %q", c.name, c.err, f)
			}
		}
	}
}
