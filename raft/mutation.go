package raft

// Mutation names a deliberate bug the core can be built with, to show that
// the checkers (the simulator's, the harness's) catch it: a checker that
// has never failed has not been shown to work. Mutations take effect only
// in builds with the mutation tag (SetMutation exists only there); in
// every other build mutated is a constant false and the checks compile
// away.
type Mutation int

// The mutations, each the opposite of a rule the core keeps.
const (
	// MutationNone is the correct core.
	MutationNone Mutation = iota
	// MutationCommitOlderTerm commits by counting replicas of an entry of
	// an earlier term (§5.4.2, Figure 8).
	MutationCommitOlderTerm
	// MutationDoubleVote grants a second vote in a term already voted in
	// (§5.2).
	MutationDoubleVote
	// MutationSendBeforePersist sends every message at once, including
	// those that promise durable state (Figure 2: votes, terms, and
	// acknowledgements of entries before they are synced).
	MutationSendBeforePersist
	// MutationSkipLogMatching accepts entries after a prevLogIndex whose
	// term does not match (§5.3, the AppendEntries consistency check).
	MutationSkipLogMatching
	// MutationApplyTwice hands the last entry handed out for applying out
	// again with the next ones.
	MutationApplyTwice
	// MutationLeaseWithoutLease answers lease reads whether or not a quorum
	// answered recently (§6.4.1).
	MutationLeaseWithoutLease
	// MutationRestartForgetsLease lets a voter that just started grant
	// (pre)votes at once, though an answer it gave before may still back a
	// leader's lease (§6.4.1).
	MutationRestartForgetsLease
	// MutationLeaseFromArrival times the read lease from when a heartbeat
	// answer arrives instead of from when the round it answers was sent
	// (§6.4.1): a late answer then backs the lease past the voter's refusal.
	MutationLeaseFromArrival
	// MutationClosedDropsPromise lets a follower told its connection to
	// the leader closed grant votes at once, as if the signal proved the
	// leader dead, though its answers may still back the leader's lease.
	MutationClosedDropsPromise
)

// Mutations lists every mutation but MutationNone.
var Mutations = []Mutation{
	MutationCommitOlderTerm, MutationDoubleVote, MutationSendBeforePersist, MutationSkipLogMatching,
	MutationApplyTwice, MutationLeaseWithoutLease, MutationRestartForgetsLease, MutationLeaseFromArrival,
	MutationClosedDropsPromise,
}

func (m Mutation) String() string {
	switch m {
	case MutationNone:
		return "none"
	case MutationCommitOlderTerm:
		return "commit-older-term"
	case MutationDoubleVote:
		return "double-vote"
	case MutationSendBeforePersist:
		return "send-before-persist"
	case MutationSkipLogMatching:
		return "skip-log-matching"
	case MutationApplyTwice:
		return "apply-twice"
	case MutationLeaseWithoutLease:
		return "lease-without-lease"
	case MutationRestartForgetsLease:
		return "restart-forgets-lease"
	case MutationLeaseFromArrival:
		return "lease-from-arrival"
	case MutationClosedDropsPromise:
		return "closed-drops-promise"
	}
	return "unknown"
}
