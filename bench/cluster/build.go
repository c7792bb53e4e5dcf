package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleDir finds the bench module's directory from the go.mod of the
// current directory.
func ModuleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if err != nil || !strings.Contains(string(data), "module github.com/raftkv/raftkv/bench\n") {
		return "", fmt.Errorf("run this from raftkv's bench directory (go.mod here: %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// Build compiles raftkv from the parent module (the working tree as it
// is) and etcd from the module proxy (the version pinned in bench/go.mod)
// into dir, or only the one store named, and returns the binaries by
// store name.
func Build(ctx context.Context, benchDir, dir, only string) (map[string]string, error) {
	bins := map[string]string{"raftkv": filepath.Join(dir, "bin", "raftkv"), "etcd": filepath.Join(dir, "bin", "etcd")}
	steps := []struct{ what, moduleDir, pkg string }{
		{"raftkv", filepath.Dir(benchDir), "./cmd/raftkv"},
		{"etcd", benchDir, "go.etcd.io/etcd/server/v3"},
	}
	for _, s := range steps {
		if only != "" && only != s.what {
			continue
		}
		fmt.Fprintf(os.Stderr, "building %s (%s)\n", s.what, s.pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bins[s.what], s.pkg)
		cmd.Dir = s.moduleDir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building %s: %w", s.what, err)
		}
	}
	return bins, nil
}

// LoadAverage is the 1, 5 and 15 minute load averages of /proc/loadavg.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
