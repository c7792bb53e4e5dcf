package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// The no_space alarm. A member raises it for itself, through the log (an
// entry of the replicated member table), while
//   - its disk has no room for the next log segment (node.SpaceOK), or
//   - the state machine refused a write for its quota, until the state is
//     back below quotaLowWater of the quota (or an operator disarms it).
//
// Every member refuses puts and appends with 507 no_space, before
// proposing them, while a quota alarm is raised (every member applies the
// same log, so every state is as full), or while the voters without a disk
// alarm are not a majority: the cluster could not commit them. With one
// full disk among three voters writes go on; that member drops what it
// has no room for and catches up once space is back (node/space.go).
// Reads, deletes, snapshots and compaction go on throughout. A member clears its own alarm once the cause is gone,
// so writes resume on their own; POST /v1/cluster/alarms (raftkv alarm
// disarm) clears alarms at once, and a cause still present raises its
// alarm again.

// alarmCheckInterval paces the check of the local causes.
const alarmCheckInterval = 200 * time.Millisecond

// alarmRetryInterval paces failed attempts to raise or clear the alarm.
const alarmRetryInterval = time.Second

// quotaLowWater is the fraction of the quota the state must fall below
// before a quota alarm clears itself.
const quotaLowWater = 0.9

// alarmLoop raises and clears this member's alarm as its causes come and go.
func (s *Server) alarmLoop() {
	defer s.bg.Done()
	t := time.NewTicker(alarmCheckInterval)
	defer t.Stop()
	rejections := s.store.QuotaRejections()
	quotaHit := false
	raised := false // our alarm, as last seen
	var next time.Time
	for {
		select {
		case <-s.stopc:
			return
		case <-s.node.Done():
			return
		case <-t.C:
		}
		have := s.ownAlarmCause()
		if raised && have == "" {
			quotaHit = false // disarmed: a new refusal raises it again
		}
		raised = have != ""
		if r := s.store.QuotaRejections(); r != rejections {
			rejections, quotaHit = r, true
		}
		if quotaHit && float64(s.store.Size()) < quotaLowWater*float64(s.store.QuotaBytes()) {
			quotaHit = false
		}
		want := ""
		switch {
		case !s.node.SpaceOK():
			want = api.AlarmCauseDisk
		case quotaHit:
			want = api.AlarmCauseQuota
		}
		now := time.Now()
		if want == have || now.Before(next) {
			continue
		}
		if err := s.requestAlarm(want); err != nil {
			s.log.Debug("setting this member's alarm", "alarm", want, "err", err)
			next = now.Add(alarmRetryInterval)
			continue
		}
		raised = want != ""
		s.log.Warn("alarm changed", "member", s.cfg.ID, "alarm", want,
			"disk_ok", s.node.SpaceOK(), "state_bytes", s.store.Size(), "quota_bytes", s.store.QuotaBytes())
	}
}

// ownAlarmCause is the cause of this member's alarm, "" if none.
func (s *Server) ownAlarmCause() string {
	alarmed, _ := s.node.Alarms()
	for _, m := range alarmed {
		if m.ID == pb.NodeID(s.cfg.ID) {
			return m.AlarmCause
		}
	}
	return ""
}

// requestAlarm raises this member's no_space alarm with cause, or clears
// it (cause ""): through the node when it leads, else by asking the leader.
func (s *Server) requestAlarm(cause string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	alarm := ""
	if cause != "" {
		alarm = api.AlarmNoSpace
	}
	if s.isLeader() {
		return s.node.SetAlarm(ctx, pb.NodeID(s.cfg.ID), alarm, cause)
	}
	req := api.AlarmRequest{Action: api.AlarmArm, Member: s.cfg.ID, Alarm: alarm, Cause: cause}
	if alarm == "" {
		req.Action = api.AlarmDisarm
	}
	// The leader's address first; a member whose disk is full may have
	// missed the entry that published it, so then any member it knows,
	// which redirects to the leader.
	var last error = fmt.Errorf("no member address known")
	for _, addr := range s.alarmTargets() {
		url := s.scheme + "://" + addr + api.PathAlarms
		for hop := 0; hop < 2 && url != ""; hop++ {
			url, last = s.postAlarm(ctx, url, req)
			if last == nil && url == "" {
				return nil
			}
		}
	}
	return last
}

// alarmTargets lists the client addresses to ask, the leader's first.
func (s *Server) alarmTargets() []string {
	st := s.node.Status()
	var out []string
	for _, m := range st.Members {
		if m.ID == st.Lead && m.ClientAddr != "" {
			out = append(out, m.ClientAddr)
		}
	}
	for _, m := range st.Members {
		a := m.ClientAddr
		if v, ok := s.announced.Load(uint64(m.ID)); ok && a == "" {
			a = v.(string)
		}
		if a != "" && m.ID != st.Lead && m.ID != st.ID {
			out = append(out, a)
		}
	}
	return out
}

// postAlarm posts an alarm request; on a redirect it returns where to.
func (s *Server) postAlarm(ctx context.Context, url string, req api.AlarmRequest) (string, error) {
	resp, err := s.peerCall(ctx, http.MethodPost, url, req)
	if resp != nil && resp.StatusCode == http.StatusTemporaryRedirect && resp.Header.Get("Location") != "" {
		return resp.Header.Get("Location"), fmt.Errorf("%s redirected", url)
	}
	return "", err
}

// refuseForAlarm answers 507 no_space, before anything is proposed, to a
// write that would grow the state while an alarm is raised; false means
// it answered.
func (s *Server) refuseForAlarm(w http.ResponseWriter, op kv.Op) bool {
	if msg := s.alarmRefusal(op); msg != "" {
		s.fail(w, api.CodeNoSpace, msg)
		return false
	}
	return true
}

// alarmRefusal is why a write of op is refused, or "".
func (s *Server) alarmRefusal(op kv.Op) string {
	if op == kv.OpDelete {
		return ""
	}
	alarmed, voters := s.node.Alarms()
	if len(alarmed) == 0 {
		return ""
	}
	full := 0
	for _, m := range alarmed {
		switch {
		case m.AlarmCause == api.AlarmCauseQuota:
			return fmt.Sprintf("writes are refused: the state is at its quota (member %d raised the %s alarm); reads and deletes work; see docs/operations.md",
				m.ID, m.Alarm)
		case m.Voter:
			full++
		}
	}
	if voters-full > voters/2 {
		return ""
	}
	return fmt.Sprintf("writes are refused: %d of %d voters have no disk space (the %s alarm); reads and deletes work; see docs/operations.md",
		full, voters, api.AlarmNoSpace)
}

func alarmsOf(ms []node.Member) api.AlarmsResponse {
	out := api.AlarmsResponse{Alarms: []api.Alarm{}}
	for _, m := range ms {
		if m.Alarm != "" {
			out.Alarms = append(out.Alarms, api.Alarm{Member: uint64(m.ID), Alarm: m.Alarm, Cause: m.AlarmCause})
		}
	}
	return out
}

// serveAlarms answers GET /v1/cluster/alarms (this member's view) and POST
// (on the leader: raise or clear alarms).
func (s *Server) serveAlarms(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		alarmed, _ := s.node.Alarms()
		s.writeJSON(w, http.StatusOK, alarmsOf(alarmed))
	case http.MethodPost:
		s.changeAlarm(w, r)
	default:
		s.methodNotAllowed(w, "GET, HEAD, POST")
	}
}

func (s *Server) changeAlarm(w http.ResponseWriter, r *http.Request) {
	if !s.leaderOnly(w, r) {
		return
	}
	var req api.AlarmRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	ctx, cancel := s.adminContext(r)
	defer cancel()
	var err error
	switch {
	case req.Action == api.AlarmDisarm && req.Member == 0:
		err = s.node.DisarmAll(ctx)
	case req.Action == api.AlarmDisarm:
		err = s.node.SetAlarm(ctx, pb.NodeID(req.Member), "", "")
	case req.Action == api.AlarmArm && req.Member != 0 && req.Alarm == api.AlarmNoSpace &&
		(req.Cause == api.AlarmCauseDisk || req.Cause == api.AlarmCauseQuota):
		err = s.node.SetAlarm(ctx, pb.NodeID(req.Member), req.Alarm, req.Cause)
	default:
		s.fail(w, api.CodeBadRequest, fmt.Sprintf(`want {"action":"disarm"[,"member":id]} or {"action":"arm","member":id,"alarm":%q,"cause":%q or %q}`,
			api.AlarmNoSpace, api.AlarmCauseDisk, api.AlarmCauseQuota))
		return
	}
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, alarmsOf(s.node.Status().Members))
}
