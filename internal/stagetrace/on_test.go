//go:build stagetrace

package stagetrace

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMarksReachTheProcessFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(DirEnv, dir)
	Mark(Proposed, 7, 0)
	Mark(AppendSent, 7, 2)
	path := filepath.Join(dir, fmt.Sprintf("stages-%d.txt", os.Getpid()))
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) == 2 {
			for i, want := range []string{"proposed 7 0", "append-sent 7 2"} {
				f := strings.SplitN(lines[i], " ", 2)
				if len(f) != 2 || f[1] != want {
					t.Fatalf("line %d = %q, want a time then %q", i+1, lines[i], want)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("marks file holds %q after 5 s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
