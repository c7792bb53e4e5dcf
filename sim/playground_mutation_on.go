//go:build mutation

package sim

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
)

// In a build with the mutation tag the playground's "what if" menu can put
// one of the core's named bugs (raft.Mutation) in force. The mutation is
// process-wide: the page runs one playground at a time.

// PlaygroundMutations lists the mutations this build can put in force.
func PlaygroundMutations() []string {
	out := make([]string, len(raft.Mutations))
	for i, m := range raft.Mutations {
		out[i] = m.String()
	}
	return out
}

// setPlaygroundMutation puts the named mutation in force ("none" or ""
// restores the correct core).
func setPlaygroundMutation(name string) error {
	m := raft.MutationNone
	if name != "" && name != m.String() {
		found := false
		for _, x := range raft.Mutations {
			if x.String() == name {
				m, found = x, true
			}
		}
		if !found {
			return fmt.Errorf("playground: no mutation %q (%v)", name, PlaygroundMutations())
		}
	}
	raft.SetMutation(m)
	return nil
}
