//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInput sends garbage to running members under the usual workload:
// random bytes and malformed frames to the peer port, well-formed frames
// from another cluster id, and oversized or malformed HTTP requests. The
// members must keep serving (no process exits, the cluster answers) and
// lose nothing (every check of runScenario).
func TestBadInput(t *testing.T) {
	runScenario(t, scenario{name: "bad input", opts: options{members: 3}, workload: defaultWorkload(),
		duration: nemesisDuration(), nemesis: badInput})
}

func badInput(r *run, until time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	v, err := r.c.clusterView(ctx, r.c.member(1))
	cancel()
	if err != nil {
		r.fail("cluster view: %v", err)
		return
	}
	clusterID, err := strconv.ParseUint(v.ClusterID, 16, 64)
	if err != nil {
		r.fail("cluster id %q: %v", v.ClusterID, err)
		return
	}
	attacks := []struct {
		name string
		do   func(m *member) error
	}{
		{"random bytes to the peer port", func(m *member) error { return peerSend(m, randomBytes(1+rand.IntN(4096))) }},
		{"handshake with a bad checksum", func(m *member) error {
			hs := handshake(clusterID, 2, uint64(m.id), "x")
			hs[len(hs)-1] ^= 0xff
			return peerSend(m, hs)
		}},
		{"frames from another cluster id", func(m *member) error {
			return peerSend(m, append(handshake(clusterID+1, 2, uint64(m.id), memberIP(2)+":7100"), frame(randomBytes(64))...))
		}},
		{"frames from an unknown member", func(m *member) error {
			return peerSend(m, append(handshake(clusterID, 99, uint64(m.id), memberIP(99)+":7100"), frame(randomBytes(64))...))
		}},
		{"garbage frame from a member's id", func(m *member) error {
			from := uint64(m.id%3 + 1)
			b := handshake(clusterID, from, uint64(m.id), memberIP(int(from))+":7100")
			switch rand.IntN(3) {
			case 0:
				b = append(b, frame(append([]byte{0xff}, randomBytes(100)...))...) // valid checksum, nonsense message
			case 1:
				f := frame(randomBytes(100))
				f[5] ^= 0xff // bad checksum
				b = append(b, f...)
			default:
				b = binary.BigEndian.AppendUint32(b, 0xfffffff0) // absurd length
				b = append(b, randomBytes(100)...)
			}
			return peerSend(m, b)
		}},
		{"oversized HTTP body", func(m *member) error {
			return httpExpect(r, m, http.MethodPut, "/v1/kv/bad/big", bytes.Repeat([]byte("x"), 2<<20), nil, 413)
		}},
		{"over-long key", func(m *member) error {
			return httpExpect(r, m, http.MethodPut, "/v1/kv/"+strings.Repeat("k", 5000), []byte("v"), nil, 400)
		}},
		{"malformed If-Match", func(m *member) error {
			return httpExpect(r, m, http.MethodPut, "/v1/kv/bad/k", []byte("v"), map[string]string{"If-Match": "nonsense"}, 400)
		}},
		{"malformed admin JSON", func(m *member) error {
			return httpExpect(r, m, http.MethodPost, "/v1/cluster/members", []byte("{not json"), nil, 400)
		}},
		{"huge header", func(m *member) error {
			return rawHTTP(m, "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("h", 200<<10)+"\r\n\r\n")
		}},
		{"garbage request line", func(m *member) error { return rawHTTP(m, string(randomBytes(300))+"\r\n\r\n") }},
		{"broken chunked body", func(m *member) error {
			return rawHTTP(m, "PUT /v1/kv/bad/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
		}},
	}
	counts := map[string]int{}
	for time.Now().Before(until) {
		a := attacks[rand.IntN(len(attacks))]
		m := r.voters()[rand.IntN(len(r.voters()))]
		if err := a.do(m); err != nil {
			r.fail("%s to member %d: %v", a.name, m.id, err)
		}
		counts[a.name]++
		r.mu.Lock()
		r.faults[a.name]++
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Logf("bad input sent: %v", counts)
	for _, m := range r.c.all() {
		if m.started() && !m.running() {
			r.fail("member %d exited under bad input; see %s", m.id, m.logPath)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// handshake encodes the transport's opening (transport/wire.go): magic,
// version, kind (messages), cluster, from, to, address, crc32c.
func handshake(cluster, from, to uint64, addr string) []byte {
	b := []byte("RKVT")
	b = append(b, 1, 1)
	b = binary.BigEndian.AppendUint64(b, cluster)
	b = binary.BigEndian.AppendUint64(b, from)
	b = binary.BigEndian.AppendUint64(b, to)
	b = append(b, byte(len(addr)))
	b = append(b, addr...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func frame(payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// peerSend writes b to the member's own peer listener (inside its
// namespace, past the proxy) and reads whatever comes back, briefly.
func peerSend(m *member, b []byte) error {
	if !m.running() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := m.ns.dial(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", peerPort))
	if err != nil {
		return nil // restarting: nothing to attack
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	c.Write(b)
	io.Copy(io.Discard, c)
	return nil
}

// rawHTTP writes a raw request to the client port and reads the answer.
func rawHTTP(m *member, req string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := m.c.nw.hub.dial(ctx, "tcp", m.clientAddr())
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write([]byte(req))
	io.Copy(io.Discard, c)
	return nil
}

// httpExpect sends a malformed request and wants its precise refusal
// (redirects followed: the leader answers).
func httpExpect(r *run, m *member, method, path string, body []byte, hdr map[string]string, want int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.clientAddr()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.c.hc.Do(req)
	if err != nil {
		return nil // the member may close on us mid-body; not a finding
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTemporaryRedirect {
		return fmt.Errorf("%s %s answered %d, want %d", method, path[:min(len(path), 40)], resp.StatusCode, want)
	}
	return nil
}
