package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/raftkv/raftkv/api"
)

// rawConn is a client connection that speaks bytes.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("writing %q: %v", s, err)
	}
}

// rawAnswer is one response as the client read it.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
}

// read reads one response to a request of method.
func (rc *rawConn) read(method string) rawAnswer {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading the answer to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading the body of the answer to %s: %v", method, err)
	}
	resp.Header.Del("Date")
	if resp.Close {
		// ReadResponse takes "Connection: close" out of the header.
		resp.Header.Add("Connection", "close")
	}
	if len(resp.TransferEncoding) > 0 {
		resp.Header["Transfer-Encoding"] = resp.TransferEncoding
	}
	return rawAnswer{resp.StatusCode, resp.Header, b}
}

// closed reports whether the server closed the connection (EOF within a
// moment, nothing more to read).
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	_, err := rc.br.ReadByte()
	if err == nil {
		rc.t.Fatal("unexpected bytes after the answer")
	}
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset")
}

// handOver makes rc's connection net/http's, with a request the fast path
// does not serve.
func (rc *rawConn) handOver() {
	rc.t.Helper()
	rc.send("GET /v1/cluster HTTP/1.1\r\nHost: h\r\n\r\n")
	if a := rc.read(http.MethodGet); a.status != http.StatusOK {
		rc.t.Fatalf("GET /v1/cluster: %d %s", a.status, a.body)
	}
}

func oneMember(t *testing.T, tune func(*Config)) (*tcluster, *Server) {
	c := newCluster(t, 1, tune)
	return c, c.leader()
}

var digits = regexp.MustCompile(`[0-9]+`)

// normalized is an answer with the numbers that differ between two
// writes (revisions, indexes) masked.
func normalized(a rawAnswer) string {
	var lines []string
	for k, vv := range a.header {
		if k == "Transfer-Encoding" || k == "Content-Length" && int64(len(a.body)) > 2<<10 {
			// net/http chunks a body over its 2 KiB buffer; the fast path
			// sends up to 64 KiB with its length.
			continue
		}
		for _, v := range vv {
			if k == "Etag" {
				v = digits.ReplaceAllString(v, "N")
			}
			lines = append(lines, k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n\n" + digits.ReplaceAllString(string(a.body), "N")
}

// TestFastPathMatchesNetHTTP sends each request once to the fast path and
// once over a connection net/http serves, and compares what the client
// sees: status, every header but Date, body, and whether the connection
// stays open.
func TestFastPathMatchesNetHTTP(t *testing.T) {
	_, s := oneMember(t, nil)
	seed := dialRaw(t, s)
	big := strings.Repeat("v", 3000)
	seed.send("PUT /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	seed.send("PUT /v1/kv/bigval HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n" + big)
	for range 2 {
		if a := seed.read(http.MethodPut); a.status != http.StatusOK {
			t.Fatalf("seeding: %d %s", a.status, a.body)
		}
	}
	over := strings.Repeat("x", testValueLimit+10)
	batch := string(batchJSON(t, api.BatchOp{Op: api.BatchGet, Key: "bigval"}, api.BatchOp{Op: api.BatchGet, Key: "k1"}))
	for _, req := range []string{
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/bigval HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n",
		"GET /v1/kv/missing HTTP/1.1\r\nHost: h\r\nUser-Agent: test\r\n\r\n",
		"GET /v1/kv/k1?consistency=stale HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/k1?consistency=bogus HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/k%311 HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v1/kv/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v1/kv/missing HTTP/1.1\r\nHost: h\r\n\r\n",
		"PUT /v1/kv/k2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /v1/kv/k2 HTTP/1.1\r\nHost: h\r\nIf-Match: bogus\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /v1/kv/k2 HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /v1/kv/big HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(over)) + "\r\n\r\n" + over,
		"POST /v1/kv/k3 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
		"POST /v1/kv/k3?op=append HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
		"DELETE /v1/kv/never HTTP/1.1\r\nHost: h\r\n\r\n",
		"DELETE /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nIf-Match: \"999999\"\r\n\r\n",
		"POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(batch)) + "\r\n\r\n" + batch,
		"GET /v1/kv/k1 HTTP/1.0\r\n\r\n",
		"HEAD /v1/kv/k1 HTTP/1.0\r\n\r\n",
		"GET /v1/kv/k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /v1/kv/missing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"PUT /v1/kv/k4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
		"PUT /v1/kv/k5 HTTP/1.1\r\nHost: h\r\nContent-Length: 0003\r\n\r\nabc",
		"PUT /v1/kv/k5 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"PUT /v1/kv/k6 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab",
		"DELETE /v1/kv/never6 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /v1/kv/a/../k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv//k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/%2e%2e/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/batch HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v1/batch HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n{x}",
		"POST /v1/batch HTTP/1.0\r\nContent-Length: 2\r\n\r\n[]",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost:\r\n\r\n",
	} {
		method, _, _ := strings.Cut(req, " ")
		fast := dialRaw(t, s)
		servedBefore := s.fast.served.Load()
		fast.send(req)
		fa := fast.read(method)
		fClosed := fast.closed()
		if s.fast.served.Load() == servedBefore {
			t.Fatalf("%q: not served by the fast path", req)
		}
		slow := dialRaw(t, s)
		slow.handOver()
		slow.send(req)
		sa := slow.read(method)
		sClosed := slow.closed()
		if normalized(fa) != normalized(sa) || fa.status != sa.status || fClosed != sClosed {
			t.Errorf("%q:\nfast path (%d, closed %v):\n%s\nnet/http (%d, closed %v):\n%s",
				req, fa.status, fClosed, normalized(fa), sa.status, sClosed, normalized(sa))
		}
	}
}

// TestFastPathMatchesNetHTTPOnOneConnection sends a run of keep-alive
// requests down one fast-path connection and one net/http connection, in
// step, and compares each pair of answers: the fast path reuses its writer
// and header from request to request, so nothing of one answer may show in
// the next.
func TestFastPathMatchesNetHTTPOnOneConnection(t *testing.T) {
	_, s := oneMember(t, nil)
	batch := string(batchJSON(t, api.BatchOp{Op: api.BatchGet, Key: "k1"}))
	fast, slow := dialRaw(t, s), dialRaw(t, s)
	slow.handOver()
	for _, req := range []string{
		"PUT /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/missing HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v1/kv/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"PUT /v1/kv/k2 HTTP/1.1\r\nHost: h\r\nIf-Match: bogus\r\nContent-Length: 3\r\n\r\nabc",
		"GET /v1/kv/k1?consistency=stale HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /v1/kv/k3?op=append HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
		"DELETE /v1/kv/never HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n",
		"POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(batch)) + "\r\n\r\n" + batch,
		"GET /v1/kv/k1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"PUT /v1/kv/k2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"GET /v1/kv/missing HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		method, _, _ := strings.Cut(req, " ")
		servedBefore := s.fast.served.Load()
		fast.send(req)
		fa := fast.read(method)
		if s.fast.served.Load() == servedBefore {
			t.Fatalf("%q: not served by the fast path", req)
		}
		slow.send(req)
		sa := slow.read(method)
		if normalized(fa) != normalized(sa) || fa.status != sa.status {
			t.Errorf("%q:\nfast path (%d):\n%s\nnet/http (%d):\n%s", req, fa.status, normalized(fa), sa.status, normalized(sa))
		}
	}
	if fast.closed() || slow.closed() {
		t.Fatal("a keep-alive connection closed")
	}
}

// TestFastPathIdleTimeoutAfterManyRequests: the fast path moves its
// deadlines only when they would move by more than a sliver of their
// timeout; over a second of requests the idle timeout must still follow
// the last answer, neither closing the connection while requests come nor
// staying open long after they stop.
func TestFastPathIdleTimeoutAfterManyRequests(t *testing.T) {
	const idle = 400 * time.Millisecond
	_, s := oneMember(t, func(c *Config) { c.Limits.IdleTimeout = idle })
	rc := dialRaw(t, s)
	start := time.Now()
	for i := 0; time.Since(start) < 3*idle; i++ {
		rc.send("GET /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n")
		if a := rc.read("GET"); a.status != http.StatusNotFound {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
		time.Sleep(idle / 20)
	}
	last := time.Now()
	rc.c.SetReadDeadline(last.Add(5 * time.Second))
	if _, err := rc.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("want the idle connection closed, got %v", err)
	}
	if d := time.Since(last); d < idle-idle/deadlineSlack-20*time.Millisecond || d > idle+time.Second {
		t.Fatalf("closed %v after the last answer, want about %v", d, idle)
	}
}

// TestFastPathPipelined sends several requests in one write; the answers
// come back in order.
func TestFastPathPipelined(t *testing.T) {
	_, s := oneMember(t, nil)
	rc := dialRaw(t, s)
	rc.send("PUT /v1/kv/p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\na" +
		"POST /v1/kv/p?op=append HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nbc" +
		"GET /v1/kv/p HTTP/1.1\r\nHost: h\r\n\r\n" +
		"DELETE /v1/kv/p HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /v1/kv/p HTTP/1.1\r\nHost: h\r\n\r\n")
	for i, want := range []struct {
		method string
		status int
		body   string
	}{{"PUT", 200, ""}, {"POST", 200, ""}, {"GET", 200, "abc"}, {"DELETE", 200, ""}, {"GET", 404, ""}} {
		a := rc.read(want.method)
		if a.status != want.status || want.body != "" && string(a.body) != want.body {
			t.Fatalf("answer %d: %d %q, want %d %q", i, a.status, a.body, want.status, want.body)
		}
		if a.header.Get(api.HeaderTerm) == "" || a.header.Get("Content-Length") == "" {
			t.Fatalf("answer %d lacks X-Raft-Term or Content-Length: %v", i, a.header)
		}
	}
	if rc.closed() {
		t.Fatal("connection closed after pipelined requests")
	}
}

// TestFastPathHandOffKeepsConnection: requests the fast path does not
// serve hand the connection to net/http, which answers them and every
// request after them on the same connection.
func TestFastPathHandOffKeepsConnection(t *testing.T) {
	_, s := oneMember(t, nil)
	for _, odd := range []struct {
		name, req, method string
		status            int
	}{
		{"expect", "PUT /v1/kv/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", "PUT", 200},
		{"chunked", "PUT /v1/kv/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "PUT", 200},
		{"listing", "GET /v1/kv/?prefix=e HTTP/1.1\r\nHost: h\r\n\r\n", "GET", 200},
		{"folded", "GET /v1/kv/f HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", "GET", 200},
		{"bad name", "GET /v1/kv/f HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", "GET", 400},
	} {
		t.Run(odd.name, func(t *testing.T) {
			rc := dialRaw(t, s)
			served, handed := s.fast.served.Load(), s.fast.handedOff.Load()
			rc.send("PUT /v1/kv/f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nf")
			rc.send("GET /v1/kv/f HTTP/1.1\r\nHost: h\r\n\r\n")
			rc.read("PUT")
			if a := rc.read("GET"); string(a.body) != "f" {
				t.Fatalf("fast GET: %d %q", a.status, a.body)
			}
			if got := s.fast.served.Load() - served; got != 2 {
				t.Fatalf("fast path served %d requests, want 2", got)
			}
			rc.send(odd.req)
			if odd.name == "expect" {
				if a := rc.read("PUT"); a.status != http.StatusContinue {
					// ReadResponse returns the interim answer on its own.
					t.Fatalf("want 100 Continue first, got %d", a.status)
				}
			}
			if a := rc.read(odd.method); a.status != odd.status {
				t.Fatalf("odd request: %d %s, want %d", a.status, a.body, odd.status)
			}
			if odd.status == http.StatusBadRequest {
				if !rc.closed() {
					t.Fatal("net/http kept the connection after a 400")
				}
				return
			}
			rc.send("GET /v1/kv/f HTTP/1.1\r\nHost: h\r\n\r\n")
			if a := rc.read("GET"); a.status != 200 || string(a.body) != "f" {
				t.Fatalf("GET after the hand-off: %d %q", a.status, a.body)
			}
			if got := s.fast.served.Load() - served; got != 2 {
				t.Fatalf("fast path served %d requests, want 2 (the rest are net/http's)", got)
			}
			// The member's own announcements to itself are handed off too.
			if got := s.fast.handedOff.Load() - handed; got < 1 {
				t.Fatalf("%d connections handed off, want at least this one", got)
			}
		})
	}
}

// TestFastPathH2CAfterRequests: an h2c preface after HTTP/1.1 requests on
// one connection is handed to net/http, which speaks HTTP/2 from there.
func TestFastPathH2CAfterRequests(t *testing.T) {
	_, s := oneMember(t, nil)
	rc := dialRaw(t, s)
	rc.send("PUT /v1/kv/h HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nh2")
	if a := rc.read("PUT"); a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	rc.c.SetDeadline(time.Time{})
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(rc.c)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+s.ClientAddr()+api.PathKV+"h", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "h2" || resp.ProtoMajor != 2 {
		t.Fatalf("GET over h2c: %d %s %q", resp.StatusCode, resp.Proto, b)
	}
}

// TestFastPathBodyLengths: a body shorter than its Content-Length fails
// the request as net/http's would; bytes beyond it are the next request.
func TestFastPathBodyLengths(t *testing.T) {
	_, s := oneMember(t, nil)
	short := func(rc *rawConn) rawAnswer {
		rc.send("PUT /v1/kv/s HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabcde")
		rc.c.(*net.TCPConn).CloseWrite()
		return rc.read("PUT")
	}
	fast := dialRaw(t, s)
	fa := short(fast)
	slow := dialRaw(t, s)
	slow.handOver()
	sa := short(slow)
	if fa.status != http.StatusBadRequest || normalized(fa) != normalized(sa) {
		t.Fatalf("short body: fast path %d\n%s\nnet/http %d\n%s", fa.status, normalized(fa), sa.status, normalized(sa))
	}
	if !fast.closed() {
		t.Fatal("connection open after a short body")
	}

	rc := dialRaw(t, s)
	rc.send("PUT /v1/kv/l HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGARBAGE\r\n\r\n")
	if a := rc.read("PUT"); a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	if a := rc.read("GET"); a.status != http.StatusBadRequest {
		t.Fatalf("the bytes past the body: %d %s, want net/http's 400", a.status, a.body)
	}
	rc2 := dialRaw(t, s)
	rc2.send("GET /v1/kv/l HTTP/1.1\r\nHost: h\r\n\r\n")
	if a := rc2.read("GET"); string(a.body) != "abc" {
		t.Fatalf("stored %q, want abc", a.body)
	}

	// A body the handler does not read is drained (small) or ends the
	// connection (large), never read as a request.
	rc3 := dialRaw(t, s)
	body := strings.Repeat("G", 1000)
	rc3.send("PUT /v1/kv/u HTTP/1.1\r\nHost: h\r\nIf-Match: bad\r\nContent-Length: 1000\r\n\r\n" + body)
	rc3.send("GET /v1/kv/l HTTP/1.1\r\nHost: h\r\n\r\n")
	if a := rc3.read("PUT"); a.status != http.StatusBadRequest {
		t.Fatalf("PUT with a bad If-Match: %d", a.status)
	}
	if a := rc3.read("GET"); string(a.body) != "abc" {
		t.Fatalf("GET after an unread body: %d %q", a.status, a.body)
	}
	rc4 := dialRaw(t, s)
	huge := 300 << 10
	rc4.send("PUT /v1/kv/u HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(huge) + "\r\n\r\n")
	go io.Copy(rc4.c, io.LimitReader(zeros{}, int64(huge)))
	a := rc4.read("PUT")
	if a.status != http.StatusRequestEntityTooLarge || a.header.Get("Connection") != "close" {
		t.Fatalf("huge body: %d %v", a.status, a.header)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestFastPathOversizedHead: a head over the fast path's buffer goes to
// net/http, which answers 431 beyond MaxHeaderBytes.
func TestFastPathOversizedHead(t *testing.T) {
	_, s := oneMember(t, func(c *Config) { c.Limits.MaxHeaderBytes = 8 << 10 })
	rc := dialRaw(t, s)
	rc.send("GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n")
	if a := rc.read("GET"); a.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized head: %d %s", a.status, a.body)
	}
	// Within net/http's limit but over the fast path's: served by net/http.
	rc2 := dialRaw(t, s)
	served := s.fast.served.Load()
	rc2.send("GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 9<<10) + "\r\n\r\n")
	if a := rc2.read("GET"); a.status != http.StatusNotFound {
		t.Fatalf("large head: %d %s", a.status, a.body)
	}
	if s.fast.served.Load() != served {
		t.Fatal("a head over MaxHeaderBytes was served by the fast path")
	}
}

// TestFastPathTimeouts: a head that does not finish within
// ReadHeaderTimeout, an idle connection past IdleTimeout and a body not
// sent within ReadTimeout all end the connection.
func TestFastPathTimeouts(t *testing.T) {
	_, s := oneMember(t, func(c *Config) {
		c.Limits.ReadHeaderTimeout = 300 * time.Millisecond
		c.Limits.IdleTimeout = 500 * time.Millisecond
		c.Limits.ReadTimeout = time.Second
	})
	waitClosed := func(rc *rawConn, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		rc.c.SetReadDeadline(start.Add(within))
		_, err := rc.br.ReadByte()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("want the server to close the connection within %v, got %v", within, err)
		}
		return time.Since(start)
	}
	rc := dialRaw(t, s)
	rc.send("GET /v1/kv/a HTTP/1.1\r\nHost")
	if d := waitClosed(rc, 3*time.Second); d < 200*time.Millisecond {
		t.Fatalf("half a head: closed after %v, before ReadHeaderTimeout", d)
	}
	rc = dialRaw(t, s)
	rc.send("GET /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n")
	rc.read("GET")
	if d := waitClosed(rc, 3*time.Second); d < 400*time.Millisecond {
		t.Fatalf("idle connection closed after %v, before IdleTimeout", d)
	}
	rc = dialRaw(t, s)
	rc.send("PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	if a := rc.read("PUT"); a.status != http.StatusBadRequest {
		t.Fatalf("slow body: %d %s", a.status, a.body)
	}
	waitClosed(rc, 3*time.Second)
}

// TestFastPathShutdown: Shutdown and Close end idle fast-path connections
// at once and wait for their goroutines.
func TestFastPathShutdown(t *testing.T) {
	for _, how := range []string{"shutdown", "close"} {
		t.Run(how, func(t *testing.T) {
			// A connection with half a request is busy: Shutdown waits for
			// it until ReadHeaderTimeout, as net/http does.
			_, s := oneMember(t, func(c *Config) { c.Limits.ReadHeaderTimeout = time.Second })
			var conns []*rawConn
			for range 4 {
				rc := dialRaw(t, s)
				rc.send("GET /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n")
				rc.read("GET")
				conns = append(conns, rc)
			}
			partial := dialRaw(t, s)
			partial.send("GET /v1/kv/a HT")
			start := time.Now()
			if how == "shutdown" {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			} else {
				s.Close()
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("%s took %v with idle connections", how, d)
			}
			for _, rc := range append(conns, partial) {
				rc.c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := rc.br.ReadByte(); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
					t.Fatalf("connection still open after %s: %v", how, err)
				}
			}
			s.fast.mu.Lock()
			n := len(s.fast.conns)
			s.fast.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d fast-path connections left", n)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestFastPathOneWritePerAnswer: an answer is one write, its head and
// body together.
func TestFastPathOneWritePerAnswer(t *testing.T) {
	_, s := oneMember(t, nil)
	rc := dialRaw(t, s)
	rc.send("PUT /v1/kv/w HTTP/1.1\r\nHost: h\r\nContent-Length: 256\r\n\r\n" + strings.Repeat("w", 256))
	rc.read("PUT")
	rc.send("GET /v1/kv/w HTTP/1.1\r\nHost: h\r\n\r\n")
	// One read of the whole answer: it arrived as one segment.
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := rc.c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) != 256 {
		t.Fatalf("first read held %d bytes of the body (%v): head and body were not one write", len(b), err)
	}
}

// TestFastResponseHeaderAfterWriteHeader: as with net/http, what a handler
// does to its header after WriteHeader changes nothing of the answer; the
// Content-Length sent is the one written with the head, so the answer's
// framing cannot disagree with its body (nor the server panic outside
// the handler).
func TestFastResponseHeaderAfterWriteHeader(t *testing.T) {
	for _, change := range []func(http.Header){
		func(h http.Header) { h.Del("Content-Length") },
		func(h http.Header) { h.Set("Content-Length", "2") },
		func(h http.Header) { h["Content-Length"] = []string{} },
	} {
		srv, cli := net.Pipe()
		fc := &fastConn{fs: &fastServer{s: &Server{log: slog.New(slog.DiscardHandler)}}, c: srv}
		fr := &fastRequest{method: http.MethodGet, minor: 1}
		req := &http.Request{Method: http.MethodGet}
		w := &fastResponse{fc: fc, req: req, fr: fr, header: http.Header{}, declared: -1}
		done := make(chan any, 1)
		go func() {
			defer func() { done <- recover() }()
			defer srv.Close()
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusOK)
			change(w.Header())
			w.Write([]byte("hello"))
			w.finish()
		}()
		br := bufio.NewReader(cli)
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			rest, _ := io.ReadAll(br)
			if string(b) != "hello" || len(rest) != 0 {
				t.Errorf("body %q, then %q on the connection; want hello alone", b, rest)
			}
		} else {
			t.Errorf("reading the answer: %v", err)
		}
		cli.Close()
		if p := <-done; p != nil {
			t.Errorf("answering panicked: %v", p)
		}
	}
}

// countingConn is a connection whose every byte is already there: each
// Read returns what fits, and counts as one system call would.
type countingConn struct {
	net.Conn
	r     *bytes.Reader
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// TestHandOffBuffersH2CReads: a connection handed over with the start of
// the HTTP/2 preface is read through a buffer, so that the HTTP/2
// server's two reads per frame (header, then payload) take many frames
// per read of the connection; one handed over with an HTTP/1.1 head is
// read as it was, net/http buffering it itself. Either way every byte
// comes out once, in order, the handed-over prefix first.
func TestHandOffBuffersH2CReads(t *testing.T) {
	const frames = 200
	var rest bytes.Buffer
	for i := range frames {
		payload := bytes.Repeat([]byte{byte(i)}, 26)
		rest.Write([]byte{0, 0, 26, 1, 4, 0, 0, 0, byte(i)}) // a HEADERS frame's head
		rest.Write(payload)
	}
	for _, tc := range []struct {
		prefix   string
		buffered bool
	}{
		{string(h2Preface), true},
		{"PR", true}, // declined after two bytes: still the preface's start
		{"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	} {
		cc := &countingConn{r: bytes.NewReader(rest.Bytes())}
		pc := newPrefixConn(cc, []byte(tc.prefix))
		got := make([]byte, len(tc.prefix))
		if _, err := io.ReadFull(pc, got); err != nil || string(got) != tc.prefix {
			t.Fatalf("%q: prefix read back as %q, %v", tc.prefix, got, err)
		}
		var body bytes.Buffer
		head := make([]byte, 9)
		for range frames {
			if _, err := io.ReadFull(pc, head); err != nil {
				t.Fatalf("%q: frame head: %v", tc.prefix, err)
			}
			payload := make([]byte, int(head[2]))
			if _, err := io.ReadFull(pc, payload); err != nil {
				t.Fatalf("%q: frame payload: %v", tc.prefix, err)
			}
			body.Write(head)
			body.Write(payload)
		}
		if !bytes.Equal(body.Bytes(), rest.Bytes()) {
			t.Fatalf("%q: frames read back differ from those sent", tc.prefix)
		}
		if n, err := pc.Read(head); n != 0 || err != io.EOF {
			t.Fatalf("%q: read past the end: %d, %v", tc.prefix, n, err)
		}
		// 200 frames of 35 bytes fill the 4 KiB buffer twice, and one
		// more read meets the end; unbuffered, each frame costs two reads.
		if tc.buffered && cc.reads > 3 || !tc.buffered && cc.reads != 2*frames+1 {
			t.Fatalf("%q: %d reads of the connection for %d frames (buffered %v)", tc.prefix, cc.reads, frames, tc.buffered)
		}
	}
}

// TestH2CConcurrentStreams: many streams at once on one cleartext HTTP/2
// connection (prior knowledge), with values from a few bytes to several
// frames, each written and read back whole.
func TestH2CConcurrentStreams(t *testing.T) {
	_, s := oneMember(t, nil)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	sizes := []int{1, 300, 16 << 10, 40 << 10}
	const streams = 32
	errs := make(chan error, streams)
	for g := range streams {
		go func() {
			errs <- func() error {
				for i, n := range sizes {
					key := fmt.Sprintf("h2/%d/%d", g, i)
					val := bytes.Repeat([]byte{byte('a' + (g+i)%26)}, n)
					url := "http://" + s.ClientAddr() + api.PathKV + key
					req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(val))
					resp, err := hc.Do(req)
					if err != nil {
						return err
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
						return fmt.Errorf("PUT %s: %d %s", key, resp.StatusCode, resp.Proto)
					}
					resp, err = hc.Get(url + "?consistency=linearizable")
					if err != nil {
						return err
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, val) {
						return fmt.Errorf("GET %s: %d, %d bytes back of %d, %v", key, resp.StatusCode, len(b), n, err)
					}
				}
				return nil
			}()
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
