//go:build cluster

package cluster

import (
	"encoding/json"
	"os"
	"sort"
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestRecheckHistory re-checks a saved history (RAFTKV_HISTORY=path of a
// history.json from a results folder) and names the keys that fail.
func TestRecheckHistory(t *testing.T) {
	path := os.Getenv("RAFTKV_HISTORY")
	if path == "" {
		t.Skip("set RAFTKV_HISTORY to a saved history.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		ClientId     int
		Input        kvInput
		Output       kvOutput
		Call, Return int64
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	ops := make([]porcupine.Operation, len(raw))
	for i, o := range raw {
		ops[i] = porcupine.Operation{ClientId: o.ClientId, Input: o.Input, Output: o.Output, Call: o.Call, Return: o.Return}
	}
	for _, d := range diagnose(ops) {
		t.Error(d)
	}
}

// TestBisectHistory prints the operations before the shortest illegal
// prefix (by invocation) of one key's saved history: RAFTKV_HISTORY=path
// RAFTKV_KEY=shared/0 [NOREADS=1].
func TestBisectHistory(t *testing.T) {
	path := os.Getenv("RAFTKV_HISTORY")
	key := os.Getenv("RAFTKV_KEY")
	if path == "" || key == "" {
		t.Skip("set RAFTKV_HISTORY and RAFTKV_KEY")
	}
	b, _ := os.ReadFile(path)
	var raw []struct {
		ClientId     int
		Input        kvInput
		Output       kvOutput
		Call, Return int64
	}
	json.Unmarshal(b, &raw)
	var ops []porcupine.Operation
	for _, o := range raw {
		if o.Input.Key != key || (os.Getenv("NOREADS") != "" && o.Input.Op == opGet) {
			continue
		}
		ops = append(ops, porcupine.Operation{ClientId: o.ClientId, Input: o.Input, Output: o.Output, Call: o.Call, Return: o.Return})
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	lo, hi := 1, len(ops)
	for lo < hi {
		mid := (lo + hi) / 2
		if porcupine.CheckOperations(kvModel, ops[:mid]) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	t.Logf("first illegal prefix: %d of %d", lo, len(ops))
	for _, op := range ops[max(0, lo-40):lo] {
		t.Logf("%10.3f %10.3f c%2d %s", float64(op.Call)/1e6, float64(op.Return)/1e6, op.ClientId, kvModel.DescribeOperation(op.Input, op.Output))
	}
}
