package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
// While any member has it raised, every member refuses puts and appends
// with 507 no_space before proposing them; reads, deletes, snapshots and
// compaction go on. A member clears its own alarm once the cause is gone,
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
		have := s.ownAlarm()
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
		if !s.node.SpaceOK() || quotaHit {
			want = api.AlarmNoSpace
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
		s.log.Warn("alarm changed", "member", s.cfg.ID, "alarm", want,
			"disk_ok", s.node.SpaceOK(), "state_bytes", s.store.Size(), "quota_bytes", s.store.QuotaBytes())
	}
}

func (s *Server) ownAlarm() string {
	for _, m := range s.node.Alarms() {
		if m.ID == pb.NodeID(s.cfg.ID) {
			return m.Alarm
		}
	}
	return ""
}

// requestAlarm sets this member's alarm: through the node when it leads,
// else by asking the leader.
func (s *Server) requestAlarm(alarm string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	if s.isLeader() {
		return s.node.SetAlarm(ctx, pb.NodeID(s.cfg.ID), alarm)
	}
	st := s.node.Status()
	addr := ""
	for _, m := range st.Members {
		if m.ID == st.Lead && st.Lead != pb.None {
			addr = m.ClientAddr
		}
	}
	if addr == "" {
		return fmt.Errorf("no leader address known")
	}
	req := api.AlarmRequest{Action: api.AlarmArm, Member: s.cfg.ID, Alarm: alarm}
	if alarm == "" {
		req.Action = api.AlarmDisarm
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.scheme+"://"+addr+api.PathAlarms, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := s.peerHTTP.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("leader at %s answered %s", addr, resp.Status)
	}
	return nil
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
	ms := s.node.Alarms()
	if len(ms) == 0 {
		return ""
	}
	return fmt.Sprintf("writes are refused while member %d has the %s alarm raised (a full disk or state quota); reads and deletes work; see docs/operations.md",
		ms[0].ID, ms[0].Alarm)
}

func alarmsOf(ms []node.Member) api.AlarmsResponse {
	out := api.AlarmsResponse{Alarms: []api.Alarm{}}
	for _, m := range ms {
		if m.Alarm != "" {
			out.Alarms = append(out.Alarms, api.Alarm{Member: uint64(m.ID), Alarm: m.Alarm})
		}
	}
	return out
}

// serveAlarms answers GET /v1/cluster/alarms (this member's view) and POST
// (on the leader: raise or clear alarms).
func (s *Server) serveAlarms(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.writeJSON(w, http.StatusOK, alarmsOf(s.node.Alarms()))
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
		err = s.node.SetAlarm(ctx, pb.NodeID(req.Member), "")
	case req.Action == api.AlarmArm && req.Member != 0 && req.Alarm == api.AlarmNoSpace:
		err = s.node.SetAlarm(ctx, pb.NodeID(req.Member), req.Alarm)
	default:
		s.fail(w, api.CodeBadRequest, fmt.Sprintf(`want {"action":"disarm"[,"member":id]} or {"action":"arm","member":id,"alarm":%q}`, api.AlarmNoSpace))
		return
	}
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, alarmsOf(s.node.Status().Members))
}
