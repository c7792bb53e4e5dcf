package client

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// TestTimingLeaderlessBackoff shows that while the cluster answers
// no_leader the client retries at least every LeaderlessBackoffMax, so
// the first write after an election lands within about that of the
// leader's arrival, not up to BackoffMax (500ms) later.
func TestTimingLeaderlessBackoff(t *testing.T) {
	const leaderless = 700 * time.Millisecond
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if time.Since(start) < leaderless {
			w.Header().Set(api.HeaderRetryAfter, "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"no leader is known","code":"no_leader"}`))
			return
		}
		w.Write([]byte(`{"index":1}`))
	}))
	defer srv.Close()
	c := newClient(t, Config{Endpoints: []string{strings.TrimPrefix(srv.URL, "http://")}})
	if _, err := c.Put(ctx(t, 5*time.Second), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Retries at ~10, 30, 70, 120, 170, ... 670, 720ms: the first after
	// 700ms comes at most LeaderlessBackoffMax (50ms) later. With the
	// old doubling up to 500ms it came at ~1130ms.
	if lag := time.Since(start) - leaderless; lag > 300*time.Millisecond {
		t.Fatalf("write acknowledged %v after the leader arrived, want within ~100ms", lag)
	}
}
