package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// retryAfterSeconds is the Retry-After of a 503: about an election.
const retryAfterSeconds = "1"

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("writing answer", "err", err)
	}
}

func (s *Server) writeError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set(api.HeaderRetryAfter, retryAfterSeconds)
	}
	s.writeJSON(w, status, api.ErrorBody{Error: msg, Code: code})
}

// fail answers with an API error code and its status.
func (s *Server) fail(w http.ResponseWriter, code, msg string) {
	s.writeError(w, api.Status(code), code, msg)
}

// redirect answers 307 to the same request on the leader's client address,
// or 503 no_leader when no leader, or no address for it, is known.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request) {
	st := s.node.Status()
	lead := st.Lead
	if lead == pb.None || lead == st.ID {
		s.fail(w, api.CodeNoLeader, "no leader is known; retry shortly")
		return
	}
	var addr string
	for _, m := range st.Members {
		if m.ID == lead {
			addr = m.ClientAddr
		}
	}
	if addr == "" {
		s.fail(w, api.CodeNoLeader, fmt.Sprintf("leader %d has not published its client address yet; retry shortly", lead))
		return
	}
	loc := s.scheme + "://" + addr + r.URL.RequestURI()
	w.Header().Set("Location", loc)
	s.writeJSON(w, http.StatusTemporaryRedirect, api.ErrorBody{
		Error: fmt.Sprintf("member %d is not the leader; the leader is %d", st.ID, lead), Code: "not_leader"})
}

// isLeader reports whether this member leads. It reads the node's cheap
// accessors: it runs on every request.
func (s *Server) isLeader() bool {
	_, _, role := s.node.Leader()
	return role == raft.Leader
}

// nodeError answers a failed node call. proposed says whether a context
// error may have struck after the command was appended: then the outcome
// is unknown; before, nothing was proposed.
func (s *Server) nodeError(w http.ResponseWriter, r *http.Request, err error) {
	var nl *node.NotLeaderError
	if errors.As(err, &nl) {
		s.redirect(w, r)
		return
	}
	code, msg := s.errorCode(r, err)
	s.fail(w, code, msg)
}

// errorCode maps a failed node call to an API error code and message. A
// *node.NotLeaderError (which a single request answers with a redirect)
// is no_leader: nothing was proposed, so a retry is safe.
func (s *Server) errorCode(r *http.Request, err error) (code, msg string) {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return api.CodeNoLeader, "this member is no longer the leader; retry"
	case errors.Is(err, node.ErrUnknownOutcome):
		return api.CodeUnknownOutcome, err.Error()
	case errors.Is(err, node.ErrBusy):
		return api.CodeBusy, err.Error()
	case errors.Is(err, node.ErrNoSpace):
		return api.CodeNoSpace, err.Error()
	case errors.Is(err, node.ErrStopped):
		return api.CodeShuttingDown, err.Error()
	case errors.Is(err, node.ErrTransferring):
		return api.CodeNoLeader, "leadership is being handed over; retry shortly"
	case errors.Is(err, node.ErrChangeInProgress):
		return api.CodeChangeInProgress, err.Error()
	case errors.Is(err, node.ErrUnknownMember):
		return api.CodeNotFound, err.Error()
	case errors.Is(err, node.ErrLearnerLagging):
		return api.CodeLearnerLagging, err.Error()
	case errors.Is(err, node.ErrInvalidChange), errors.Is(err, node.ErrNotVoter):
		return api.CodeBadRequest, err.Error()
	case errors.Is(err, node.ErrSnapshotInProgress):
		return api.CodeBusy, err.Error()
	case errors.Is(err, node.ErrRemoved):
		return api.CodeNoLeader, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Not ErrUnknownOutcome: the node says nothing was proposed.
		return api.CodeBusy, "not proposed in time: " + err.Error()
	}
	s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return api.CodeInternal, err.Error()
}

// readBarrierError answers a failed ReadIndex or LeaseRead: a read has no
// outcome to be unsure of, so a timeout means "no leader could confirm".
func (s *Server) readBarrierError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		s.fail(w, api.CodeNoLeader, "the leader could not confirm its leadership in time")
		return
	}
	s.nodeError(w, r, err)
}

// decodeJSON reads a small JSON body into v; false means it answered.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.decodeJSONLimit(w, r, v, maxAdminBodyBytes)
}

// decodeJSONLimit reads a JSON body of at most limit bytes into v; false
// means it answered.
func (s *Server) decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	body, ok := s.readBody(w, r, "body", limit, limit)
	if !ok {
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		s.fail(w, api.CodeBadJSON, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

// readBody reads the whole body, refusing with 413 one over limit bytes:
// at once when its Content-Length says so, and otherwise once max bytes
// (limit plus any slack) have been read, without reading further. false
// means it answered; what names the body in the answer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, what string, limit, max int64) ([]byte, bool) {
	if r.ContentLength > limit {
		s.fail(w, api.CodeTooLarge, fmt.Sprintf("%s is %d bytes, over %d", what, r.ContentLength, limit))
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, api.CodeTooLarge, fmt.Sprintf("%s over %d bytes", what, limit))
			return nil, false
		}
		s.fail(w, api.CodeBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	return b, true
}
