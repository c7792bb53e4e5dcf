// Package cluster holds black-box fault-injection tests of real raftkv
// clusters, in the manner of Jepsen and etcd's robustness tests: real
// `raftkv server` processes, each in its own network namespace, real
// sockets and disks, faults injected from outside (kill -9, simulated
// power loss, SIGSTOP, iptables partitions and packet loss, tbf rate
// limits, a fault-injecting TCP proxy for delay and one-way partitions,
// membership changes, leader transfer), concurrent clients whose histories
// are checked for linearizability with porcupine. The clients speak raw
// HTTP, except the batch clients: goroutines sharing one client.Client,
// whose calls travel in POST /v1/batch requests when they queue up; and the
// coordination clients (coordclients.go): transactions over two keys
// checked by porcupine with range reads, watchers of the shared keys held
// to each other and to every acknowledged write across their reconnects,
// and mutex holders whose fenced writes show whether two holds overlapped;
// and the Kubernetes-pattern clients (k8sclients.go), which speak etcd's
// gRPC API through the etcd Go client as the Kubernetes API server does,
// their transactions and paginated lists checked by porcupine and their
// watches by a watch checker (k8smodel.go).
//
// The tests need root, iproute2 and iptables, and are built only with the
// cluster tag:
//
//	go test -tags cluster -count=1 -timeout 30m ./test/cluster
//	RAFTKV_SOAK=30m go test -tags cluster -count=1 -timeout 0 -run TestSoak ./test/cluster
//
// Without the tag, `go test ./...` (make unit) runs the tests of the
// porcupine model (model_test.go: known-bad histories it must reject,
// known-good ones it must accept) and one test that skips and says how to
// enable the rest.
//
// Isolation: every run names its namespaces rkvc<pid>x<n>-..., creates a
// hub namespace holding a bridge, one namespace per member joined to it by
// a veth pair, and assigns addresses in 10.213.0.0/24 only inside those
// namespaces; nothing is configured in the root namespace. The test
// process reaches members by creating its sockets inside the hub namespace
// (setns on a locked thread). Namespaces left by a crashed run (their pid
// gone) are removed at the start of the next.
//
// On a failure, the results folder (printed; RAFTKV_RESULTS or a temp
// directory) holds every member's log, the history, and porcupine's
// visualisation when linearizability failed.
package cluster
