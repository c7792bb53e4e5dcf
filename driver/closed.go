package driver

import "time"

// ClosedPromiseTicks is the smallest raft.Config.ClosedPromiseTicks that
// keeps lease reads safe with ticks of the given interval, a lease of
// leaseTicks, and the given TickSlack: the number of ticks a voter told
// its connection to the leader closed still refuses votes after the tick
// at which it last answered the leader (raft/closed.go), and a restarted
// voter refuses them after its start.
//
// The leader's side: a lease read is answered only while the lease rests
// on a round sent at most leaseTicks ticks ago and LeaseTrusted holds: the
// tick in which that round was sent was counted, by the clock, at most
// leaseTicks intervals plus the slack ago, and the round left after it. So
// the lease ends at most leaseTicks*tick + slack after the send, by the
// clock, whatever ticks were late or lost.
//
// The voter's side: it answered the heartbeat at some moment x no earlier
// than the send, while its core counted tick r; it refuses until its core
// counts tick r+k. Ticks are counted one at a time by the goroutine that
// answered, so tick r+1 is counted after x, however late. A ticker holds
// at most one tick pending and drops the ones due meanwhile, so tick r+2
// was sent after tick r+1 was taken, after x. Its ticks fall due on a
// grid an interval apart, but its timer may run late (a busy scheduler);
// a tick it sends late dates the next at the grid's next point, which may
// come at once. So tick r+2 can be a late one and tick r+3 follow it
// within moments of the answer (seen with GODEBUG=asynctimerchan=1 and one
// CPU: a run loop busy for nearly two intervals before answering); tick
// r+3 falls due after x, and each later one at least an interval after
// the one before fell due: tick r+k comes more than (k-3) intervals after
// x. A late tick only makes the rest later. A start counts as the tick of
// every answer given before it.
//
// So (k-3)*tick >= leaseTicks*tick + slack, with one tick more for the two
// clocks' rate difference (parts per million over well under a second):
// k = leaseTicks + 4 + ceil(slack/tick).
func ClosedPromiseTicks(leaseTicks int, tick, slack time.Duration) int {
	slackTicks := int((slack + tick - 1) / tick)
	return leaseTicks + 4 + slackTicks
}
