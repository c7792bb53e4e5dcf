//go:build !mutation

package raft

// mutated reports whether mutation m is in force: never, outside builds
// with the mutation tag.
func mutated(Mutation) bool { return false }
