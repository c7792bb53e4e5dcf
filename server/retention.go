package server

import (
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
)

// Time-based history retention (Config.HistoryRetention): the leader notes
// the store revision as time passes and, once a revision is older than the
// retention on its clock, proposes a compaction to it through the log, so
// that every member compacts at the same revision. (Retention by a number
// of revisions needs no clock and happens inside Apply: kv.Config.)

// retentionSamplesMax bounds the (time, revision) samples kept; when full,
// every other one is dropped, which only makes compaction coarser.
const retentionSamplesMax = 1024

type revisionSample struct {
	at  time.Time
	rev int64
}

func (s *Server) retentionLoop() {
	defer s.bg.Done()
	keep := s.cfg.HistoryRetention
	tick := min(max(keep/10, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(tick)
	defer t.Stop()
	var samples []revisionSample
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		if _, _, role := s.node.Leader(); role != raft.Leader {
			samples = samples[:0] // a new leader measures afresh: it keeps more, never less
			continue
		}
		now := time.Now()
		rev, compacted := s.store.Revision()
		samples = append(samples, revisionSample{at: now, rev: rev})
		if len(samples) > retentionSamplesMax {
			half := samples[:0]
			for i := 0; i < len(samples); i += 2 {
				half = append(half, samples[i])
			}
			samples = half
		}
		// The newest sample at least keep old: history before it is due.
		var due int64
		n := 0
		for i, sm := range samples {
			if now.Sub(sm.at) >= keep {
				due, n = sm.rev, i
			}
		}
		samples = samples[n:]
		if due > compacted {
			if _, err := s.proposeLease(kv.Command{Op: kv.OpCompact, Rev: due}); err != nil {
				s.log.Debug("history retention: compaction", "revision", due, "err", err)
			}
		}
	}
}
