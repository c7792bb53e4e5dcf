package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// TestErrorMapping shows that the store's and the node's errors become
// the etcd errors the etcd client acts on, and which of them a member
// tries again itself (definitely not applied).
func TestErrorMapping(t *testing.T) {
	live, dead := context.Background(), func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}()
	for _, c := range []struct {
		name  string
		got   error
		want  error
		retry bool
	}{
		{"compacted", kvError(&kv.CompactedError{Revision: 1, Compacted: 5}), rpctypes.ErrGRPCCompacted, false},
		{"future", kvError(&kv.Error{Code: kv.CodeFutureRevision}), rpctypes.ErrGRPCFutureRev, false},
		{"lease not found", kvError(&kv.Error{Code: kv.CodeLeaseNotFound}), rpctypes.ErrGRPCLeaseNotFound, false},
		{"lease exists", kvError(&kv.Error{Code: kv.CodeLeaseExists}), rpctypes.ErrGRPCLeaseExist, false},
		{"too many ops", kvError(&kv.Error{Code: kv.CodeTooManyOps}), rpctypes.ErrGRPCTooManyOps, false},
		{"too large", kvError(&kv.Error{Code: kv.CodeTooLarge}), rpctypes.ErrGRPCRequestTooLarge, false},
		{"ignore_value, no key", kvError(&kv.Error{Code: kv.CodeNotFound}), rpctypes.ErrGRPCKeyNotFound, false},
		{"quota", kvError(&kv.Error{Code: kv.CodeNoSpace}), rpctypes.ErrGRPCNoSpace, false},
		{"empty key", kvError(&kv.Error{Code: kv.CodeBadKey, Message: "empty key"}), rpctypes.ErrGRPCEmptyKey, false},
		{"duplicate put", kvError(&kv.Error{Code: kv.CodeBadRequest, Message: `success operations put key "d" twice`}), rpctypes.ErrGRPCDuplicateKey, false},
		{"no leader", nodeError(live, &node.NotLeaderError{}), rpctypes.ErrGRPCNoLeader, true},
		{"leader moved", nodeError(live, &node.NotLeaderError{Leader: 2}), rpctypes.ErrGRPCLeaderChanged, true},
		{"transferring", nodeError(live, node.ErrTransferring), rpctypes.ErrGRPCLeaderChanged, true},
		{"unknown, leadership lost", nodeError(live, node.ErrUnknownOutcome), rpctypes.ErrGRPCTimeoutDueToLeaderFail, false},
		{"unknown, deadline", nodeError(dead, fmt.Errorf("%w: %w", node.ErrUnknownOutcome, context.Canceled)), rpctypes.ErrGRPCTimeout, false},
		{"busy", nodeError(live, node.ErrBusy), rpctypes.ErrGRPCRequestTooManyRequests, false},
		{"stopped", nodeError(live, node.ErrStopped), rpctypes.ErrGRPCStopped, false},
		{"learner lagging", nodeError(live, node.ErrLearnerLagging), rpctypes.ErrGRPCLearnerNotReady, false},
		{"no member", nodeError(live, node.ErrUnknownMember), rpctypes.ErrGRPCMemberNotFound, false},
		{"forward to a leader that says no leader", forwardError(rpctypes.ErrGRPCNoLeader), rpctypes.ErrGRPCNoLeader, true},
		{"forward never connected", forwardError(status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: connection refused"`)), rpctypes.ErrGRPCNoLeader, true},
		{"forward cut in flight", forwardError(status.Error(codes.Unavailable, "error reading from server: EOF")), rpctypes.ErrGRPCTimeoutDueToLeaderFail, false},
		{"forward's connection closed", forwardError(status.Error(codes.Canceled, "grpc: the client connection is closing")), rpctypes.ErrGRPCTimeoutDueToLeaderFail, false},
		{"forward past its deadline", forwardError(status.Error(codes.DeadlineExceeded, "context deadline exceeded")), rpctypes.ErrGRPCTimeoutDueToLeaderFail, false},
	} {
		if !errors.Is(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
		if retryable(c.got) != c.retry {
			t.Errorf("%s: retryable %v, want %v", c.name, retryable(c.got), c.retry)
		}
	}
}
