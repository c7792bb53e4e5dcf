//go:build mutation

package sim

import (
	"strings"
	"testing"
)

// TestMutationPlaygroundFigure8 shows the playground's what-if on a core
// that commits by counting replicas of an older term's entry: in Figure
// 8's state (c) the term-4 leader commits index 3, and the commitment-rule
// checker stops the run naming it. A new playground restores the correct
// core: the same scene without the bug reaches (c) with nothing reported.
func TestMutationPlaygroundFigure8(t *testing.T) {
	var opt PlaygroundOptions
	for _, sc := range PlaygroundScenes(1) {
		if sc.Name == "whatif-figure8" {
			opt = sc.Options
		}
	}
	if opt.Voters == 0 {
		t.Fatal("the what-if scene is not offered in a build with mutations")
	}
	p := newTestPlayground(t, opt)
	for i := 0; i < 3; i++ {
		_ = p.Act(Action{Op: "stage", Scene: "whatif-figure8", N: i})
	}
	st := p.State()
	if st.Mutation != "commit-older-term" || !strings.HasPrefix(st.Violation, "commitment rule") {
		t.Fatalf("mutation %q, violation %q; want the commitment rule broken", st.Mutation, st.Violation)
	}
	for _, c := range st.Checks {
		if c.OK == (c.Name == "commitment rule") {
			t.Fatalf("check %s ok=%v for violation %q", c.Name, c.OK, st.Violation)
		}
	}
	t.Log(st.Violation)

	q := newTestPlayground(t, opt)
	for i := 0; i < 3; i++ {
		mustAct(t, q, Action{Op: "stage", Scene: "figure8", N: i})
	}
	if st := q.State(); st.Violation != "" || st.Mutation != "" || st.Members[0].Commit >= 3 {
		t.Fatalf("after the what-if, a new playground: violation %q, mutation %q, S1 commit %d",
			st.Violation, st.Mutation, st.Members[0].Commit)
	}
}
