package sim

import pb "github.com/raftkv/raftkv/raftpb"

// entryHash is a digest of what an entry says (its type and payload); with
// the index and term it identifies the entry for the checkers.
func entryHash(e *pb.Entry) uint64 {
	h := uint64(14695981039346656037) // FNV-1a offset basis
	h = (h ^ uint64(e.Type)) * 1099511628211
	for _, b := range e.Data {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

// chainHash extends the digest of a log prefix by one entry. Two logs whose
// chain hashes agree at an index hold the same entries up to it (with
// overwhelming probability), which lets Log Matching and State Machine
// Safety compare whole prefixes in constant time.
func chainHash(prev uint64, term pb.Term, eh uint64) uint64 {
	return mix64(prev ^ mix64(uint64(term)*0x9e3779b97f4a7c15^eh))
}

// mix64 is the splitmix64 finaliser: a cheap bijective scrambler.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
