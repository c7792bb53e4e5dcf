package main

import (
	"fmt"
	"sort"
	"time"
)

// sample is one put's events (unix nanoseconds) by name.
type sample map[string]int64

// account is the followed puts of one run.
type account struct {
	members   int
	samples   []sample
	skipped   int // puts some stage of which had no mark
	ops       int64
	clientP50 time.Duration
	clientP99 time.Duration
}

// join follows every put the leader proposed between from and to
// through the members' marks. With one client a put is proposed alone,
// so its request is the leader's last one read before the proposal and
// its answer the first one written after the apply. The follower whose
// acknowledgement the leader read first is the one that completed the
// quorum; its stages are the ones on the put's path.
func join(ms []*markSet, leader int, from, to int64) *account {
	a := &account{members: len(ms)}
	L := ms[leader]
	for _, p := range L.by[markKey{proposed, 0}] {
		if p.at < from || p.at > to {
			continue
		}
		s, ok := follow(ms, leader, p)
		if !ok {
			a.skipped++
			continue
		}
		a.samples = append(a.samples, s)
	}
	return a
}

func follow(ms []*markSet, leader int, p mark) (sample, bool) {
	L, i := ms[leader], p.index
	s := sample{"prop": p.at}
	ok := true
	need := func(name string, at int64, found bool) {
		s[name] = at
		ok = ok && found
	}
	at, found := L.last(requestRead, 0, p.at)
	need("req", at, found)
	at, found = L.first(persistStart, 0, p.at, i)
	need("lpstart", at, found)
	at, found = L.first(persistDone, 0, p.at, i)
	need("lpdone", at, found)
	at, found = L.first(committed, 0, p.at, i)
	need("commit", at, found)
	at, found = L.first(applied, 0, p.at, i)
	need("applied", at, found)
	at, found = L.first(responseWritten, 0, s["applied"], 0)
	need("resp", at, found)
	if !ok || len(ms) == 1 {
		return s, ok
	}
	lid := uint64(leader + 1)
	var best sample
	for f := range ms {
		if f == leader {
			continue
		}
		F, fid := ms[f], uint64(f+1)
		fs := sample{}
		fok := true
		step := func(name string, at int64, found bool) {
			fs[name] = at
			fok = fok && found
		}
		at, found := L.first(appendSent, fid, p.at, i)
		step("sent", at, found)
		at, found = F.first(appendReceived, lid, p.at, i)
		step("recv", at, found)
		at, found = F.first(appendStepped, lid, p.at, i)
		step("step", at, found)
		at, found = F.first(persistStart, 0, p.at, i)
		step("fpstart", at, found)
		at, found = F.first(persistDone, 0, p.at, i)
		step("fpdone", at, found)
		at, found = F.first(ackSent, lid, p.at, i)
		step("acks", at, found)
		at, found = L.first(ackReceived, fid, p.at, i)
		step("ackr", at, found)
		at, found = L.first(ackStepped, fid, p.at, i)
		step("ackstep", at, found)
		if fok && (best == nil || fs["ackr"] < best["ackr"]) {
			best = fs
		}
	}
	if best == nil {
		return s, false
	}
	for k, v := range best {
		s[k] = v
	}
	return s, true
}

type stage struct{ what, from, to string }

var (
	replicated = []stage{
		{"leader: request read → proposed (handler → run loop)", "req", "prop"},
		{"leader: proposed → AppendEntries written (run loop → peer writer → socket)", "prop", "sent"},
		{"loopback: AppendEntries written → read by the follower", "sent", "recv"},
		{"follower: read → stepped (reader → run loop)", "recv", "step"},
		{"follower: stepped → WAL write begins (run loop → persister)", "step", "fpstart"},
		{"follower: WAL write + fdatasync", "fpstart", "fpdone"},
		{"follower: durable → acknowledgement written (persister → peer writer → socket)", "fpdone", "acks"},
		{"loopback: acknowledgement written → read by the leader", "acks", "ackr"},
		{"leader: acknowledgement read → stepped (reader → run loop)", "ackr", "ackstep"},
		{"leader: stepped → committed, handed to the applier", "ackstep", "commit"},
		{"leader: committed → applied", "commit", "applied"},
		{"leader: applied → answer written (applier → handler → socket)", "applied", "resp"},
	}
	alone = []stage{
		{"request read → proposed (handler → run loop)", "req", "prop"},
		{"proposed → WAL write begins (run loop → persister)", "prop", "lpstart"},
		{"WAL write + fdatasync", "lpstart", "lpdone"},
		{"durable → committed, handed to the applier (persister → run loop)", "lpdone", "commit"},
		{"committed → applied", "commit", "applied"},
		{"applied → answer written (applier → handler → socket)", "applied", "resp"},
	}
)

func (a *account) durations(from, to string) []time.Duration {
	out := make([]time.Duration, 0, len(a.samples))
	for _, s := range a.samples {
		out = append(out, time.Duration(s[to]-s[from]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func p50(ds []time.Duration) time.Duration { return ds[len(ds)/2] }

func p99(ds []time.Duration) time.Duration { return ds[len(ds)*99/100] }

// slowest returns the samples whose request read → answer written is
// among the slowest hundredth (at least one), so that a stage's mean over
// them shows where the tail's time goes; a stage's own p99 does not, for
// a different put may be the slow one at each stage.
func (a *account) slowest() *account {
	sorted := append([]sample(nil), a.samples...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i]["resp"]-sorted[i]["req"] > sorted[j]["resp"]-sorted[j]["req"]
	})
	return &account{members: a.members, samples: sorted[:max(1, len(sorted)/100)]}
}

func mean(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t / time.Duration(len(ds))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Nanoseconds())/1e3) }

func (a *account) print(members int) {
	stages := replicated
	if members == 1 {
		stages = alone
	}
	fmt.Printf("## %d-member cluster: %d puts, %d followed through every stage\n\n", members, a.ops, len(a.samples))
	tail := a.slowest()
	fmt.Printf("| stage | p50 µs | mean µs | p99 µs | mean µs, slowest %d |\n", len(tail.samples))
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	row := func(what, from, to string) {
		ds := a.durations(from, to)
		fmt.Printf("| %s | %s | %s | %s | %s |\n", what, us(p50(ds)), us(mean(ds)), us(p99(ds)), us(mean(tail.durations(from, to))))
	}
	for _, st := range stages {
		row(st.what, st.from, st.to)
	}
	row("**request read → answer written**", "req", "resp")
	fmt.Printf("| the client's p50 and p99, request written → answer read | %s | | %s | |\n", us(a.clientP50), us(a.clientP99))
	if members > 1 {
		row("beside it: the leader's own WAL write + fdatasync", "lpstart", "lpdone")
		late := 0
		for _, s := range a.samples {
			if s["lpdone"] > s["ackr"] {
				late++
			}
		}
		fmt.Printf("\nThe leader's own fdatasync ended after the acknowledgement was read for %d of %d puts (then it, not the follower, held the commit back).\n", late, len(a.samples))
	}
	fmt.Println()
}
