package server

import (
	"bytes"
	"fmt"
	"io"
	"net"
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

// BenchmarkFastPath is a get and a put over a loopback connection on the
// HTTP/1.1 fast path, the way independent clients send them: it counts
// the server's whole per-request work, sockets included. The client
// reuses its buffers and allocates nothing, so allocs/op are the
// server's (and a 1-member cluster's node and store).
func BenchmarkFastPath(b *testing.B) {
	c := newCluster(b, 1, nil)
	s := c.leader()
	value := strings.Repeat("v", 256)
	expect(b, put(c, s, "k", value), 200, "")
	for _, bc := range []struct{ name, req string }{
		{"get-linearizable", "GET /v1/kv/k HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"get-stale", "GET /v1/kv/k?consistency=stale HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"put", "PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\nContent-Length: 256\r\n\r\n" + value},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", s.ClientAddr())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := []byte(bc.req)
			buf := make([]byte, 8192)
			handed := s.fast.handedOff.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := readAnswer(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
			if s.fast.handedOff.Load() != handed {
				b.Fatal("the connection was handed to net/http: not the fast path")
			}
		})
	}
}

// readAnswer reads one 200 answer with a Content-Length into buf.
func readAnswer(conn net.Conn, buf []byte) error {
	n := 0
	for {
		if n == len(buf) {
			return fmt.Errorf("answer over %d bytes", len(buf))
		}
		m, err := conn.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		head := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if head < 0 {
			continue
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("answer %q", buf[:n])
		}
		i := bytes.Index(buf[:head], []byte("\r\nContent-Length: "))
		if i < 0 {
			return fmt.Errorf("no Content-Length in %q", buf[:head])
		}
		cl := 0
		for _, d := range buf[i+len("\r\nContent-Length: ") : head] {
			if d < '0' || d > '9' {
				break
			}
			cl = cl*10 + int(d-'0')
		}
		if n >= head+4+cl {
			return nil
		}
	}
}
