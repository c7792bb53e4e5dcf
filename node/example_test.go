package node_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Counter is a replicated counter: each command adds its value.
type Counter struct{ n uint64 }

func (c *Counter) Apply(_ pb.Index, cmd []byte) any {
	c.n += binary.BigEndian.Uint64(cmd)
	return c.n
}

func (c *Counter) Snapshot() (io.WriterTo, error) { return counterImage(c.n), nil }

func (c *Counter) Restore(r io.Reader) error { return binary.Read(r, binary.BigEndian, &c.n) }

type counterImage uint64

func (v counterImage) WriteTo(w io.Writer) (int64, error) {
	return 8, binary.Write(w, binary.BigEndian, uint64(v))
}

// Example runs a one-member cluster and increments a replicated counter.
func Example() {
	dir, _ := os.MkdirTemp("", "counter")
	defer os.RemoveAll(dir)
	log, snaps, _ := node.OpenStorage(vfs.OS(), dir)
	peers, _ := net.Listen("tcp", "127.0.0.1:0")
	n, err := node.New(node.Config{
		ID: 1, FSM: &Counter{}, Log: log, Snapshots: snaps, PeerListener: peers,
		Bootstrap: []node.Member{{ID: 1, PeerAddr: peers.Addr().String()}},
	})
	if err != nil {
		panic(err)
	}
	if err := n.Start(); err != nil {
		panic(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, v := range []uint64{1, 2, 3} {
		for { // wait for the member to elect itself
			res, err := n.Propose(ctx, binary.BigEndian.AppendUint64(nil, v))
			if err == nil {
				fmt.Println("counter is", res)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Output:
	// counter is 1
	// counter is 3
	// counter is 6
}
