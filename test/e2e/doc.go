// Package e2e tests the raftkv binary end to end: TestMain builds it once,
// and each test runs real `raftkv server` processes on 127.0.0.1 ports in
// temporary directories and talks to them through package client, raw
// HTTP and signals (SIGKILL, SIGTERM).
//
// The processes run with short timers (20ms heartbeats, 200ms elections)
// to keep the suite fast; the timing bounds the tests assert are generous
// multiples of those.
package e2e
