package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// stagetraceDirEnv and the stage names are internal/stagetrace's (the
// bench module cannot import the main module's internal packages).
const stagetraceDirEnv = "RAFTKV_STAGES_DIR"

const (
	requestRead     = "request-read"
	proposed        = "proposed"
	appendSent      = "append-sent"
	appendReceived  = "append-received"
	appendStepped   = "append-stepped"
	persistStart    = "persist-start"
	persistDone     = "persist-done"
	ackSent         = "ack-sent"
	ackReceived     = "ack-received"
	ackStepped      = "ack-stepped"
	committed       = "committed"
	applied         = "applied"
	responseWritten = "response-written"
)

// mark is one line of a member's file.
type mark struct {
	at          int64 // unix nanoseconds
	index, peer uint64
}

type markKey struct {
	stage string
	peer  uint64
}

// markSet is one member's marks by stage and peer, each in time order.
type markSet struct {
	by map[markKey][]mark
}

func readMarks(path string) (*markSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("marks: %w (is the binary built with -tags stagetrace?)", err)
	}
	defer f.Close()
	ms := &markSet{by: map[markKey][]mark{}}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := sc.Text()
		if strings.HasPrefix(t, "#") {
			return nil, fmt.Errorf("%s:%d: %s: the member could not keep up with its marks", path, line, t)
		}
		fs := strings.Fields(t)
		if len(fs) != 4 {
			return nil, fmt.Errorf("%s:%d: malformed mark %q", path, line, t)
		}
		at, err1 := strconv.ParseInt(fs[0], 10, 64)
		index, err2 := strconv.ParseUint(fs[2], 10, 64)
		peer, err3 := strconv.ParseUint(fs[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("%s:%d: malformed mark %q", path, line, t)
		}
		k := markKey{fs[1], peer}
		ms.by[k] = append(ms.by[k], mark{at, index, peer})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range ms.by {
		sort.Slice(s, func(i, j int) bool { return s[i].at < s[j].at })
	}
	return ms, nil
}

// first is the earliest mark of stage (to or from peer) at or after
// time at that reached index; ok is false if there is none.
func (ms *markSet) first(stage string, peer uint64, at int64, index uint64) (int64, bool) {
	s := ms.by[markKey{stage, peer}]
	for i := sort.Search(len(s), func(i int) bool { return s[i].at >= at }); i < len(s); i++ {
		if s[i].index >= index {
			return s[i].at, true
		}
	}
	return 0, false
}

// last is the latest mark of stage at or before time at.
func (ms *markSet) last(stage string, peer uint64, at int64) (int64, bool) {
	s := ms.by[markKey{stage, peer}]
	i := sort.Search(len(s), func(i int) bool { return s[i].at > at })
	if i == 0 {
		return 0, false
	}
	return s[i-1].at, true
}
