package server

import (
	"net/http"
	neturl "net/url"
	"strings"

	"github.com/raftkv/raftkv/api"
)

// The fast path's request parser (fasthttp.go serves what it accepts).
// It accepts only requests it can read exactly as net/http would
// (FuzzFastRequest checks that against http.ReadRequest) and that carry
// nothing whose meaning only net/http implements; it declines everything
// else, and net/http then reads the same bytes.

// parseVerdict is what the parser makes of the bytes buffered so far.
type parseVerdict int

const (
	needMore parseVerdict = iota // no verdict until more bytes arrive
	accepted                     // a complete request head the fast path serves
	declined                     // net/http must read this request
)

const (
	// fastMaxHeaderBytes bounds the request head the fast path buffers
	// (and MaxHeaderBytes, if lower); a larger head is handed over.
	fastMaxHeaderBytes = 16 << 10
	// fastMaxHeaders bounds the header lines of a served request.
	fastMaxHeaders = 64
)

// fastMethods are the methods the fast path serves, each followed by the
// space that ends it in a request line.
var fastMethods = [...]string{"GET ", "PUT ", "HEAD ", "POST ", "DELETE "}

// fastRequest is a parsed request head.
type fastRequest struct {
	method, target string
	minor          int // HTTP/1.minor
	url            *neturl.URL
	header         http.Header // without Host, as net/http's server leaves it
	host           string
	contentLength  int64
	close          bool // the connection closes after this request
	wants10Alive   bool // HTTP/1.0 with Connection: keep-alive
	wantsClose     bool // Connection: close
	headLen        int  // bytes of the head, final CRLF included
}

// scanHead looks for the end of a request head in b, from line offset
// from on (a previous call's progress, returned as next). It checks the
// request line as soon as it is complete, so that a request the fast path
// will not serve is handed over without waiting for the rest of its head.
// end is the head's length once complete.
func scanHead(b []byte, from int) (end, next int, v parseVerdict) {
	if from == 0 {
		nl := indexByte(b, '\n')
		if nl < 0 {
			if !methodPrefixOK(b) {
				return 0, 0, declined
			}
			return 0, 0, needMore
		}
		if nl == 0 || b[nl-1] != '\r' || !requestLineOK(b[:nl-1]) {
			return 0, 0, declined
		}
		from = nl + 1
	}
	for {
		nl := indexByte(b[from:], '\n')
		if nl < 0 {
			return 0, from, needMore
		}
		if nl == 0 || b[from+nl-1] != '\r' {
			return 0, 0, declined // a bare LF: net/http reads it, leniently
		}
		if nl == 1 {
			return from + 2, from + 2, accepted
		}
		from += nl + 1
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// methodPrefixOK reports whether b may still begin a served method.
func methodPrefixOK(b []byte) bool {
	for _, m := range fastMethods {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// requestLineOK checks a request line's shape (the method, one space, a
// target of visible bytes, one space, HTTP/1.1 or HTTP/1.0).
func requestLineOK(line []byte) bool {
	m := ""
	for _, fm := range fastMethods {
		if len(line) >= len(fm) && string(line[:len(fm)]) == fm {
			m = fm
			break
		}
	}
	if m == "" {
		return false
	}
	rest := line[len(m):]
	sp := indexByte(rest, ' ')
	if sp <= 0 || rest[0] != '/' {
		return false
	}
	for _, c := range rest[:sp] {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	p := string(rest[sp+1:])
	return p == "HTTP/1.1" || p == "HTTP/1.0"
}

// parseHead parses a complete head (as scanHead found it, head ending in
// CRLF CRLF) into a request, or declines it. The strings it returns share
// one copy of the head. The header goes into h and a plain target into u
// when they are not nil (a connection reuses its own from request to
// request), else into new ones.
func parseHead(head []byte, h http.Header, u *neturl.URL) (fastRequest, bool) {
	var fr fastRequest
	fr.headLen = len(head)
	s := string(head)
	nl := strings.IndexByte(s, '\n')
	line := s[:nl-1]
	sp := strings.IndexByte(line, ' ')
	fr.method = internMethod(line[:sp])
	rest := line[sp+1:]
	sp = strings.IndexByte(rest, ' ')
	fr.target = rest[:sp]
	if rest[sp+1:] == "HTTP/1.0" {
		fr.minor = 0
	} else {
		fr.minor = 1
	}
	u, ok := parseTarget(fr.target, u)
	if !ok || !fastRoute(u.Path) {
		return fr, false
	}
	fr.url = u

	// Count the header lines first: one map and one backing array of
	// values of the right size.
	body := s[nl+1 : len(s)-2]
	n := strings.Count(body, "\n")
	if n > fastMaxHeaders {
		return fr, false
	}
	if h != nil {
		clear(h)
		fr.header = h
	} else {
		fr.header = make(http.Header, n)
	}
	vals := make([]string, n)
	fr.contentLength = -1
	var haveHost, have10Alive, haveClose bool
	for len(body) > 0 {
		nl := strings.IndexByte(body, '\n')
		line := body[:nl-1]
		body = body[nl+1:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return fr, false
		}
		key, ok := canonicalKey(line[:colon])
		if !ok {
			return fr, false
		}
		value, ok := headerValue(line[colon+1:])
		if !ok {
			return fr, false
		}
		switch key {
		case "Host":
			if haveHost || !validHost(value) {
				return fr, false
			}
			haveHost, fr.host = true, value
			continue // net/http's server takes Host out of the header
		case "Content-Length":
			if fr.contentLength >= 0 {
				return fr, false
			}
			cl, ok := parseLength(value)
			if !ok {
				return fr, false
			}
			fr.contentLength = cl
		case "Connection":
			closeTok, aliveTok, ok := connectionTokens(value)
			if !ok {
				return fr, false
			}
			haveClose = haveClose || closeTok
			have10Alive = have10Alive || aliveTok
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Pragma", "Http2-Settings":
			// Framing, interim answers, protocol switches, and a header
			// net/http rewrites: its own to handle.
			return fr, false
		}
		vv := fr.header[key]
		if vv == nil {
			vv, vals = vals[:1:1], vals[1:]
			vv[0] = value
		} else {
			vv = append(vv, value)
		}
		fr.header[key] = vv
	}
	if fr.minor == 1 && !haveHost {
		return fr, false // net/http answers 400
	}
	if fr.contentLength < 0 {
		fr.contentLength = 0
	}
	fr.wantsClose = haveClose
	fr.wants10Alive = fr.minor == 0 && have10Alive
	fr.close = haveClose || (fr.minor == 0 && !have10Alive)
	return fr, true
}

func internMethod(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPut:
		return http.MethodPut
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodDelete:
		return http.MethodDelete
	}
	return m
}

// fastRoute reports whether the fast path serves path: a single key, or
// a batch. Everything else (watches above all, which stream) stays with
// net/http.
func fastRoute(path string) bool {
	return len(path) > len(api.PathKV) && strings.HasPrefix(path, api.PathKV) || path == api.PathBatch
}

// parseTarget parses an origin-form request target as neturl.ParseRequestURI
// does; a target of plain characters is split without it, into u if not
// nil.
func parseTarget(t string, u *neturl.URL) (*neturl.URL, bool) {
	path, query, hasQuery := strings.Cut(t, "?")
	plain := true
	for i := 0; i < len(path); i++ {
		if !plainPathByte(path[i]) {
			plain = false
			break
		}
	}
	// A query with ';' makes net/http log a warning about its parsing.
	if strings.IndexByte(query, ';') >= 0 || strings.IndexByte(query, '?') >= 0 {
		return nil, false
	}
	if !plain {
		u, err := neturl.ParseRequestURI(t)
		if err != nil {
			return nil, false
		}
		return u, true
	}
	if u == nil {
		u = new(neturl.URL)
	}
	*u = neturl.URL{Path: path, RawQuery: query}
	if hasQuery && query == "" {
		u.ForceQuery = true
	}
	return u, true
}

// plainPathByte: bytes a path keeps as they are, unescaped and not needing
// escape (so URL.RawPath stays empty).
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// commonKeys interns canonical header keys.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Host", "If-Match",
		"If-None-Match", "Idempotency-Key", "User-Agent", "X-Forwarded-For", "Transfer-Encoding",
		"Expect", "Upgrade", "Trailer", "Pragma", "Http2-Settings", "Te", "Cookie", "Origin", "Referer"} {
		m[k] = k
	}
	return m
}()

// canonicalKey canonicalises a header name as textproto does; false if it
// is not a token.
func canonicalKey(k string) (string, bool) {
	canonical := true
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !tokenByte(c) {
			return "", false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if !canonical {
		var buf [64]byte
		b := buf[:0]
		upper = true
		for i := 0; i < len(k); i++ {
			c := k[i]
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
			upper = c == '-'
		}
		if ck, ok := commonKeys[string(b)]; ok {
			return ck, true
		}
		return string(b), true
	}
	if ck, ok := commonKeys[k]; ok {
		return ck, true
	}
	return k, true
}

// tokenByte: RFC 9110's tchar.
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headerValue trims a field value as textproto does and checks its bytes
// (no controls but tab).
func headerValue(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return strings.Trim(v, " \t"), true
}

// validHost accepts a conservative subset of what net/http's server does:
// a name or address with an optional port.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length of digits only.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// connectionTokens reads a Connection value made only of "close" and
// "keep-alive"; anything else names hop-by-hop headers or protocols the
// fast path leaves to net/http.
func connectionTokens(v string) (closeTok, alive, ok bool) {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		t = strings.Trim(t, " \t")
		switch {
		case t == "":
		case strings.EqualFold(t, "close"):
			closeTok = true
		case strings.EqualFold(t, "keep-alive"):
			alive = true
		default:
			return false, false, false
		}
	}
	return closeTok, alive, true
}
