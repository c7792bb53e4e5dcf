package driver

import (
	"slices"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

func TestCompactPoint(t *testing.T) {
	snap := func(i pb.Index) pb.SnapshotMeta { return pb.SnapshotMeta{Index: i, Term: 1} }
	cases := []struct {
		behind   []pb.Index
		meta     pb.Index
		trailing uint64
		want     pb.Index
		left     []pb.Index
	}{
		{nil, 10, 0, 0, nil},                                 // the first snapshot: nothing to compact to
		{[]pb.Index{10}, 20, 0, 10, []pb.Index{}},            // default: the previous one
		{[]pb.Index{10, 20, 30}, 40, 0, 30, []pb.Index{}},    // the newest earlier one
		{[]pb.Index{10, 20, 30}, 40, 15, 20, []pb.Index{30}}, // at least 15 behind 40
		{[]pb.Index{10, 20, 30}, 40, 35, 0, []pb.Index{10, 20, 30}},
		{[]pb.Index{50}, 40, 0, 0, []pb.Index{50}}, // not behind meta (a restored newer one)
	}
	for _, c := range cases {
		var behind []pb.SnapshotMeta
		for _, i := range c.behind {
			behind = append(behind, snap(i))
		}
		to, left := CompactPoint(behind, snap(c.meta), c.trailing)
		var got []pb.Index
		for _, s := range left {
			got = append(got, s.Index)
		}
		if to.Index != c.want || !slices.Equal(got, c.left) && len(got)+len(c.left) > 0 {
			t.Errorf("CompactPoint(%v, %d, %d) = %d, %v; want %d, %v", c.behind, c.meta, c.trailing, to.Index, got, c.want, c.left)
		}
	}
}
