package confchange

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// The membership scripts below are read line by line. Each line is a
// command, "->", and what it must produce: the configuration that results
// (which becomes the current one), or the error. Commands:
//
//	start voters=1,2,3 [out=...] [learners=...]  set the current configuration
//	add-learner N | add-voter N | remove N        build the target, then Enter
//	set-voters 1,2,4                              the same with SetVoters
//	target voters=... [learners=...]              Enter an explicit target
//	leave                                         Leave the joint configuration
//	validate voters=... [out=...] [learners=...]  Validate a configuration
//
// An error is written as its class (invalid, joint, or other) and its text.

func parseIDs(t *testing.T, s string) []pb.NodeID {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []pb.NodeID
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("bad id %q: %v", f, err)
		}
		out = append(out, pb.NodeID(n))
	}
	return out
}

// parseConf reads "voters=1,2 out=3 learners=4".
func parseConf(t *testing.T, args []string) pb.ConfState {
	t.Helper()
	var cs pb.ConfState
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "voters":
			cs.Voters = parseIDs(t, v)
		case "out":
			cs.VotersOutgoing = parseIDs(t, v)
		case "learners":
			cs.Learners = parseIDs(t, v)
		default:
			t.Fatalf("bad configuration field %q", a)
		}
	}
	return cs
}

func describeErr(err error) string {
	class := "other"
	switch {
	case errors.Is(err, ErrJoint):
		class = "joint"
	case errors.Is(err, ErrInvalid):
		class = "invalid"
	}
	return "error(" + class + "): " + err.Error()
}

// runScript runs a membership script; ctx is set as every target's Context
// to show that it travels with each configuration.
func runScript(t *testing.T, script string) {
	t.Helper()
	ctx := []byte("addresses")
	var cur pb.ConfState
	for n, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmdPart, want, ok := strings.Cut(line, "->")
		if !ok {
			t.Fatalf("line %d: no '->': %q", n+1, line)
		}
		want = strings.TrimSpace(want)
		f := strings.Fields(cmdPart)
		cmd, args := f[0], f[1:]
		arg := func() string {
			if len(args) != 1 {
				t.Fatalf("line %d: %s takes one argument", n+1, cmd)
			}
			return args[0]
		}
		var got string
		var next pb.ConfState
		var target Target
		var err error
		enter := true
		switch cmd {
		case "start":
			cur = parseConf(t, args)
			cur.Context = ctx
			got, enter = cur.String(), false
		case "add-learner":
			target, err = AddLearner(cur, parseIDs(t, arg())[0])
		case "add-voter":
			target, err = AddVoter(cur, parseIDs(t, arg())[0])
		case "remove":
			target, err = Remove(cur, parseIDs(t, arg())[0])
		case "set-voters":
			target = SetVoters(cur, parseIDs(t, strings.Join(args, ""))) // none: no voters
		case "target":
			cs := parseConf(t, args)
			target = Target{Voters: cs.Voters, Learners: cs.Learners, Context: ctx}
		case "leave":
			next, err = Leave(cur)
			enter = false
			if err == nil {
				got = next.String()
			}
		case "validate":
			err = Validate(parseConf(t, args))
			enter = false
			got = "ok"
		default:
			t.Fatalf("line %d: unknown command %q", n+1, cmd)
		}
		if enter && err == nil {
			if string(target.Context) != string(ctx) {
				t.Fatalf("line %d: %s lost the configuration context: %q", n+1, cmd, target.Context)
			}
			next, err = Enter(cur, target)
			got = next.String()
		}
		if err != nil {
			got = describeErr(err)
		} else if cmd != "start" && cmd != "validate" {
			if string(next.Context) != string(ctx) {
				t.Fatalf("line %d: %s lost the configuration context: %q", n+1, cmd, next.Context)
			}
			if verr := Validate(next); verr != nil {
				t.Fatalf("line %d: %s produced an invalid configuration %s: %v", n+1, cmd, next, verr)
			}
			cur = next
		}
		if got != want {
			t.Fatalf("line %d: %s\n got %s\nwant %s", n+1, strings.TrimSpace(cmdPart), got, want)
		}
	}
}

// TestLearners shows changes that leave the voters as they are: they need
// no joint phase, since learners never count towards a quorum (§4.2.1).
func TestLearners(t *testing.T) {
	runScript(t, `
start voters=1,2,3            -> voters=[1 2 3] learners=[]
add-learner 4                 -> voters=[1 2 3] learners=[4]
add-learner 5                 -> voters=[1 2 3] learners=[4 5]
remove 4                      -> voters=[1 2 3] learners=[5]
# A member is added once, as whatever it is.
add-learner 5                 -> error(invalid): confchange: invalid configuration: 5 is already a member
add-learner 2                 -> error(invalid): confchange: invalid configuration: 2 is already a member
remove 4                      -> error(invalid): confchange: invalid configuration: 4 is not a member
# Reordering the voters changes nothing.
set-voters 3,1,2              -> voters=[1 2 3] learners=[5]
`)
}

// TestJointChanges shows changes of the voters (§6, Figure 11): each enters
// C_old,new, with C_old as the outgoing half, and leaving it yields C_new.
// No second change may start while a joint configuration is in force.
func TestJointChanges(t *testing.T) {
	runScript(t, `
start voters=1,2,3 learners=4 -> voters=[1 2 3] learners=[4]
# Promoting a learner.
add-voter 4                   -> voters=[1 2 3 4]&&[1 2 3] learners=[]
add-voter 5                   -> error(joint): confchange: a membership change is already in progress
add-learner 5                 -> error(joint): confchange: a membership change is already in progress
remove 1                      -> error(joint): confchange: a membership change is already in progress
leave                         -> voters=[1 2 3 4] learners=[]
leave                         -> error(invalid): confchange: invalid configuration: leave of a configuration that is not joint
# Removing a voter.
remove 2                      -> voters=[1 3 4]&&[1 2 3 4] learners=[]
leave                         -> voters=[1 3 4] learners=[]
# Replacing one voter by another in one change.
add-learner 5                 -> voters=[1 3 4] learners=[5]
set-voters 1,3,5              -> voters=[1 3 5]&&[1 3 4] learners=[]
leave                         -> voters=[1 3 5] learners=[]
# Replacing every voter at once: the halves do not overlap.
add-learner 6                 -> voters=[1 3 5] learners=[6]
set-voters 6                  -> voters=[6]&&[1 3 5] learners=[]
leave                         -> voters=[6] learners=[]
add-voter 6                   -> error(invalid): confchange: invalid configuration: 6 is already a voter
`)
}

// TestDemotion shows a voter demoted to a learner: the voters change, so it
// goes through a joint configuration in which the demoted member is both an
// outgoing voter and a learner (it keeps voting until C_new); leaving makes
// it a learner only.
func TestDemotion(t *testing.T) {
	runScript(t, `
start voters=1,2,3            -> voters=[1 2 3] learners=[]
target voters=1,2 learners=3  -> voters=[1 2]&&[1 2 3] learners=[3]
leave                         -> voters=[1 2] learners=[3]
# And promoted back.
add-voter 3                   -> voters=[1 2 3]&&[1 2] learners=[]
leave                         -> voters=[1 2 3] learners=[]
`)
}

// TestRemovingTheLastVoter shows that a configuration keeps a voter: one
// with none could never elect a leader or commit again.
func TestRemovingTheLastVoter(t *testing.T) {
	runScript(t, `
start voters=1 learners=2     -> voters=[1] learners=[2]
remove 1                      -> error(invalid): confchange: invalid configuration: no voters
set-voters                    -> error(invalid): confchange: invalid configuration: no voters
target learners=1,2           -> error(invalid): confchange: invalid configuration: no voters
# The learner can be removed, the voter kept.
remove 2                      -> voters=[1] learners=[]
`)
}

// TestMalformedTargets shows that targets are normalised (duplicates and
// order do not matter) and that impossible ones are refused.
func TestMalformedTargets(t *testing.T) {
	runScript(t, `
start voters=1,2,3                 -> voters=[1 2 3] learners=[]
target voters=3,1,2,2,1            -> voters=[1 2 3] learners=[]
target voters=1,2,3 learners=5,5,4 -> voters=[1 2 3] learners=[4 5]
target voters=1,2,3 learners=3     -> error(invalid): confchange: invalid configuration: 3 is both voter and learner
target voters=0,1,2                -> error(invalid): confchange: invalid configuration: member id 0
target voters=1,2 learners=0       -> error(invalid): confchange: invalid configuration: member id 0
`)
}

// TestValidate shows the invariants of every configuration.
func TestValidate(t *testing.T) {
	runScript(t, `
validate voters=1,2,3                     -> ok
validate voters=1,2 out=1,2,3 learners=3  -> ok
validate voters=1                         -> ok
validate learners=1                       -> error(invalid): confchange: invalid configuration: no voters
validate out=1,2                          -> error(invalid): confchange: invalid configuration: no voters
validate voters=2,1                       -> error(invalid): confchange: invalid configuration: ids not sorted and unique: [2 1]
validate voters=1,1                       -> error(invalid): confchange: invalid configuration: ids not sorted and unique: [1 1]
validate voters=1 out=2,2                 -> error(invalid): confchange: invalid configuration: ids not sorted and unique: [2 2]
validate voters=1 learners=3,2            -> error(invalid): confchange: invalid configuration: ids not sorted and unique: [3 2]
validate voters=0                         -> error(invalid): confchange: invalid configuration: member id 0
validate voters=1 out=0                   -> error(invalid): confchange: invalid configuration: member id 0
validate voters=1,2 learners=2            -> error(invalid): confchange: invalid configuration: 2 is both voter and learner
`)
}

// TestEnterDoesNotAlias shows that Enter and Leave copy their inputs: a
// caller's later change to a target or configuration must not change a
// configuration already in the log.
func TestEnterDoesNotAlias(t *testing.T) {
	cur := pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}
	target := Target{Voters: []pb.NodeID{1, 2, 4}, Learners: []pb.NodeID{5}}
	next, err := Enter(cur, target)
	if err != nil {
		t.Fatal(err)
	}
	target.Voters[0], target.Learners[0], cur.Voters[0] = 9, 9, 9
	if want := "voters=[1 2 4]&&[1 2 3] learners=[5]"; next.String() != want {
		t.Fatalf("Enter's result changed with its inputs: %s, want %s", next, want)
	}
	final, err := Leave(next)
	if err != nil {
		t.Fatal(err)
	}
	next.Voters[0], next.Learners[0] = 9, 9
	if want := "voters=[1 2 4] learners=[5]"; final.String() != want {
		t.Fatalf("Leave's result changed with its input: %s, want %s", final, want)
	}
}
