//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Addresses. Every one is assigned inside a namespace this package made.
const (
	subnet     = "10.213.0"
	hubAddr    = subnet + ".254" // the test process's side, on the hub bridge
	peerPort   = 7000            // a member's --listen-peer, on its loopback
	proxyPort  = 7100            // its advertised peer address: the proxy
	clientPort = 8000            // its --listen-client
	nsPrefix   = "rkvc"          // every namespace this package makes
	commandMax = 20 * time.Second
)

func memberIP(id int) string { return fmt.Sprintf("%s.%d", subnet, id) }

// runCmd runs a command, bounded in time, and returns its combined output
// in the error.
func runCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), commandMax)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netNS is a network namespace this package created.
type netNS string

func (n netNS) ip(args ...string) error {
	return runCmd(append([]string{"ip", "-n", string(n)}, args...)...)
}

func (n netNS) exec(args ...string) error {
	return runCmd(append([]string{"ip", "netns", "exec", string(n)}, args...)...)
}

func (n netNS) iptables(args ...string) error {
	return n.exec(append([]string{"iptables", "-w", "5"}, args...)...)
}

// do runs fn on a thread that has entered the namespace: sockets fn
// creates live there. The thread is never returned to the scheduler (the
// goroutine ends locked, so the runtime discards it).
func (n netNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + string(n))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if _, _, e := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- fmt.Errorf("setns %s: %v", n, e)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dial connects from inside the namespace.
func (n netNS) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// listen binds inside the namespace.
func (n netNS) listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// dialError marks a failure to connect: a request that never left.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

var netSeq atomic.Int64

// network is a hub namespace with a bridge and one namespace per member.
type network struct {
	prefix  string
	hub     netNS
	members map[int]netNS
}

func newNetwork() (*network, error) {
	nw := &network{
		prefix:  fmt.Sprintf("%s%dx%d", nsPrefix, os.Getpid(), netSeq.Add(1)),
		members: map[int]netNS{},
	}
	nw.hub = netNS(nw.prefix + "-hub")
	if err := runCmd("ip", "netns", "add", string(nw.hub)); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", hubAddr + "/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
	} {
		if err := nw.hub.ip(args...); err != nil {
			nw.destroy()
			return nil, err
		}
	}
	return nw, nil
}

// addMember makes member id's namespace, wired to the hub's bridge.
func (nw *network) addMember(id int) error {
	ns := netNS(fmt.Sprintf("%s-m%d", nw.prefix, id))
	if err := runCmd("ip", "netns", "add", string(ns)); err != nil {
		return err
	}
	nw.members[id] = ns
	veth := "v" + strconv.Itoa(id)
	for _, step := range []func() error{
		func() error { return ns.ip("link", "set", "lo", "up") },
		func() error {
			return nw.hub.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", string(ns))
		},
		func() error { return nw.hub.ip("link", "set", veth, "master", "br0", "up") },
		func() error { return ns.ip("addr", "add", memberIP(id)+"/24", "dev", "eth0") },
		func() error { return ns.ip("link", "set", "eth0", "up") },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// destroy removes every namespace of this network; the veth pairs and the
// bridge go with them.
func (nw *network) destroy() {
	for _, ns := range nw.members {
		runCmd("ip", "netns", "del", string(ns))
	}
	runCmd("ip", "netns", "del", string(nw.hub))
}

// removeStaleNamespaces deletes namespaces of earlier runs whose process is
// gone (a run that crashed before its cleanup).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "x")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // that run is still going
		}
		runCmd("ip", "netns", "del", name)
	}
}

// Faults made with iptables and tc inside the members' namespaces.

// cut drops every packet between members a and b, both ways.
func (nw *network) cut(a, b int) error {
	if err := nw.members[a].iptables("-A", "INPUT", "-s", memberIP(b), "-j", "DROP"); err != nil {
		return err
	}
	return nw.members[b].iptables("-A", "INPUT", "-s", memberIP(a), "-j", "DROP")
}

// partition cuts every link between the two sides.
func (nw *network) partition(side1, side2 []int) error {
	for _, a := range side1 {
		for _, b := range side2 {
			if err := nw.cut(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// lossy drops each packet a member receives from the subnet with
// probability p (iptables statistic match), and duplicates each packet it
// sends to another member with probability dup (TEE to the same address).
func (nw *network) lossy(p, dup float64) error {
	for id, ns := range nw.members {
		if p > 0 {
			if err := ns.iptables("-A", "INPUT", "-s", subnet+".0/24", "-m", "statistic",
				"--mode", "random", "--probability", fmt.Sprint(p), "-j", "DROP"); err != nil {
				return err
			}
		}
		if dup <= 0 {
			continue
		}
		for other := range nw.members {
			if other == id {
				continue
			}
			if err := ns.iptables("-t", "mangle", "-A", "POSTROUTING", "-d", memberIP(other), "-m", "statistic",
				"--mode", "random", "--probability", fmt.Sprint(dup), "-j", "TEE", "--gateway", memberIP(other)); err != nil {
				return err
			}
		}
	}
	return nil
}

// rateLimit puts a token bucket (tc tbf) on every member's outgoing link.
func (nw *network) rateLimit(rate string) error {
	for _, ns := range nw.members {
		if err := ns.exec("tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
			"rate", rate, "burst", "32kb", "latency", "300ms"); err != nil {
			return err
		}
	}
	return nil
}

// heal removes every iptables rule and qdisc this package added.
func (nw *network) heal() error {
	var first error
	for _, ns := range nw.members {
		for _, args := range [][]string{{"-F", "INPUT"}, {"-F", "OUTPUT"}, {"-t", "mangle", "-F", "POSTROUTING"}} {
			if err := ns.iptables(args...); err != nil && first == nil {
				first = err
			}
		}
		ns.exec("tc", "qdisc", "del", "dev", "eth0", "root") // fails when none: fine
	}
	return first
}

// sysSetns is setns(2)'s number (the syscall package has no name for it).
var sysSetns = map[string]uintptr{"amd64": 308, "arm64": 268, "386": 346, "riscv64": 268}[runtime.GOARCH]
