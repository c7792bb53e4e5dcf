package tracker

import pb "github.com/raftkv/raftkv/raftpb"

// Inflights is the window of AppendEntries sent to one follower and not yet
// acknowledged, bounded both by count and by bytes so that a slow follower
// costs the leader bounded memory and bandwidth.
type Inflights struct {
	start, count int
	bytes        uint64
	maxCount     int
	maxBytes     uint64 // 0: no byte limit
	buf          []inflight
}

type inflight struct {
	last  pb.Index // last index carried by the message
	bytes uint64
}

// NewInflights returns a window of at most maxCount messages and maxBytes
// bytes (0 = unlimited bytes).
func NewInflights(maxCount int, maxBytes uint64) *Inflights {
	if maxCount < 1 {
		maxCount = 1
	}
	return &Inflights{maxCount: maxCount, maxBytes: maxBytes}
}

// Add records a message whose last index is last.
func (in *Inflights) Add(last pb.Index, bytes uint64) {
	if in.Full() {
		panic("tracker: add to a full inflight window")
	}
	if in.buf == nil || in.count == len(in.buf) {
		in.grow()
	}
	in.buf[(in.start+in.count)%len(in.buf)] = inflight{last: last, bytes: bytes}
	in.count++
	in.bytes += bytes
}

// grow doubles the ring up to maxCount; most followers never need it all.
func (in *Inflights) grow() {
	n := max(4, 2*len(in.buf))
	n = min(n, in.maxCount)
	nb := make([]inflight, n)
	for i := 0; i < in.count; i++ {
		nb[i] = in.buf[(in.start+i)%len(in.buf)]
	}
	in.buf, in.start = nb, 0
}

// FreeLE frees every message whose last index is <= to.
func (in *Inflights) FreeLE(to pb.Index) {
	for in.count > 0 {
		f := in.buf[in.start]
		if f.last > to {
			break
		}
		in.bytes -= f.bytes
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
	if in.count == 0 {
		in.start = 0
	}
}

// Full reports whether no more messages may be sent.
func (in *Inflights) Full() bool {
	return in.count >= in.maxCount || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

// Count is the number of messages in flight.
func (in *Inflights) Count() int { return in.count }

// Bytes is the number of bytes in flight.
func (in *Inflights) Bytes() uint64 { return in.bytes }

// Reset empties the window.
func (in *Inflights) Reset() { in.start, in.count, in.bytes = 0, 0, 0 }
