package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
)

// serveKV handles /v1/kv/{key}; key is everything after the prefix.
func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if key == "" {
			s.list(w, r)
			return
		}
		s.get(w, r, key)
	case http.MethodPut:
		if r.URL.RawQuery != "" && r.URL.Query().Has("lease") {
			s.putWithLease(w, r, key)
			return
		}
		s.write(w, r, kv.OpPut, key)
	case http.MethodPost:
		if op := r.URL.Query().Get("op"); op != "append" {
			s.fail(w, api.CodeBadRequest, fmt.Sprintf("POST needs ?op=append, got op=%q", op))
			return
		}
		s.write(w, r, kv.OpAppend, key)
	case http.MethodDelete:
		s.write(w, r, kv.OpDelete, key)
	default:
		s.methodNotAllowed(w, "GET, HEAD, PUT, POST, DELETE")
	}
}

// write validates, proposes and answers one write.
func (s *Server) write(w http.ResponseWriter, r *http.Request, op kv.Op, key string) {
	cmd := kv.Command{Op: op, Key: key, IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey)}
	if msg := parseConditions(r, &cmd); msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	if code, msg := s.checkKey(key); code != "" {
		s.fail(w, code, msg)
		return
	}
	// Redirect before reading a body the leader will read again.
	if !s.isLeader() {
		s.redirect(w, r)
		return
	}
	if op != kv.OpDelete {
		v, ok := s.readValue(w, r)
		if !ok {
			return
		}
		cmd.Value = v
	}
	if err := s.store.Config().Validate(&cmd); err != nil {
		var ke *kv.Error
		if errors.As(err, &ke) {
			s.fail(w, ke.Code, ke.Message)
			return
		}
		s.fail(w, api.CodeBadRequest, err.Error())
		return
	}
	if !s.refuseForAlarm(w, op) {
		return
	}
	// RequestTimeout from a shared timer (expiries), not a context of its
	// own: the timeout may run up to 1/32 longer.
	start := time.Now()
	out, err := s.node.ProposeUntil(r.Context(), kv.EncodeCommand(cmd), s.writeExpiries.After(s.cfg.Limits.RequestTimeout))
	s.metrics.proposed(start, err)
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	res, ok := out.(*kv.Result)
	if !ok {
		s.fail(w, api.CodeInternal, fmt.Sprintf("state machine answered %T", out))
		return
	}
	if res.Rev != 0 {
		w.Header()["Etag"] = []string{api.FormatETag(uint64(res.Rev))}
	}
	if !res.OK() {
		s.fail(w, res.Code, res.Message)
		return
	}
	rev := res.Rev
	if op == kv.OpDelete {
		rev = res.Revision
	}
	writeWriteResponse(w, api.WriteResponse{Index: uint64(res.Index), Rev: uint64(rev), Revision: uint64(res.Revision)})
}

// writeWriteResponse answers a write with 200 and wr, encoded by hand as
// encoding/json would (TestWriteResponseEncoding): the JSON encoder's
// reflection and buffers were most of the answer's cost.
func writeWriteResponse(w http.ResponseWriter, wr api.WriteResponse) {
	var buf [96]byte
	b := append(buf[:0], `{"index":`...)
	b = strconv.AppendUint(b, wr.Index, 10)
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, wr.Rev, 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, wr.Revision, 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// Header values shared by every answer (net/http only reads them).
var (
	contentTypeJSON  = []string{"application/json"}
	contentTypeOctet = []string{"application/octet-stream"}
)

// parseConditions reads If-Match and If-None-Match; a non-empty answer is
// why the request is malformed.
func parseConditions(r *http.Request, cmd *kv.Command) string {
	im, inm := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	switch {
	case im != "" && inm != "":
		return "If-Match and If-None-Match together"
	case im != "":
		rev, ok := api.ParseETag(im)
		if !ok {
			return fmt.Sprintf("If-Match %q: want a revision in quotes, like \"42\"", im)
		}
		cmd.Cond, cmd.Rev = kv.CondRevMatch, int64(rev)
	case inm != "":
		if strings.TrimSpace(inm) != "*" {
			return fmt.Sprintf("If-None-Match %q: only * is supported", inm)
		}
		cmd.Cond = kv.CondAbsent
	}
	return ""
}

func (s *Server) checkKey(key string) (code, msg string) {
	switch {
	case key == "":
		return api.CodeBadKey, "empty key"
	case len(key) > s.cfg.maxKeyBytes():
		return api.CodeBadKey, fmt.Sprintf("key is %d bytes, over %d", len(key), s.cfg.maxKeyBytes())
	}
	return "", ""
}

// readValue reads the body, refusing one over the value limit (plus
// slack, so that the exact limit is judged by Validate like every replica
// would) without reading it all.
func (s *Server) readValue(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := int64(s.cfg.maxValueBytes())
	if r.ContentLength >= 0 && r.ContentLength <= limit {
		// The common case: the length is known and within the limit, and
		// net/http delivers exactly that many bytes. One allocation of the
		// right size instead of io.ReadAll's growing buffer and a
		// MaxBytesReader.
		v := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, v); err != nil {
			s.fail(w, api.CodeBadRequest, "reading body: "+err.Error())
			return nil, false
		}
		return v, true
	}
	return s.readBody(w, r, "value", limit, limit+int64(s.cfg.Limits.BodySlackBytes))
}

// barrier runs the read barrier the request's consistency level asks for;
// false means it answered (redirect or error).
func (s *Server) barrier(w http.ResponseWriter, r *http.Request) bool {
	level := queryValue(r.URL.RawQuery, "consistency")
	if level == "" {
		level = api.Linearizable
	}
	var reads *readCoalescer
	switch level {
	case api.Stale:
		return true
	case api.Linearizable:
		reads = s.linearizableReads
	case api.Lease:
		reads = s.leaseReads
	default:
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("consistency %q: want linearizable, lease or stale", level))
		return false
	}
	if !s.isLeader() {
		s.redirect(w, r)
		return false
	}
	// No timeout of the request's own: the shared round has one
	// (RequestTimeout), and a deadline per read cost ~5% of a read's CPU.
	start := time.Now()
	err := reads.wait(r.Context())
	s.metrics.readBarrier(level, start, err)
	if err != nil {
		s.readBarrierError(w, r, err)
		return false
	}
	return true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, key string) {
	if code, msg := s.checkKey(key); code != "" {
		s.fail(w, code, msg)
		return
	}
	if !s.barrier(w, r) {
		return
	}
	v, rev, ok := s.store.Get(key)
	if !ok {
		s.fail(w, api.CodeNotFound, "no such key")
		return
	}
	// Canonical keys set directly: Header.Set canonicalises every key.
	h := w.Header()
	vals := []string{api.FormatETag(uint64(rev)), strconv.Itoa(len(v))}
	h["Etag"] = vals[0:1:1]
	h["Content-Type"] = contentTypeOctet
	h["Content-Length"] = vals[1:2:2]
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(v)
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if ls := q.Get("limit"); ls != "" {
		n, err := strconv.Atoi(ls)
		if err != nil || n < 0 {
			s.fail(w, api.CodeBadRequest, fmt.Sprintf("limit %q: want a non-negative integer", ls))
			return
		}
		limit = n
	}
	if !s.barrier(w, r) {
		return
	}
	items, more := s.store.List(q.Get("prefix"), limit)
	out := api.ListResponse{Items: make([]api.Item, 0, len(items)), More: more}
	for _, it := range items {
		out.Items = append(out.Items, api.NewItem(it.Key, it.Value, uint64(it.Rev)))
	}
	s.writeJSON(w, http.StatusOK, out)
}

// roleName maps the core's roles onto docs/api.md's five.
func roleName(r raft.Role) string {
	switch r {
	case raft.Leader:
		return api.RoleLeader
	case raft.Candidate, raft.PreCandidate:
		return api.RoleCandidate
	case raft.Learner:
		return api.RoleLearner
	case raft.Removed:
		return api.RoleRemoved
	}
	return api.RoleFollower
}
