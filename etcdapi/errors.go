package etcdapi

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

var (
	errNoLeader  = rpctypes.ErrGRPCNoLeader
	errNotLeader = rpctypes.ErrGRPCNotLeader
	// rpctypesEmptyKey is checked before proposing, as etcd does.
	rpctypesEmptyKey = rpctypes.ErrGRPCEmptyKey
)

// kvError maps a rejection made by package kv onto etcd's error.
func kvError(err error) error {
	var ce *kv.CompactedError
	var ke *kv.Error
	switch {
	case errors.As(err, &ce):
		return rpctypes.ErrGRPCCompacted
	case !errors.As(err, &ke):
		return status.Error(codes.Internal, err.Error())
	}
	switch ke.Code {
	case kv.CodeFutureRevision:
		return rpctypes.ErrGRPCFutureRev
	case kv.CodeCompacted:
		return rpctypes.ErrGRPCCompacted
	case kv.CodeNotFound:
		return rpctypes.ErrGRPCKeyNotFound
	case kv.CodeNoSpace:
		return rpctypes.ErrGRPCNoSpace
	case kv.CodeLeaseNotFound:
		return rpctypes.ErrGRPCLeaseNotFound
	case kv.CodeLeaseExists:
		return rpctypes.ErrGRPCLeaseExist
	case kv.CodeTooManyOps:
		return rpctypes.ErrGRPCTooManyOps
	case kv.CodeTooLarge:
		return rpctypes.ErrGRPCRequestTooLarge
	case kv.CodeBadTTL:
		if strings.Contains(ke.Message, "over") || strings.Contains(ke.Message, "large") {
			return rpctypes.ErrGRPCLeaseTTLTooLarge
		}
	case kv.CodeBadKey:
		if strings.Contains(ke.Message, "empty key") {
			return rpctypes.ErrGRPCEmptyKey
		}
	case kv.CodeBadRequest:
		if strings.Contains(ke.Message, "twice") || strings.Contains(ke.Message, "that operation") {
			return rpctypes.ErrGRPCDuplicateKey
		}
	}
	return status.Error(codes.InvalidArgument, "etcdserver: "+ke.Message)
}

// nodeError maps a failed proposal, read barrier or membership change onto
// etcd's error. ctx is the call's context (with its deadline).
func nodeError(ctx context.Context, err error) error {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		if nl.Leader == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		// Definitely not applied; the leader moved.
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, node.ErrUnknownOutcome):
		// Appended but not known to be applied: etcd's "timed out".
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return rpctypes.ErrGRPCTimeout
		}
		return rpctypes.ErrGRPCTimeoutDueToLeaderFail
	case errors.Is(err, node.ErrBusy):
		return rpctypes.ErrGRPCRequestTooManyRequests
	case errors.Is(err, node.ErrStopped), errors.Is(err, node.ErrRemoved):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, node.ErrTransferring):
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, node.ErrLearnerLagging):
		return rpctypes.ErrGRPCLearnerNotReady
	case errors.Is(err, node.ErrUnknownMember):
		return rpctypes.ErrGRPCMemberNotFound
	case errors.Is(err, node.ErrChangeInProgress):
		return status.Error(codes.FailedPrecondition, "etcdserver: a membership change is already in progress")
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
