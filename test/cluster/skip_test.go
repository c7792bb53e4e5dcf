//go:build !cluster

package cluster

import "testing"

// TestClusterSuiteNeedsTag says how to run the black-box suite, which needs
// root and network namespaces and is therefore opt-in.
func TestClusterSuiteNeedsTag(t *testing.T) {
	t.Skip("black-box cluster tests are built with -tags cluster (root, iproute2, iptables): go test -tags cluster -count=1 ./test/cluster")
}
