//go:build mutation

package raft

import "sync/atomic"

// active is the mutation in force, process-wide: set it before starting
// cores (the simulator runs seeds on several goroutines).
var active atomic.Int64

// SetMutation puts m in force for every core in the process (MutationNone
// restores the correct core). It exists only in builds with the mutation
// tag.
func SetMutation(m Mutation) { active.Store(int64(m)) }

func mutated(m Mutation) bool { return Mutation(active.Load()) == m }
