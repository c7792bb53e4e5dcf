package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.HandlerFunc, tlsOn bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s, &conns
}

func roundTrip(t *testing.T, tr http.RoundTripper, ctx context.Context, method, url, body string, hdr ...string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// TestTransportKeepsConnectionsAlive: sequential requests share one
// connection; bodies with a length and chunked ones are both read whole.
func TestTransportKeepsConnectionsAlive(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("chunked") != "" {
			w.Write([]byte("chunk-1 "))
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}, false)
	tr := newConnTransport(nil, 4)
	defer tr.CloseIdleConnections()
	for i := range 20 {
		url := s.URL + "/x"
		want := fmt.Sprintf("PUT body%d", i)
		if i%2 == 1 {
			url += "?chunked=1"
			want = "chunk-1 " + want
		}
		resp, got, err := roundTrip(t, tr, context.Background(), http.MethodPut, url, fmt.Sprintf("body%d", i))
		if err != nil || resp.StatusCode != 200 || got != want {
			t.Fatalf("request %d: %v %q, want %q", i, err, got, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections, want 1", n)
	}
}

// TestTransportRetriesOnClosedIdleConnection: a member that closed an idle
// connection costs a repeatable request nothing; a request that is not
// safe to repeat gets the error instead of being sent twice.
func TestTransportRetriesOnClosedIdleConnection(t *testing.T) {
	var hits atomic.Int32
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("ok"))
	}, false)
	tr := newConnTransport(nil, 4)
	defer tr.CloseIdleConnections()
	ctx := context.Background()
	if _, _, err := roundTrip(t, tr, ctx, http.MethodGet, s.URL, ""); err != nil {
		t.Fatal(err)
	}
	s.CloseClientConnections() // the pooled connection is now dead
	time.Sleep(20 * time.Millisecond)
	if _, got, err := roundTrip(t, tr, ctx, http.MethodGet, s.URL, ""); err != nil || got != "ok" {
		t.Fatalf("GET on a closed pooled connection: %q, %v; want a transparent retry", got, err)
	}
	s.CloseClientConnections()
	time.Sleep(20 * time.Millisecond)
	if _, got, err := roundTrip(t, tr, ctx, http.MethodPost, s.URL, "x", "Idempotency-Key", "k1"); err != nil || got != "ok" {
		t.Fatalf("write with an Idempotency-Key on a closed pooled connection: %q, %v", got, err)
	}
	s.CloseClientConnections()
	time.Sleep(20 * time.Millisecond)
	before := hits.Load()
	if _, _, err := roundTrip(t, tr, ctx, http.MethodPost, s.URL, "x"); err == nil {
		t.Fatal("a POST without Idempotency-Key on a dead connection succeeded: it was resent")
	}
	if hits.Load() != before {
		t.Fatal("the server saw the unrepeatable POST")
	}
}

// TestTransportContextEndsExchange: a cancelled or expired context ends a
// request stuck on a silent server at once, and its connection is not
// reused.
func TestTransportContextEndsExchange(t *testing.T) {
	release := make(chan struct{})
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Write([]byte("ok"))
	}, false)
	defer close(release)
	tr := newConnTransport(nil, 4)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := roundTrip(t, tr, ctx, http.MethodGet, s.URL+"/slow", "")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("request past its deadline: %v after %v", err, time.Since(start))
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if _, _, err := roundTrip(t, tr, ctx2, http.MethodGet, s.URL+"/slow", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	if _, got, err := roundTrip(t, tr, context.Background(), http.MethodGet, s.URL+"/fast", ""); err != nil || got != "ok" {
		t.Fatalf("after the cancelled ones: %q, %v", got, err)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (the two abandoned ones are not reused)", n)
	}
}

// TestTransportPartialBodyNotReused: a body closed before its end takes
// its connection with it.
func TestTransportPartialBodyNotReused(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 64<<10)))
	}, false)
	tr := newConnTransport(nil, 4)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, got, err := roundTrip(t, tr, context.Background(), http.MethodGet, s.URL, ""); err != nil || len(got) != 64<<10 {
		t.Fatalf("second request: %d bytes, %v", len(got), err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestTransportTLS: https endpoints are dialled with the client's TLS
// configuration.
func TestTransportTLS(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("request arrived without TLS")
		}
		w.Write([]byte("secure"))
	}, true)
	pool := s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tr := newConnTransport(&tls.Config{RootCAs: pool}, 4)
	defer tr.CloseIdleConnections()
	if _, got, err := roundTrip(t, tr, context.Background(), http.MethodGet, s.URL, ""); err != nil || got != "secure" {
		t.Fatalf("GET over TLS: %q, %v", got, err)
	}
	if _, _, err := roundTrip(t, newConnTransport(nil, 4), context.Background(), http.MethodGet, s.URL, ""); err == nil {
		t.Fatal("GET over TLS without the CA succeeded")
	}
}
