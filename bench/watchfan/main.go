// Command watchfan measures watch fan-out over HTTP: it opens many watch
// streams of one key on one member, from this process (so the member's
// process holds only its side of the connections), then writes the key
// -events times, each write once every stream has delivered the one
// before, and reports the events delivered per second and the delivery
// latency percentiles (from just before the write is sent to the event
// decoded by the watcher).
//
//	raftkv dev --client-port 8001 --etcd-port -1 &
//	cd bench && go run ./watchfan -watch http://127.0.0.1:8001 -write http://127.0.0.1:8001
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/api"
)

func main() {
	watchAddr := flag.String("watch", "http://127.0.0.1:8001", "member whose watch streams are measured")
	writeAddr := flag.String("write", "http://127.0.0.1:8001", "member to write to (redirects to the leader are followed)")
	watchers := flag.Int("watchers", 10000, "watch streams")
	events := flag.Int("events", 100, "writes of the watched key")
	key := flag.String("key", "bench/watchfan", "the watched key")
	dialers := flag.Int("dialers", 64, "streams opened concurrently")
	flag.Parse()
	if *watchers <= 0 || *events <= 0 || *dialers <= 0 {
		log.Fatal("watchfan: -watchers, -events and -dialers must be positive")
	}
	if err := raiseFileLimit(uint64(*watchers) + 256); err != nil {
		log.Fatal(err)
	}
	if err := run(*watchAddr, *writeAddr, *key, *watchers, *events, *dialers); err != nil {
		log.Fatal(err)
	}
}

// raiseFileLimit lifts the soft limit on open files to at least want
// (each stream is a connection).
func raiseFileLimit(want uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("watchfan: getrlimit: %w", err)
	}
	if l.Cur >= want {
		return nil
	}
	if l.Max < want {
		return fmt.Errorf("watchfan: %d streams need %d open files; the hard limit is %d", want-256, want, l.Max)
	}
	l.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("watchfan: setrlimit %d: %w", want, err)
	}
	return nil
}

func run(watchAddr, writeAddr, key string, n, events, dialers int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One connection per stream (HTTP/1.1), as curl or a simple client
	// would hold it.
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	hc := &http.Client{Transport: tr}
	// lat[e][w]: microseconds from the write of event e to watcher w.
	lat := make([][]int32, events)
	for e := range lat {
		lat[e] = make([]int32, n)
	}
	sent := make([]atomic.Int64, events) // unix ns just before write e
	var delivered atomic.Int64
	var seen = make([]atomic.Int64, events)
	done := make(chan int, events) // event index, once all watchers have it
	var failed atomic.Pointer[error]
	fail := func(err error) {
		if failed.CompareAndSwap(nil, &err) {
			cancel()
		}
	}
	var startRev atomic.Int64
	watchURL := watchAddr + api.PathWatch + "?key=" + url.QueryEscape(key)
	ready := make(chan struct{}, n)
	sem := make(chan struct{}, dialers)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range n {
		sem <- struct{}{}
		if failed.Load() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, watchURL, nil)
			resp, err := hc.Do(req)
			if err != nil {
				<-sem
				fail(fmt.Errorf("watch %d: %w", w, err))
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				<-sem
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				fail(fmt.Errorf("watch %d: %s: %s", w, resp.Status, b))
				return
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			first := true
			for sc.Scan() {
				var m api.WatchMessage
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					fail(fmt.Errorf("watch %d: %q: %w", w, sc.Bytes(), err))
					return
				}
				now := time.Now().UnixNano()
				if first {
					first = false
					startRev.CompareAndSwap(0, m.Revision)
					<-sem
					ready <- struct{}{}
				}
				if m.Canceled {
					fail(fmt.Errorf("watch %d canceled: %s", w, m.Reason))
					return
				}
				for _, ev := range m.Events {
					e, err := strconv.Atoi(ev.KV.Value)
					if err != nil || e < 0 || e >= events {
						fail(fmt.Errorf("watch %d: unexpected event %+v", w, ev))
						return
					}
					lat[e][w] = int32((now - sent[e].Load()) / 1000)
					delivered.Add(1)
					if seen[e].Add(1) == int64(n) {
						done <- e
					}
				}
			}
			if ctx.Err() == nil {
				fail(fmt.Errorf("watch %d: stream ended: %v", w, sc.Err()))
			}
		}()
	}
	for range n {
		select {
		case <-ready:
		case <-ctx.Done():
			return *failed.Load()
		}
	}
	fmt.Fprintf(os.Stderr, "%d streams open in %v\n", n, time.Since(t0).Round(time.Millisecond))

	wc := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	for e := range events {
		sent[e].Store(time.Now().UnixNano())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, writeAddr+api.PathKV+key, bytes.NewReader([]byte(strconv.Itoa(e))))
		resp, err := wc.Do(req)
		if err != nil {
			return fmt.Errorf("write %d: %w", e, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("write %d: %s", e, resp.Status)
		}
		select {
		case got := <-done:
			if got != e {
				return fmt.Errorf("event %d completed while waiting for %d", got, e)
			}
		case <-time.After(60 * time.Second):
			return fmt.Errorf("event %d: %d of %d watchers after 60s", e, seen[e].Load(), n)
		case <-ctx.Done():
			return *failed.Load()
		}
	}
	elapsed := time.Since(start)
	cancel()
	tr.CloseIdleConnections()
	if err := failed.Load(); err != nil && !errors.Is(*err, context.Canceled) {
		return *err
	}
	all := make([]int32, 0, n*events)
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		return time.Duration(all[min(len(all)-1, int(p*float64(len(all))))]) * time.Microsecond
	}
	fmt.Printf("watchers %d, events %d, delivered %d in %v: %.0f events/s; latency p50 %v, p99 %v, max %v (start revision %d)\n",
		n, events, delivered.Load(), elapsed.Round(time.Millisecond), float64(delivered.Load())/elapsed.Seconds(),
		pct(0.50), pct(0.99), time.Duration(all[len(all)-1])*time.Microsecond, startRev.Load())
	return nil
}
