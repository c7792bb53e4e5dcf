package transport

import (
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

func ents(term raftpb.Term, from, to raftpb.Index) []raftpb.Entry {
	var out []raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, raftpb.Entry{Term: term, Index: i, Data: []byte{byte(i)}})
	}
	return out
}

func app(prev raftpb.Index, prevTerm raftpb.Term, commit raftpb.Index, es []raftpb.Entry) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgAppendEntries, From: 1, To: 2, Term: 3, Index: prev, LogTerm: prevTerm,
		Commit: commit, Entries: es}
}

func ack(index raftpb.Index) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgAppendEntriesResp, From: 2, To: 1, Term: 3, Index: index}
}

func TestCoalesceJoinsContinuingAppends(t *testing.T) {
	first := ents(3, 11, 12)
	firstCopy := append([]raftpb.Entry(nil), first...)
	batch := []raftpb.Message{
		app(10, 2, 9, first[:2:2]),
		app(12, 3, 10, ents(3, 13, 13)),
		app(13, 3, 12, nil), // commit only
		app(13, 3, 11, ents(3, 14, 15)),
	}
	got := coalesce(batch)
	want := []raftpb.Message{app(10, 2, 12, ents(3, 11, 15))}
	want[0].Entries = append(firstCopy, ents(3, 13, 15)...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !reflect.DeepEqual(first, firstCopy) {
		t.Fatalf("the first message's entries were written to: %v", first)
	}
}

func TestCoalesceLeavesOtherAppendsAlone(t *testing.T) {
	otherTerm := app(12, 3, 10, ents(4, 13, 13))
	otherTerm.Term = 4
	heartbeat := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 10, Context: []byte{0, 0, 0, 0, 0, 0, 0, 1}}
	for name, batch := range map[string][]raftpb.Message{
		"gap":            {app(10, 2, 9, ents(3, 11, 12)), app(13, 3, 9, ents(3, 14, 14))},
		"rewind":         {app(10, 2, 9, ents(3, 11, 12)), app(10, 2, 9, ents(3, 11, 11))},
		"prev term":      {app(10, 2, 9, ents(3, 11, 12)), app(12, 2, 9, ents(3, 13, 13))},
		"term":           {app(10, 2, 9, ents(3, 11, 12)), otherTerm},
		"heartbeat":      {app(10, 2, 9, ents(3, 11, 12)), heartbeat, app(12, 3, 9, ents(3, 13, 13))},
		"reject between": {ack(5), {Type: raftpb.MsgAppendEntriesResp, From: 2, To: 1, Term: 3, Index: 6, Reject: true, Hint: 4}, ack(7)},
		"lower ack":      {ack(9), ack(7)},
	} {
		want := append([]raftpb.Message(nil), batch...)
		if got := coalesce(batch); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want it unchanged", name, got)
		}
	}
}

func TestCoalesceKeepsTheLastOfARunOfAcks(t *testing.T) {
	newer := ack(9)
	newer.Term = 4
	got := coalesce([]raftpb.Message{ack(5), ack(7), ack(7), ack(8), newer, app(10, 2, 9, nil)})
	want := []raftpb.Message{ack(8), newer, app(10, 2, 9, nil)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestCoalesceBoundsTheJoinedSize(t *testing.T) {
	big := func(prev raftpb.Index) raftpb.Message {
		return app(prev, 3, 0, []raftpb.Entry{{Term: 3, Index: prev + 1, Data: make([]byte, coalesceMaxBytes/3)}})
	}
	// Three are just over the bound: the first two join, the third stays.
	got := coalesce([]raftpb.Message{big(10), big(11), big(12)})
	if len(got) != 2 || len(got[0].Entries) != 2 || len(got[1].Entries) != 1 || got[1].Index != 12 {
		t.Fatalf("got %d messages (%v), want the first two joined and the third alone", len(got), got)
	}
}
