package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// TestNoSpaceRefusesProposals fills a one-member cluster's disk with
// 64 KiB commands: once the next log segment cannot be prepared, the
// member takes what fits in the current one, then refuses proposals with
// ErrNoSpace (never an unknown outcome, never a stop); every command it
// accepted is applied; and once space is back it takes proposals again.
func TestNoSpaceRefusesProposals(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	c := newTClusterWith(t, 1, 0, func(c *tcluster) {
		c.members[1].fs = fs
		// A slow fsync on a loaded machine must not pass for a stalled
		// disk (checkDiskStall): this test is about space.
		c.tweak = func(cfg *node.Config) { cfg.ElectionTimeout = 2 * time.Second }
	})
	n := c.members[1].n
	c.leader()
	// The first segment and its prepared successor exist; one more
	// mebibyte leaves no room for the segment after.
	fs.SetCapacity(fs.Used() + 1<<20)
	data := make([]byte, 64<<10)
	data[7] = 1 // the counter adds 1 per command
	var applied, maybe uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("no proposal refused")
		}
		_, err := n.Propose(ctx, data)
		if errors.Is(err, node.ErrNoSpace) {
			break
		}
		var nl *node.NotLeaderError
		switch {
		case errors.Is(err, node.ErrUnknownOutcome):
			// Leadership lost while it was in flight (a stall on a loaded
			// machine): not about space.
			maybe++
		case errors.As(err, &nl), errors.Is(err, node.ErrTransferring):
			time.Sleep(10 * time.Millisecond) // not applied; the member leads again soon
		case err != nil:
			t.Fatalf("proposal %d: %v, want a result or ErrNoSpace", i, err)
		default:
			applied++
		}
	}
	if n.SpaceOK() {
		t.Fatal("a proposal was refused for space while SpaceOK")
	}
	if applied+maybe < 100 {
		t.Fatalf("only %d proposals taken: the member stopped early", applied)
	}
	if refused, _ := n.SpaceCounters(); refused == 0 {
		t.Fatal("SpaceCounters counts no refusal")
	}
	if err := n.Err(); err != nil {
		t.Fatalf("node stopped: %v", err)
	}
	if _, err := n.Propose(ctx, data); !errors.Is(err, node.ErrNoSpace) {
		t.Fatalf("second proposal on a full disk: %v, want ErrNoSpace", err)
	}
	if sum, _ := c.members[1].fsm.get(); sum < applied || sum > applied+maybe {
		t.Fatalf("sum %d, want %d to %d (every accepted command applied once)", sum, applied, applied+maybe)
	}
	// Small changes of the configuration still go through (the alarm).
	if err := n.SetAlarm(ctx, 1, node.AlarmNoSpace, node.AlarmCauseDisk); err != nil {
		t.Fatalf("raising the alarm on a full disk: %v", err)
	}
	if a, _ := n.Alarms(); len(a) != 1 || a[0].ID != pb.NodeID(1) || a[0].AlarmCause != node.AlarmCauseDisk {
		t.Fatalf("alarms %+v", a)
	}

	fs.SetCapacity(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.Propose(ctx, data)
		if err == nil {
			break
		}
		if !errors.Is(err, node.ErrNoSpace) || time.Now().After(deadline) {
			t.Fatalf("after space came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !n.SpaceOK() {
		t.Fatal("SpaceOK false after a proposal was taken again")
	}
}
