//go:build !mutation

package sim

import "errors"

// PlaygroundMutations lists the mutations this build can put in force:
// none without the mutation tag.
func PlaygroundMutations() []string { return nil }

// setPlaygroundMutation accepts only the correct core.
func setPlaygroundMutation(name string) error {
	if name == "" || name == "none" {
		return nil
	}
	return errors.New("playground: this build has no mutations (build it with -tags mutation, as make playground does)")
}
