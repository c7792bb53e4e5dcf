package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
)

// MaxBatchOps bounds the operations of one POST /v1/batch.
const MaxBatchOps = 1024

// serveBatch answers POST /v1/batch: each op is validated, proposed or
// read as if it had come alone, and answered in its own result. The gets
// share one read barrier and the writes one hand-off to the node, which is
// the point: per-request costs (HTTP parsing, a goroutine, a syscall each
// way) are paid once for many operations.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.methodNotAllowed(w, http.MethodPost)
		return
	}
	binaryForm := r.Header.Get("Content-Type") == api.ContentTypeBatch
	var req api.BatchRequest
	if binaryForm {
		if !s.decodeBinaryBatch(w, r, &req) {
			return
		}
	} else if !s.decodeJSONLimit(w, r, &req, int64(s.cfg.Limits.MaxBatchBytes)) {
		return
	}
	switch n := len(req.Ops); {
	case n == 0:
		s.fail(w, api.CodeBadRequest, "batch has no ops")
		return
	case n > MaxBatchOps:
		s.fail(w, api.CodeTooLarge, fmt.Sprintf("batch has %d ops, over %d", n, MaxBatchOps))
		return
	}
	results := make([]api.BatchResult, len(req.Ops))
	var gets, writes []int
	var cmds [][]byte
	for i := range req.Ops {
		op := &req.Ops[i]
		if code, msg := s.checkKey(op.Key); code != "" {
			results[i] = failed(code, msg)
			continue
		}
		if op.Op == api.BatchGet {
			gets = append(gets, i)
			continue
		}
		cmd, code, msg := s.batchCommand(op)
		if code != "" {
			results[i] = failed(code, msg)
			continue
		}
		writes = append(writes, i)
		cmds = append(cmds, kv.EncodeCommand(cmd))
	}
	if len(writes) > 0 && !s.isLeader() {
		s.redirect(w, r)
		return
	}
	if len(gets) > 0 {
		// The barrier redirects or fails the whole batch when it cannot
		// be passed here; nothing has been proposed yet.
		if !s.barrier(w, r) {
			return
		}
		for _, i := range gets {
			v, rev, ok := s.store.Get(req.Ops[i].Key)
			if !ok {
				results[i] = failed(api.CodeNotFound, "no such key")
				continue
			}
			results[i] = api.BatchResult{Status: http.StatusOK, Rev: uint64(rev), Value: v}
		}
	}
	if len(writes) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Limits.RequestTimeout)
		defer cancel()
		start := time.Now()
		outs, errs := s.node.ProposeBatch(ctx, cmds)
		for k, i := range writes {
			s.metrics.proposed(start, errs[k])
			results[i] = s.writeResult(r, outs[k], errs[k])
		}
	}
	resp := api.BatchResponse{Results: results}
	if binaryForm {
		body := api.AppendBatchResponse(nil, &resp)
		w.Header().Set("Content-Type", api.ContentTypeBatch)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		return
	}
	s.writeJSON(w, http.StatusOK, resp)
}

// decodeBinaryBatch reads a binary batch body; false means it answered.
func (s *Server) decodeBinaryBatch(w http.ResponseWriter, r *http.Request, req *api.BatchRequest) bool {
	limit := int64(s.cfg.Limits.MaxBatchBytes)
	body, ok := s.readBody(w, r, "body", limit, limit)
	if !ok {
		return false
	}
	var err error
	if *req, err = api.DecodeBatchRequest(body, MaxBatchOps); err != nil {
		code := api.CodeBadRequest
		if errors.Is(err, api.ErrTooManyOps) {
			code = api.CodeTooLarge
		}
		s.fail(w, code, err.Error())
		return false
	}
	return true
}

// batchCommand turns a write op into a command, or says why it is not one.
func (s *Server) batchCommand(op *api.BatchOp) (cmd kv.Command, code, msg string) {
	cmd = kv.Command{Key: op.Key, IdempotencyKey: op.IdempotencyKey}
	switch op.Op {
	case api.BatchPut:
		cmd.Op, cmd.Value = kv.OpPut, op.Value
	case api.BatchAppend:
		cmd.Op, cmd.Value = kv.OpAppend, op.Value
	case api.BatchDelete:
		cmd.Op = kv.OpDelete
	default:
		return cmd, api.CodeBadRequest, fmt.Sprintf("op %q: want put, append, delete or get", op.Op)
	}
	switch {
	case op.IfMatch != 0 && op.IfNoneMatch:
		return cmd, api.CodeBadRequest, "if_match and if_none_match together"
	case op.IfMatch != 0:
		cmd.Cond, cmd.Rev = kv.CondRevMatch, int64(op.IfMatch)
	case op.IfNoneMatch:
		cmd.Cond = kv.CondAbsent
	}
	if err := s.store.Config().Validate(&cmd); err != nil {
		var ke *kv.Error
		if errors.As(err, &ke) {
			return cmd, ke.Code, ke.Message
		}
		return cmd, api.CodeBadRequest, err.Error()
	}
	if msg := s.alarmRefusal(cmd.Op); msg != "" {
		return cmd, api.CodeNoSpace, msg
	}
	return cmd, "", ""
}

// writeResult is one write's answer, as write gives it to a single request.
func (s *Server) writeResult(r *http.Request, out any, err error) api.BatchResult {
	if err != nil {
		return failed(s.errorCode(r, err))
	}
	res, ok := out.(*kv.Result)
	if !ok {
		return failed(api.CodeInternal, fmt.Sprintf("state machine answered %T", out))
	}
	if !res.OK() {
		br := failed(res.Code, res.Message)
		br.Rev = uint64(res.Rev)
		return br
	}
	rev := res.Rev
	if rev == 0 { // a delete: the revision it was deleted at
		rev = res.Revision
	}
	return api.BatchResult{Status: http.StatusOK, Index: uint64(res.Index), Rev: uint64(rev)}
}

func failed(code, msg string) api.BatchResult {
	return api.BatchResult{Status: api.Status(code), Code: code, Error: msg}
}
