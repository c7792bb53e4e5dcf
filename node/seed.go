package node

import (
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// SeedConf is the configuration of a new cluster seeded from a backup
// snapshot: the members given are its voters, with their addresses in the
// configuration's Context as the runtime keeps them. The backup's own
// configuration names the members of the cluster it was taken from, which
// the new cluster must not try to reach. Every member seeded with the same
// list computes the same configuration, as Log Matching requires of the
// snapshot they all start from.
func SeedConf(clusterID uint64, members []Member) pb.ConfState {
	meta := clusterMeta{ClusterID: clusterID}
	var cs pb.ConfState
	for _, m := range members {
		m.Voter = true
		meta.Members = append(meta.Members, m)
		cs.Voters = append(cs.Voters, m.ID)
	}
	slices.Sort(cs.Voters)
	cs.Context = meta.encode()
	return cs
}
