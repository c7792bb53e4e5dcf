package quorum

import (
	"slices"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// acks is an AckedIndex over a table: members not in it have not answered.
func acks(m map[pb.NodeID]pb.Index) AckedIndex {
	return func(id pb.NodeID) (pb.Index, bool) {
		idx, ok := m[id]
		return idx, ok
	}
}

func ids(v ...pb.NodeID) []pb.NodeID { return v }

// TestMajorityQuorum shows the size of a majority: more than half of the
// voters (§5.2), and nothing at all for an empty half.
func TestMajorityQuorum(t *testing.T) {
	for n, want := range []int{0, 1, 2, 2, 3, 3, 4, 4, 5} {
		var m []pb.NodeID
		for i := 1; i <= n; i++ {
			m = append(m, pb.NodeID(i))
		}
		if got := NewMajority(m...).Quorum(); got != want {
			t.Errorf("%d voters: quorum %d, want %d", n, got, want)
		}
	}
}

// TestNewMajority shows that a set is sorted and each voter counted once,
// however the ids are given: a duplicate must not count twice towards a
// majority.
func TestNewMajority(t *testing.T) {
	m := NewMajority(3, 1, 2, 3, 1)
	if !slices.Equal(m, Majority{1, 2, 3}) {
		t.Fatalf("NewMajority(3,1,2,3,1) = %v, want [1 2 3]", m)
	}
	for _, id := range ids(1, 2, 3) {
		if !m.Contains(id) {
			t.Errorf("%v does not contain %d", m, id)
		}
	}
	for _, id := range ids(0, 4) {
		if m.Contains(id) {
			t.Errorf("%v contains %d", m, id)
		}
	}
	if got := m.Quorum(); got != 2 {
		t.Errorf("quorum of %v is %d, want 2 (duplicates counted)", m, got)
	}
}

// TestMajorityCommittedIndex shows the leader's commit rule (§5.3, Figure 2:
// "there exists an N such that a majority of matchIndex[i] >= N"): the
// highest index a majority holds, where a voter that never answered holds
// nothing.
func TestMajorityCommittedIndex(t *testing.T) {
	for _, tc := range []struct {
		name   string
		voters []pb.NodeID
		acked  map[pb.NodeID]pb.Index
		want   pb.Index
	}{
		{"one voter commits what it holds", ids(1), map[pb.NodeID]pb.Index{1: 7}, 7},
		{"three: the median", ids(1, 2, 3), map[pb.NodeID]pb.Index{1: 5, 2: 3, 3: 1}, 3},
		{"three: two agree", ids(1, 2, 3), map[pb.NodeID]pb.Index{1: 5, 2: 5, 3: 1}, 5},
		{"three: a silent voter holds nothing", ids(1, 2, 3), map[pb.NodeID]pb.Index{1: 5, 2: 4}, 4},
		{"three: only one answered", ids(1, 2, 3), map[pb.NodeID]pb.Index{1: 9}, 0},
		{"four: needs three", ids(1, 2, 3, 4), map[pb.NodeID]pb.Index{1: 10, 2: 10, 3: 5, 4: 5}, 5},
		{"four: three agree", ids(1, 2, 3, 4), map[pb.NodeID]pb.Index{1: 10, 2: 10, 3: 10, 4: 5}, 10},
		{"five: third highest", ids(1, 2, 3, 4, 5), map[pb.NodeID]pb.Index{1: 9, 2: 8, 3: 7, 4: 2, 5: 1}, 7},
		{"acks from non-voters do not count", ids(1, 2, 3), map[pb.NodeID]pb.Index{1: 9, 4: 9, 5: 9}, 0},
		{"nine voters, more than the stack array", ids(1, 2, 3, 4, 5, 6, 7, 8, 9),
			map[pb.NodeID]pb.Index{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewMajority(tc.voters...).CommittedIndex(acks(tc.acked)); got != tc.want {
				t.Fatalf("voters %v acked %v: committed %d, want %d", tc.voters, tc.acked, got, tc.want)
			}
		})
	}
	// An empty half does not restrict the other half of a joint config.
	if got := NewMajority().CommittedIndex(acks(nil)); got != ^pb.Index(0) {
		t.Fatalf("empty set: committed %d, want the largest index", got)
	}
}

// TestJointCommittedIndex shows joint consensus (§6): an entry is committed
// only when a majority of C_old and a majority of C_new hold it.
func TestJointCommittedIndex(t *testing.T) {
	for _, tc := range []struct {
		name          string
		incoming, out []pb.NodeID
		acked         map[pb.NodeID]pb.Index
		want          pb.Index
	}{
		{"not joint: the one majority", ids(1, 2, 3), nil, map[pb.NodeID]pb.Index{1: 5, 2: 5, 3: 1}, 5},
		{"C_new ahead, C_old behind", ids(1, 2, 3), ids(1, 4, 5),
			map[pb.NodeID]pb.Index{1: 9, 2: 9, 3: 9, 4: 2, 5: 2}, 2},
		{"C_old ahead, C_new behind", ids(4, 5, 6), ids(1, 2, 3),
			map[pb.NodeID]pb.Index{1: 9, 2: 9, 3: 9, 4: 2, 5: 3, 6: 1}, 2},
		{"both majorities at 7", ids(1, 2, 3), ids(3, 4, 5),
			map[pb.NodeID]pb.Index{1: 7, 2: 7, 3: 8, 4: 7, 5: 1}, 7},
		{"shared voter is counted in each half", ids(1, 2), ids(2, 3),
			map[pb.NodeID]pb.Index{1: 4, 2: 4, 3: 0}, 0},
		{"no voters at all commit nothing", nil, nil, map[pb.NodeID]pb.Index{1: 5}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := Joint{NewMajority(tc.incoming...), NewMajority(tc.out...)}
			if got := j.CommittedIndex(acks(tc.acked)); got != tc.want {
				t.Fatalf("%v acked %v: committed %d, want %d", j, tc.acked, got, tc.want)
			}
		})
	}
}

// votes builds a vote table from "granted" and "rejected" lists.
func votes(granted, rejected []pb.NodeID) map[pb.NodeID]bool {
	v := map[pb.NodeID]bool{}
	for _, id := range granted {
		v[id] = true
	}
	for _, id := range rejected {
		v[id] = false
	}
	return v
}

// TestMajorityVoteResult shows how an election stands (§5.2): won with a
// majority of grants, lost once a majority can no longer be reached,
// pending while the missing answers could still decide it.
func TestMajorityVoteResult(t *testing.T) {
	for _, tc := range []struct {
		name              string
		voters            []pb.NodeID
		granted, rejected []pb.NodeID
		want              VoteResult
	}{
		{"one voter votes for itself", ids(1), ids(1), nil, VoteWon},
		{"one voter, no answer", ids(1), nil, nil, VotePending},
		{"one voter rejects", ids(1), nil, ids(1), VoteLost},
		{"three: own vote only", ids(1, 2, 3), ids(1), nil, VotePending},
		{"three: two grants", ids(1, 2, 3), ids(1, 2), nil, VoteWon},
		{"three: one grant, one reject", ids(1, 2, 3), ids(1), ids(2), VotePending},
		{"three: two rejects", ids(1, 2, 3), ids(1), ids(2, 3), VoteLost},
		{"four: two grants are not a majority", ids(1, 2, 3, 4), ids(1, 2), ids(3), VotePending},
		{"four: two grants, two rejects", ids(1, 2, 3, 4), ids(1, 2), ids(3, 4), VoteLost},
		{"four: three grants", ids(1, 2, 3, 4), ids(1, 2, 3), ids(4), VoteWon},
		{"grants from non-voters do not count", ids(1, 2, 3), ids(1, 4, 5), ids(2, 3), VoteLost},
		{"empty set: won (no restriction)", nil, nil, nil, VoteWon},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewMajority(tc.voters...).VoteResult(votes(tc.granted, tc.rejected))
			if got != tc.want {
				t.Fatalf("voters %v granted %v rejected %v: %s, want %s", tc.voters, tc.granted, tc.rejected, got, tc.want)
			}
		})
	}
}

// TestJointVoteResult shows elections under joint consensus (§6): a
// candidate needs a majority of each half; losing either half loses.
func TestJointVoteResult(t *testing.T) {
	for _, tc := range []struct {
		name              string
		incoming, out     []pb.NodeID
		granted, rejected []pb.NodeID
		want              VoteResult
	}{
		{"both halves won", ids(1, 2, 3), ids(1, 4, 5), ids(1, 2, 4), nil, VoteWon},
		{"incoming won, outgoing pending", ids(1, 2, 3), ids(1, 4, 5), ids(1, 2), nil, VotePending},
		{"incoming won, outgoing lost", ids(1, 2, 3), ids(1, 4, 5), ids(1, 2), ids(4, 5), VoteLost},
		{"incoming lost, outgoing won", ids(1, 2, 3), ids(1, 4, 5), ids(1, 4), ids(2, 3), VoteLost},
		{"both pending", ids(1, 2, 3), ids(1, 4, 5), ids(1), nil, VotePending},
		{"not joint: the one half decides", ids(1, 2, 3), nil, ids(1, 3), nil, VoteWon},
		{"no voters at all: lost", nil, nil, ids(1), nil, VoteLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := Joint{NewMajority(tc.incoming...), NewMajority(tc.out...)}
			if got := j.VoteResult(votes(tc.granted, tc.rejected)); got != tc.want {
				t.Fatalf("%v granted %v rejected %v: %s, want %s", j, tc.granted, tc.rejected, got, tc.want)
			}
		})
	}
}

// TestActive shows the quorum test used by CheckQuorum and ReadIndex: a
// majority of each half must be active.
func TestActive(t *testing.T) {
	set := func(v ...pb.NodeID) func(pb.NodeID) bool {
		return func(id pb.NodeID) bool { return slices.Contains(v, id) }
	}
	for _, tc := range []struct {
		name          string
		incoming, out []pb.NodeID
		active        []pb.NodeID
		want          bool
	}{
		{"three: two active", ids(1, 2, 3), nil, ids(1, 3), true},
		{"three: one active", ids(1, 2, 3), nil, ids(1), false},
		{"four: two active is not enough", ids(1, 2, 3, 4), nil, ids(1, 2), false},
		{"joint: each half has a majority", ids(1, 2, 3), ids(3, 4, 5), ids(1, 3, 4), true},
		{"joint: outgoing half lacks one", ids(1, 2, 3), ids(3, 4, 5), ids(1, 2, 4), false},
		{"active non-voters do not count", ids(1, 2, 3), nil, ids(1, 7, 8), false},
		{"no voters at all: not active", nil, nil, ids(1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := Joint{NewMajority(tc.incoming...), NewMajority(tc.out...)}
			if got := j.Active(set(tc.active...)); got != tc.want {
				t.Fatalf("%v with %v active: %v, want %v", j, tc.active, got, tc.want)
			}
		})
	}
	if !NewMajority().Active(set()) {
		t.Fatal("an empty half must not restrict")
	}
}

// TestJointMembership shows who votes in a joint configuration: anyone in
// either half, listed once.
func TestJointMembership(t *testing.T) {
	j := Joint{NewMajority(4, 1, 2), NewMajority(2, 3, 1)}
	if !j.IsJoint() {
		t.Fatal("two non-empty halves are joint")
	}
	if got := j.IDs(); !slices.Equal(got, ids(1, 2, 3, 4)) {
		t.Fatalf("IDs = %v, want [1 2 3 4]", got)
	}
	for id, want := range map[pb.NodeID]bool{1: true, 3: true, 4: true, 5: false} {
		if got := j.Contains(id); got != want {
			t.Errorf("Contains(%d) = %v, want %v", id, got, want)
		}
	}
	if (Joint{NewMajority(1, 2, 3), nil}).IsJoint() {
		t.Fatal("an empty outgoing half is not joint")
	}
}
