package tracker

import "fmt"

// CheckInvariants reports the first documented invariant of the progress
// that does not hold, naming the values: Match < Next; in StateSnapshot a
// snapshot is pending; messages are in flight only while replicating, each
// past Match and before Next, in send order, within the window's bounds.
// It is for tests and the simulator; the leader never needs it.
func (p *Progress) CheckInvariants() error {
	if p.Match >= p.Next {
		return fmt.Errorf("progress %s: match %d not below next %d", p, p.Match, p.Next)
	}
	if p.State > StateSnapshot {
		return fmt.Errorf("progress: unknown state %d", p.State)
	}
	if p.State == StateSnapshot && p.PendingSnapshot == 0 {
		return fmt.Errorf("progress %s: snapshot state with no pending snapshot", p)
	}
	in := p.Inflights
	if err := in.checkInvariants(); err != nil {
		return fmt.Errorf("progress %s: %w", p, err)
	}
	if in.count > 0 && p.State != StateReplicate {
		return fmt.Errorf("progress %s: %d messages in flight in state %s", p, in.count, p.State)
	}
	if in.count > 0 {
		first, last := in.buf[in.start].last, in.buf[(in.start+in.count-1)%len(in.buf)].last
		if first <= p.Match {
			return fmt.Errorf("progress %s: message ending at %d still in flight after match %d", p, first, p.Match)
		}
		if last >= p.Next {
			return fmt.Errorf("progress %s: message ending at %d in flight at or past next %d", p, last, p.Next)
		}
	}
	return nil
}

// checkInvariants: count within the bound and the ring, bytes the sum of
// the messages', last indexes strictly ascending in send order.
func (in *Inflights) checkInvariants() error {
	if in.count < 0 || in.count > in.maxCount || in.count > len(in.buf) {
		return fmt.Errorf("inflights: count %d outside [0, min(max %d, ring %d)]", in.count, in.maxCount, len(in.buf))
	}
	var bytes uint64
	for i := 0; i < in.count; i++ {
		f := in.buf[(in.start+i)%len(in.buf)]
		bytes += f.bytes
		if i > 0 {
			if prev := in.buf[(in.start+i-1)%len(in.buf)].last; prev >= f.last {
				return fmt.Errorf("inflights: message %d ends at %d, not after the previous one at %d", i, f.last, prev)
			}
		}
	}
	if bytes != in.bytes {
		return fmt.Errorf("inflights: %d bytes counted, messages hold %d", in.bytes, bytes)
	}
	return nil
}
