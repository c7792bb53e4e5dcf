package kv

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/raftpb"
)

// Result codes. They are the API's error codes (docs/api.md) for the answers the
// state machine decides; every replica decides alike, so a code is as much
// part of the replicated state as a value is.
const (
	// CodeOK is the empty code: the command took effect.
	CodeOK = ""
	// CodePreconditionFailed: If-Match or If-None-Match did not hold (412).
	CodePreconditionFailed = "precondition_failed"
	// CodeNotFound: delete of a key that does not exist (404).
	CodeNotFound = "not_found"
	// CodeBadRequest: the command is malformed or makes no sense (400).
	CodeBadRequest = "bad_request"
	// CodeBadKey: the key is empty or longer than Config.MaxKeyBytes (400).
	CodeBadKey = "bad_key"
	// CodeTooLarge: the value, or the value an append would make, is over
	// Config.MaxValueBytes (413).
	CodeTooLarge = "too_large"
	// CodeCompacted: a read, watch or compaction at a revision the history
	// no longer holds (410).
	CodeCompacted = "compacted"
	// CodeFutureRevision: a read or compaction at a revision after the
	// store's (400).
	CodeFutureRevision = "future_revision"
	// CodeLeaseNotFound: a put, revoke or keep-alive of a lease that does
	// not exist (404).
	CodeLeaseNotFound = "lease_not_found"
	// CodeLeaseExists: a grant of an id already in use (409).
	CodeLeaseExists = "lease_exists"
	// CodeBadTTL: a lease TTL out of range (400).
	CodeBadTTL = "bad_ttl"
	// CodeTooManyOps: a transaction over MaxTxnOps (400).
	CodeTooManyOps = "too_many_ops"
)

// codes lists every code by its one-byte number in the snapshot format; the
// order is part of the format and must only ever be appended to.
var codes = [...]string{CodeOK, CodePreconditionFailed, CodeNotFound, CodeBadRequest, CodeBadKey, CodeTooLarge, CodeNoSpace,
	CodeCompacted, CodeFutureRevision, CodeLeaseNotFound, CodeLeaseExists, CodeBadTTL, CodeTooManyOps}

func codeNumber(code string) (byte, bool) {
	for i, c := range codes {
		if c == code {
			return byte(i), true
		}
	}
	return 0, false
}

// MaxMessageBytes bounds Result.Message, which is kept in the session table
// and in snapshots.
const MaxMessageBytes = 512

// Result is what Apply returns for one command (as a *Result behind the
// `any` of the state machine contract).
type Result struct {
	// Index is the log index of the command that produced this result. For
	// a retry answered from the session table it is the first attempt's.
	Index raftpb.Index
	// Revision is the store revision after the command (for a retry, after
	// the first attempt).
	Revision int64
	// Rev is a single-key command's key's mod revision after it: Revision
	// when the command wrote the key, 0 when the key is absent afterwards,
	// and the unchanged current one (0 if absent) when the command did not
	// take effect.
	Rev int64
	// Prev is the key's mod revision before the command, 0 if it was absent.
	Prev int64
	// Code is CodeOK on success, otherwise one of the Code constants.
	Code string
	// Message is human text for a failure; deterministic, never longer than
	// MaxMessageBytes.
	Message string
	// Txn is a transaction's answer.
	Txn *TxnResult
	// Lease and TTL are a lease grant's (Lease also a revoke's).
	Lease, TTL int64
}

// OK reports whether the command took effect.
func (r *Result) OK() bool { return r.Code == CodeOK }

// Err returns nil on success and a *Error carrying Code and Message otherwise.
func (r *Result) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Error is a deterministic rejection of a command: every replica rejects the
// same command the same way. The server maps Code to an HTTP status.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("kv: %s: %s", e.Code, e.Message) }

// ErrCorrupt is wrapped by every error about malformed bytes: a command that
// does not decode, or a snapshot stream that fails its checks.
var ErrCorrupt = errors.New("kv: corrupt encoding")

// rejected is a Result that changed nothing; Apply fills in Index and
// Revision.
func rejected(rev int64, code, message string) *Result {
	if len(message) > MaxMessageBytes {
		message = message[:MaxMessageBytes]
	}
	return &Result{Rev: rev, Prev: rev, Code: code, Message: message}
}

func (s *Store) rejected(code, message string) *Result { return rejected(0, code, message) }

// errorCode is the code of an error made by this package.
func errorCode(err error) string {
	var ce *CompactedError
	var ke *Error
	switch {
	case errors.As(err, &ce):
		return CodeCompacted
	case errors.As(err, &ke):
		return ke.Code
	}
	return CodeBadRequest
}
