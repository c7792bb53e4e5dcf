package cluster

import (
	"os"
	"strings"
	"testing"
)

// TestMemberProcsReachesEveryMember: with MemberProcs set, a member's
// process runs with GOMAXPROCS set to it; without, it inherits the
// driver's environment unchanged.
func TestMemberProcsReachesEveryMember(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	t.Cleanup(func() { MemberProcs = 0 })
	for _, tc := range []struct {
		procs int
		want  string
	}{{0, "GOMAXPROCS=[]"}, {1, "GOMAXPROCS=[1]"}, {3, "GOMAXPROCS=[3]"}} {
		MemberProcs = tc.procs
		c := &Cluster{Name: "sh", Dir: t.TempDir()}
		if err := c.start("/bin/sh", []string{"-c", `echo "GOMAXPROCS=[$GOMAXPROCS]"`}); err != nil {
			t.Fatal(err)
		}
		if err := c.procs[0].Wait(); err != nil {
			t.Fatal(err)
		}
		out, err := os.ReadFile(c.logs[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("MemberProcs %d: member printed %q, want %q", tc.procs, got, tc.want)
		}
	}
}
