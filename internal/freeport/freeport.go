// Package freeport finds loopback ports for tests that start servers in
// other processes or containers, which bind the port after it is chosen.
//
// A port the kernel hands out for "127.0.0.1:0" lies in its ephemeral
// range (32768–60999 on Linux) and goes back there when released, where any
// outgoing connection on the machine may take it as its source port before
// the server binds it. Ports from below that range are not used that way,
// so a port found free here stays free unless someone binds it on purpose.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

const (
	low  = 10000
	high = 32768 // the start of Linux's default ephemeral range
)

var (
	mu    sync.Mutex
	rng   = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	given = map[int]bool{}
)

// Port returns a loopback port below the ephemeral range that was free a
// moment ago and that this process has not returned before.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := low + rng.IntN(high-low)
		if given[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		given[port] = true
		return port, nil
	}
	return 0, errors.New("freeport: no free loopback port below the ephemeral range")
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}
