package sim

import "testing"

// TestCoordinationWorkloadIsExercised shows the kv workload reaches what
// it is meant to test: revisions advance, history is compacted, leases
// exist, and watchers resumed from history after a snapshot install.
func TestCoordinationWorkloadIsExercised(t *testing.T) {
	var revs, compacted, leases, resumed int64
	for seed := range uint64(20) {
		s := New(Options{Seed: seed, FSM: FSMKV})
		if res := s.Run(); res.Err != nil {
			t.Fatalf("seed %d: %v", seed, res.Err)
		}
		for _, r := range s.reps {
			if r.sm.kv == nil {
				continue
			}
			rev, c := r.sm.kv.Revision()
			revs, compacted = max(revs, rev), max(compacted, c)
			leases += int64(len(r.sm.kv.Leases()))
			resumed += r.sm.watch.resumes
		}
	}
	if revs < 50 || compacted == 0 || leases == 0 || resumed == 0 {
		t.Fatalf("max revision %d, max compacted %d, leases %d, watch resumes %d: some part of the workload never ran",
			revs, compacted, leases, resumed)
	}
	t.Logf("max revision %d, max compacted %d, leases %d, watch resumes %d", revs, compacted, leases, resumed)
}
