package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/rawio"
	"github.com/raftkv/raftkv/internal/stagetrace"
)

// The HTTP/1.1 fast path. On a cleartext client listener every accepted
// connection is first served by fastConn: it reads requests itself and
// serves those parseHead accepts (single-key requests and batches of the
// plainest shape) by calling the same handler net/http would, with a
// lighter request and a response written in one write. The first request
// it declines — an h2c preface, anything malformed or unusual — is handed
// to net/http with every byte read so far, through fastServer's Accept,
// and net/http owns the connection from then on, so its error answers and
// rules stay authoritative for anything out of the ordinary.
//
// What net/http does per request and the fast path does not: a goroutine
// and a context per request (the fast path serves a connection's requests
// on its goroutine, under a context canceled when the connection ends),
// a background read to notice a client gone mid-request, and header
// cloning and sorting.

const (
	fastReadBufSize = 4 << 10
	// fastMaxBuffered bounds the answer body buffered to be written in one
	// piece with its header; beyond it the answer streams (chunked if its
	// length is unknown).
	fastMaxBuffered = 64 << 10
	// fastMaxDrain is how much of a body a handler left unread is read and
	// discarded to keep the connection (net/http's limit); beyond it the
	// connection closes after the answer.
	fastMaxDrain = 256 << 10
)

// fastServer accepts client connections, serves them on the fast path,
// and is the listener net/http serves the handed-over ones from.
type fastServer struct {
	s       *Server
	l       net.Listener
	maxHead int

	handoff    chan net.Conn
	closed     chan struct{} // by Close (net/http closing its listener)
	closeOnce  sync.Once
	acceptDone chan struct{} // the accept loop failed with acceptErr
	acceptErr  error

	base   context.Context // parent of every connection's context
	cancel context.CancelFunc

	shutting atomic.Bool // no new requests: idle connections close
	// served and handedOff count requests served here and connections
	// given to net/http (tests tell the two paths apart by them).
	served, handedOff atomic.Uint64
	mu                sync.Mutex
	shut              bool // closeAll ran: nothing new starts
	conns             map[*fastConn]struct{}
	wg                sync.WaitGroup // the accept loop and the connections
}

func newFastServer(s *Server, l net.Listener) *fastServer {
	base, cancel := context.WithCancel(context.Background())
	return &fastServer{
		s: s, l: l, maxHead: min(fastMaxHeaderBytes, s.cfg.Limits.MaxHeaderBytes),
		handoff: make(chan net.Conn), closed: make(chan struct{}), acceptDone: make(chan struct{}),
		base: base, cancel: cancel, conns: map[*fastConn]struct{}{},
	}
}

// start runs the accept loop, unless closeAll ran first.
func (fs *fastServer) start() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.shut {
		return
	}
	fs.wg.Add(1)
	go fs.acceptLoop()
}

func (fs *fastServer) acceptLoop() {
	defer fs.wg.Done()
	var backoff time.Duration
	for {
		c, err := fs.l.Accept()
		if err != nil {
			// Retry what net/http's Serve would retry (EMFILE and the like).
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-fs.closed:
				}
			}
			fs.acceptErr = err
			close(fs.acceptDone)
			return
		}
		backoff = 0
		fc := &fastConn{fs: fs, c: rawio.Wrap(c), remote: c.RemoteAddr().String()}
		fs.mu.Lock()
		if fs.shut || fs.shutting.Load() {
			fs.mu.Unlock()
			c.Close()
			continue
		}
		fs.conns[fc] = struct{}{}
		fs.wg.Add(1)
		fs.mu.Unlock()
		go fc.serve()
	}
}

// Accept hands net/http the connections the fast path declined.
func (fs *fastServer) Accept() (net.Conn, error) {
	select {
	case c := <-fs.handoff:
		return c, nil
	case <-fs.acceptDone:
		return nil, fs.acceptErr
	case <-fs.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; the fast connections stay until shutdown or
// closeAll (net/http's Shutdown and Close both close their listener).
func (fs *fastServer) Close() error {
	var err error
	fs.closeOnce.Do(func() {
		close(fs.closed)
		err = fs.l.Close()
	})
	return err
}

func (fs *fastServer) Addr() net.Addr { return fs.l.Addr() }

// beginShutdown lets no connection start another request: idle ones are
// closed now, busy ones after their answer.
func (fs *fastServer) beginShutdown() {
	fs.shutting.Store(true)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for fc := range fs.conns {
		if fc.state.CompareAndSwap(connIdle, connClosing) {
			fc.c.Close()
		}
	}
}

// waitConns waits until every fast connection is gone, or ctx is done.
func (fs *fastServer) waitConns(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		fs.mu.Lock()
		n := len(fs.conns)
		fs.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: waiting for %d client connections: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// closeAll closes every fast connection at once, cancels their requests'
// context, and waits for their goroutines.
func (fs *fastServer) closeAll() {
	fs.shutting.Store(true)
	fs.Close()
	fs.cancel()
	fs.mu.Lock()
	fs.shut = true
	for fc := range fs.conns {
		fc.state.Store(connClosing)
		fc.c.Close()
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

func (fs *fastServer) forget(fc *fastConn) {
	fs.mu.Lock()
	delete(fs.conns, fc)
	fs.mu.Unlock()
	fs.wg.Done()
}

// Connection states, for shutdown: an idle connection may be closed.
const (
	connActive int32 = iota
	connIdle
	connClosing
)

// fastConn is one client connection on the fast path.
type fastConn struct {
	fs     *fastServer
	c      net.Conn // read and written without the scheduler's system-call bookkeeping (rawio)
	remote string
	state  atomic.Int32
	ctx    context.Context

	buf  []byte // read buffer; buf[r:w] is read and not yet consumed
	r, w int

	out     []byte // the answer's head, reused
	bodyBuf []byte // the answer's body, reused

	// The request and its answer's writer, reused from request to
	// request: the handlers the fast path serves (keys, batches) keep
	// neither once they return.
	fr       fastRequest
	req      http.Request
	reqProto *http.Request // an empty request with ctx, copied into req
	reqHdr   http.Header
	url      neturl.URL
	body     fastBody
	resp     fastResponse
	respHdr  http.Header

	lastPOST bool

	// The deadlines last set on c, zero before the first.
	readDL, writeDL time.Time
}

// Deadlines move only when they would move by more than deadlineSlack of
// their timeout: setting one costs a timer update, and under load a
// connection would otherwise move both on every request. A timeout may so
// end up to 1/64 of itself early, never late.
const deadlineSlack = 64

// deadlineMoves reports whether a deadline last set to last (zero: never)
// must be set to t: t is earlier, or later by more than the slack.
func deadlineMoves(last, t time.Time, timeout time.Duration) bool {
	return last.IsZero() || t.Before(last) || t.Sub(last) > timeout/deadlineSlack
}

func (fc *fastConn) setReadDeadline(t time.Time, timeout time.Duration) {
	if deadlineMoves(fc.readDL, t, timeout) {
		fc.c.SetReadDeadline(t)
		fc.readDL = t
	}
}

func (fc *fastConn) setWriteDeadline(t time.Time, timeout time.Duration) {
	if deadlineMoves(fc.writeDL, t, timeout) {
		fc.c.SetWriteDeadline(t)
		fc.writeDL = t
	}
}

func (fc *fastConn) serve() {
	ctx, cancel := context.WithCancel(fc.fs.base)
	fc.ctx = ctx
	handedOff := false
	defer func() {
		cancel()
		if !handedOff {
			fc.c.Close()
		}
		fc.fs.forget(fc)
	}()
	lim := &fc.fs.s.cfg.Limits
	fc.buf = make([]byte, fastReadBufSize)
	fc.reqHdr, fc.respHdr = make(http.Header, 8), make(http.Header, 6)
	fc.reqProto = (&http.Request{}).WithContext(ctx)
	first := true
	for {
		if fc.r == fc.w {
			// Idle until the next request begins: net/http's first request
			// waits ReadHeaderTimeout, later ones IdleTimeout.
			fc.r, fc.w = 0, 0
			if len(fc.buf) > fastReadBufSize {
				fc.buf = make([]byte, fastReadBufSize)
			}
			d := lim.IdleTimeout
			if first {
				d = lim.ReadHeaderTimeout
			}
			fc.setReadDeadline(time.Now().Add(d), d)
			if !first {
				// Let the other connections run first: by the time this one
				// reads again, its client has often sent the next request,
				// so the read finds it rather than failing with EAGAIN and
				// parking until the poller wakes it (a system call and a
				// wake-up saved per request under load; with nothing else
				// to run it returns at once).
				runtime.Gosched()
			}
			fc.state.Store(connIdle)
			if fc.fs.shutting.Load() {
				return
			}
			n, _ := fc.c.Read(fc.buf)
			if !fc.state.CompareAndSwap(connIdle, connActive) || n == 0 {
				return
			}
			fc.w = n
		}
		first = false
		t0 := time.Now()
		stagetrace.Mark(stagetrace.RequestRead, 0, 0)
		if fc.lastPOST {
			// net/http tolerates the stray CRLF of old clients after a POST.
			for i := 0; i < 4 && fc.r < fc.w && (fc.buf[fc.r] == '\r' || fc.buf[fc.r] == '\n'); i++ {
				fc.r++
			}
		}
		fr, verdict, err := fc.readHead(t0)
		switch {
		case verdict == accepted:
		case verdict == declined || errors.Is(err, io.EOF) && fc.r < fc.w:
			// A half-sent request at EOF too: net/http answers it as today.
			handedOff = fc.handOff()
			return
		default:
			return // a timeout or a broken connection, as net/http: no answer
		}
		// Kept in the connection: a pointer to a local would move it to
		// the heap on every request.
		fc.fr = fr
		if !fc.serveRequest(t0, &fc.fr) {
			return
		}
	}
}

// readHead reads until the buffered bytes hold a complete request head
// (accepted), or the parser declines them, or reading fails.
func (fc *fastConn) readHead(t0 time.Time) (fastRequest, parseVerdict, error) {
	scanned := 0
	deadlineSet := false
	for {
		end, next, v := scanHead(fc.buf[fc.r:fc.w], scanned)
		switch v {
		case accepted:
			fr, ok := parseHead(fc.buf[fc.r:fc.r+end], fc.reqHdr, &fc.url)
			if !ok || end > fc.fs.maxHead {
				return fr, declined, nil
			}
			return fr, accepted, nil
		case declined:
			return fastRequest{}, declined, nil
		}
		scanned = next
		if fc.w-fc.r >= fc.fs.maxHead {
			return fastRequest{}, declined, nil // net/http answers 431 or reads it
		}
		if !deadlineSet {
			fc.setReadDeadline(t0.Add(fc.fs.s.cfg.Limits.ReadHeaderTimeout), fc.fs.s.cfg.Limits.ReadHeaderTimeout)
			deadlineSet = true
		}
		if err := fc.fill(fc.fs.maxHead); err != nil {
			return fastRequest{}, needMore, err
		}
	}
}

// fill reads more into the buffer, growing it up to limit bytes.
func (fc *fastConn) fill(limit int) error {
	if fc.w == len(fc.buf) {
		if fc.r > 0 {
			fc.w = copy(fc.buf, fc.buf[fc.r:fc.w])
			fc.r = 0
		} else {
			nb := make([]byte, min(2*len(fc.buf), max(limit, len(fc.buf))))
			if len(nb) == len(fc.buf) {
				return errors.New("server: request head over the buffer")
			}
			copy(nb, fc.buf[:fc.w])
			fc.buf = nb
		}
	}
	n, err := fc.c.Read(fc.buf[fc.w:])
	fc.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// handOff gives the connection and what was read of it to net/http; false
// if net/http is gone (then the connection is closed).
func (fc *fastConn) handOff() bool {
	fc.c.SetDeadline(time.Time{})
	pc := newPrefixConn(fc.c, fc.buf[fc.r:fc.w])
	// Counted before the send: once net/http has the connection it may
	// answer before this goroutine runs again.
	fc.fs.handedOff.Add(1)
	select {
	case fc.fs.handoff <- pc:
		return true
	case <-fc.fs.closed:
		fc.fs.handedOff.Add(^uint64(0))
		return false
	}
}

// serveRequest serves one accepted request; false means the connection
// closes.
func (fc *fastConn) serveRequest(t0 time.Time, fr *fastRequest) (keep bool) {
	lim := &fc.fs.s.cfg.Limits
	fc.r += fr.headLen
	fc.lastPOST = fr.method == http.MethodPost
	var body *fastBody
	var rbody io.ReadCloser = http.NoBody
	if fr.contentLength > 0 {
		fc.body = fastBody{fc: fc, n: fr.contentLength}
		body = &fc.body
		rbody = body
		if int64(fc.w-fc.r) < fr.contentLength {
			fc.setReadDeadline(t0.Add(lim.ReadTimeout), lim.ReadTimeout)
		}
	}
	fc.setWriteDeadline(t0.Add(lim.WriteTimeout), lim.WriteTimeout)
	proto := "HTTP/1.1"
	if fr.minor == 0 {
		proto = "HTTP/1.0"
	}
	// Copied from the prototype rather than built: a Request's context can
	// only be set by WithContext, which allocates a new one.
	req := &fc.req
	*req = *fc.reqProto
	req.Method, req.URL, req.Proto, req.ProtoMajor, req.ProtoMinor = fr.method, fr.url, proto, 1, fr.minor
	req.Header, req.Body, req.ContentLength, req.Close = fr.header, rbody, fr.contentLength, fr.close
	req.Host, req.RemoteAddr, req.RequestURI = fr.host, fc.remote, fr.target
	clear(fc.respHdr)
	fc.resp = fastResponse{fc: fc, req: req, fr: fr, body: body, header: fc.respHdr, declared: -1}
	w := &fc.resp
	fc.fs.served.Add(1)
	if !fc.runHandler(w, req) {
		return false
	}
	w.finish()
	stagetrace.Mark(stagetrace.ResponseWritten, 0, 0)
	if body != nil {
		body.done = true
	}
	// Keep no large buffer on an idle connection.
	fc.bodyBuf = fc.bodyBuf[:0]
	if cap(fc.bodyBuf) > fastReadBufSize {
		fc.bodyBuf = nil
	}
	if cap(fc.out) > fastReadBufSize {
		fc.out = nil
	}
	if w.linger && w.werr == nil {
		fc.closeWriteAndWait()
	}
	return w.werr == nil && !w.closeAfter && !fc.fs.shutting.Load()
}

// closeWriteAndWait half-closes and waits a moment before the close, so
// that a client still sending a refused body reads the answer rather than
// a reset (as net/http does).
func (fc *fastConn) closeWriteAndWait() {
	if cw, ok := fc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	select {
	case <-time.After(500 * time.Millisecond):
	case <-fc.ctx.Done():
	}
}

// runHandler runs the handler; false if it panicked (net/http then closes
// the connection without an answer, and logs all but ErrAbortHandler).
func (fc *fastConn) runHandler(w *fastResponse, req *http.Request) (ok bool) {
	defer func() {
		if err := recover(); err != nil {
			ok = false
			if err != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				fc.fs.s.log.Error("panic serving a request", "remote", fc.remote, "err", err, "stack", string(buf))
			}
		}
	}()
	fc.fs.s.ServeHTTP(w, req)
	return true
}

// prefixConn is a handed-over connection: its reads return what the fast
// path read first, then what the connection brings, through br if set;
// its writes go through wb if set.
type prefixConn struct {
	net.Conn
	prefix []byte
	br     *bufio.Reader
	wb     *h2Writer
}

// newPrefixConn hands over c, of which prefix was read. net/http's HTTP/2
// server reads each frame's 9-byte header and then its payload straight
// from the connection, a system call each; an h2c connection therefore
// gets a read buffer, which takes the frames of many streams in one call.
// HTTP/1.1 connections need none: net/http buffers their reads itself.
// Its writes go behind an h2Writer, which gathers the answers of many
// streams into one call.
func newPrefixConn(c net.Conn, prefix []byte) *prefixConn {
	pc := &prefixConn{Conn: c, prefix: prefix}
	if n := min(len(prefix), len(h2Preface)); n > 0 && bytes.Equal(prefix[:n], h2Preface[:n]) {
		pc.br = bufio.NewReaderSize(c, h2ReadBuffer)
		pc.wb = newH2Writer(c)
	}
	return pc
}

// h2Preface starts every cleartext HTTP/2 connection (prior knowledge).
// The fast path declines a request line it will not serve as soon as it
// reads one, so what it hands over may hold only the preface's start.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// h2ReadBuffer is the read buffer of one h2c connection, the size of
// net/http's for HTTP/1.1: a dozen small requests' frames. A read of a
// larger frame's payload bypasses it.
const h2ReadBuffer = 4 << 10

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.br != nil {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.wb != nil {
		return c.wb.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *prefixConn) Close() error {
	if c.wb != nil {
		return c.wb.Close()
	}
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close after an error answer, as it does
// on a plain TCP connection.
func (c *prefixConn) CloseWrite() error {
	if c.wb != nil {
		return c.wb.CloseWrite()
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// fastBody reads exactly the request's Content-Length bytes, from the
// connection's buffer first.
type fastBody struct {
	fc     *fastConn
	n      int64 // left to read
	err    error
	eof    bool // the client closed its side mid-body
	closed bool // by the handler
	done   bool // the request was answered
}

func (b *fastBody) Read(p []byte) (int, error) {
	switch {
	case b.closed || b.done:
		return 0, http.ErrBodyReadAfterClose
	case b.n == 0:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	case len(p) == 0:
		return 0, nil
	}
	fc := b.fc
	if fc.r == fc.w {
		fc.r, fc.w = 0, 0
		var n int
		var err error
		if len(p) >= len(fc.buf) {
			// A large read goes straight into p, never past the body.
			n, err = fc.c.Read(p[:min(int64(len(p)), b.n)])
			b.n -= int64(n)
		} else {
			n, err = fc.c.Read(fc.buf)
			fc.w = n
			n = 0
		}
		if n == 0 && fc.w == 0 {
			if err == nil {
				err = io.ErrNoProgress
			} else if errors.Is(err, io.EOF) {
				err, b.eof = io.ErrUnexpectedEOF, true
			}
			b.err = err
			return 0, err
		}
		if n > 0 {
			if b.n == 0 {
				return n, io.EOF
			}
			return n, nil
		}
	}
	n := copy(p[:min(int64(len(p)), b.n)], fc.buf[fc.r:fc.w])
	fc.r += n
	b.n -= int64(n)
	if b.n == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (b *fastBody) Close() error {
	b.closed = true
	return nil
}

// drain discards what the handler left of the body, up to fastMaxDrain;
// false if the connection cannot be reused.
func (b *fastBody) drain() (ok, tooBig bool) {
	if b.closed {
		return b.n == 0, false
	}
	if b.n > fastMaxDrain {
		return false, true
	}
	var scratch [512]byte
	for b.n > 0 && !b.eof {
		if _, err := b.Read(scratch[:]); err != nil && !errors.Is(err, io.EOF) && !b.eof {
			return false, false
		}
	}
	// After the client's EOF the connection is kept like net/http keeps
	// it: reading the next request ends it.
	return true, false
}

// fastResponse is the fast path's http.ResponseWriter: it buffers the
// answer (up to fastMaxBuffered) and writes head and body with one write.
type fastResponse struct {
	fc     *fastConn
	req    *http.Request
	fr     *fastRequest
	body   *fastBody
	header http.Header

	wrote  bool
	status int
	// Set from the handler's header when it wrote it: the head so far,
	// and the fields whose framing the answer decides.
	head                  []byte
	declared              int64  // the handler's Content-Length, -1 if none
	declaredText          string // and as the handler wrote it
	haveType, haveEncoded bool
	haveDate              bool
	connVals              []string

	written    int64
	streaming  bool
	chunked    bool
	closeAfter bool
	linger     bool // the client may still be sending a body we refused
	werr       error

	rw responseWriter // the server's wrapper of this writer (ServeHTTP)
}

func (w *fastResponse) Header() http.Header { return w.header }

func (w *fastResponse) WriteHeader(code int) {
	if w.wrote {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An interim answer goes out at once; the final one follows.
		b := appendStatusLine(nil, w.fr.minor, code)
		b = appendHeader(b, w.header, func(string) bool { return true })
		b = append(b, "\r\n"...)
		if _, err := w.fc.c.Write(b); err != nil {
			w.werr = err
		}
		return
	}
	w.wrote, w.status = true, code
	h := appendStatusLine(w.fc.out[:0], w.fr.minor, code)
	noBody := !bodyAllowedForStatus(code)
	if v := w.header["Content-Type"]; len(v) > 0 {
		w.haveType = true
	}
	if v := w.header["Content-Encoding"]; len(v) > 0 && v[0] != "" {
		w.haveEncoded = true
	}
	_, w.haveDate = w.header["Date"]
	if v := w.header["Content-Length"]; len(v) > 0 && !noBody {
		if n, err := strconv.ParseInt(trimOWS(v[0]), 10, 64); err == nil && n >= 0 {
			// Kept now: the handler may change its header after this.
			w.declared, w.declaredText = n, trimOWS(v[0])
		} else {
			w.fc.fs.s.log.Debug("http: invalid Content-Length", "value", v[0])
		}
	}
	w.connVals = w.header["Connection"]
	w.head = appendHeader(h, w.header, func(k string) bool {
		switch k {
		case "Content-Length", "Connection", "Transfer-Encoding":
			return false // the answer's framing decides these
		case "Content-Type":
			return code != http.StatusNotModified
		}
		return true
	})
}

// crlf ends a chunk of a chunked answer.
var crlf = []byte("\r\n")

func (w *fastResponse) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.declared >= 0 && w.written > w.declared {
		return 0, http.ErrContentLength
	}
	if w.werr != nil {
		return 0, w.werr
	}
	if !w.streaming {
		if len(w.fc.bodyBuf)+len(p) <= fastMaxBuffered {
			w.fc.bodyBuf = append(w.fc.bodyBuf, p...)
			return len(p), nil
		}
		w.startStreaming()
		if w.werr != nil {
			return 0, w.werr
		}
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	var err error
	if w.chunked {
		var pre [20]byte
		b := strconv.AppendInt(pre[:0], int64(len(p)), 16)
		b = append(b, "\r\n"...)
		_, err = rawio.WriteBuffers(w.fc.c, b, p, crlf)
	} else {
		_, err = w.fc.c.Write(p)
	}
	if err != nil {
		w.werr = err
		return 0, err
	}
	return len(p), nil
}

// startStreaming sends the head and what is buffered: the answer is too
// large to hold.
func (w *fastResponse) startStreaming() {
	w.streaming = true
	head := w.completeHead(false)
	var body []byte
	if w.req.Method != http.MethodHead {
		body = w.fc.bodyBuf
		if w.chunked && len(body) > 0 {
			head = strconv.AppendInt(head, int64(len(body)), 16)
			head = append(head, "\r\n"...)
			body = append(body, "\r\n"...)
		}
	}
	w.send(head, body)
	w.fc.bodyBuf = w.fc.bodyBuf[:0]
}

// finish completes the answer after the handler returned.
func (w *fastResponse) finish() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	isHEAD := w.req.Method == http.MethodHead
	if w.streaming {
		if w.chunked && !isHEAD && w.werr == nil {
			if _, err := w.fc.c.Write([]byte("0\r\n\r\n")); err != nil {
				w.werr = err
			}
		}
	} else {
		head := w.completeHead(true)
		var body []byte
		if !isHEAD && bodyAllowedForStatus(w.status) {
			body = w.fc.bodyBuf
		}
		w.send(head, body)
	}
	if !isHEAD && w.declared >= 0 && bodyAllowedForStatus(w.status) && w.written != w.declared {
		w.closeAfter = true // a body short of its length: the stream is out of step
	}
}

// send writes head and body with one write (writev if the body is large).
func (w *fastResponse) send(head, body []byte) {
	var err error
	if len(body) <= 2<<10 {
		head = append(head, body...)
		_, err = w.fc.c.Write(head)
	} else {
		_, err = rawio.WriteBuffers(w.fc.c, head, body)
	}
	w.fc.out = head[:0]
	if err != nil {
		w.werr = err
	}
}

// completeHead adds the framing fields to the handler's head as net/http
// would (Content-Length of a finished body, sniffed Content-Type, Date,
// chunking, Connection) and ends it.
func (w *fastResponse) completeHead(final bool) []byte {
	h := w.head
	fr := w.fr
	isHEAD := w.req.Method == http.MethodHead
	bodyOK := bodyAllowedForStatus(w.status)
	keepAlives := !w.fc.fs.shutting.Load()
	length := w.declared
	autoLength := false
	if final && length < 0 && bodyOK && (!isHEAD || w.written > 0) {
		length, autoLength = w.written, true
	}
	connSet := w.connVals != nil
	setConn := ""
	if fr.wants10Alive && (isHEAD || length >= 0 || !bodyOK) {
		if !connSet {
			setConn = "keep-alive"
		}
	} else if fr.minor == 0 || fr.wantsClose {
		w.closeAfter = true
	}
	if len(w.connVals) > 0 && w.connVals[0] == "close" || !keepAlives {
		w.closeAfter = true
	}
	if w.req.ContentLength != 0 && !w.closeAfter && w.body != nil {
		ok, tooBig := w.body.drain()
		switch {
		case tooBig:
			w.closeAfter, w.linger = true, true
			w.connVals, connSet, setConn = nil, false, "close"
		case !ok:
			w.closeAfter = true
		}
	}
	if bodyOK && !w.haveType && !w.haveEncoded && len(w.fc.bodyBuf) > 0 {
		h = append(h, "Content-Type: "...)
		h = append(h, http.DetectContentType(w.fc.bodyBuf)...)
		h = append(h, "\r\n"...)
	}
	if !w.haveDate {
		h = appendDate(h, time.Now())
	}
	switch {
	case isHEAD || !bodyOK || w.status == http.StatusNoContent:
	case length >= 0:
	case fr.minor == 1:
		w.chunked = true
		h = append(h, "Transfer-Encoding: chunked\r\n"...)
	default:
		w.closeAfter = true // HTTP/1.0 without a length: the end is the close
	}
	if length >= 0 && !w.chunked && bodyOK {
		h = append(h, "Content-Length: "...)
		if !autoLength {
			h = append(h, w.declaredText...)
		} else {
			h = strconv.AppendInt(h, length, 10)
		}
		h = append(h, "\r\n"...)
	}
	if w.closeAfter && (!keepAlives || !headerHasToken(w.connVals, "close")) {
		w.connVals, connSet = nil, false
		if fr.minor == 1 {
			setConn = "close"
		} else {
			setConn = ""
		}
	}
	for _, v := range w.connVals {
		h = append(h, "Connection: "...)
		h = appendSanitized(h, v)
		h = append(h, "\r\n"...)
	}
	if setConn != "" && !connSet {
		h = append(h, "Connection: "...)
		h = append(h, setConn...)
		h = append(h, "\r\n"...)
	}
	return append(h, "\r\n"...)
}

func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

// appendStatusLine writes the status line in the request's version, as
// net/http does.
func appendStatusLine(b []byte, minor, code int) []byte {
	if minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader writes the fields keep admits, dropping invalid names and
// turning line breaks in values into spaces, as net/http does.
func appendHeader(b []byte, h http.Header, keep func(string) bool) []byte {
	for k, vv := range h {
		if !validFieldName(k) || !keep(k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendSanitized(b, trimOWS(v))
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func appendSanitized(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte(k[i]) {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// headerHasToken reports whether a comma-separated list in vv holds tok.
func headerHasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(trimOWS(t), tok) {
				return true
			}
		}
	}
	return false
}

// dateLine is a formatted Date field, reused for its second.
type dateLine struct {
	sec  int64
	line []byte
}

var fastDate atomic.Pointer[dateLine]

func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	d := fastDate.Load()
	if d == nil || d.sec != sec {
		line := now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)
		d = &dateLine{sec: sec, line: append(line, "\r\n"...)}
		fastDate.Store(d)
	}
	return append(b, d.line...)
}
