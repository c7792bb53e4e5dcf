package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// printTable writes a Markdown table of both stores and, when both ran,
// the ratios and the targets.
func printTable(w io.Writer, res results, rows []workload) {
	rk, et := res["raftkv"], res["etcd"]
	at := func(ms []*measurement, i int) *measurement {
		if i < len(ms) {
			return ms[i]
		}
		return nil
	}
	fmt.Fprintln(w, "| workload | clients | raftkv ops/s | p50 | p99 | etcd ops/s | p50 | p99 | ops/s raftkv÷etcd | p50 raftkv÷etcd | p99 raftkv÷etcd |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	var notes []string
	for i, wl := range rows {
		a, b := at(rk, i), at(et, i)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", wl.name, wl.clients, cells(a), cells(b), ratios(a, b))
		notes = append(notes, errNotes(wl, "raftkv", a)...)
		notes = append(notes, errNotes(wl, "etcd", b)...)
	}
	for _, n := range notes {
		fmt.Fprintln(w, "\n"+n)
	}
	printCPU(w, rk, et, rows)
	fmt.Fprintln(w, "\nRatios: ops/s above 1 and latency below 1 favour raftkv.")
	printTargets(w, rk, et, rows)
}

// printTargets checks the targets whose rows ran.
func printTargets(w io.Writer, rk, et []*measurement, rows []workload) {
	find := func(ms []*measurement, name string, clients int, single bool) *measurement {
		for i, wl := range rows {
			if wl.name == name && wl.clients == clients && wl.single == single && i < len(ms) {
				return ms[i]
			}
		}
		return nil
	}
	fmt.Fprintln(w, "\nTargets:")
	throughput := func(what, name string, clients int, factor float64) {
		a, b := find(rk, name, clients, false), find(et, name, clients, false)
		if a == nil || b == nil || b.OpsPerSec == 0 {
			return
		}
		target(w, fmt.Sprintf("%s: ≥%g× etcd's ops/s", what, factor), a.OpsPerSec >= factor*b.OpsPerSec && a.Errors == 0,
			fmt.Sprintf("%.2f×, errors %d", a.OpsPerSec/b.OpsPerSec, a.Errors))
	}
	p99 := func(what, name string, clients int) {
		a, b := find(rk, name, clients, false), find(et, name, clients, false)
		if a == nil || b == nil {
			return
		}
		target(w, what+": p99 no worse than etcd's", a.P99 <= b.P99, fmt.Sprintf("%v vs %v", a.P99, b.P99))
	}
	cpu := func(what, name string, clients int) {
		a, b := find(rk, name, clients, false), find(et, name, clients, false)
		if a == nil || b == nil || b.serverCPUPerOp == 0 {
			return
		}
		target(w, what+": members' CPU per op ≤ ⅓ of etcd's", 3*a.serverCPUPerOp <= b.serverCPUPerOp,
			fmt.Sprintf("%v vs %v (%.2f)", a.serverCPUPerOp, b.serverCPUPerOp, float64(a.serverCPUPerOp)/float64(b.serverCPUPerOp)))
	}
	const ip, ig = "put, independent", "get linearizable, independent"
	throughput("64 independent clients, puts", ip, 64, 3)
	p99("64 independent clients, puts", ip, 64)
	throughput("64 independent clients, linearizable gets", ig, 64, 4)
	p99("64 independent clients, linearizable gets", ig, 64)
	throughput("256 independent clients, puts", ip, 256, 3)
	cpu("64 independent clients, puts", ip, 64)
	cpu("64 independent clients, linearizable gets", ig, 64)
	if a, b := find(rk, ip, 1, false), find(et, ip, 1, false); a != nil && b != nil {
		target(w, "1 independent client, puts: p50 ≤ ½ of etcd's", 2*a.P50 <= b.P50,
			fmt.Sprintf("%v vs %v (%.2f)", a.P50, b.P50, float64(a.P50)/float64(b.P50)))
	}
	if a, s := find(rk, ip, 1, false), find(rk, "put, independent, 1-member raftkv", 1, true); a != nil && s != nil {
		target(w, "1 independent client, puts: p50 ≤ 1.3× the 1-member cluster's", 10*a.P50 <= 13*s.P50,
			fmt.Sprintf("%v vs %v (%.2f)", a.P50, s.P50, float64(a.P50)/float64(s.P50)))
	}
	throughput("64 clients, batched, puts", "put", 64, 3)
	throughput("64 clients, batched, linearizable gets", "get linearizable", 64, 3)
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
func printCPU(w io.Writer, rk, et []*measurement, rows []workload) {
	fmt.Fprintln(w, "\nCPU time per operation (µs): the members together, the load generator;")
	fmt.Fprintln(w, "and the CPU other processes used meanwhile (cores; above 0.1 a figure was taken under load):")
	fmt.Fprintln(w, "\n| workload | clients | raftkv members | raftkv loadgen | other | etcd members | etcd loadgen | other |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	worst := 0.0
	cpu := func(ms []*measurement, i int) string {
		if i >= len(ms) || ms[i] == nil {
			return "– | – | –"
		}
		worst = max(worst, ms[i].otherCores)
		return fmt.Sprintf("%d | %d | %.2f", ms[i].serverCPUPerOp.Microseconds(), ms[i].clientCPUPerOp.Microseconds(), ms[i].otherCores)
	}
	for i, wl := range rows {
		fmt.Fprintf(w, "| %s | %d | %s | %s |\n", wl.name, wl.clients, cpu(rk, i), cpu(et, i))
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
