package loadgen

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		err      string // "" for success
		rest     string // what must remain unread after a success
	}{
		{name: "200 with a body", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Raftkv-Revision: 7\r\n\r\nhello", rest: ""},
		{name: "stops at its own end", in: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", rest: "HTTP/1.1 200 OK\r\n"},
		{name: "empty body", in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", rest: ""},
		{name: "bare LF lines", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", rest: ""},
		{name: "not 200", in: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", err: "404 Not Found"},
		{name: "2000 is not 200", in: "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", err: "2000"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", err: "Transfer-Encoding"},
		{name: "closing", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", err: "closed the connection"},
		{name: "no length", in: "HTTP/1.1 200 OK\r\n\r\n", err: "without a Content-Length"},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", err: "bad Content-Length"},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: "bad Content-Length"},
		{name: "garbage", in: "SSH-2.0-OpenSSH\r\n\r\n", err: "malformed status line"},
		{name: "header without a colon", in: "HTTP/1.1 200 OK\r\nContent-Length 1\r\n\r\nx", err: "malformed header line"},
		{name: "truncated body", in: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", err: "EOF"},
		{name: "truncated head", in: "HTTP/1.1 200 OK\r\nContent-Len", err: "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			err := readAnswer(br)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("readAnswer = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("readAnswer: %v", err)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Fatalf("left %q unread, want %q", rest, tc.rest)
			}
		})
	}
}

// TestPlainConnAgainstNetHTTP drives the hand-written client against Go's
// own server: puts and gets over one kept-alive connection succeed, the
// request reaches the server as sent, and a non-200 answer is an error
// after which the client dials again.
func TestPlainConnAgainstNetHTTP(t *testing.T) {
	var conns, puts, gets int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/v1/kv/k1":
			b, _ := io.ReadAll(r.Body)
			if string(b) != "value" || r.Header.Get("Content-Type") != "application/octet-stream" {
				http.Error(w, "bad put", http.StatusBadRequest)
				return
			}
			puts++
			w.Write([]byte(`{"revision":1}`))
		case r.Method == http.MethodGet && r.URL.Path == "/v1/kv/k1" && r.URL.Query().Get("consistency") == "linearizable":
			gets++
			w.Write([]byte("value"))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns++
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	st := NewRaftkvPlain(addr, "linearizable")
	defer st.Close()
	c := st.ForClient(3)
	ctx := context.Background()
	for range 3 {
		if err := c.Put(ctx, "k1", []byte("value")); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := c.Get(ctx, "k1"); err != nil {
			t.Fatalf("Get: %v", err)
		}
	}
	if err := c.Get(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Get of a missing key = %v, want a 404 error", err)
	}
	if err := c.Get(ctx, "k1"); err != nil {
		t.Fatalf("Get after an error: %v", err)
	}
	srv.Close() // waits for the handlers, so the counts are final
	if puts != 3 || gets != 4 {
		t.Fatalf("server saw %d puts and %d gets, want 3 and 4", puts, gets)
	}
	if conns != 2 {
		t.Fatalf("%d connections, want 2 (one kept alive, one after the error)", conns)
	}
}

// BenchmarkReadAnswer: the client's cost to read one answer to a put, by
// hand and, for comparison, through net/http's ReadResponse.
func BenchmarkReadAnswer(b *testing.B) {
	answer := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nEtag: \"12345\"\r\n" +
		"X-Raftkv-Revision: 12345\r\nDate: Fri, 04 Dec 2026 22:00:00 GMT\r\nContent-Length: 19\r\n\r\n" +
		`{"revision":12345}` + "\n"
	src := strings.NewReader("")
	br := bufio.NewReaderSize(src, 4096)
	b.Run("by-hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(answer)
			br.Reset(src)
			if err := readAnswer(br); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(answer)
			br.Reset(src)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
