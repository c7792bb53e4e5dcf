package main

import (
	"strings"
	"testing"
)

// TestSumMetric shows that the lab reads a metric from Prometheus text: it
// sums the samples whose labels match, skips comments and metrics whose
// names merely start with the one asked for, and reports a bad value.
func TestSumMetric(t *testing.T) {
	text := `# HELP raftkv_read_index_duration_seconds x
# TYPE raftkv_read_index_duration_seconds histogram
raftkv_read_index_duration_seconds_sum{consistency="lease"} 0.5
raftkv_read_index_duration_seconds_sum{consistency="linearizable"} 1.25
raftkv_read_index_duration_seconds_count{consistency="linearizable"} 10
raftkv_raft_snapshots_received_total 3
raftkv_raft_snapshots_received_total_extra 100
`
	for _, c := range []struct {
		name, match string
		want        float64
	}{
		{"raftkv_read_index_duration_seconds_sum", `consistency="linearizable"`, 1.25},
		{"raftkv_read_index_duration_seconds_sum", "", 1.75},
		{"raftkv_read_index_duration_seconds_count", `consistency="linearizable"`, 10},
		{"raftkv_raft_snapshots_received_total", "", 3},
		{"raftkv_no_such_metric", "", 0},
	} {
		got, err := sumMetric(strings.NewReader(text), c.name, c.match)
		if err != nil || got != c.want {
			t.Errorf("%s %s: %v, %v; want %v", c.name, c.match, got, err, c.want)
		}
	}
	if _, err := sumMetric(strings.NewReader("raftkv_x 1e\n"), "raftkv_x", ""); err == nil {
		t.Error("a malformed value was read without an error")
	}
}
