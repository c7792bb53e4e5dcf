//go:build cluster

package cluster

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxy stands in front of one member's peer port, inside its namespace:
// every member reaches it at its advertised peer address, and it forwards
// to the member's real listener on the namespace's loopback. Faults it adds
// that iptables cannot, all per message stream and in one direction:
//   - delay: each chunk is held for delay (plus up to jitter) before it is
//     forwarded; order within a stream is kept;
//   - duplication: a Raft message frame is forwarded twice (the proxy
//     parses the transport's handshake and frames on message streams);
//   - one-way partitions: data from a blocked sender is held, unread,
//     until the block lifts (TCP backpressure fills the sender's queues),
//     while the member's own messages to that sender still flow.
type proxy struct {
	ns     netNS
	target string
	l      net.Listener

	delay, jitter atomic.Int64 // nanoseconds
	dupPerMille   atomic.Int64 // probability of duplicating a frame, /1000
	blocked       sync.Map     // sender IP (string) -> true
	frames        atomic.Int64 // frames forwarded (for the report)
	dups          atomic.Int64 // frames duplicated
	closed        atomic.Bool
	conns         sync.Map // net.Conn -> struct{}
	wg            sync.WaitGroup
}

func startProxy(ns netNS, listen, target string) (*proxy, error) {
	l, err := ns.listen(listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{ns: ns, target: target, l: l}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func (p *proxy) close() {
	p.closed.Store(true)
	p.l.Close()
	p.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	p.wg.Wait()
}

// reset drops every proxied connection (the member was killed: a real
// process's peers would see their connections die).
func (p *proxy) reset() {
	p.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
}

func (p *proxy) setDelay(d, jitter time.Duration) {
	p.delay.Store(int64(d))
	p.jitter.Store(int64(jitter))
}

func (p *proxy) block(senderIP string, on bool) {
	if on {
		p.blocked.Store(senderIP, true)
	} else {
		p.blocked.Delete(senderIP)
	}
}

func (p *proxy) healAll() {
	p.setDelay(0, 0)
	p.dupPerMille.Store(0)
	p.blocked.Range(func(k, _ any) bool { p.blocked.Delete(k); return true })
}

func (p *proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(in)
	}
}

func (p *proxy) serve(in net.Conn) {
	defer p.wg.Done()
	out, err := p.ns.dial(context.Background(), "tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	p.conns.Store(in, struct{}{})
	p.conns.Store(out, struct{}{})
	defer func() {
		in.Close()
		out.Close()
		p.conns.Delete(in)
		p.conns.Delete(out)
	}()
	sender, _, _ := net.SplitHostPort(in.RemoteAddr().String())
	done := make(chan struct{}, 2)
	go func() { p.forward(out, in, sender, true); done <- struct{}{} }()
	go func() { p.forward(in, out, "", false); done <- struct{}{} }()
	<-done
}

// chunk is data read at a time, to be written no earlier than due.
type chunk struct {
	data []byte
	due  time.Time
}

// forward copies src to dst through a delay line. On the inbound
// direction (toMember) it holds data from a blocked sender and may
// duplicate message frames.
func (p *proxy) forward(dst, src net.Conn, sender string, toMember bool) {
	defer dst.Close()
	defer src.Close()
	line := make(chan chunk, 256)
	go func() {
		defer close(line)
		var fr *framer
		if toMember {
			fr = &framer{}
		}
		buf := make([]byte, 32<<10)
		for {
			for toMember && p.isBlocked(sender) && !p.closed.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			n, err := src.Read(buf)
			if n > 0 {
				data := append([]byte(nil), buf[:n]...)
				if fr != nil {
					data = fr.feed(data, p)
				}
				d := time.Duration(p.delay.Load())
				if j := p.jitter.Load(); j > 0 {
					d += time.Duration(rand.Int64N(j))
				}
				line <- chunk{data, time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range line {
		if w := time.Until(c.due); w > 0 {
			time.Sleep(w)
		}
		if _, err := dst.Write(c.data); err != nil {
			for range line { // drain so the reader can finish
			}
			return
		}
	}
}

func (p *proxy) isBlocked(ip string) bool {
	_, ok := p.blocked.Load(ip)
	return ok
}

// framer follows the transport's wire format on a sender's stream: a
// handshake (magic, version, kind, cluster, from, to, address length,
// address, crc32c), then length-prefixed frames. Only message streams
// (kind 1) are parsed; anything else passes through untouched.
type framer struct {
	pending []byte
	state   int // 0 handshake, 1 frames, 2 pass-through
}

const (
	wireHandshakeLen = 4 + 1 + 1 + 8 + 8 + 8 + 1
	wireKindMessages = 1
	wireFrameHeader  = 8
	wireMaxFrame     = 64 << 20 // beyond this the proxy stops parsing
)

// feed takes bytes read and returns the bytes to forward, with some whole
// frames repeated.
func (f *framer) feed(data []byte, p *proxy) []byte {
	if f.state == 2 {
		return data
	}
	f.pending = append(f.pending, data...)
	var out []byte
	for {
		switch f.state {
		case 0:
			if len(f.pending) < wireHandshakeLen {
				return out
			}
			n := wireHandshakeLen + int(f.pending[wireHandshakeLen-1]) + 4
			if len(f.pending) < n {
				return out
			}
			if f.pending[5] != wireKindMessages {
				f.state = 2
				out = append(out, f.pending...)
				f.pending = nil
				return out
			}
			out = append(out, f.pending[:n]...)
			f.pending = f.pending[n:]
			f.state = 1
		case 1:
			if len(f.pending) < wireFrameHeader {
				return out
			}
			size := int(binary.BigEndian.Uint32(f.pending))
			if size > wireMaxFrame {
				f.state = 2
				out = append(out, f.pending...)
				f.pending = nil
				return out
			}
			n := wireFrameHeader + size
			if len(f.pending) < n {
				return out
			}
			frame := f.pending[:n]
			out = append(out, frame...)
			p.frames.Add(1)
			if pm := p.dupPerMille.Load(); pm > 0 && rand.Int64N(1000) < pm {
				out = append(out, frame...)
				p.dups.Add(1)
			}
			f.pending = f.pending[n:]
		default:
			out = append(out, f.pending...)
			f.pending = nil
			return out
		}
	}
}
