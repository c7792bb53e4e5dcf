package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

type benchFlags struct {
	op          string
	consistency string
	clients     int
	duration    time.Duration
	count       int64
	valueSize   int
	keys        int
	readRatio   float64
	prefix      string
	batchOps    int
	inflight    int
}

func newBenchCmd(g *globals) *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Generate load and report throughput and latency percentiles",
		Long: `Run N concurrent clients against --endpoints for a fixed duration or
count: put, get (at --consistency) or mixed (--read-ratio gets). Prints a
live progress line, then throughput and an HDR latency histogram.`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			switch {
			case f.op != "put" && f.op != "get" && f.op != "mixed":
				return fmt.Errorf("--op %q: want put, get or mixed", f.op)
			case f.clients <= 0 || f.keys <= 0 || f.valueSize < 0:
				return errors.New("--clients and --keys must be positive, --value-size not negative")
			case f.readRatio < 0 || f.readRatio > 1:
				return errors.New("--read-ratio must be within [0, 1]")
			case f.duration <= 0 && f.count <= 0:
				return errors.New("give a positive --duration or --count")
			}
			return checkConsistency(f.consistency)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			tlsCfg, err := loadTLS(g.tlsCert, g.tlsKey, g.tlsCA)
			if err != nil {
				return err
			}
			c, err := client.New(client.Config{Endpoints: splitList(g.endpoints), TLS: tlsCfg,
				RequestTimeout: g.timeout, MaxConnsPerHost: f.clients + 16,
				MaxBatchOps: f.batchOps, MaxBatchInflight: f.inflight})
			if err != nil {
				return err
			}
			defer c.Close()
			return failed(runBench(cmd.Context(), c, f, cmd.OutOrStdout(), cmd.ErrOrStderr(), g.output == "json"))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.op, "op", "put", "put, get or mixed")
	fl.StringVar(&f.consistency, "consistency", api.Linearizable, "read level for get: linearizable, lease or stale")
	fl.IntVar(&f.clients, "clients", 16, "concurrent clients")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to run (ignored with --count)")
	fl.Int64Var(&f.count, "count", 0, "total operations to run (overrides --duration)")
	fl.IntVar(&f.valueSize, "value-size", 256, "value bytes")
	fl.IntVar(&f.keys, "keys", 10000, "distinct keys")
	fl.Float64Var(&f.readRatio, "read-ratio", 0.9, "fraction of gets in --op mixed")
	fl.StringVar(&f.prefix, "key-prefix", "bench/", "prefix of the keys")
	fl.IntVar(&f.batchOps, "batch-ops", client.DefaultMaxBatchOps, "most calls the client coalesces into one /v1/batch request (1: no batching)")
	fl.IntVar(&f.inflight, "batch-inflight", client.DefaultMaxBatchInflight, "requests of a kind in flight before calls queue up for a batch")
	return cmd
}

type benchResult struct {
	Op          string  `json:"op"`
	Consistency string  `json:"consistency,omitempty"`
	Clients     int     `json:"clients"`
	ValueSize   int     `json:"value_size"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50us       int64   `json:"p50_us"`
	P90us       int64   `json:"p90_us"`
	P99us       int64   `json:"p99_us"`
	P999us      int64   `json:"p999_us"`
	MaxUs       int64   `json:"max_us"`
}

func runBench(ctx context.Context, c *client.Client, f *benchFlags, out, progress io.Writer, asJSON bool) error {
	value := make([]byte, f.valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	key := func(i int) string { return fmt.Sprintf("%s%08d", f.prefix, i) }
	if f.op != "put" {
		if err := fill(ctx, c, f, key, value); err != nil {
			return fmt.Errorf("filling %d keys: %w", f.keys, err)
		}
	}
	var ops, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(f.duration)
	hists := make([]*hdrhistogram.Histogram, f.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range f.clients {
		hists[w] = hdrhistogram.New(1, 60_000_000, 3) // 1µs .. 60s
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for {
				if f.count > 0 {
					if ops.Add(1) > f.count {
						ops.Add(-1)
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				k := key(rng.IntN(f.keys))
				t0 := time.Now()
				var err error
				if f.op == "get" || (f.op == "mixed" && rng.Float64() < f.readRatio) {
					_, err = c.Get(ctx, k, client.WithConsistency(f.consistency))
				} else {
					_, err = c.Put(ctx, k, value)
				}
				hists[w].RecordValue(max(1, time.Since(t0).Microseconds()))
				if f.count <= 0 {
					ops.Add(1)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	stopProgress := showProgress(progress, start, &ops, &errs)
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start)
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	r := benchResult{
		Op: f.op, Clients: f.clients, ValueSize: f.valueSize, Ops: ops.Load(), Errors: errs.Load(),
		Seconds: elapsed.Seconds(), OpsPerSec: float64(ops.Load()) / elapsed.Seconds(),
		P50us: h.ValueAtQuantile(50), P90us: h.ValueAtQuantile(90), P99us: h.ValueAtQuantile(99),
		P999us: h.ValueAtQuantile(99.9), MaxUs: h.Max(),
	}
	if f.op != "put" {
		r.Consistency = f.consistency
	}
	if p := firstErr.Load(); p != nil {
		fmt.Fprintf(progress, "first error: %v\n", *p)
	}
	return printBench(out, r, asJSON)
}

// fill writes every key once so gets find values.
func fill(ctx context.Context, c *client.Client, f *benchFlags, key func(int) string, value []byte) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range min(f.clients, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= f.keys || firstErr.Load() != nil {
					return
				}
				if _, err := c.Put(ctx, key(i), value); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// showProgress rewrites one status line every second until stopped.
func showProgress(w io.Writer, start time.Time, ops, errs *atomic.Int64) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				n := ops.Load()
				fmt.Fprintf(w, "\r\033[K%5.0fs  ops %d  %d/s  errors %d", time.Since(start).Seconds(), n, n-last, errs.Load())
				last = n
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func printBench(w io.Writer, r benchResult, asJSON bool) error {
	if asJSON {
		return jsonTo(w, r)
	}
	what := r.Op
	if r.Consistency != "" {
		what += " (" + r.Consistency + ")"
	}
	fmt.Fprintf(w, "%s: %d clients, %d-byte values\n", what, r.Clients, r.ValueSize)
	fmt.Fprintf(w, "  %d ops in %.1fs = %.0f ops/s, %d errors\n", r.Ops, r.Seconds, r.OpsPerSec, r.Errors)
	fmt.Fprintf(w, "  latency  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		us(r.P50us), us(r.P90us), us(r.P99us), us(r.P999us), us(r.MaxUs))
	return nil
}

func us(v int64) string { return (time.Duration(v) * time.Microsecond).String() }
