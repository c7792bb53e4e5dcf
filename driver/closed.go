package driver

import "time"

// ClosedPromiseTicks is the smallest raft.Config.ClosedPromiseTicks that
// keeps lease reads safe with ticks of the given interval, a lease of
// leaseTicks, and the given TickSlack: the number of ticks a voter told
// its connection to the leader closed still refuses votes after the last
// message it answered the leader (raft/closed.go).
//
// The leader's side: a lease read is answered only while the lease rests
// on a round sent at most leaseTicks ticks ago and LeaseTrusted holds, so
// the last leaseTicks ticks took at most leaseTicks intervals plus the
// slack: the lease ends at most L = leaseTicks*tick + slack after the send,
// by the clock, whatever ticks were late or lost.
//
// The voter's side: it answered the heartbeat at some moment x no earlier
// than the send, while its core counted tick r; it refuses until its core
// counts tick r+k. Tick r was counted at most one interval plus the slack
// before x: a longer gap is a late tick, after which ReportClosed is
// ignored for an election timeout (and if tick r+1 has not come by the
// time the signal arrives, that wait is a gap already). Each tick after r
// is counted at least one interval after the previous one was due, so
// tick r+k comes at least (k-1) intervals after tick r was counted: the
// refusal lasts at least (k-1)*tick - (tick + slack) after x. Late voter
// ticks only lengthen it.
//
// So (k-2)*tick - slack >= leaseTicks*tick + slack, with one tick more for
// the two clocks' rate difference (parts per million over well under a
// second): k = leaseTicks + 3 + ceil(2*slack/tick).
func ClosedPromiseTicks(leaseTicks int, tick, slack time.Duration) int {
	slackTicks := int((2*slack + tick - 1) / tick)
	return leaseTicks + 3 + slackTicks
}
