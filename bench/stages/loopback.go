package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// echoAddrEnv set makes this program the echo process of measureLoopback:
// it connects to the address and sends back every byte it reads.
const echoAddrEnv = "RAFTKV_STAGES_ECHO"

// measureLoopback measures what one round trip between two processes on
// loopback TCP costs, as a put's AppendEntries and acknowledgement make
// one: entryBytes out and back to a second process. Back to back, both
// processes stay busy; with a pause between round trips, as a single
// client's members leave, both go idle and each message must wake its
// reader, and the CPU it was sleeping on, first.
func measureLoopback(ctx context.Context, o options) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	echo := exec.CommandContext(ctx, self)
	echo.Env = append(os.Environ(), echoAddrEnv+"="+l.Addr().String())
	echo.Stderr = os.Stderr
	if err := echo.Start(); err != nil {
		return fmt.Errorf("loopback: starting the echo process: %w", err)
	}
	defer echo.Wait()
	defer echo.Process.Kill()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(10 * time.Second):
	}
	if c == nil {
		return errors.New("loopback: the echo process did not connect")
	}
	defer c.Close()
	fmt.Printf("## Loopback TCP: a %d-byte round trip to another process, %d per row\n\n", entryBytes, o.loopTrips)
	fmt.Println("| between round trips | p50 µs | p90 µs | p99 µs |")
	fmt.Println("| --- | ---: | ---: | ---: |")
	for _, pause := range []time.Duration{0, o.diskPause} {
		ds, err := roundTrips(ctx, c, o.loopTrips, pause)
		if err != nil {
			return err
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		q := func(f float64) string { return us(ds[int(f*float64(len(ds)-1))]) }
		what := "nothing (back to back)"
		if pause > 0 {
			what = pause.String() + " idle"
		}
		fmt.Printf("| %s | %s | %s | %s |\n", what, q(0.5), q(0.9), q(0.99))
	}
	fmt.Println()
	return nil
}

func roundTrips(ctx context.Context, c net.Conn, n int, pause time.Duration) ([]time.Duration, error) {
	msg := []byte(strings.Repeat("x", entryBytes))
	back := make([]byte, entryBytes)
	ds := make([]time.Duration, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("loopback: write: %w", err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return nil, fmt.Errorf("loopback: read: %w", err)
		}
		ds = append(ds, time.Since(t))
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	return ds, nil
}

// runEcho is the echo process: it sends back what it reads until the
// connection closes.
func runEcho(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer c.Close()
	_, err = io.Copy(c, bufio.NewReader(c))
	return err
}
