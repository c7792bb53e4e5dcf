package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// Config holds everything a core needs. The zero value of every limit
// selects the named default.
type Config struct {
	// ID is this server's id; it must not be zero.
	ID pb.NodeID
	// Storage is the durable log. It must not be nil.
	Storage Storage
	// Applied is the index the state machine has already applied (for
	// example from its own snapshot) so that restart does not apply twice.
	Applied pb.Index

	// ElectionTicks is the minimum election timeout; each election timeout
	// is drawn from [ElectionTicks, 2*ElectionTicks). Default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval. Default 1. It must be
	// smaller than ElectionTicks.
	HeartbeatTicks int
	// Seed seeds the election-timeout jitter; with the same seed and the
	// same inputs the core produces the same outputs.
	Seed uint64

	// MaxMsgBytes bounds the entry payload of one AppendEntries. Default 1 MiB.
	MaxMsgBytes uint64
	// MaxInflightMsgs bounds the pipelined AppendEntries per follower.
	// Default 256.
	MaxInflightMsgs int
	// MaxInflightBytes bounds the bytes in flight per follower. Default 32 MiB.
	MaxInflightBytes uint64
	// MaxUncommittedBytes bounds the payload the leader has appended but not
	// yet committed; a proposal past it fails with ErrProposalDropped.
	// Default 64 MiB.
	MaxUncommittedBytes uint64
	// MaxApplyBytes bounds the committed entries handed out in one Ready.
	// Default 16 MiB.
	MaxApplyBytes uint64
	// MaxLearnerLag is how far behind the leader's last index a learner may
	// be and still be promoted. Default 1000 entries.
	MaxLearnerLag pb.Index

	// LeaseTicks is how long, counted on the leader from its send, an
	// answered heartbeat round backs the leader's read lease. Default (and
	// at most) ElectionTicks/2: a voter refuses votes for ElectionTicks
	// after the heartbeat it answered, and the other half is room for
	// the clocks' disagreement.
	LeaseTicks int
	// ClosedPromiseTicks, when not zero, lets a follower that the runtime
	// tells its connection to the leader was closed or refused
	// (ReportClosed) cut its refusal of votes to this many ticks after the
	// last message it answered the leader, and campaign then (closed.go).
	// Lease reads stay safe only if these ticks of any voter outlast
	// LeaseTicks of the leader's however the clocks and the runtime's tick
	// delays disagree; the runtime chooses it (driver.ClosedPromiseTicks).
	// It must exceed LeaseTicks and not exceed ElectionTicks. Default 0:
	// the report is ignored.
	ClosedPromiseTicks int

	// DisablePreVote turns off the PreVote phase (dissertation §9.6).
	DisablePreVote bool
	// DisableCheckQuorum turns off CheckQuorum and the vote lease that
	// protects against disruptive servers (§6, §9.6).
	DisableCheckQuorum bool
}

// Named defaults.
const (
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultMaxMsgBytes         = 1 << 20
	DefaultMaxInflightMsgs     = 256
	DefaultMaxInflightBytes    = 32 << 20
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultMaxApplyBytes       = 16 << 20
	DefaultMaxLearnerLag       = 1000
)

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if d.ID == pb.None {
		return d, errors.New("raft: config: ID must not be 0")
	}
	if d.Storage == nil {
		return d, errors.New("raft: config: Storage must be set")
	}
	setDefault(&d.ElectionTicks, DefaultElectionTicks)
	setDefault(&d.HeartbeatTicks, DefaultHeartbeatTicks)
	setDefault(&d.MaxMsgBytes, DefaultMaxMsgBytes)
	setDefault(&d.MaxInflightMsgs, DefaultMaxInflightMsgs)
	setDefault(&d.MaxInflightBytes, DefaultMaxInflightBytes)
	setDefault(&d.MaxUncommittedBytes, DefaultMaxUncommittedBytes)
	setDefault(&d.MaxApplyBytes, DefaultMaxApplyBytes)
	setDefault(&d.MaxLearnerLag, DefaultMaxLearnerLag)
	if d.HeartbeatTicks >= d.ElectionTicks {
		return d, fmt.Errorf("raft: config: heartbeat ticks %d must be below election ticks %d",
			d.HeartbeatTicks, d.ElectionTicks)
	}
	setDefault(&d.LeaseTicks, d.ElectionTicks/2)
	if d.LeaseTicks < 1 || d.LeaseTicks > d.ElectionTicks/2 {
		return d, fmt.Errorf("raft: config: lease ticks %d must be in [1, election ticks/2 = %d]",
			d.LeaseTicks, d.ElectionTicks/2)
	}
	if d.ClosedPromiseTicks != 0 && (d.ClosedPromiseTicks <= d.LeaseTicks || d.ClosedPromiseTicks > d.ElectionTicks) {
		return d, fmt.Errorf("raft: config: closed-promise ticks %d must be above lease ticks %d and at most election ticks %d",
			d.ClosedPromiseTicks, d.LeaseTicks, d.ElectionTicks)
	}
	return d, nil
}

func setDefault[T int | uint64 | pb.Index](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
