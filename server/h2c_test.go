package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// TestH2C shows the client API speaks cleartext HTTP/2 with prior
// knowledge beside HTTP/1.1: many concurrent puts and linearizable gets
// multiplexed on one connection all succeed, and each answer came over
// HTTP/2.
func TestH2C(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	once := func(method, path string, body []byte) (int, string, []byte, error) {
		req, err := http.NewRequestWithContext(context.Background(), method, url(lead, path), bytes.NewReader(body))
		if err != nil {
			return 0, "", nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Proto, b, err
	}
	// A loaded machine may stall an fsync past the short test election
	// timeout and move leadership for a moment: 503s are retried.
	do := func(method, path string, body []byte) (int, string, []byte, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, proto, b, err := once(method, path, body)
			if err != nil || status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				return status, proto, b, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan string, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := api.PathKV + "h2c/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			status, proto, _, err := do(http.MethodPut, key, []byte("v"))
			if err != nil || status != http.StatusOK || proto != "HTTP/2.0" {
				errs <- "put: " + proto + " " + http.StatusText(status) + " " + errString(err)
				return
			}
			status, proto, b, err := do(http.MethodGet, key+"?consistency=linearizable", nil)
			if err != nil || status != http.StatusOK || proto != "HTTP/2.0" || string(b) != "v" {
				errs <- "get: " + proto + " " + http.StatusText(status) + " " + string(b) + " " + errString(err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// HTTP/1.1 is unchanged on the same port.
	resp := c.do(http.MethodGet, url(lead, api.PathKV+"h2c/aa?consistency=stale"), nil)
	if b := expect(t, resp, 200, ""); resp.Proto != "HTTP/1.1" || string(b) != "v" {
		t.Fatalf("HTTP/1.1 get: %s %q", resp.Proto, b)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
