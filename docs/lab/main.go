// Command lab runs the hands-on lab of docs/lab.md against real raftkv
// server processes on 127.0.0.1 and takes a screenshot of the live view
// (/ui/) after each step with headless Chromium, so the lab's pictures can
// be regenerated:
//
//	go run ./docs/lab                 # the lab, screenshots into docs/lab/img
//	go run ./docs/lab -stages 10s     # also time a write and a read, stage by stage
//
// It builds raftkv from the working tree, starts each member as its own
// process (so one can be killed or paused), and stops them all on exit.
// Every step checks what it shows (a new leader, a member caught up, a
// snapshot sent) and the program fails if it does not happen.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

func main() {
	out := flag.String("out", filepath.Join("docs", "lab", "img"), "directory for the screenshots")
	stages := flag.Duration("stages", 0, "also time 1-client writes and reads for this long, stage by stage (0: skip)")
	browser := flag.String("chromium", "", "headless browser (default: chromium, chromium-browser or google-chrome on PATH)")
	flag.Parse()
	if err := run(*out, *stages, *browser); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

// member is one raftkv server process.
type member struct {
	id           uint64
	peer, client string
	dir          string
	cmd          *exec.Cmd
}

type lab struct {
	bin, browser, out, work string
	members                 map[uint64]*member
	cluster                 string // --cluster of the initial members
	cl                      *client.Client
	shots                   int
}

func run(out string, stages time.Duration, browser string) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run it from the repository root: go run ./docs/lab")
	}
	if browser == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				browser = p
				break
			}
		}
		if browser == "" {
			return errors.New("no headless browser on PATH (Debian: apt-get install -y chromium), or give -chromium")
		}
	}
	work, err := os.MkdirTemp("", "raftkv-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	l := &lab{bin: filepath.Join(work, "raftkv"), browser: browser, out: out, work: work, members: map[uint64]*member{}}
	fmt.Println("building raftkv")
	if b, err := exec.Command("go", "build", "-o", l.bin, "./cmd/raftkv").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	defer l.stopAll()
	if err := l.steps(); err != nil {
		return err
	}
	if stages > 0 {
		return l.timeStages(stages)
	}
	return nil
}

// freeAddr returns a free 127.0.0.1 port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (l *lab) newMember(id uint64) (*member, error) {
	peer, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cli, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m := &member{id: id, peer: peer, client: cli, dir: filepath.Join(l.work, fmt.Sprint(id))}
	l.members[id] = m
	return m, nil
}

// start runs the member's server process; join starts an added member.
func (l *lab) start(m *member, join bool) error {
	args := []string{"server", "--id", fmt.Sprint(m.id), "--data-dir", m.dir,
		"--listen-peer", m.peer, "--listen-client", m.client,
		// Small snapshot intervals, so that the snapshot step needs a few
		// hundred writes rather than tens of thousands.
		"--snapshot-entries", "100", "--snapshot-size-factor", "0", "--log-level", "warn"}
	if join {
		args = append(args, "--join")
	} else {
		args = append(args, "--cluster", l.cluster)
	}
	logf, err := os.OpenFile(filepath.Join(l.work, fmt.Sprintf("member-%d.log", m.id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(l.bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	return m.cmd.Start()
}

func (l *lab) signal(m *member, sig syscall.Signal) {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(sig)
	}
}

func (l *lab) kill(m *member) {
	l.signal(m, syscall.SIGKILL)
	_ = m.cmd.Wait()
	m.cmd = nil
}

func (l *lab) stopAll() {
	for _, m := range l.members {
		if m.cmd == nil {
			continue
		}
		l.signal(m, syscall.SIGCONT)
		l.signal(m, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.kill(m)
		}
	}
}

func (l *lab) endpoints() []string {
	var out []string
	for _, id := range l.ids() {
		out = append(out, l.members[id].client)
	}
	return out
}

func (l *lab) ids() []uint64 {
	var ids []uint64
	for id := range l.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// state is one member's own view, or nil when it does not answer.
func (l *lab) state(m *member) *api.Cluster {
	if m.cmd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := l.cl.ClusterAt(ctx, m.client)
	if err != nil {
		return nil
	}
	return c
}

// leader returns the member that says it leads, or nil.
func (l *lab) leader() *member {
	for _, id := range l.ids() {
		if st := l.state(l.members[id]); st != nil && st.Self.Role == api.RoleLeader {
			return l.members[id]
		}
	}
	return nil
}

func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
}

// caughtUp waits until m has applied everything the leader has committed.
func (l *lab) caughtUp(m *member) error {
	return waitFor(fmt.Sprintf("member %d to catch up", m.id), 30*time.Second, func() bool {
		lead := l.leader()
		if lead == nil {
			return false
		}
		ls, ms := l.state(lead), l.state(m)
		return ls != nil && ms != nil && ms.Self.AppliedIndex >= ls.Self.CommitIndex
	})
}

func (l *lab) writes(prefix string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := l.cl.Put(ctx, fmt.Sprintf("%s/%03d", prefix, i), []byte("v")); err != nil {
			return fmt.Errorf("put %s/%03d: %w", prefix, i, err)
		}
	}
	return nil
}

// shot screenshots the live view as served by m.
func (l *lab) shot(m *member, name, caption string) error {
	l.shots++
	file := fmt.Sprintf("%02d-%s.png", l.shots, name)
	abs, err := filepath.Abs(filepath.Join(l.out, file))
	if err != nil {
		return err
	}
	// Let the page's one-second poll see the latest state.
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(l.work, "browser"), "--virtual-time-budget=3000",
		"--window-size=1280,1000", "--screenshot="+abs, "http://"+m.client+"/ui/")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %v\n%s", err, b)
	}
	fmt.Printf("  %s: %s\n", file, caption)
	return nil
}

// steps is the lab, in the order of docs/lab.md.
func (l *lab) steps() error {
	var parts []string
	for id := uint64(1); id <= 3; id++ {
		m, err := l.newMember(id)
		if err != nil {
			return err
		}
		parts = append(parts, fmt.Sprintf("%d=%s", id, m.peer))
	}
	l.cluster = strings.Join(parts, ",")
	for id := uint64(1); id <= 3; id++ {
		if err := l.start(l.members[id], false); err != nil {
			return err
		}
	}
	var err error
	if l.cl, err = client.New(client.Config{Endpoints: l.endpoints()}); err != nil {
		return err
	}
	fmt.Println("step 1: three members elect a leader")
	if err := waitFor("a leader", 20*time.Second, func() bool { return l.leader() != nil }); err != nil {
		return err
	}
	if err := l.writes("step1", 20); err != nil {
		return err
	}
	for _, id := range l.ids() {
		if err := l.caughtUp(l.members[id]); err != nil {
			return err
		}
	}
	lead := l.leader()
	if err := l.shot(lead, "three-members", "one leader, two followers, the same log"); err != nil {
		return err
	}

	fmt.Printf("step 2: kill -9 the leader (member %d)\n", lead.id)
	old := lead
	l.kill(old)
	if err := waitFor("a new leader", 20*time.Second, func() bool { lead = l.leader(); return lead != nil && lead != old }); err != nil {
		return err
	}
	if err := l.writes("step2", 10); err != nil {
		return err
	}
	if err := l.shot(lead, "new-leader", fmt.Sprintf("member %d leads a higher term; member %d is unreachable", lead.id, old.id)); err != nil {
		return err
	}
	if err := l.start(old, false); err != nil {
		return err
	}
	if err := l.caughtUp(old); err != nil {
		return err
	}
	if err := l.shot(lead, "old-leader-back", fmt.Sprintf("member %d restarted from its data directory and follows", old.id)); err != nil {
		return err
	}

	var follower *member
	for _, id := range l.ids() {
		if l.members[id] != lead {
			follower = l.members[id]
			break
		}
	}
	fmt.Printf("step 3: cut member %d off (SIGSTOP) while the others write\n", follower.id)
	l.signal(follower, syscall.SIGSTOP)
	if err := l.writes("step3", 50); err != nil {
		return err
	}
	if err := l.shot(lead, "member-cut-off", fmt.Sprintf("the majority commits without member %d", follower.id)); err != nil {
		return err
	}
	l.signal(follower, syscall.SIGCONT)
	if err := l.caughtUp(follower); err != nil {
		return err
	}
	if err := l.shot(lead, "member-back", fmt.Sprintf("member %d is sent what it missed", follower.id)); err != nil {
		return err
	}

	fmt.Println("step 4: add members 4 and 5 as learners, promote 4")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range []uint64{4, 5} {
		m, err := l.newMember(id)
		if err != nil {
			return err
		}
		if _, err := l.cl.AddMember(ctx, api.Member{ID: id, PeerAddr: m.peer, ClientAddr: m.client}); err != nil {
			return fmt.Errorf("add member %d: %w", id, err)
		}
		if err := l.start(m, true); err != nil {
			return err
		}
		if err := l.caughtUp(m); err != nil {
			return err
		}
	}
	if err := l.shot(lead, "learners", "members 4 and 5 receive the log but do not vote"); err != nil {
		return err
	}
	if _, err := l.cl.PromoteMember(ctx, 4); err != nil {
		return fmt.Errorf("promote 4: %w", err)
	}
	if err := l.shot(lead, "learner-promoted", "member 4 is a voter: four voters, a majority is three"); err != nil {
		return err
	}

	voters := []uint64{lead.id, 4, 5}
	fmt.Printf("step 5: move to voters %v in one joint-consensus change\n", voters)
	c, err := l.cl.SetVoters(ctx, voters)
	if err != nil {
		return fmt.Errorf("set voters %v: %w", voters, err)
	}
	var removed []uint64
	for _, id := range l.ids() {
		if m, ok := c.Member(id); !ok || !m.Voter {
			if !slices.Contains(voters, id) {
				removed = append(removed, id)
			}
		}
	}
	if err := waitFor("the removed members to say so", 20*time.Second, func() bool {
		for _, id := range removed {
			if st := l.state(l.members[id]); st == nil || st.Self.Role != api.RoleRemoved {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	if err := l.shot(lead, "joint-change", fmt.Sprintf("voters %v; members %v are removed", voters, removed)); err != nil {
		return err
	}
	for _, id := range removed {
		l.kill(l.members[id])
		delete(l.members, id)
	}

	follower = l.members[4]
	if lead == follower {
		follower = l.members[5]
	}
	fmt.Printf("step 6: member %d misses more than the leader keeps in its log; it catches up by snapshot\n", follower.id)
	gotBefore, err := l.metric(follower, "raftkv_raft_snapshots_received_total", "")
	if err != nil {
		return err
	}
	l.signal(follower, syscall.SIGSTOP)
	if err := waitFor("the leader's log to be compacted past the paused member", 60*time.Second, func() bool {
		if err := l.writes("step6", 100); err != nil {
			return false
		}
		if _, err := l.cl.SnapshotAt(ctx, lead.client); err != nil {
			return false
		}
		first, next, err := l.firstAndNext(lead, follower)
		return err == nil && next < first
	}); err != nil {
		return err
	}
	if err := l.shot(lead, "member-far-behind", fmt.Sprintf("the leader's log starts after the last entry member %d has", follower.id)); err != nil {
		return err
	}
	l.signal(follower, syscall.SIGCONT)
	if err := l.caughtUp(follower); err != nil {
		return err
	}
	gotAfter, err := l.metric(follower, "raftkv_raft_snapshots_received_total", "")
	if err != nil {
		return err
	}
	if gotAfter <= gotBefore {
		return fmt.Errorf("member %d caught up, but received no snapshot (%v before, %v after)", follower.id, gotBefore, gotAfter)
	}
	return l.shot(lead, "snapshot-installed", fmt.Sprintf("member %d installed the leader's snapshot and follows the log again", follower.id))
}

// applied is m's applied index (0 when it does not answer).
func (l *lab) applied(m *member) uint64 {
	if st := l.state(m); st != nil {
		return st.Self.AppliedIndex
	}
	return 0
}

// firstAndNext returns the first index of m's log and, m being the
// leader, the next index it would send to peer: below the first, only a
// snapshot can bring peer up to date (entries already sent, possibly
// waiting in peer's socket, count as sent).
func (l *lab) firstAndNext(m, peer *member) (first, next uint64, err error) {
	var v struct {
		FirstIndex uint64 `json:"first_index"`
		Progress   map[string]struct {
			Next uint64 `json:"next"`
		} `json:"progress"`
	}
	resp, err := http.Get("http://" + m.client + "/v1/debug/log?n=1")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, 0, err
	}
	p, ok := v.Progress[fmt.Sprint(peer.id)]
	if !ok {
		return 0, 0, fmt.Errorf("member %d reports no progress for %d", m.id, peer.id)
	}
	return v.FirstIndex, p.Next, nil
}

// metric sums the samples of one metric on m whose labels contain match.
func (l *lab) metric(m *member, name, match string) (float64, error) {
	resp, err := http.Get("http://" + m.client + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return sumMetric(resp.Body, name, match)
}

func sumMetric(r io.Reader, name, match string) (float64, error) {
	sum := 0.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, match) {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
