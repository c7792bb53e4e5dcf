package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Lease timing. Which leases exist, their TTLs and checkpointed remaining
// TTLs are replicated (package kv); when one expires is decided only by
// the leader's clock, kept here, and carried out by proposing its revoke.
const (
	// leaseTick is how often the leader looks for expired leases.
	leaseTick = 100 * time.Millisecond
	// DefaultLeaseCheckpointInterval is Config.LeaseCheckpointInterval's
	// default.
	DefaultLeaseCheckpointInterval = 30 * time.Second
	// maxRevokesPerTick bounds the expiry revokes proposed at once.
	maxRevokesPerTick = 64
)

// lessor is the leader's view of lease deadlines. The lease loop and the
// keep-alive handlers share it under mu.
//
// Guarantee: a lease expires no earlier than TTL after the last keep-alive
// that was answered, measured on the clock of the leader that answered
// it, provided clocks run at about the same rate. A new leader takes over
// every lease with the remaining TTL last checkpointed (or the whole TTL)
// plus an election timeout, counted from when it took over; a keep-alive
// answered after a checkpoint first resets the checkpoint through the log.
type lessor struct {
	mu sync.Mutex
	// term is the term these deadlines were set in; 0 when not leading.
	term     pb.Term
	deadline map[int64]time.Time
	// revoking holds the leases past their deadline whose revoke has been
	// proposed, with when to propose it again if it has not applied.
	revoking map[int64]time.Time
	// lastCheckpoint is when the leader last checkpointed.
	lastCheckpoint time.Time
	// hideOnce, set by a test, makes renew miss that lease once, as a
	// leader that has yet to apply the lease's grant would.
	hideOnce int64
}

// minLeaseTTL is the shortest TTL granted: a lease shorter than an
// election and a half could expire during a leader change that its owner
// cannot help (etcd's rule). Shorter requests are raised to it.
func (s *Server) minLeaseTTL() int64 {
	return int64(math.Ceil(1.5 * s.cfg.ElectionTimeout.Seconds()))
}

// leaseLoop runs on every member; only a leader acts.
func (s *Server) leaseLoop() {
	defer s.bg.Done()
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		expired, checkpoints := s.leaseTickOnce(time.Now())
		if len(expired) > 0 {
			s.revokeExpired(expired)
		}
		if len(checkpoints) > 0 {
			s.proposeLease(kv.Command{Op: kv.OpLeaseCheckpoint, Checkpoints: checkpoints})
		}
	}
}

// leaseTickOnce brings the deadlines up to date with leadership and the
// replicated leases, and returns the leases past their deadline and, when
// due, the checkpoints to record.
func (s *Server) leaseTickOnce(now time.Time) (expired []int64, checkpoints []kv.LeaseCheckpoint) {
	_, term, role := s.node.Leader()
	l := &s.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if role != raft.Leader {
		l.term, l.deadline, l.revoking = 0, nil, nil
		return nil, nil
	}
	leases := s.store.Leases()
	s.syncDeadlinesLocked(term, leases, now)
	for _, ls := range leases {
		if d := l.deadline[ls.ID]; now.Before(d) || len(expired) == maxRevokesPerTick {
			continue
		}
		if again, ok := l.revoking[ls.ID]; ok && now.Before(again) {
			continue
		}
		expired = append(expired, ls.ID)
		// Proposed again after a request's time if the revoke does not
		// apply; the deadline stays passed, so no keep-alive renews it.
		l.revoking[ls.ID] = now.Add(s.cfg.Limits.RequestTimeout)
	}
	if every := s.cfg.LeaseCheckpointInterval; now.Sub(l.lastCheckpoint) >= every {
		l.lastCheckpoint = now
		for _, ls := range leases {
			if time.Duration(ls.TTL)*time.Second <= every || len(checkpoints) == kv.MaxCheckpoints {
				continue
			}
			rem := int64(math.Ceil(l.deadline[ls.ID].Sub(now).Seconds()))
			if rem > 0 && rem < ls.TTL {
				checkpoints = append(checkpoints, kv.LeaseCheckpoint{ID: ls.ID, Remaining: rem})
			}
		}
	}
	return expired, checkpoints
}

// syncDeadlinesLocked gives every lease a deadline: on taking over (a new
// term), each lease gets its remaining TTL plus an election timeout; a
// lease this leader has not seen yet (granted and applied since) gets its
// TTL. Deadlines of leases gone are dropped.
func (s *Server) syncDeadlinesLocked(term pb.Term, leases []kv.LeaseInfo, now time.Time) {
	l := &s.lessor
	promoted := l.term != term
	if promoted {
		l.term, l.deadline, l.revoking, l.lastCheckpoint = term, map[int64]time.Time{}, map[int64]time.Time{}, now
	}
	had, kept := len(l.deadline), 0
	for _, ls := range leases {
		if _, ok := l.deadline[ls.ID]; ok {
			kept++
			continue
		}
		rem := ls.TTL
		if ls.Remaining > 0 {
			rem = ls.Remaining
		}
		d := now.Add(time.Duration(rem) * time.Second)
		if promoted {
			d = d.Add(s.cfg.ElectionTimeout)
		}
		l.deadline[ls.ID] = d
	}
	// Lease ids are distinct, so when every deadline there was is some
	// lease's, none is stale: the usual tick, which then builds no set of
	// all the leases.
	if kept == had {
		return
	}
	seen := make(map[int64]bool, len(leases))
	for _, ls := range leases {
		seen[ls.ID] = true
	}
	for id := range l.deadline {
		if !seen[id] {
			delete(l.deadline, id)
			delete(l.revoking, id)
		}
	}
}

func (s *Server) revokeExpired(ids []int64) {
	cmds := make([][]byte, len(ids))
	for i, id := range ids {
		cmds[i] = kv.EncodeCommand(kv.Command{Op: kv.OpLeaseRevoke, Lease: id})
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	_, errs := s.node.ProposeBatch(ctx, cmds)
	for i, err := range errs {
		if err != nil {
			s.log.Debug("revoking an expired lease", "lease", ids[i], "err", err)
		}
	}
}

func (s *Server) proposeLease(c kv.Command) (*kv.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	out, err := s.node.Propose(ctx, kv.EncodeCommand(c))
	if err != nil {
		return nil, err
	}
	res, _ := out.(*kv.Result)
	if res == nil {
		return nil, fmt.Errorf("state machine answered %T", out)
	}
	return res, res.Err()
}

// renew resets a lease's deadline to its TTL from now and returns the TTL;
// ok false when the lease does not exist, has expired on this leader's
// clock (its revoke is under way, or soon will be, and would undo the
// renewal), or this member does not lead. reset says the replicated
// checkpoint must be cleared first.
func (s *Server) renew(id int64, now time.Time) (ttl int64, reset, ok bool) {
	info, _, exists := s.store.Lease(id, false)
	_, term, role := s.node.Leader()
	if !exists || role != raft.Leader {
		return 0, false, false
	}
	l := &s.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hideOnce == id && id != 0 {
		l.hideOnce = 0
		return 0, false, false
	}
	if l.term != term {
		s.syncDeadlinesLocked(term, s.store.Leases(), now)
	}
	if d, known := l.deadline[id]; known && !now.Before(d) {
		return 0, false, false
	}
	l.deadline[id] = now.Add(time.Duration(info.TTL) * time.Second)
	return info.TTL, info.Remaining != 0, true
}

// startLease gives a lease just granted its whole TTL from now, replacing
// what this leader held under its id: a lease of that id expired and
// revoked since the lease loop last looked.
func (s *Server) startLease(id int64, now time.Time) {
	info, _, exists := s.store.Lease(id, false)
	_, term, role := s.node.Leader()
	if !exists || role != raft.Leader {
		return
	}
	l := &s.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != term {
		s.syncDeadlinesLocked(term, s.store.Leases(), now)
	}
	l.deadline[id] = now.Add(time.Duration(info.TTL) * time.Second)
	delete(l.revoking, id)
}

// remaining returns a lease's remaining TTL on this leader's clock; ok is
// false when the lease does not exist or this member does not lead. It
// brings the deadlines up to date first (a leader that has just taken
// over, or a lease granted since the lease loop last ran) without
// renewing anything: a query must not give a lease its whole TTL again.
func (s *Server) remaining(id int64, now time.Time) (int64, bool) {
	_, term, role := s.node.Leader()
	if role != raft.Leader {
		return 0, false
	}
	l := &s.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.deadline[id]
	if !ok || l.term != term {
		s.syncDeadlinesLocked(term, s.store.Leases(), now)
		d, ok = l.deadline[id]
	}
	if !ok {
		return 0, false
	}
	return max(0, int64(math.Ceil(d.Sub(now).Seconds()))), true
}

// serveLease routes /v1/lease/{grant,revoke,keepalive,<id>}.
func (s *Server) serveLease(w http.ResponseWriter, r *http.Request, rest string) {
	switch rest {
	case "grant":
		s.route(w, r, http.MethodPost, s.leaseGrant)
	case "revoke":
		s.route(w, r, http.MethodPost, s.leaseRevoke)
	case "keepalive":
		s.route(w, r, http.MethodPost, s.leaseKeepAlive)
	default:
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || id <= 0 {
			s.fail(w, api.CodeNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		s.route(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.leaseTimeToLive(w, r, id) })
	}
}

func (s *Server) leaseGrant(w http.ResponseWriter, r *http.Request) {
	var req api.LeaseGrantRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	ttl := req.TTL
	if ttl > 0 && ttl < s.minLeaseTTL() {
		ttl = s.minLeaseTTL()
	}
	res, ok := s.propose(w, r, kv.Command{Op: kv.OpLeaseGrant, Lease: req.ID, TTL: ttl})
	if !ok {
		return
	}
	s.startLease(res.Lease, time.Now())
	s.writeJSON(w, http.StatusOK, api.LeaseResponse{Header: s.header(res.Revision, uint64(res.Index)), ID: res.Lease, TTL: res.TTL, GrantedTTL: res.TTL})
}

func (s *Server) leaseRevoke(w http.ResponseWriter, r *http.Request) {
	var req api.LeaseRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	res, ok := s.propose(w, r, kv.Command{Op: kv.OpLeaseRevoke, Lease: req.ID})
	if !ok {
		return
	}
	s.writeJSON(w, http.StatusOK, api.LeaseResponse{Header: s.header(res.Revision, uint64(res.Index)), ID: req.ID})
}

// leaseKeepAlive renews a lease on the leader. It answers only once the
// renewal would survive a change of leader: if a checkpoint is on record,
// it is reset through the log first.
func (s *Server) leaseKeepAlive(w http.ResponseWriter, r *http.Request) {
	var req api.LeaseRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if !s.isLeader() {
		s.redirect(w, r)
		return
	}
	ttl, reset, ok := s.renew(req.ID, time.Now())
	if !ok && s.isLeader() {
		// A leader that has just taken over may not have applied a grant
		// that completed before: look again once it has applied all it
		// knows to be committed.
		if err := s.linearizableReads.wait(r.Context()); err != nil {
			s.readBarrierError(w, r, err)
			return
		}
		ttl, reset, ok = s.renew(req.ID, time.Now())
	}
	if !ok {
		s.fail(w, api.CodeLeaseNotFound, fmt.Sprintf("lease %d not found", req.ID))
		return
	}
	if reset {
		if _, ok := s.propose(w, r, kv.Command{Op: kv.OpLeaseCheckpoint, Checkpoints: []kv.LeaseCheckpoint{{ID: req.ID}}}); !ok {
			return
		}
	}
	rev, _ := s.store.Revision()
	s.writeJSON(w, http.StatusOK, api.LeaseResponse{Header: s.header(rev, 0), ID: req.ID, TTL: ttl})
}

// leaseTimeToLive answers GET /v1/lease/{id}[?keys=true] on the leader,
// whose clock decides the remaining TTL.
func (s *Server) leaseTimeToLive(w http.ResponseWriter, r *http.Request, id int64) {
	if !s.isLeader() {
		s.redirect(w, r)
		return
	}
	info, keys, ok := s.store.Lease(id, r.URL.Query().Get("keys") == "true")
	rev, _ := s.store.Revision()
	if !ok {
		s.fail(w, api.CodeLeaseNotFound, fmt.Sprintf("lease %d not found", id))
		return
	}
	rem, ok := s.remaining(id, time.Now())
	if !ok {
		// Revoked or leadership lost since the checks above.
		if !s.isLeader() {
			s.redirect(w, r)
			return
		}
		s.fail(w, api.CodeLeaseNotFound, fmt.Sprintf("lease %d not found", id))
		return
	}
	s.writeJSON(w, http.StatusOK, api.LeaseResponse{Header: s.header(rev, 0), ID: id, TTL: rem, GrantedTTL: info.TTL, Keys: keys})
}

// listLeases answers GET /v1/leases from this member's state.
func (s *Server) listLeases(w http.ResponseWriter, r *http.Request) {
	ls := s.store.Leases()
	rev, _ := s.store.Revision()
	out := api.LeasesResponse{Header: s.header(rev, 0), Leases: make([]int64, len(ls))}
	for i, l := range ls {
		out.Leases[i] = l.ID
	}
	s.writeJSON(w, http.StatusOK, out)
}

// RenewLease is a keep-alive for callers outside this package (the etcd
// v3 API): on the leader, it renews lease id and returns its TTL, first
// clearing a recorded checkpoint through the log as leaseKeepAlive does.
// ok is false when the lease does not exist, has expired on this leader's
// clock, or this member does not lead.
func (s *Server) RenewLease(ctx context.Context, id int64) (ttl int64, ok bool, err error) {
	ttl, reset, ok := s.renew(id, time.Now())
	if !ok || !reset {
		return ttl, ok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.RequestTimeout)
	defer cancel()
	out, err := s.node.Propose(ctx, kv.EncodeCommand(kv.Command{Op: kv.OpLeaseCheckpoint, Checkpoints: []kv.LeaseCheckpoint{{ID: id}}}))
	if err != nil {
		return 0, false, err
	}
	if res, _ := out.(*kv.Result); res != nil && res.Err() != nil {
		return 0, false, res.Err()
	}
	return ttl, true, nil
}

// StartLease starts the clock of lease id, just granted, on the leader:
// its whole TTL from now.
func (s *Server) StartLease(id int64) { s.startLease(id, time.Now()) }

// LeaseRemaining returns lease id's remaining TTL on this leader's clock;
// ok is false when the lease does not exist or this member does not lead.
func (s *Server) LeaseRemaining(id int64) (ttl int64, ok bool) {
	return s.remaining(id, time.Now())
}

// MinLeaseTTL is the shortest TTL a grant is given (shorter ones are raised).
func (s *Server) MinLeaseTTL() int64 { return s.minLeaseTTL() }
