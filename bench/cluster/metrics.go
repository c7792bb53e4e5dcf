package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RaftCounts are counters a raftkv member publishes on /metrics: the
// Raft messages it handed its transport (to every peer together) and its
// WAL fsyncs.
type RaftCounts struct {
	MessagesSent float64
	Fsyncs       float64
}

// RaftCounts reads each member's counters, member i+1's at index i; a
// member that does not answer gets zeros and an error.
func (c *Cluster) RaftCounts(ctx context.Context) ([]RaftCounts, error) {
	out := make([]RaftCounts, len(c.ClientAddrs))
	var firstErr error
	for i, addr := range c.ClientAddrs {
		rc, err := raftCounts(ctx, addr)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		out[i] = rc
	}
	return out, firstErr
}

func raftCounts(ctx context.Context, addr string) (RaftCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return RaftCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return RaftCounts{}, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	var rc RaftCounts
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, "raftkv_transport_messages_sent_total"):
			rc.MessagesSent += v
		case name == "raftkv_wal_fsync_duration_seconds_count":
			rc.Fsyncs += v
		}
	}
	if err := sc.Err(); err != nil {
		return RaftCounts{}, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	return rc, nil
}

// PerOp is what each member's counters gained from begin to end, divided
// by ops; nil if the two readings do not cover the same members.
func PerOp(begin, end []RaftCounts, ops int64) []RaftCounts {
	if len(begin) != len(end) || ops <= 0 {
		return nil
	}
	out := make([]RaftCounts, len(end))
	for i := range end {
		out[i] = RaftCounts{
			MessagesSent: (end[i].MessagesSent - begin[i].MessagesSent) / float64(ops),
			Fsyncs:       (end[i].Fsyncs - begin[i].Fsyncs) / float64(ops),
		}
	}
	return out
}
