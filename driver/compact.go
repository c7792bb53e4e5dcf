package driver

import (
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// CompactPoint picks the snapshot the log is compacted to once meta is
// durable: the newest of behind (the earlier snapshots, oldest first) at
// least trailing entries behind meta; with trailing 0, the previous
// snapshot. It returns it and behind without it and those before it (the
// log will never be compacted to them again); the zero meta when none
// qualifies yet. The node runtime and the simulator both keep the log to
// this rule.
func CompactPoint(behind []pb.SnapshotMeta, meta pb.SnapshotMeta, trailing uint64) (pb.SnapshotMeta, []pb.SnapshotMeta) {
	k := -1
	for i, s := range behind {
		if s.Index < meta.Index && uint64(meta.Index-s.Index) >= trailing {
			k = i
		}
	}
	if k < 0 {
		return pb.SnapshotMeta{}, behind
	}
	to := behind[k] // before Delete, which shifts and clears in place
	return to, slices.Delete(behind, 0, k+1)
}
