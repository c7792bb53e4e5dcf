package sim

// The core's own invariants (raft.(*Raft).CheckInvariants: Progress
// Match < Next, applied <= applying <= committed <= lastIndex, the
// configuration history, the leader's own progress, ...), checked after
// every Step, Tick and Advance: drain runs after each of them and checks
// before every Ready and once it has none left. A core that stopped on a
// failed storage read (raft.ErrStorageFailed) is a failure too: the
// simulated disks fail on writes, never on reads.
func (s *Sim) checkCore(r *replica) bool {
	if err := r.core.Err(); err != nil {
		s.failf("replica %d: core stopped: %v", r.id, err)
		return false
	}
	if err := r.core.CheckInvariants(); err != nil {
		s.failf("replica %d: %v", r.id, err)
		return false
	}
	return true
}
