package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Store is one backend: a put and a get of one key. The read level (for
// example linearizable or serializable) is fixed when the Store is made.
type Store interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) error
	// Txn3 is one transaction: three compares (each key's mod revision
	// below 2^60, so they hold) and three puts of value, on key+"/0",
	// key+"/1" and key+"/2".
	Txn3(ctx context.Context, key string, value []byte) error
	Close() error
}

// Op is the operation every client repeats.
type Op string

// The operations.
const (
	OpPut  Op = "put"
	OpGet  Op = "get"
	OpTxn3 Op = "txn3" // 3 compares + 3 puts
)

// Limits on a Config, so a typo cannot start a million goroutines.
const (
	clientsMax   = 4096
	keysMax      = 10_000_000
	valueSizeMax = 1 << 20
	// opTimeout bounds one operation; a stalled cluster shows up as
	// errors rather than a hung run.
	opTimeout = 10 * time.Second
	// latencyMaxMicros is the histogram's upper bound (60 s).
	latencyMaxMicros = 60_000_000
)

// Config is one workload. Zero fields take the defaults noted.
type Config struct {
	Op      Op
	Clients int           // concurrent clients, each with one operation in flight
	Warmup  time.Duration // run, but not measured, before Duration starts
	// Duration is the measured time. Default 10s.
	Duration  time.Duration
	ValueSize int    // bytes per value. Default 256.
	Keys      int    // keys are chosen uniformly from this many. Default 10000.
	KeyPrefix string // default "bench/"
}

func (c *Config) setDefaults() error {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.ValueSize <= 0 {
		c.ValueSize = 256
	}
	if c.Keys <= 0 {
		c.Keys = 10_000
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/"
	}
	switch {
	case c.Op != OpPut && c.Op != OpGet && c.Op != OpTxn3:
		return fmt.Errorf("loadgen: op %q: want put, get or txn3", c.Op)
	case c.Clients <= 0 || c.Clients > clientsMax:
		return fmt.Errorf("loadgen: %d clients: want 1 to %d", c.Clients, clientsMax)
	case c.Keys > keysMax:
		return fmt.Errorf("loadgen: %d keys: at most %d", c.Keys, keysMax)
	case c.ValueSize > valueSizeMax:
		return fmt.Errorf("loadgen: %d-byte values: at most %d", c.ValueSize, valueSizeMax)
	}
	return nil
}

// Key returns the i-th key of the workload's key space.
func (c *Config) Key(i int) string { return fmt.Sprintf("%s%08d", c.KeyPrefix, i) }

// Value returns a value of ValueSize bytes.
func (c *Config) Value() []byte {
	v := make([]byte, c.ValueSize)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// Result is what one workload measured. Latencies are of successful
// operations only; failed ones are counted in Errors.
type Result struct {
	Ops       int64 // successful operations in the measured window
	Errors    int64
	FirstErr  error
	Elapsed   time.Duration
	OpsPerSec float64
	P50, P90  time.Duration
	P99, Max  time.Duration
}

// Run runs cfg against s and returns what it measured.
func Run(ctx context.Context, s Store, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	value := cfg.Value()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	hists := make([]*hdrhistogram.Histogram, cfg.Clients)
	var errCount atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		hists[w] = hdrhistogram.New(1, latencyMaxMicros, 3)
		wg.Add(1)
		cs := forClient(s, w)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := once(ctx, cs, cfg.Op, cfg.Key(rng.IntN(cfg.Keys)), value)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				// RecordValue fails only above the bound; clamp instead.
				_ = hists[w].RecordValue(min(max(1, time.Since(t0).Microseconds()), latencyMaxMicros))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return summarize(hists, errCount.Load(), firstErr.Load(), time.Since(measureFrom)), nil
}

func once(ctx context.Context, s Store, op Op, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	switch op {
	case OpGet:
		return s.Get(ctx, key)
	case OpTxn3:
		return s.Txn3(ctx, key, value)
	}
	return s.Put(ctx, key, value)
}

func summarize(hists []*hdrhistogram.Histogram, errs int64, firstErr *error, elapsed time.Duration) Result {
	h := hdrhistogram.New(1, latencyMaxMicros, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	at := func(q float64) time.Duration { return time.Duration(h.ValueAtQuantile(q)) * time.Microsecond }
	r := Result{
		Ops: h.TotalCount(), Errors: errs, Elapsed: elapsed,
		OpsPerSec: float64(h.TotalCount()) / elapsed.Seconds(),
		P50:       at(50), P90: at(90), P99: at(99),
		Max: time.Duration(h.Max()) * time.Microsecond,
	}
	if firstErr != nil {
		r.FirstErr = *firstErr
	}
	return r
}

// fillWorkers is how many puts Fill keeps in flight.
const fillWorkers = 64

// Fill writes every key of cfg's key space once, so gets find values.
func Fill(ctx context.Context, s Store, cfg Config) error {
	cfg.Op, cfg.Clients = OpPut, 1
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	value := cfg.Value()
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := range fillWorkers {
		cs := forClient(s, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= cfg.Keys {
					return
				}
				if err := once(ctx, cs, OpPut, cfg.Key(i), value); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("put %s: %w", cfg.Key(i), err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	errs = append(errs, ctx.Err())
	return errors.Join(errs...)
}
