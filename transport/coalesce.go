package transport

import "github.com/raftkv/raftkv/raftpb"

// coalesceMaxBytes bounds the entry bytes of an AppendEntries that
// coalesce builds; messages already larger are left as they are.
const coalesceMaxBytes = 1 << 20

// coalesce rewrites batch, in place, into fewer messages that tell the
// peer the same, and returns the shortened batch. A leader under load
// hands out one AppendEntries per follower per Ready, and a follower one
// answer per AppendEntries, so a peer's queue often holds runs of them:
// each one the receiver steps costs it a trip through its run loop, a
// Ready and, for an AppendEntries, an answer of its own. Two rules:
//
//   - an AppendEntries that continues the one before it (same leader and
//     term, its previous entry the other's last) joins it: one message
//     with both messages' entries and the higher commit index, which is
//     the message the leader would have sent had both batches been in one
//     Ready. (One case differs from receiving both: when the first starts
//     below the follower's commit index the follower skips the joined
//     message entirely, as it would have skipped the first alone, so the
//     second's entries wait for the leader to resend them, as after a lost
//     message.)
//   - a successful AppendEntries answer followed by another in the same
//     term that acknowledges at least as much is dropped: the later one
//     says all it said. Dropping a message is always safe in Raft.
//
// Nothing else is touched, and the order of what remains is kept.
func coalesce(batch []raftpb.Message) []raftpb.Message {
	out := batch[:0]
	for i := 0; i < len(batch); {
		m := batch[i]
		j := i + 1
		switch {
		case m.Type == raftpb.MsgAppendEntries:
			bytes := entryBytes(m.Entries)
			for j < len(batch) && continuesAppend(&batch[j-1], &batch[j]) {
				b := entryBytes(batch[j].Entries)
				if bytes+b > coalesceMaxBytes {
					break
				}
				bytes += b
				j++
			}
			if j > i+1 {
				m = joinAppends(batch[i:j])
			}
		case isAppendAck(&m):
			for j < len(batch) && supersedesAck(&m, &batch[j]) {
				m = batch[j]
				j++
			}
		}
		out = append(out, m)
		i = j
	}
	clear(batch[len(out):]) // let dropped entries go
	return out
}

// continuesAppend reports whether b is an AppendEntries from the same
// leader in the same term whose previous entry is a's last.
func continuesAppend(a, b *raftpb.Message) bool {
	if b.Type != raftpb.MsgAppendEntries || b.From != a.From || b.To != a.To || b.Term != a.Term ||
		len(a.Context) != 0 || len(b.Context) != 0 {
		return false
	}
	lastIndex, lastTerm := a.Index, a.LogTerm
	if n := len(a.Entries); n > 0 {
		lastIndex, lastTerm = a.Entries[n-1].Index, a.Entries[n-1].Term
	}
	return b.Index == lastIndex && b.LogTerm == lastTerm
}

// joinAppends is one AppendEntries carrying what the run ms (each
// continuing the one before) carries: the first one's previous entry,
// every entry in order, the highest commit index.
func joinAppends(ms []raftpb.Message) raftpb.Message {
	n := 0
	for i := range ms {
		n += len(ms[i].Entries)
	}
	// A new array: the entries' slices belong to the sender's log.
	ents := make([]raftpb.Entry, 0, n)
	m := ms[0]
	for i := range ms {
		ents = append(ents, ms[i].Entries...)
		m.Commit = max(m.Commit, ms[i].Commit)
	}
	if n > 0 {
		m.Entries = ents
	}
	return m
}

func isAppendAck(m *raftpb.Message) bool {
	return m.Type == raftpb.MsgAppendEntriesResp && !m.Reject && len(m.Context) == 0
}

// supersedesAck reports whether b, coming after the successful answer a,
// acknowledges at least as much in the same term.
func supersedesAck(a, b *raftpb.Message) bool {
	return isAppendAck(b) && b.From == a.From && b.To == a.To && b.Term == a.Term && b.Index >= a.Index
}

func entryBytes(ents []raftpb.Entry) uint64 {
	var n uint64
	for i := range ents {
		n += ents[i].Size()
	}
	return n
}
