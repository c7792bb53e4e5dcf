package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func marksFrom(t *testing.T, lines ...string) *markSet {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := readMarks(path)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// One put at index 5 on a cluster whose leader is member 1: follower 2
// acknowledges first, so its stages are the put's, although its reader
// marked the AppendEntries before the leader's writer did (the two run on
// different cores). Stale marks of index 4 come before.
func TestJoinFollowsThePutThroughTheFollowerThatCompletedTheQuorum(t *testing.T) {
	leader := marksFrom(t,
		"50 proposed 4 0",
		"90 request-read 0 0",
		"100 proposed 5 0",
		"110 append-sent 5 2",
		"112 append-sent 5 3",
		"120 persist-start 5 0",
		"400 persist-done 5 0",
		"420 ack-received 4 2",
		"500 ack-received 5 2",
		"506 ack-stepped 5 2",
		"520 committed 5 0",
		"530 applied 5 0",
		"560 response-written 0 0",
		"600 ack-received 5 3",
		"606 ack-stepped 5 3",
	)
	f2 := marksFrom(t,
		"60 append-received 4 1",
		"109 append-received 5 1",
		"115 append-stepped 5 1",
		"118 persist-start 5 0",
		"450 persist-done 5 0",
		"460 ack-sent 5 1",
	)
	f3 := marksFrom(t,
		"150 append-received 5 1",
		"155 append-stepped 5 1",
		"160 persist-start 5 0",
		"580 persist-done 5 0",
		"585 ack-sent 5 1",
	)
	a := join([]*markSet{leader, f2, f3}, 0, 100, 100)
	if len(a.samples) != 1 || a.skipped != 0 {
		t.Fatalf("followed %d puts, skipped %d; want 1 and 0", len(a.samples), a.skipped)
	}
	s := a.samples[0]
	want := sample{"req": 90, "prop": 100, "sent": 110, "recv": 109, "step": 115, "fpstart": 118, "fpdone": 450,
		"acks": 460, "ackr": 500, "ackstep": 506, "lpstart": 120, "lpdone": 400, "commit": 520, "applied": 530, "resp": 560}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %d, want %d", k, s[k], v)
		}
	}
	if got := a.durations("req", "resp"); len(got) != 1 || got[0] != 470 {
		t.Errorf("request read → answer written = %v, want [470ns]", got)
	}
}

func TestJoinSkipsAPutWithAMissingStage(t *testing.T) {
	leader := marksFrom(t, "90 request-read 0 0", "100 proposed 5 0", "120 persist-start 5 0", "400 persist-done 5 0")
	a := join([]*markSet{leader}, 0, 0, 1000)
	if len(a.samples) != 0 || a.skipped != 1 {
		t.Fatalf("followed %d puts, skipped %d; want 0 and 1", len(a.samples), a.skipped)
	}
}

func TestReadMarksRefusesDroppedMarksAndGarbage(t *testing.T) {
	for _, body := range []string{"# dropped 3\n", "1 proposed x 0\n", "1 proposed\n"} {
		path := filepath.Join(t.TempDir(), "m.txt")
		os.WriteFile(path, []byte(body), 0o644)
		if _, err := readMarks(path); err == nil {
			t.Errorf("readMarks accepted %q", body)
		}
	}
}

// The tail column follows the slowest hundredth of puts end to end, not
// each stage's own slowest: here the slow put spent its time in the
// follower's fdatasync while another put had the slowest apply.
func TestSlowestFollowsTheSlowestPutsEndToEnd(t *testing.T) {
	a := &account{members: 3}
	for i := range 200 {
		s := sample{"req": 0, "fpstart": 10, "fpdone": 110, "commit": 120, "applied": 130, "resp": 140}
		switch i {
		case 7:
			s["fpdone"], s["commit"], s["applied"], s["resp"] = 5010, 5020, 5030, 5040
		case 8:
			s["fpdone"], s["commit"], s["applied"], s["resp"] = 2010, 2020, 2030, 2040
		case 9:
			s["applied"], s["resp"] = 1130, 1140
		}
		a.samples = append(a.samples, s)
	}
	tail := a.slowest()
	if len(tail.samples) != 2 {
		t.Fatalf("slowest kept %d puts of 200, want 2", len(tail.samples))
	}
	if got := mean(tail.durations("fpstart", "fpdone")); got != 3500 {
		t.Errorf("fdatasync mean over the slowest = %v, want 3.5µs", got)
	}
	if got := mean(tail.durations("commit", "applied")); got != 10 {
		t.Errorf("apply mean over the slowest = %v, want 10ns (the slow apply's put is not among them)", got)
	}
	if got := p99(a.durations("fpstart", "fpdone")); got != 2000 {
		t.Errorf("fdatasync p99 = %v, want 2µs", got)
	}
	one := &account{samples: a.samples[:3]}
	if n := len(one.slowest().samples); n != 1 {
		t.Errorf("slowest of 3 puts kept %d, want 1", n)
	}
}
