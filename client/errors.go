package client

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/api"
)

// Error is an error answer of the API, or an outcome the client could not
// learn. Code is one of api's codes.
type Error struct {
	Status  int    // HTTP status; 0 when no answer arrived
	Code    string // api.Code...
	Message string
	// Err is the cause when the client gave up (a network error, the
	// context's end).
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("raftkv: %s", e.Code)
	if e.Status != 0 {
		s = fmt.Sprintf("raftkv: %d %s", e.Status, e.Code)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnknownOutcome) true for unknown_outcome.
func (e *Error) Is(target error) bool {
	return target == ErrUnknownOutcome && e.Code == api.CodeUnknownOutcome
}

// ErrUnknownOutcome matches (errors.Is) a write that may or may not have
// been applied.
var ErrUnknownOutcome = errors.New("raftkv: outcome unknown")

// ErrNoEndpoint is wrapped when no endpoint could be reached.
var ErrNoEndpoint = errors.New("raftkv: no endpoint answered")

// IsUnknownOutcome reports whether err leaves open whether a write applied.
func IsUnknownOutcome(err error) bool { return errors.Is(err, ErrUnknownOutcome) }

// IsNotFound reports a 404: no such key or member.
func IsNotFound(err error) bool { return hasCode(err, api.CodeNotFound) }

// IsPreconditionFailed reports a 412: If-Match or If-None-Match did not hold.
func IsPreconditionFailed(err error) bool { return hasCode(err, api.CodePreconditionFailed) }

// IsNoSpace reports a 507: the write was refused, and not applied, because
// a member's disk or the state's quota is full (a no_space alarm).
func IsNoSpace(err error) bool { return hasCode(err, api.CodeNoSpace) }

// Code returns the API code of err, or "" if it carries none.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func hasCode(err error, code string) bool { return Code(err) == code }
