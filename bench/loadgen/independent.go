package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// PerClient is a Store whose load clients each get their own: Run and
// Fill call ForClient(i) once per client i and send that client's
// operations only through what it returns. The independent-clients
// stores use it so that every load client has its own connection, as
// separate processes would.
type PerClient interface {
	Store
	ForClient(i int) Store
}

func forClient(s Store, i int) Store {
	if pc, ok := s.(PerClient); ok {
		return pc.ForClient(i)
	}
	return s
}

// RaftkvPlain is raftkv reached by independent plain HTTP/1.1 clients:
// each load client its own keep-alive connection to the leader, one
// request per operation (PUT /v1/kv/k with the value as body, GET
// /v1/kv/k?consistency=...), no batching and no Idempotency-Key, as
// curl, a script or a client in another language would send them. The
// client is written by hand (a request is a few bytes written and a
// response read) so the load generator spends little CPU per request.
type RaftkvPlain struct {
	addr        string
	consistency string
	mu          sync.Mutex
	conns       map[int]*plainConn
}

// NewRaftkvPlain returns a Store whose clients each talk to addr
// ("host:port", the leader) over their own connection and read at the
// given consistency level.
func NewRaftkvPlain(addr, consistency string) *RaftkvPlain {
	return &RaftkvPlain{addr: addr, consistency: consistency, conns: map[int]*plainConn{}}
}

// ForClient returns client i's connection (made on first use).
func (r *RaftkvPlain) ForClient(i int) Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conns[i]
	if c == nil {
		c = &plainConn{addr: r.addr, consistency: r.consistency}
		r.conns[i] = c
	}
	return c
}

// Put and Get on the Store itself go through client 0.
func (r *RaftkvPlain) Put(ctx context.Context, key string, value []byte) error {
	return r.ForClient(0).Put(ctx, key, value)
}

// Get reads key through client 0.
func (r *RaftkvPlain) Get(ctx context.Context, key string) error {
	return r.ForClient(0).Get(ctx, key)
}

// Txn3 is not part of the independent-clients rows.
func (r *RaftkvPlain) Txn3(context.Context, string, []byte) error { return errNoPlainTxn }

// errNoPlainTxn: the independent-clients mode sends plain puts and gets.
var errNoPlainTxn = errors.New("loadgen: no transactions in the independent-clients mode")

// Close closes every connection.
func (r *RaftkvPlain) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	return nil
}

// plainConn is one load client's HTTP/1.1 connection. A failed exchange
// closes it; the next operation dials again.
type plainConn struct {
	addr        string
	consistency string
	mu          sync.Mutex // Fill may share a client between workers
	conn        net.Conn
	br          *bufio.Reader
	req         []byte
}

func (c *plainConn) Put(ctx context.Context, key string, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.req = append(c.req[:0], "PUT /v1/kv/"...)
	c.req = append(c.req, key...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(value)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, value...)
	return c.exchange(ctx)
}

func (c *plainConn) Get(ctx context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.req = append(c.req[:0], "GET /v1/kv/"...)
	c.req = append(c.req, key...)
	c.req = append(c.req, "?consistency="...)
	c.req = append(c.req, c.consistency...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\n\r\n"...)
	return c.exchange(ctx)
}

// exchange sends c.req and reads the answer, which must be 200.
func (c *plainConn) exchange(ctx context.Context) error {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	err := c.roundTrip()
	if err != nil {
		c.Close()
	}
	return err
}

func (c *plainConn) roundTrip() error {
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	return readAnswer(c.br)
}

// readAnswer reads one HTTP/1.1 answer from br and discards its body. It
// parses only what it needs, as wrk does, so that the load generator's
// own CPU per request stays near a C client's: net/http's ReadResponse
// builds a header map and a body reader for every answer. Anything but a
// 200 with a Content-Length body on a connection kept open is an error.
func readAnswer(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 14 || string(line[:5]) != "HTTP/" || line[8] != ' ' {
		return fmt.Errorf("raftkv: malformed status line %q", trimEOL(line))
	}
	if string(line[9:12]) != "200" || line[12] != ' ' && line[12] != '\r' {
		return fmt.Errorf("raftkv: %s", trimEOL(line[9:]))
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		h := trimEOL(line)
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return fmt.Errorf("raftkv: malformed header line %q", h)
		}
		name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || length >= 0 {
				return fmt.Errorf("raftkv: bad Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return fmt.Errorf("raftkv: Transfer-Encoding %q in an answer this client reads by length", value)
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			return errors.New("raftkv: server closed the connection")
		}
	}
	if length < 0 {
		return errors.New("raftkv: answer without a Content-Length")
	}
	_, err = br.Discard(length)
	return err
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func (c *plainConn) Txn3(context.Context, string, []byte) error { return errNoPlainTxn }

func (c *plainConn) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.br = nil, nil
	return err
}

// EtcdPlain is etcd reached by independent clients: each load client its
// own clientv3 client with its own gRPC connection to one member (the
// leader, so that no put is forwarded), one request per operation.
type EtcdPlain struct {
	mu           sync.Mutex
	endpoint     string
	serializable bool
	clients      map[int]*Etcd
}

// NewEtcdPlain returns a Store whose clients each connect to endpoint
// alone.
func NewEtcdPlain(endpoint string, serializable bool) *EtcdPlain {
	return &EtcdPlain{endpoint: endpoint, serializable: serializable, clients: map[int]*Etcd{}}
}

// ForClient returns client i's connection (made on first use).
func (e *EtcdPlain) ForClient(i int) Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.clients[i]
	if c == nil {
		cl, err := clientv3.New(clientv3.Config{
			Endpoints: []string{e.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		})
		if err != nil {
			return failing{fmt.Errorf("etcd client: %w", err)}
		}
		c = &Etcd{conns: []*clientv3.Client{cl}, serializable: e.serializable}
		e.clients[i] = c
	}
	return c
}

// Put sets key to value through client 0.
func (e *EtcdPlain) Put(ctx context.Context, key string, value []byte) error {
	return e.ForClient(0).Put(ctx, key, value)
}

// Get reads key through client 0.
func (e *EtcdPlain) Get(ctx context.Context, key string) error {
	return e.ForClient(0).Get(ctx, key)
}

// Txn3 is not part of the independent-clients rows.
func (e *EtcdPlain) Txn3(context.Context, string, []byte) error { return errNoPlainTxn }

// Close closes every client.
func (e *EtcdPlain) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, c := range e.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// failing is a Store whose every operation fails with err.
type failing struct{ err error }

func (f failing) Put(context.Context, string, []byte) error  { return f.err }
func (f failing) Get(context.Context, string) error          { return f.err }
func (f failing) Txn3(context.Context, string, []byte) error { return f.err }
func (f failing) Close() error                               { return nil }
