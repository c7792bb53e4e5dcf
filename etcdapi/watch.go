package etcdapi

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
)

// compactedReason is the cancel reason of a watch whose start revision
// was compacted: etcd's error message.
var compactedReason = status.Convert(rpctypes.ErrGRPCCompacted).Message()

// maxWatchesPerStream bounds the watches one stream may hold.
const maxWatchesPerStream = 10000

type watchServer struct {
	pb.UnimplementedWatchServer
	s *Server
}

// watchStream is one client stream: the handler goroutine receives
// requests, one pump goroutine per watch sends its events; sends are
// serialized by mu, which also guards watches.
type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer
	ctx    context.Context

	mu      sync.Mutex
	watches map[int64]*watch
	nextID  int64
	sendErr error
	wg      sync.WaitGroup
}

// watch is one watch of a stream. delivered, synced, wake and canceled are
// guarded by the stream's mu; watcher is the pump goroutine's.
type watch struct {
	id               int64
	key, end         string
	prevKV, progress bool
	noPut, noDelete  bool
	fragment         bool
	cancel           context.CancelFunc
	// delivered: every matching change up to it has been sent.
	delivered int64
	// synced: the pump found nothing waiting up to it (Watcher.Progress).
	synced int64
	// wake interrupts the pump's wait, to have it record synced.
	wake     context.CancelFunc
	canceled bool
	watcher  *kv.Watcher
}

func requireLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(rpctypes.MetadataRequireLeaderKey)) > 0 && md.Get(rpctypes.MetadataRequireLeaderKey)[0] == rpctypes.MetadataHasLeader
}

func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	s := ws.s
	needLeader := requireLeader(stream.Context())
	if needLeader && !s.hasLeader() {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancel(stream.Context())
	st := &watchStream{s: s, stream: stream, ctx: ctx, watches: map[int64]*watch{}}
	defer func() {
		cancel()
		st.wg.Wait()
	}()
	reqs := make(chan *pb.WatchRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	// A stream that requires a leader ends when this member has had none
	// for three election timeouts, so the client moves to another member
	// (etcd's rule); a removed member ends every stream.
	tick := time.NewTicker(s.cfg.ElectionTimeout / 2)
	defer tick.Stop()
	var leaderless time.Time
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			st.handle(req)
		case <-tick.C:
			_, _, role := s.cfg.Node.Leader()
			switch {
			case role == raft.Removed:
				return rpctypes.ErrGRPCStopped
			case s.hasLeader():
				leaderless = time.Time{}
			case leaderless.IsZero():
				leaderless = time.Now()
			case needLeader && time.Since(leaderless) > 3*s.cfg.ElectionTimeout:
				return rpctypes.ErrGRPCNoLeader
			}
		}
		st.mu.Lock()
		err := st.sendErr
		st.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (st *watchStream) handle(req *pb.WatchRequest) {
	switch r := req.RequestUnion.(type) {
	case *pb.WatchRequest_CreateRequest:
		st.create(r.CreateRequest)
	case *pb.WatchRequest_CancelRequest:
		st.cancelWatch(r.CancelRequest.WatchId)
	case *pb.WatchRequest_ProgressRequest:
		st.wg.Add(1)
		go st.progressAll()
	}
}

// sendLocked sends m; the first failure ends the stream.
func (st *watchStream) sendLocked(m *pb.WatchResponse) bool {
	if st.sendErr != nil {
		return false
	}
	if err := st.stream.Send(m); err != nil {
		st.sendErr = err
		return false
	}
	return true
}

func (st *watchStream) create(cr *pb.WatchCreateRequest) {
	s := st.s
	st.mu.Lock()
	defer st.mu.Unlock()
	id := cr.WatchId
	if id == 0 {
		for st.watches[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	}
	reject := func(reason string) {
		st.sendLocked(&pb.WatchResponse{Header: s.header(0), WatchId: -1, Created: true, Canceled: true, CancelReason: reason})
	}
	switch {
	case st.watches[id] != nil:
		reject("etcdserver: watch ID already in use")
		return
	case len(st.watches) >= maxWatchesPerStream:
		reject("etcdserver: too many watches on one stream")
		return
	case len(cr.Key) == 0:
		reject(status.Convert(rpctypes.ErrGRPCEmptyKey).Message())
		return
	}
	w := &watch{id: id, key: string(cr.Key), end: string(cr.RangeEnd), prevKV: cr.PrevKv, progress: cr.ProgressNotify, fragment: cr.Fragment}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	rev, _ := s.cfg.Store.Revision()
	wt, err := s.cfg.Store.Watch(w.key, w.end, cr.StartRevision, 0)
	var ce *kv.CompactedError
	switch {
	case errors.As(err, &ce):
		st.sendLocked(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
		st.sendLocked(&pb.WatchResponse{Header: s.header(rev), WatchId: id, CompactRevision: ce.Compacted, Canceled: true,
			CancelReason: compactedReason})
		return
	case err != nil:
		reject("etcdserver: " + err.Error())
		return
	}
	w.delivered = rev
	if cr.StartRevision > 0 {
		w.delivered = cr.StartRevision - 1
	}
	w.watcher = wt
	ctx, cancel := context.WithCancel(st.ctx)
	w.cancel = cancel
	st.watches[id] = w
	st.sendLocked(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
	st.wg.Add(1)
	go st.pump(ctx, w)
}

func (st *watchStream) cancelWatch(id int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	w := st.watches[id]
	if w == nil {
		return
	}
	w.canceled = true
	w.cancel()
	delete(st.watches, id)
	st.sendLocked(&pb.WatchResponse{Header: st.s.header(0), WatchId: id, Canceled: true})
}

// end removes a watch the server gave up on and tells the client why.
func (st *watchStream) end(w *watch, m *pb.WatchResponse) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w.canceled {
		return
	}
	w.canceled = true
	w.cancel()
	delete(st.watches, w.id)
	st.sendLocked(m)
}

// pump delivers one watch's events until it is canceled or the stream ends.
func (st *watchStream) pump(ctx context.Context, w *watch) {
	defer st.wg.Done()
	defer func() {
		if w.watcher != nil {
			w.watcher.Close()
		}
	}()
	s := st.s
	// The waits share one context per progress interval, not one (and a
	// timer) per event: with a busy key the pump wakes for every change.
	// A progress notification ends an interval in which no event was
	// sent, as etcd's do.
	var wctx context.Context
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	sentEvents := false
	for {
		if wctx == nil {
			wctx, cancel = context.WithTimeout(ctx, s.cfg.ProgressInterval)
			st.mu.Lock()
			w.wake = cancel
			st.mu.Unlock()
		}
		b, err := w.watcher.Next(wctx)
		var ce *kv.CompactedError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			cancel()
			wctx = nil
			// Canceled: woken by a progress request, mid-interval.
			notify := w.progress && errors.Is(err, context.DeadlineExceeded) && !sentEvents
			if errors.Is(err, context.DeadlineExceeded) {
				sentEvents = false
			}
			rev, ok := w.watcher.Progress()
			if !ok {
				continue
			}
			st.mu.Lock()
			w.synced = max(w.synced, rev)
			st.mu.Unlock()
			if notify {
				st.send(w, &pb.WatchResponse{Header: s.header(rev), WatchId: w.id}, rev)
			}
			continue
		case errors.As(err, &ce):
			st.end(w, &pb.WatchResponse{Header: s.header(0), WatchId: w.id, CompactRevision: ce.Compacted, Canceled: true,
				CancelReason: compactedReason})
			return
		case errors.Is(err, kv.ErrWatchCanceled):
			if !st.resume(w) {
				return
			}
			continue
		case err != nil:
			st.end(w, &pb.WatchResponse{Header: s.header(0), WatchId: w.id, Canceled: true, CancelReason: "etcdserver: " + err.Error()})
			return
		}
		evs := w.events(b.Events)
		if len(evs) == 0 {
			st.mu.Lock()
			w.delivered = max(w.delivered, b.Revision)
			st.mu.Unlock()
			continue
		}
		if !st.sendEvents(w, s.header(b.Revision), evs, b.Revision) {
			return
		}
		sentEvents = true
	}
}

// resume replaces a watcher the store cancelled as too slow by one that
// reads on from history after the last revision delivered.
func (st *watchStream) resume(w *watch) bool {
	st.mu.Lock()
	from := w.delivered + 1
	st.mu.Unlock()
	w.watcher.Close()
	w.watcher = nil
	nw, err := st.s.cfg.Store.Watch(w.key, w.end, from, 0)
	if err != nil {
		m := &pb.WatchResponse{Header: st.s.header(0), WatchId: w.id, Canceled: true, CancelReason: "etcdserver: " + err.Error()}
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			m.CompactRevision, m.CancelReason = ce.Compacted, compactedReason
		}
		st.end(w, m)
		return false
	}
	w.watcher = nw
	return true
}

// sendEvents sends one revision batch's events, in fragments of at most
// fragmentBytes if the watch asked for fragments (etcd's rule), else whole.
func (st *watchStream) sendEvents(w *watch, h *pb.ResponseHeader, evs []*mvccpb.Event, rev int64) bool {
	if !w.fragment {
		return st.send(w, &pb.WatchResponse{Header: h, WatchId: w.id, Events: evs}, rev)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) && (n == 0 || size+proto.Size(evs[n]) <= st.s.cfg.fragmentBytes()) {
			size += proto.Size(evs[n])
			n++
		}
		if w.canceled || !st.sendLocked(&pb.WatchResponse{Header: h, WatchId: w.id, Events: evs[:n], Fragment: n < len(evs)}) {
			return false
		}
		evs = evs[n:]
	}
	w.delivered = max(w.delivered, rev)
	return true
}

// send sends m for w unless w was canceled, and records rev as delivered.
func (st *watchStream) send(w *watch, m *pb.WatchResponse, rev int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w.canceled {
		return false
	}
	if !st.sendLocked(m) {
		return false
	}
	w.delivered = max(w.delivered, rev)
	return true
}

func (w *watch) events(evs []kv.Event) []*mvccpb.Event {
	var out []*mvccpb.Event
	for i := range evs {
		e := &evs[i]
		if (e.Type == kv.EventPut && w.noPut) || (e.Type == kv.EventDelete && w.noDelete) {
			continue
		}
		me := &mvccpb.Event{Type: mvccpb.PUT, Kv: toKV(&e.KV)}
		if e.Type == kv.EventDelete {
			me.Type = mvccpb.DELETE
		}
		if w.prevKV && e.Prev != nil {
			me.PrevKv = toKV(e.Prev)
		}
		out = append(out, me)
	}
	return out
}

// progressAll answers a progress request: once every watch of the stream
// has been sent every change up to the store's revision when it was asked,
// the stream gets that revision (watch id -1). The wait is bounded: a
// watch far behind makes the answer skipped after a second.
func (st *watchStream) progressAll() {
	defer st.wg.Done()
	target, _ := st.s.cfg.Store.Revision()
	st.mu.Lock()
	for _, w := range st.watches {
		if max(w.delivered, w.synced) < target && w.wake != nil {
			w.wake()
		}
	}
	st.mu.Unlock()
	deadline := time.Now().Add(time.Second)
	for {
		st.mu.Lock()
		synced := true
		for _, w := range st.watches {
			if max(w.delivered, w.synced) < target {
				synced = false
				if w.wake != nil {
					w.wake()
				}
			}
		}
		if synced {
			st.sendLocked(&pb.WatchResponse{Header: st.s.header(target), WatchId: -1})
			st.mu.Unlock()
			return
		}
		st.mu.Unlock()
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-st.ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}
