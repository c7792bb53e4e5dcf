package raft_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// readyDigest appends a canonical encoding of rd to b.
func readyDigest(b []byte, id pb.NodeID, rd *raft.Ready) []byte {
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	u(uint64(id))
	u(rd.ID)
	if rd.SoftState != nil {
		u(1)
		u(uint64(rd.SoftState.Lead))
		u(uint64(rd.SoftState.Role))
	} else {
		u(0)
	}
	b = pb.AppendHardState(b, rd.HardState)
	if rd.HardStateChanged {
		u(1)
	} else {
		u(0)
	}
	if rd.Snapshot != nil {
		b = pb.AppendSnapshotMeta(b, *rd.Snapshot)
	}
	for _, ents := range [][]pb.Entry{rd.Entries, rd.CommittedEntries} {
		u(uint64(len(ents)))
		for i := range ents {
			b = pb.AppendEntry(b, &ents[i])
		}
	}
	for _, msgs := range [][]pb.Message{rd.Messages, rd.MessagesAfterPersist} {
		u(uint64(len(msgs)))
		for i := range msgs {
			b = pb.AppendMessage(b, &msgs[i])
		}
	}
	u(uint64(len(rd.ReadStates)))
	for _, rs := range rd.ReadStates {
		u(uint64(rs.Index))
		b = append(b, rs.Context...)
	}
	if rd.MustSync {
		u(1)
	} else {
		u(0)
	}
	return b
}

// runDigest runs a seeded scenario (lossy, duplicating, reordering network,
// crashes, partitions, proposals, reads) and returns the digest of every
// Ready every member handed out, in order, and how many there were.
func runDigest(t *testing.T, seed uint64) ([32]byte, int) {
	c := newCluster(t, 5, func(cfg *raft.Config) { cfg.Seed = seed * uint64(cfg.ID) })
	rng := rand.New(rand.NewPCG(seed, 77))
	h := sha256.New()
	var buf []byte
	readies := 0
	c.onReady = func(id pb.NodeID, rd *raft.Ready) {
		buf = readyDigest(buf[:0], id, rd)
		h.Write(buf)
		readies++
	}
	c.net = func(m pb.Message) []int {
		switch rng.IntN(20) {
		case 0:
			return nil
		case 1:
			return []int{rng.IntN(5), rng.IntN(5)}
		}
		return []int{rng.IntN(3)}
	}
	c.crashHook = func(id pb.NodeID, p crashPhase) bool { return rng.IntN(300) == 0 }
	for i := 0; i < 300; i++ {
		if l := c.leader(); l != 0 {
			_, _, _ = c.cores[l].Propose([]byte(cmdN("d", i)))
			_ = c.cores[l].ReadIndex([]byte(cmdN("r", i)))
		}
		if i%50 == 0 {
			clear(c.cut)
			c.cut[c.ids[rng.IntN(5)]] = true
		}
		c.tick(1)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, readies
}

// TestDeterminism shows that the same seed and inputs produce the identical
// sequence of Readys (compared by digest), and that a different seed does
// not (so the digest sees what matters).
func TestDeterminism(t *testing.T) {
	a, na := runDigest(t, 1)
	b, nb := runDigest(t, 1)
	if a != b || na != nb {
		t.Fatalf("same seed, different Readys: %x (%d) and %x (%d)", a, na, b, nb)
	}
	if c, _ := runDigest(t, 2); c == a {
		t.Fatal("different seeds gave identical Readys")
	}
	if na < 1000 {
		t.Fatalf("only %d Readys: the scenario does too little", na)
	}
}

type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	Imports    []string
	GoFiles    []string
}

// TestCorePurity shows that the core stays pure: every package the core
// (raft, its sub-packages and raftpb) depends on is in the standard library
// or is one of those packages; none of them imports time, os, net, sync or
// math/rand (v1), or starts a goroutine, or uses math/rand/v2's global
// source. (fmt and errors reach os and sync inside the standard library;
// what is held here is that the core's own code does not use them.)
func TestCorePurity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const mod = "github.com/raftkv/raftkv/"
	out, err := exec.Command("go", "list", "-deps", "-json", mod+"raft/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"time", "os", "net", "sync", "sync/atomic", "math/rand", "unsafe", "syscall", "os/exec", "io/ioutil", "runtime"}
	core := 0
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard {
			continue
		}
		if !strings.HasPrefix(p.ImportPath, mod+"raft") || strings.HasPrefix(p.ImportPath, mod+"raftkv") {
			t.Errorf("the core depends on %s, outside the standard library and the core", p.ImportPath)
			continue
		}
		core++
		for _, imp := range p.Imports {
			for _, f := range forbidden {
				if imp == f || strings.HasPrefix(imp, "net/") {
					t.Errorf("%s imports %s", p.ImportPath, imp)
				}
			}
		}
		for _, f := range p.GoFiles {
			checkPureFile(t, filepath.Join(p.Dir, f))
		}
	}
	if core < 5 {
		t.Fatalf("found %d core packages, want raft, its sub-packages and raftpb", core)
	}
}

// checkPureFile fails on go statements and on calls of math/rand/v2's
// package-level functions other than constructors.
func checkPureFile(t *testing.T, path string) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	randName := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"math/rand/v2"` {
			randName = "rand"
			if imp.Name != nil {
				randName = imp.Name.Name
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			t.Errorf("%s: go statement in the core", fset.Position(n.Pos()))
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && randName != "" && id.Name == randName {
				switch n.Sel.Name {
				case "New", "NewPCG", "NewChaCha8", "Rand", "PCG", "ChaCha8", "Source":
				default:
					t.Errorf("%s: %s.%s uses the global random source", fset.Position(n.Pos()), randName, n.Sel.Name)
				}
			}
		}
		return true
	})
}
