package sim

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TraceLen is how many of the latest events a failure report shows.
const TraceLen = 200

type evKind uint8

const (
	evDeliver evKind = iota
	evDrop
	evDup
	evRole
	evCrash
	evRestart
	evPropose
	evCommit
	evRead
	evTransfer
	evConf
	evPartition
	evHeal
	evSnapshot
	evInstall
	evSyncFail
	evNote
)

// event is one line of the trace. It is kept as plain fields and formatted
// only when a failure is reported, so tracing costs little when nothing
// fails.
type event struct {
	tick    uint64
	kind    evKind
	node    pb.NodeID
	msg     pb.Message
	a, b, c uint64
	text    string
}

// trace keeps the last len(ring) events and a digest of all of them; two
// runs of one seed must produce the same digest.
type trace struct {
	now    *uint64
	ring   []event
	n      uint64
	digest uint64
	buf    [96]byte
}

func (t *trace) add(e event) {
	e.tick = *t.now
	t.ring[t.n%uint64(len(t.ring))] = e
	t.n++
	b := t.buf[:0]
	b = binary.LittleEndian.AppendUint64(b, e.tick)
	b = append(b, byte(e.kind), byte(e.msg.Type), boolByte(e.msg.Reject))
	for _, v := range [...]uint64{uint64(e.node), uint64(e.msg.From), uint64(e.msg.To),
		uint64(e.msg.Term), uint64(e.msg.LogTerm), uint64(e.msg.Index), uint64(e.msg.Commit),
		uint64(len(e.msg.Entries)), e.a, e.b, e.c} {
		b = binary.AppendUvarint(b, v)
	}
	h := t.digest
	for _, x := range b {
		h = (h ^ uint64(x)) * 1099511628211
	}
	for i := 0; i < len(e.text); i++ {
		h = (h ^ uint64(e.text[i])) * 1099511628211
	}
	t.digest = mix64(h)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// String formats the retained events, oldest first.
func (t *trace) String() string {
	var sb strings.Builder
	size := uint64(len(t.ring))
	start := uint64(0)
	if t.n > size {
		start = t.n - size
	}
	for i := start; i < t.n; i++ {
		sb.WriteString(t.ring[i%size].String())
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (e event) String() string {
	p := fmt.Sprintf("t%-5d ", e.tick)
	switch e.kind {
	case evDeliver:
		return p + "deliver  " + e.msg.String()
	case evDrop:
		return p + "drop     " + e.msg.String() + " (" + e.text + ")"
	case evDup:
		return p + "dup      " + e.msg.String()
	case evRole:
		return p + fmt.Sprintf("role     %d is %s in term %d (leader %d)", e.node, raft.Role(e.a), e.b, e.c)
	case evCrash:
		return p + fmt.Sprintf("CRASH    %d (%s)", e.node, e.text)
	case evRestart:
		return p + fmt.Sprintf("RESTART  %d at term %d", e.node, e.b)
	case evPropose:
		return p + fmt.Sprintf("propose  %d: %d commands at %d/%d%s", e.node, e.c, e.a, e.b, e.text)
	case evCommit:
		return p + fmt.Sprintf("commit   %d/%d first applied by %d %s", e.a, e.b, e.node, e.text)
	case evRead:
		return p + fmt.Sprintf("read     %d: %s", e.node, e.text)
	case evTransfer:
		return p + fmt.Sprintf("transfer %d -> %d %s", e.node, e.a, e.text)
	case evConf:
		return p + fmt.Sprintf("conf     %d: %s", e.node, e.text)
	case evPartition:
		return p + "network  " + e.text
	case evHeal:
		return p + "network  healed " + e.text
	case evSnapshot:
		return p + fmt.Sprintf("snapshot %d at %d/%d, log compacted to %d", e.node, e.a, e.b, e.c)
	case evInstall:
		return p + fmt.Sprintf("install  %d restores snapshot %d/%d", e.node, e.a, e.b)
	case evSyncFail:
		return p + fmt.Sprintf("fault    %d: next %s fails", e.node, e.text)
	default:
		return p + fmt.Sprintf("note     %d: %s", e.node, e.text)
	}
}

// stateDump describes every replica as a failure report's epilogue.
func (s *Sim) stateDump() string {
	var sb strings.Builder
	for _, r := range s.reps {
		if !r.up() {
			fmt.Fprintf(&sb, "replica %d: down until t%d, durable %+v\n", r.id, r.downUntil, r.store.DurableHardState())
			continue
		}
		st := r.core.Status()
		fmt.Fprintf(&sb, "replica %d: %s term=%d vote=%d lead=%d commit=%d applied=%d log=[%d,%d] conf=%s\n",
			r.id, st.Role, st.Term, st.Vote, st.Lead, st.Commit, st.Applied, st.FirstIndex, st.LastIndex, st.Conf)
		for _, id := range sortedIDs(st.Progress) {
			pr := st.Progress[id]
			fmt.Fprintf(&sb, "    progress %d: %+v\n", id, pr)
		}
	}
	return sb.String()
}

func sortedIDs(m map[pb.NodeID]raft.ProgressStatus) []pb.NodeID {
	ids := make([]pb.NodeID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
