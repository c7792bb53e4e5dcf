package node

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// Member is one server of the cluster as the replicated configuration
// knows it. The table of members travels in the configuration's Context,
// so addresses are replicated with membership and kept in snapshots.
type Member struct {
	ID         pb.NodeID `json:"id"`
	PeerAddr   string    `json:"peer_addr"`
	ClientAddr string    `json:"client_addr,omitempty"`
	// EtcdAddr is the member's etcd v3 gRPC address, if it serves one.
	EtcdAddr string `json:"etcd_addr,omitempty"`
	Voter    bool   `json:"voter"`
	// Alarm is the alarm the member raised (AlarmNoSpace), empty if none;
	// AlarmCause says why (AlarmCauseDisk, AlarmCauseQuota).
	Alarm      string `json:"alarm,omitempty"`
	AlarmCause string `json:"alarm_cause,omitempty"`
}

// clusterMeta is what the runtime keeps in ConfState.Context.
type clusterMeta struct {
	ClusterID uint64   `json:"cluster_id,omitempty"`
	Members   []Member `json:"members"`
}

func decodeMeta(b []byte) (clusterMeta, error) {
	var m clusterMeta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("node: configuration context: %w", err)
	}
	return m, nil
}

func (m clusterMeta) encode() []byte {
	slices.SortFunc(m.Members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("node: encoding members: %v", err))
	}
	return b
}

func (m clusterMeta) find(id pb.NodeID) (Member, bool) {
	for _, x := range m.Members {
		if x.ID == id {
			return x, true
		}
	}
	return Member{}, false
}

func (m clusterMeta) with(x Member) clusterMeta {
	out := clusterMeta{ClusterID: m.ClusterID}
	for _, y := range m.Members {
		if y.ID != x.ID {
			out.Members = append(out.Members, y)
		}
	}
	out.Members = append(out.Members, x)
	return out
}

// membersOf lists the members of a configuration with their addresses;
// Voter is true for voters in either half.
func membersOf(cs pb.ConfState) []Member {
	meta, _ := decodeMeta(cs.Context)
	ids := append(append(slices.Clone(cs.Voters), cs.VotersOutgoing...), cs.Learners...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]Member, 0, len(ids))
	for _, id := range ids {
		m, _ := meta.find(id)
		m.ID = id
		m.Voter = cs.IsVoter(id)
		out = append(out, m)
	}
	return out
}

// ClusterIDOf derives a cluster id from the initial members, so that every
// member bootstrapped with the same list computes the same id: the first 8
// bytes of SHA-256 over "id=peerAddr" pairs in id order.
func ClusterIDOf(members []Member) uint64 {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	h := sha256.New()
	for i, m := range ms {
		if i > 0 {
			h.Write([]byte{','})
		}
		fmt.Fprintf(h, "%d=%s", m.ID, m.PeerAddr)
	}
	if id := binary.BigEndian.Uint64(h.Sum(nil)); id != 0 {
		return id
	}
	return 1 // 0 means "unknown" to the transport
}
