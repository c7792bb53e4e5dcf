package sim

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// The coordination part of the kv workload: transactions with compares on
// revisions, ranges at past revisions, deletes of ranges, compactions, and
// leases granted, attached to keys, kept alive (a checkpoint that resets
// the remaining TTL) and expired (a revoke), as the server proposes them.

// simLeases is the lease id space: small, so that grants collide and
// puts name leases that exist and leases that do not.
const simLeases = 4

// kvRevision is the newest store revision of any replica, for commands
// that name revisions near the present.
func (s *Sim) kvRevision() int64 {
	var rev int64 = 1
	for _, r := range s.reps {
		if r.sm.kv != nil {
			if v, _ := r.sm.kv.Revision(); v > rev {
				rev = v
			}
		}
	}
	return rev
}

func (s *Sim) simKey() string { return "k" + strconv.Itoa(s.rng.IntN(kvKeys)) }

// coordCommand encodes client command id as a coordination command.
func (s *Sim) coordCommand(id uint64, pad int) []byte {
	rev := s.kvRevision()
	c := kv.Command{IdempotencyKey: strconv.FormatUint(id, 10)}
	switch x := s.rng.IntN(10); {
	case x < 6:
		c.Op, c.Txn = kv.OpTxn, s.simTxn(id, pad, rev)
	case x < 7:
		c.Op, c.Rev = kv.OpCompact, max(1, rev-int64(s.rng.IntN(32)))
	case x < 8:
		c.Op, c.Lease, c.TTL = kv.OpLeaseGrant, int64(1+s.rng.IntN(simLeases)), int64(1+s.rng.IntN(30))
	case x < 9:
		c.Op, c.Lease = kv.OpLeaseRevoke, int64(1+s.rng.IntN(simLeases)) // expiry
	default:
		c.Op, c.Checkpoints = kv.OpLeaseCheckpoint, []kv.LeaseCheckpoint{{ID: int64(1 + s.rng.IntN(simLeases)), Remaining: int64(s.rng.IntN(10))}}
	}
	return kv.EncodeCommand(c)
}

func (s *Sim) simTxn(id uint64, pad int, rev int64) *kv.Txn {
	t := &kv.Txn{}
	for range s.rng.IntN(3) {
		t.Compares = append(t.Compares, kv.Compare{Key: s.simKey(), Target: kv.CompareTarget(1 + s.rng.IntN(3)),
			Op: kv.CompareOp(s.rng.IntN(4)), Number: max(0, rev-int64(s.rng.IntN(8)))})
	}
	branch := func() []kv.TxnOp {
		var ops []kv.TxnOp
		put := map[string]bool{}
		deleted := false
		for range 1 + s.rng.IntN(3) {
			switch k := s.simKey(); s.rng.IntN(4) {
			case 0, 1:
				if put[k] || deleted {
					continue
				}
				put[k] = true
				v := make([]byte, pad)
				for i := range v {
					v[i] = byte(id) + byte(i)
				}
				var lease int64
				if s.rng.IntN(3) == 0 {
					lease = int64(1 + s.rng.IntN(simLeases))
				}
				ops = append(ops, kv.TxnOp{Kind: kv.OpKindPut, Key: k, Value: v, Lease: lease, PrevKV: true})
			case 2:
				ops = append(ops, kv.TxnOp{Kind: kv.OpKindRange, Key: "k", End: "l",
					Range: kv.RangeOptions{Revision: max(0, rev-int64(s.rng.IntN(40))), Limit: int64(s.rng.IntN(4))}})
			default:
				if len(put) == 0 {
					deleted = true
					ops = append(ops, kv.TxnOp{Kind: kv.OpKindDelete, Key: k, End: k + "\xff", PrevKV: true})
				}
			}
		}
		return ops
	}
	t.Success, t.Failure = branch(), branch()
	return t
}

// watchState is a replica's watcher on every key, fed by its own store:
// it must see every revision, in order, once, each event as the store's
// history has it; a snapshot install cancels it and it resumes from
// history, or from the compacted revision if that is gone.
type watchState struct {
	w    *kv.Watcher
	next int64 // the next revision the watcher must deliver; 0 before the first watch
	// resumes counts the watches started again after a cancel.
	resumes int64
}

// checkWatch drains the replica's watcher after an apply and holds what it
// delivered to the store's history.
func (sm *stateMachine) checkWatch() error {
	if sm.kv == nil {
		return nil
	}
	for {
		if sm.watch.w == nil {
			start := max(sm.watch.next, 1)
			w, err := sm.kv.Watch("\x00", "\x00", start, 0)
			var ce *kv.CompactedError
			if errors.As(err, &ce) {
				sm.watch.next = ce.Compacted // a snapshot skipped what history no longer has
				continue
			}
			if err != nil {
				return fmt.Errorf("watch from %d: %w", start, err)
			}
			sm.watch.w, sm.watch.next = w, max(start, 2) // revision 1 is the empty store
		}
		b, ok, err := sm.watch.w.Poll()
		if errors.Is(err, kv.ErrWatchCanceled) {
			sm.watch.w = nil // installed a snapshot: resume from history
			sm.watch.resumes++
			continue
		}
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			sm.watch.w, sm.watch.next = nil, ce.Compacted
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if err := sm.checkBatch(b); err != nil {
			return err
		}
	}
}

func (sm *stateMachine) checkBatch(b kv.WatchBatch) error {
	for i, e := range b.Events {
		rev := e.KV.ModRevision
		switch {
		case i > 0 && rev == b.Events[i-1].KV.ModRevision:
		case rev != sm.watch.next:
			return fmt.Errorf("watch: event of %q at revision %d, the next revision due is %d", e.KV.Key, rev, sm.watch.next)
		default:
			sm.watch.next = rev + 1
		}
		got, err := sm.kv.Range(e.KV.Key, "", kv.RangeOptions{Revision: rev})
		if err != nil {
			return fmt.Errorf("watch: reading %q at %d: %w", e.KV.Key, rev, err)
		}
		switch {
		case e.Type == kv.EventPut && (len(got.KVs) != 1 || fmt.Sprint(got.KVs[0]) != fmt.Sprint(e.KV)):
			return fmt.Errorf("watch: put event %+v, history at %d has %+v", e.KV, rev, got.KVs)
		case e.Type == kv.EventDelete && len(got.KVs) != 0:
			return fmt.Errorf("watch: delete event of %q at %d, history has %+v", e.KV.Key, rev, got.KVs)
		}
	}
	if b.Revision+1 > sm.watch.next {
		sm.watch.next = b.Revision + 1
	}
	return nil
}
