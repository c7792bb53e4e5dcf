//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// The Kubernetes-pattern clients talk to the members' etcd listeners
// through the etcd Go client, as the Kubernetes API server's etcd3 storage
// does (k8smodel.go says how their history is checked):
//
//   - writers create, update and delete the objects with transactions
//     comparing mod revisions, going on from what the failure branch read
//     (GuaranteedUpdate), sometimes with a stale revision that must fail;
//   - a lister reads the objects in pages of two at the first page's
//     revision, sometimes slowly enough for compaction to overtake it,
//     and then lists again from the start;
//   - reflectors list k8s/ and watch it from the list's revision with
//     prev_kv and progress notifications (progress requested every 500ms),
//     resuming from the last revision after errors and on a schedule, on
//     another member, sometimes after a stall; a compacted revision makes
//     them list again;
//   - an event writer puts keys under k8s/events/ on 2s leases, sharing a
//     lease among the events of half a second as the API server does;
//   - a compactor records the revision it saw under a compare on the
//     version of a key of its own, and compacts at the revision it saw on
//     its previous round, every half second (never above what the
//     coordination watchers of coordclients.go have seen, which follow
//     shared/ from revision 1);
//   - at the end of the run, checkCompacted shows that a page and a watch
//     at a compacted revision are refused as compacted.

const (
	etcdPort         = 2379 // a member's --listen-etcd
	k8sWriters       = 2
	k8sReflectors    = 2
	k8sClientID      = 2000 // porcupine client ids
	k8sPageLimit     = 2
	k8sEventTTL      = 2 // seconds
	k8sCompactKey    = "k8scompact"
	k8sCompactPeriod = 500 * time.Millisecond
	k8sStall         = 2 * time.Second // a reflector's stall: longer than several compaction rounds
	k8sLateKey       = k8sPrefix + "late"
)

func (m *member) etcdAddr() string { return fmt.Sprintf("%s:%d", memberIP(m.id), etcdPort) }

// k8sClients is the state of the Kubernetes-pattern clients.
type k8sClients struct {
	w          *workload
	reflectors []*reflector
	rwg        sync.WaitGroup
	rcancel    context.CancelFunc
	finishing  chan struct{} // closed when the check begins: no more stalls

	mu         sync.Mutex
	acked      []ackedWrite
	notApplied map[string]bool
	problems   []string // found while running: pages that do not fit together
	stats      struct {
		writesOK, conflicts, unknown, lists, pagedLists, listRestarts atomic.Int64
		compactions, compactedWatches, watchErrors, progress, events  atomic.Int64
		eventPuts, expiries, rotations, stalls                        atomic.Int64
	}
}

// reflector is one watcher's record: its segments (k8smodel.go).
type reflector struct {
	mu   sync.Mutex
	segs []*wSegment
}

func (r *reflector) end() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.segs) == 0 {
		return 0
	}
	return r.segs[len(r.segs)-1].End
}

// etcdClient connects to pin's etcd listener, or (pin nil) to every
// member's, following membership changes.
func (w *workload) etcdClient(pin *member) *clientv3.Client {
	var eps []string
	if pin != nil {
		eps = []string{pin.etcdAddr()}
	} else {
		for _, m := range w.c.all() {
			if m.started() && !m.isRemoved() {
				eps = append(eps, m.etcdAddr())
			}
		}
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return w.c.nw.hub.dial(ctx, "tcp", addr)
		})}}
	if pin == nil {
		cfg.AutoSyncInterval = time.Second
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		panic(err) // only for a bad configuration: New does not wait for a connection
	}
	return cli
}

// someMember is a started member, not removed, at random.
func (w *workload) someMember() *member {
	var ms []*member
	for _, m := range w.c.all() {
		if m.started() && !m.isRemoved() {
			ms = append(ms, m)
		}
	}
	return ms[rand.IntN(len(ms))]
}

func (w *workload) startK8sClients() {
	k := &k8sClients{w: w, notApplied: map[string]bool{}, finishing: make(chan struct{})}
	w.k8s = k
	for i := range k8sWriters {
		w.wg.Add(1)
		go k.writer(k8sClientID + i)
	}
	w.wg.Add(3)
	go k.lister(k8sClientID + 10)
	go k.eventWriter()
	go k.compactor()
	ctx, cancel := context.WithCancel(context.Background())
	k.rcancel = cancel
	for i := range k8sReflectors {
		r := &reflector{}
		k.reflectors = append(k.reflectors, r)
		k.rwg.Add(1)
		go k.reflect(ctx, r, k8sClientID+20+i)
	}
}

func (k *k8sClients) note(f func()) {
	k.mu.Lock()
	f()
	k.mu.Unlock()
}

// notSent reports an error that shows the request never reached a member.
func notSent(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "no address available") ||
		strings.Contains(msg, "error while dialing")
}

func cellOf(kvs []*mvccpb.KeyValue) txnCell {
	if len(kvs) == 0 {
		return txnCell{}
	}
	return txnCell{Exists: true, Value: string(kvs[0].Value), Rev: uint64(kvs[0].ModRevision)}
}

func toWKV(kv *mvccpb.KeyValue) wkv {
	return wkv{Key: string(kv.Key), Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version}
}

// writer creates, updates and deletes objects, going on from what it last
// read of each.
func (k *k8sClients) writer(id int) {
	w := k.w
	defer w.wg.Done()
	cli := w.etcdClient(nil)
	defer cli.Close()
	cache := map[int]txnCell{}
	for seq := 0; !w.stopped(); seq++ {
		time.Sleep(40 * time.Millisecond)
		obj := rand.IntN(k8sObjects)
		key := k8sObjKey(obj)
		c, known := cache[obj]
		if !known {
			ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout/2)
			call := w.now()
			r, err := cli.Get(ctx, key)
			ret := w.now()
			cancel()
			if err != nil {
				w.failed()
				continue
			}
			out := kvOutput{OK: true}
			out.Objects[obj] = cellOf(r.Kvs)
			w.record(id, kvInput{Op: opK8sGet, Key: k8sObjPrefix, Object: obj}, out, call, ret)
			cache[obj] = out.Objects[obj]
			continue
		}
		in := kvInput{Key: k8sObjPrefix, Object: obj, Value: fmt.Sprintf("k%d.%d", id, seq)}
		var then clientv3.Op
		after := txnCell{Exists: true, Value: in.Value}
		switch n := rand.IntN(8); {
		case !c.Exists:
			in.Op, then = opK8sCreate, clientv3.OpPut(key, in.Value)
		case n == 0:
			in.Op, in.Rev, then, after = opK8sDelete, c.Rev, clientv3.OpDelete(key), txnCell{}
		default:
			in.Op, in.Rev, then = opK8sUpdate, c.Rev, clientv3.OpPut(key, in.Value)
			if n == 1 {
				in.Rev-- // a stale cache: the compare must fail
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout*2)
		call := w.now()
		r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(in.Rev))).
			Then(then).Else(clientv3.OpGet(key)).Commit()
		ret := w.now()
		cancel()
		var out kvOutput
		switch {
		case err != nil && notSent(err):
			k.note(func() { k.notApplied[in.Value] = true })
			w.failed()
			continue
		case err != nil:
			out.Unknown = true
			delete(cache, obj)
			k.stats.unknown.Add(1)
		case r.Succeeded:
			out.OK, out.Index = true, uint64(r.Header.Revision)
			after.Rev = out.Index
			cache[obj] = after
			k.stats.writesOK.Add(1)
			k.note(func() {
				k.acked = append(k.acked, ackedWrite{Key: key, Value: in.Value, Rev: r.Header.Revision, Delete: in.Op == opK8sDelete})
			})
		default:
			out.Precondition = true
			out.Objects[obj] = cellOf(r.Responses[0].GetResponseRange().Kvs)
			cache[obj] = out.Objects[obj]
			k.stats.conflicts.Add(1)
			k.note(func() { k.notApplied[in.Value] = true })
		}
		w.record(id, in, out, call, ret)
	}
}

// list reads [from,end) in pages at the first page's revision, pausing
// between pages if asked, and records what it read of the objects. An
// error from a later page (compacted, say) is returned: the caller lists
// again from the start, as a reflector does.
func (k *k8sClients) list(cli *clientv3.Client, client int, from, end string, pause time.Duration) (int64, map[string]wkv, error) {
	w := k.w
	var pages []listPage
	var rev, call, ret int64
	items := map[string]wkv{}
	next := from
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(k8sPageLimit)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
			if pause > 0 {
				select {
				case <-w.stop:
					return 0, nil, errors.New("the workload stopped")
				case <-time.After(pause):
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout/2)
		c := w.now()
		r, err := cli.Get(ctx, next, opts...)
		cancel()
		if err != nil {
			return 0, nil, err
		}
		if rev == 0 {
			rev, call, ret = r.Header.Revision, c, w.now()
		}
		p := listPage{More: r.More, Count: r.Count}
		for _, kv := range r.Kvs {
			p.KVs = append(p.KVs, toWKV(kv))
			items[string(kv.Key)] = toWKV(kv)
		}
		pages = append(pages, p)
		if !r.More || len(r.Kvs) == 0 {
			break
		}
		next = string(r.Kvs[len(r.Kvs)-1].Key) + "\x00"
	}
	if bad := listPageProblems(rev, from, end, k8sPageLimit, pages); len(bad) > 0 {
		k.note(func() { k.problems = append(k.problems, bad...) })
	}
	w.record(client, kvInput{Op: opK8sList, Key: k8sObjPrefix}, kvOutput{OK: true, Objects: listObjects(items)}, call, ret)
	k.stats.lists.Add(1)
	if len(pages) > 1 {
		k.stats.pagedLists.Add(1)
	}
	return rev, items, nil
}

func (k *k8sClients) lister(id int) {
	w := k.w
	defer w.wg.Done()
	cli := w.etcdClient(nil)
	defer cli.Close()
	for !w.stopped() {
		time.Sleep(100 * time.Millisecond)
		var pause time.Duration
		if rand.IntN(4) == 0 {
			pause = 1200 * time.Millisecond // a slow client: compaction may overtake it
		}
		if _, _, err := k.list(cli, id, k8sObjPrefix, clientv3.GetPrefixRangeEnd(k8sObjPrefix), pause); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				k.stats.listRestarts.Add(1)
			}
			w.failed()
		}
	}
}

// eventWriter puts event keys on short leases, one lease for the events
// of half a second.
func (k *k8sClients) eventWriter() {
	w := k.w
	defer w.wg.Done()
	cli := w.etcdClient(nil)
	defer cli.Close()
	var lease clientv3.LeaseID
	var granted time.Time
	for seq := 0; !w.stopped(); seq++ {
		time.Sleep(200 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		if lease == 0 || time.Since(granted) > 500*time.Millisecond {
			g, err := cli.Grant(ctx, k8sEventTTL)
			if err != nil {
				cancel()
				lease = 0
				w.failed()
				continue
			}
			lease, granted = g.ID, time.Now()
		}
		key, val := fmt.Sprintf("%s%d", k8sEventPrefix, seq), fmt.Sprintf("e%d", seq)
		r, err := cli.Put(ctx, key, val, clientv3.WithLease(lease))
		cancel()
		switch {
		case err != nil && (notSent(err) || errors.Is(err, rpctypes.ErrLeaseNotFound)):
			k.note(func() { k.notApplied[val] = true })
			lease = 0
			w.failed()
		case err != nil:
			lease = 0
			w.failed()
		default:
			k.stats.eventPuts.Add(1)
			k.note(func() { k.acked = append(k.acked, ackedWrite{Key: key, Value: val, Rev: r.Header.Revision}) })
		}
	}
}

// compactor compacts every half second at the revision it saw a round
// before, recording each revision under a compare on its key's version, as
// the API servers agree on who compacts.
func (k *k8sClients) compactor() {
	w := k.w
	defer w.wg.Done()
	cli := w.etcdClient(nil)
	defer cli.Close()
	var prev int64
	for !w.stopped() {
		time.Sleep(k8sCompactPeriod)
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		g, err := cli.Get(ctx, k8sCompactKey)
		if err != nil {
			cancel()
			continue
		}
		var version int64
		if len(g.Kvs) == 1 {
			version = g.Kvs[0].Version
		}
		t, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(k8sCompactKey), "=", version)).
			Then(clientv3.OpPut(k8sCompactKey, strconv.FormatInt(g.Header.Revision, 10))).Commit()
		if at := min(prev, w.coordWatchersSeen()); err == nil && t.Succeeded && at > 0 {
			if _, err := cli.Compact(ctx, at); err == nil {
				k.stats.compactions.Add(1)
			}
		}
		cancel()
		prev = g.Header.Revision
	}
}

// coordWatchersSeen is the lowest revision the coordination watchers have
// seen: they follow shared/ from revision 1 and must not be compacted past.
func (w *workload) coordWatchersSeen() int64 {
	low := int64(1<<62 - 1)
	if w.coord == nil {
		return low
	}
	for _, wt := range w.coord.watchers {
		wt.mu.Lock()
		low = min(low, wt.last)
		wt.mu.Unlock()
	}
	return low
}

// reflect lists k8s/ and watches from the list's revision, on and on.
func (k *k8sClients) reflect(ctx context.Context, r *reflector, id int) {
	defer k.rwg.Done()
	var seg *wSegment
	for round := 0; ctx.Err() == nil; round++ {
		if seg == nil {
			cli := k.w.etcdClient(nil)
			rev, items, err := k.list(cli, id, k8sPrefix, clientv3.GetPrefixRangeEnd(k8sPrefix), 0)
			cli.Close()
			if err != nil {
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			seg = &wSegment{ListRev: rev, List: items, End: rev}
			r.mu.Lock()
			r.segs = append(r.segs, seg)
			r.mu.Unlock()
		}
		var pin *member
		if round%2 == 0 {
			pin = k.w.someMember()
		}
		cli := k.w.etcdClient(pin)
		compacted := k.watch(ctx, cli, r, seg)
		cli.Close()
		switch {
		case compacted:
			k.stats.compactedWatches.Add(1)
			seg = nil
		case round%2 == 1:
			k.stats.stalls.Add(1)
			select {
			case <-ctx.Done():
			case <-k.finishing:
			case <-time.After(k8sStall):
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// watch follows k8s/ from the segment's end until an error, a compacted
// revision (true) or the time to move on (1 to 3 seconds).
func (k *k8sClients) watch(ctx context.Context, cli *clientv3.Client, r *reflector, seg *wSegment) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	r.mu.Lock()
	from := seg.End + 1
	r.mu.Unlock()
	wch := cli.Watch(wctx, k8sPrefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	rotate := time.After(time.Second + rand.N(2*time.Second))
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-rotate:
			k.stats.rotations.Add(1)
			return false
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(wctx, 500*time.Millisecond)
			cli.RequestProgress(pctx)
			pcancel()
		case wr, ok := <-wch:
			if !ok {
				return false
			}
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				return true
			}
			if wr.Err() != nil {
				k.stats.watchErrors.Add(1)
				return false
			}
			r.mu.Lock()
			if wr.IsProgressNotify() {
				seg.deliver(wEntry{Progress: wr.Header.Revision})
				k.stats.progress.Add(1)
			}
			for _, ev := range wr.Events {
				e := wEntry{Delete: ev.Type == mvccpb.DELETE, KV: toWKV(ev.Kv)}
				if ev.PrevKv != nil {
					e.HasPrev, e.Prev = true, toWKV(ev.PrevKv)
				}
				seg.deliver(e)
				k.stats.events.Add(1)
				if e.Delete && strings.HasPrefix(e.KV.Key, k8sEventPrefix) {
					k.stats.expiries.Add(1)
				}
			}
			r.mu.Unlock()
		}
	}
}

// checkK8s waits for every event key's lease to expire, lists k8s/ once
// more (into the porcupine history), lets the reflectors reach that
// revision, and checks what they saw.
func (w *workload) checkK8s() []string {
	k := w.k8s
	if k == nil {
		return nil
	}
	close(k.finishing)
	k.mu.Lock()
	problems := slices.Clone(k.problems)
	k.mu.Unlock()
	cli := w.etcdClient(nil)
	defer cli.Close()
	problems = append(problems, k.checkCompacted()...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := cli.Get(ctx, k8sEventPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err == nil && len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			n := -1
			if err == nil {
				n = len(r.Kvs)
			}
			problems = append(problems, fmt.Sprintf("%d event keys outlived their %ds leases by 30s (last error %v)", n, k8sEventTTL, err))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var final int64
	var finalList map[string]wkv
	for try := 0; try < 50; try++ {
		rev, items, err := k.list(cli, -1, k8sPrefix, clientv3.GetPrefixRangeEnd(k8sPrefix), 0)
		if err == nil {
			final, finalList = rev, items
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if final == 0 {
		problems = append(problems, "the final list of k8s/ never succeeded")
	}
	deadline = time.Now().Add(20 * time.Second)
	for _, r := range k.reflectors {
		for r.end() < final && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	k.rcancel()
	k.rwg.Wait()
	var segs [][]*wSegment
	var nsegs int
	for _, r := range k.reflectors {
		segs = append(segs, r.segs)
		nsegs += len(r.segs)
	}
	k.mu.Lock()
	problems = append(problems, watchProblems(segs, k.acked, k.notApplied, final, finalList)...)
	k.mu.Unlock()
	s := &k.stats
	w.c.t.Logf("k8s clients: %d object writes ok, %d conflicts, %d unknown; %d lists (%d over several pages, %d restarted after compaction); "+
		"%d compactions; reflectors: %d segments, %d events, %d progress notifications, %d compacted watches, %d watch errors, %d rotations, %d stalls; %d events put, %d expiries seen",
		s.writesOK.Load(), s.conflicts.Load(), s.unknown.Load(), s.lists.Load(), s.pagedLists.Load(), s.listRestarts.Load(),
		s.compactions.Load(), nsegs, s.events.Load(), s.progress.Load(), s.compactedWatches.Load(), s.watchErrors.Load(),
		s.rotations.Load(), s.stalls.Load(), s.eventPuts.Load(), s.expiries.Load())
	for _, unexercised := range []struct {
		n    int64
		what string
	}{
		{s.writesOK.Load(), "no object write succeeded"},
		{s.conflicts.Load(), "no object write met a conflict"},
		{s.pagedLists.Load(), "no list took more than one page"},
		{s.progress.Load(), "no progress notification arrived"},
		{s.eventPuts.Load(), "no event key was put"},
		{s.expiries.Load(), "no reflector saw an event key expire"},
	} {
		if unexercised.n == 0 {
			problems = append(problems, "k8s clients: "+unexercised.what+": that path was not exercised")
		}
	}
	return problems
}

// checkCompacted shows, on the healed cluster, that a list page and a
// watch at a revision compaction removed are refused as compacted, as the
// reflectors and the lister expect: it reads a first page at R, writes
// twice, compacts at the second write, and asks for the next page at R and
// for a watch from R+1.
//
// Every request goes to one member: it answers the compaction once it has
// applied it, while another member may not have yet and may still serve
// the old revisions, as an etcd member may.
func (k *k8sClients) checkCompacted() []string {
	for try := 0; try < 20; try++ {
		cli := k.w.etcdClient(k.w.someMember())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		problems, err := k.compactedOnce(ctx, cli)
		cancel()
		cli.Close()
		if err == nil {
			return problems
		}
		time.Sleep(200 * time.Millisecond)
	}
	return []string{"k8s clients: the compaction check never got through"}
}

func (k *k8sClients) compactedOnce(ctx context.Context, cli *clientv3.Client) ([]string, error) {
	first, err := cli.Get(ctx, k8sPrefix, clientv3.WithPrefix(), clientv3.WithLimit(k8sPageLimit))
	if err != nil {
		return nil, err
	}
	rev := first.Header.Revision
	var p *clientv3.PutResponse
	for range 2 { // the compaction must pass rev+1 for the watch to be refused
		val := fmt.Sprintf("late%d", rand.Uint64())
		if p, err = cli.Put(ctx, k8sLateKey, val); err != nil {
			if notSent(err) {
				k.note(func() { k.notApplied[val] = true })
			}
			return nil, err
		}
		k.note(func() { k.acked = append(k.acked, ackedWrite{Key: k8sLateKey, Value: val, Rev: p.Header.Revision}) })
	}
	if _, err := cli.Compact(ctx, p.Header.Revision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return nil, err
	}
	var problems []string
	switch _, err = cli.Get(ctx, k8sPrefix, clientv3.WithPrefix(), clientv3.WithLimit(k8sPageLimit), clientv3.WithRev(rev)); {
	case err == nil:
		problems = append(problems, fmt.Sprintf("k8s clients: a list page at revision %d, compacted at %d, was answered", rev, p.Header.Revision))
	case !errors.Is(err, rpctypes.ErrCompacted):
		return nil, err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wr, ok := <-cli.Watch(wctx, k8sPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	switch {
	case !ok:
		return nil, errors.New("the watch ended without an answer")
	case wr.CompactRevision == 0 && wr.Err() != nil:
		return nil, wr.Err()
	case wr.CompactRevision < p.Header.Revision:
		problems = append(problems, fmt.Sprintf("k8s clients: a watch from revision %d, compacted at %d, answered compact revision %d, %d events, error %v",
			rev+1, p.Header.Revision, wr.CompactRevision, len(wr.Events), wr.Err()))
	}
	return problems, nil
}
