//go:build cluster

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
)

// monitor polls every member from outside and checks, as it goes:
//   - Election Safety: at most one leader per term (from /v1/cluster; the
//     members' logs are checked again at the end, see leadersFromLogs);
//   - a member's term never goes backwards, restarts included;
//   - a member's applied index never goes backwards within a process;
//   - State Machine Safety: every member applied the same command at each
//     index (server's /debug/applied checksums).
type monitor struct {
	c    *cluster
	stop func()
	done chan struct{}

	mu          sync.Mutex
	violations  []string
	leaders     map[uint64]map[uint64]bool // term -> leader ids seen
	lastTerm    map[int]uint64
	lastApplied map[int]appliedMark
	maxApplied  map[int]uint64 // highest applied index ever reported
	crc         map[uint64]crcSeen
	crcFrom     map[int]uint64 // next index to fetch per member
	polls       int
}

type appliedMark struct {
	gen   int
	index uint64
}

type crcSeen struct {
	crc    uint32
	member int
}

const (
	pollInterval    = 200 * time.Millisecond
	crcEvery        = 5 // polls between checksum fetches
	crcKeepEntries  = 300000
	violationsLimit = 50
)

func startMonitor(c *cluster) *monitor {
	ctx, cancel := context.WithCancel(context.Background())
	mon := &monitor{c: c, stop: cancel, done: make(chan struct{}),
		leaders: map[uint64]map[uint64]bool{}, lastTerm: map[int]uint64{},
		lastApplied: map[int]appliedMark{}, maxApplied: map[int]uint64{},
		crc: map[uint64]crcSeen{}, crcFrom: map[int]uint64{}}
	go func() {
		defer close(mon.done)
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				mon.poll(ctx)
			}
		}
	}()
	prev := mon.stop
	mon.stop = func() { prev(); <-mon.done }
	return mon
}

func (mon *monitor) violate(format string, args ...any) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if len(mon.violations) < violationsLimit {
		mon.violations = append(mon.violations, fmt.Sprintf(format, args...))
	}
}

func (mon *monitor) poll(ctx context.Context) {
	mon.polls++
	fetchCRC := mon.polls%crcEvery == 0
	var wg sync.WaitGroup
	for _, m := range mon.c.running() {
		m.mu.Lock()
		paused, gen := m.paused, m.gen
		m.mu.Unlock()
		if paused {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mon.pollMember(ctx, m, gen, fetchCRC)
		}()
	}
	wg.Wait()
}

func (mon *monitor) pollMember(ctx context.Context, m *member, gen int, fetchCRC bool) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := mon.c.clusterView(cctx, m)
	if err != nil {
		return
	}
	mon.observe(m.id, gen, v.Self)
	if fetchCRC {
		mon.fetchCRC(cctx, m)
	}
}

// observe checks one member's self-report.
func (mon *monitor) observe(id, gen int, s api.Self) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	var bad []string
	if s.Role == api.RoleLeader {
		ids := mon.leaders[s.Term]
		if ids == nil {
			ids = map[uint64]bool{}
			mon.leaders[s.Term] = ids
		}
		ids[s.ID] = true
		if len(ids) > 1 {
			bad = append(bad, fmt.Sprintf("two leaders in term %d: %v", s.Term, keys(ids)))
		}
	}
	if last := mon.lastTerm[id]; s.Term < last {
		bad = append(bad, fmt.Sprintf("member %d: term went back from %d to %d (start %d)", id, last, s.Term, gen))
	}
	mon.lastTerm[id] = max(mon.lastTerm[id], s.Term)
	if last := mon.lastApplied[id]; last.gen == gen && s.AppliedIndex < last.index {
		bad = append(bad, fmt.Sprintf("member %d: applied index went back from %d to %d", id, last.index, s.AppliedIndex))
	}
	mon.lastApplied[id] = appliedMark{gen, s.AppliedIndex}
	mon.maxApplied[id] = max(mon.maxApplied[id], s.AppliedIndex)
	for _, b := range bad {
		if len(mon.violations) < violationsLimit {
			mon.violations = append(mon.violations, b)
		}
	}
}

func keys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// fetchCRC compares the member's applied-command checksums with what the
// other members applied at the same indexes.
func (mon *monitor) fetchCRC(ctx context.Context, m *member) {
	mon.mu.Lock()
	from := mon.crcFrom[m.id]
	mon.mu.Unlock()
	var got struct {
		First uint64   `json:"first"`
		CRC   []uint32 `json:"crc"`
	}
	url := fmt.Sprintf("http://%s/debug/applied?from=%d", m.clientAddr(), from)
	if err := mon.c.getJSON(ctx, url, &got); err != nil {
		return
	}
	mon.mu.Lock()
	defer mon.mu.Unlock()
	for i, sum := range got.CRC {
		idx := got.First + uint64(i)
		seen, ok := mon.crc[idx]
		switch {
		case !ok:
			mon.crc[idx] = crcSeen{sum, m.id}
		case seen.crc != sum && len(mon.violations) < violationsLimit:
			mon.violations = append(mon.violations, fmt.Sprintf(
				"index %d: member %d applied a command with crc %08x, member %d one with crc %08x",
				idx, seen.member, seen.crc, m.id, sum))
		}
	}
	if n := len(got.CRC); n > 0 {
		mon.crcFrom[m.id] = got.First + uint64(n)
	}
	if len(mon.crc) > crcKeepEntries {
		lowest := ^uint64(0)
		for _, f := range mon.crcFrom {
			lowest = min(lowest, f)
		}
		for idx := range mon.crc {
			if idx+crcKeepEntries/2 < lowest {
				delete(mon.crc, idx)
			}
		}
	}
}

// resetCRC makes the next fetch from a restarted member start at its
// oldest remembered command (its ring restarted with the process).
func (mon *monitor) resetCRC(id int) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	delete(mon.crcFrom, id)
}

func (mon *monitor) crcChecked() int {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return len(mon.crc)
}

func (mon *monitor) takeViolations() []string {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return append([]string(nil), mon.violations...)
}

var roleChangedRE = regexp.MustCompile(`msg="role changed" .*\brole=leader\b.*\bterm=(\d+)`)

// leadersFromLogs reads every member's log for the terms it led and
// reports terms led by more than one member.
func leadersFromLogs(c *cluster) (terms int, bad []string) {
	byTerm := map[uint64]map[uint64]bool{}
	for _, m := range c.all() {
		f, err := os.Open(m.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mm := roleChangedRE.FindStringSubmatch(sc.Text())
			if mm == nil {
				continue
			}
			term, _ := strconv.ParseUint(mm[1], 10, 64)
			if byTerm[term] == nil {
				byTerm[term] = map[uint64]bool{}
			}
			byTerm[term][uint64(m.id)] = true
		}
		f.Close()
	}
	for term, ids := range byTerm {
		if len(ids) > 1 {
			bad = append(bad, fmt.Sprintf("logs: term %d led by %v", term, keys(ids)))
		}
	}
	return len(byTerm), bad
}
