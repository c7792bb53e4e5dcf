package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/storage/vfs"
)

// faultDisks gives every member of a test cluster its own FaultFS, kept
// across restarts.
type faultDisks map[uint64]*vfs.FaultFS

func (d faultDisks) tune(cfg *Config) {
	if d[cfg.ID] == nil {
		d[cfg.ID] = vfs.NewFaultFS(cfg.ID)
	}
	cfg.FS = d[cfg.ID]
}

// shrink leaves fs room for one more mebibyte: the log's next segment
// cannot be prepared once the current one is used up.
func shrink(fs *vfs.FaultFS) { fs.SetCapacity(fs.Used() + 1<<20) }

// answer reads a response's status and error code.
func answer(t *testing.T, resp *http.Response) (int, string) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("status %d with body %q", resp.StatusCode, b)
		}
	}
	return resp.StatusCode, e.Code
}

// waitFor polls cond for up to 30 s. Generous, because space coming back
// means each member prepares a 16 MiB segment in its in-memory file
// system, which takes seconds under the race detector on a busy machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// currentLeader is a member that leads and has published its address. Unlike
// tcluster.leader it does not wait for the leader's log to be committed: a
// full follower may leave entries uncommitted until space is back.
func currentLeader(t *testing.T, c *tcluster) *Server {
	t.Helper()
	var lead *Server
	waitFor(t, "a leader", func() bool {
		for _, s := range c.servers {
			if st := s.node.Status(); st.Role.String() == api.RoleLeader && selfAddr(st, s.cfg.ID) == s.ClientAddr() {
				lead = s
				return true
			}
		}
		return false
	})
	return lead
}

func clusterOf(t *testing.T, c *tcluster, s *Server) api.Cluster {
	t.Helper()
	return decode[api.Cluster](t, expect(t, c.do(http.MethodGet, url(s, api.PathCluster), nil), 200, ""))
}

// TestDiskFullSingleMember writes 60 KiB values to a one-member cluster on
// a small disk until the disk is full. The member never stops; every write
// is acknowledged or refused with 507 no_space before it was proposed;
// the alarm shows in /v1/cluster, /v1/cluster/alarms and /metrics; reads
// and deletes work; a restart on the full disk comes back the same; and
// once space is freed, writes are taken again. No acknowledged write is
// lost.
func TestDiskFullSingleMember(t *testing.T) {
	disks := faultDisks{}
	c := newCluster(t, 1, disks.tune)
	s := c.leader()
	shrink(disks[1])
	value := strings.Repeat("v", 60<<10)
	var acked []string
	refused := 0
	for i := 0; refused < 5; i++ {
		if i > 1000 {
			t.Fatal("the disk never filled")
		}
		key := fmt.Sprintf("k%04d", i)
		switch status, code := answer(t, put(c, s, key, value)); {
		case status == 200:
			if refused > 0 {
				t.Fatalf("write %s acknowledged after a refusal, with no space freed", key)
			}
			acked = append(acked, key)
		case status == 507 && code == api.CodeNoSpace:
			refused++
		default:
			t.Fatalf("write %s: %d %s, want 200 or 507 no_space", key, status, code)
		}
	}
	if s.Err() != nil {
		t.Fatalf("member stopped: %v", s.Err())
	}
	if len(acked) < 30 {
		t.Fatalf("only %d writes taken before the disk filled", len(acked))
	}
	// A refusal can come from the member's own log before its alarm,
	// raised through the log, has been applied: wait for the alarm.
	var cl api.Cluster
	waitFor(t, "the disk alarm in /v1/cluster", func() bool {
		cl = clusterOf(t, c, s)
		return cl.Members[0].Alarm == api.AlarmNoSpace && cl.Members[0].AlarmCause == api.AlarmCauseDisk && !cl.Self.SpaceOK
	})
	alarms := decode[api.AlarmsResponse](t, expect(t, c.do(http.MethodGet, url(s, api.PathAlarms), nil), 200, ""))
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Member != 1 {
		t.Fatalf("alarms: %+v", alarms)
	}
	metrics := string(expect(t, c.do(http.MethodGet, url(s, PathMetrics), nil), 200, ""))
	for _, want := range []string{"raftkv_alarms_raised 1", "raftkv_disk_space_ok 0",
		`raftkv_alarm{alarm="no_space",cause="disk",member="1"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	// Reads and deletes go on.
	expect(t, c.do(http.MethodGet, url(s, api.PathKV+acked[0]), nil), 200, "")
	expect(t, c.do(http.MethodDelete, url(s, api.PathKV+acked[0]), nil), 200, "")
	acked = acked[1:]

	// A restart on the full disk: no crash loop, reads served, writes refused.
	c.kill(1)
	s = c.restart(1)
	c.leader()
	waitFor(t, "the restarted member to see its disk full", func() bool { return !s.node.SpaceOK() })
	expect(t, put(c, s, "after-restart", value), 507, api.CodeNoSpace)
	for _, k := range acked {
		expect(t, c.do(http.MethodGet, url(s, api.PathKV+k), nil), 200, "")
	}

	// Space comes back: the alarm clears itself and writes are taken
	// (preparing the segment again may pass for a stalled disk on a
	// loaded machine, so a write may need a retry).
	disks[1].SetCapacity(0)
	waitFor(t, "the alarm to clear", func() bool { a, _ := s.node.Alarms(); return len(a) == 0 })
	waitFor(t, "a write after space came back", func() bool {
		status, code := answer(t, put(c, currentLeader(t, c), "after-space", value))
		if status == 507 {
			t.Fatalf("write after space came back refused: %s", code)
		}
		return status == 200
	})
	if s.Err() != nil {
		t.Fatalf("member stopped: %v", s.Err())
	}
}

// TestLeaderDiskFullHandsOver fills the leader's disk while its followers
// have room: the leader hands leadership to a follower, writes go on
// (every answer is 200, a redirect, or a refusal that applied nothing),
// and the full member's alarm is visible until its space comes back.
func TestLeaderDiskFullHandsOver(t *testing.T) {
	disks := faultDisks{}
	c := newCluster(t, 3, disks.tune)
	old := c.leader()
	shrink(disks[old.cfg.ID])
	value := strings.Repeat("v", 60<<10)
	var acked []string
	moved := 0
	for i := 0; moved < 20; i++ {
		if i > 2000 {
			t.Fatal("leadership never moved")
		}
		lead := currentLeader(t, c)
		key := fmt.Sprintf("k%04d", i)
		switch status, code := answer(t, put(c, lead, key, value)); {
		case status == 200:
			acked = append(acked, key)
			if lead != old && !old.node.SpaceOK() {
				moved++ // a write taken elsewhere while the old leader is full
			}
		case status == 507 && code == api.CodeNoSpace, status == 307, status == 503:
		case status == 504 && code == api.CodeUnknownOutcome:
			// Proposed before the hand-over, then leadership was lost.
		default:
			t.Fatalf("write %s: %d %s", key, status, code)
		}
	}
	for id, s := range c.servers {
		if s.Err() != nil {
			t.Fatalf("member %d stopped: %v", id, s.Err())
		}
	}
	lead := currentLeader(t, c)
	waitFor(t, "the full member's alarm", func() bool {
		a, _ := lead.node.Alarms()
		return len(a) == 1 && uint64(a[0].ID) == old.cfg.ID
	})
	if role := old.node.Status().Role.String(); role == api.RoleLeader {
		t.Fatal("the member with a full disk leads")
	}
	for _, k := range acked {
		expect(t, c.do(http.MethodGet, url(lead, api.PathKV+k), nil), 200, "")
	}
	disks[old.cfg.ID].SetCapacity(0)
	waitFor(t, "the alarm to clear", func() bool { a, _ := lead.node.Alarms(); return len(a) == 0 })
	waitFor(t, "the full member to catch up", func() bool {
		return old.node.Status().Applied >= lead.node.Status().Commit
	})
}

// TestQuotaAlarm fills the state machine to its quota: the write past it
// is refused with 507 no_space and raises the alarm, which refuses further
// writes before they are proposed; deletes work; once the state is below
// the low-water mark (the deleted keys' history compacted) the alarm
// clears and writes are taken again. An
// operator's disarm clears it at once.
func TestQuotaAlarm(t *testing.T) {
	const quota = 20 * (kv.KeyOverheadBytes + kv.VersionOverheadBytes + 1024 + 3)
	c := newCluster(t, 3, func(cfg *Config) { cfg.KV.QuotaBytes = quota })
	lead := c.leader()
	value := strings.Repeat("v", 1024)
	n := 0
	for ; ; n++ {
		status, code := answer(t, put(c, lead, fmt.Sprintf("k%02d", n), value))
		if status == 507 && code == api.CodeNoSpace {
			break
		}
		if status != 200 || n > 20 {
			t.Fatalf("write %d: %d %s", n, status, code)
		}
	}
	if n != 20 {
		t.Fatalf("%d writes fit, want 20", n)
	}
	waitFor(t, "the quota alarm", func() bool {
		a, _ := lead.node.Alarms()
		return len(a) > 0 && a[0].AlarmCause == api.AlarmCauseQuota
	})
	// A small write that would fit is refused too while the alarm is up.
	expect(t, put(c, lead, "small", "x"), 507, api.CodeNoSpace)
	for _, s := range c.servers {
		if s != lead {
			expect(t, put(c, s, "small", "x"), 307, "")
		}
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k00"), nil), 200, "")
	for i := range 4 {
		expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+fmt.Sprintf("k%02d", i)), nil), 200, "")
	}
	// The deleted keys' history holds their space until it is compacted.
	compactNow(t, lead)
	expect(t, c.do(http.MethodPost, url(lead, api.PathSnapshot), nil), 200, "")
	waitFor(t, "the quota alarm to clear", func() bool { a, _ := lead.node.Alarms(); return len(a) == 0 })
	expect(t, put(c, lead, "k00", value), 200, "")

	// Fill again, then disarm by hand: writes that fit are taken at once.
	for i := 1; ; i++ {
		status, _ := answer(t, put(c, lead, fmt.Sprintf("k%02d", i), value))
		if status == 507 {
			break
		}
	}
	waitFor(t, "every member's quota alarm", func() bool { a, _ := lead.node.Alarms(); return len(a) == 3 })
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+"k00"), nil), 200, "")
	compactNow(t, lead)
	body := []byte(`{"action":"disarm"}`)
	expect(t, c.do(http.MethodPost, url(lead, api.PathAlarms), body), 200, "")
	expect(t, put(c, lead, "k00", value), 200, "")
}

// TestDiskFullMajority fills the disks of all three members: once the
// voters with space are no longer a majority, every write is refused with
// 507 no_space before it is proposed (a follower redirects to the leader,
// which refuses); nothing stops, reads and deletes work, and writes resume
// once space is back.
func TestDiskFullMajority(t *testing.T) {
	disks := faultDisks{}
	c := newCluster(t, 3, disks.tune)
	c.leader()
	for _, d := range disks {
		shrink(d)
	}
	value := strings.Repeat("v", 60<<10)
	var acked []string
	refused := 0
	for i := 0; refused < 5; i++ {
		if i > 2000 {
			t.Fatal("writes were never refused")
		}
		lead := currentLeader(t, c)
		key := fmt.Sprintf("k%04d", i)
		switch status, code := answer(t, put(c, lead, key, value)); {
		case status == 200:
			acked = append(acked, key)
		case status == 507 && code == api.CodeNoSpace:
			refused++
		case status == 307, status == 503:
			// Leadership moving between full members before their alarms
			// are known: not proposed.
		case status == 504 && code == api.CodeUnknownOutcome:
			// Proposed, then leadership moved.
		default:
			t.Fatalf("write %s: %d %s", key, status, code)
		}
	}
	lead := currentLeader(t, c)
	waitFor(t, "every member's alarm", func() bool { a, _ := lead.node.Alarms(); return len(a) == 3 })
	// With every voter's disk alarm known, leadership stays put.
	lead = currentLeader(t, c)
	expect(t, put(c, lead, "refused", "x"), 507, api.CodeNoSpace)
	for id, s := range c.servers {
		if s.Err() != nil {
			t.Fatalf("member %d stopped: %v", id, s.Err())
		}
		// A follower redirects to the leader, which refuses (leadership
		// may have moved meanwhile: then it refuses itself).
		if status, code := answer(t, put(c, s, "refused", "x")); status != 307 && (status != 507 || code != api.CodeNoSpace) {
			t.Fatalf("write to member %d: %d %s, want 307 or 507 no_space", id, status, code)
		}
	}
	for _, k := range acked {
		expect(t, c.do(http.MethodGet, url(lead, api.PathKV+k), nil), 200, "")
	}
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+acked[0]), nil), 200, "")
	for _, d := range disks {
		d.SetCapacity(0)
	}
	waitFor(t, "space and no alarm on every member", func() bool {
		for _, s := range c.servers {
			if a, _ := s.node.Alarms(); len(a) > 0 || !s.node.SpaceOK() {
				return false
			}
		}
		return true
	})
	// A full leader may have handed over just as a member got its space
	// back: retry through that.
	waitFor(t, "a write after space came back", func() bool {
		status, _ := answer(t, put(c, currentLeader(t, c), "after-space", value))
		return status == 200
	})
}

// compactNow compacts the history up to the present through the log.
func compactNow(t *testing.T, lead *Server) {
	t.Helper()
	rev, _ := lead.store.Revision()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := lead.node.Propose(ctx, kv.EncodeCommand(kv.Command{Op: kv.OpCompact, Rev: rev}))
	if err != nil {
		t.Fatalf("compacting to %d: %v", rev, err)
	}
	if res := out.(*kv.Result); !res.OK() && res.Code != kv.CodeCompacted {
		t.Fatalf("compacting to %d: %+v", rev, res)
	}
}
