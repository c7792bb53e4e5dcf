package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// printTable writes a Markdown table of both stores and, when both ran,
// the ratios and issue 6's targets.
func printTable(w io.Writer, res results) {
	rk, et := res["raftkv"], res["etcd"]
	fmt.Fprintln(w, "| workload | clients | raftkv ops/s | p50 | p99 | etcd ops/s | p50 | p99 | ops/s raftkv÷etcd | p50 raftkv÷etcd | p99 raftkv÷etcd |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	var notes []string
	for i, wl := range workloads {
		var a, b *measurement
		if i < len(rk) {
			a = &rk[i]
		}
		if i < len(et) {
			b = &et[i]
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", wl.name, wl.clients, cells(a), cells(b), ratios(a, b))
		notes = append(notes, errNotes(wl, "raftkv", a)...)
		notes = append(notes, errNotes(wl, "etcd", b)...)
	}
	for _, n := range notes {
		fmt.Fprintln(w, "\n"+n)
	}
	printCPU(w, rk, et)
	if rk == nil || et == nil {
		return
	}
	fmt.Fprintln(w, "\nRatios: ops/s above 1 and latency below 1 favour raftkv.")
	fmt.Fprintln(w, "\nIssue 6 targets:")
	put1, put64, lin := 0, 2, 4 // indexes into workloads
	target(w, "64-client puts: ≥3× etcd's ops/s", rk[put64].OpsPerSec >= 3*et[put64].OpsPerSec,
		fmt.Sprintf("%.2f×", rk[put64].OpsPerSec/et[put64].OpsPerSec))
	target(w, "64-client puts: p99 no worse than etcd's", rk[put64].P99 <= et[put64].P99,
		fmt.Sprintf("%v vs %v", rk[put64].P99, et[put64].P99))
	target(w, "1-client puts: p50 ≤ ⅓ of etcd's", 3*rk[put1].P50 <= et[put1].P50,
		fmt.Sprintf("%v vs %v (%.2f)", rk[put1].P50, et[put1].P50, float64(rk[put1].P50)/float64(et[put1].P50)))
	target(w, "64-client linearizable gets: ≥3× etcd's ops/s", rk[lin].OpsPerSec >= 3*et[lin].OpsPerSec,
		fmt.Sprintf("%.2f×", rk[lin].OpsPerSec/et[lin].OpsPerSec))
}

func target(w io.Writer, what string, met bool, detail string) {
	verdict := "MISSED"
	if met {
		verdict = "met"
	}
	fmt.Fprintf(w, "- %s: %s (%s)\n", what, verdict, detail)
}

// printCPU writes the CPU time per operation of the three members
// together and of the load generator, in the measured window.
func printCPU(w io.Writer, rk, et []measurement) {
	fmt.Fprintln(w, "\nCPU time per operation (µs): the 3 members together, the load generator;")
	fmt.Fprintln(w, "and the CPU other processes used meanwhile (cores; above 0.1 a figure was taken under load):")
	fmt.Fprintln(w, "\n| workload | clients | raftkv members | raftkv loadgen | other | etcd members | etcd loadgen | other |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	cpu := func(ms []measurement, i int) string {
		if i >= len(ms) {
			return "– | – | –"
		}
		return fmt.Sprintf("%d | %d | %.2f", ms[i].serverCPUPerOp.Microseconds(), ms[i].clientCPUPerOp.Microseconds(), ms[i].otherCores)
	}
	worst := 0.0
	for i, wl := range workloads {
		fmt.Fprintf(w, "| %s | %d | %s | %s |\n", wl.name, wl.clients, cpu(rk, i), cpu(et, i))
		for _, ms := range [][]measurement{rk, et} {
			if i < len(ms) {
				worst = max(worst, ms[i].otherCores)
			}
		}
	}
	if worst > otherCoresQuiet {
		fmt.Fprintf(w, "\n**Warning**: other processes used up to %.2f cores during a measurement; those rows are not comparable. Rerun on a quiet machine.\n", worst)
	}
}

// otherCoresQuiet is the CPU other processes may use (kernel threads
// flushing our own writes, mostly) before a run counts as disturbed.
const otherCoresQuiet = 0.1

func cells(r *measurement) string {
	if r == nil {
		return "– | – | –"
	}
	return fmt.Sprintf("%s | %s | %s", thousands(r.OpsPerSec), ms(r.P50), ms(r.P99))
}

func ratios(a, b *measurement) string {
	if a == nil || b == nil || b.OpsPerSec == 0 || b.P50 == 0 || b.P99 == 0 {
		return "– | – | –"
	}
	return fmt.Sprintf("%.2f× | %.2f | %.2f", a.OpsPerSec/b.OpsPerSec,
		float64(a.P50)/float64(b.P50), float64(a.P99)/float64(b.P99))
}

// errNotes describes failed operations of one run, if any.
func errNotes(wl workload, store string, r *measurement) []string {
	if r == nil || r.Errors == 0 {
		return nil
	}
	return []string{fmt.Sprintf("Note: %s %s at %d clients: %d failed operations (not counted), first: %v",
		store, wl.name, wl.clients, r.Errors, r.FirstErr)}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func thousands(v float64) string {
	n := int64(v + 0.5)
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
