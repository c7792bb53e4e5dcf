package stagetrace

import "testing"

func TestEveryStageHasANameThatParsesBack(t *testing.T) {
	seen := map[string]bool{}
	for s := RequestRead; s < stageEnd; s++ {
		name := s.String()
		if name == "unknown" || name == "" {
			t.Fatalf("stage %d has no name", s)
		}
		if seen[name] {
			t.Fatalf("two stages named %q", name)
		}
		seen[name] = true
		if got, ok := ParseStage(name); !ok || got != s {
			t.Fatalf("ParseStage(%q) = %v, %v; want %v", name, got, ok, s)
		}
	}
	if _, ok := ParseStage("no-such-stage"); ok {
		t.Fatal("ParseStage accepted an unknown name")
	}
	if Stage(0).String() != "unknown" || stageEnd.String() != "unknown" {
		t.Fatal("out-of-range stages must print as unknown")
	}
}
