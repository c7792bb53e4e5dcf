// Command raftkv is the raftkv binary: `raftkv server` runs a member,
// `raftkv dev` a three-member cluster in one process for trying it out,
// put|get|del|append|list|members|transfer-leader|status talk to a cluster
// through package client, and `raftkv bench` generates load and reports
// throughput and an HDR latency histogram.
//
// It is wiring only: the logic lives in packages server and client. Every
// flag can also be given as RAFTKV_<FLAG> in the environment (dashes
// become underscores: RAFTKV_DATA_DIR); a flag on the command line wins.
// Bad flags or arguments print one line and exit 2; a failure at run time
// exits 1.
package main
