package node_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// counter is a test FSM: it sums 8-byte commands and records the order.
type counter struct {
	mu    sync.Mutex
	sum   uint64
	count uint64
}

func (c *counter) Apply(_ pb.Index, cmd []byte) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(cmd) >= 8 {
		c.sum += binary.BigEndian.Uint64(cmd)
	}
	c.count++
	return c.sum
}

func (c *counter) Snapshot() (io.WriterTo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return image{sum: c.sum, count: c.count}, nil
}

type image struct{ sum, count uint64 }

func (i image) WriteTo(w io.Writer) (int64, error) {
	b := binary.BigEndian.AppendUint64(nil, i.sum)
	b = binary.BigEndian.AppendUint64(b, i.count)
	n, err := w.Write(b)
	return int64(n), err
}

func (c *counter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) != 16 {
		return fmt.Errorf("counter: snapshot of %d bytes", len(b))
	}
	c.mu.Lock()
	c.sum, c.count = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	c.mu.Unlock()
	return nil
}

func (c *counter) get() (uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sum, c.count
}

type member struct {
	l    net.Listener // bound at add, used by the first start
	id   pb.NodeID
	dir  string
	addr string
	fsm  *counter
	n    *node.Node
	fs   vfs.FS // the member's file system; nil means vfs.OS()
}

type tcluster struct {
	// net carries the members' messages in memory; nil means TCP on
	// loopback (newTCPCluster), for the tests that are about TCP.
	net     *node.MemNetwork
	maybe   uint64 // sum of proposals whose outcome is unknown
	tb      testing.TB
	members map[pb.NodeID]*member
	boot    []node.Member
	snapN   uint64
	// tweak, if set, adjusts the configuration of every member started.
	tweak func(*node.Config)
}

// newTCluster starts n members on an in-memory network.
func newTCluster(t *testing.T, n int, snapEntries uint64) *tcluster {
	return newTClusterWith(t, n, snapEntries, nil)
}

// newTCPCluster starts n members that talk TCP on loopback.
func newTCPCluster(t *testing.T, n int, snapEntries uint64) *tcluster {
	return newTClusterOn(t, false, n, snapEntries, nil)
}

// newTClusterWith is newTCluster with a hook that runs once the members
// exist and before they start (to set their fs or the cluster's tweak).
func newTClusterWith(t *testing.T, n int, snapEntries uint64, prepare func(*tcluster)) *tcluster {
	return newTClusterOn(t, true, n, snapEntries, prepare)
}

func newTClusterOn(t *testing.T, mem bool, n int, snapEntries uint64, prepare func(*tcluster)) *tcluster {
	c := &tcluster{tb: t, members: map[pb.NodeID]*member{}, snapN: snapEntries}
	if mem {
		c.net = node.NewMemNetwork()
	}
	for i := 1; i <= n; i++ {
		m := c.add(pb.NodeID(i))
		c.boot = append(c.boot, node.Member{ID: m.id, PeerAddr: m.addr})
	}
	if prepare != nil {
		prepare(c)
	}
	for i := 1; i <= n; i++ {
		c.start(pb.NodeID(i), false)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *tcluster) add(id pb.NodeID) *member {
	if c.net != nil {
		m := &member{id: id, dir: c.tb.TempDir(), addr: fmt.Sprintf("mem-%d", id)}
		c.members[id] = m
		return m
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.tb.Fatal(err)
	}
	addr := l.Addr().String()
	m := &member{id: id, dir: c.tb.TempDir(), addr: addr, l: l}
	c.members[id] = m
	return m
}

func (c *tcluster) start(id pb.NodeID, join bool) { c.startWith(id, join, nil) }

func (c *tcluster) startWith(id pb.NodeID, join bool, tweak func(*node.Config)) {
	m := c.members[id]
	l, err := m.l, error(nil)
	m.l = nil
	for i := 0; l == nil && c.net == nil && i < 50; i++ {
		if l, err = net.Listen("tcp", m.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	fs := m.fs
	if fs == nil {
		fs = vfs.OS()
	}
	log, snaps, err := node.OpenStorage(fs, m.dir)
	if err != nil {
		c.tb.Fatal(err)
	}
	m.fsm = &counter{}
	cid := uint64(42)
	if join {
		cid = 0 // a joining member learns the cluster id from the leader
	}
	cfg := node.Config{
		ID: id, ClusterID: cid, FSM: m.fsm, Log: log, Snapshots: snaps, PeerListener: l,
		Bootstrap: c.boot, Join: join,
		TickInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		SnapshotEntries: c.snapN,
	}
	if c.net != nil {
		cfg.PeerListener, cfg.NewTransport = nil, c.net.Transport(id)
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := n.Start(); err != nil {
		c.tb.Fatal(err)
	}
	m.n = n
}

func (c *tcluster) stop(id pb.NodeID) {
	m := c.members[id]
	if m.n != nil {
		m.n.Stop()
		m.n = nil
	}
}

func (c *tcluster) stopAll() {
	for id := range c.members {
		c.stop(id)
	}
}

func (c *tcluster) leader() pb.NodeID {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, m := range c.members {
			if m.n != nil && m.n.Status().Role.String() == "leader" {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.tb.Fatal("no leader within 10s")
	return 0
}

func cmd(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// propose sends to whichever member leads, retrying through elections
// while the outcome is definitely "not applied". A proposal whose outcome
// is unknown is not retried (that could apply it twice); its value is
// counted in c.maybe and the result is nil.
func (c *tcluster) propose(v uint64) any {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		lead := c.leader()
		res, err := c.members[lead].n.Propose(ctx, cmd(v))
		if err == nil {
			return res
		}
		if errors.Is(err, node.ErrUnknownOutcome) {
			c.maybe += v
			return nil
		}
		if ctx.Err() != nil {
			c.tb.Fatalf("propose %d: %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConverged waits until every running member has the same sum, within
// [want, want+maybe].
func (c *tcluster) waitConverged(want uint64) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ok, first := true, uint64(0)
		for _, m := range c.members {
			if m.n == nil {
				continue
			}
			s, _ := m.fsm.get()
			if first == 0 {
				first = s
			}
			if s != first || s < want || s > want+c.maybe {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	for id, m := range c.members {
		if m.n != nil {
			s, n := m.fsm.get()
			c.tb.Logf("member %d: sum %d count %d status %+v", id, s, n, m.n.Status().Status)
		}
	}
	c.tb.Fatalf("members did not converge on sum %d", want)
}

// TestReplicationOverTCP shows a 3-member cluster electing a leader and
// applying proposals on every member, with Propose returning the result.
func TestReplicationOverTCP(t *testing.T) {
	c := newTCPCluster(t, 3, 0)
	var want uint64
	for i := uint64(1); i <= 50; i++ {
		want += i
		got := c.propose(i)
		if c.maybe == 0 && got != want {
			t.Fatalf("propose %d returned %v, want %d", i, got, want)
		}
	}
	c.waitConverged(want)
}

// TestLeaderCrashAndRestart shows that after the leader stops, another is
// elected and takes writes, and the old leader catches up on restart.
func TestLeaderCrashAndRestart(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(1)
	old := c.leader()
	c.stop(old)
	c.propose(2)
	if c.leader() == old {
		t.Fatal("stopped member still leads")
	}
	c.start(old, false)
	c.propose(3)
	c.waitConverged(6)
}

// TestFollowerCatchUpBySnapshot shows a follower that was down while the
// log was compacted catching up through InstallSnapshot.
func TestFollowerCatchUpBySnapshot(t *testing.T) {
	c := newTCluster(t, 3, 20)
	c.propose(1)
	lead := c.leader()
	var down pb.NodeID
	for id := range c.members {
		if id != lead {
			down = id
			break
		}
	}
	c.stop(down)
	var want uint64 = 1
	for i := uint64(0); i < 100; i++ {
		c.propose(1)
		want++
	}
	if st := c.members[lead].n.Status(); st.FirstIndex <= 2 {
		t.Fatalf("leader log was not compacted: first index %d", st.FirstIndex)
	}
	c.start(down, false)
	c.waitConverged(want)
	if st := c.members[down].n.Status(); st.SnapshotIndex == 0 {
		t.Fatalf("member %d caught up without a snapshot", down)
	}
}

// TestMembershipEndToEnd adds a learner, promotes it, and removes an old
// voter, with writes before and after.
func TestMembershipEndToEnd(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(5)
	m4 := c.add(4)
	lead := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.members[lead].n.AddLearner(ctx, node.Member{ID: 4, PeerAddr: m4.addr}); err != nil {
		t.Fatal(err)
	}
	c.start(4, true)
	c.propose(5)
	c.waitConverged(10)
	if err := c.members[c.leader()].n.Promote(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var victim pb.NodeID = 1
	if c.leader() == 1 {
		victim = 2
	}
	if err := c.members[c.leader()].n.RemoveMember(ctx, victim); err != nil {
		t.Fatal(err)
	}
	c.stop(victim)
	delete(c.members, victim)
	c.propose(5)
	c.waitConverged(15)
	st := c.members[c.leader()].n.Status()
	if len(st.Conf.Voters) != 3 || st.Conf.Joint() {
		t.Fatalf("configuration after changes: %v", st.Conf)
	}
}

// TestSetPeerAddr moves a follower to a new peer address over TCP: an
// unknown member, an empty address and another member's address are
// refused; once the change applies, the member restarted on the new
// address (its old one closed) is reached there and catches up.
func TestSetPeerAddr(t *testing.T) {
	c := newTCPCluster(t, 3, 0)
	c.propose(5)
	lead := c.leader()
	f := lead%3 + 1
	ln := c.members[lead].n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		id   pb.NodeID
		addr string
		want error
	}{
		{9, "127.0.0.1:1", node.ErrUnknownMember},
		{f, "", node.ErrInvalidChange},
		{f, c.members[lead].addr, node.ErrInvalidChange},
	} {
		if err := ln.SetPeerAddr(ctx, tc.id, tc.addr); !errors.Is(err, tc.want) {
			t.Fatalf("SetPeerAddr(%d, %q): %v, want %v", tc.id, tc.addr, err, tc.want)
		}
	}
	c.stop(f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.SetPeerAddr(ctx, f, l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	for _, m := range ln.Status().Members {
		if m.ID == f && m.PeerAddr != l.Addr().String() {
			t.Fatalf("member %d at %s after the change, want %s", f, m.PeerAddr, l.Addr())
		}
	}
	c.members[f].addr, c.members[f].l = l.Addr().String(), l
	c.start(f, false)
	c.propose(5)
	c.waitConverged(10)
}

// TestTransferLeadership hands leadership to a chosen follower.
func TestTransferLeadership(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(1)
	lead := c.leader()
	to := lead%3 + 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.members[lead].n.TransferLeadership(ctx, to); err != nil {
		t.Fatal(err)
	}
	if got := c.leader(); got != to {
		t.Fatalf("leader is %d, want %d", got, to)
	}
	c.propose(1)
	c.waitConverged(2)
}

// TestStopWithProposalsInFlight shows every Propose gets an answer when
// the node stops under load: a result, ErrStopped or ErrUnknownOutcome.
func TestStopWithProposalsInFlight(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(1)
	lead := c.members[c.leader()]
	ln := lead.n // c.stop clears lead.n while the proposers may still run
	// Read before the proposers start: they may all be appended before
	// this goroutine runs again.
	before := ln.Status().LastIndex
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ln.Propose(context.Background(), cmd(1))
			errs <- err
		}()
	}
	waitFor(t, 5*time.Second, "proposals in flight", func() bool { return lead.n.Status().LastIndex > before })
	c.stop(lead.id)
	wg.Wait()
	close(errs)
	for err := range errs {
		var nl *node.NotLeaderError
		if err != nil && !errors.Is(err, node.ErrStopped) && !errors.Is(err, node.ErrUnknownOutcome) &&
			!errors.As(err, &nl) && !errors.Is(err, node.ErrBusy) {
			t.Fatalf("unexpected error %v", err)
		}
	}
}

// TestReadIndex shows a linearizable read on a follower sees a write that
// completed on the leader before it.
func TestReadIndex(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(7)
	lead := c.leader()
	for id, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.n.ReadIndex(ctx); err != nil {
			cancel()
			t.Fatalf("read on %d (leader %d): %v", id, lead, err)
		}
		cancel()
		if s, _ := m.fsm.get(); s != 7 {
			t.Fatalf("member %d read %d after barrier, want 7", id, s)
		}
	}
}

// TestSnapshotSizeFactorSpacesSnapshots checks that with a size factor a
// snapshot waits until the entries since the last one outweigh it: the
// counter's image is 16 bytes and each command 8, so with factor 20 the
// next snapshot needs 320 bytes of commands, 40 of them, not the 10 that
// SnapshotEntries alone would take.
func TestSnapshotSizeFactorSpacesSnapshots(t *testing.T) {
	c := newTClusterWith(t, 1, 10, func(c *tcluster) {
		c.tweak = func(cfg *node.Config) { cfg.SnapshotSizeFactor = 20 }
	})
	n := c.members[1].n
	for i := 0; i < 12; i++ {
		c.propose(1)
	}
	var first uint64
	waitFor(t, 5*time.Second, "a first snapshot", func() bool {
		first = uint64(n.Status().SnapshotIndex)
		return first > 0
	})
	// The image is written asynchronously; its size is known once written.
	waitFor(t, 5*time.Second, "the first snapshot's size", func() bool { return node.SnapshotWrittenBytes(n) > 0 })
	for i := 0; i < 35; i++ { // with the 4 after the first snapshot, 312 bytes: under 20 x 16
		c.propose(1)
	}
	// Without the size factor, snapshots would have been taken 10 and 20
	// commands ago: wait until they are written.
	waitFor(t, 5*time.Second, "no snapshot being written", func() bool { return !node.SnapshotInProgress(n) })
	if got := uint64(n.Status().SnapshotIndex); got != first {
		t.Fatalf("snapshot at %d after 35 commands since the one at %d: the size factor was ignored", got, first)
	}
	for i := 0; i < 6; i++ { // 328 bytes: over
		c.propose(1)
	}
	waitFor(t, 5*time.Second, "a second snapshot", func() bool {
		return uint64(n.Status().SnapshotIndex) > first
	})
}

// TestIsolatedLeaderIsReplaced cuts the leader off on the in-memory
// network: the other two elect a new leader and keep committing, the old
// one steps down (CheckQuorum), and after the heal it catches up.
func TestIsolatedLeaderIsReplaced(t *testing.T) {
	c := newTCluster(t, 3, 0)
	c.propose(1)
	old := c.leader()
	c.net.Isolate(old)
	deadline := time.Now().Add(10 * time.Second)
	var lead pb.NodeID
	for lead == pb.None || lead == old {
		if time.Now().After(deadline) {
			t.Fatal("no new leader while the old one is isolated")
		}
		for id, m := range c.members {
			if l, _, role := m.n.Leader(); id != old && l == id && role.String() == "leader" {
				lead = id
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.proposeAvoiding(old, 1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for c.members[old].n.Status().Role.String() == "leader" {
		if ctx.Err() != nil {
			t.Fatal("the isolated leader never stepped down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.net.Heal()
	c.waitConverged(2)
}

// TestProposeUntilExpires shows ProposeUntil giving up when its expiry
// channel closes, as Propose does at its context's deadline: a proposal a
// leader without a quorum took ends with an unknown outcome wrapping
// context.DeadlineExceeded.
func TestProposeUntilExpires(t *testing.T) {
	// A long election timeout: the leader keeps leading (check quorum
	// would make it step down and fail the proposal) until the expiry.
	c := newTClusterWith(t, 3, 0, func(c *tcluster) {
		c.tweak = func(cfg *node.Config) { cfg.ElectionTimeout = 2 * time.Second }
	})
	lead := c.leader()
	c.propose(1)
	for id := range c.members {
		if id != lead {
			c.stop(id)
		}
	}
	expired := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(expired) })
	start := time.Now()
	_, err := c.members[lead].n.ProposeUntil(context.Background(), cmd(2), expired)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ProposeUntil without a quorum: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if !errors.Is(err, node.ErrUnknownOutcome) && !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("ProposeUntil without a quorum: %v, want an unknown outcome or not sent", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("ProposeUntil gave up after %v, before the channel closed", waited)
	}
}

// TestProposeThroughStepDownAnswersCommittedEntry has a leader append a
// proposal that its followers receive but whose acknowledgements never
// reach it, so it steps down (check quorum) before the entry commits.
// The next leader, which holds the entry, commits it: a proposal made
// with ProposeThroughStepDown answers with the FSM's result once the old
// leader hears of it, where Propose gives up with ErrUnknownOutcome at
// the step-down.
//
// If the machine stalls for an election timeout between the cut and the
// proposals, the old leader steps down before it appends them and the
// scenario does not happen; it is then run again on a fresh cluster, and
// the test fails if it never happens.
func TestProposeThroughStepDownAnswersCommittedEntry(t *testing.T) {
	for attempt := 1; !stepDownScenario(t); attempt++ {
		if attempt == 3 {
			t.Fatal("the old leader stepped down before appending the proposals in 3 attempts")
		}
	}
}

// stepDownScenario runs TestProposeThroughStepDownAnswersCommittedEntry's
// scenario once and reports whether it happened as intended; it fails t
// if it did and ProposeThroughStepDown answered wrongly.
func stepDownScenario(t *testing.T) bool {
	c := newTCluster(t, 3, 0)
	defer c.stopAll()
	c.propose(1)
	old := c.leader()
	for _, f := range c.followersOf(old) {
		c.net.Cut(f, old, false) // the followers hear the leader; it hears nobody
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		res any
		err error
	}
	plain, through := make(chan answer, 1), make(chan answer, 1)
	go func() {
		res, err := c.members[old].n.Propose(ctx, cmd(2))
		plain <- answer{res, err}
	}()
	go func() {
		res, err := c.members[old].n.ProposeThroughStepDown(ctx, cmd(3), nil)
		through <- answer{res, err}
	}()
	// Wait for the old leader to step down and another to lead.
	for {
		if ctx.Err() != nil {
			t.Fatal("no other leader while the old one hears nobody")
		}
		lead, _, _ := c.members[c.followersOf(old)[0]].n.Leader()
		if _, _, role := c.members[old].n.Leader(); role != raft.Leader && lead != pb.None && lead != old {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.net.Heal()
	if a := <-plain; !errors.Is(a.err, node.ErrUnknownOutcome) {
		var nl *node.NotLeaderError
		if !errors.As(a.err, &nl) {
			t.Fatalf("Propose across the step-down answered %v, %v: want an unknown outcome, or not leader if it came after", a.res, a.err)
		}
		t.Logf("Propose came after the step-down (%v): running the scenario again", a.err)
		<-through
		return false
	}
	a := <-through
	if a.err != nil {
		t.Fatalf("ProposeThroughStepDown across a step-down whose entry the next leader commits: %v", a.err)
	}
	c.waitConverged(6)
	return true
}
