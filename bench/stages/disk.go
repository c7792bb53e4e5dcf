package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// entryBytes is about what one put adds to a WAL: the 256-byte value, its
// key and the record's framing.
const entryBytes = 300

// measureDisk measures what a put's fdatasync costs when one, two, ...
// members sync at once on this disk: each writer appends entryBytes into
// its own zero-filled file (as the WAL appends into a preallocated
// segment) and fdatasyncs, pausing between syncs as a single client's
// members do while the rest of a put goes on.
func measureDisk(ctx context.Context, dir string, o options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Printf("## This disk: %d-byte append + fdatasync, %d per writer, %v between one writer's syncs\n\n", entryBytes, o.diskSyncs, o.diskPause)
	fmt.Println("| concurrent writers | p50 µs | p90 µs | p99 µs |")
	fmt.Println("| ---: | ---: | ---: | ---: |")
	for n := 1; n <= o.diskWriters; n++ {
		ds, err := syncs(ctx, dir, n, o)
		if err != nil {
			return err
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		q := func(f float64) string { return us(ds[int(f*float64(len(ds)-1))]) }
		fmt.Printf("| %d | %s | %s | %s |\n", n, q(0.5), q(0.9), q(0.99))
	}
	fmt.Println()
	return nil
}

// syncs runs n writers at once and returns every sync's latency.
func syncs(ctx context.Context, dir string, n int, o options) ([]time.Duration, error) {
	files := make([]*os.File, n)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	size := int64(o.diskSyncs+1) * entryBytes
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("w%d-%d", n, i)))
		if err != nil {
			return nil, err
		}
		files[i] = f
		if _, err := f.Write(make([]byte, size)); err != nil {
			return nil, fmt.Errorf("disk: preallocating %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
		}
	}
	var (
		mu   sync.Mutex
		all  []time.Duration
		werr error
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	entry := make([]byte, entryBytes)
	for i := range entry {
		entry[i] = byte('a' + i%26)
	}
	for _, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			mine := make([]time.Duration, 0, o.diskSyncs)
			for k := 0; k < o.diskSyncs && ctx.Err() == nil; k++ {
				t := time.Now()
				_, err := f.WriteAt(entry, int64(k)*entryBytes)
				if err == nil {
					err = syscall.Fdatasync(int(f.Fd()))
				}
				if err != nil {
					mu.Lock()
					werr = fmt.Errorf("disk: %s: %w", f.Name(), err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
				time.Sleep(o.diskPause)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if werr == nil && len(all) == 0 {
		werr = ctx.Err()
	}
	return all, werr
}
