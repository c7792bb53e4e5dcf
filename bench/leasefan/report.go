package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/raftkv/raftkv/bench/cluster"
)

// row is one path measured on one store.
type row struct {
	store, path string
	answers     int64 // keep-alives answered in the window
	perSec      float64
	p50, p99    time.Duration
	errors      int64
	firstErr    error
	check       check
	// CPU over the window: the members together, this process, and the
	// rest of the machine, in cores; and the members' per keep-alive.
	memberCores, loadgenCores, otherCores float64
	memberCPUPerKA                        time.Duration
}

func (r row) failures() int64 { return r.errors + int64(r.check.bad) }

// startFunc starts a row's workers, which keep the leases alive until
// win.to, and returns the wait for their result.
type startFunc func(ctx context.Context, a *acks, win window) (func() *result, error)

// measure runs one row on cluster c: warm-up, measured window (with the
// CPU times sampled at both ends), then a check of every lease.
func measure(ctx context.Context, c *cluster.Cluster, o options, ids []int64, path string, start startFunc) (row, error) {
	a := &acks{sent: make([]atomic.Int64, len(ids))}
	now := time.Now()
	win := window{from: now.Add(o.warmup), to: now.Add(o.warmup + o.duration)}
	rctx, cancel := context.WithDeadline(ctx, win.to.Add(30*time.Second))
	defer cancel()
	type sample struct{ members, self, system time.Duration }
	take := func() sample { return sample{c.CPUTime(), cluster.SelfCPU(), cluster.SystemBusy()} }
	samples := make(chan [2]sample, 1)
	go func() {
		var s [2]sample
		for i, at := range []time.Time{win.from, win.to} {
			select {
			case <-rctx.Done():
			case <-time.After(time.Until(at)):
			}
			s[i] = take()
		}
		samples <- s
	}()
	profiled := profile(rctx, c, o, path, win)
	wait, err := start(rctx, a, win)
	if err != nil {
		return row{}, err
	}
	res := wait()
	s := <-samples
	profiled()
	if err := ctx.Err(); err != nil {
		return row{}, err
	}
	r := summarize(c.Name, path, res, o.duration)
	secs := o.duration.Seconds()
	members, self := s[1].members-s[0].members, s[1].self-s[0].self
	r.memberCores, r.loadgenCores = members.Seconds()/secs, self.Seconds()/secs
	r.otherCores = max(0, (s[1].system-s[0].system-members-self).Seconds()) / secs
	if r.answers > 0 {
		r.memberCPUPerKA = members / time.Duration(r.answers)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return row{}, err
	}
	if r.check, err = checkLeases(ctx, c.EtcdAddrs[leader], ids, o.ttl, a); err != nil {
		return row{}, err
	}
	fmt.Fprintf(os.Stderr, "%-6s %-36s %8.0f keep-alives/s  p50 %-9v p99 %-9v errors %d  leases bad %d of %d, too late to tell %d (min TTL left %d s)  members %.2f cores, %v/keep-alive  loadgen %.2f  other %.2f cores\n",
		r.store, r.path, r.perSec, r.p50, r.p99, r.errors, r.check.bad, r.check.checked, r.check.late, r.check.minLeft,
		r.memberCores, r.memberCPUPerKA, r.loadgenCores, r.otherCores)
	if r.firstErr != nil {
		fmt.Fprintf(os.Stderr, "       first error: %v\n", r.firstErr)
	}
	if r.check.firstBad != nil {
		fmt.Fprintf(os.Stderr, "       first bad lease: %v\n", r.check.firstBad)
	}
	if r.answers == 0 {
		return r, fmt.Errorf("%s: %w", path, errNoAnswers)
	}
	return r, nil
}

func summarize(store, path string, res *result, d time.Duration) row {
	h := hdrhistogram.New(1, latencyMaxMicros, 3)
	var n int64
	for i, wh := range res.hists {
		h.Merge(wh)
		n += res.answers[i]
	}
	r := row{store: store, path: path, answers: n, perSec: float64(n) / d.Seconds(),
		p50:    time.Duration(h.ValueAtQuantile(50)) * time.Microsecond,
		p99:    time.Duration(h.ValueAtQuantile(99)) * time.Microsecond,
		errors: res.errors.Load()}
	if p := res.firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	return r
}

// profile, with -profile and on raftkv, saves a CPU profile of every
// member over the window; the returned func waits for them.
func profile(ctx context.Context, c *cluster.Cluster, o options, path string, win window) func() {
	if o.profileDir == "" || c.Name != "raftkv" {
		return func() {}
	}
	slug := strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "", "'", "").Replace(strings.ToLower(path))
	var wg sync.WaitGroup
	for i, addr := range c.ClientAddrs {
		file := filepath.Join(o.profileDir, fmt.Sprintf("raftkv-%s-member%d.pprof", slug, i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(win.from)):
			}
			if err := cluster.FetchProfile(ctx, addr, file, o.duration); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "warning: profile of member %d: %v\n", i+1, err)
			}
		}()
	}
	return wg.Wait
}

// printReport writes the settings and a Markdown table of the rows, with
// raftkv's throughput over etcd's for each path both ran.
func printReport(w io.Writer, o options, start time.Time, loadBefore, loadAfter string, rows []row) {
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	fmt.Fprintf(w, "# lease keep-alives, raftkv vs etcd, %s\n", start.Format(time.RFC3339))
	fmt.Fprintf(w, "- %s; 3 members each on 127.0.0.1, fsync on; load generator on the same machine\n", strings.TrimSpace(string(goVersion)))
	fmt.Fprintf(w, "- %d leases of %d s; gRPC: %d connections × %d LeaseKeepAlive streams, %d keep-alives in flight per stream; HTTP: %d callers\n",
		o.leases, o.ttl, o.conns, o.streams, o.window, o.httpClients)
	fmt.Fprintf(w, "- %v warm-up + %v measured per row\n", o.warmup, o.duration)
	fmt.Fprintf(w, "- load average before → after: %s → %s\n\n", loadBefore, loadAfter)
	fmt.Fprintln(w, "| store | path | keep-alives/s | p50 | p99 | errors | leases checked after (bad, least TTL left) | members' CPU (cores) | members' CPU per keep-alive | load generator (cores) | other processes (cores) |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		late := ""
		if r.check.late > 0 {
			late = fmt.Sprintf(", %d too late to tell", r.check.late)
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %v | %v | %d | %d (%d bad%s, %d s) | %.2f | %v | %.2f | %.2f |\n",
			r.store, r.path, r.perSec, roundLatency(r.p50), roundLatency(r.p99), r.errors,
			r.check.checked, r.check.bad, late, r.check.minLeft, r.memberCores, r.memberCPUPerKA.Round(100*time.Nanosecond), r.loadgenCores, r.otherCores)
	}
	var ratios []string
	for _, a := range rows {
		for _, b := range rows {
			if a.store == "raftkv" && b.store == "etcd" && a.path == b.path && b.perSec > 0 {
				ratios = append(ratios, fmt.Sprintf("%s: %.2f×", a.path, a.perSec/b.perSec))
			}
		}
	}
	if len(ratios) > 0 {
		fmt.Fprintf(w, "\nraftkv÷etcd keep-alives/s: %s\n", strings.Join(ratios, "; "))
	}
}

func roundLatency(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
