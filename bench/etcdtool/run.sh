#!/usr/bin/env bash
# Runs etcd's own load generator (tools/benchmark of etcd v3.6.8, pinned
# in go.mod here) with the same flags against a three-member raftkv
# cluster (its etcd v3 API) and a three-member etcd v3.7.3 cluster (built
# from ../go.mod), one after the other, on 127.0.0.1, and prints one line
# per workload and store. Usage: bench/etcdtool/run.sh [scale]
# (scale multiplies the request totals; default 1). ONLY=<workload>
# (put, range, txn-put, lease-keepalive or watch-latency) runs just that one.
# Each line: store | workload | requests/s | p50 s | p99 s | the three
# members' CPU time (user and system, from /proc) per request in µs, which
# the machine's other load moves much less than the rates | the load
# generator's own CPU time per request in µs (it shares the machine's
# cores with the members, so it bounds what any store can reach here:
# cores ÷ (its CPU + the members' CPU) per request). watch-latency
# gives two lines, its watch events' and its puts' (see measure).
# Between the two, a 1-member raftkv cluster ("raftkv-1") runs put, range
# and txn-put with the same flags: a three-member cluster of the same build
# serves the same requests on the same cores and adds replication, so
# these lines bound what raftkv can reach on this machine (SINGLE=0 skips
# them). CLIENTS and CONNS set the tool's --clients and --conns (default
# 64 and 16); RAFTKV_BIN runs that raftkv binary instead of building this
# tree's; ETCD=0 skips etcd.
set -euo pipefail
cd "$(dirname "$0")"
scale=${1:-1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/benchmark" go.etcd.io/etcd/v3/tools/benchmark
if [[ -n ${RAFTKV_BIN:-} ]]; then
	cp "$RAFTKV_BIN" "$work/raftkv"
else
	(cd ../.. && go build -o "$work/raftkv" ./cmd/raftkv)
fi
[[ ${ETCD:-1} == 0 ]] || (cd .. && go build -o "$work/etcd" go.etcd.io/etcd/server/v3)

eps=127.0.0.1:32379,127.0.0.1:32479,127.0.0.1:32579
clients=${CLIENTS:-64} conns=${CONNS:-16}
flags=(--endpoints="$eps" --conns "$conns" --clients "$clients")
workloads=(
	"put --val-size 256 --key-space-size 10000 --total $((40000 * scale))"
	"range k --consistency l --total $((40000 * scale))"
	"txn-put --val-size 256 --key-space-size 10000 --total $((30000 * scale))"
	"lease-keepalive --total $((40000 * scale))"
)
only=${ONLY:-}

wait_ready() { # url...
	for u in "$@"; do
		for _ in $(seq 100); do curl -fs "$u" >/dev/null && break; sleep 0.1; done
	done
}

cpu_ticks() { # the members' (pids) CPU time in clock ticks
	local t=0 p f
	for p in "${pids[@]}"; do
		read -r -a f <"/proc/$p/stat"
		t=$((t + f[13] + f[14]))
	done
	echo "$t"
}

measure() { # store
	local hz
	hz=$(getconf CLK_TCK)
	for w in "${workloads[@]}"; do
		[[ -z $only || ${w%% *} == "$only" ]] || continue
		[[ $1 != raftkv-1 || ${w%% *} != lease-keepalive ]] || continue
		total=$(grep -o -- '--total [0-9]*' <<<"$w" | awk '{print $2}')
		before=$(cpu_ticks)
		# shellcheck disable=SC2086
		tool=$( { TIMEFORMAT='%3U %3S'; time "$work/benchmark" "${flags[@]}" $w >"$work/out" 2>&1; } 2>&1)
		out=$(<"$work/out")
		cpu=$(( ($(cpu_ticks) - before) * 1000000 / hz / total ))
		tool=$(awk -v n="$total" '{printf "%d", ($1 + $2) * 1000000 / n}' <<<"$tool")
		rps=$(grep -m1 'Requests/sec' <<<"$out" | awk '{print $2}')
		p50=$(grep -m1 '50% in' <<<"$out" | awk '{print $3}')
		p99=$(grep -m1 '99% in' <<<"$out" | awk '{print $3}')
		echo "$1 | ${w%% *} | $rps | $p50 | $p99 | $cpu | $tool"
		# Failed requests are not in the figures; show them.
		grep -A5 'Error distribution' <<<"$out" || true
	done
	[[ $1 != raftkv-1 ]] || return 0
	[[ -z $only || $only == watch-latency ]] || return 0
	# watch-latency prints two summaries: first its puts' (one client at
	# 100/s, connected to the second endpoint only, so whether that member
	# leads moves them), then the watch events', each timed from the answer
	# to the put that caused it (0 when the event came first). The first
	# line is the events', the second the puts'; CPU is per put (each put
	# makes 100 events).
	local puts=$((1000 * scale)) lead out cpu
	lead=$(second_leads "$1")
	before=$(cpu_ticks)
	out=$("$work/benchmark" --endpoints="$eps" --conns 16 --clients 64 watch-latency --put-total $puts --put-rate 100 --streams 10 --watchers-per-stream 10 --val-size 256 2>&1)
	cpu=$(( ($(cpu_ticks) - before) * 1000000 / hz / puts ))
	local put events
	put=$(sed -n '/^Put summary/,/^Watch events summary/p' <<<"$out")
	events=$(sed -n '/^Watch events summary/,$p' <<<"$out")
	echo "$1 | watch-latency | - | $(pctl 50 <<<"$events") | $(pctl 99 <<<"$events") | $cpu"
	echo "$1 | watch-latency puts ($lead) | $(grep -m1 'Requests/sec' <<<"$put" | awk '{print $2}') | $(pctl 50 <<<"$put") | $(pctl 99 <<<"$put")"
}

pctl() { # percentile: its latency in a summary on stdin; the tool leaves out those that are 0
	local v
	v=$(grep -m1 " $1% in" | awk '{print $3}')
	echo "${v:-0}"
}

second_leads() { # store: whether the second endpoint's member leads
	local st
	if [[ $1 == raftkv ]]; then
		st=$(curl -fs http://127.0.0.1:32281/v1/cluster)
		[[ $st == *'"leader":2,'* ]] && echo "to the leader" || echo "to a follower"
	else
		st=$(curl -fs -X POST http://127.0.0.1:32479/v3/maintenance/status -d '{}')
		local self lead
		self=$(grep -o '"member_id":"[0-9]*"' <<<"$st" | grep -o '[0-9]*')
		lead=$(grep -o '"leader":"[0-9]*"' <<<"$st" | grep -o '[0-9]*')
		[[ -n $self && $self == "$lead" ]] && echo "to the leader" || echo "to a follower"
	fi
}

spec=1=127.0.0.1:32180,2=127.0.0.1:32280,3=127.0.0.1:32380
pids=()
for i in 1 2 3; do
	"$work/raftkv" server --id $i --data-dir "$work/r$i" --listen-peer 127.0.0.1:32${i}80 \
		--listen-client 127.0.0.1:32${i}81 --listen-etcd 127.0.0.1:32$((i + 2))79 \
		--cluster "$spec" --log-level warn 2>"$work/r$i.log" &
	pids+=($!)
done
sleep 0.5
wait_ready http://127.0.0.1:32181/readyz http://127.0.0.1:32281/readyz http://127.0.0.1:32381/readyz
sleep 1 # the leader publishes its etcd address
measure raftkv
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true

if [[ ${SINGLE:-1} != 0 ]]; then
	"$work/raftkv" server --id 1 --data-dir "$work/s1" --listen-peer 127.0.0.1:32180 \
		--listen-client 127.0.0.1:32181 --listen-etcd 127.0.0.1:32379 \
		--cluster 1=127.0.0.1:32180 --log-level warn 2>"$work/s1.log" &
	pids=($!)
	sleep 0.5
	wait_ready http://127.0.0.1:32181/readyz
	sleep 1
	three=("${flags[@]}")
	flags=(--endpoints=127.0.0.1:32379 --conns "$conns" --clients "$clients")
	measure raftkv-1
	flags=("${three[@]}")
	kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
fi

[[ ${ETCD:-1} != 0 ]] || exit 0
pids=()
cluster=m1=http://127.0.0.1:32180,m2=http://127.0.0.1:32280,m3=http://127.0.0.1:32380
for i in 1 2 3; do
	"$work/etcd" --name m$i --data-dir "$work/e$i" \
		--listen-peer-urls http://127.0.0.1:32${i}80 --initial-advertise-peer-urls http://127.0.0.1:32${i}80 \
		--listen-client-urls http://127.0.0.1:32$((i + 2))79 --advertise-client-urls http://127.0.0.1:32$((i + 2))79 \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token raftkv-bench \
		--log-level warn 2>"$work/e$i.log" &
	pids+=($!)
done
sleep 0.5
wait_ready http://127.0.0.1:32379/health http://127.0.0.1:32479/health http://127.0.0.1:32579/health
measure etcd
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
