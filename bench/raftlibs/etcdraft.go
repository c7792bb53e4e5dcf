package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// etcdMember is one etcd-io/raft node with the program around it that the
// library leaves to its user: a log file, a transport and an apply loop.
type etcdMember struct {
	id      uint64
	node    raft.Node
	storage *raft.MemoryStorage
	wal     *os.File
	ln      net.Listener
	peers   map[uint64]chan *raftpb.Message // outgoing queue per peer
	addrs   map[uint64]string
	waiters *sync.Map // proposal id -> chan error, resolved when applied here
	stopc   chan struct{}
	wg      sync.WaitGroup
}

type etcdCluster struct {
	members []*etcdMember
	nextID  atomic.Uint64
	leader  atomic.Pointer[etcdMember] // last member found leading
}

// peerQueueLen bounds each peer's outgoing queue; a full queue drops the
// message, and Raft retransmits.
const peerQueueLen = 4096

func startEtcd(dir string) (cluster, error) {
	raft.SetLogger(discardLogger{})
	c := &etcdCluster{}
	addrs := map[uint64]string{}
	var lns []net.Listener
	for i := uint64(1); i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs[i] = ln.Addr().String()
	}
	peers := []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}
	for i := uint64(1); i <= 3; i++ {
		wal, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("wal-%d", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			c.stop()
			return nil, err
		}
		storage := raft.NewMemoryStorage()
		m := &etcdMember{id: i, storage: storage, wal: wal, ln: lns[i-1], addrs: addrs,
			peers: map[uint64]chan *raftpb.Message{}, waiters: &sync.Map{}, stopc: make(chan struct{})}
		// The timing of raftkv's node in this workload: a 50 ms tick, a
		// 1 s election timeout, heartbeats every 100 ms.
		m.node = raft.StartNode(&raft.Config{
			ID: i, ElectionTick: 20, HeartbeatTick: 2, Storage: storage,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, MaxUncommittedEntriesSize: 1 << 30,
			CheckQuorum: true, PreVote: true,
		}, peers)
		for id := range addrs {
			if id != i {
				m.peers[id] = make(chan *raftpb.Message, peerQueueLen)
			}
		}
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.wg.Add(2 + len(m.peers))
		go m.run()
		go m.accept()
		for id, q := range m.peers {
			go m.sendLoop(id, q)
		}
	}
	return c, nil
}

// run is the Ready loop of etcd-io/raft's documentation.
func (m *etcdMember) run() {
	defer m.wg.Done()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stopc:
			return
		case <-tick.C:
			m.node.Tick()
		case rd := <-m.node.Ready():
			if err := m.persist(rd); err != nil {
				panic(fmt.Sprintf("etcd member %d: %v", m.id, err))
			}
			for _, msg := range rd.Messages {
				select {
				case m.peers[msg.GetTo()] <- msg:
				default: // queue full: dropped, Raft retransmits
				}
			}
			m.apply(rd.CommittedEntries)
			m.node.Advance()
		}
	}
}

// persist appends the Ready's entries and hard state to the log file,
// fdatasyncs it when the Ready says so, then makes them readable.
func (m *etcdMember) persist(rd raft.Ready) error {
	var buf []byte
	for _, e := range rd.Entries {
		b, err := proto.Marshal(e)
		if err != nil {
			return err
		}
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		b, err := proto.Marshal(rd.HardState)
		if err != nil {
			return err
		}
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	if len(buf) > 0 {
		if _, err := m.wal.Write(buf); err != nil {
			return err
		}
		if rd.MustSync {
			if err := syscall.Fdatasync(int(m.wal.Fd())); err != nil {
				return err
			}
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := m.storage.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	return m.storage.Append(rd.Entries)
}

func (m *etcdMember) apply(ents []*raftpb.Entry) {
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				panic(err)
			}
			m.node.ApplyConfChange(&cc)
		case raftpb.EntryNormal:
			if len(e.GetData()) < 8 {
				continue
			}
			id := binary.BigEndian.Uint64(e.GetData())
			if w, ok := m.waiters.LoadAndDelete(id); ok {
				close(w.(chan struct{}))
			}
		}
	}
}

func (m *etcdMember) accept() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		go m.receive(conn)
	}
}

func (m *etcdMember) receive(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil || n > 64<<20 {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		msg := &raftpb.Message{}
		if err := proto.Unmarshal(b, msg); err != nil {
			return
		}
		if err := m.node.Step(context.Background(), msg); err != nil && !errors.Is(err, raft.ErrStopped) {
			return
		}
	}
}

// sendLoop streams the queued messages to one peer, redialling when the
// connection breaks; what fails to send is dropped.
func (m *etcdMember) sendLoop(to uint64, q chan *raftpb.Message) {
	defer m.wg.Done()
	var conn net.Conn
	var bw *bufio.Writer
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var msg *raftpb.Message
		select {
		case <-m.stopc:
			return
		case msg = <-q:
		}
		if conn == nil {
			c, err := net.Dial("tcp", m.addrs[to])
			if err != nil {
				continue
			}
			conn, bw = c, bufio.NewWriterSize(c, 64<<10)
		}
		err := writeMsg(bw, msg)
		// Batch what else is queued into the same write.
		for more := true; more && err == nil; {
			select {
			case next := <-q:
				err = writeMsg(bw, next)
			default:
				more = false
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			conn.Close()
			conn = nil
		}
	}
}

func writeMsg(w *bufio.Writer, msg *raftpb.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	if _, err := w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(b)))]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (c *etcdCluster) propose(ctx context.Context, cmd []byte) error {
	data := make([]byte, len(cmd))
	copy(data, cmd)
	id := c.nextID.Add(1)
	binary.BigEndian.PutUint64(data, id)
	for {
		m := c.leader.Load()
		if m == nil {
			for _, x := range c.members {
				if x.node.Status().Lead == x.id {
					m = x
					c.leader.Store(x)
				}
			}
		}
		if m != nil {
			// Waiters live on the leader: the proposal counts as done when
			// the leader has applied it, as for the other two.
			done := make(chan struct{})
			m.waiters.Store(id, done)
			if err := m.node.Propose(ctx, data); err != nil {
				m.waiters.Delete(id)
				return err
			}
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				m.waiters.Delete(id)
				return ctx.Err()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // no leader yet
		}
	}
}

func (c *etcdCluster) stop() {
	for _, m := range c.members {
		close(m.stopc)
		m.node.Stop()
		m.ln.Close()
	}
	for _, m := range c.members {
		m.wg.Wait()
		m.wal.Close()
	}
}

// discardLogger silences the library.
type discardLogger struct{}

func (discardLogger) Debug(...any)          {}
func (discardLogger) Debugf(string, ...any) {}
func (discardLogger) Error(...any)          {}
func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Info(...any)           {}
func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Warning(...any)        {}
func (discardLogger) Warningf(string, ...any) {
}
func (discardLogger) Fatal(v ...any)                 { panic(fmt.Sprint(v...)) }
func (discardLogger) Fatalf(format string, v ...any) { panic(fmt.Sprintf(format, v...)) }
func (discardLogger) Panic(v ...any)                 { panic(fmt.Sprint(v...)) }
func (discardLogger) Panicf(format string, v ...any) { panic(fmt.Sprintf(format, v...)) }
