package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// The live view needs every member's client address. The replicated
// configuration carries them once each member has published its own
// (publishLoop); until then, and for a member whose publication keeps
// being refused, each follower also announces its address to the leader
// (announceLoop), which keeps it in memory only, and a follower asked for
// the view fetches it from the leader (proxyView). Nothing here touches
// the log; a lost announcement only leaves a box marked unreachable until
// the next one.
const (
	// announceEvery is how often a follower re-announces to the same
	// leader; a new leader hears at once.
	announceEvery = 5 * time.Second
	// maxAddrBytes bounds an announced address.
	maxAddrBytes = 256
)

type announceRequest struct {
	ID         uint64 `json:"id"`
	ClientAddr string `json:"client_addr"`
}

// announceLoop tells the leader this member's client address whenever the
// leader changes, and every announceEvery.
func (s *Server) announceLoop() {
	defer s.bg.Done()
	t := time.NewTicker(max(s.cfg.HeartbeatInterval, 50*time.Millisecond))
	defer t.Stop()
	var toldLead pb.NodeID
	var toldAt time.Time
	for {
		select {
		case <-s.stopc:
			return
		case <-s.node.Done():
			return
		case <-t.C:
		}
		// Leader is cheap; Status is a round trip to the run goroutine,
		// taken only when there is something to announce.
		lead, _, role := s.node.Leader()
		if role == raft.Leader || lead == pb.None || (lead == toldLead && time.Since(toldAt) < announceEvery) {
			continue
		}
		addr := ""
		for _, m := range s.node.Status().Members {
			if m.ID == lead {
				addr = m.ClientAddr
			}
		}
		if addr == "" {
			continue // the leader has not published its address yet
		}
		if err := s.announceTo(addr); err != nil {
			s.log.Debug("announcing the client address to the leader", "leader", uint64(lead), "err", err)
			continue
		}
		toldLead, toldAt = lead, time.Now()
	}
}

func (s *Server) announceTo(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), viewFetchTimeout)
	defer cancel()
	_, err := s.peerCall(ctx, http.MethodPost, s.scheme+"://"+addr+PathDebugAnnounce, announceRequest{ID: s.cfg.ID, ClientAddr: s.cfg.AdvertiseClient})
	return err
}

// announce answers POST /v1/debug/announce: it remembers a member's
// client address for the live view.
func (s *Server) announce(w http.ResponseWriter, r *http.Request) {
	var req announceRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if req.ClientAddr == "" || len(req.ClientAddr) > maxAddrBytes {
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("client_addr: want 1 to %d bytes", maxAddrBytes))
		return
	}
	if !s.node.Status().Conf.Contains(pb.NodeID(req.ID)) {
		s.fail(w, api.CodeNotFound, fmt.Sprintf("no member %d", req.ID))
		return
	}
	s.announced.Store(req.ID, req.ClientAddr)
	s.writeJSON(w, http.StatusOK, api.HealthResponse{Status: "ok"})
}

// proxyView answers a view request on a follower with the leader's view,
// which knows every member's address; false means it could not, and the
// caller gathers what it can itself.
func (s *Server) proxyView(w http.ResponseWriter, r *http.Request, n uint64) bool {
	st := s.node.Status()
	if st.Role == raft.Leader || st.Lead == pb.None {
		return false
	}
	addr := ""
	for _, m := range st.Members {
		if m.ID == st.Lead {
			addr = m.ClientAddr
		}
	}
	if addr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*viewFetchTimeout)
	defer cancel()
	u := fmt.Sprintf("%s://%s%s?n=%d&local=1", s.scheme, addr, PathDebugView, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := s.peerHTTP.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	var v DebugView
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxViewMembers*maxDebugLogBytes)).Decode(&v); err != nil {
		return false
	}
	v.Self = s.cfg.ID
	s.writeJSON(w, http.StatusOK, v)
	return true
}
