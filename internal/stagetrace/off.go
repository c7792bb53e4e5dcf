//go:build !stagetrace

package stagetrace

// Enabled reports whether marks are compiled in (the build tag
// stagetrace).
const Enabled = false

// Mark records that stage s reached index (peer: the member a message
// went to or came from, or 0). Without the build tag it does nothing.
func Mark(s Stage, index, peer uint64) {}
