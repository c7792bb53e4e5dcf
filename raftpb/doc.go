// Package raftpb defines the values Raft servers exchange and persist:
// entries, messages, hard state, configurations and snapshot metadata, with
// a versioned binary codec.
//
// Ids, terms and indexes have their own types (NodeID, Term, Index) so that
// the compiler catches a term passed where an index was meant.
//
// Decoders never panic and never allocate more than the input justifies; a
// malformed input returns an error wrapping ErrCorrupt. Values here are plain
// data and carry no synchronisation.
package raftpb
