package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// Recipes built on leases, revisions and watch, in the manner of etcd's
// concurrency package: a Session (a lease kept alive), a Mutex and an
// Election, each with a fencing token.
//
// Guarantee. Holders of a Mutex (or leaders of an Election) on one prefix
// are ordered by their fencing token, the create revision of their key:
// each later holder's token is larger. While a holder's session lease is
// alive, nobody else holds the lock. A holder cannot know at every instant
// that its lease is still alive (a pause or a partition longer than the
// TTL ends it without its knowing), so a resource the lock protects must
// check the token: reject any request carrying a token lower than the
// highest it has seen. Writes to raftkv itself can be fenced exactly with
// IsOwner() in a transaction's compares.

// ErrSessionExpired is returned by calls that find their session's lease
// gone.
var ErrSessionExpired = errors.New("client: session lease expired")

// Session is a lease kept alive in the background until Close or until a
// renewal finds it gone (Done is then closed).
type Session struct {
	c      *Client
	id     int64
	ttl    int64
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSession grants a lease of ttl seconds and keeps it alive.
func NewSession(ctx context.Context, c *Client, ttl int64) (*Session, error) {
	id, granted, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	ch, err := c.KeepAlive(kctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &Session{c: c, id: id, ttl: granted, cancel: cancel, done: make(chan struct{})}
	go func() {
		for range ch {
		}
		close(s.done)
	}()
	return s, nil
}

// Lease returns the session's lease id.
func (s *Session) Lease() int64 { return s.id }

// Done is closed when the session stops renewing its lease.
func (s *Session) Done() <-chan struct{} { return s.done }

// Orphan stops renewing without revoking: the lease expires by itself
// (as when the process dies).
func (s *Session) Orphan() { s.cancel() }

// Close stops renewing and revokes the lease, deleting its keys.
func (s *Session) Close(ctx context.Context) error {
	s.cancel()
	err := s.c.Revoke(ctx, s.id)
	if IsLeaseNotFound(err) {
		return nil
	}
	return err
}

// Mutex is a distributed lock on a key prefix.
type Mutex struct {
	s      *Session
	pfx    string
	mu     sync.Mutex
	key    string
	myRev  int64
	holder bool
}

// NewMutex returns a mutex on prefix pfx for the session.
func NewMutex(s *Session, pfx string) *Mutex { return &Mutex{s: s, pfx: pfx + "/"} }

// Lock waits until the Session holds the lock (or ctx ends; the queued
// key is then removed).
func (m *Mutex) Lock(ctx context.Context) error {
	key, rev, err := queue(ctx, m.s, m.pfx, nil)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.key, m.myRev = key, rev
	m.mu.Unlock()
	if err := waitTurn(ctx, m.s, m.pfx, rev); err != nil {
		dctx, cancel := context.WithTimeout(context.Background(), m.s.c.cfg.RequestTimeout)
		m.s.c.DeleteRange(dctx, key)
		cancel()
		return err
	}
	m.mu.Lock()
	m.holder = true
	m.mu.Unlock()
	return nil
}

// Unlock releases the lock.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	key := m.key
	m.holder, m.key, m.myRev = false, "", 0
	m.mu.Unlock()
	if key == "" {
		return errors.New("client: unlock of a mutex not held")
	}
	_, _, _, err := m.s.c.DeleteRange(ctx, key)
	return err
}

// Token is the fencing token of the current hold: the create revision of
// the lock key; 0 when not held.
func (m *Mutex) Token() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.holder {
		return 0
	}
	return m.myRev
}

// IsOwner is a compare that holds only while this hold is current: use it
// in a Txn to fence writes.
func (m *Mutex) IsOwner() Cmp {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Compare(CreateRevision(m.key), "=", m.myRev)
}

// Key is the lock key of the current hold.
func (m *Mutex) Key() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.key
}

// queue puts the Session's key under pfx (once: a retry finds it) and
// returns it with its create revision.
func queue(ctx context.Context, s *Session, pfx string, value []byte) (string, int64, error) {
	select {
	case <-s.done:
		return "", 0, ErrSessionExpired
	default:
	}
	key := pfx + strconv.FormatInt(s.id, 16)
	r, err := s.c.Txn(ctx, []Cmp{Compare(CreateRevision(key), "=", 0)},
		[]Op{OpPut(key, value, WithLease(s.id))},
		[]Op{OpGet(key)})
	if err != nil {
		return "", 0, err
	}
	if r.Succeeded {
		return key, r.Revision, nil
	}
	kvs := r.Results[0].Range.KVs
	if len(kvs) == 0 {
		return "", 0, fmt.Errorf("client: queue key %s vanished", key)
	}
	return key, kvs[0].CreateRevision, nil
}

// waitTurn waits until no key under pfx was created before rev: each
// waiter watches only the key just ahead of it, so a release wakes one.
func waitTurn(ctx context.Context, s *Session, pfx string, rev int64) error {
	for {
		r, err := s.c.Range(ctx, pfx, []OpOption{WithPrefix(), WithMaxCreateRev(rev - 1), WithSort("create", "descend"), WithLimit(1)})
		if err != nil {
			return err
		}
		if len(r.KVs) == 0 {
			return nil
		}
		if err := waitDelete(ctx, s, r.KVs[0].Key, r.Revision+1); err != nil {
			return err
		}
	}
}

// waitDelete waits for key's delete at or after revision from.
func waitDelete(ctx context.Context, s *Session, key string, from int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range s.c.Watch(wctx, key, WithWatchRev(from)) {
		if wr.Err != nil {
			return wr.Err
		}
		for _, e := range wr.Events {
			if e.Type == "delete" {
				return nil
			}
		}
		select {
		case <-s.done:
			return ErrSessionExpired
		default:
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Election elects one leader among sessions campaigning on a prefix.
type Election struct {
	s   *Session
	pfx string
	key string
	rev int64
}

// NewElection returns an election on prefix pfx for the session.
func NewElection(s *Session, pfx string) *Election { return &Election{s: s, pfx: pfx + "/"} }

// Campaign waits until the Session leads, with value as its proclamation.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	key, rev, err := queue(ctx, e.s, e.pfx, value)
	if err != nil {
		return err
	}
	e.key, e.rev = key, rev
	if err := waitTurn(ctx, e.s, e.pfx, rev); err != nil {
		dctx, cancel := context.WithTimeout(context.Background(), e.s.c.cfg.RequestTimeout)
		e.s.c.DeleteRange(dctx, key)
		cancel()
		e.key, e.rev = "", 0
		return err
	}
	return nil
}

// Proclaim changes the leader's value, only while the Session leads.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	if e.key == "" {
		return errors.New("client: proclaim without leading")
	}
	r, err := e.s.c.Txn(ctx, []Cmp{Compare(CreateRevision(e.key), "=", e.rev)}, []Op{OpPut(e.key, value, WithLease(e.s.id))}, nil)
	if err != nil {
		return err
	}
	if !r.Succeeded {
		return errors.New("client: no longer the leader")
	}
	return nil
}

// Resign gives up leadership.
func (e *Election) Resign(ctx context.Context) error {
	if e.key == "" {
		return nil
	}
	_, _, _, err := e.s.c.DeleteRange(ctx, e.key)
	e.key, e.rev = "", 0
	return err
}

// Token is the fencing token of the Session's leadership (its key's
// create revision), 0 if it has not won.
func (e *Election) Token() int64 { return e.rev }

// Leader returns the current leader's key-value; IsNotFound if none.
func (e *Election) Leader(ctx context.Context) (*KeyValue, error) {
	r, err := e.s.c.Range(ctx, e.pfx, []OpOption{WithPrefix(), WithSort("create", "ascend"), WithLimit(1)})
	if err != nil {
		return nil, err
	}
	if len(r.KVs) == 0 {
		return nil, &Error{Status: 404, Code: "not_found", Message: "no leader"}
	}
	return &r.KVs[0], nil
}
