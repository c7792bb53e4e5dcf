package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// histogram is the running sum and count of a Prometheus histogram.
type histogram struct{ sum, count float64 }

func (l *lab) histogram(m *member, name, match string) (histogram, error) {
	s, err := l.metric(m, name+"_sum", match)
	if err != nil {
		return histogram{}, err
	}
	c, err := l.metric(m, name+"_count", match)
	return histogram{s, c}, err
}

// timeStages runs one client for d per workload and prints, per stage, the
// time the servers' own histograms saw against what the client saw.
func (l *lab) timeStages(d time.Duration) error {
	lead := l.leader()
	if lead == nil {
		return fmt.Errorf("no leader to time")
	}
	// One endpoint, the leader's: no redirects in the timings.
	cl, err := client.New(client.Config{Endpoints: []string{lead.client}, MaxBatchOps: 1})
	if err != nil {
		return err
	}
	defer cl.Close()
	value := make([]byte, 256)
	type stage struct {
		name   string
		metric string
		match  string
		on     []*member
	}
	others := []*member{}
	for _, id := range l.ids() {
		if m := l.members[id]; m != lead && m.cmd != nil {
			others = append(others, m)
		}
	}
	workloads := []struct {
		name   string
		op     func(ctx context.Context, i int) error
		stages []stage
	}{
		{"put", func(ctx context.Context, i int) error {
			_, err := cl.Put(ctx, fmt.Sprintf("stages/%d", i%1000), value)
			return err
		}, []stage{
			{"leader: proposal to applied (node.Propose)", "raftkv_proposal_duration_seconds", "", []*member{lead}},
			{"leader: WAL write + fdatasync", "raftkv_wal_fsync_duration_seconds", "", []*member{lead}},
			{"followers: WAL write + fdatasync", "raftkv_wal_fsync_duration_seconds", "", others},
		}},
		{"get, linearizable", func(ctx context.Context, i int) error {
			_, err := cl.Get(ctx, fmt.Sprintf("stages/%d", i%1000), client.WithConsistency(api.Linearizable))
			return err
		}, []stage{
			{"leader: ReadIndex barrier (node.ReadIndex)", "raftkv_read_index_duration_seconds", `consistency="linearizable"`, []*member{lead}},
		}},
		{"get, stale (no Raft: HTTP and the store)", func(ctx context.Context, i int) error {
			_, err := cl.Get(ctx, fmt.Sprintf("stages/%d", i%1000), client.WithConsistency(api.Stale))
			if err != nil && client.IsNotFound(err) {
				return nil
			}
			return err
		}, nil},
	}
	fmt.Printf("\nstage times, one client against the leader (member %d), %v per workload:\n\n", lead.id, d)
	fmt.Println("| workload | stage | mean µs | p50 µs |")
	fmt.Println("| --- | --- | ---: | ---: |")
	for _, w := range workloads {
		before := make([][]histogram, len(w.stages))
		for i, st := range w.stages {
			for _, m := range st.on {
				h, err := l.histogram(m, st.metric, st.match)
				if err != nil {
					return err
				}
				before[i] = append(before[i], h)
			}
		}
		var lat []time.Duration
		ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			start := time.Now()
			if err := w.op(ctx, i); err != nil {
				cancel()
				return fmt.Errorf("%s: %w", w.name, err)
			}
			lat = append(lat, time.Since(start))
		}
		cancel()
		slices.Sort(lat)
		var total time.Duration
		for _, x := range lat {
			total += x
		}
		fmt.Printf("| %s | whole call, as the client saw it (%d calls) | %.0f | %.0f |\n", w.name, len(lat),
			float64(total.Microseconds())/float64(len(lat)), float64(lat[len(lat)/2].Microseconds()))
		for i, st := range w.stages {
			var sum, n float64
			for j, m := range st.on {
				h, err := l.histogram(m, st.metric, st.match)
				if err != nil {
					return err
				}
				sum += h.sum - before[i][j].sum
				n += h.count - before[i][j].count
			}
			mean := 0.0
			if n > 0 {
				mean = sum / n * 1e6
			}
			fmt.Printf("| %s | %s | %.0f | – |\n", w.name, st.name, mean)
		}
	}
	return nil
}
