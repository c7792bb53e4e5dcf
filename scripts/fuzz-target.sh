#!/usr/bin/env bash
# Usage: scripts/fuzz-target.sh PKGDIR TARGET FUZZTIME
# Runs one fuzz target for FUZZTIME (make fuzz calls it for each).
#
# Go 1.26's fuzz coordinator can fail a run that found nothing, with a bare
# "context deadline exceeded", when -fuzztime ends while a worker is still
# in a call (go.dev/issue/75804, fixed in Go 1.27). Such a run counts as
# passed only when it wrote no failing input and the target's corpus then
# passes as a plain test; every other failure fails.
set -u
go=${GO:-go}
dir=$1 target=$2 fuzztime=$3
corpus=$dir/testdata/fuzz/$target
before=$(ls "$corpus" 2>/dev/null)
out=$("$go" test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "./$dir" 2>&1)
rc=$?
printf '%s\n' "$out"
[[ $rc == 0 ]] && exit 0
if [[ $(ls "$corpus" 2>/dev/null) == "$before" ]] &&
	grep -qx '    context deadline exceeded' <<<"$out" &&
	! grep -q 'Failing input written' <<<"$out"; then
	echo "fuzz: $target: stopped by the coordinator's deadline race (go.dev/issue/75804) with no failing input; replaying its corpus"
	exec "$go" test -count=1 -run "^$target\$" "./$dir"
fi
exit "$rc"
