package server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// fastSeeds are request heads of every kind the parser meets: served
// ones, and ones it must hand to net/http.
var fastSeeds = []string{
	"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /v1/kv/a?consistency=stale HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
	"PUT /v1/kv/bench/000042 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: application/octet-stream\r\n\r\nhello",
	"PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\ncontent-length: 3\r\nif-match: \"7\"\r\n\r\nabcGET /v1/kv/k HTTP/1.1\r\nHost: h\r\n\r\n",
	"POST /v1/kv/log?op=append HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy",
	"DELETE /v1/kv/k HTTP/1.1\r\nHost: h\r\nIdempotency-Key: 1234\r\n\r\n",
	"HEAD /v1/kv/k HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a%2Fb%20c HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a!b*c HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/%zz HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/x? HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/x?a=1;b=2 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/x#frag HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/ HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/cluster HTTP/1.1\r\nHost: h\r\n\r\n",
	"POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
	"GET /v1/kv/a HTTP/1.0\r\n\r\n",
	"GET /v1/kv/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: a b\r\n\r\n",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nx",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\n X-A: 1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\nHost: h\n\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost : h\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-Bad\x01: y\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-Bad: y\x00z\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nx-multi: 1\r\nX-Multi: 2\r\nx-eMpTy:\r\nX-Tabs: \t a b \t\r\n\r\n",
	"GET /v1/kv/a HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n",
	"GET  /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a  HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /v1/kv/a HTTP/1.2\r\nHost: h\r\n\r\n",
	"get /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET http://h/v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n",
	"\r\nGET /v1/kv/a HTTP/1.1\r\nHost: h\r\n\r\n",
	"PUT /v1/kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nshort",
}

// fastParse runs the fast path's parser over b as a connection would
// when b has arrived in one piece: the head and whether it was accepted.
func fastParse(b []byte) (fastRequest, bool) {
	end, _, v := scanHead(b, 0)
	if v != accepted {
		return fastRequest{}, false
	}
	return parseHead(b[:end], nil, nil)
}

// checkFastRequest fails unless the fast parser either declines b or
// yields what net/http reads from it: http.ReadRequest's method, URL,
// protocol, header, host, length, Close and body, and nothing net/http's
// server would refuse.
func checkFastRequest(t *testing.T, b []byte) {
	t.Helper()
	fr, ok := fastParse(b)
	// The verdict must not depend on how the bytes arrive: every proper
	// prefix of an accepted head awaits more.
	if ok {
		for i := 0; i < fr.headLen; i++ {
			if _, _, v := scanHead(b[:i], 0); v != needMore {
				t.Fatalf("%q: prefix of %d bytes got verdict %d, the whole was accepted", b, i, v)
			}
		}
		// Resuming a scan where an earlier one stopped gives the same end.
		for i := 0; i < fr.headLen; i++ {
			_, next, _ := scanHead(b[:i], 0)
			if end, _, v := scanHead(b, next); v != accepted || end != fr.headLen {
				t.Fatalf("%q: scan resumed at %d ended at %d (%d), want %d", b, next, end, v, fr.headLen)
			}
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if !ok {
		return
	}
	if err != nil {
		t.Fatalf("%q: fast path accepted what http.ReadRequest refuses: %v", b, err)
	}
	// What net/http's server checks beyond ReadRequest.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	tp.ReadLine()
	raw, _ := tp.ReadMIMEHeader()
	if hosts := raw["Host"]; req.ProtoAtLeast(1, 1) && len(hosts) != 1 || len(hosts) > 1 {
		t.Fatalf("%q: accepted with Host %q", b, hosts)
	}
	if !httpguts.ValidHostHeader(fr.host) {
		t.Fatalf("%q: accepted a Host net/http refuses", b)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			t.Fatalf("%q: accepted header name %q", b, k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("%q: accepted header value %q", b, v)
			}
		}
	}
	if req.TransferEncoding != nil || req.Header.Get("Expect") != "" || req.Header.Get("Upgrade") != "" {
		t.Fatalf("%q: accepted a request net/http frames or answers itself", b)
	}
	if !strings.HasPrefix(req.URL.Path, "/v1/kv/") && req.URL.Path != "/v1/batch" {
		t.Fatalf("%q: accepted route %q", b, req.URL.Path)
	}
	type view struct {
		Method, RequestURI, Proto string
		Major, Minor              int
		URL                       string
		Path, RawPath, RawQuery   string
		ForceQuery                bool
		Header                    http.Header
		Host                      string
		ContentLength             int64
		Close                     bool
	}
	got := view{fr.method, fr.target, map[int]string{0: "HTTP/1.0", 1: "HTTP/1.1"}[fr.minor], 1, fr.minor,
		fr.url.String(), fr.url.Path, fr.url.RawPath, fr.url.RawQuery, fr.url.ForceQuery,
		fr.header, fr.host, fr.contentLength, fr.close}
	want := view{req.Method, req.RequestURI, req.Proto, req.ProtoMajor, req.ProtoMinor,
		req.URL.String(), req.URL.Path, req.URL.RawPath, req.URL.RawQuery, req.URL.ForceQuery,
		req.Header, req.Host, req.ContentLength, req.Close}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast     %+v\nnet/http %+v", b, got, want)
	}
	if !reflect.DeepEqual(*fr.url, *req.URL) {
		t.Fatalf("%q: URL %#v, net/http %#v", b, *fr.url, *req.URL)
	}
	// The body: the Content-Length bytes after the head, or an error when
	// fewer arrived.
	wantBody, wantErr := io.ReadAll(req.Body)
	rest := b[fr.headLen:]
	if int64(len(rest)) < fr.contentLength {
		if wantErr == nil {
			t.Fatalf("%q: net/http read a whole body from %d bytes, want %d", b, len(rest), fr.contentLength)
		}
		return
	}
	if wantErr != nil || !bytes.Equal(rest[:fr.contentLength], wantBody) {
		t.Fatalf("%q: body %q, net/http %q (%v)", b, rest[:fr.contentLength], wantBody, wantErr)
	}
}

func TestFastRequestDifferential(t *testing.T) {
	for _, s := range fastSeeds {
		checkFastRequest(t, []byte(s))
	}
}

// TestFastRequestVerdicts pins which requests the fast path serves: the
// plain ones, and none of those net/http must judge.
func TestFastRequestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		req    string
		accept bool
	}{
		{"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv", true},
		{"GET /v1/kv/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET /v1/kv/a HTTP/1.0\r\n\r\n", true},
		{"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", true},
		{"GET /v1/kv/ HTTP/1.1\r\nHost: x\r\n\r\n", false},   // a listing
		{"GET /v1/watch HTTP/1.1\r\nHost: x\r\n\r\n", false}, // streams
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"GET /v1/kv/a HTTP/1.1\r\n\r\n", false}, // no Host: net/http's 400
		{"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nv", false},
		{"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false},
		{"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX: 1\r\n 2\r\n\r\n", false}, // obs-fold
		{"GET /v1/kv/a HTTP/1.1\nHost: x\n\n", false},
		{"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false},
		{"OPTIONS /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n", false},
	} {
		_, ok := fastParse([]byte(tc.req))
		if ok != tc.accept {
			t.Errorf("%q: accepted %v, want %v", tc.req, ok, tc.accept)
		}
		checkFastRequest(t, []byte(tc.req))
	}
	// A request line the fast path will not serve is declined at once,
	// before the rest of the head arrives.
	for _, partial := range []string{"PRI * HTTP/2.0\r\n", "PR", "OPTIONS ", "GET /v1/kv/a HTTP/1.1\n"} {
		if _, _, v := scanHead([]byte(partial), 0); v != declined {
			t.Errorf("%q: verdict %d, want declined", partial, v)
		}
	}
}

func FuzzFastRequest(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastRequest(t, b)
	})
}
