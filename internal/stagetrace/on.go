//go:build stagetrace

package stagetrace

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Enabled reports whether marks are compiled in (the build tag
// stagetrace).
const Enabled = true

// maxPending bounds the marks waiting for the writer: beyond it marks are
// dropped (and counted) rather than held.
const maxPending = 1 << 18

type mark struct {
	at          int64
	stage       Stage
	index, peer uint64
}

type recorder struct {
	mu      sync.Mutex
	pending []mark
	dropped uint64
}

var (
	once sync.Once
	rec  *recorder
)

// start begins recording if DirEnv names a directory: a goroutine writes
// the marks out every 50 ms, so the path being measured never waits on
// the file.
func start() *recorder {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		return nil
	}
	path := filepath.Join(dir, fmt.Sprintf("stages-%d.txt", os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stagetrace: %v\n", err)
		return nil
	}
	r := &recorder{}
	go r.writeLoop(bufio.NewWriter(f))
	return r
}

func (r *recorder) writeLoop(w *bufio.Writer) {
	var out []mark
	for range time.Tick(50 * time.Millisecond) {
		r.mu.Lock()
		out, r.pending = r.pending, out[:0]
		dropped := r.dropped
		r.dropped = 0
		r.mu.Unlock()
		for _, m := range out {
			fmt.Fprintf(w, "%d %s %d %d\n", m.at, m.stage, m.index, m.peer)
		}
		if dropped > 0 {
			fmt.Fprintf(w, "# dropped %d\n", dropped)
		}
		w.Flush()
	}
}

// Mark records that stage s reached index (peer: the member a message
// went to or came from, or 0).
func Mark(s Stage, index, peer uint64) {
	once.Do(func() { rec = start() })
	if rec == nil {
		return
	}
	at := time.Now().UnixNano()
	rec.mu.Lock()
	if len(rec.pending) < maxPending {
		rec.pending = append(rec.pending, mark{at, s, index, peer})
	} else {
		rec.dropped++
	}
	rec.mu.Unlock()
}
