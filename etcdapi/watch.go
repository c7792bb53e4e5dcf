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

// watchStream is one client stream. Its handler goroutine does all the
// sending: it creates and cancels watches as the client asks and delivers
// the events of the watches the store names ready (kv.Watcher.OnReady).
// A change thus wakes one goroutine per stream, not one per watch, and the
// stream's responses to it leave back to back, to be written together.
type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer

	watches map[int64]*watch
	nextID  int64
	sendErr error

	// readyMu guards ready and each watch's queued: the store's Apply
	// adds to them. ready holds each watch at most once; spare is the
	// other buffer, swapped in while ready's watches are served.
	readyMu sync.Mutex
	ready   []*watch
	spare   []*watch
	kick    chan struct{} // capacity 1: ready may have watches

	// progressTarget is the store revision a progress request waits for
	// every watch to have been sent every change up to (0: none pending),
	// until progressDeadline.
	progressTarget   int64
	progressDeadline time.Time
}

// watch is one watch of a stream; queued is guarded by the stream's
// readyMu, the rest is the handler goroutine's.
type watch struct {
	id               int64
	key, end         string
	prevKV, progress bool
	noPut, noDelete  bool
	fragment         bool
	// delivered: every matching change up to it has been sent.
	delivered int64
	// synced: the watcher had nothing waiting up to it (Watcher.Progress).
	synced int64
	// sentEvents: events were sent in the current progress interval.
	sentEvents bool
	canceled   bool
	queued     bool
	watcher    *kv.Watcher
}

// maxBatchesPerTurn bounds the batches one watch sends before the stream's
// other ready watches have their turn: one catching up on a long history
// does not hold them up.
const maxBatchesPerTurn = 8

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
	st := &watchStream{s: s, stream: stream, watches: map[int64]*watch{}, kick: make(chan struct{}, 1)}
	defer func() {
		cancel()
		st.closeAll()
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
	progress := time.NewTicker(s.cfg.ProgressInterval)
	defer progress.Stop()
	var leaderless time.Time
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			st.handle(req)
		case <-st.kick:
			st.deliver()
		case <-progress.C:
			st.notifyProgress()
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
			st.checkProgress()
		}
		if st.sendErr != nil {
			return st.sendErr
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
		target, _ := st.s.cfg.Store.Revision()
		st.progressTarget = max(st.progressTarget, target)
		st.progressDeadline = time.Now().Add(time.Second)
		st.checkProgress()
	}
}

// send sends m; the first failure ends the stream.
func (st *watchStream) send(m *pb.WatchResponse) bool {
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
	id := cr.WatchId
	if id == 0 {
		for st.watches[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	}
	reject := func(reason string) {
		st.send(&pb.WatchResponse{Header: s.header(0), WatchId: -1, Created: true, Canceled: true, CancelReason: reason})
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
		st.send(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
		st.send(&pb.WatchResponse{Header: s.header(rev), WatchId: id, CompactRevision: ce.Compacted, Canceled: true,
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
	st.watches[id] = w
	st.send(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
	st.follow(w, wt)
}

// follow makes wt w's watcher and queues w for its first Poll, which reads
// the history from its start or registers it for live changes.
func (st *watchStream) follow(w *watch, wt *kv.Watcher) {
	w.watcher = wt
	wt.OnReady(func() { st.markReady(w) })
	st.markReady(w)
}

// markReady queues w to be served and wakes the handler. The store calls
// it from Apply: it never blocks.
func (st *watchStream) markReady(w *watch) {
	st.readyMu.Lock()
	if !w.queued {
		w.queued = true
		st.ready = append(st.ready, w)
	}
	st.readyMu.Unlock()
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// deliver serves the watches queued ready.
func (st *watchStream) deliver() {
	st.readyMu.Lock()
	ready := st.ready
	st.ready = st.spare
	for _, w := range ready {
		w.queued = false
	}
	st.readyMu.Unlock()
	for _, w := range ready {
		if !w.canceled && st.sendErr == nil {
			st.serve(w)
		}
	}
	clear(ready)
	st.spare = ready[:0]
	st.checkProgress()
}

// serve sends what w's watcher has ready, a bounded number of batches at a
// time; with more left, w goes to the back of the queue.
func (st *watchStream) serve(w *watch) {
	s := st.s
	for range maxBatchesPerTurn {
		b, ok, err := w.watcher.Poll()
		var ce *kv.CompactedError
		switch {
		case errors.As(err, &ce):
			st.end(w, &pb.WatchResponse{Header: s.header(0), WatchId: w.id, CompactRevision: ce.Compacted, Canceled: true,
				CancelReason: compactedReason})
			return
		case errors.Is(err, kv.ErrWatchCanceled):
			st.resume(w)
			return
		case err != nil:
			st.end(w, &pb.WatchResponse{Header: s.header(0), WatchId: w.id, Canceled: true, CancelReason: "etcdserver: " + err.Error()})
			return
		case !ok:
			return
		}
		evs := w.events(b.Events)
		if len(evs) == 0 {
			w.delivered = max(w.delivered, b.Revision)
			continue
		}
		if !st.sendEvents(w, s.header(b.Revision), evs, b.Revision) {
			return
		}
		w.sentEvents = true
	}
	st.markReady(w)
}

// resume replaces a watcher the store cancelled as too slow by one that
// reads on from history after the last revision delivered.
func (st *watchStream) resume(w *watch) {
	w.watcher.Close()
	nw, err := st.s.cfg.Store.Watch(w.key, w.end, w.delivered+1, 0)
	if err != nil {
		m := &pb.WatchResponse{Header: st.s.header(0), WatchId: w.id, Canceled: true, CancelReason: "etcdserver: " + err.Error()}
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			m.CompactRevision, m.CancelReason = ce.Compacted, compactedReason
		}
		st.end(w, m)
		return
	}
	st.follow(w, nw)
}

func (st *watchStream) cancelWatch(id int64) {
	w := st.watches[id]
	if w == nil {
		return
	}
	st.drop(w)
	st.send(&pb.WatchResponse{Header: st.s.header(0), WatchId: id, Canceled: true})
}

// end removes a watch the server gave up on and tells the client why.
func (st *watchStream) end(w *watch, m *pb.WatchResponse) {
	if w.canceled {
		return
	}
	st.drop(w)
	st.send(m)
}

func (st *watchStream) drop(w *watch) {
	w.canceled = true
	w.watcher.Close()
	delete(st.watches, w.id)
}

// closeAll stops every watch's watcher when the stream ends.
func (st *watchStream) closeAll() {
	for _, w := range st.watches {
		st.drop(w)
	}
}

// sendEvents sends one revision batch's events, in fragments of at most
// fragmentBytes if the watch asked for fragments (etcd's rule), else whole.
func (st *watchStream) sendEvents(w *watch, h *pb.ResponseHeader, evs []*mvccpb.Event, rev int64) bool {
	if !w.fragment {
		if !st.send(&pb.WatchResponse{Header: h, WatchId: w.id, Events: evs}) {
			return false
		}
		w.delivered = max(w.delivered, rev)
		return true
	}
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) && (n == 0 || size+proto.Size(evs[n]) <= st.s.cfg.fragmentBytes()) {
			size += proto.Size(evs[n])
			n++
		}
		if !st.send(&pb.WatchResponse{Header: h, WatchId: w.id, Events: evs[:n], Fragment: n < len(evs)}) {
			return false
		}
		evs = evs[n:]
	}
	w.delivered = max(w.delivered, rev)
	return true
}

// notifyProgress ends a progress interval: each watch that asked for
// progress notifications and was sent no event in it is told the revision
// it has seen every change up to, if nothing is waiting for it (etcd's
// rule).
func (st *watchStream) notifyProgress() {
	for _, w := range st.watches {
		sent := w.sentEvents
		w.sentEvents = false
		if !w.progress || sent {
			continue
		}
		rev, ok := w.watcher.Progress()
		if !ok {
			continue
		}
		w.synced = max(w.synced, rev)
		if !st.send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: w.id}) {
			return
		}
	}
}

// checkProgress answers a pending progress request once every watch of the
// stream has been sent every change up to the store's revision when it was
// asked: the stream gets that revision (watch id -1). A watch with changes
// still to send is queued ready, so this is checked again after it is
// served; a request still pending after a second (a watch far behind) is
// dropped.
func (st *watchStream) checkProgress() {
	target := st.progressTarget
	if target == 0 {
		return
	}
	for _, w := range st.watches {
		if max(w.delivered, w.synced) >= target {
			continue
		}
		if rev, ok := w.watcher.Progress(); ok {
			w.synced = max(w.synced, rev)
		}
		if max(w.delivered, w.synced) < target {
			if time.Now().After(st.progressDeadline) {
				st.progressTarget = 0
			}
			return
		}
	}
	st.progressTarget = 0
	st.send(&pb.WatchResponse{Header: st.s.header(target), WatchId: -1})
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
