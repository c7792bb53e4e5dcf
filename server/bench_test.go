package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/api"
)

// The request-path benchmarks call ServeHTTP directly on a 1-member
// cluster's server, so they measure the handler's own work (routing,
// headers, the barrier or the proposal, the answer) without sockets.

// BenchmarkServeGet is a get per consistency level, one caller at a time
// and many in parallel (which is where linearizable reads share barriers).
func BenchmarkServeGet(b *testing.B) {
	c := newCluster(b, 1, nil)
	s := c.leader()
	expect(b, put(c, s, "k", strings.Repeat("v", 256)), 200, "")
	for _, level := range []string{api.Stale, api.Lease, api.Linearizable} {
		target := api.PathKV + "k?consistency=" + level
		b.Run(level, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, s, http.MethodGet, target, nil)
			}
		})
		b.Run(level+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					serveOnce(b, s, http.MethodGet, target, nil)
				}
			})
		})
	}
}

// BenchmarkServePut is a 256-byte put, many in parallel so that the
// fsyncs are shared and the handler's own cost shows.
func BenchmarkServePut(b *testing.B) {
	c := newCluster(b, 1, nil)
	s := c.leader()
	value := []byte(strings.Repeat("v", 256))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveOnce(b, s, http.MethodPut, api.PathKV+"k", value)
		}
	})
}

func serveOnce(b *testing.B, s *Server, method, target string, body []byte) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
	}
}
