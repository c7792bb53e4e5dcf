package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

const testCluster = 0xC1

// TestMain fails the run if any goroutine running this package's code
// outlives the tests: a manual stand-in for goleak. (Counting goroutines
// would also catch the runtime's and the fuzzer's own.)
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := waitNoTransportGoroutines(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func waitNoTransportGoroutines(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for i, g := range strings.Split(string(buf), "\n\n") {
			if i > 0 && strings.Contains(g, "raftkv/transport.") { // 0 is this goroutine
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked goroutines:\n%s", strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGoroutines waits until at most n goroutines run.
func waitGoroutines(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutines: %d > baseline %d\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

type snapReport struct {
	id raftpb.NodeID
	ok bool
}

// recorder is a Handler that records everything on channels.
type recorder struct {
	msgs        chan raftpb.Message
	unreachable chan raftpb.NodeID
	closed      chan raftpb.NodeID
	snapReports chan snapReport
	// onSnapshot handles HandleSnapshot; by default the data is drained.
	onSnapshot func(m raftpb.Message, data io.Reader) error
}

func newRecorder() *recorder {
	return &recorder{
		msgs:        make(chan raftpb.Message, 1<<16),
		unreachable: make(chan raftpb.NodeID, 1<<10),
		closed:      make(chan raftpb.NodeID, 1<<10),
		snapReports: make(chan snapReport, 64),
	}
}

func (r *recorder) HandleMessage(m raftpb.Message) { r.msgs <- m }

func (r *recorder) HandleSnapshot(m raftpb.Message, data io.Reader) error {
	if r.onSnapshot != nil {
		return r.onSnapshot(m, data)
	}
	_, err := io.Copy(io.Discard, data)
	return err
}

func (r *recorder) ReportUnreachable(id raftpb.NodeID) {
	select {
	case r.unreachable <- id:
	default: // the test only needs to know it happened
	}
}

func (r *recorder) ReportClosed(id raftpb.NodeID) {
	select {
	case r.closed <- id:
	default:
	}
}

func (r *recorder) ReportSnapshot(id raftpb.NodeID, ok bool) { r.snapReports <- snapReport{id, ok} }

// logCapture is a slog.Handler that keeps every message, so tests can
// check that a refusal was logged.
type logCapture struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newLogCapture() logCapture { return logCapture{mu: new(sync.Mutex), msgs: new([]string)} }

func (l logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logCapture) WithGroup(string) slog.Handler            { return l }
func (l logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	*l.msgs = append(*l.msgs, b.String())
	l.mu.Unlock()
	return nil
}

// count returns how many logged lines contain sub.
func (l logCapture) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range *l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// member is one transport under test.
type member struct {
	id  raftpb.NodeID
	tr  *Transport
	rec *recorder
	log logCapture
}

func (m *member) addr() string { return m.tr.Addr().String() }

// newMember starts a transport on a loopback port (or addr when given);
// tweak may adjust its config. It is stopped when the test ends.
func newMember(t testing.TB, id raftpb.NodeID, addr string, tweak func(*Config)) *member {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	m := &member{id: id, rec: newRecorder(), log: newLogCapture()}
	cfg := Config{
		ID: id, ClusterID: testCluster, Listener: ln, Handler: m.rec,
		Logger:     slog.New(m.log),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m.tr, err = New(cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("new transport %d: %v", id, err)
	}
	// Every refusal must leave its line for the tests to find.
	m.tr.limiter.mu.Lock()
	m.tr.limiter.every = 0
	m.tr.limiter.mu.Unlock()
	t.Cleanup(m.tr.Stop)
	return m
}

// connect adds every member as a peer of every other and waits until all
// outbound streams are up.
func connect(t testing.TB, ms ...*member) {
	t.Helper()
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				if err := a.tr.AddPeer(b.id, b.addr()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				waitConnected(t, a, b.id)
			}
		}
	}
}

func waitConnected(t testing.TB, m *member, peer raftpb.NodeID) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d connected to %d", m.id, peer), func() bool {
		return m.tr.Stats().Peers[peer].Connected
	})
}

// waitFor polls cond with a generous bound: these tests check behaviour,
// not timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func recvMsg(t testing.TB, m *member) raftpb.Message {
	t.Helper()
	select {
	case msg := <-m.rec.msgs:
		return msg
	case <-time.After(10 * time.Second):
		t.Fatalf("member %d: no message arrived", m.id)
		return raftpb.Message{}
	}
}

func recvSnapReport(t testing.TB, m *member) snapReport {
	t.Helper()
	select {
	case r := <-m.rec.snapReports:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("member %d: no snapshot report", m.id)
		return snapReport{}
	}
}

// heartbeat is a small message from -> to carrying seq in Commit.
func heartbeat(from, to raftpb.NodeID, seq uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgHeartbeat, From: from, To: to, Term: 1, Commit: raftpb.Index(seq)}
}

// expectFlow checks that a message from a to b still gets through.
func expectFlow(t testing.TB, a, b *member, seq uint64) {
	t.Helper()
	a.tr.Send([]raftpb.Message{heartbeat(a.id, b.id, seq)})
	for {
		m := recvMsg(t, b)
		if m.From == a.id && m.Commit == raftpb.Index(seq) {
			return
		}
	}
}
